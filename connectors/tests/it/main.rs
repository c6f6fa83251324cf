//! The connector framework's integration tests: one binary.

mod rest;
mod support;
mod transforms;
mod worker;
