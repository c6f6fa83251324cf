//! Freshet's stream DSL: `StreamsBuilder` and `KStream` compile a declarative description of a
//! stream application into a [`Topology`] (the task graph), over the low-level Processor API.
//!
//! Boundary: describes computations and holds the operator code; it never runs a topology
//! (the runtime and its test driver do), opens sockets or touches RocksDB. It depends on
//! `freshet-core` for record types.

pub mod codec;
pub mod error;
pub mod join;
pub mod processor;
pub mod serde;
pub mod store;
pub mod stream;
pub mod table;
pub mod topology;
pub mod window;

pub use crate::codec::Change;
pub use crate::error::{Error, Result};
pub use crate::join::{JoinWindows, StreamJoined};
pub use crate::processor::{
    Data, Processor, ProcessorContext, PunctuationId, PunctuationType, Record, RecordMeta, SinkRecord, TaskContext,
    TaskGraph, TaskId,
};
pub use crate::serde::{BytesSerde, JsonSerde, Nullable, NumberSerde, Serde, Serdes, StringSerde, UnitSerde};
pub use crate::store::StoreBuilder;
pub use crate::stream::{Consumed, KStream, OnDecodeError, Produced, Repartitioned, Split, StreamsBuilder};
pub use crate::table::{GlobalKTable, Grouped, KGroupedStream, KGroupedTable, KTable, Materialized};
pub use crate::topology::{InternalTopic, NodeKind, Subtopology, Topology};
pub use crate::window::{
    EmitStrategy, LateRecord, SessionWindowedKStream, SessionWindows, SlidingWindows, TimeWindowedKStream, TimeWindows,
    WindowedSerde,
};
pub use freshet_state::Windowed;
