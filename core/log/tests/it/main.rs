//! Integration tests of the storage engine (one binary, see STYLE.md).

mod append_read;
mod bad_input;
mod compaction;
mod crash;
mod model;
mod producers;
mod replica;
mod retention;
mod support;
