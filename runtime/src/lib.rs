//! Freshet's runtime.
//!
//! Role: runs a `Topology`: on a log ([`app::StreamsApp`]: tasks, stream threads, commits,
//! restores, punctuation, error policies, metrics) and in memory ([`driver::TopologyTestDriver`]).
//! With the `sql` feature, [`sql::SqlSession`] runs ad-hoc SQL over topics with DataFusion, and
//! continuous queries compiled onto the same topologies.
//!
//! Boundary: composes `freshet-core` (the substrate), `freshet-state` (stores) and `freshet-dsl`
//! (topologies). Nothing below it depends on it.

pub mod app;
pub mod driver;
pub mod error;
pub(crate) mod plan;
#[cfg(feature = "sql")]
pub mod sql;

pub use crate::app::{
    ErrorPolicy, Metrics, ProcessingGuarantee, StreamsApp, StreamsConfig, StreamsState, Substrate, TimestampExtractor,
};
pub use crate::driver::{DriverConfig, StoredRecord, TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use crate::error::{Error, Result};
