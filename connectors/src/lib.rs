//! Freshet's connectors.
//!
//! Role: the connector framework in the style of Kafka Connect (source and sink traits, the worker,
//! the REST API, offsets kept in the log) and the built-in connectors.
//!
//! Boundary: talks to the log only through `freshet-core`'s substrate traits. This crate has no
//! content yet.
