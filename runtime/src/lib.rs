//! Freshet's runtime.
//!
//! Role: runs a `Topology`: tasks, stream threads, commits, punctuation, exactly-once processing,
//! the topology test driver, and continuous SQL execution. So far: the test driver
//! ([`driver::TopologyTestDriver`]).
//!
//! Boundary: composes `freshet-core` (the substrate), `freshet-state` (stores) and `freshet-dsl`
//! (topologies). Nothing below it depends on it.

pub mod driver;
pub mod error;
pub(crate) mod plan;

pub use crate::driver::{DriverConfig, StoredRecord, TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use crate::error::{Error, Result};
