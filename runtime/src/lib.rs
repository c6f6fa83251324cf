//! Freshet's runtime.
//!
//! Role: runs a `Topology`: tasks, stream threads, commits, punctuation, exactly-once processing,
//! the topology test driver, and continuous SQL execution.
//!
//! Boundary: composes `freshet-core` (the substrate), `freshet-state` (stores) and `freshet-dsl`
//! (topologies). Nothing below it depends on it. This crate has no content yet.
