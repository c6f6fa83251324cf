//! Freshet's client API: how everything above the log reaches one.
//!
//! Role: the vocabulary every layer shares (topics and partitions, offsets, records, configs,
//! isolation levels, the one [`Error`]), the substrate traits ([`Producer`], [`Consumer`],
//! [`Admin`], [`TransactionalProducer`]) and their implementations: [`Embedded`], the storage
//! engine in-process, and (feature `remote`) [`remote::Remote`], any Kafka-protocol cluster
//! through librdkafka. With the `testing` feature, [`testing`] is the contract every
//! implementation keeps, as a suite each runs.
//!
//! Boundary: `state`, `dsl`, `runtime`, `sql` and `connectors` depend on this crate and on no
//! other crate of the log: everything above runs unchanged on the embedded log, a Freshet broker
//! or Apache Kafka. This crate knows nothing of state stores, topologies, SQL or connectors, and
//! nothing of the broker or the Kafka protocol's message types.

pub mod embedded;
#[cfg(feature = "remote")]
pub mod remote;
pub mod substrate;
#[cfg(feature = "testing")]
pub mod testing;

pub use embedded::{Embedded, EmbeddedAdmin, EmbeddedConsumer, EmbeddedProducer};
pub use freshet_coord::group::{OffsetAndMetadata, TopicPartition};
pub use freshet_coord::transactions::MAX_TRANSACTION_TIMEOUT;
pub use freshet_log::clock::{self, Clock, SystemClock};
pub use freshet_log::{batch, config, partitioner, validate_topic_name};
pub use freshet_log::{Error, Isolation, Log, OffsetSpec, PartitionDescription, Result, TopicDescription};
pub use substrate::{
    range_assign, Admin, AutoOffsetReset, ConsumedBatches, Consumer, ConsumerConfig, ConsumerRecord, GroupChange,
    GroupJoined, GroupMember, GroupMembers, GroupMembership, GroupMetadata, Heartbeat, JoinGroup, NewTopic,
    PartitionPlacement, Producer, ProducerRecord, RecordMetadata, Substrate, TransactionalProducer,
};
