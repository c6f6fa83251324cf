//! Reaching PostgreSQL: the `connection.*` keys of the JDBC connectors, read into the client's
//! settings, and connecting with their attempts and backoff.
//!
//! `connection.url` is a JDBC URL as the PostgreSQL JDBC driver takes it
//! (`jdbc:postgresql://host[:port][,host2[:port2]]/database?user=..&password=..`) or a libpq
//! URL (`postgresql://user:password@host:port/database?...`). Of the JDBC driver's parameters,
//! `user`, `password`, `currentSchema`, `ApplicationName`, `connectTimeout` and `sslmode`
//! (`disable`, `allow` or `prefer`: connections are not encrypted yet) are acted on; others are
//! logged as ignored. `connection.user` and `connection.password` win over the URL's.

use std::time::Duration;

use percent_encoding::percent_decode_str;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config as PgConfig, NoTls};

use crate::config::Config;
use crate::error::{ConnectError, Result};

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pg: PgConfig,
    /// What the URL names, for messages (no password).
    target: String,
    attempts: u32,
    backoff: Duration,
}

impl Connection {
    /// From a connector's `connection.url`, `connection.user`, `connection.password`,
    /// `connection.attempts` and `connection.backoff.ms`; `time_zone` is the sessions'.
    pub(crate) fn from_config(config: &Config, time_zone: &str) -> Result<Connection> {
        let url = config.string("connection.url")?;
        let mut pg = parse_url(url).map_err(|reason| ConnectError::config("connection.url", url, reason))?;
        if let Some(user) = config.get("connection.user").filter(|u| !u.is_empty()) {
            pg.user(user);
        }
        if let Some(password) = config.get("connection.password").filter(|p| !p.is_empty()) {
            pg.password(password);
        }
        if pg.get_user().is_none() {
            return Err(ConnectError::config(
                "connection.user",
                "",
                "no user: give connection.user, or user= in connection.url",
            ));
        }
        let options = format!("{} -c TimeZone={}", pg.get_options().unwrap_or(""), time_zone.replace(' ', "\\ "));
        pg.options(options.trim());
        let hosts: Vec<String> = pg
            .get_hosts()
            .iter()
            .zip(pg.get_ports().iter().chain(std::iter::repeat(&5432)))
            .map(|(h, p)| match h {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{p}"),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let target = format!("postgresql://{}/{}", hosts.join(","), pg.get_dbname().unwrap_or(""));
        Ok(Connection {
            pg,
            target,
            attempts: config.number_or("connection.attempts", 3u32)?.max(1),
            backoff: Duration::from_millis(config.number_or("connection.backoff.ms", 10_000u64)?),
        })
    }

    /// A connection to what `pg` names (`target` in messages), tried 3 times 10 s apart.
    pub(crate) fn to(pg: PgConfig, target: String) -> Connection {
        Connection { pg, target, attempts: 3, backoff: Duration::from_secs(10) }
    }

    /// The server and database, for messages.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// A connection, tried `connection.attempts` times `connection.backoff.ms` apart. A refused
    /// login or an unknown database fails at once.
    pub(crate) async fn connect(&self) -> Result<Client> {
        let mut attempt = 1;
        loop {
            match self.pg.connect(NoTls).await {
                Ok((client, connection)) => {
                    let target = self.target.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::warn!(target, error = %e, "PostgreSQL connection ended");
                        }
                    });
                    return Ok(client);
                }
                Err(e) if e.as_db_error().is_some() => {
                    return Err(ConnectError::Task(format!("connecting to {}: {}", self.target, describe(&e))));
                }
                Err(e) if attempt >= self.attempts => {
                    return Err(ConnectError::Retriable(format!(
                        "connecting to {} failed {attempt} times: {}",
                        self.target,
                        describe(&e)
                    )));
                }
                Err(e) => {
                    tracing::warn!(target = self.target, attempt, error = %describe(&e), "connecting to PostgreSQL failed");
                    attempt += 1;
                    tokio::time::sleep(self.backoff).await;
                }
            }
        }
    }
}

/// A PostgreSQL error with what the server said of it (message, detail, hint), or the client's
/// own error (a refused connection, a closed socket).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("; hint: {hint}"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                s.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            s
        }
    }
}

/// Client settings from a JDBC or libpq URL, or why it is not one.
fn parse_url(url: &str) -> std::result::Result<PgConfig, String> {
    let url = url.trim();
    if url.starts_with("postgresql://") || url.starts_with("postgres://") {
        return url.parse::<PgConfig>().map_err(|e| format!("not a PostgreSQL URL: {e}"));
    }
    let Some(rest) = url.strip_prefix("jdbc:postgresql:") else {
        let scheme = url.split("://").next().unwrap_or(url);
        return Err(format!(
            "not a PostgreSQL URL (scheme {scheme:?}): Freshet's JDBC connectors speak to PostgreSQL only; give \
             jdbc:postgresql://host:port/database or postgresql://host:port/database"
        ));
    };
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut pg = PgConfig::new();
    // jdbc:postgresql:database, jdbc:postgresql:/, or jdbc:postgresql://hosts/database.
    let database = match location.strip_prefix("//") {
        Some(hosts_db) => {
            let (hosts, database) = hosts_db.split_once('/').unwrap_or((hosts_db, ""));
            for host in hosts.split(',').filter(|h| !h.is_empty()) {
                let (name, port) = split_host_port(host)?;
                pg.host(name);
                pg.port(port);
            }
            database
        }
        None => location.trim_start_matches('/'),
    };
    if pg.get_hosts().is_empty() {
        pg.host("localhost");
        pg.port(5432);
    }
    if !database.is_empty() {
        pg.dbname(&decode(database)?);
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = decode(value)?;
        match key {
            "user" => {
                pg.user(&value);
            }
            "password" => {
                pg.password(value.as_bytes());
            }
            "currentSchema" => {
                pg.options(format!("-c search_path={}", value.replace(' ', "\\ ")));
            }
            "ApplicationName" | "applicationName" => {
                pg.application_name(&value);
            }
            "connectTimeout" => {
                let seconds: u64 = value.parse().map_err(|_| format!("connectTimeout={value} is not a number"))?;
                if seconds > 0 {
                    pg.connect_timeout(Duration::from_secs(seconds));
                }
            }
            "sslmode" | "ssl" => match value.as_str() {
                "disable" | "allow" | "prefer" | "false" => {
                    pg.ssl_mode(SslMode::Disable);
                }
                other => {
                    return Err(format!(
                        "{key}={other} asks for TLS, which Freshet's PostgreSQL connectors do not speak yet; use \
                         sslmode=disable, or reach the server through a TLS tunnel"
                    ))
                }
            },
            other => tracing::warn!(parameter = other, "ignoring a JDBC URL parameter Freshet does not act on"),
        }
    }
    pg.ssl_mode(SslMode::Disable);
    Ok(pg)
}

fn split_host_port(host: &str) -> std::result::Result<(&str, u16), String> {
    // [v6]:port, name:port, or a name alone.
    if let Some(rest) = host.strip_prefix('[') {
        let (name, port) = rest.split_once(']').ok_or_else(|| format!("{host:?}: unclosed '['"))?;
        let port = port.strip_prefix(':').map(parse_port).transpose()?.unwrap_or(5432);
        return Ok((name, port));
    }
    match host.rsplit_once(':') {
        Some((name, port)) => Ok((name, parse_port(port)?)),
        None => Ok((host, 5432)),
    }
}

fn parse_port(port: &str) -> std::result::Result<u16, String> {
    port.parse().map_err(|_| format!("{port:?} is not a port"))
}

fn decode(s: &str) -> std::result::Result<String, String> {
    percent_decode_str(s).decode_utf8().map(|s| s.into_owned()).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, hosts: &[&str], port: u16, db: &str, user: Option<&str>) {
        let pg = parse_url(url).unwrap();
        let got: Vec<String> = pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        assert_eq!(got, hosts, "{url}");
        assert_eq!(pg.get_ports()[0], port, "{url}");
        assert_eq!(pg.get_dbname(), Some(db), "{url}");
        assert_eq!(pg.get_user(), user, "{url}");
    }

    #[test]
    fn jdbc_and_libpq_urls() {
        check(
            "jdbc:postgresql://db.example:5433/shop?user=app&password=s%40cret",
            &["db.example"],
            5433,
            "shop",
            Some("app"),
        );
        check("jdbc:postgresql://localhost/shop", &["localhost"], 5432, "shop", None);
        check("jdbc:postgresql:shop", &["localhost"], 5432, "shop", None);
        check("jdbc:postgresql://a:1,b:2/x", &["a", "b"], 1, "x", None);
        check("postgresql://app:pw@127.0.0.1:6543/shop", &["127.0.0.1"], 6543, "shop", Some("app"));
        assert_eq!(parse_url("jdbc:postgresql://h/db?password=s%40cret").unwrap().get_password(), Some(&b"s@cret"[..]));
    }

    #[test]
    fn other_databases_and_tls_are_refused_with_what_to_do() {
        let e = parse_url("jdbc:mysql://h:3306/db").unwrap_err();
        assert!(e.contains("PostgreSQL only"), "{e}");
        let e = parse_url("jdbc:postgresql://h/db?sslmode=require").unwrap_err();
        assert!(e.contains("sslmode=require asks for TLS"), "{e}");
        let e = parse_url("jdbc:postgresql://h:port/db").unwrap_err();
        assert!(e.contains("\"port\" is not a port"), "{e}");
    }
}
