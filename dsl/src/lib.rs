//! Freshet's stream DSL: `StreamsBuilder` and `KStream` compile a declarative description of a
//! stream application into a [`Topology`] (the task graph), over the low-level Processor API.
//!
//! Boundary: describes computations and holds the operator code; it never runs a topology
//! (the runtime and its test driver do), opens sockets or touches RocksDB. It depends on
//! `freshet-core` for record types.

pub mod error;
pub mod processor;
pub mod serde;
pub mod store;
pub mod stream;
pub mod topology;

pub use crate::error::{Error, Result};
pub use crate::processor::{
    Data, Processor, ProcessorContext, PunctuationId, PunctuationType, Record, RecordMeta, SinkRecord, TaskContext,
    TaskGraph,
};
pub use crate::serde::{BytesSerde, JsonSerde, NumberSerde, Serde, Serdes, StringSerde, UnitSerde};
pub use crate::store::StoreBuilder;
pub use crate::stream::{
    Consumed, InternalTopic, KStream, OnDecodeError, Produced, Repartitioned, Split, StreamsBuilder,
};
pub use crate::topology::{NodeKind, Subtopology, Topology};
