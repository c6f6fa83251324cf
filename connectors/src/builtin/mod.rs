//! The built-in connectors.

mod console;
mod datagen;
mod file;
mod http;
mod postgres;

pub use self::console::{BlackholeSink, StdoutSink};
pub use self::datagen::{DatagenSource, DatagenSourceTask};
pub use self::file::{FileStreamSink, FileStreamSinkTask, FileStreamSource, FileStreamSourceTask};
pub use self::http::{HttpSink, HttpSinkTask, HttpSource, HttpSourceTask};
pub use self::postgres::{JdbcSink, JdbcSinkTask, JdbcSource, JdbcSourceTask};
use crate::connector::ConnectorPlugin;

/// The built-in connectors' plugins.
pub fn connectors() -> Vec<ConnectorPlugin> {
    vec![
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
    ]
}
