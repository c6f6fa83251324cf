//! The `freshet` command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use freshet::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "sql")]
mod sql_cli;
mod streams_demo;

#[derive(Parser)]
#[command(name = "freshet", version, about = "Stream processing with a built-in, durable, partitioned log")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a topic in a local data directory, produce a stream of events through the embedded
    /// log, read them back, run a streams application over them (a join and a windowed
    /// aggregation whose results print as windows close), and report what happened and how fast.
    Quickstart(QuickstartArgs),
    /// Print the record batches of a segment file (`.log`), checking each one, as Kafka's
    /// kafka-dump-log does. Reads the file only; works on a log that is open elsewhere.
    DumpLog(DumpLogArgs),
    /// Create, list, describe, alter and delete topics of a data directory.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Write records to a topic: one per line of standard input (or a file), as `key<TAB>value`
    /// with `--key-separator`, or JSON objects `{"key":..,"value":..,"headers":{..}}` with `--json`.
    Produce(ProduceArgs),
    /// Read records of a topic and print them, from the beginning, an offset or a time, with or
    /// without a consumer group.
    Consume(ConsumeArgs),
    /// List consumer groups, or describe one: its committed offsets and lag per partition.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Serve a data directory's log over the Kafka protocol, so that Kafka clients (kcat,
    /// librdkafka, the Java and Python clients) produce to it and fetch from it. Stops cleanly on
    /// Ctrl-C or SIGTERM.
    Broker(BrokerArgs),
    /// Run SQL over topics (DataFusion): the statements given with `-e`, or those on standard
    /// input, separated by `;`. A topic becomes a table with `CREATE EXTERNAL TABLE name
    /// [(columns)] STORED AS TOPIC LOCATION 'topic' [OPTIONS ('format' 'json' | 'raw')]`
    /// (without columns, they are inferred from its JSON values); declarations are kept in the log.
    ///
    /// Continuous queries (`CREATE STREAM|TABLE name AS SELECT ...`) run in a host: an
    /// interactive `freshet sql` session, `freshet sql --serve`, or `freshet broker` (on its log).
    /// Without `-e` and with a terminal, an interactive prompt with history opens.
    #[cfg(feature = "sql")]
    Sql(sql_cli::SqlArgs),
}

#[derive(clap::Args)]
struct ProduceArgs {
    /// The topic.
    topic: String,
    /// Read the records from this file instead of standard input.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Each line is `key<SEP>value`; without it, each line is a value without key.
    #[arg(long)]
    key_separator: Option<String>,
    /// Each line is a JSON object with `key`, `value` (strings or null) and `headers`
    /// (an object, or a list of `[name, value]` pairs for repeated names).
    #[arg(long)]
    json: bool,
    /// A header added to every record, `name=value` (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Args)]
struct ConsumeArgs {
    /// The topic.
    topic: String,
    /// Where to start: `beginning`, `end`, an offset, or `time:<ms since the epoch>`. With
    /// `--group`, where partitions without a committed offset start: `beginning` or `end`.
    #[arg(long, default_value = "beginning")]
    from: String,
    /// Read as a member of this consumer group: the group shares the topic's partitions among
    /// its members, and their committed offsets are used and updated.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// Output: `text` (`partition@offset key => value`), `json` (one object per line).
    #[arg(long, default_value = "text")]
    format: String,
    #[command(flatten)]
    target: Target,
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    use std::io::BufRead;
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let common: Vec<Header> = args
        .headers
        .iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                Ok(Header { key: k.to_string(), value: Some(v.to_string().into_bytes().into()) })
            }
            _ => anyhow::bail!("--header {h:?}: expected name=value"),
        })
        .collect::<anyhow::Result<_>>()?;
    let mut records = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.context("reading the records")?;
        if line.is_empty() {
            continue;
        }
        let mut record = if args.json {
            json_record(&args.topic, &line).with_context(|| format!("line {}: {line:?}", i + 1))?
        } else {
            match args.key_separator.as_deref().and_then(|sep| line.split_once(sep)) {
                Some((k, v)) => ProducerRecord::new(args.topic.clone(), Some(k.to_string()), v.to_string()),
                None if args.key_separator.is_some() => {
                    anyhow::bail!(
                        "line {}: no key separator {:?} in {line:?}",
                        i + 1,
                        args.key_separator.as_deref().unwrap_or_default()
                    )
                }
                None => ProducerRecord::new(args.topic.clone(), None::<String>, line),
            }
        };
        record.headers.extend(common.iter().cloned());
        records.push(record);
    }
    let opened = Opened::open(&args.target).await?;
    let n = records.len();
    let sent = match opened.producer() {
        Ok(producer) => producer.send(records).await,
        Err(e) => Err(e),
    };
    opened.close().await?;
    let sent = sent?;
    say(&format!("wrote {n} records to {}", args.topic));
    if let (Some(first), Some(last)) = (sent.first(), sent.last()) {
        tracing::debug!(first = first.offset, last = last.offset, "offsets");
    }
    Ok(())
}

/// A record from a JSON line: `{"key": .., "value": .., "headers": {..} | [[name, value], ..]}`.
fn json_record(topic: &str, line: &str) -> anyhow::Result<ProducerRecord> {
    let object: serde_json::Value = serde_json::from_str(line)?;
    let text = |v: Option<&serde_json::Value>| -> anyhow::Result<Option<bytes::Bytes>> {
        match v {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone().into_bytes().into())),
            Some(other) => Ok(Some(other.to_string().into_bytes().into())),
        }
    };
    let mut headers = Vec::new();
    match object.get("headers") {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                headers.push(Header { key: k.clone(), value: text(Some(v))? });
            }
        }
        Some(serde_json::Value::Array(pairs)) => {
            for pair in pairs {
                match pair.as_array().map(Vec::as_slice) {
                    Some([serde_json::Value::String(k), v]) => {
                        headers.push(Header { key: k.clone(), value: text(Some(v))? })
                    }
                    _ => anyhow::bail!("a header that is not a [name, value] pair: {pair}"),
                }
            }
        }
        Some(other) => anyhow::bail!("headers must be an object or a list of pairs, not {other}"),
    }
    Ok(ProducerRecord {
        topic: topic.to_string(),
        partition: None,
        key: text(object.get("key"))?,
        value: text(object.get("value"))?,
        headers,
        timestamp: object.get("timestamp").and_then(serde_json::Value::as_i64),
    })
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    if args.format != "text" && args.format != "json" {
        anyhow::bail!("--format {:?}: expected text or json", args.format);
    }
    let opened = Opened::open(&args.target).await?;
    let result = consume_from(&opened, &args).await;
    opened.close().await?;
    result
}

async fn consume_from(opened: &Opened, args: &ConsumeArgs) -> anyhow::Result<()> {
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

#[derive(Subcommand)]
enum GroupsCommand {
    /// The groups with committed offsets.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// A group's committed offsets, with the partitions' ends and the lag.
    Describe {
        /// The group.
        group: String,
        #[command(flatten)]
        target: Target,
    },
}

async fn groups(command: GroupsCommand) -> anyhow::Result<()> {
    let target = match &command {
        GroupsCommand::List { target } | GroupsCommand::Describe { target, .. } => target,
    };
    let opened = Opened::open(target).await?;
    let admin = opened.admin()?;
    let result = async {
        match command {
            GroupsCommand::List { .. } => {
                for group in admin.list_groups().await? {
                    say(&group);
                }
            }
            GroupsCommand::Describe { group, .. } => {
                let offsets = admin.group_offsets(&group).await?;
                let members = admin.group_members(&group).await?;
                anyhow::ensure!(
                    !offsets.is_empty() || members.is_some(),
                    "group {group:?} has no members and no committed offsets"
                );
                match members {
                    None if opened.is_remote() => say(&format!("group {group}: no members")),
                    None => say(&format!("group {group} (members are known only to a broker serving this log)")),
                    Some(m) => {
                        say(&format!(
                            "group {group}: {}, protocol {:?}, {} members",
                            m.state,
                            m.protocol,
                            m.members.len()
                        ));
                        for member in m.members {
                            let assigned: Vec<String> = member.assignment.iter().map(|tp| tp.to_string()).collect();
                            say(&format!(
                                "  member {} (client {}, {}): {}",
                                member.member_id,
                                member.client_id,
                                member.host,
                                if assigned.is_empty() { "nothing assigned".into() } else { assigned.join(" ") }
                            ));
                        }
                    }
                }
                say("  TOPIC PARTITION COMMITTED END LAG METADATA");
                for (tp, committed) in offsets {
                    let end = admin.list_offset(&tp, OffsetSpec::Latest).await.ok().flatten().map_or(-1, |(o, _)| o);
                    let lag = if end >= 0 { (end - committed.offset).max(0).to_string() } else { "-".into() };
                    say(&format!(
                        "  {} {} {} {} {lag} {:?}",
                        tp.topic, tp.partition, committed.offset, end, committed.metadata
                    ));
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    opened.close().await?;
    result
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        /// Its name.
        name: String,
        /// Partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// A config, `key=value` (repeatable), e.g. `retention.ms=3600000`.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List the topics.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// A topic's partitions (offsets, size) and every config with its value.
    Describe {
        /// Its name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Set or remove topic configs.
    Alter {
        /// Its name.
        name: String,
        /// A config to set, `key=value` (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// A config to remove, back to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions.
        #[arg(long)]
        partitions: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a topic.
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
}

/// `key=value` pairs from the command line.
fn parse_configs(configs: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    configs
        .iter()
        .map(|c| match c.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--config {c:?}: expected key=value"),
        })
        .collect()
}

async fn topic(command: TopicCommand) -> anyhow::Result<()> {
    let target = match &command {
        TopicCommand::Create { target, .. }
        | TopicCommand::List { target }
        | TopicCommand::Describe { target, .. }
        | TopicCommand::Alter { target, .. }
        | TopicCommand::Delete { target, .. } => target,
    };
    let opened = Opened::open(target).await?;
    let admin = opened.admin()?;
    let result = async {
        match command {
            TopicCommand::Create { name, partitions, configs, .. } => {
                let configs = parse_configs(&configs)?;
                admin.create_topic(NewTopic { name: name.clone(), n_partitions: partitions, configs }).await?;
                say(&format!("created topic {name} with {partitions} partitions"));
            }
            TopicCommand::List { .. } => {
                for t in admin.list_topics().await?.into_iter().filter(|t| !t.internal) {
                    say(&format!("{}\t{} partitions", t.name, t.n_partitions));
                }
            }
            TopicCommand::Describe { name, .. } => {
                let (topic, partitions) = admin.describe_topic(&name).await?;
                let id = if topic.id.is_empty() { String::new() } else { format!(" (id {})", topic.id) };
                say(&format!("topic {}{id}, {} partitions", topic.name, topic.n_partitions));
                for p in partitions {
                    // A cluster does not tell its clients sizes on disk.
                    let size = if opened.is_remote() {
                        String::new()
                    } else {
                        format!(", {} bytes in {} segments", p.size_bytes, p.n_segments)
                    };
                    say(&format!(
                        "  partition {}: offsets {}..{}{size}",
                        p.partition, p.log_start_offset, p.log_end_offset
                    ));
                }
                for c in admin.describe_configs(&name).await? {
                    say(&format!("  {} = {}{}", c.name, c.value, if c.is_default { " (default)" } else { "" }));
                }
            }
            TopicCommand::Alter { name, configs, delete, partitions, .. } => {
                let mut changes: std::collections::BTreeMap<String, Option<String>> =
                    parse_configs(&configs)?.into_iter().map(|(k, v)| (k, Some(v))).collect();
                changes.extend(delete.into_iter().map(|k| (k, None)));
                if !changes.is_empty() {
                    admin.alter_configs(&name, changes).await?;
                    say(&format!("altered the configs of {name}"));
                }
                if let Some(n) = partitions {
                    admin.create_partitions(&name, n).await?;
                    say(&format!("{name} now has {n} partitions"));
                }
            }
            TopicCommand::Delete { name, .. } => {
                admin.delete_topic(&name).await?;
                say(&format!("deleted topic {name}"));
            }
        }
        anyhow::Ok(())
    }
    .await;
    opened.close().await?;
    result
}

/// Where a command works: a data directory's embedded log, or a cluster.
#[derive(clap::Args)]
pub(crate) struct Target {
    /// Data directory of the embedded log.
    #[arg(long, default_value = "freshet-data")]
    pub(crate) data_dir: PathBuf,
    /// Work on a Kafka-protocol cluster instead (a Freshet broker or any Kafka), `host:port[,host:port...]`.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) bootstrap: Option<String>,
}

/// The log a command opened.
pub(crate) enum Opened {
    Embedded(Embedded),
    #[cfg(feature = "remote")]
    Remote(freshet::core::remote::Remote),
}

impl Opened {
    pub(crate) async fn open(target: &Target) -> anyhow::Result<Opened> {
        match &target.bootstrap {
            None => Ok(Opened::Embedded(open_log(&target.data_dir).await?)),
            #[cfg(feature = "remote")]
            Some(bootstrap) => {
                let remote = freshet::core::remote::Remote::new(bootstrap.clone());
                // Fail early, with the address, when nothing answers there.
                remote.admin()?.list_topics().await.with_context(|| format!("reaching the cluster at {bootstrap}"))?;
                Ok(Opened::Remote(remote))
            }
            #[cfg(not(feature = "remote"))]
            Some(_) => {
                anyhow::bail!("--bootstrap: this freshet was built without the remote substrate (feature \"remote\")")
            }
        }
    }

    fn is_remote(&self) -> bool {
        !matches!(self, Opened::Embedded(_))
    }

    fn admin(&self) -> anyhow::Result<Box<dyn Admin>> {
        Ok(match self {
            Opened::Embedded(e) => Box::new(e.admin()),
            #[cfg(feature = "remote")]
            Opened::Remote(r) => Box::new(r.admin()?),
        })
    }

    fn producer(&self) -> freshet::core::Result<Box<dyn Producer>> {
        Ok(match self {
            Opened::Embedded(e) => Box::new(e.producer()),
            #[cfg(feature = "remote")]
            Opened::Remote(r) => Box::new(r.producer()?),
        })
    }

    fn consumer(&self, config: ConsumerConfig) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(match self {
            Opened::Embedded(e) => Box::new(e.consumer(config)),
            #[cfg(feature = "remote")]
            Opened::Remote(r) => Box::new(r.consumer(config)?),
        })
    }

    pub(crate) async fn close(self) -> anyhow::Result<()> {
        match self {
            Opened::Embedded(e) => Ok(e.close().await?),
            #[cfg(feature = "remote")]
            Opened::Remote(_) => Ok(()),
        }
    }
}

#[derive(clap::Args)]
struct BrokerArgs {
    /// A properties file (`key=value` lines, `#` comments) with Kafka's broker setting names:
    /// `log.dirs`, `listeners`, `advertised.listeners`, `num.partitions`,
    /// `auto.create.topics.enable`, `socket.request.max.bytes`, `max.connections`,
    /// `max.connections.per.ip`. Flags given override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory of the log [default: freshet-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (port 0: any free port; the one chosen is printed) [default: 127.0.0.1:9092].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Host name clients are told to connect to (default: the listen address's IP).
    #[arg(long)]
    advertised_host: Option<String>,
    /// Largest request frame accepted, in bytes [default: 104857600].
    #[arg(long)]
    max_frame_bytes: Option<usize>,
    /// Partitions of topics created automatically [default: 1].
    #[arg(long)]
    num_partitions: Option<u32>,
    /// Do not create topics that clients ask for and that do not exist.
    #[arg(long)]
    no_auto_create_topics: bool,
}

/// The broker's settings: flags over the config file over the defaults.
struct BrokerSettings {
    data_dir: PathBuf,
    config: freshet::broker::BrokerConfig,
}

impl BrokerArgs {
    fn settings(self) -> anyhow::Result<BrokerSettings> {
        let mut data_dir = PathBuf::from("freshet-data");
        let mut config = freshet::broker::BrokerConfig::default();
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                let at = || format!("{} line {}", path.display(), i + 1);
                let (key, value) = line
                    .split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .with_context(|| format!("{}: expected key=value, found {line:?}", at()))?;
                let bad = |why: &str| anyhow::anyhow!("{}: {key}={value:?}: {why}", at());
                match key {
                    "log.dirs" | "log.dir" => {
                        anyhow::ensure!(!value.contains(','), bad("one data directory is served"));
                        data_dir = PathBuf::from(value);
                    }
                    "listeners" => config.listen = listener(value).map_err(|e| bad(&e))?,
                    "advertised.listeners" => {
                        let host = value.rsplit("://").next().unwrap_or(value);
                        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
                        config.advertised_host = Some(host.to_string());
                    }
                    "advertised.host.name" => config.advertised_host = Some(value.to_string()),
                    "num.partitions" => {
                        config.default_partitions =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?
                    }
                    "auto.create.topics.enable" => {
                        config.auto_create_topics = value.parse().map_err(|_| bad("expected true or false"))?
                    }
                    "socket.request.max.bytes" => {
                        config.max_frame_bytes =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a byte count"))?
                    }
                    "max.connections" => {
                        config.max_connections =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?
                    }
                    "max.connections.per.ip" => {
                        config.max_connections_per_ip =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?
                    }
                    _ => return Err(bad("not a setting of Freshet's broker")),
                }
            }
        }
        if let Some(d) = self.data_dir {
            data_dir = d;
        }
        if let Some(l) = self.listen {
            config.listen = l;
        }
        if let Some(h) = self.advertised_host {
            config.advertised_host = Some(h);
        }
        if let Some(m) = self.max_frame_bytes {
            config.max_frame_bytes = m;
        }
        if let Some(n) = self.num_partitions {
            anyhow::ensure!(n > 0, "--num-partitions 0: a topic needs at least one partition");
            config.default_partitions = n;
        }
        if self.no_auto_create_topics {
            config.auto_create_topics = false;
        }
        Ok(BrokerSettings { data_dir, config })
    }
}

/// `PLAINTEXT://host:port` or `host:port` (one listener) as an address.
fn listener(value: &str) -> Result<std::net::SocketAddr, String> {
    if value.contains(',') {
        return Err("one listener is served".into());
    }
    let address = match value.split_once("://") {
        Some(("PLAINTEXT", address)) => address,
        Some((protocol, _)) => return Err(format!("the {protocol} protocol is not served (PLAINTEXT only)")),
        None => value,
    };
    let address = if address.starts_with(':') { format!("0.0.0.0{address}") } else { address.to_string() };
    std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map_err(|e| format!("not an address: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| "no IPv4 address".to_string())
}

#[derive(clap::Args)]
struct DumpLogArgs {
    /// The segment file.
    file: PathBuf,
    /// Print every record too (key, value and headers, as text where they are UTF-8).
    #[arg(long)]
    records: bool,
}

#[derive(clap::Args)]
struct QuickstartArgs {
    /// Data directory of the embedded log.
    #[arg(long, default_value = "freshet-data")]
    data_dir: PathBuf,
    /// Events to produce.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    partitions: u32,
    /// Events per producer call (one record batch per partition per call).
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// How acknowledgements wait for the disk: fsync (group commit), interval, or none.
    #[arg(long, default_value = "fsync")]
    durability: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Every segment keeps its log file open: raise the soft limit on open files to the hard limit,
    // as a Kafka broker's service file would, so many partitions do not hit EMFILE.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(%error, "could not raise the open-file limit");
    }
    let result = match Cli::parse().command {
        Command::Quickstart(args) => quickstart(args).await,
        Command::DumpLog(args) => dump_log(&args),
        Command::Broker(args) => broker(args).await,
        Command::Topic(command) => topic(command).await,
        Command::Produce(args) => produce(args).await,
        Command::Consume(args) => consume(args).await,
        Command::Groups(command) => groups(command).await,
        #[cfg(feature = "sql")]
        Command::Sql(args) => sql_cli::sql(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes on one line, without a backtrace: this is for users.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {error:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let BrokerSettings { data_dir, config } = args.settings()?;
    let embedded = open_log(&data_dir).await?;
    let log = embedded.log().clone();
    let broker = freshet::broker::Broker::start(log.clone(), embedded.group_offsets().clone(), config).await?;
    say(&format!("Freshet broker listening on {} (data in {})", broker.local_addr(), data_dir.display()));
    // The log's continuous SQL queries run here, as ksqlDB's run beside Kafka.
    #[cfg(feature = "sql")]
    let host = sql_cli::QueryHost::start(Arc::new(embedded.clone()), &sql_cli::state_dir_of(&data_dir)).await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    #[cfg(feature = "sql")]
    host.stop().await?;
    broker.stop().await;
    embedded.close().await?;
    say("Broker stopped; the log was closed cleanly.");
    Ok(())
}

/// Opens the embedded log of a data directory with the default settings.
async fn open_log(data_dir: &std::path::Path) -> anyhow::Result<Embedded> {
    Embedded::open(data_dir, LogConfig::default())
        .await
        .with_context(|| format!("opening the log in {}", data_dir.display()))
}

/// Prints a line of progress at most once a second.
struct Progress {
    what: &'static str,
    total: u64,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Progress { what, total, started: now, last: now }
    }
    fn update(&mut self, done: u64, bytes: u64) {
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

/// Prints a line of output; a closed stdout (`freshet dump-log ... | head`) ends the program quietly.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        panic!("cannot write to stdout: {e}");
    }
}

/// Event `i` happened `i` milliseconds after midnight (UTC) of the first of January 2026.
fn event_time(i: u64) -> i64 {
    1_767_225_600_000 + i as i64
}

fn event(i: u64) -> (String, String) {
    let user = format!("user-{:04}", i % 1000);
    let value = format!(
        r#"{{"id":{i},"user":"{user}","action":"{}","amount_cents":{}}}"#,
        ["view", "click", "purchase"][(i % 3) as usize],
        (i * 7919) % 100_000
    );
    (user, value)
}

async fn quickstart(args: QuickstartArgs) -> anyhow::Result<()> {
    let durability = match args.durability.as_str() {
        "fsync" => Durability::Fsync,
        "interval" => Durability::Interval { flush_interval_ms: 1000 },
        "none" => Durability::OsCache,
        other => anyhow::bail!("--durability {other:?}: expected fsync, interval or none"),
    };
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

fn show(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_owned(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => format!("{text:?}"),
            Err(_) => format!("0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        },
    }
}

fn dump_log(args: &DumpLogArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    say(&format!("Dumping {} ({} bytes)", args.file.display(), bytes.len()));
    let mut position = 0usize;
    let (mut n_batches, mut n_records) = (0u64, 0u64);
    for batch in Batches::new(&bytes) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                say(&format!("position {position}: {e}; stopping"));
                anyhow::bail!("{} is damaged at byte {position}: {e}", args.file.display());
            }
        };
        let crc = match batch.check_crc() {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("INVALID ({e})"),
        };
        say(&format!(
            "baseOffset: {} lastOffset: {} count: {} position: {position} size: {} magic: {} compression: {:?} \
             timestampType: {:?} maxTimestamp: {} producerId: {} producerEpoch: {} baseSequence: {} \
             isTransactional: {} isControl: {} partitionLeaderEpoch: {} crc: {crc}",
            batch.base_offset(),
            batch.last_offset(),
            batch.record_count(),
            batch.size(),
            batch.magic(),
            batch.compression()?,
            batch.timestamp_type(),
            batch.max_timestamp(),
            batch.producer_id(),
            batch.producer_epoch(),
            batch.base_sequence(),
            batch.is_transactional(),
            batch.is_control(),
            batch.partition_leader_epoch(),
        ));
        if args.records {
            batch.for_each_record(|r| {
                let headers: Vec<String> =
                    r.headers()?.iter().map(|h| format!("{}={}", h.key, show(h.value.as_deref()))).collect();
                say(&format!(
                    "| offset: {} timestamp: {} key: {} value: {} headers: [{}]",
                    r.offset,
                    r.timestamp,
                    show(r.key),
                    show(r.value),
                    headers.join(", ")
                ));
                Ok(())
            })?;
        }
        n_batches += 1;
        n_records += batch.record_count().max(0) as u64;
        position += batch.size();
    }
    if position < bytes.len() {
        say(&format!("{} trailing bytes at position {position} do not hold a whole batch", bytes.len() - position));
    }
    say(&format!("{n_batches} batches, {n_records} records"));
    Ok(())
}
