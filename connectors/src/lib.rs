//! Freshet's connectors.
//!
//! Role: the connector framework in the style of Kafka Connect (source and sink traits, the worker,
//! the REST API, offsets kept in the log) and the built-in connectors.
//!
//! Boundary: talks to the log only through `freshet-core`'s substrate traits.

pub mod builtin;
pub mod config;
pub mod connector;
pub mod converter;
pub mod data;
pub mod distributed;
pub mod error;
pub mod herder;
pub mod plugins;
pub mod record;
pub mod rest;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transforms;
pub mod worker;

pub use config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Props};
pub use connector::{
    Connector, ConnectorPlugin, ConnectorType, ErrantRecordReporter, SinkConnector, SinkTask, SinkTaskContext,
    SourceConnector, SourceTask, SourceTaskContext,
};
pub use data::{Field, Header, Schema, SchemaRef, Struct, Type, Value};
pub use distributed::DistributedWorker;
pub use error::{ConnectError, Result};
pub use herder::Herder;
pub use plugins::Plugins;
pub use record::{ConnectRecord, SinkRecord, SourceAck, SourceMap, SourceRecord};
pub use worker::Worker;
