//! Freshet's broker: the log served over the Kafka wire protocol.
//!
//! Role: [`Broker`] listens on TCP, reads size-prefixed frames (bounded before allocation),
//! decodes requests with the `kafka-protocol` crate, runs them against the [`freshet_log::Log`]
//! and the coordinators of `freshet-coord`, and answers in request order per connection.
//! The `legacy` module converts the message sets of formats v0 and v1 (Produce v0 to v2) into record
//! batches at the edge, so the log holds one format.
//!
//! Boundary: the only crate that depends on the Kafka protocol's message types. Nothing of the
//! client API (`freshet-core`) is used here: a broker serves any Kafka client, Freshet's own
//! remote substrate among them.

mod broker;
mod legacy;

pub use broker::{Broker, BrokerConfig, FrameHarness};
