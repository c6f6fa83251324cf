//! The Datagen source: made-up events for demos, tests and benchmarks, in the manner of
//! Confluent's `kafka-connect-datagen` (its `kafka.topic`, `quickstart`, `max.interval` and
//! `iterations` keys), with Nexmark's auction events and a clickstream as quickstarts.
//!
//! # The events
//!
//! - `nexmark` (the default), `persons`, `auctions`, `bids`: Nexmark's events from the `nexmark`
//!   crate. `nexmark` writes all three kinds to one topic as one flat struct, `event_type` (0 a
//!   person, 1 an auction, 2 a bid, Flink's numbering) beside every kind's fields, those of other
//!   kinds null; persons and auctions share `id`, and all kinds `date_time` and `extra`. Flat
//!   rather than one optional sub-struct per kind because SQL reads a JSON value's top-level
//!   fields as columns: `value.converter.schemas.enable=false` gives the very layout of the Nexmark
//!   benchmark's mixed topic (`runtime/sql/benches/nexmark.rs`), whose views split it by
//!   `event_type`. The other three write one kind, with that kind's fields only. States are upper
//!   case, as Nexmark's Java generator writes them (query 3 looks for `'OR'`, `'ID'`, `'CA'`).
//! - `clickstream`: page views of a web shop: `user_id`, `session_id`, `url`, `referrer` (null
//!   for a direct visit), `user_agent`, `ip`, `status`, `bytes`, `timestamp`.
//!
//! Values are structs with named schemas (`freshet.datagen.nexmark.Bid`, ...), so `JsonConverter`
//! writes its schema envelopes; times are Connect's logical `Timestamp`. The key is a string id:
//! a person's id, an auction's id, a bid's auction, a page view's user. The record's time is the
//! event's.
//!
//! # One sequence, split over tasks, resumed from offsets
//!
//! A connector generates one numbered sequence of events: Nexmark's own (each event a function
//! of its number, so the `nexmark` crate can start anywhere), or page views each drawn from an
//! RNG seeded with `random.seed` and the view's number. With `tasks.max` = n, task i generates
//! the events numbered i, i + n, i + 2n, ...: no event twice, and together the first events of
//! the sequence. `iterations` caps the connector's events, so each task takes its share of them,
//! and a task that has written its share idles, polling nothing, until the connector is stopped.
//!
//! A task keeps its place in the source partition `{"task": i}` as the offset
//! `{"position": p, "tasks": n}`: the events it generated. Started again, it resumes at its
//! stored position, so a restarted connector goes on with the same sequence and `iterations`
//! counts across restarts. The offset's `tasks` says how the sequence was split: with a different
//! `tasks.max`, events would repeat or be left out, so a task refuses to start until `tasks.max` is
//! set back or the offsets are deleted. Nexmark's events also carry the time their timeline
//! started (`base_time_ms`), so that timestamps go on where they stopped rather than start over.
//!
//! # Timestamps and pace
//!
//! Nexmark's timeline runs at the rate the connector is paced at (all tasks together), or at
//! Nexmark's default 10,000 events per second when unpaced, so that an unpaced connector's event
//! times run ahead of the clock. Page views are stamped with the time their batch was generated.
//! `records.per.second` paces each task at a steady rate; `max.interval` as Confluent's connector
//! does, a random wait of up to that many milliseconds before each record. A task that fell more
//! than a second behind its pace (paused, or a slow log) starts its pace over rather than
//! catching up in a burst.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use nexmark::config::NexmarkConfig;
use nexmark::event::{Auction, Bid, Event, EventType, Person};
use nexmark::EventGenerator;
use tokio::time::Instant;

use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props, Validator};
use crate::connector::{Connector, SourceConnector, SourceTask, SourceTaskContext};
use crate::data::{Schema, SchemaRef, Struct, Type, Value};
use crate::error::{ConnectError, Result};
use crate::record::{ConnectRecord, SourceMap, SourceRecord};

mod events;
mod pace;

use self::events::*;
use self::pace::*;
/// How long a poll waits when the task has written its share of `iterations`.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// The longest a poll waits for its next record to fall due (a poll returns within a second).
const MAX_WAIT: Duration = Duration::from_secs(1);

/// How far a paced task may fall behind before it starts its pace over instead of catching up.
const MAX_BEHIND: Duration = Duration::from_secs(1);

/// The task keys the connector adds: the task's number, the number of tasks, and when Nexmark's
/// timeline starts (for tasks with no stored offset).
const TASK_ID: &str = "datagen.task.id";
const TASK_COUNT: &str = "datagen.task.count";
const TASK_BASE_TIME_MS: &str = "datagen.base.time.ms";

/// The quickstarts' names, as `quickstart` takes them.
const QUICKSTARTS: [&str; 5] = ["nexmark", "bids", "persons", "auctions", "clickstream"];

/// The connector's keys.
fn config_def() -> ConfigDef {
    use ConfigType::*;
    use Importance::*;
    ConfigDef::new()
        .define(ConfigKey::optional(
            "kafka.topic",
            String,
            None,
            High,
            "The topic to write to (required; `topic` is taken as another name for it).",
        ))
        .define(ConfigKey::optional("topic", String, None, Low, "Another name for `kafka.topic`."))
        .define(
            ConfigKey::optional(
                "quickstart",
                String,
                Some("nexmark"),
                High,
                "The events to generate: nexmark (Nexmark's persons, auctions and bids in one topic, with an \
                 event_type of 0, 1 or 2), bids, persons, auctions (one kind of Nexmark's events), or \
                 clickstream (page views of a web shop).",
            )
            .validated(Validator::one_of(&QUICKSTARTS)),
        )
        .define(
            ConfigKey::optional(
                "records.per.second",
                Double,
                Some("0"),
                Medium,
                "The records each task generates per second; 0 for as many as the log takes. Not with \
                 max.interval.",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::optional(
                "max.interval",
                Long,
                Some("0"),
                Medium,
                "The longest wait before each record in ms, as Confluent's connector has it: each wait is drawn \
                 between 0 and this. 0 for no wait. Not with records.per.second.",
            )
            .validated(Validator::AtLeast(0.0)),
        )
        .define(
            ConfigKey::optional(
                "iterations",
                Long,
                Some("-1"),
                Medium,
                "The records the connector generates, its tasks' together and across restarts (Confluent's \
                 counts per task); -1 for no end. Once they are written, the tasks idle.",
            )
            .validated(Validator::AtLeast(-1.0)),
        )
        .define(
            ConfigKey::optional("batch.size", Int, Some("1000"), Low, "The most records a task generates per poll.")
                .validated(Validator::AtLeast(1.0)),
        )
        .define(ConfigKey::optional(
            "random.seed",
            Long,
            Some("0"),
            Low,
            "The seed of the clickstream's events and of max.interval's waits: the same seed gives the same \
             events. Nexmark's events depend on their number only, as Nexmark defines them.",
        ))
}

/// The events a connector generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quickstart {
    /// Nexmark's three kinds of event, in one topic.
    Nexmark,
    /// Nexmark's persons.
    Persons,
    /// Nexmark's auctions.
    Auctions,
    /// Nexmark's bids.
    Bids,
    /// A web shop's page views.
    Clickstream,
}

impl Quickstart {
    /// The quickstart `quickstart` names, in any case.
    fn parse(name: &str) -> Option<Quickstart> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "nexmark" => Quickstart::Nexmark,
            "persons" => Quickstart::Persons,
            "auctions" => Quickstart::Auctions,
            "bids" => Quickstart::Bids,
            "clickstream" => Quickstart::Clickstream,
            _ => return None,
        })
    }

    /// The Nexmark events it takes: all (`Some(None)`), one kind, or none (not Nexmark's).
    fn nexmark_kind(self) -> Option<Option<EventType>> {
        match self {
            Quickstart::Nexmark => Some(None),
            Quickstart::Persons => Some(Some(EventType::Person)),
            Quickstart::Auctions => Some(Some(EventType::Auction)),
            Quickstart::Bids => Some(Some(EventType::Bid)),
            Quickstart::Clickstream => None,
        }
    }
}

/// The `kafka.topic` (or `topic`) of `props`, or what is wrong with them.
fn topic_of(props: &Props) -> std::result::Result<String, String> {
    let given = |key: &str| props.get(key).map(|t| t.trim()).filter(|t| !t.is_empty());
    match (given("kafka.topic"), given("topic")) {
        (Some(a), Some(b)) if a != b => {
            Err(format!("kafka.topic is {a:?} but topic is {b:?}: they name the same setting, give one"))
        }
        (Some(t), _) | (None, Some(t)) => Ok(t.to_string()),
        (None, None) => Err("Missing required configuration \"kafka.topic\" which has no default value.".into()),
    }
}

/// A problem with `key`, as the validate endpoint reports it.
fn problem(props: &Props, key: &str, error: String) -> ConfigValue {
    ConfigValue { name: key.into(), value: props.get(key).cloned(), errors: vec![error], password: false }
}

/// The Datagen source connector.
#[derive(Debug, Default)]
pub struct DatagenSource {
    props: Props,
    base_time_ms: u64,
}

#[async_trait]
impl Connector for DatagenSource {
    fn config_def(&self) -> ConfigDef {
        config_def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        let mut problems = Vec::new();
        if let Err(e) = topic_of(props) {
            problems.push(problem(props, "kafka.topic", e));
        }
        let positive = |key: &str| props.get(key).and_then(|v| v.trim().parse::<f64>().ok()).is_some_and(|v| v > 0.0);
        if positive("records.per.second") && positive("max.interval") {
            problems.push(problem(
                props,
                "records.per.second",
                "records.per.second and max.interval both set a pace: set one of them (or 0)".into(),
            ));
        }
        problems
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        self.props = config.originals().clone();
        self.base_time_ms = now_ms() as u64;
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>> {
        Ok((0..max_tasks)
            .map(|i| {
                let mut props = self.props.clone();
                props.insert(TASK_ID.into(), i.to_string());
                props.insert(TASK_COUNT.into(), max_tasks.to_string());
                props.insert(TASK_BASE_TIME_MS.into(), self.base_time_ms.to_string());
                props
            })
            .collect())
    }
}

impl SourceConnector for DatagenSource {
    fn task(&self) -> Box<dyn SourceTask> {
        Box::new(DatagenSourceTask::default())
    }

    fn alter_offsets(&self, _config: &Props, offsets: &[(SourceMap, Option<SourceMap>)]) -> Result<bool> {
        let whole = |map: &SourceMap, key: &str| map.get(key).map(|v| v.as_u64());
        for (partition, offset) in offsets {
            if !matches!(whole(partition, "task"), Some(Some(_))) {
                return Err(ConnectError::data(format!(
                    "A Datagen partition is {{\"task\": N}}, N the task's number from 0, not {}",
                    serde_json::Value::Object(partition.clone())
                )));
            }
            let Some(offset) = offset else { continue };
            if !matches!(whole(offset, "position"), Some(Some(_))) {
                return Err(ConnectError::data(
                    "The value for the 'position' key in the offset is expected to be a non-negative Long value",
                ));
            }
            if matches!(whole(offset, "tasks"), Some(None | Some(0))) {
                return Err(ConnectError::data(
                    "The value for the 'tasks' key in the offset is expected to be a positive Long value",
                ));
            }
            if matches!(whole(offset, "base_time_ms"), Some(None)) {
                return Err(ConnectError::data(
                    "The value for the 'base_time_ms' key in the offset is expected to be a non-negative Long value",
                ));
            }
        }
        Ok(true)
    }
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The source partition of task `index`.
fn partition_of(index: u64) -> SourceMap {
    let mut map = SourceMap::new();
    map.insert("task".into(), index.into());
    map
}

/// A stored offset's field as a non-negative integer; an error naming it when it is not one.
fn offset_field(offset: &SourceMap, key: &str, task: u64) -> Result<Option<u64>> {
    match offset.get(key) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ConnectError::data(format!(
                "the stored offset of Datagen task {task} has {key} {v}, not a non-negative integer: \
                 change it (PATCH /connectors/<name>/offsets) or delete the offsets"
            ))
        }),
    }
}

/// The Datagen source's task.
#[derive(Debug)]
pub struct DatagenSourceTask {
    slice: Slice,
    batch_size: usize,
    /// The events this task generates in all, across restarts (`None`: no end).
    limit: Option<u64>,
    /// The events this task generated, across restarts.
    position: u64,
    generator: Option<Generator>,
    pacer: Pacer,
    partition: SourceMap,
    /// When Nexmark's timeline starts (kept in the offsets).
    base_time_ms: Option<u64>,
    idle_wait: Duration,
    finished: bool,
}

impl Default for DatagenSourceTask {
    fn default() -> Self {
        DatagenSourceTask {
            slice: Slice { index: 0, count: 1 },
            batch_size: 1000,
            limit: None,
            position: 0,
            generator: None,
            pacer: Pacer::Unlimited,
            partition: partition_of(0),
            base_time_ms: None,
            idle_wait: IDLE_WAIT,
            finished: false,
        }
    }
}

impl DatagenSourceTask {
    /// The offset after the events generated so far.
    fn offset(&self) -> SourceMap {
        let mut map = SourceMap::new();
        map.insert("position".into(), self.position.into());
        map.insert("tasks".into(), self.slice.count.into());
        if let Some(base) = self.base_time_ms {
            map.insert("base_time_ms".into(), base.into());
        }
        map
    }

    /// Checks that `offset` was written by as many tasks as there are now.
    fn check_split(&self, offset: &SourceMap, task: u64) -> Result<()> {
        match offset_field(offset, "tasks", task)? {
            Some(tasks) if tasks != self.slice.count => Err(ConnectError::config(
                "tasks.max",
                self.slice.count.to_string(),
                format!(
                    "this Datagen connector's offsets were stored by {tasks} tasks, each generating every \
                     {tasks}th event of its sequence; with {} tasks events would repeat or be skipped. Set \
                     tasks.max back to {tasks}, or stop the connector and delete its offsets \
                     (DELETE /connectors/<name>/offsets) to start the sequence over",
                    self.slice.count
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl SourceTask for DatagenSourceTask {
    async fn start(&mut self, config: &Config, context: SourceTaskContext) -> Result<()> {
        let config = config_def().parse(config.props())?;
        let topic = topic_of(config.props()).map_err(|e| ConnectError::config("kafka.topic", "", e))?;
        let quickstart_name = config.string("quickstart")?;
        let quickstart = Quickstart::parse(quickstart_name).ok_or_else(|| {
            ConnectError::config("quickstart", quickstart_name, format!("not one of {}", QUICKSTARTS.join(", ")))
        })?;
        let index: u64 = config.number_or(TASK_ID, 0)?;
        let count: u64 = config.number_or(TASK_COUNT, 1)?;
        if count == 0 || index >= count {
            return Err(ConnectError::config(TASK_ID, index.to_string(), format!("not a task of {count}")));
        }
        self.slice = Slice { index, count };
        self.partition = partition_of(index);
        self.batch_size = config.number("batch.size")?;
        self.limit = self.slice.share(config.number("iterations")?);
        let seed = config.number::<i64>("random.seed")? as u64;
        let per_second: f64 = config.number("records.per.second")?;
        let max_interval_ms: u64 = config.number("max.interval")?;
        if per_second > 0.0 && max_interval_ms > 0 {
            return Err(ConnectError::config(
                "records.per.second",
                per_second.to_string(),
                "records.per.second and max.interval both set a pace: set one of them (or 0)",
            ));
        }

        // Where to resume, and with which timeline: this task's offset, or task 0's for a task
        // that stored none, or the connector's start.
        let own = context.offset(&self.partition);
        let first = if index == 0 { None } else { context.offset(&partition_of(0)) };
        self.position = 0;
        if let Some(offset) = &own {
            self.check_split(offset, index)?;
            self.position = offset_field(offset, "position", index)?.ok_or_else(|| {
                ConnectError::data(format!("the stored offset of Datagen task {index} has no position: {offset:?}"))
            })?;
        }
        if let Some(offset) = &first {
            self.check_split(offset, 0)?;
        }
        let stored_base = match (&own, &first) {
            (Some(o), _) if o.contains_key("base_time_ms") => offset_field(o, "base_time_ms", index)?,
            (_, Some(o)) => offset_field(o, "base_time_ms", 0)?,
            _ => None,
        };
        let base_time_ms = match stored_base {
            Some(base) => base,
            None => config.number_or(TASK_BASE_TIME_MS, now_ms() as u64)?,
        };
        self.base_time_ms = quickstart.nexmark_kind().map(|_| base_time_ms);

        // Seeds differ per task so that max.interval's waits do.
        self.pacer = Pacer::new(per_second, max_interval_ms, mix(seed ^ mix(index)), Instant::now());
        let events_per_second = match quickstart.nexmark_kind() {
            Some(kind) => timeline_rate(self.pacer.mean_rate(), count, kind),
            None => None,
        };
        self.generator =
            Some(Generator::new(quickstart, &topic, seed, self.slice, self.position, base_time_ms, events_per_second));
        self.finished = false;
        tracing::info!(
            task = index,
            tasks = count,
            quickstart = quickstart_name,
            position = self.position,
            limit = ?self.limit,
            "the Datagen task starts"
        );
        Ok(())
    }

    async fn poll(&mut self) -> Result<Vec<SourceRecord>> {
        let left = self.limit.map_or(u64::MAX, |limit| limit.saturating_sub(self.position));
        if left == 0 {
            if !self.finished {
                self.finished = true;
                tracing::info!(task = self.slice.index, position = self.position, "the Datagen task wrote its share");
            }
            tokio::time::sleep(self.idle_wait).await;
            return Ok(Vec::new());
        }
        let max = left.min(self.batch_size as u64) as usize;
        let mut n = self.pacer.take(Instant::now(), max);
        if n == 0 {
            let now = Instant::now();
            let due = self.pacer.next_due().map_or(now, |due| due.min(now + MAX_WAIT));
            tokio::time::sleep_until(due).await;
            n = self.pacer.take(Instant::now(), max);
            if n == 0 {
                return Ok(Vec::new());
            }
        }
        let generator = self
            .generator
            .as_mut()
            .ok_or_else(|| ConnectError::Task("the Datagen source task was polled before it started".into()))?;
        let now = now_ms();
        let mut records: Vec<SourceRecord> = (0..n)
            .map(|_| SourceRecord {
                source_partition: None,
                source_offset: None,
                record: generator.next_record(now),
                ack: None,
            })
            .collect();
        self.position += n as u64;
        // The worker stores a batch's offsets once the log has taken the whole batch, so the
        // last record's offset is the only one that is ever stored: the others would be maps
        // made for nothing.
        if let Some(last) = records.last_mut() {
            last.source_partition = Some(self.partition.clone());
            last.source_offset = Some(self.offset());
        }
        tracing::debug!(task = self.slice.index, n_records = n, position = self.position, "generated a batch");
        Ok(records)
    }
}

/// The rate of Nexmark's timeline (events of every kind per second) that keeps pace with
/// `tasks` tasks each generating `per_task` events of `kind` (all kinds when `None`) per second:
/// a bids-only connector at 100 bids a second moves the timeline by 100 bids' worth, and the
/// persons and auctions between them. `None` (Nexmark's default rate) when unpaced.
fn timeline_rate(per_task: Option<f64>, tasks: u64, kind: Option<EventType>) -> Option<f64> {
    let c = NexmarkConfig::default();
    let total = (c.person_proportion + c.auction_proportion + c.bid_proportion) as f64;
    let share = match kind {
        None => 1.0,
        Some(EventType::Person) => c.person_proportion as f64 / total,
        Some(EventType::Auction) => c.auction_proportion as f64 / total,
        Some(EventType::Bid) => c.bid_proportion as f64 / total,
    };
    per_task.map(|rate| rate * tasks as f64 / share)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 1_700_000_000_000;

    fn generator(quickstart: Quickstart, seed: u64, slice: Slice, position: u64) -> Generator {
        Generator::new(quickstart, "t", seed, slice, position, BASE, None)
    }

    fn records(g: &mut Generator, n: usize) -> Vec<ConnectRecord> {
        (0..n).map(|i| g.next_record(BASE as i64 + i as i64)).collect()
    }

    fn value(r: &ConnectRecord) -> &Struct {
        match &r.value {
            Value::Struct(s) => s,
            other => panic!("not a struct: {other:?}"),
        }
    }

    const ALL: [Quickstart; 5] =
        [Quickstart::Nexmark, Quickstart::Persons, Quickstart::Auctions, Quickstart::Bids, Quickstart::Clickstream];

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let whole = Slice { index: 0, count: 1 };
        for q in ALL {
            let a = records(&mut generator(q, 7, whole, 0), 300);
            let b = records(&mut generator(q, 7, whole, 0), 300);
            assert_eq!(a, b, "{q:?}");
        }
        let a = records(&mut generator(Quickstart::Clickstream, 7, whole, 0), 50);
        let b = records(&mut generator(Quickstart::Clickstream, 8, whole, 0), 50);
        assert!(a.iter().zip(&b).filter(|(x, y)| x == y).count() < 5, "another seed, other page views");
    }

    #[test]
    fn values_fit_their_schemas_and_keys_and_times_are_the_events() {
        let whole = Slice { index: 0, count: 1 };
        for q in ALL {
            let rs = records(&mut generator(q, 1, whole, 0), 500);
            for r in &rs {
                let s = value(r);
                s.validate().unwrap_or_else(|e| panic!("{q:?}: {e}: {s}"));
                r.value_schema.as_ref().unwrap().validate(&r.value).unwrap();
                let key = r.key.as_str().unwrap();
                let (key_field, time_field) = match (q, s.get("event_type")) {
                    (Quickstart::Nexmark, Some(Value::Int32(0))) => ("id", "date_time"),
                    (Quickstart::Nexmark, Some(Value::Int32(1))) => ("id", "date_time"),
                    (Quickstart::Nexmark, Some(Value::Int32(2))) => ("auction", "date_time"),
                    (Quickstart::Persons | Quickstart::Auctions, _) => ("id", "date_time"),
                    (Quickstart::Bids, _) => ("auction", "date_time"),
                    (Quickstart::Clickstream, _) => ("user_id", "timestamp"),
                    other => panic!("{other:?}"),
                };
                assert_eq!(s.get(key_field).unwrap().as_i64().unwrap().to_string(), key, "{q:?}: {s}");
                assert_eq!(s.get(time_field).unwrap().as_i64(), r.timestamp, "{q:?}");
            }
        }
        // The flat events: each kind's fields where the benchmark's mixed topic has them.
        let rs = records(&mut generator(Quickstart::Nexmark, 0, whole, 0), 50);
        let kinds: Vec<i64> = rs.iter().map(|r| value(r).get("event_type").unwrap().as_i64().unwrap()).collect();
        assert_eq!(&kinds[..4], [0, 1, 1, 1], "Nexmark's order: a person, three auctions, then bids");
        assert!(kinds[4..].iter().all(|k| *k == 2));
        let person = value(&rs[0]);
        assert!(matches!(person.get("state"), Some(Value::String(s)) if s.chars().all(|c| c.is_ascii_uppercase())));
        assert_eq!(person.get("price"), Some(&Value::Null));
        let bid = value(&rs[10]);
        assert!(bid.get("price").unwrap().as_i64().unwrap() > 0 && bid.get("id") == Some(&Value::Null));
        // Without schemas, JSON objects with the columns of the Nexmark benchmark's mixed topic.
        use crate::converter::{Converter as _, JsonConverter};
        let json = JsonConverter::with_schemas(false).encode("t", rs[10].value_schema.as_ref(), &rs[10].value);
        let json: serde_json::Value = serde_json::from_slice(&json.unwrap().unwrap()).unwrap();
        let mut columns: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        columns.sort_unstable();
        let mut mixed = "event_type id name email_address credit_card city state date_time extra item_name \
                         description initial_bid reserve expires seller category auction bidder price channel url"
            .split_whitespace()
            .collect::<Vec<_>>();
        mixed.sort_unstable();
        assert_eq!(columns, mixed);
        assert_eq!((&json["event_type"], &json["id"]), (&serde_json::json!(2), &serde_json::Value::Null));
        let bids = records(&mut generator(Quickstart::Bids, 0, whole, 0), 1);
        assert_eq!(bids[0].value_schema.as_ref().unwrap().name.as_deref(), Some("freshet.datagen.nexmark.Bid"));
    }

    #[test]
    fn tasks_split_the_sequence_without_overlap() {
        for q in ALL {
            let whole = records(&mut generator(q, 3, Slice { index: 0, count: 1 }, 0), 300);
            let parts: Vec<Vec<ConnectRecord>> =
                (0..3).map(|i| records(&mut generator(q, 3, Slice { index: i, count: 3 }, 0), 100)).collect();
            for (n, record) in whole.iter().enumerate() {
                let mine = &parts[n % 3][n / 3];
                // Page views are stamped with the time they are generated.
                let same = if q == Quickstart::Clickstream {
                    value(mine).values[..8] == value(record).values[..8]
                } else {
                    mine == record
                };
                assert!(same, "{q:?}: event {n} is task {}'s {}th", n % 3, n / 3);
            }
        }
    }

    #[test]
    fn a_generator_resumes_at_a_position() {
        for q in ALL {
            let slice = Slice { index: 1, count: 2 };
            let from_start = records(&mut generator(q, 5, slice, 0), 120);
            let resumed = records(&mut generator(q, 5, slice, 100), 20);
            let strip = |r: &ConnectRecord| ConnectRecord { timestamp: None, ..r.clone() };
            if q == Quickstart::Clickstream {
                let fields = |r: &ConnectRecord| value(r).values[..8].to_vec();
                assert_eq!(
                    from_start[100..].iter().map(fields).collect::<Vec<_>>(),
                    resumed.iter().map(fields).collect::<Vec<_>>()
                );
            } else {
                assert_eq!(from_start[100..].to_vec(), resumed, "{q:?}");
                assert_ne!(strip(&from_start[0]), strip(&resumed[0]));
            }
        }
    }

    #[test]
    fn a_paced_timeline_keeps_the_pace() {
        // Two tasks of 50 bids a second: bids 10 ms apart on the timeline, persons and auctions
        // between them.
        let rate = timeline_rate(Some(50.0), 2, Some(EventType::Bid));
        assert!((rate.unwrap() - 100.0 * 50.0 / 46.0).abs() < 1e-9);
        assert_eq!(timeline_rate(None, 2, Some(EventType::Bid)), None);
        let whole = Slice { index: 0, count: 1 };
        let mut g = Generator::new(Quickstart::Bids, "t", 0, whole, 0, BASE, rate);
        let times: Vec<i64> = records(&mut g, 461).iter().map(|r| r.timestamp.unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "bids in time order");
        let span = times[460] - times[0];
        assert!((4_590..=4_610).contains(&span), "460 bids span {span} ms");
        // Unpaced: Nexmark's own 10,000 events a second.
        let mut g = Generator::new(Quickstart::Nexmark, "t", 0, whole, 0, BASE, None);
        let times: Vec<i64> = records(&mut g, 10_001).iter().map(|r| r.timestamp.unwrap()).collect();
        assert_eq!((times[0], times[10_000]), (BASE as i64, BASE as i64 + 1000));
    }

    #[tokio::test]
    async fn a_paced_task_sleeps_until_its_next_record() {
        let t0 = Instant::now();
        let mut task = started(&[("records.per.second", "200")], Vec::new()).await.unwrap();
        assert_eq!(task.poll().await.unwrap().len(), 1, "the first record is due at once");
        let polled = task.poll().await.unwrap();
        assert!(!polled.is_empty() && t0.elapsed() >= Duration::from_millis(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn iterations_are_shared_over_tasks() {
        let share = |index, count, iterations| Slice { index, count }.share(iterations);
        assert_eq!(share(0, 1, -1), None);
        assert_eq!(share(0, 1, 500), Some(500));
        assert_eq!([share(0, 2, 5), share(1, 2, 5)], [Some(3), Some(2)]);
        assert_eq!([share(0, 3, 1), share(1, 3, 1), share(2, 3, 1)], [Some(1), Some(0), Some(0)]);
        assert_eq!(share(0, 4, 0), Some(0));
        for (count, iterations) in [(1, 7), (2, 500), (3, 10), (7, 100), (5, 3)] {
            let total: u64 = (0..count).map(|i| share(i, count, iterations).unwrap()).sum();
            assert_eq!(total, iterations as u64);
            // Each task's last event is below `iterations`, and its next one is not.
            for i in 0..count {
                let n = share(i, count, iterations).unwrap();
                let slice = Slice { index: i, count };
                assert!(n == 0 || slice.event_number(n - 1) < iterations as u64);
                assert!(slice.event_number(n) >= iterations as u64);
            }
        }
    }

    #[test]
    fn a_steady_rate_paces_records_without_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut pacer = Pacer::new(100.0, 0, 0, t0);
        assert_eq!(pacer.take(t0, 1000), 1, "the first record is due at once");
        assert_eq!(pacer.take(t0 + ms(5), 1000), 0);
        assert_eq!(pacer.next_due(), Some(t0 + ms(10)));
        assert_eq!(pacer.take(t0 + ms(10), 1000), 1);
        assert_eq!(pacer.take(t0 + ms(105), 1000), 9, "those due at 20, 30, ..., 100 ms");
        assert_eq!(pacer.take(t0 + ms(500), 3), 3, "at most a batch");
        assert_eq!(pacer.take(t0 + ms(500), 1000), 37);
        // Over a second behind: the pace starts over instead of catching up.
        assert_eq!(pacer.take(t0 + ms(2600), 1000), 1);
        assert_eq!(pacer.next_due(), Some(t0 + ms(2610)));
        assert_eq!(pacer.mean_rate(), Some(100.0));

        let mut unpaced = Pacer::new(0.0, 0, 0, t0);
        assert_eq!((unpaced.take(t0, 1000), unpaced.next_due()), (1000, None));
    }

    #[test]
    fn max_interval_waits_at_most_that_before_each_record() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(0.0, 50, 9, t0);
        let mut now = t0;
        let mut taken = 0;
        let mut waits = Vec::new();
        while taken < 1000 {
            let due = pacer.next_due().unwrap();
            assert!(due >= now && due - now <= Duration::from_millis(50), "a wait of {:?}", due - now);
            waits.push(due - now);
            now = due;
            taken += pacer.take(now, 1);
        }
        let mean = waits.iter().sum::<Duration>() / waits.len() as u32;
        assert!((Duration::from_millis(20)..Duration::from_millis(30)).contains(&mean), "{mean:?}");
        assert_eq!(pacer.mean_rate(), Some(40.0));
    }

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_connector_checks_its_topic_and_pace() {
        let c = DatagenSource::default();
        let errors = |p: &[(&str, &str)]| -> Vec<String> {
            c.validate(&props(p))
                .into_iter()
                .flat_map(|v| v.errors.into_iter().map(move |e| format!("{}: {e}", v.name)))
                .collect()
        };
        assert_eq!(errors(&[("kafka.topic", "t")]), Vec::<String>::new());
        assert_eq!(errors(&[("topic", "t")]), Vec::<String>::new());
        assert_eq!(errors(&[("topic", "t"), ("kafka.topic", "t")]), Vec::<String>::new());
        assert_eq!(
            errors(&[]),
            ["kafka.topic: Missing required configuration \"kafka.topic\" which has no default value."]
        );
        assert!(errors(&[("topic", "a"), ("kafka.topic", "b")])[0].contains("give one"));
        let both = errors(&[("topic", "a"), ("records.per.second", "10"), ("max.interval", "100")]);
        assert!(both[0].starts_with("records.per.second: ") && both[0].contains("max.interval"), "{both:?}");
        assert!(errors(&[("topic", "a"), ("records.per.second", "10"), ("max.interval", "0")]).is_empty());
        let def = config_def();
        let wrong = def.validate(&props(&[("quickstart", "stocks"), ("iterations", "-2")]));
        let wrong: Vec<_> = wrong.iter().filter(|v| !v.errors.is_empty()).map(|v| v.name.as_str()).collect();
        assert_eq!(wrong, ["quickstart", "iterations"]);
    }

    #[test]
    fn offsets_to_write_are_checked() {
        let c = DatagenSource::default();
        let map = |v: serde_json::Value| v.as_object().unwrap().clone();
        let ok = [(map(serde_json::json!({"task": 1})), Some(map(serde_json::json!({"position": 10, "tasks": 2}))))];
        assert!(c.alter_offsets(&Props::new(), &ok).unwrap());
        let reset = [(map(serde_json::json!({"task": 0})), None)];
        assert!(c.alter_offsets(&Props::new(), &reset).unwrap());
        for (partition, offset, says) in [
            (serde_json::json!({"filename": "x"}), serde_json::json!({"position": 1}), "task"),
            (serde_json::json!({"task": 0}), serde_json::json!({"position": -1}), "position"),
            (serde_json::json!({"task": 0}), serde_json::json!({"position": 1, "tasks": 0}), "tasks"),
        ] {
            let err = c.alter_offsets(&Props::new(), &[(map(partition), Some(map(offset)))]).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    /// A task config as the connector makes it, with `stored` as the offsets.
    async fn started(extra: &[(&str, &str)], stored: Vec<(u64, serde_json::Value)>) -> Result<DatagenSourceTask> {
        let mut connector = DatagenSource::default();
        let mut p = props(&[("kafka.topic", "t"), ("quickstart", "bids")]);
        p.extend(props(extra));
        let config = config_def().parse(&p).unwrap();
        connector.start(&config).await.unwrap();
        let count: usize = p.get("tasks.max").map_or(1, |n| n.parse().unwrap());
        let index: usize = p.get("task").map_or(0, |n| n.parse().unwrap());
        let task_props = connector.task_configs(count).unwrap().remove(index);
        let context = SourceTaskContext::new(move |partition| {
            let task = partition.get("task")?.as_u64()?;
            stored.iter().find(|(t, _)| *t == task).map(|(_, o)| o.as_object().unwrap().clone())
        });
        let mut task = DatagenSourceTask { idle_wait: Duration::from_millis(1), ..DatagenSourceTask::default() };
        task.start(&Config::from_props(task_props), context).await?;
        Ok(task)
    }

    #[tokio::test]
    async fn a_task_resumes_from_its_offset_and_stops_at_its_share() {
        let base = serde_json::json!({"position": 3, "tasks": 1, "base_time_ms": BASE});
        let mut task = started(&[("iterations", "5")], vec![(0, base)]).await.unwrap();
        let polled = task.poll().await.unwrap();
        assert_eq!(polled.len(), 2, "events 3 and 4 of 5");
        assert!(polled[0].source_offset.is_none());
        assert_eq!(polled[1].source_partition, Some(partition_of(0)));
        let offset = serde_json::Value::Object(polled[1].source_offset.clone().unwrap());
        assert_eq!(offset, serde_json::json!({"position": 5, "tasks": 1, "base_time_ms": BASE}));
        let expected = records(&mut generator(Quickstart::Bids, 0, Slice { index: 0, count: 1 }, 0), 5);
        assert_eq!(polled.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), expected[3..].to_vec());
        assert!(task.poll().await.unwrap().is_empty(), "its share is written");

        // Task 1 of 2, with no offset of its own, takes the timeline task 0 stored.
        let first = serde_json::json!({"position": 7, "tasks": 2, "base_time_ms": BASE});
        let mut task =
            started(&[("tasks.max", "2"), ("task", "1"), ("batch.size", "4")], vec![(0, first)]).await.unwrap();
        let polled = task.poll().await.unwrap();
        let expected = records(&mut generator(Quickstart::Bids, 0, Slice { index: 1, count: 2 }, 0), 4);
        assert_eq!(polled.into_iter().map(|r| r.record).collect::<Vec<_>>(), expected);
    }

    #[tokio::test]
    async fn a_task_refuses_offsets_of_another_split() {
        let stored = serde_json::json!({"position": 3, "tasks": 2});
        let err = started(&[("tasks.max", "3")], vec![(0, stored.clone())]).await.unwrap_err();
        assert!(err.to_string().contains("stored by 2 tasks"), "{err}");
        let err = started(&[("tasks.max", "3"), ("task", "2")], vec![(0, stored)]).await.unwrap_err();
        assert!(err.to_string().contains("tasks.max back to 2"), "{err}");
    }
}
