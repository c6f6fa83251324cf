//! The Parquet lake sink: records in time-partitioned Parquet files committed with their offsets;
//! a task that dies at any step leaves every record in the lake once; records that do not fit go
//! to the dead-letter topic naming why; configs it cannot follow are refused naming the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use freshet_connectors::builtin::ParquetSinkTask;
use freshet_connectors::{Config, ConnectRecord, Schema, SinkRecord, SinkTask, Struct, Type, Value};
use freshet_core::{Substrate, TopicPartition};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value as Json};

use crate::support::*;

/// 2026-12-04T10:00:00Z.
const T0: i64 = 1_796_378_400_000;

/// The click values' schema, as Connect's JSON carries it.
fn click_schema() -> Json {
    json!({"type": "struct", "name": "click", "optional": false, "fields": [
        {"field": "id", "type": "int64", "optional": false},
        {"field": "user", "type": "string", "optional": true},
        {"field": "amount", "type": "double", "optional": true},
        {"field": "at", "type": "int64", "optional": false, "name": "org.apache.kafka.connect.data.Timestamp"}]})
}

fn click(id: i64, at: i64) -> String {
    let user = (id % 3 != 0).then(|| format!("u{}", id % 7));
    json!({"schema": click_schema(), "payload": {"id": id, "user": user, "amount": id as f64 / 4.0, "at": at}})
        .to_string()
}

/// A row read back from the lake: its file (relative to the topic's directory) and columns.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    file: String,
    id: i64,
    at: Option<i64>,
}

/// Every Parquet file under `dir`, relative to it.
fn parquet_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The rows of every committed file of `topic_dir` (the sink's own directory left out), with
/// each file's `freshet.offsets` metadata.
fn lake_rows(topic_dir: &Path) -> (Vec<Row>, BTreeMap<String, String>) {
    let mut rows = Vec::new();
    let mut offsets = BTreeMap::new();
    for file in parquet_files(topic_dir) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(topic_dir.join(&file)).unwrap())
            .unwrap_or_else(|e| panic!("{file} is a whole Parquet file: {e}"));
        let meta = reader.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
        let range = meta.iter().find(|kv| kv.key == "freshet.offsets").and_then(|kv| kv.value.clone());
        offsets.insert(file.clone(), range.unwrap_or_default());
        for batch in reader.build().unwrap() {
            let batch = batch.unwrap();
            let ids = batch.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            let at = batch.column_by_name("at").map(|c| c.as_primitive::<TimestampMillisecondType>().clone());
            for i in 0..batch.num_rows() {
                let at = at.as_ref().filter(|a| a.is_valid(i)).map(|a| a.value(i));
                rows.push(Row { file: file.clone(), id: ids.value(i), at });
            }
        }
    }
    (rows, offsets)
}

/// The directory a time falls in by default: `dt=YYYY-MM-dd/hour=HH`, UTC.
fn hour_dir(ms: i64) -> String {
    let hours = (ms - T0).div_euclid(3_600_000);
    let hour = 10 + hours;
    format!("dt=2026-12-{:02}/hour={:02}", 4 + hour / 24, hour % 24)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_in_time_partitioned_parquet_files_committed_with_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    topic_of(&*substrate, "clicks", 2).await;
    let lake = dir.path().join("lake");
    // 600 clicks, 30 s apart: five hours, over two partitions.
    let mut records = Vec::new();
    for id in 0..600 {
        let at = T0 + id * 30_000;
        let mut r = record("clicks", None, Some(click(id, at)));
        r.partition = Some((id % 2) as u32);
        r.timestamp = Some(at);
        records.push(r);
    }
    send(&*substrate, records).await;
    let running = Running::start(substrate.clone(), &[]).await;
    let config = json!({"connector.class": "ParquetSink", "topics": "clicks", "tasks.max": "2",
        "store.url": format!("file://{}", lake.display()), "flush.size": "40",
        "rotate.schedule.interval.ms": "300", "value.converter": "JsonConverter"});
    create(&running, "lake", config).await;
    wait_offsets(&running, "lake", &[(0, 300), (1, 300)]).await;
    running.shutdown().await;

    let (rows, offsets) = lake_rows(&lake.join("topics/clicks"));
    let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, (0..600).collect::<Vec<_>>(), "every record once");
    for row in &rows {
        let at = row.at.unwrap();
        assert_eq!(at, T0 + row.id * 30_000);
        assert!(row.file.starts_with(&format!("{}/clicks+{}+", hour_dir(at), row.id % 2)), "{row:?}");
    }
    // A file is named by its first offset and holds flush.size records at most.
    for (file, range) in &offsets {
        let (first, last) = range.split_once('-').unwrap();
        let name = Path::new(file).file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(&format!("+{first:0>10}.parquet")), "{file}: {range}");
        let n = rows.iter().filter(|r| &r.file == file).count();
        assert!(n <= 40 && n > 0, "{file} holds {n}");
        assert!(last.parse::<i64>().unwrap() >= first.parse::<i64>().unwrap());
    }
    // Per partition and hour, 60 records: a file of 40 and the rest (in more files if the wall
    // clock closed one early).
    assert!(offsets.len() >= 2 * 5 * 2, "{offsets:?}");
    assert!(parquet_files(&lake.join("topics/_freshet/tmp")).is_empty(), "nothing left unfinished");
}

/// A sink record of the value schema (id, at) at `offset` of partition 0 of `t`.
fn sink_record(schema: &Arc<Schema>, offset: i64) -> SinkRecord {
    let mut value = Struct::new(schema.clone());
    value.put("id", Value::Int64(offset)).unwrap();
    // Two directories written at once: even offsets in one hour, odd ones in the next.
    let at = T0 + (offset % 2) * 3_600_000 + offset;
    value.put("at", Value::Int64(at)).unwrap();
    let mut record = ConnectRecord::new("t", Some(schema.clone()), Value::Struct(value));
    record.timestamp = Some(at);
    SinkRecord { record, original_topic: "t".into(), original_partition: 0, kafka_offset: offset }
}

async fn started(lake: &Path) -> ParquetSinkTask {
    let props = [("store.url", lake.to_str().unwrap()), ("flush.size", "25"), ("topics", "t")];
    let config = Config::from_props(props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    let mut task = ParquetSinkTask::default();
    task.start(&config).await.unwrap();
    task.open(&[TopicPartition::new("t", 0)]).await.unwrap();
    task
}

/// Puts records `from..to` in polls of 30 and asks what may be committed, given they were read.
async fn put(task: &mut ParquetSinkTask, records: &[SinkRecord], from: i64, to: i64) -> i64 {
    let tp = TopicPartition::new("t", 0);
    for chunk in records[from as usize..to as usize].chunks(30) {
        task.put(chunk).await.unwrap();
    }
    task.pre_commit([(tp, to)].into_iter().collect()).await.unwrap()[&TopicPartition::new("t", 0)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_dies_at_any_step_leaves_each_record_in_the_lake_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let schema = Arc::new(Schema::structure([
        ("id".to_string(), Schema::primitive(Type::Int64)),
        ("at".to_string(), Arc::new(Schema::timestamp())),
    ]));
    let records: Vec<SinkRecord> = (0..400).map(|o| sink_record(&schema, o)).collect();
    let commits = lake.join("topics/_freshet/commits/t+0.json");

    // The first task commits some files, then dies with files open (never closed).
    let mut first = started(&lake).await;
    let c1 = put(&mut first, &records, 0, 130).await;
    assert!((100..130).contains(&c1), "the offsets stop at the first record of an open file: {c1}");
    first.put(&records[130..170]).await.unwrap();
    drop(first);
    // What a task killed mid-write leaves: a half file being written.
    let tmp = lake.join("topics/_freshet/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("t+0+0000000100+00000000000000aa.parquet"), b"PAR1 half").unwrap();

    // The next reads again from what was committed, commits, and dies between recording its
    // files and renaming them into place: put back where they were.
    let mut second = started(&lake).await;
    let c2 = put(&mut second, &records, c1, 260).await;
    assert!(c2 > c1);
    drop(second);
    let recorded: Json = serde_json::from_slice(&std::fs::read(&commits).unwrap()).unwrap();
    let renames = recorded["renames"].as_array().unwrap();
    assert_eq!(renames.len(), 6, "{recorded}");
    for rename in renames {
        let at = |key: &str| lake.join(rename[key].as_str().unwrap());
        std::fs::rename(at("to"), at("from")).unwrap();
    }

    // The last finishes the renames, reads again from the first task's offsets (the group's
    // commit of c2 was lost too), skips what the files hold, and stops cleanly.
    let mut last = started(&lake).await;
    assert!(parquet_files(&tmp).is_empty(), "a half file left by a dead task is removed");
    // Each directory's 150 records from offset 100 fill six files of 25: none stays open.
    let end = put(&mut last, &records, c1, 400).await;
    assert_eq!(end, 400);
    last.close(&[TopicPartition::new("t", 0)]).await.unwrap();

    let (rows, _) = lake_rows(&lake.join("topics/t"));
    let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, (0..400).collect::<Vec<_>>(), "each record once, none twice");
    for row in &rows {
        assert!(row.file.starts_with(&hour_dir(row.at.unwrap())), "{row:?}");
    }
    assert!(parquet_files(&tmp).is_empty(), "nothing left unfinished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_do_not_fit_go_to_the_dead_letter_topic_naming_why() {
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    topic(&*substrate, "events").await;
    let lake = dir.path().join("lake");
    let values = [
        Some(json!({"id": 1, "name": "a"})),
        Some(json!({"id": "two", "name": "b"})),
        Some(json!({"name": "c"})),
        None,
        Some(json!({"id": 10_000_000_000i64})),
        Some(json!({"id": 5, "name": "e", "other": true})),
    ];
    let records = values.iter().map(|v| record("events", None, v.as_ref().map(Json::to_string))).collect();
    send(&*substrate, records).await;
    let running = Running::start(substrate.clone(), &[]).await;
    let schema = json!({"type": "struct", "fields": [
        {"field": "id", "type": "int32", "optional": false},
        {"field": "name", "type": "string", "optional": true}]});
    let config = json!({"connector.class": "freshet.connect.ParquetSinkConnector", "topics": "events",
        "store.url": lake.display().to_string(), "partitioner.class":
        "io.confluent.connect.storage.partitioner.DefaultPartitioner", "flush.size": "2",
        "parquet.schema": schema.to_string(), "value.converter": "JsonConverter",
        "value.converter.schemas.enable": "false", "errors.tolerance": "all",
        "errors.deadletterqueue.topic.name": "events-dlq", "errors.deadletterqueue.context.headers.enable": "true"});
    create(&running, "lake", config).await;
    let dead = read(&*substrate, "events-dlq", 4).await;
    let messages: Vec<(&str, &str)> = dead
        .iter()
        .map(|r| (header(r, "__connect.errors.offset"), header(r, "__connect.errors.exception.message")))
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(messages[0].0 == "1" && messages[0].1.contains(r#"field "id" is STRING"#), "{messages:?}");
    assert!(messages[1].0 == "2" && messages[1].1.contains(r#"field "id" is missing"#), "{messages:?}");
    assert!(messages[2].0 == "3" && messages[2].1.contains("tombstone"), "{messages:?}");
    assert!(messages[3].0 == "4" && messages[3].1.contains("out of range"), "{messages:?}");
    wait_committed(&running, "lake", 6).await;
    let (_, status) = running.rest.call("GET", "/connectors/lake/status", None).await;
    assert_eq!(status["tasks"][0]["state"], "RUNNING", "{status}");
    running.shutdown().await;
    let files = parquet_files(&lake.join("topics/events"));
    assert_eq!(files, ["partition=0/events+0+0000000000.parquet"]);
    let file = std::fs::File::open(lake.join("topics/events").join(&files[0])).unwrap();
    let batches: Vec<_> =
        ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(Result::unwrap).collect();
    let ids: Vec<i32> = batches
        .iter()
        .flat_map(|b| b.column_by_name("id").unwrap().as_primitive::<arrow::datatypes::Int32Type>().values().to_vec())
        .collect();
    assert_eq!(ids, [1, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_the_lake_sink_cannot_follow_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let substrate: Arc<dyn Substrate> = Arc::new(log(dir.path()).await);
    let running = Running::start(substrate, &[]).await;
    let lake: PathBuf = dir.path().join("lake");
    let base = json!({"connector.class": "ParquetSink", "topics": "t", "store.url": lake.display().to_string()});
    for (extra, key, says) in [
        (json!({"store.url": "s3://bucket/lake"}), "store.url", "local directories"),
        (json!({"path.format": "'dt'=YYYY-MM-dd/ww"}), "path.format", "'w'"),
        (json!({"path.format": "'dt=YYYY"}), "path.format", "not closed"),
        (json!({"timezone": "Europe/Paris"}), "timezone", "fixed offsets"),
        (json!({"format.class": "io.confluent.connect.s3.format.avro.AvroFormat"}), "format.class", "Parquet"),
        (json!({"partitioner.class": "FieldPartitioner"}), "partition.field.name", "names the value's fields"),
        (json!({"parquet.codec": "lzo"}), "parquet.codec", "lzo"),
        (
            json!({"parquet.schema": "{\"type\": \"struct\", \"fields\": [{\"field\": \"x\"}]}"}),
            "parquet.schema",
            "'type'",
        ),
        (json!({"timestamp.extractor": "RecordField"}), "timestamp.field", "names the field"),
    ] {
        let (status, body) = running.rest.call("PUT", "/connectors/bad/config", Some(with(base.clone(), extra))).await;
        assert_eq!(status, 400, "{key}: {body}");
        let text = body.to_string();
        assert!(text.contains(key) && text.contains(says), "{key}: {says}: {text}");
    }
    running.shutdown().await;
}
