//! End-to-end tests of the `freshet` package (one binary, see STYLE.md).

mod broker;
mod dump_log;
mod examples;
mod java;
mod on_kafka;
mod peer;
mod quickstart;
mod sql;
mod streams;
mod tidy;
mod topic;
