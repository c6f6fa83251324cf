//! Change capture's config: Debezium's keys, and what to capture read from them once.

use std::time::Duration;

use regex::Regex;
use serde_json::json;

use super::wire::Target;
use crate::builtin::postgres::connection::Connection;
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Validator};
use crate::error::{ConnectError, Result};
use crate::record::SourceMap;

/// The connector's keys: Debezium's.
pub(super) fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    ConfigDef::new()
        .define(ConfigKey::required("database.hostname", String, High, "The PostgreSQL server's host."))
        .define(ConfigKey::optional("database.port", Int, Some("5432"), High, "The server's port."))
        .define(ConfigKey::required("database.user", String, High, "The user: with REPLICATION, or a superuser."))
        .define(ConfigKey::optional("database.password", Password, None, High, "The user's password."))
        .define(ConfigKey::required("database.dbname", String, High, "The database to capture."))
        .define(ConfigKey::optional(
            "database.sslmode",
            String,
            Some("disable"),
            Low,
            "disable (connections are not encrypted yet).",
        ))
        .define(ConfigKey::required(
            "topic.prefix",
            String,
            High,
            "The logical server name: events go to <prefix>.<schema>.<table>, and offsets are kept under it.",
        ))
        .define(ConfigKey::optional(
            "table.include.list",
            List,
            Some(""),
            High,
            "Regular expressions of schema.table to capture (all when empty).",
        ))
        .define(ConfigKey::optional(
            "table.exclude.list",
            List,
            Some(""),
            Medium,
            "Regular expressions of schema.table not to capture.",
        ))
        .define(ConfigKey::optional(
            "schema.include.list",
            List,
            Some(""),
            Medium,
            "Regular expressions of schemas to capture.",
        ))
        .define(ConfigKey::optional(
            "schema.exclude.list",
            List,
            Some(""),
            Medium,
            "Regular expressions of schemas not to capture.",
        ))
        .define(
            ConfigKey::optional(
                "plugin.name",
                String,
                Some("pgoutput"),
                High,
                "The logical decoding plugin: pgoutput.",
            )
            .validated(Validator::one_of(&["pgoutput"])),
        )
        .define(ConfigKey::optional("slot.name", String, Some("debezium"), High, "The replication slot."))
        .define(ConfigKey::optional(
            "slot.drop.on.stop",
            Boolean,
            Some("false"),
            Low,
            "Whether the slot is dropped when the task stops (what it has not sent is then lost).",
        ))
        .define(ConfigKey::optional("publication.name", String, Some("dbz_publication"), High, "The publication."))
        .define(
            ConfigKey::optional(
                "publication.autocreate.mode",
                String,
                Some("all_tables"),
                Medium,
                "all_tables: a missing publication is made FOR ALL TABLES; filtered: for the captured tables; \
                 disabled: it must exist.",
            )
            .validated(Validator::one_of(&["all_tables", "filtered", "disabled"])),
        )
        .define(
            ConfigKey::optional(
                "snapshot.mode",
                String,
                Some("initial"),
                High,
                "initial: the tables' rows first when there are no offsets; initial_only: that, then stop; always: \
                 at every start; when_needed: when there are no offsets or the slot is gone; never / no_data: \
                 changes only.",
            )
            .validated(Validator::one_of(&[
                "initial",
                "initial_only",
                "always",
                "when_needed",
                "never",
                "no_data",
            ])),
        )
        .define(ConfigKey::optional(
            "tombstones.on.delete",
            Boolean,
            Some("true"),
            Medium,
            "Whether a delete event is followed by a tombstone (a null value) for its key.",
        ))
        .define(
            ConfigKey::optional(
                "max.batch.size",
                Int,
                Some("2048"),
                Medium,
                "The most events a poll gives (whole transactions, so a larger one goes whole).",
            )
            .validated(Validator::AtLeast(1.0)),
        )
        .define(
            ConfigKey::optional(
                "status.update.interval.ms",
                Long,
                Some("10000"),
                Low,
                "How often the server hears where the slot may be confirmed, besides its keepalives.",
            )
            .validated(Validator::AtLeast(1.0)),
        )
}

/// What to capture, from the config.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) target: Target,
    pub(super) prefix: String,
    pub(super) include: Vec<Regex>,
    pub(super) exclude: Vec<Regex>,
    pub(super) schemas_in: Vec<Regex>,
    pub(super) schemas_out: Vec<Regex>,
    pub(super) slot: String,
    pub(super) drop_slot: bool,
    pub(super) publication: String,
    pub(super) autocreate: String,
    pub(super) snapshot_mode: String,
    pub(super) tombstones: bool,
    pub(super) max_batch: usize,
    pub(super) status_every: Duration,
}

fn patterns(config: &Config, key: &str) -> Result<Vec<Regex>> {
    config
        .list(key)
        .iter()
        .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| ConnectError::config(key, p, e.to_string())))
        .collect()
}

impl Settings {
    pub(super) fn new(config: &Config) -> Result<Settings> {
        let nonempty = |key: &str| -> Result<std::string::String> {
            let v = config.string(key)?.trim();
            if v.is_empty() {
                return Err(ConnectError::config(key, v, "must not be empty"));
            }
            Ok(v.to_string())
        };
        match config.get("database.sslmode").unwrap_or("disable") {
            "disable" | "prefer" | "allow" => {}
            other => {
                return Err(ConnectError::config(
                    "database.sslmode",
                    other,
                    "Freshet connects to PostgreSQL without TLS yet: disable",
                ))
            }
        }
        let prefix = nonempty("topic.prefix")?;
        if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(ConnectError::config(
                "topic.prefix",
                &prefix,
                "a topic name's characters: letters, digits, '.', '_' and '-'",
            ));
        }
        let plugin = config.get("plugin.name").unwrap_or("pgoutput");
        if plugin != "pgoutput" {
            return Err(ConnectError::config(
                "plugin.name",
                plugin,
                "Freshet reads PostgreSQL's built-in pgoutput plugin only",
            ));
        }
        Ok(Settings {
            target: Target {
                host: nonempty("database.hostname")?,
                port: config.number_or("database.port", 5432u16)?,
                user: nonempty("database.user")?,
                password: config.get("database.password").map(String::from),
                dbname: nonempty("database.dbname")?,
            },
            prefix,
            include: patterns(config, "table.include.list")?,
            exclude: patterns(config, "table.exclude.list")?,
            schemas_in: patterns(config, "schema.include.list")?,
            schemas_out: patterns(config, "schema.exclude.list")?,
            slot: config.get("slot.name").unwrap_or("debezium").to_string(),
            drop_slot: config.boolean("slot.drop.on.stop", false)?,
            publication: config.get("publication.name").unwrap_or("dbz_publication").to_string(),
            autocreate: config.get("publication.autocreate.mode").unwrap_or("all_tables").to_string(),
            snapshot_mode: config.get("snapshot.mode").unwrap_or("initial").to_string(),
            tombstones: config.boolean("tombstones.on.delete", true)?,
            max_batch: config.number_or("max.batch.size", 2048usize)?.max(1),
            status_every: Duration::from_millis(config.number_or("status.update.interval.ms", 10_000u64)?.max(1)),
        })
    }

    /// Whether `schema.table` is captured.
    pub(super) fn captures(&self, schema: &str, table: &str) -> bool {
        let full = format!("{schema}.{table}");
        let any = |list: &[Regex], text: &str| list.iter().any(|r| r.is_match(text));
        (self.schemas_in.is_empty() || any(&self.schemas_in, schema))
            && !any(&self.schemas_out, schema)
            && (self.include.is_empty() || any(&self.include, &full))
            && !any(&self.exclude, &full)
    }

    pub(super) fn partition(&self) -> SourceMap {
        let mut p = SourceMap::new();
        p.insert("server".into(), json!(self.prefix));
        p
    }

    pub(super) fn pg(&self) -> Connection {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&self.target.host)
            .port(self.target.port)
            .user(&self.target.user)
            .dbname(&self.target.dbname)
            .application_name("freshet-cdc")
            .options("-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3");
        if let Some(password) = &self.target.password {
            pg.password(password);
        }
        let target = format!("postgresql://{}:{}/{}", self.target.host, self.target.port, self.target.dbname);
        Connection::to(pg, target)
    }
}
