//! Topic configuration (Kafka's names, values and defaults) and the log's own settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batch::{Compression, TimestampType};
use crate::clock::Clock;
use crate::error::{Error, Result};

/// What happens to old segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupPolicy {
    /// Delete whole segments by `retention.ms` and `retention.bytes`.
    pub delete: bool,
    /// Keep the latest record per key.
    pub compact: bool,
}

/// One topic's configuration, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `cleanup.policy`
    pub cleanup_policy: CleanupPolicy,
    /// `compression.type`: the codec batches are stored with, `None` for `producer` (each batch
    /// as its producer compressed it).
    pub compression: Option<Compression>,
    /// `flush.messages`: a partition is fsynced once this many records are written and not yet
    /// synced; `Some(1)` makes every append wait for its fsync, whatever the log's durability.
    /// `None` for the default (never on this account).
    pub flush_messages: Option<u64>,
    /// `flush.ms`: a partition is fsynced once a written record has waited this long for it;
    /// `None` for the default (never on this account).
    pub flush_ms: Option<u64>,
    /// `retention.ms`, `None` for -1 (keep forever).
    pub retention_ms: Option<i64>,
    /// `retention.bytes`, `None` for -1 (no size limit).
    pub retention_bytes: Option<u64>,
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `segment.index.bytes`: a segment rolls when its offset index reaches this size.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u64,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`
    pub timestamp_type: TimestampType,
    /// `delete.retention.ms`: how long tombstones survive compaction.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`
    pub min_cleanable_dirty_ratio: f64,
    /// `min.insync.replicas`: the in-sync replicas an `acks=all` write needs.
    pub min_insync_replicas: i64,
    /// `unclean.leader.election.enable` (the controller decides elections; kept here so a bad
    /// value is refused where every topic config is checked).
    pub unclean_leader_election: bool,
}

/// One entry of a described configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The key.
    pub name: String,
    /// The value in effect.
    pub value: String,
    /// Whether it is the default (`false`: set on the topic).
    pub is_default: bool,
}

struct Key {
    name: &'static str,
    default: &'static str,
    doc: &'static str,
}

const KEYS: &[Key] = &[
    Key { name: "cleanup.policy", default: "delete", doc: "delete, compact, or compact,delete" },
    Key {
        name: "compression.type",
        default: "producer",
        doc: "producer (batches kept as produced), or the codec batches are stored with: uncompressed, gzip, \
              snappy, lz4, zstd",
    },
    Key { name: "delete.retention.ms", default: "86400000", doc: "how long tombstones survive compaction" },
    Key {
        name: "flush.messages",
        default: "9223372036854775807",
        doc: "records written before a partition is fsynced; 1 acknowledges each append after its fsync",
    },
    Key {
        name: "flush.ms",
        default: "9223372036854775807",
        doc: "milliseconds a written record may wait for its partition's fsync",
    },
    Key { name: "index.interval.bytes", default: "4096", doc: "bytes between offset index entries" },
    Key { name: "max.message.bytes", default: "1048588", doc: "largest record batch accepted" },
    Key { name: "message.timestamp.type", default: "CreateTime", doc: "CreateTime or LogAppendTime" },
    Key {
        name: "max.compaction.lag.ms",
        default: "9223372036854775807",
        doc: "records older than this are compacted whatever the dirty share",
    },
    Key { name: "min.cleanable.dirty.ratio", default: "0.5", doc: "dirty share that triggers compaction" },
    Key {
        name: "min.insync.replicas",
        default: "1",
        doc: "in-sync replicas an acks=all write needs, or it is refused (NOT_ENOUGH_REPLICAS)",
    },
    Key { name: "min.compaction.lag.ms", default: "0", doc: "records younger than this are not compacted" },
    Key { name: "retention.bytes", default: "-1", doc: "size limit of a partition, -1 for none" },
    Key { name: "retention.ms", default: "604800000", doc: "age limit of a segment, -1 for none" },
    Key { name: "segment.bytes", default: "1073741824", doc: "size at which a segment rolls" },
    Key { name: "segment.index.bytes", default: "10485760", doc: "offset index size at which a segment rolls" },
    Key { name: "segment.ms", default: "604800000", doc: "age at which a segment rolls" },
    Key {
        name: "unclean.leader.election.enable",
        default: "false",
        doc: "with no in-sync replica live, lead from another replica (losing what only the ISR had) rather than stay offline",
    },
];

impl Default for TopicConfig {
    fn default() -> Self {
        Self::from_overrides(&BTreeMap::new()).expect("defaults are valid")
    }
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig { key: key.to_owned(), value: value.to_owned(), reason: reason.into() }
}

fn parse_i64(key: &str, value: &str, min: i64) -> Result<i64> {
    let v: i64 = value.trim().parse().map_err(|_| invalid(key, value, "not an integer"))?;
    if v < min {
        return Err(invalid(key, value, format!("must be at least {min}")));
    }
    Ok(v)
}

/// The topic keys whose value is a comma-separated list (Kafka's LIST type), which
/// IncrementalAlterConfigs can append to and subtract from.
const LIST_KEYS: &[&str] = &["cleanup.policy"];

impl TopicConfig {
    /// Whether `key`'s value is a comma-separated list.
    pub fn is_list(key: &str) -> bool {
        LIST_KEYS.contains(&key)
    }

    /// The keys a topic accepts, with their defaults and a one-line description.
    pub fn keys() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
        KEYS.iter().map(|k| (k.name, k.default, k.doc))
    }

    /// Checks overrides without building a config: unknown keys and bad values are errors.
    pub fn validate(overrides: &BTreeMap<String, String>) -> Result<()> {
        Self::from_overrides(overrides).map(drop)
    }

    /// Builds a config from Kafka-style overrides on top of the defaults.
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<Self> {
        for key in overrides.keys() {
            if !KEYS.iter().any(|k| k.name == key) {
                return Err(invalid(
                    key,
                    &overrides[key],
                    format!(
                        "unknown topic config; known keys are {}",
                        KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        let get = |name: &str| -> &str {
            overrides
                .get(name)
                .map(String::as_str)
                .unwrap_or_else(|| KEYS.iter().find(|k| k.name == name).expect("known key").default)
        };
        let policy_text = get("cleanup.policy");
        let mut cleanup_policy = CleanupPolicy::default();
        for part in policy_text.split(',').map(str::trim) {
            match part {
                "delete" => cleanup_policy.delete = true,
                "compact" => cleanup_policy.compact = true,
                _ => return Err(invalid("cleanup.policy", policy_text, "expected delete, compact or compact,delete")),
            }
        }
        let compression = match get("compression.type") {
            "producer" => None,
            "uncompressed" => Some(Compression::None),
            "gzip" => Some(Compression::Gzip),
            "snappy" => Some(Compression::Snappy),
            "lz4" => Some(Compression::Lz4),
            "zstd" => Some(Compression::Zstd),
            other => {
                return Err(invalid(
                    "compression.type",
                    other,
                    "expected producer, uncompressed, gzip, snappy, lz4 or zstd",
                ))
            }
        };
        let retention_ms = parse_i64("retention.ms", get("retention.ms"), -1)?;
        let retention_bytes = parse_i64("retention.bytes", get("retention.bytes"), -1)?;
        let segment_bytes = parse_i64("segment.bytes", get("segment.bytes"), 128)?;
        if segment_bytes > i64::from(u32::MAX >> 1) {
            return Err(invalid("segment.bytes", get("segment.bytes"), "must be below 2 GiB"));
        }
        let timestamp_type = match get("message.timestamp.type") {
            "CreateTime" => TimestampType::CreateTime,
            "LogAppendTime" => TimestampType::LogAppendTime,
            other => return Err(invalid("message.timestamp.type", other, "expected CreateTime or LogAppendTime")),
        };
        let ratio_text = get("min.cleanable.dirty.ratio");
        let min_cleanable_dirty_ratio: f64 =
            ratio_text.trim().parse().map_err(|_| invalid("min.cleanable.dirty.ratio", ratio_text, "not a number"))?;
        if !(0.0..=1.0).contains(&min_cleanable_dirty_ratio) {
            return Err(invalid("min.cleanable.dirty.ratio", ratio_text, "must be between 0 and 1"));
        }
        let flush_messages = parse_i64("flush.messages", get("flush.messages"), 1)?;
        let flush_ms = parse_i64("flush.ms", get("flush.ms"), 0)?;
        Ok(TopicConfig {
            cleanup_policy,
            compression,
            flush_messages: (flush_messages < i64::MAX).then_some(flush_messages as u64),
            flush_ms: (flush_ms < i64::MAX).then_some(flush_ms as u64),
            retention_ms: (retention_ms >= 0).then_some(retention_ms),
            retention_bytes: (retention_bytes >= 0).then_some(retention_bytes as u64),
            segment_bytes: segment_bytes as u64,
            segment_ms: parse_i64("segment.ms", get("segment.ms"), 1)?,
            segment_index_bytes: parse_i64("segment.index.bytes", get("segment.index.bytes"), 64)? as u64,
            index_interval_bytes: parse_i64("index.interval.bytes", get("index.interval.bytes"), 0)? as u64,
            max_message_bytes: parse_i64("max.message.bytes", get("max.message.bytes"), 0)? as usize,
            timestamp_type,
            delete_retention_ms: parse_i64("delete.retention.ms", get("delete.retention.ms"), 0)?,
            min_compaction_lag_ms: parse_i64("min.compaction.lag.ms", get("min.compaction.lag.ms"), 0)?,
            max_compaction_lag_ms: parse_i64("max.compaction.lag.ms", get("max.compaction.lag.ms"), 1)?,
            min_cleanable_dirty_ratio,
            min_insync_replicas: parse_i64("min.insync.replicas", get("min.insync.replicas"), 1)?,
            unclean_leader_election: match get("unclean.leader.election.enable").trim() {
                v if v.eq_ignore_ascii_case("true") => true,
                v if v.eq_ignore_ascii_case("false") => false,
                other => return Err(invalid("unclean.leader.election.enable", other, "expected true or false")),
            },
        })
    }

    /// Every key with the value in effect, for `describe`.
    pub fn describe(overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        KEYS.iter()
            .map(|k| match overrides.get(k.name) {
                Some(v) => ConfigEntry { name: k.name.into(), value: v.clone(), is_default: false },
                None => ConfigEntry { name: k.name.into(), value: k.default.into(), is_default: true },
            })
            .collect()
    }
}

/// Kafka's broker settings that set the default of a topic config, and that topic config (Kafka's
/// synonyms), as a broker's config file names them. `log.retention.ms`, `.minutes` and `.hours`, and `log.roll.ms` and
/// `.hours`, are handled apart: the finer unit wins.
pub const BROKER_SYNONYMS: &[(&str, &str)] = &[
    ("log.cleanup.policy", "cleanup.policy"),
    ("compression.type", "compression.type"),
    ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
    ("log.index.interval.bytes", "index.interval.bytes"),
    ("message.max.bytes", "max.message.bytes"),
    ("log.message.timestamp.type", "message.timestamp.type"),
    ("log.cleaner.max.compaction.lag.ms", "max.compaction.lag.ms"),
    ("log.cleaner.min.cleanable.ratio", "min.cleanable.dirty.ratio"),
    ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("unclean.leader.election.enable", "unclean.leader.election.enable"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.index.size.max.bytes", "segment.index.bytes"),
];

/// The broker setting that is the default of topic config `topic_key`, if one is.
pub fn broker_synonym(topic_key: &str) -> Option<&'static str> {
    match topic_key {
        "retention.ms" => Some("log.retention.ms"),
        "segment.ms" => Some("log.roll.ms"),
        _ => BROKER_SYNONYMS.iter().find(|(_, t)| *t == topic_key).map(|(b, _)| *b),
    }
}

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Group commit: an append is acknowledged after an `fdatasync` that covers it. Many appends
    /// share one fsync. Consumers see only acknowledged records.
    Fsync,
    /// Acknowledged once written to the page cache; a background flush runs at this interval.
    /// A machine crash can lose up to one interval of acknowledged appends.
    Interval {
        /// Milliseconds between flushes.
        flush_interval_ms: u64,
    },
    /// Acknowledged once written to the page cache; flushed only when segments roll and on close.
    OsCache,
}

/// Settings of the whole log (one data directory).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Defaults for topics created without an override.
    pub topic_defaults: BTreeMap<String, String>,
    /// Bytes of appends queued (not yet written) across the log before producers wait.
    pub append_queue_bytes: usize,
    /// How often retention and compaction look for work.
    pub maintenance_interval: Duration,
    /// Memory the compactor may use for its key map, in bytes.
    pub cleaner_dedupe_buffer_bytes: usize,
    /// Partitions of the internal `__consumer_offsets` topic.
    pub offsets_topic_partitions: u32,
    /// Where "now" comes from: record timestamps, retention, and the coordinators' timeouts.
    pub clock: Arc<dyn Clock>,
    /// How long a partition remembers an idle producer without an open transaction (Kafka's
    /// `producer.id.expiration.ms`): a retry after that is stored again.
    pub producer_id_expiration_ms: i64,
    /// The most producers one partition remembers: past it, the one idle longest without an open
    /// transaction is forgotten, so clients that churn producer ids cannot grow the state without
    /// bound.
    pub max_producers_per_partition: usize,
    /// The log holds one broker's copies of partitions replicated across a cluster. A copy's
    /// high watermark then starts, on open, where its last checkpoint left it, not at its log
    /// end: the records past it were not known to be on the other in-sync replicas, and neither
    /// this copy, if elected leader, nor its followers may show them before they are. The
    /// replication moves it from there. Off for a log of its own (embedded, or one broker),
    /// where everything stored is the high watermark's.
    pub replicated: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            durability: Durability::Fsync,
            topic_defaults: BTreeMap::new(),
            append_queue_bytes: 64 << 20,
            maintenance_interval: Duration::from_secs(5),
            cleaner_dedupe_buffer_bytes: 64 << 20,
            offsets_topic_partitions: 8,
            clock: crate::clock::system(),
            producer_id_expiration_ms: 86_400_000,
            max_producers_per_partition: 100_000,
            replicated: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], expected_error: Option<&str>) {
        let overrides = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match (TopicConfig::from_overrides(&overrides), expected_error) {
            (Ok(_), None) => {}
            (Err(e), Some(expected)) => assert_eq!(e.to_string(), expected),
            (result, expected) => panic!("{pairs:?}: got {result:?}, expected error {expected:?}"),
        }
    }

    #[test]
    fn configs_are_checked() {
        check(&[("cleanup.policy", "compact,delete")], None);
        check(&[("retention.ms", "-1"), ("retention.bytes", "1000")], None);
        check(
            &[("cleanup.policy", "shred")],
            Some("invalid config cleanup.policy=\"shred\": expected delete, compact or compact,delete"),
        );
        check(&[("retention.ms", "soon")], Some("invalid config retention.ms=\"soon\": not an integer"));
        check(&[("segment.bytes", "10")], Some("invalid config segment.bytes=\"10\": must be at least 128"));
        check(
            &[("message.timestamp.type", "Now")],
            Some("invalid config message.timestamp.type=\"Now\": expected CreateTime or LogAppendTime"),
        );
        let e = TopicConfig::from_overrides(&[("retention.mss".into(), "1".into())].into()).unwrap_err();
        assert!(e.to_string().starts_with("invalid config retention.mss=\"1\": unknown topic config"), "{e}");
    }

    #[test]
    fn describe_lists_every_key_with_its_default() {
        let entries = TopicConfig::describe(&[("retention.ms".into(), "1000".into())].into());
        assert_eq!(entries.len(), KEYS.len());
        let retention = entries.iter().find(|e| e.name == "retention.ms").unwrap();
        assert_eq!((retention.value.as_str(), retention.is_default), ("1000", false));
        let segment = entries.iter().find(|e| e.name == "segment.bytes").unwrap();
        assert_eq!((segment.value.as_str(), segment.is_default), ("1073741824", true));
    }
}
