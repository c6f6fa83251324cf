//! The Parquet lake sink: a topic's records as Parquet files in a directory tree (local files
//! through the `object_store` crate), with the config keys of Kafka Connect's storage sinks
//! (`topics.dir`, `flush.size`, `rotate.interval.ms`, `rotate.schedule.interval.ms`,
//! `partitioner.class`, `path.format`, `partition.duration.ms`, `timezone`,
//! `timestamp.extractor`, `parquet.codec`), so their configs carry over.
//!
//! # Layout
//!
//! A record goes to `<store.url>/<topics.dir>/<topic>/<directory>/<topic>+<partition>+<start>.parquet`:
//! the directory is the partitioner's (by default `dt=YYYY-MM-dd/hour=HH` of the record's
//! timestamp, in UTC), and `start` is the offset of the file's first record, zero-padded. Each
//! Kafka partition writes its own files, one open per directory. DataFusion (`CREATE EXTERNAL
//! TABLE ... STORED AS PARQUET LOCATION '<topics.dir>/<topic>'`) and pyarrow read the tree with
//! the directories as partition columns; the sink's own files, under `<topics.dir>/_freshet`,
//! are hidden from both (a leading underscore).
//!
//! # Files are committed with their offsets
//!
//! A file is written to `_freshet/tmp` and closed (rolled) when it holds `flush.size` records,
//! reaches `rotate.size.bytes`, when a record's time is `rotate.interval.ms` past its first, or
//! when it has been open `rotate.schedule.interval.ms` of wall time; a record of a new schema also
//! starts a new file. Closed files are committed in the worker's offset commit (the task's
//! `pre_commit`): first `_freshet/commits/<topic>+<partition>.json` is replaced (and synced) with
//! the last offset in a committed file per directory and the renames about to be done; then each
//! file is renamed into place and synced; only then are the offsets given to the worker, up to the
//! first record still in an open file.
//!
//! After a crash the next task first does the recorded renames whose files are still in
//! `_freshet/tmp`, and removes the rest of the partition's files there (open when it died). The
//! worker gives the records again from the offsets it committed; a record at or below its
//! directory's recorded offset is already in a committed file and is skipped. So a crash leaves
//! no half file in the tree and no record twice, as long as a record lands in the same directory
//! when read again (not so with `timestamp.extractor=Wallclock`).
//!
//! # Records that do not fit
//!
//! A value needs a schema: the converter's (`value.converter.schemas.enable=true`, or a
//! primitive converter), or `parquet.schema` (Connect's JSON schema) to read schemaless JSON by.
//! A record without one, a value the declared schema cannot hold (naming the field), a record
//! without the time the partitioner needs, or a tombstone under `behavior.on.null.values=fail`,
//! is reported to the worker: with `errors.tolerance=all` it goes to the dead-letter topic and the
//! rest are written; otherwise the task fails naming it.

mod columns;
mod partition;
mod settings;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arrow::datatypes::SchemaRef as ArrowSchemaRef;
use async_trait::async_trait;
use freshet_core::TopicPartition;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;
use parquet::file::metadata::KeyValue;

use self::settings::{config_def, Settings};
use self::store::{store_error, Commits, Lake, Rename};
use crate::config::{Config, ConfigDef, ConfigValue, Props};
use crate::connector::{Connector, SinkConnector, SinkTask, SinkTaskContext};
use crate::data::{SchemaRef, Value};
use crate::error::{ConnectError, Result};
use crate::record::{SinkOffsets, SinkRecord};

/// The directory, under `topics.dir`, of the sink's own files.
const OWN_DIR: &str = "_freshet";

/// The Parquet lake sink connector.
#[derive(Debug, Default)]
pub struct ParquetSink {
    props: Props,
}

#[async_trait]
impl Connector for ParquetSink {
    fn config_def(&self) -> ConfigDef {
        config_def()
    }

    fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        super::validation(props, "store.url", |c| Settings::new(c).map(drop))
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        Settings::new(config)?;
        self.props = config.originals().clone();
        Ok(())
    }

    fn task_configs(&self, max_tasks: usize) -> Result<Vec<Props>> {
        // Tasks share the topics' partitions through the consumer group; each writes its own.
        Ok(vec![self.props.clone(); max_tasks.max(1)])
    }
}

impl SinkConnector for ParquetSink {
    fn task(&self) -> Box<dyn SinkTask> {
        Box::<ParquetSinkTask>::default()
    }
}

/// What the lake holds of one Kafka partition, and its files being written.
#[derive(Debug, Default)]
struct Partition {
    /// Per directory, the last offset in a committed file.
    committed: BTreeMap<String, i64>,
    /// Per directory, the file being written.
    open: HashMap<String, OpenFile>,
    /// Closed files, committed at the next offset commit.
    closed: Vec<ClosedFile>,
}

impl Partition {
    /// The first offset not yet in a committed file, given the next offset to read.
    fn durable(&self, next: i64) -> i64 {
        let open = self.open.values().map(|f| f.start);
        let closed = self.closed.iter().map(|f| f.start);
        open.chain(closed).min().map_or(next, |first| first.min(next))
    }
}

/// A row waiting for the file's next batch: the record, and its value when read by the declared
/// schema.
#[derive(Debug)]
struct Row {
    index: usize,
    conformed: Option<Value>,
}

struct OpenFile {
    tmp: Path,
    start: i64,
    last: i64,
    records: u64,
    written: u64,
    first_time: i64,
    opened: Instant,
    schema: SchemaRef,
    arrow: ArrowSchemaRef,
    writer: AsyncArrowWriter<BufWriter>,
    pending: Vec<Row>,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenFile")
            .field("tmp", &self.tmp)
            .field("start", &self.start)
            .field("last", &self.last)
            .finish()
    }
}

#[derive(Debug)]
struct ClosedFile {
    tmp: Path,
    dir: String,
    start: i64,
    last: i64,
}

/// The Parquet lake sink's task.
#[derive(Debug, Default)]
pub struct ParquetSinkTask {
    settings: Option<Arc<Settings>>,
    lake: Option<Lake>,
    context: SinkTaskContext,
    partitions: HashMap<TopicPartition, Partition>,
}

impl ParquetSinkTask {
    fn parts(&self) -> Result<(Arc<Settings>, &Lake)> {
        match (&self.settings, &self.lake) {
            (Some(s), Some(l)) => Ok((s.clone(), l)),
            _ => Err(ConnectError::Task("the lake sink task is used before it started".into())),
        }
    }

    /// Reads what the lake holds of `tp`, and removes its unfinished files.
    async fn load(&mut self, tp: &TopicPartition) -> Result<()> {
        let (settings, lake) = self.parts()?;
        let path = settings.commits(tp);
        let committed = match lake.store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| store_error(format!("reading {path}"), e))?;
                let commits: Commits = serde_json::from_slice(&bytes)
                    .map_err(|e| ConnectError::Task(format!("{path} is not the lake sink's commits file: {e}")))?;
                // The renames of a task that died after recording them.
                lake.apply(&commits.renames).await?;
                commits.committed
            }
            Err(object_store::Error::NotFound { .. }) => BTreeMap::new(),
            Err(e) => return Err(store_error(format!("reading {path}"), e)),
        };
        lake.clear_tmp(&settings.tmp_dir(), &settings.tmp_prefix(tp)).await?;
        self.partitions.insert(tp.clone(), Partition { committed, ..Partition::default() });
        Ok(())
    }

    /// The value to write of `record` and its schema, or why it cannot be written; `None` for a
    /// tombstone ignored.
    fn prepare(settings: &Settings, record: &SinkRecord) -> Result<Option<(SchemaRef, Option<Value>)>> {
        let r = &record.record;
        if r.value.is_null() {
            if settings.ignore_nulls {
                return Ok(None);
            }
            return Err(ConnectError::data(
                "a tombstone (null value); set behavior.on.null.values=ignore to skip tombstones",
            ));
        }
        match (&r.value_schema, &settings.declared) {
            (Some(schema), _) => Ok(Some((schema.clone(), None))),
            (None, Some(declared)) => Ok(Some((declared.clone(), Some(columns::conform(declared, &r.value)?)))),
            (None, None) => Err(ConnectError::data(
                "the value has no schema: use a converter with schemas (value.converter.schemas.enable=true) or \
                 declare one in parquet.schema",
            )),
        }
    }

    /// Opens a file for `dir` of `tp` starting at `record`.
    async fn open_file(
        settings: &Settings,
        lake: &Lake,
        tp: &TopicPartition,
        schema: SchemaRef,
        offset: i64,
        time: i64,
    ) -> Result<OpenFile> {
        let arrow = columns::arrow_schema(&schema)?;
        let tmp = Path::from(format!(
            "{}/{}{offset:0pad$}+{:016x}.parquet",
            settings.tmp_dir(),
            settings.tmp_prefix(tp),
            fastrand::u64(..),
            pad = settings.pad
        ));
        let buffer = BufWriter::new(lake.store.clone(), tmp.clone());
        let writer = AsyncArrowWriter::try_new(buffer, arrow.clone(), Some(settings.properties(tp)))
            .map_err(|e| store_error(format!("starting {tmp}"), e))?;
        Ok(OpenFile {
            tmp,
            start: offset,
            last: offset,
            records: 0,
            written: 0,
            first_time: time,
            opened: Instant::now(),
            schema,
            arrow,
            writer,
            pending: Vec::new(),
        })
    }

    /// Writes a file's pending rows as a batch; rows that do not fit its columns are reported.
    async fn write_pending(context: &SinkTaskContext, file: &mut OpenFile, records: &[SinkRecord]) -> Result<()> {
        if file.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut file.pending);
        fn value<'a>(row: &'a Row, records: &'a [SinkRecord]) -> &'a Value {
            row.conformed.as_ref().unwrap_or(&records[row.index].record.value)
        }
        let values: Vec<&Value> = rows.iter().map(|r| value(r, records)).collect();
        let batch = match columns::batch(&file.arrow, &file.schema, &values) {
            Ok(batch) => batch,
            Err(_) => {
                // One or more rows do not fit: found one by one, and reported.
                let mut fit = Vec::with_capacity(values.len());
                for row in &rows {
                    match columns::batch(&file.arrow, &file.schema, &[value(row, records)]) {
                        Ok(_) => fit.push(value(row, records)),
                        Err(e) => context.report(&records[row.index], e).await?,
                    }
                }
                if fit.is_empty() {
                    return Ok(());
                }
                columns::batch(&file.arrow, &file.schema, &fit)?
            }
        };
        file.writer.write(&batch).await.map_err(|e| store_error(format!("writing {}", file.tmp), e))?;
        file.written += batch.num_rows() as u64;
        Ok(())
    }

    /// Finishes a file: its footer written and the upload complete, in the temporary directory.
    /// A file with no rows is dropped.
    async fn close_file(
        lake: &Lake,
        dir: String,
        mut file: OpenFile,
        records: &[SinkRecord],
        context: &SinkTaskContext,
    ) -> Result<Option<ClosedFile>> {
        Self::write_pending(context, &mut file, records).await?;
        if file.written == 0 {
            let mut buffer = file.writer.into_inner();
            let _ = buffer.abort().await;
            let _ = lake.store.delete(&file.tmp).await;
            return Ok(None);
        }
        file.writer.append_key_value_metadata(KeyValue::new(
            "freshet.offsets".into(),
            format!("{}-{}", file.start, file.last),
        ));
        file.writer.close().await.map_err(|e| store_error(format!("finishing {}", file.tmp), e))?;
        Ok(Some(ClosedFile { tmp: file.tmp, dir, start: file.start, last: file.last }))
    }

    /// Closes the files of `tp` that have been open past `rotate.schedule.interval.ms`.
    async fn close_scheduled(&mut self, records: &[SinkRecord]) -> Result<()> {
        let (settings, _) = self.parts()?;
        let Some(limit) = settings.rotate_schedule else { return Ok(()) };
        let lake = self.lake.as_ref().expect("started");
        for partition in self.partitions.values_mut() {
            let due: Vec<String> =
                partition.open.iter().filter(|(_, f)| f.opened.elapsed() >= limit).map(|(d, _)| d.clone()).collect();
            for dir in due {
                let file = partition.open.remove(&dir).expect("listed");
                if let Some(closed) = Self::close_file(lake, dir, file, records, &self.context).await? {
                    partition.closed.push(closed);
                }
            }
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[async_trait]
impl SinkTask for ParquetSinkTask {
    fn initialize(&mut self, context: SinkTaskContext) {
        self.context = context;
    }

    async fn start(&mut self, config: &Config) -> Result<()> {
        let settings = Settings::new(config)?;
        if !settings.layout.repeatable() {
            tracing::warn!(
                "timestamp.extractor=Wallclock: a record read again after a crash may land in another directory, \
                 and so be written twice"
            );
        }
        self.lake = Some(Lake::open(&settings.root)?);
        self.settings = Some(Arc::new(settings));
        Ok(())
    }

    async fn open(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.load(tp).await?;
        }
        Ok(())
    }

    async fn put(&mut self, records: &[SinkRecord]) -> Result<()> {
        let (settings, _) = self.parts()?;
        let now = now_ms();
        for (index, record) in records.iter().enumerate() {
            let tp = TopicPartition::new(record.original_topic.clone(), record.original_partition);
            if !self.partitions.contains_key(&tp) {
                self.load(&tp).await?;
            }
            let prepared = Self::prepare(&settings, record).and_then(|p| {
                let Some((schema, conformed)) = p else { return Ok(None) };
                let time = settings.layout.time(record, now)?;
                let dir = format!(
                    "{}/{}/{}",
                    settings.topics_dir,
                    record.record.topic,
                    settings.layout.directory(record, time)?
                );
                Ok(Some((schema, conformed, time, dir)))
            });
            let (schema, conformed, time, dir) = match prepared {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(e) => {
                    self.context.report(record, e).await?;
                    continue;
                }
            };
            let lake = self.lake.as_ref().expect("started");
            let partition = self.partitions.get_mut(&tp).expect("loaded");
            if partition.committed.get(&dir).is_some_and(|last| record.kafka_offset <= *last) {
                // Already in a committed file: read again after a crash.
                continue;
            }
            // A new schema, or a record past the file's time, starts a new file.
            let roll = partition.open.get(&dir).is_some_and(|f| {
                let same = Arc::ptr_eq(&f.schema, &schema) || *f.schema == *schema;
                !same || settings.rotate_interval_ms.is_some_and(|i| time >= f.first_time.saturating_add(i))
            });
            if roll {
                let file = partition.open.remove(&dir).expect("open");
                if let Some(closed) = Self::close_file(lake, dir.clone(), file, records, &self.context).await? {
                    partition.closed.push(closed);
                }
            }
            let file = match partition.open.entry(dir.clone()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match Self::open_file(&settings, lake, &tp, schema, record.kafka_offset, time).await {
                        Ok(file) => v.insert(file),
                        Err(e @ ConnectError::Data(_)) => {
                            self.context.report(record, e).await?;
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            file.pending.push(Row { index, conformed });
            file.records += 1;
            file.last = record.kafka_offset;
            if file.records >= settings.flush_size {
                let file = partition.open.remove(&dir).expect("open");
                if let Some(closed) = Self::close_file(lake, dir, file, records, &self.context).await? {
                    partition.closed.push(closed);
                }
            }
        }
        // The rest of each file's rows as one batch; a file grown past its size is closed.
        let lake = self.lake.as_ref().expect("started");
        for partition in self.partitions.values_mut() {
            let mut full = Vec::new();
            for (dir, file) in partition.open.iter_mut() {
                Self::write_pending(&self.context, file, records).await?;
                if file.writer.bytes_written() + file.writer.in_progress_size() >= settings.rotate_bytes {
                    full.push(dir.clone());
                }
            }
            for dir in full {
                let file = partition.open.remove(&dir).expect("open");
                if let Some(closed) = Self::close_file(lake, dir, file, records, &self.context).await? {
                    partition.closed.push(closed);
                }
            }
        }
        self.close_scheduled(records).await
    }

    async fn pre_commit(&mut self, offsets: SinkOffsets) -> Result<SinkOffsets> {
        self.close_scheduled(&[]).await?;
        let settings = self.parts()?.0;
        let lake = self.lake.as_ref().expect("started");
        let mut durable = SinkOffsets::new();
        for (tp, partition) in self.partitions.iter_mut() {
            if partition.closed.is_empty() {
                continue;
            }
            // First the intent, durably: the files' places and the offsets they bring. Then the
            // renames. A task that dies between the two has them done by the next one (`load`).
            let mut committed = partition.committed.clone();
            let mut renames = Vec::new();
            for file in std::mem::take(&mut partition.closed) {
                let name = format!("{}+{}+{:0pad$}.parquet", tp.topic, tp.partition, file.start, pad = settings.pad);
                let to = Path::from(format!("{}/{name}", file.dir));
                renames.push(Rename { from: file.tmp.to_string(), to: to.to_string() });
                let last = committed.entry(file.dir).or_insert(file.last);
                *last = (*last).max(file.last);
            }
            let commits = Commits { topic: tp.topic.clone(), partition: tp.partition, committed, renames };
            let path = settings.commits(tp);
            let json = serde_json::to_vec(&commits).map_err(|e| ConnectError::Task(e.to_string()))?;
            lake.store
                .put(&path, PutPayload::from(json))
                .await
                .map_err(|e| store_error(format!("writing {path}"), e))?;
            lake.sync(&path).await?;
            lake.apply(&commits.renames).await?;
            partition.committed = commits.committed;
        }
        for (tp, next) in offsets {
            let offset = self.partitions.get(&tp).map_or(next, |p| p.durable(next));
            durable.insert(tp, offset);
        }
        Ok(durable)
    }

    fn committed(&mut self, committed: &SinkOffsets) {
        // Directories whose last committed record is below the group's offset are never read
        // again: their entries need not be kept (written with the next commit).
        for (tp, offset) in committed {
            if let Some(partition) = self.partitions.get_mut(tp) {
                partition.committed.retain(|_, last| *last >= *offset);
            }
        }
    }

    async fn close(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            let Some(partition) = self.partitions.remove(tp) else { continue };
            // Files not committed are written again by the partition's next owner.
            for (_, file) in partition.open {
                let mut buffer = file.writer.into_inner();
                let _ = buffer.abort().await;
            }
            if let Ok((settings, lake)) = self.parts() {
                lake.clear_tmp(&settings.tmp_dir(), &settings.tmp_prefix(tp)).await?;
            }
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<()> {
        let all: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        self.close(&all).await
    }
}
