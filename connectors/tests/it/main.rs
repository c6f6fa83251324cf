//! The connector framework's integration tests: one binary.

mod cdc;
mod contract;
mod datagen;
mod distributed;
mod errors;
mod exactly_once;
mod http;
mod lake;
mod postgres;
mod rest;
mod support;
mod transforms;
mod worker;
