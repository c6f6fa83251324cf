//! Freshet's runtime.
//!
//! Role: runs a `Topology`: on a log ([`app::StreamsApp`]: tasks, stream threads, commits,
//! restores, punctuation, error policies, metrics) and in memory ([`driver::TopologyTestDriver`]).
//! SQL over topics (`freshet-sql`) compiles its continuous queries onto the same topologies and
//! runs them here.
//!
//! Boundary: composes `freshet-core` (the substrate), `freshet-state` (stores) and `freshet-dsl`
//! (topologies). Nothing below it depends on it; it compiles neither DataFusion nor the broker.

pub mod app;
pub mod driver;
pub mod error;
pub(crate) mod plan;

pub use crate::app::{
    ErrorPolicy, Metrics, ProcessingGuarantee, StreamsApp, StreamsAppBuilder, StreamsConfig, StreamsState,
    TimestampExtractor,
};
pub use crate::driver::{DriverConfig, StoredRecord, TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use crate::error::{Error, Result};
