//! Connectors to PostgreSQL, with the config keys of the connectors their users already know:
//! the JDBC sink (`sink`) and the JDBC source's query modes (`source`). `connection` reads the `connection.*` keys and connects; `copy`
//! writes rows in the binary `COPY` format.

mod connection;
mod copy;
mod sink;
mod source;

pub use self::sink::{JdbcSink, JdbcSinkTask};
pub use self::source::{JdbcSource, JdbcSourceTask};
