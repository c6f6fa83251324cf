//! Connectors to PostgreSQL, with the config keys of the connectors their users already know:
//! the JDBC sink (`sink`), the JDBC source's query modes (`source`) and Debezium's change capture
//! (`cdc`). `connection` reads the `connection.*` keys and connects; `copy`
//! writes rows in the binary `COPY` format.

mod cdc;
mod connection;
mod copy;
mod sink;
mod source;

pub use self::cdc::{PostgresCdcSource, PostgresCdcTask};
pub use self::sink::{JdbcSink, JdbcSinkTask};
pub use self::source::{JdbcSource, JdbcSourceTask};
