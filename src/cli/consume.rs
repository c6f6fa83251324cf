//! `freshet consume`: records of a topic to standard output, in a group or not.

use crate::*;

#[derive(clap::Args)]
pub(crate) struct ConsumeArgs {
    /// The topic.
    pub(crate) topic: String,
    /// Where to start: `beginning`, `end`, an offset, or `time:<ms since the epoch>`. With
    /// `--group`, where partitions without a committed offset start: `beginning` or `end`.
    #[arg(long, default_value = "beginning")]
    pub(crate) from: String,
    /// Read as a member of this consumer group: the group shares the topic's partitions among
    /// its members, and their committed offsets are used and updated.
    #[arg(long)]
    pub(crate) group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub(crate) max_records: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    pub(crate) follow: bool,
    /// Output: `text` (`partition@offset key => value`), `json` (one object per line).
    #[arg(long, default_value = "text")]
    pub(crate) format: String,
    #[command(flatten)]
    pub(crate) target: Target,
}

pub(crate) async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    if args.format != "text" && args.format != "json" {
        anyhow::bail!("--format {:?}: expected text or json", args.format);
    }
    let opened = Opened::open(&args.target).await?;
    let result = consume_from(&opened, &args).await;
    opened.close().await?;
    result
}

pub(crate) async fn consume_from(opened: &Opened, args: &ConsumeArgs) -> anyhow::Result<()> {
    let admin = opened.admin()?;
    let (topic, _) = admin.describe_topic(&args.topic).await?;
    let partitions: Vec<TopicPartition> =
        (0..topic.n_partitions).map(|p| TopicPartition::new(args.topic.clone(), p)).collect();
    let mut config = ConsumerConfig { group_id: args.group.clone(), ..ConsumerConfig::default() };
    let mut consumer = if args.group.is_some() {
        // A member of the group: the group deals the partitions (other members may hold some)
        // and each starts at the group's committed offset, else at the beginning or the end.
        config.auto_offset_reset = match args.from.as_str() {
            "beginning" => AutoOffsetReset::Earliest,
            "end" => AutoOffsetReset::Latest,
            from => anyhow::bail!("--from {from:?}: with --group, expected beginning or end"),
        };
        let mut consumer = opened.consumer(config)?;
        consumer.subscribe(vec![args.topic.clone()]).await?;
        consumer
    } else {
        let mut consumer = opened.consumer(config)?;
        consumer.assign(partitions.clone()).await?;
        for tp in &partitions {
            match args.from.as_str() {
                "beginning" => consumer.seek(tp, OffsetSpec::Earliest).await?,
                "end" => consumer.seek(tp, OffsetSpec::Latest).await?,
                from => match from.strip_prefix("time:") {
                    Some(ms) => {
                        let ms: i64 =
                            ms.parse().with_context(|| format!("--from {from:?}: expected time:<milliseconds>"))?;
                        consumer.seek(tp, OffsetSpec::Timestamp(ms)).await?
                    }
                    None => {
                        let offset: i64 = from.parse().with_context(|| {
                            format!("--from {from:?}: expected beginning, end, an offset or time:<ms>")
                        })?;
                        consumer.seek_to_offset(tp, offset)?
                    }
                },
            }
        }
        consumer
    };
    // Without --follow, reading stops at the partitions' ends as they were at the start.
    let mut ends = std::collections::BTreeMap::new();
    if !args.follow {
        for tp in &partitions {
            ends.insert(tp.clone(), admin.list_offset(tp, OffsetSpec::Latest).await?.map_or(0, |(o, _)| o));
        }
    }
    let reached_ends =
        |consumer: &dyn Consumer| ends.iter().all(|(tp, end)| consumer.position(tp).is_some_and(|p| p >= *end));
    let mut n = 0u64;
    // What was printed, per partition: what a group commits (never past a record not printed).
    let mut printed: std::collections::BTreeMap<TopicPartition, OffsetAndMetadata> = Default::default();
    let mut idle_since = Instant::now();
    loop {
        if !args.follow && reached_ends(consumer.as_ref()) {
            break;
        }
        let polled = consumer.poll(Duration::from_millis(500)).await?;
        if polled.is_empty() {
            // Records below an end that never arrive (deleted meanwhile): give up after a while.
            anyhow::ensure!(
                args.follow || idle_since.elapsed() < Duration::from_secs(30),
                "no records arrived for 30 s before the end of {}",
                args.topic
            );
            continue;
        }
        idle_since = Instant::now();
        for batches in polled {
            for r in batches.records()? {
                if args.format == "json" {
                    let text = |b: &Option<bytes::Bytes>| b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned());
                    let headers: Vec<(String, Option<String>)> =
                        r.headers.iter().map(|h| (h.key.clone(), text(&h.value))).collect();
                    let line = serde_json::json!({
                        "partition": batches.tp.partition, "offset": r.offset, "timestamp": r.timestamp,
                        "key": text(&r.key), "value": text(&r.value), "headers": headers,
                    });
                    say(&line.to_string());
                } else {
                    say(&format!(
                        "{}@{} {} => {}",
                        batches.tp.partition,
                        r.offset,
                        show(r.key.as_deref()),
                        show(r.value.as_deref())
                    ));
                }
                n += 1;
                printed.insert(batches.tp.clone(), OffsetAndMetadata::new(r.offset + 1));
                if args.max_records.is_some_and(|m| n >= m) {
                    break;
                }
            }
            if args.max_records.is_some_and(|m| n >= m) {
                break;
            }
        }
        if args.max_records.is_some_and(|m| n >= m) {
            break;
        }
    }
    if args.group.is_some() && !printed.is_empty() {
        consumer.commit(printed).await?;
    }
    Ok(())
}
