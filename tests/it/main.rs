//! End-to-end tests of the `freshet` package (one binary, see STYLE.md).

mod broker;
mod cdc;
mod cluster;
mod connect;
mod dump_log;
mod examples;
mod java;
mod lake;
mod on_kafka;
// Shared with the side-by-side benchmark (benches/vs_kafka.rs), which uses parts the tests do not.
#[allow(dead_code)]
mod peer;
mod postgres;
mod quickstart;
mod replication;
mod sql;
mod streams;
mod tidy;
mod topic;
