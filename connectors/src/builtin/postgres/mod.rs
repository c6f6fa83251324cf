//! Connectors to PostgreSQL, with the config keys of the connectors their users already know:
//! the JDBC sink (`sink`). `connection` reads the `connection.*` keys and connects; `copy`
//! writes rows in the binary `COPY` format.

mod connection;
mod copy;
mod sink;

pub use self::sink::{JdbcSink, JdbcSinkTask};
