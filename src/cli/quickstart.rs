//! `freshet quickstart`: Freshet's main job on the embedded log.

use crate::*;

#[derive(clap::Args)]
pub(crate) struct QuickstartArgs {
    /// Data directory of the embedded log.
    #[arg(long, default_value = "freshet-data")]
    pub(crate) data_dir: PathBuf,
    /// Events to produce.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) events: u64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    pub(crate) partitions: u32,
    /// Events per producer call (one record batch per partition per call).
    #[arg(long, default_value_t = 2000)]
    pub(crate) batch: usize,
    /// How acknowledgements wait for the disk: fsync (group commit), interval, or none.
    #[arg(long, default_value = "fsync")]
    pub(crate) durability: String,
}

/// Prints a line of progress at most once a second.
pub(crate) struct Progress {
    pub(crate) what: &'static str,
    pub(crate) total: u64,
    pub(crate) started: Instant,
    pub(crate) last: Instant,
}

impl Progress {
    pub(crate) fn new(what: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Progress { what, total, started: now, last: now }
    }
    pub(crate) fn update(&mut self, done: u64, bytes: u64) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            say(&format!(
                "  {} {done}/{} events ({:.0}%), {:.1} MB/s",
                self.what,
                self.total,
                100.0 * done as f64 / self.total.max(1) as f64,
                bytes as f64 / secs / 1e6
            ));
        }
    }
}

/// Event `i` happened `i` milliseconds after midnight (UTC) of the first of January 2026.
pub(crate) fn event_time(i: u64) -> i64 {
    1_767_225_600_000 + i as i64
}

pub(crate) fn event(i: u64) -> (String, String) {
    let user = format!("user-{:04}", i % 1000);
    let value = format!(
        r#"{{"id":{i},"user":"{user}","action":"{}","amount_cents":{}}}"#,
        ["view", "click", "purchase"][(i % 3) as usize],
        (i * 7919) % 100_000
    );
    (user, value)
}

pub(crate) async fn quickstart(args: QuickstartArgs) -> anyhow::Result<()> {
    let durability = crate::target::durability(&args.durability)?;
    let topic = "quickstart-events";
    say(&format!("Freshet quickstart: embedded log in {}", args.data_dir.display()));
    let opened = Instant::now();
    let log = Embedded::open(&args.data_dir, LogConfig { durability, ..LogConfig::default() })
        .await
        .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
    let repaired: Vec<_> = log.log().recovery_reports().into_iter().filter(|r| r.repaired()).collect();
    say(&format!(
        "  opened in {:.0} ms{}",
        opened.elapsed().as_secs_f64() * 1e3,
        if repaired.is_empty() {
            String::new()
        } else {
            format!(", repaired {} partitions after a crash", repaired.len())
        }
    ));
    let admin = log.admin();
    if admin.describe_topic(topic).await.is_ok() {
        admin.delete_topic(topic).await?;
        say(&format!("  deleted the previous run's topic \"{topic}\""));
    }
    admin
        .create_topic(NewTopic { name: topic.into(), n_partitions: args.partitions, configs: Default::default() })
        .await?;
    say(&format!("  created topic \"{topic}\" with {} partitions", args.partitions));

    // Produce: calls of `batch` events, several in flight, so one fsync covers many batches.
    say(&format!("Producing {} events ({:?} durability)...", args.events, durability));
    let producer = std::sync::Arc::new(log.producer());
    let mut progress = Progress::new("produced", args.events);
    let started = Instant::now();
    let mut in_flight = tokio::task::JoinSet::new();
    let (mut sent, mut acked, mut bytes) = (0u64, 0u64, 0u64);
    while acked < args.events {
        while sent < args.events && in_flight.len() < 8 {
            let n = (args.batch as u64).min(args.events - sent);
            let records: Vec<ProducerRecord> = (sent..sent + n)
                .map(|i| {
                    let (key, value) = event(i);
                    let mut record = ProducerRecord::new(topic, Some(key), value);
                    record.timestamp = Some(event_time(i));
                    record
                })
                .collect();
            let size: u64 = records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64) + 9).sum();
            let producer = producer.clone();
            in_flight.spawn(async move { producer.send(records).await.map(|m| (m.len() as u64, size)) });
            sent += n;
        }
        let (n, size) = in_flight.join_next().await.expect("sends in flight")??;
        acked += n;
        bytes += size;
        progress.update(acked, bytes);
    }
    let produce_secs = started.elapsed().as_secs_f64();
    say(&format!(
        "  {} events acknowledged in {produce_secs:.2} s: {:.0} events/s, {:.1} MB/s of payload",
        acked,
        acked as f64 / produce_secs,
        bytes as f64 / produce_secs / 1e6
    ));
    let stats = log.log().stats();
    say(&format!(
        "  {} record batches ({:.1} MB) went to disk in {} writes and {} fsyncs: {:.1} batches per fsync",
        stats.batches_appended,
        stats.bytes_appended as f64 / 1e6,
        stats.writes,
        stats.fsyncs,
        stats.batches_appended as f64 / stats.fsyncs.max(1) as f64
    ));

    // Consume it all back with a consumer group, check every event arrived once, commit.
    say("Consuming them back...");
    let partitions: Vec<TopicPartition> = (0..args.partitions).map(|p| TopicPartition::new(topic, p)).collect();
    let mut consumer =
        log.consumer(ConsumerConfig { group_id: Some("quickstart".into()), ..ConsumerConfig::default() });
    consumer.assign(partitions.clone()).await?;
    let mut seen = vec![false; args.events as usize];
    let (mut n_read, mut read_bytes) = (0u64, 0u64);
    let mut progress = Progress::new("consumed", args.events);
    let started = Instant::now();
    while n_read < args.events {
        let polled = consumer.poll(Duration::from_secs(5)).await?;
        anyhow::ensure!(!polled.is_empty(), "no data for 5 s after {n_read} of {} events", args.events);
        for batches in polled {
            read_bytes += batches.bytes.len() as u64;
            for record in batches.records()? {
                let value = record.value.context("an event without a value")?;
                let text = std::str::from_utf8(&value)?;
                let id: u64 = text
                    .strip_prefix(r#"{"id":"#)
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|id| id.parse().ok())
                    .with_context(|| format!("unexpected event {text}"))?;
                anyhow::ensure!(!seen[id as usize], "event {id} was read twice");
                seen[id as usize] = true;
                n_read += 1;
            }
        }
        progress.update(n_read, read_bytes);
    }
    consumer.commit_positions().await?;
    let consume_secs = started.elapsed().as_secs_f64();
    say(&format!(
        "  {n_read} events read back in {consume_secs:.2} s: {:.0} events/s, {:.1} MB/s of batches; each exactly once",
        n_read as f64 / consume_secs,
        read_bytes as f64 / consume_secs / 1e6
    ));
    for p in &partitions {
        let end = admin.list_offset(p, OffsetSpec::Latest).await?.map_or(0, |o| o.0);
        say(&format!("  partition {}: offsets 0..{end}, committed by group \"quickstart\"", p.partition));
    }
    if args.events > 0 {
        let last = event_time(args.events - 1);
        streams_demo::run(&log, &args.data_dir, topic, args.partitions, args.events, last).await?;
    }
    let (_, described) = admin.describe_topic(topic).await?;
    let on_disk: u64 = described.iter().map(|p| p.size_bytes).sum();
    log.close().await?;
    say(&format!(
        "Done: {:.1} MB on disk in {}; the log was closed cleanly.",
        on_disk as f64 / 1e6,
        args.data_dir.display()
    ));
    Ok(())
}
