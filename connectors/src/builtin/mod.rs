//! The built-in connectors.

mod civil;
mod console;
mod datagen;
mod file;
mod http;
#[cfg(feature = "lake")]
mod lake;
mod postgres;

pub use self::console::{BlackholeSink, StdoutSink};
pub use self::datagen::{DatagenSource, DatagenSourceTask};
pub use self::file::{FileStreamSink, FileStreamSinkTask, FileStreamSource, FileStreamSourceTask};
pub use self::http::{HttpSink, HttpSinkTask, HttpSource, HttpSourceTask};
#[cfg(feature = "lake")]
pub use self::lake::{ParquetSink, ParquetSinkTask};
pub use self::postgres::{JdbcSink, JdbcSinkTask, JdbcSource, JdbcSourceTask, PostgresCdcSource, PostgresCdcTask};
use crate::config::{Config, ConfigValue, Props};
use crate::connector::ConnectorPlugin;
use crate::error::{ConnectError, Result};

/// The built-in connectors' plugins.
pub fn connectors() -> Vec<ConnectorPlugin> {
    #[allow(unused_mut)]
    let mut plugins = vec![
        ConnectorPlugin::source(
            "org.apache.kafka.connect.file.FileStreamSourceConnector",
            &["FileStreamSourceConnector", "FileStreamSource"],
            || Box::new(FileStreamSource::default()),
        ),
        ConnectorPlugin::sink(
            "org.apache.kafka.connect.file.FileStreamSinkConnector",
            &["FileStreamSinkConnector", "FileStreamSink"],
            || Box::new(FileStreamSink::default()),
        ),
        ConnectorPlugin::source(
            "freshet.connect.DatagenSourceConnector",
            &["DatagenSourceConnector", "DatagenSource", "datagen"],
            || Box::new(DatagenSource::default()),
        ),
        ConnectorPlugin::source(
            "freshet.connect.HttpSourceConnector",
            &["HttpSourceConnector", "HttpSource", "webhook"],
            || Box::new(HttpSource::default()),
        ),
        ConnectorPlugin::sink("freshet.connect.HttpSinkConnector", &["HttpSinkConnector", "HttpSink", "http"], || {
            Box::new(HttpSink::default())
        }),
        ConnectorPlugin::source(
            "io.confluent.connect.jdbc.JdbcSourceConnector",
            &["JdbcSourceConnector", "JdbcSource"],
            || Box::new(JdbcSource::default()),
        ),
        ConnectorPlugin::sink(
            "io.confluent.connect.jdbc.JdbcSinkConnector",
            &["JdbcSinkConnector", "JdbcSink"],
            || Box::new(JdbcSink::default()),
        ),
        ConnectorPlugin::source(
            "io.debezium.connector.postgresql.PostgresConnector",
            &["PostgresConnector", "PostgresCdcSource"],
            || Box::new(PostgresCdcSource::default()),
        ),
        ConnectorPlugin::sink(
            "freshet.connect.StdoutSinkConnector",
            &["StdoutSinkConnector", "StdoutSink", "stdout"],
            || Box::new(StdoutSink::default()),
        ),
        ConnectorPlugin::sink(
            "freshet.connect.BlackholeSinkConnector",
            &["BlackholeSinkConnector", "BlackholeSink", "blackhole"],
            || Box::new(BlackholeSink),
        ),
    ];
    #[cfg(feature = "lake")]
    plugins.push(ConnectorPlugin::sink(
        "freshet.connect.ParquetSinkConnector",
        &["ParquetSinkConnector", "ParquetSink", "parquet"],
        || Box::new(ParquetSink::default()),
    ));
    plugins
}

/// A connector's `validate`: `check` of its settings, its error as the REST API shows a refused
/// key (`fallback` when the error names none).
pub(crate) fn validation(props: &Props, fallback: &str, check: impl Fn(&Config) -> Result<()>) -> Vec<ConfigValue> {
    let Err(e) = check(&Config::from_props(props.clone())) else { return Vec::new() };
    let key = match &e {
        ConnectError::Config { key, .. } => key.clone(),
        _ => fallback.into(),
    };
    vec![ConfigValue {
        value: props.get(&key).cloned(),
        password: key.contains("password"),
        name: key,
        errors: vec![e.to_string()],
    }]
}
