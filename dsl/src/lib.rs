//! Freshet's stream DSL and SQL planning.
//!
//! Role: `StreamsBuilder`, `KStream` and `KTable` compile a declarative description of a stream
//! application into a `Topology` (the task graph); SQL planned with DataFusion compiles to the same
//! `Topology`.
//!
//! Boundary: describes computations; it never runs them, opens sockets or touches RocksDB. It
//! depends on `freshet-core` for record and serde types. This crate has no content yet.
