//! The runtime on the embedded log, end to end: a stateful application over several partitions
//! and threads, a restart that resumes from committed offsets and restored stores, poison
//! records to a dead-letter topic, and a process killed mid-stream whose successor loses no
//! committed update.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use freshet_core::config::LogConfig;
use freshet_core::Isolation;
use freshet_core::{
    Admin, Consumer, ConsumerConfig, ConsumerRecord, Embedded, NewTopic, Producer, ProducerRecord, TopicPartition,
};
use freshet_dsl::{
    Consumed, Grouped, KStream, Materialized, Processor, ProcessorContext, Produced, Record, Serdes, StreamsBuilder,
    Topology,
};
use freshet_runtime::{ErrorPolicy, ProcessingGuarantee, StreamsApp, StreamsConfig, StreamsState};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn open_log(rt: &Runtime, dir: &Path) -> Embedded {
    // Events carry their ids as timestamps (1970): retention would delete them at the first
    // maintenance, so there is none during a test.
    let config = LogConfig { maintenance_interval: Duration::from_secs(3600), ..LogConfig::default() };
    rt.block_on(Embedded::open(dir.join("log"), config)).unwrap()
}

fn create(rt: &Runtime, log: &Embedded, topic: &str, n: u32) {
    let new = NewTopic { name: topic.into(), n_partitions: n, configs: BTreeMap::new() };
    rt.block_on(log.admin().create_topic(new)).unwrap();
}

fn produce(rt: &Runtime, log: &Embedded, topic: &str, records: &[(&str, &str, i64)]) {
    let records = records
        .iter()
        .map(|(k, v, ts)| ProducerRecord {
            topic: topic.into(),
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: Some(*ts),
            ..Default::default()
        })
        .collect();
    rt.block_on(log.producer().send(records)).unwrap();
}

/// Every record of `topic` with its partition (read until a poll finds nothing new), waiting
/// until there are at least `at_least`.
fn read_all(rt: &Runtime, log: &Embedded, topic: &str, at_least: usize) -> Vec<(u32, ConsumerRecord)> {
    read_all_at(rt, log, topic, at_least, Isolation::ReadUncommitted)
}

/// `read_all` at an isolation level.
fn read_all_at(
    rt: &Runtime,
    log: &Embedded,
    topic: &str,
    at_least: usize,
    isolation: Isolation,
) -> Vec<(u32, ConsumerRecord)> {
    let (d, _) = rt.block_on(log.admin().describe_topic(topic)).unwrap();
    let mut consumer = log.consumer(ConsumerConfig { isolation, ..ConsumerConfig::default() });
    let tps: Vec<TopicPartition> = (0..d.n_partitions).map(|p| TopicPartition::new(topic, p)).collect();
    rt.block_on(consumer.assign(tps)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let before = out.len();
        for b in rt.block_on(consumer.poll(Duration::from_millis(50))).unwrap() {
            out.extend(b.records().unwrap().into_iter().map(|r| (b.tp.partition, r)));
        }
        if out.len() == before && out.len() >= at_least {
            break;
        }
    }
    assert!(out.len() >= at_least, "{topic}: {} records after a minute, wanted {at_least}", out.len());
    out
}

fn text(b: &Option<Bytes>) -> String {
    String::from_utf8(b.as_deref().unwrap_or_default().to_vec()).unwrap()
}

fn count(b: &Option<Bytes>) -> i64 {
    i64::from_be_bytes(b.as_deref().unwrap().try_into().unwrap())
}

fn config(dir: &Path, app: &str) -> StreamsConfig {
    let mut config = StreamsConfig::new(app).unwrap();
    config.state_dir = dir.join("state");
    config.commit_interval = Duration::from_millis(50);
    config.poll_wait = Duration::from_millis(10);
    config
}

fn word_count() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(Serdes::string(), Serdes::string()))
        .flat_map_values(|l: &String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, w| w.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::named("counts"))
        .to_stream()
        .to("word-counts", Produced::with(Serdes::string(), Serdes::i64().nullable()));
    builder.build().unwrap()
}

/// The last count per word in `word-counts`.
fn final_counts(records: &[(u32, ConsumerRecord)]) -> BTreeMap<String, i64> {
    records.iter().map(|(_, r)| (text(&r.key), count(&r.value))).collect()
}

#[test]
fn a_stateful_application_runs_on_the_embedded_log_and_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "lines", 3);
    produce(&rt, &log, "lines", &[("a", "red green", 1), ("b", "green blue", 2), ("c", "red red", 3)]);

    let states = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut config = config(dir.path(), "wc");
    config.num_stream_threads = 2;
    let mut app = StreamsApp::new(word_count(), log.clone(), config.clone(), rt.handle().clone()).unwrap();
    let seen = states.clone();
    app.set_state_listener(move |new, _old| seen.lock().unwrap().push(new));
    app.start().unwrap();
    app.wait_until_running(Duration::from_secs(30)).unwrap();
    let out = read_all(&rt, &log, "word-counts", 6);
    assert_eq!(final_counts(&out), BTreeMap::from([("blue".into(), 1), ("green".into(), 2), ("red".into(), 3)]));
    // The repartition topic is the application's, sized like its input.
    let (repartition, _) = rt.block_on(log.admin().describe_topic("wc-counts-repartition")).unwrap();
    assert_eq!(repartition.n_partitions, 3);
    let metrics = app.metrics();
    assert!(metrics.records_in >= 9 && metrics.records_out >= 6, "{metrics:?}");
    app.close().unwrap();
    assert_eq!(
        *states.lock().unwrap(),
        [StreamsState::Rebalancing, StreamsState::Running, StreamsState::PendingShutdown, StreamsState::NotRunning]
    );

    // Restarted, it resumes: nothing is counted twice, the counts go on from the stores.
    produce(&rt, &log, "lines", &[("d", "blue red", 4)]);
    let mut app = StreamsApp::new(word_count(), log.clone(), config, rt.handle().clone()).unwrap();
    app.start().unwrap();
    app.wait_until_running(Duration::from_secs(30)).unwrap();
    let out = read_all(&rt, &log, "word-counts", 8);
    assert_eq!(out.len(), 8, "only the new line's words are counted again");
    assert_eq!(final_counts(&out), BTreeMap::from([("blue".into(), 2), ("green".into(), 2), ("red".into(), 4)]));
    // The stores came back from their RocksDB checkpoints, not from the whole changelog.
    let restored: u64 = app.metrics().restores.iter().map(|r| r.n_records).sum();
    assert_eq!(restored, 0, "{:?}", app.metrics().restores);
    app.close().unwrap();
}

/// Fails on values that say `poison`.
struct Picky;

impl Processor<String, String, String, String> for Picky {
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> freshet_dsl::Result<()> {
        if r.value.contains("poison") {
            return Err(freshet_dsl::Error::Process(format!("cannot handle {:?}", r.value)));
        }
        let upper = r.value.to_uppercase();
        ctx.forward(r.with_value(upper))
    }
}

#[test]
fn poison_records_go_to_the_dead_letter_topic_with_their_provenance_and_processing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "in", 1);
    let builder = StreamsBuilder::new();
    let numbers: KStream<String, i64> = builder.stream("in", Consumed::with(Serdes::string(), Serdes::i64()));
    numbers
        .map_values(|n| format!("n={n}"))
        .process(|| Picky)
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let mut config = config(dir.path(), "picky");
    config.on_deserialization_error = ErrorPolicy::DeadLetter("dlq".into());
    config.on_processing_error = ErrorPolicy::DeadLetter("dlq".into());
    let number = |n: i64| Bytes::copy_from_slice(&n.to_be_bytes());
    let records = vec![
        ProducerRecord { topic: "in".into(), key: Some("a".into()), value: Some(number(1)), ..Default::default() },
        ProducerRecord { topic: "in".into(), key: Some("b".into()), value: Some("xyz".into()), ..Default::default() },
        ProducerRecord { topic: "in".into(), key: Some("c".into()), value: Some(number(2)), ..Default::default() },
    ];
    rt.block_on(log.producer().send(records)).unwrap();
    let mut app = StreamsApp::new(builder.build().unwrap(), log.clone(), config, rt.handle().clone()).unwrap();
    app.start().unwrap();
    let out = read_all(&rt, &log, "out", 2);
    let values: Vec<String> = out.iter().map(|(_, r)| text(&r.value)).collect();
    assert_eq!(values, ["N=1", "N=2"]);
    let dead = read_all(&rt, &log, "dlq", 1);
    let (_, letter) = &dead[0];
    assert_eq!(text(&letter.key), "b");
    assert_eq!(text(&letter.value), "xyz", "the record as it was read");
    let header = |k: &str| letter.headers.iter().find(|h| h.key == k).map(|h| text(&h.value)).unwrap_or_default();
    assert_eq!(
        (header("freshet.source.topic"), header("freshet.source.partition"), header("freshet.source.offset")),
        ("in".into(), "0".into(), "1".into())
    );
    assert!(
        header("freshet.error").contains("cannot deserialize the value of the record at in-0 offset 1"),
        "{}",
        header("freshet.error")
    );
    assert_eq!(app.metrics().records_skipped, 1);
    assert_eq!(app.state(), StreamsState::Running);
    app.close().unwrap();
}

#[test]
fn a_failing_record_stops_the_application_with_the_error_when_the_policy_says_fail() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "in", 1);
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
        .process(|| Picky)
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    produce(&rt, &log, "in", &[("a", "fine", 1), ("b", "poison", 2)]);
    let mut app =
        StreamsApp::new(builder.build().unwrap(), log.clone(), config(dir.path(), "strict"), rt.handle().clone())
            .unwrap();
    app.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.state() != StreamsState::Error && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let error = app.error().unwrap();
    assert!(error.contains("in-0 offset 1") && error.contains("cannot handle \"poison\""), "{error}");
    assert!(app.close().is_err());

    // A source topic that does not exist is refused at start, naming it.
    let builder = StreamsBuilder::new();
    builder.stream("missing", Consumed::with(Serdes::string(), Serdes::string()));
    let mut app =
        StreamsApp::new(builder.build().unwrap(), log.clone(), config(dir.path(), "nothing"), rt.handle().clone())
            .unwrap();
    let err = app.start().unwrap_err().to_string();
    assert!(err.contains("source topic missing does not exist"), "{err}");
    assert_eq!(app.state(), StreamsState::Error);
}

const N_EVENTS: i64 = 4_000;
const N_KEYS: i64 = 20;
const CRASH_ENV: &str = "FRESHET_RUNTIME_CRASH_DIR";
/// Set: the crash victim runs exactly-once.
const CRASH_EOS_ENV: &str = "FRESHET_RUNTIME_CRASH_EOS";

/// Every event id seen per key (so a replay after a crash changes nothing), and a plain count
/// (which a replay may raise, never lower).
fn seen_ids() -> Topology {
    let builder = StreamsBuilder::new();
    let events = builder.stream("events", Consumed::with(Serdes::string(), Serdes::string()));
    let grouped = events.group_by_key(Grouped::with(Serdes::string(), Serdes::string()));
    grouped
        .aggregate(
            Vec::new,
            |_, id, mut ids: Vec<i64>| {
                let id: i64 = id.parse().unwrap();
                if let Err(at) = ids.binary_search(&id) {
                    ids.insert(at, id);
                }
                ids
            },
            Serdes::json(),
            Materialized::named("ids"),
        )
        .to_stream()
        .map_values(|ids| ids.as_ref().map_or(0, |v| v.len() as i64))
        .to("distinct", Produced::with(Serdes::string(), Serdes::i64()));
    grouped
        .count(Materialized::named("count"))
        .to_stream()
        .to("counts", Produced::with(Serdes::string(), Serdes::i64().nullable()));
    builder.build().unwrap()
}

/// The events `from..to`: key `k<id % N_KEYS>`, value the id, timestamp the id.
fn produce_events(rt: &Runtime, log: &Embedded, from: i64, to: i64) {
    let events: Vec<(String, String, i64)> =
        (from..to).map(|i| (format!("k{}", i % N_KEYS), i.to_string(), i)).collect();
    let chunk: Vec<(&str, &str, i64)> = events.iter().map(|(k, v, t)| (k.as_str(), v.as_str(), *t)).collect();
    produce(rt, log, "events", &chunk);
}

/// Every key's number of the events `0..n` (see `produce_events`).
fn expected_counts(n: i64) -> BTreeMap<String, i64> {
    let mut expected = BTreeMap::new();
    for i in 0..n {
        *expected.entry(format!("k{}", i % N_KEYS)).or_default() += 1;
    }
    expected
}

/// The last count per key in `topic`, once it equals `expected` (or `timeout` passed).
fn wait_for_counts(
    rt: &Runtime,
    log: &Embedded,
    topic: &str,
    expected: &BTreeMap<String, i64>,
    timeout: Duration,
) -> BTreeMap<String, i64> {
    let deadline = Instant::now() + timeout;
    loop {
        let last: BTreeMap<String, i64> =
            read_all(rt, log, topic, 0).iter().map(|(_, r)| (text(&r.key), count(&r.value))).collect();
        if last == *expected || Instant::now() > deadline {
            return last;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The application killed mid-stream: runs while it writes the events, 50 at a time, until its
/// parent kills it.
#[test]
#[allow(clippy::print_stdout)] // the parent waits for "running" on stdout
fn crash_victim_process() {
    let Some(dir) = std::env::var_os(CRASH_ENV) else { return };
    let dir = Path::new(&dir);
    let rt = runtime();
    let log = open_log(&rt, dir);
    let mut config = config(dir, "crash");
    if std::env::var_os(CRASH_EOS_ENV).is_some() {
        config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    }
    let mut app = StreamsApp::new(seen_ids(), log.clone(), config, rt.handle().clone()).unwrap();
    app.start().unwrap();
    app.wait_until_running(Duration::from_secs(60)).unwrap();
    println!("running");
    for from in (0..N_EVENTS).step_by(50) {
        produce_events(&rt, &log, from, from + 50);
        std::thread::sleep(Duration::from_millis(5));
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs the crash victim (exactly-once or not) in a process, kills it at a random moment,
/// writes the rest of the events and runs the application again to the end. Returns the last
/// `distinct` and `counts` per key, every `counts` update in order (read at the isolation the
/// guarantee implies), the expected count per key, and what happened before the kill.
#[allow(clippy::type_complexity)]
fn killed_mid_stream(
    guarantee: ProcessingGuarantee,
) -> (BTreeMap<String, i64>, BTreeMap<String, i64>, Vec<(String, i64)>, BTreeMap<String, i64>, String) {
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = runtime();
        let log = open_log(&rt, dir.path());
        create(&rt, &log, "events", 2);
        rt.block_on(log.close()).unwrap();
    }
    // Kill it at a random moment after it starts running.
    let mut victim = Command::new(std::env::current_exe().unwrap());
    victim
        .args(["--exact", "app::crash_victim_process", "--nocapture", "--test-threads", "1"])
        .env(CRASH_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let isolation = match guarantee {
        ProcessingGuarantee::ExactlyOnce => {
            victim.env(CRASH_EOS_ENV, "1");
            Isolation::ReadCommitted
        }
        _ => Isolation::ReadUncommitted,
    };
    let mut child = victim.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // (The test harness prints the test's name on the same line first.)
    assert!(lines.any(|l| l.is_ok_and(|l| l.ends_with("running"))), "the victim starts");
    std::thread::sleep(Duration::from_millis(random_ms()));
    child.kill().unwrap();
    child.wait().unwrap();

    let rt = runtime();
    let log = open_log(&rt, dir.path());
    let processed_before = read_all(&rt, &log, "distinct", 0).len();
    // The rest of the events, then the truth: what the topic holds.
    let written: Vec<i64> =
        read_all(&rt, &log, "events", 0).iter().map(|(_, r)| text(&r.value).parse().unwrap()).collect();
    let next = written.iter().max().map_or(0, |m| m + 1);
    produce_events(&rt, &log, next, N_EVENTS);
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for (_, r) in read_all(&rt, &log, "events", 0) {
        *expected.entry(text(&r.key)).or_default() += 1;
    }
    let mut config = config(dir.path(), "crash");
    config.processing_guarantee = guarantee;
    let mut app = StreamsApp::new(seen_ids(), log.clone(), config, rt.handle().clone()).unwrap();
    app.start().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let last = |topic: &str| -> BTreeMap<String, i64> {
        read_all_at(&rt, &log, topic, 0, isolation).iter().map(|(_, r)| (text(&r.key), count(&r.value))).collect()
    };
    while last("distinct") != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    app.close().unwrap();
    let updates: Vec<(String, i64)> =
        read_all_at(&rt, &log, "counts", 0, isolation).iter().map(|(_, r)| (text(&r.key), count(&r.value))).collect();
    let ctx = format!("killed after {processed_before} updates, {} events written", written.len());
    (last("distinct"), last("counts"), updates, expected, ctx)
}

#[test]
fn an_application_killed_mid_stream_loses_no_committed_update() {
    let (distinct, counts, _, expected, ctx) = killed_mid_stream(ProcessingGuarantee::AtLeastOnce);
    assert_eq!(distinct, expected, "every key saw each of its events ({ctx})");
    for (key, n) in &expected {
        assert!(counts[key] >= *n, "a replay may count twice, never lose: {key} {} < {n} ({ctx})", counts[key]);
    }
    eprintln!("{ctx}");
}

#[test]
fn an_exactly_once_application_killed_mid_stream_counts_every_event_once() {
    let (distinct, counts, updates, expected, ctx) = killed_mid_stream(ProcessingGuarantee::ExactlyOnce);
    assert_eq!(distinct, expected, "every key saw each of its events ({ctx})");
    assert_eq!(counts, expected, "a plain count is exact: nothing was counted twice ({ctx})");
    // Read committed, each key's counts only go up: no update of an aborted transaction shows.
    let mut seen: BTreeMap<&str, i64> = BTreeMap::new();
    for (key, n) in &updates {
        let before = seen.insert(key, *n).unwrap_or(0);
        assert!(*n > before, "{key}: count {n} after {before} ({ctx})");
    }
    eprintln!("{ctx}");
}

/// A pause of 20 to 300 ms, different on each run.
fn random_ms() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    20 + u64::from(nanos) % 280
}

/// `n` instances share `events` (`2 * n` partitions); the second dies mid-stream; the others take
/// over. Returns the records the survivors restored and the records the changelogs hold.
fn instances_one_dies(n: usize, standby_replicas: usize) -> (u64, u64) {
    let n_partitions = 2 * n as u32;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "events", n_partitions);
    let substrate = log.clone();
    let instance = |name: &str| {
        // Each instance keeps its stores in its own directory, as on its own machine.
        let mut config = config(&dir.path().join(name), "shared");
        config.num_stream_threads = 1;
        config.num_standby_replicas = standby_replicas;
        let mut app = StreamsApp::new(seen_ids(), substrate.clone(), config, rt.handle().clone()).unwrap();
        app.start().unwrap();
        app
    };
    let mut apps: Vec<StreamsApp> = (0..n).map(|i| instance(&format!("i{i}"))).collect();
    for app in &apps {
        app.wait_until_running(Duration::from_secs(30)).unwrap();
    }
    let records_in = |apps: &[StreamsApp]| apps.iter().map(|a| a.metrics().records_in).sum::<u64>();
    let restored = |apps: &[StreamsApp]| -> u64 {
        apps.iter().map(|a| a.metrics().restores.iter().map(|r| r.n_records).sum::<u64>()).sum()
    };
    // The first half of the events, with both running.
    for from in (0..N_EVENTS / 2).step_by(100) {
        produce_events(&rt, &log, from, from + 100);
        std::thread::sleep(Duration::from_millis(2));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while records_in(&apps) < N_EVENTS as u64 / 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before: Vec<u64> = apps.iter().map(|a| a.metrics().records_in).collect();
    assert!(before.iter().all(|&n| n > 0), "every instance works: {before:?} records");
    // A few commit intervals: the victim commits what it did, the standby copies catch up.
    std::thread::sleep(Duration::from_millis(300));
    // The second instance dies without committing; the others take its tasks over, restore
    // their stores and go on.
    let victim = apps.remove(1);
    let restored_before = restored(&apps);
    victim.kill();
    for from in (N_EVENTS / 2..N_EVENTS).step_by(100) {
        produce_events(&rt, &log, from, from + 100);
    }
    let expected = expected_counts(N_EVENTS);
    let finals = wait_for_counts(&rt, &log, "distinct", &expected, Duration::from_secs(120));
    assert_eq!(finals, expected, "every key saw each of its events (read before the death: {before:?})");
    assert!(apps.iter().all(|a| a.state() == StreamsState::Running));
    let restored = restored(&apps) - restored_before;
    let mut changelog = 0u64;
    for store in ["ids", "count"] {
        for p in 0..n_partitions {
            let tp = TopicPartition::new(format!("shared-{store}-changelog"), p);
            changelog += rt
                .block_on(log.admin().list_offset(&tp, freshet_core::OffsetSpec::Latest))
                .unwrap()
                .map_or(0, |o| o.0 as u64);
        }
    }
    for app in apps {
        app.close().unwrap();
    }
    (restored, changelog)
}

#[test]
fn two_instances_share_the_tasks_and_one_takes_over_when_the_other_dies() {
    let (restored, changelog) = instances_one_dies(2, 0);
    assert!(restored > 0, "A restored B's stores from their changelogs ({changelog} records in them)");
}

#[test]
fn with_a_standby_replica_a_task_that_moves_restores_only_the_tail() {
    let (restored, changelog) = instances_one_dies(2, 1);
    // Without the warm copy, A would restore B's half of the changelogs (about half of these).
    assert!(restored * 10 < changelog, "A restored {restored} of {changelog} changelog records");
}

#[test]
fn with_three_instances_a_moved_task_lands_where_its_warm_copy_is() {
    let (restored, changelog) = instances_one_dies(3, 1);
    // The dead instance's two tasks go to two different survivors: each must hold that task's
    // copy, or it restores the task's whole changelog (about a sixth of these).
    assert!(restored * 20 < changelog, "the survivors restored {restored} of {changelog} changelog records");
}

/// Writes "tick" every 20 ms of wall-clock time.
struct Ticker;

impl Processor<String, String, String, String> for Ticker {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, String>) -> freshet_dsl::Result<()> {
        ctx.schedule(Duration::from_millis(20), freshet_dsl::PunctuationType::WallClockTime)?;
        Ok(())
    }
    fn process(
        &mut self,
        r: Record<String, String>,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> freshet_dsl::Result<()> {
        ctx.forward(r)
    }
    fn punctuate(
        &mut self,
        _: freshet_dsl::PunctuationId,
        now: i64,
        ctx: &mut ProcessorContext<'_, String, String>,
    ) -> freshet_dsl::Result<()> {
        ctx.forward(Record::new("tick".into(), format!("partition {}", ctx.partition()), now))
    }
}

#[test]
fn wall_clock_punctuation_fires_while_no_record_comes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "quiet", 2);
    let builder = StreamsBuilder::new();
    builder
        .stream("quiet", Consumed::with(Serdes::string(), Serdes::string()))
        .process(|| Ticker)
        .to("ticks", Produced::with(Serdes::string(), Serdes::string()));
    let mut app =
        StreamsApp::new(builder.build().unwrap(), log.clone(), config(dir.path(), "ticker"), rt.handle().clone())
            .unwrap();
    app.start().unwrap();
    // The ticks never stop: read until there are a few from each partition.
    let mut consumer = log.consumer(ConsumerConfig::default());
    rt.block_on(consumer.assign(vec![TopicPartition::new("ticks", 0), TopicPartition::new("ticks", 1)])).unwrap();
    let mut ticks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ticks.len() < 6 && Instant::now() < deadline {
        for b in rt.block_on(consumer.poll(Duration::from_millis(50))).unwrap() {
            ticks.extend(b.records().unwrap().into_iter().map(|r| (b.tp.partition, r)));
        }
    }
    // Both tasks (one per partition) tick.
    for p in 0..2 {
        assert!(ticks.iter().any(|(_, r)| text(&r.value) == format!("partition {p}")), "{p}");
    }
    assert!(app.metrics().commits > 0);
    app.close().unwrap();
}

#[test]
fn an_output_record_the_log_refuses_is_skipped_when_the_policy_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "in", 1);
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Serdes::string(), Serdes::string()))
        // A value over the log's max.message.bytes (1 MiB by default) for "big".
        .map_values(|v| if v == "big" { "x".repeat(3 << 20) } else { v.clone() })
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let mut config = config(dir.path(), "lenient");
    config.on_production_error = ErrorPolicy::LogAndContinue;
    produce(&rt, &log, "in", &[("k", "a", 1), ("k", "big", 2), ("k", "b", 3)]);
    let mut app = StreamsApp::new(builder.build().unwrap(), log.clone(), config, rt.handle().clone()).unwrap();
    app.start().unwrap();
    let out = read_all(&rt, &log, "out", 2);
    let values: Vec<String> = out.iter().map(|(_, r)| text(&r.value)).collect();
    assert!(values.contains(&"a".to_string()) && values.contains(&"b".to_string()), "{values:?}");
    assert!(values.iter().all(|v| v.len() < 10), "the big record is not written");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.metrics().records_skipped == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(app.metrics().records_skipped, 1);
    assert_eq!(app.state(), StreamsState::Running);
    let lag = app.metrics().lag;
    assert_eq!(lag.get(&TopicPartition::new("in", 0)), Some(&0), "{lag:?}");
    app.close().unwrap();
}

#[test]
fn a_joining_instance_takes_tasks_over_without_processing_a_record_twice() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "events", 4);
    let substrate = log.clone();
    let instance = |name: &str| {
        let mut config = config(&dir.path().join(name), "scale");
        config.num_stream_threads = 2;
        let mut app = StreamsApp::new(seen_ids(), substrate.clone(), config, rt.handle().clone()).unwrap();
        app.start().unwrap();
        app
    };
    let a = instance("a");
    a.wait_until_running(Duration::from_secs(30)).unwrap();
    // A quarter of the events with A alone, half while B joins, a quarter with both.
    for from in (0..N_EVENTS / 4).step_by(100) {
        produce_events(&rt, &log, from, from + 100);
    }
    let b = instance("b");
    for from in (N_EVENTS / 4..N_EVENTS * 3 / 4).step_by(100) {
        produce_events(&rt, &log, from, from + 100);
        std::thread::sleep(Duration::from_millis(2));
    }
    b.wait_until_running(Duration::from_secs(30)).unwrap();
    for from in (N_EVENTS * 3 / 4..N_EVENTS).step_by(100) {
        produce_events(&rt, &log, from, from + 100);
    }
    let expected = expected_counts(N_EVENTS);
    let counts = wait_for_counts(&rt, &log, "counts", &expected, Duration::from_secs(60));
    let (a_in, b_in) = (a.metrics().records_in, b.metrics().records_in);
    // A plain count: a record processed twice would show. The tasks that moved were committed
    // by A when the group revoked them, and B went on from exactly there.
    assert_eq!(counts, expected, "A read {a_in} records, B {b_in}");
    assert!(b_in > 0, "B took tasks over");
    assert_eq!(a_in + b_in, N_EVENTS as u64, "every event read once: A {a_in}, B {b_in}");
    a.close().unwrap();
    b.close().unwrap();
}

#[test]
fn bad_settings_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    let refused = |change: &dyn Fn(&mut StreamsConfig)| {
        let mut config = config(dir.path(), "settings");
        change(&mut config);
        let substrate = log.clone();
        StreamsApp::new(word_count(), substrate, config, rt.handle().clone()).unwrap_err().to_string()
    };
    assert!(refused(&|c| c.application_id = "no spaces".into()).contains("application.id \"no spaces\""));
    assert!(refused(&|c| c.num_stream_threads = 0).contains("num.stream.threads"));
    assert!(refused(&|c| c.commit_interval = Duration::ZERO).contains("commit.interval"));
    // Exactly-once needs transactional producers, which every substrate makes.
    let mut config = config(dir.path(), "settings");
    config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
    StreamsApp::new(word_count(), log.clone(), config, rt.handle().clone()).expect("the embedded log has transactions");
}

/// The builder from async code: the runtime taken from the context, started, waited for and
/// closed without blocking an async worker; the counts as a blocking application makes them.
#[test]
fn a_built_application_runs_from_async_code() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    create(&rt, &log, "lines", 2);
    produce(&rt, &log, "lines", &[("a", "red green", 1), ("b", "green blue", 2), ("c", "red red", 3)]);
    let state_dir = dir.path().join("state");
    let for_app = log.clone();
    rt.block_on(async move {
        let mut app = StreamsApp::builder(word_count(), for_app)
            .application_id("built")
            .state_dir(state_dir)
            .num_stream_threads(2)
            .commit_interval(Duration::from_millis(50))
            .build()
            .unwrap();
        app.start_async().await.unwrap();
        app.wait_until_running_async(Duration::from_secs(30)).await.unwrap();
        let again = app.start_async().await.unwrap_err();
        assert!(
            matches!(again, freshet_runtime::Error::InvalidState { operation: "start", state: StreamsState::Running }),
            "{again}"
        );
        // Until every record is processed, then closed: the 3 lines and the 6 words they give,
        // read back from the repartition topic (a close stops reading; what was not read yet
        // would not be counted).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while app.metrics().records_in < 9 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.close_async().await.unwrap();
    });
    let counts = final_counts(&read_all(&rt, &log, "word-counts", 3));
    assert_eq!(counts, BTreeMap::from([("blue".into(), 1), ("green".into(), 2), ("red".into(), 3)]));
}

/// What the builder and the application refuse, each with an error that says what it is.
#[test]
fn the_builder_and_the_application_refuse_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let log = open_log(&rt, dir.path());
    // Outside a runtime, with none given.
    let e = StreamsApp::builder(word_count(), log.clone()).build().unwrap_err();
    assert!(e.to_string().contains("no tokio runtime"), "{e}");
    // A current-thread runtime cannot carry blocking stream threads.
    let single = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let e = StreamsApp::builder(word_count(), log.clone()).runtime(single.handle().clone()).build().unwrap_err();
    assert!(e.to_string().contains("multi-thread"), "{e}");
    // A source topic that does not exist.
    let mut app = StreamsApp::builder(word_count(), log.clone())
        .application_id("refused")
        .state_dir(dir.path().join("state"))
        .runtime(rt.handle().clone())
        .build()
        .unwrap();
    let e = app.start().unwrap_err();
    assert!(matches!(&e, freshet_runtime::Error::MissingSourceTopic(t) if t == "lines"), "{e}");
}
