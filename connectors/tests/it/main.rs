//! The connector framework's integration tests: one binary.

mod datagen;
mod errors;
mod rest;
mod support;
mod transforms;
mod worker;
