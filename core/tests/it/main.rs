//! Integration tests of the storage engine and the embedded substrate (one binary, see STYLE.md).

mod append_read;
mod bad_input;
mod compaction;
mod crash;
mod model;
#[cfg(feature = "remote")]
mod remote;
mod retention;
mod substrate;
mod support;
mod transactions;
