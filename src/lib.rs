//! Freshet: stream processing with a built-in, durable, partitioned log.
//!
//! This crate is the facade: `use freshet::prelude::*` brings in what a program needs, whatever
//! crate it lives in. The `freshet` command-line program is built from this package too.
//!
//! ```no_run
//! use freshet::prelude::*;
//!
//! # async fn example() -> freshet::core::Result<()> {
//! let log = Embedded::open("data", LogConfig::default()).await?;
//! log.admin().create_topic(NewTopic { name: "events".into(), n_partitions: 3, ..Default::default() }).await?;
//! log.producer().send(vec![ProducerRecord::new("events", Some("key"), "value")]).await?;
//! # Ok(()) }
//! ```

pub use freshet_broker as broker;
pub use freshet_connectors as connectors;
pub use freshet_core as core;
pub use freshet_dsl as dsl;
pub use freshet_log as log;
pub use freshet_runtime as runtime;
#[cfg(feature = "sql")]
pub use freshet_sql as sql;
pub use freshet_state as state;

/// The public surface in one import.
pub mod prelude {
    pub use freshet_core::batch::{BatchBuilder, BatchView, Batches, Header};
    pub use freshet_core::config::{Durability, LogConfig, TopicConfig};
    #[cfg(feature = "remote")]
    pub use freshet_core::remote::Remote;
    pub use freshet_core::{
        Admin, AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, Embedded, GroupMember, GroupMembers,
        NewTopic, OffsetAndMetadata, Producer, ProducerRecord, RecordMetadata, Substrate, TopicPartition,
        TransactionalProducer,
    };
    pub use freshet_core::{Error, Result};
    pub use freshet_core::{Isolation, Log, OffsetSpec};
    pub use freshet_state::{
        Backend, Changelogs, Evicted, KeyValueStore, RestoreListener, RestoreProgress, SessionStore, StoreOptions,
        TaskConfig, TaskState, WindowOptions, WindowStore, Windowed,
    };
    // Streams: the DSL, the Processor API and the test driver. (The log's batch record type stays
    // at `freshet::core::batch::Record`; `Record` here is the Processor API's.)
    pub use freshet_dsl::{
        BytesSerde, Change, Consumed, EmitStrategy, GlobalKTable, Grouped, JoinWindows, JsonSerde, KGroupedStream,
        KGroupedTable, KStream, KTable, LateRecord, Materialized, Nullable, NumberSerde, OnDecodeError, Processor,
        ProcessorContext, Produced, PunctuationId, PunctuationType, Record, RecordMeta, Repartitioned, Serde, Serdes,
        SessionWindowedKStream, SessionWindows, SlidingWindows, Split, StoreBuilder, StreamJoined, StreamsBuilder,
        StringSerde, TaskId, TimeWindowedKStream, TimeWindows, Topology, UnitSerde, WindowedSerde,
    };
    pub use freshet_runtime::{
        DriverConfig, ErrorPolicy, Metrics, ProcessingGuarantee, StreamsApp, StreamsAppBuilder, StreamsConfig,
        StreamsState, TestInputTopic, TestOutputTopic, TestRecord, TimestampExtractor, TopologyTestDriver,
    };
}

/// The Rust snippets of README.md and the guide in `docs/`, compiled and run as doc tests, so a
/// renamed method breaks the build instead of the reader.
#[cfg(doctest)]
mod docs {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/log-and-broker.md")]
    struct LogAndBroker;
    #[doc = include_str!("../docs/streams.md")]
    struct Streams;
    #[doc = include_str!("../docs/runtime.md")]
    struct Runtime;
    #[cfg(feature = "sql")]
    #[doc = include_str!("../docs/sql.md")]
    struct Sql;
    #[doc = include_str!("../docs/operations.md")]
    struct Operations;
    #[doc = include_str!("../docs/choosing.md")]
    struct Choosing;
    #[doc = include_str!("../docs/cli.md")]
    struct Cli;
}
