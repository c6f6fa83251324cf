//! The lake sink's config: its keys, as Kafka Connect's storage sinks name them, and the
//! settings read from them once.

use std::path::PathBuf;
use std::sync::Arc;

use freshet_core::TopicPartition;
use object_store::path::Path;
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::partition::{self, Layout};
use super::{columns, OWN_DIR};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance, Validator};
use crate::data::SchemaRef;
use crate::error::{ConnectError, Result};

/// A row group is written out once its encoded size passes this: what an open file holds in
/// memory.
const ROW_GROUP_BYTES: usize = 32 << 20;

/// The connector's keys.
pub(super) fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    let storage = |k: ConfigKey| k.in_group("Storage");
    let rotation = |k: ConfigKey| k.in_group("Rotation");
    let partitioner = |k: ConfigKey| k.in_group("Partitioner");
    let format = |k: ConfigKey| k.in_group("Format");
    ConfigDef::new()
        .define(storage(ConfigKey::required(
            "store.url",
            String,
            High,
            "Where the lake is: a directory, as a path or a file:// URL; made when missing.",
        )))
        .define(storage(ConfigKey::optional(
            "topics.dir",
            String,
            Some("topics"),
            High,
            "The directory under store.url of the topics' directories.",
        )))
        .define(storage(
            ConfigKey::optional(
                "filename.offset.zero.pad.width",
                Int,
                Some("10"),
                Low,
                "The width a file name's start offset is zero-padded to.",
            )
            .validated(Validator::AtLeast(0.0)),
        ))
        .define(rotation(
            ConfigKey::optional(
                "flush.size",
                Int,
                Some("100000"),
                High,
                "The most records a file holds; it is committed once it has them.",
            )
            .validated(Validator::AtLeast(1.0)),
        ))
        .define(rotation(ConfigKey::optional(
            "rotate.interval.ms",
            Long,
            Some("-1"),
            High,
            "A file is closed when a record's time is this far past its first record's (record time, so files \
             are the same when records are read again); -1: never.",
        )))
        .define(rotation(ConfigKey::optional(
            "rotate.schedule.interval.ms",
            Long,
            Some("-1"),
            Medium,
            "A file is closed once it has been open this long by the wall clock; -1: never.",
        )))
        .define(rotation(
            ConfigKey::optional(
                "rotate.size.bytes",
                Long,
                Some("134217728"),
                Medium,
                "A file is closed once it is this large (encoded, before the footer).",
            )
            .validated(Validator::AtLeast(1.0)),
        ))
        .define(partitioner(ConfigKey::optional(
            "partitioner.class",
            Class,
            Some("TimeBasedPartitioner"),
            High,
            "How directories are named: DefaultPartitioner (partition=N), FieldPartitioner (partition.field.name), \
             TimeBasedPartitioner (path.format), HourlyPartitioner, DailyPartitioner; with or without the \
             io.confluent.connect.storage.partitioner. package.",
        )))
        .define(partitioner(ConfigKey::optional(
            "path.format",
            String,
            Some(partition::DEFAULT_PATH_FORMAT),
            High,
            "The directory of a time bucket, as a Joda-style pattern: y, Y, M, d, D, H, m, s, S, and 'quoted text'.",
        )))
        .define(partitioner(ConfigKey::optional(
            "partition.duration.ms",
            Long,
            None,
            Medium,
            "How long a time bucket is; by default the finest unit path.format writes.",
        )))
        .define(partitioner(ConfigKey::optional(
            "timezone",
            String,
            Some("UTC"),
            Medium,
            "The zone times are written in: UTC or a fixed offset such as +01:00.",
        )))
        .define(partitioner(ConfigKey::optional(
            "locale",
            String,
            Some(""),
            Low,
            "Accepted for carried-over configs; directory names are numbers.",
        )))
        .define(partitioner(ConfigKey::optional(
            "timestamp.extractor",
            String,
            Some("Record"),
            Medium,
            "The time a record is bucketed and rotated by: Record (its timestamp), RecordField (timestamp.field), \
             Wallclock.",
        )))
        .define(partitioner(ConfigKey::optional(
            "timestamp.field",
            String,
            Some(""),
            Medium,
            "The value's field holding the time (a Timestamp or ms), for timestamp.extractor=RecordField; a.b \
             for nested fields.",
        )))
        .define(partitioner(ConfigKey::optional(
            "partition.field.name",
            List,
            Some(""),
            Medium,
            "The value's fields naming the directory, for FieldPartitioner.",
        )))
        .define(format(ConfigKey::optional(
            "format.class",
            Class,
            Some("ParquetFormat"),
            Low,
            "The file format: Parquet (any class named ...ParquetFormat).",
        )))
        .define(format(
            ConfigKey::optional(
                "parquet.codec",
                String,
                Some("snappy"),
                Medium,
                "The files' compression: none, snappy, gzip, lz4, brotli, zstd.",
            )
            .validated(Validator::one_of(&[
                "none",
                "uncompressed",
                "snappy",
                "gzip",
                "lz4",
                "brotli",
                "zstd",
            ])),
        ))
        .define(format(ConfigKey::optional(
            "parquet.schema",
            String,
            None,
            Medium,
            "A schema (Connect's JSON schema, as the JsonConverter writes it) for values without one, such as \
             JSON read with schemas.enable=false.",
        )))
        .define(format(
            ConfigKey::optional(
                "behavior.on.null.values",
                String,
                Some("fail"),
                Low,
                "What a tombstone (a null value) does: fail (reported as a record that does not fit) or ignore.",
            )
            .validated(Validator::one_of(&["fail", "ignore"])),
        ))
}

/// The connector's config, read once.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) root: PathBuf,
    pub(super) topics_dir: String,
    pub(super) pad: usize,
    pub(super) flush_size: u64,
    pub(super) rotate_interval_ms: Option<i64>,
    pub(super) rotate_schedule: Option<std::time::Duration>,
    pub(super) rotate_bytes: usize,
    pub(super) layout: Layout,
    pub(super) codec: Compression,
    pub(super) declared: Option<SchemaRef>,
    pub(super) ignore_nulls: bool,
}

impl Settings {
    pub(super) fn new(config: &Config) -> Result<Settings> {
        let url = config.string("store.url")?.trim();
        let root = match url.strip_prefix("file://") {
            Some(path) if path.starts_with('/') => PathBuf::from(path),
            Some(_) => return Err(ConnectError::config("store.url", url, "a file:// URL names an absolute path")),
            None if url.contains("://") => {
                return Err(ConnectError::config(
                    "store.url",
                    url,
                    "Freshet's lake sink writes to local directories (a path or a file:// URL)",
                ))
            }
            None if url.is_empty() => return Err(ConnectError::config("store.url", url, "names the lake's directory")),
            None => PathBuf::from(url),
        };
        let topics_dir = config.get("topics.dir").unwrap_or("topics").trim_matches('/').to_string();
        if topics_dir.is_empty() || topics_dir.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            return Err(ConnectError::config("topics.dir", &topics_dir, "a relative directory without . or .."));
        }
        let format = config.get("format.class").unwrap_or("ParquetFormat");
        if !format.ends_with("ParquetFormat") {
            return Err(ConnectError::config(
                "format.class",
                format,
                "Freshet's lake sink writes Parquet (ParquetFormat)",
            ));
        }
        let codec = match config.get("parquet.codec").unwrap_or("snappy").to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Compression::UNCOMPRESSED,
            "snappy" => Compression::SNAPPY,
            "gzip" => Compression::GZIP(GzipLevel::default()),
            "lz4" => Compression::LZ4_RAW,
            "brotli" => Compression::BROTLI(BrotliLevel::default()),
            "zstd" => Compression::ZSTD(ZstdLevel::default()),
            other => {
                return Err(ConnectError::config(
                    "parquet.codec",
                    other,
                    "must be none, snappy, gzip, lz4, brotli or zstd",
                ))
            }
        };
        let declared = match config.get("parquet.schema").map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => {
                let json: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| ConnectError::config("parquet.schema", text, format!("not JSON: {e}")))?;
                let schema = crate::converter::json::parse_schema(&json)
                    .map_err(|e| ConnectError::config("parquet.schema", text, e.to_string()))?;
                columns::arrow_schema(&schema)
                    .map_err(|e| ConnectError::config("parquet.schema", text, e.to_string()))?;
                Some(Arc::new(schema))
            }
        };
        let positive =
            |key: &str| -> Result<Option<i64>> { Ok(Some(config.number_or(key, -1i64)?).filter(|v| *v > 0)) };
        Ok(Settings {
            root,
            topics_dir,
            pad: config.number_or("filename.offset.zero.pad.width", 10usize)?.min(19),
            flush_size: config.number_or("flush.size", 100_000u64)?.max(1),
            rotate_interval_ms: positive("rotate.interval.ms")?,
            rotate_schedule: positive("rotate.schedule.interval.ms")?
                .map(|ms| std::time::Duration::from_millis(ms as u64)),
            rotate_bytes: config.number_or("rotate.size.bytes", 128usize << 20)?.max(1),
            layout: Layout::new(config)?,
            codec,
            declared,
            ignore_nulls: config.get("behavior.on.null.values").unwrap_or("fail").eq_ignore_ascii_case("ignore"),
        })
    }

    pub(super) fn properties(&self, tp: &TopicPartition) -> WriterProperties {
        WriterProperties::builder()
            .set_compression(self.codec)
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_created_by(format!("freshet {} (lake sink)", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![
                KeyValue::new("freshet.topic".into(), tp.topic.clone()),
                KeyValue::new("freshet.partition".into(), tp.partition.to_string()),
            ]))
            .build()
    }

    /// Where the sink keeps what it has committed of a partition.
    pub(super) fn commits(&self, tp: &TopicPartition) -> Path {
        Path::from(format!("{}/{OWN_DIR}/commits/{}+{}.json", self.topics_dir, tp.topic, tp.partition))
    }

    /// The prefix of a partition's files being written.
    pub(super) fn tmp_prefix(&self, tp: &TopicPartition) -> String {
        format!("{}+{}+", tp.topic, tp.partition)
    }

    pub(super) fn tmp_dir(&self) -> String {
        format!("{}/{OWN_DIR}/tmp", self.topics_dir)
    }
}
