//! Freshet's state stores.
//!
//! Role: the key-value, window and session stores that stateful operators (aggregations, windows,
//! joins) keep their state in, with a RocksDB backend and an in-memory backend behind the same
//! interfaces, changelogged to topics of the log and restored from them.
//!
//! Boundary: depends on `freshet-core` only (the substrate traits, to write and read changelogs).
//! It knows nothing about topologies, SQL or connectors. This crate has no content yet.
