//! The `freshet` command.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use freshet::prelude::*;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod broker;
mod cluster;
mod connect;
mod consume;
mod dump_log;
mod groups;
mod kafka_keys;
mod produce;
mod quickstart;
#[cfg(feature = "sql")]
mod sql;
mod storage;
mod streams_demo;
mod target;
mod topic;

use self::broker::*;
use self::cluster::*;
use self::connect::*;
use self::consume::*;
use self::dump_log::*;
use self::groups::*;
use self::produce::*;
use self::quickstart::*;
use self::storage::*;
use self::target::*;
use self::topic::*;

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
    /// Run a local cluster of brokers on loopback ports, each node a `freshet broker` process
    /// with a Kafka-style properties file, the first three the metadata quorum's controllers.
    /// Stops them all on Ctrl-C.
    Cluster(ClusterArgs),
    /// Run connector pipelines, as Kafka Connect does: source and sink connectors, converters and
    /// transforms configured with Kafka Connect's keys, and its REST API.
    #[command(subcommand)]
    Connect(ConnectCommand),
    /// Format a data directory for a cluster (its `meta.properties`: cluster id and node id), as
    /// Kafka's `kafka-storage` does; make a cluster id; show a directory's.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Run SQL over topics (DataFusion): the statements given with `-e`, or those on standard
    /// input, separated by `;`. A topic becomes a table with `CREATE EXTERNAL TABLE name
    /// [(columns)] STORED AS TOPIC LOCATION 'topic' [OPTIONS ('format' 'json' | 'raw')]`
    /// (without columns, they are inferred from its JSON values); declarations are kept in the log.
    ///
    /// Continuous queries (`CREATE STREAM|TABLE name AS SELECT ...`) run in a host: an
    /// interactive `freshet sql` session, `freshet sql --serve`, or `freshet broker` (on its log).
    /// Without `-e` and with a terminal, an interactive prompt with history opens.
    #[cfg(feature = "sql")]
    Sql(sql::SqlArgs),
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
        Command::Cluster(args) => cluster(args).await,
        Command::Connect(command) => connect(command).await,
        Command::Storage(command) => storage(command).await,
        Command::Topic(command) => topic(command).await,
        Command::Produce(args) => produce(args).await,
        Command::Consume(args) => consume(args).await,
        Command::Groups(command) => groups(command).await,
        #[cfg(feature = "sql")]
        Command::Sql(args) => sql::sql(args).await,
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
