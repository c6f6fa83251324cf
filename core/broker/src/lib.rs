//! Freshet's broker: the log served over the Kafka wire protocol, so unmodified Kafka clients
//! work against it.
//!
//! Role: [`server`](Broker) listens on TCP within connection limits and reads each connection's
//! frames; `dispatch` holds the one table of the APIs served (with their versions and handlers:
//! ApiVersions answers from it) and sends each request to its handler; `handlers` has one module
//! per family of APIs (topics, produce, fetch, groups, configs, transactions), running requests
//! against the [`freshet_log::Log`] and the coordinators of `freshet-coord`; `errors` maps
//! Freshet's errors to Kafka's codes, and `fallback` gives every response an error form, answered
//! when a response cannot be encoded at the version asked for; `legacy` converts the message sets of formats v0 and v1
//! (Produce v0 to v2) into record batches at the edge, so the log holds one format. Record batches
//! pass through as bytes: a produce appends the client's batches as they came (the log checks
//! their CRC and assigns offsets in place), a fetch returns the stored batches.
//!
//! Served: ApiVersions, Metadata (with topic auto-creation), Produce (acks 0, 1, all; the
//! idempotent producer's sequence checks, which answer a retry with its original offset and
//! refuse gaps and old epochs), Fetch (long-poll), ListOffsets, CreateTopics, DeleteTopics,
//! CreatePartitions, DeleteRecords, DescribeCluster, the classic consumer-group protocol and
//! committed offsets, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, and transactions
//! (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit).
//!
//! Boundary: the only crate that depends on the Kafka protocol's message types. Nothing of the
//! client API (`freshet-core`) is used here: a broker serves any Kafka client, Freshet's own
//! remote substrate among them.

mod acl;
mod cluster;
mod dispatch;
mod dynamic;
mod errors;
mod fallback;
mod handlers;
mod legacy;
mod metrics;
mod server;
#[cfg(test)]
mod tests;

pub use acl::{AuthorizerConfig, ACLS_TOPIC};
pub use cluster::{ClusterConfig, ControllerNode};
pub use dispatch::FrameHarness;
pub use dynamic::BROKER_CONFIGS_TOPIC;
pub use metrics::Metrics;
pub use server::{Broker, BrokerConfig};
