//! The README's streams example, through the facade; an application against a broker process.

use freshet::prelude::*;

#[test]
fn the_readme_streams_example_runs() -> anyhow::Result<()> {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", Consumed::with(Serdes::string().nullable(), Serdes::string()))
        .map_values(|v: &String| v.to_uppercase())
        .to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let topology = builder.build()?;
    assert!(topology.describe().contains("Source: KSTREAM-SOURCE-0000000000 (generated name) (topics: [input])"));

    let mut driver = TopologyTestDriver::new(topology)?;
    let input = TestInputTopic::new("input", Serdes::string().nullable(), Serdes::string());
    driver.pipe(&input, Some("k".into()), "hello".into(), 1_000)?;
    let output = TestOutputTopic::new("output", Serdes::string().nullable(), Serdes::string());
    insta::assert_snapshot!(driver.render_output(&output)?, @r#"0@0 t=1000 Some("k") => "HELLO""#);
    Ok(())
}

/// Word count: lines in, a count per word out, through a repartition topic and a RocksDB store.
fn word_count() -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream("lines", Consumed::with(Serdes::string(), Serdes::string()))
        .flat_map_values(|l: &String| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .group_by(|_, w| w.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::named("counts"))
        .to_stream()
        .to("word-counts", Produced::with(Serdes::string(), Serdes::i64().nullable()));
    Ok(builder.build()?)
}

/// Reads `word-counts` (committed records only) from the start until `n` records came, then a
/// moment more.
fn read_counts(rt: &tokio::runtime::Runtime, remote: &Remote, n: usize) -> Vec<(String, i64)> {
    let config = ConsumerConfig { isolation: Isolation::ReadCommitted, ..ConsumerConfig::default() };
    let mut consumer = remote.consumer(config).unwrap();
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new("word-counts", p)).collect();
    rt.block_on(consumer.assign(tps)).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut quiet_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        let polled = rt.block_on(consumer.poll(std::time::Duration::from_millis(200))).unwrap();
        if !polled.is_empty() {
            quiet_since = std::time::Instant::now();
        }
        for b in polled {
            for r in b.records().unwrap() {
                let word = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                out.push((word, i64::from_be_bytes(r.value.unwrap()[..].try_into().unwrap())));
            }
        }
        if out.len() >= n && quiet_since.elapsed() > std::time::Duration::from_millis(500) {
            break;
        }
    }
    out
}

#[test]
fn a_streams_application_runs_against_a_broker_process_and_resumes_after_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = crate::broker::BrokerProcess::start(&dir.path().join("data"));
    word_count_resumes_after_a_restart(&broker.addr, dir.path(), ProcessingGuarantee::AtLeastOnce)?;
    broker.stop();
    Ok(())
}

/// Word count on the cluster at `addr` under `guarantee`: counts right, its internal topics on
/// the cluster, and after a restart it resumes from its committed offsets, counting nothing twice.
pub(crate) fn word_count_resumes_after_a_restart(
    addr: &str,
    dir: &std::path::Path,
    guarantee: ProcessingGuarantee,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let remote = Remote::new(addr.to_string());
    let admin = remote.admin()?;
    rt.block_on(admin.create_topic(NewTopic { name: "lines".into(), n_partitions: 3, ..Default::default() }))?;
    let producer = remote.producer()?;
    let lines = |lines: &[(&str, &str)]| -> Vec<ProducerRecord> {
        lines.iter().map(|(k, v)| ProducerRecord::new("lines", Some(k.to_string()), v.to_string())).collect()
    };
    rt.block_on(producer.send(lines(&[("a", "red green"), ("b", "green blue"), ("c", "red red")])))?;

    let mut config = StreamsConfig::new("wc")?;
    config.state_dir = dir.join("state");
    config.commit_interval = std::time::Duration::from_millis(100);
    config.num_stream_threads = 2;
    config.processing_guarantee = guarantee;
    let start = |config: StreamsConfig| -> anyhow::Result<StreamsApp> {
        let substrate = remote.clone();
        let mut app = StreamsApp::new(word_count()?, substrate, config, rt.handle().clone())?;
        app.start()?;
        app.wait_until_running(std::time::Duration::from_secs(60))?;
        Ok(app)
    };
    let app = start(config.clone())?;
    let counts = read_counts(&rt, &remote, 6);
    let last: std::collections::BTreeMap<_, _> = counts.iter().cloned().collect();
    assert_eq!(last, [("blue".into(), 1), ("green".into(), 2), ("red".into(), 3)].into_iter().collect());
    // Its internal topics live on the cluster.
    for topic in ["wc-counts-repartition", "wc-counts-changelog"] {
        assert_eq!(rt.block_on(admin.describe_topic(topic))?.0.n_partitions, 3, "{topic}");
    }
    app.close()?;

    // Restarted, it resumes from the offsets it committed: nothing counted twice.
    rt.block_on(producer.send(lines(&[("d", "blue red")])))?;
    let app = start(config)?;
    let counts = read_counts(&rt, &remote, 8);
    assert_eq!(counts.len(), 8, "only the new line's words are counted again: {counts:?}");
    let last: std::collections::BTreeMap<_, _> = counts.iter().cloned().collect();
    assert_eq!(last, [("blue".into(), 2), ("green".into(), 2), ("red".into(), 4)].into_iter().collect());
    app.close()?;
    Ok(())
}

// Two instances of one application in separate processes, sharing the work through the broker's
// group coordinator; one is killed mid-stream.

const INSTANCE_ENV: &str = "FRESHET_TEST_STREAMS_INSTANCE";
const N_EVENTS: i64 = 4_000;
pub(crate) const N_KEYS: i64 = 20;

/// Every event id seen per key, out as the number of distinct ids: a replay after a crash
/// changes nothing, so the final figures equal an uninterrupted run's.
fn distinct_ids() -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .aggregate(
            Vec::new,
            |_, id, mut ids: Vec<i64>| {
                let id: i64 = id.parse().unwrap_or(-1);
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
    Ok(builder.build()?)
}

/// A broker process with an `events` topic, the clients that feed it, and a runtime for them.
struct Events {
    dir: tempfile::TempDir,
    broker: crate::broker::BrokerProcess,
    rt: tokio::runtime::Runtime,
    remote: Remote,
    admin: Box<dyn Admin>,
    producer: Box<dyn Producer>,
}

impl Events {
    /// `remote` makes the clients from the broker's address.
    fn start(n_partitions: u32, remote: impl Fn(&str) -> Remote) -> anyhow::Result<Events> {
        let dir = tempfile::tempdir()?;
        let broker = crate::broker::BrokerProcess::start(&dir.path().join("data"));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let remote = remote(&broker.addr);
        let admin: Box<dyn Admin> = Box::new(remote.admin()?);
        rt.block_on(admin.create_topic(NewTopic { name: "events".into(), n_partitions, ..Default::default() }))?;
        let producer: Box<dyn Producer> = Box::new(remote.producer()?);
        Ok(Events { dir, broker, rt, remote, admin, producer })
    }

    /// The events `from..to`: key `k<id % N_KEYS>`, value the id, timestamp the id.
    fn produce(&self, from: i64, to: i64) {
        let records: Vec<ProducerRecord> = (from..to)
            .map(|i| {
                let mut r = ProducerRecord::new("events", Some(format!("k{}", i % N_KEYS)), i.to_string());
                r.timestamp = Some(i);
                r
            })
            .collect();
        self.rt.block_on(self.producer.send(records)).unwrap();
    }

    /// Every key's count of the events `0..n`.
    fn expected(n: i64) -> std::collections::BTreeMap<String, i64> {
        let mut expected = std::collections::BTreeMap::new();
        for i in 0..n {
            *expected.entry(format!("k{}", i % N_KEYS)).or_insert(0) += 1;
        }
        expected
    }

    fn stop(self) {
        self.broker.stop();
    }
}

/// The broker's clients with a short session, so a killed instance's partitions move soon.
fn short_session(addr: &str) -> Remote {
    Remote::new(addr).with_property("session.timeout.ms", "6000").with_property("heartbeat.interval.ms", "500")
}

/// One instance, in its own process: runs until killed, printing `running` once it is, then
/// the records its stores restored, every 100 ms.
#[test]
#[allow(clippy::print_stdout)] // the parent reads stdout
fn streams_instance_process() -> anyhow::Result<()> {
    let Some(spec) = std::env::var_os(INSTANCE_ENV) else { return Ok(()) };
    let spec = spec.to_string_lossy().to_string();
    // `address|state dir`, or `address|state dir|eos` for an exactly-once plain count.
    let mut parts = spec.split('|');
    let (addr, state_dir) = (parts.next().expect("address"), parts.next().expect("state dir"));
    let exactly_once = parts.next() == Some("eos");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut config = StreamsConfig::new(if exactly_once { "xproc-eos" } else { "xproc" })?;
    config.state_dir = state_dir.into();
    config.commit_interval = std::time::Duration::from_millis(100);
    config.num_standby_replicas = 1;
    let topology = if exactly_once {
        config.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
        event_counts()?
    } else {
        distinct_ids()?
    };
    let substrate = short_session(addr);
    let mut app = StreamsApp::new(topology, substrate, config, rt.handle().clone())?;
    app.start()?;
    app.wait_until_running(std::time::Duration::from_secs(60))?;
    println!("running");
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let metrics = app.metrics();
        let restored: u64 = metrics.restores.iter().map(|r| r.n_records).sum();
        println!("in {} restored {restored}", metrics.records_in);
    }
}

/// An instance process, its stdout lines gathered; killed when dropped.
struct Instance {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Instance {
    fn start(addr: &str, state_dir: &std::path::Path) -> Instance {
        Self::start_with(addr, state_dir, "")
    }

    /// An exactly-once instance of a plain count.
    fn start_exactly_once(addr: &str, state_dir: &std::path::Path) -> Instance {
        Self::start_with(addr, state_dir, "|eos")
    }

    fn start_with(addr: &str, state_dir: &std::path::Path, suffix: &str) -> Instance {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "streams::streams_instance_process", "--nocapture", "--test-threads", "1"])
            .env(INSTANCE_ENV, format!("{addr}|{}{suffix}", state_dir.display()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let gathered = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                gathered.lock().unwrap().push(line);
            }
        });
        Instance { child, lines }
    }

    fn running(&self) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.ends_with("running"))
    }

    /// The last figures printed: (records read, records restored).
    fn figures(&self) -> (u64, u64) {
        let lines = self.lines.lock().unwrap();
        let Some(last) = lines.iter().rev().find(|l| l.starts_with("in ")) else { return (0, 0) };
        let words: Vec<&str> = last.split_whitespace().collect();
        (words[1].parse().unwrap(), words[3].parse().unwrap())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A number below `n`, different on each run.
fn random_below(n: u32) -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() % n
}

fn wait_for(what: &str, timeout_s: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited {timeout_s} s for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The last value per key on `distinct`.
fn distinct_counts(rt: &tokio::runtime::Runtime, remote: &Remote) -> std::collections::BTreeMap<String, i64> {
    let mut consumer = remote.consumer(ConsumerConfig::default()).unwrap();
    let tps: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("distinct", p)).collect();
    rt.block_on(consumer.assign(tps.clone())).unwrap();
    let admin = remote.admin().unwrap();
    let ends: Vec<i64> = tps
        .iter()
        .map(|tp| rt.block_on(admin.list_offset(tp, OffsetSpec::Latest)).unwrap().map_or(0, |o| o.0))
        .collect();
    let mut out = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tps.iter().zip(&ends).any(|(tp, end)| consumer.position(tp).unwrap_or(0) < *end) {
        assert!(std::time::Instant::now() < deadline, "reading distinct to its end");
        for b in rt.block_on(consumer.poll(std::time::Duration::from_millis(100))).unwrap() {
            for r in b.records().unwrap() {
                let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                out.insert(key, i64::from_be_bytes(r.value.unwrap()[..].try_into().unwrap()));
            }
        }
    }
    out
}

#[test]
fn two_instance_processes_share_the_tasks_and_one_takes_over_when_the_other_is_killed() -> anyhow::Result<()> {
    let events = Events::start(4, |addr| Remote::new(addr))?;
    let Events { dir, broker, rt, remote, admin, .. } = &events;
    let produce = |from, to| events.produce(from, to);

    // Each instance keeps its stores in its own directory, as on its own machine.
    let a = Instance::start(&broker.addr, &dir.path().join("a"));
    let b = Instance::start(&broker.addr, &dir.path().join("b"));
    wait_for("both instances to run", 90, || a.running() && b.running());
    let members = || rt.block_on(admin.group_members("xproc")).unwrap();
    wait_for("the group to deal two tasks to each instance", 60, || {
        members().is_some_and(|g| {
            g.state == "Stable" && g.members.len() == 2 && g.members.iter().all(|m| m.assignment.len() == 2)
        })
    });
    // The first half of the events with both running; both work.
    for from in (0..N_EVENTS / 2).step_by(100) {
        produce(from, from + 100);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    wait_for("both instances to read their half", 60, || a.figures().0 + b.figures().0 >= N_EVENTS as u64 / 2);
    let (a_before, b_before) = (a.figures().0, b.figures().0);
    assert!(a_before > 0 && b_before > 0, "both instances work: {a_before} and {b_before} records");
    let restored_before = a.figures().1;
    // B is killed mid-stream, at a different moment on each run (no commit, no leaving the
    // group), while the rest of the events arrive.
    let kill_at = N_EVENTS / 2 + 100 * (random_below(10) as i64);
    let mut b = Some(b);
    for from in (N_EVENTS / 2..N_EVENTS).step_by(100) {
        if from == kill_at {
            drop(b.take());
        }
        produce(from, from + 100);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A takes B's tasks over once B's session runs out, restores their stores, and goes on.
    let expected = Events::expected(N_EVENTS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let finals = loop {
        let finals = distinct_counts(rt, remote);
        if finals == expected || std::time::Instant::now() > deadline {
            break finals;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(finals, expected, "every key saw each of its events once ({b_before} read by B before it died)");
    let group = members().expect("A is a member");
    assert_eq!(group.members.len(), 1, "{group:?}");
    assert_eq!(group.members[0].assignment.len(), 4, "{group:?}");
    // With a standby copy of B's stores, A restored only their tail.
    let restored = a.figures().1 - restored_before;
    let mut changelog = 0;
    for p in 0..4 {
        let tp = TopicPartition::new("xproc-ids-changelog", p);
        changelog += rt.block_on(admin.list_offset(&tp, OffsetSpec::Latest))?.map_or(0, |o| o.0);
    }
    // (Without the copy it would restore B's half of the changelogs.)
    assert!(restored * 4 < changelog as u64, "A restored {restored} of {changelog} changelog records");
    eprintln!(
        "A read {a_before} and B {b_before} of the first half; B killed at event {kill_at}; \
         A restored {restored} of {changelog} changelog records"
    );
    drop(a);
    events.stop();
    Ok(())
}

/// Every update of `counts` a read_committed consumer sees, in order per partition: read until
/// each partition's end (its last stable offset when the read began).
pub(crate) fn committed_updates(rt: &tokio::runtime::Runtime, remote: &Remote) -> Vec<(String, i64)> {
    let config = ConsumerConfig { isolation: Isolation::ReadCommitted, ..ConsumerConfig::default() };
    let mut consumer = remote.consumer(config).unwrap();
    let tps: Vec<TopicPartition> = (0..4).map(|p| TopicPartition::new("counts", p)).collect();
    let admin = remote.admin().unwrap();
    let ends: Vec<i64> = tps
        .iter()
        .map(|tp| rt.block_on(admin.list_offset(tp, OffsetSpec::LastStable)).unwrap().map_or(0, |o| o.0))
        .collect();
    let mut out = Vec::new();
    for (tp, end) in tps.iter().zip(ends) {
        rt.block_on(consumer.assign(vec![tp.clone()])).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while consumer.position(tp).unwrap_or(0) < end && !consumer.reached_end(tp) {
            assert!(std::time::Instant::now() < deadline, "reading {tp} to {end}");
            for b in rt.block_on(consumer.poll(std::time::Duration::from_millis(100))).unwrap() {
                for r in b.records().unwrap() {
                    let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
                    out.push((key, i64::from_be_bytes(r.value.unwrap()[..].try_into().unwrap())));
                }
            }
        }
    }
    out
}

#[test]
fn exactly_once_instance_processes_count_every_event_once_when_one_is_killed() -> anyhow::Result<()> {
    let events = Events::start(4, |addr| Remote::new(addr))?;
    let Events { dir, broker, rt, remote, admin, .. } = &events;
    let a = Instance::start_exactly_once(&broker.addr, &dir.path().join("a"));
    let b = Instance::start_exactly_once(&broker.addr, &dir.path().join("b"));
    wait_for("both instances to run", 90, || a.running() && b.running());
    wait_for("the group to deal two tasks to each instance", 60, || {
        rt.block_on(admin.group_members("xproc-eos")).unwrap().is_some_and(|g| {
            g.state == "Stable" && g.members.len() == 2 && g.members.iter().all(|m| m.assignment.len() == 2)
        })
    });
    for from in (0..N_EVENTS / 2).step_by(100) {
        events.produce(from, from + 100);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    wait_for("both instances to read their half", 60, || a.figures().0 + b.figures().0 >= N_EVENTS as u64 / 2);
    let b_before = b.figures().0;
    // B dies mid-stream, in the middle of a transaction most likely: what it had not committed
    // is aborted (when its transaction times out) and counted again by A, once.
    let kill_at = N_EVENTS / 2 + 100 * (random_below(10) as i64);
    let mut b = Some(b);
    for from in (N_EVENTS / 2..N_EVENTS).step_by(100) {
        if from == kill_at {
            drop(b.take());
        }
        events.produce(from, from + 100);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let expected = Events::expected(N_EVENTS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (updates, finals) = loop {
        let updates = committed_updates(rt, remote);
        let finals: std::collections::BTreeMap<String, i64> = updates.iter().cloned().collect();
        if finals == expected || std::time::Instant::now() > deadline {
            break (updates, finals);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let ctx = format!("B read {b_before} records of the first half and was killed at event {kill_at}");
    assert_eq!(finals, expected, "a plain count is exact: nothing counted twice or lost ({ctx})");
    let mut seen = std::collections::BTreeMap::new();
    for (key, n) in &updates {
        let before = seen.insert(key.clone(), *n).unwrap_or(0);
        assert!(*n > before, "{key}: count {n} after {before}: an aborted update showed ({ctx})");
    }
    eprintln!("{ctx}");
    drop(a);
    events.stop();
    Ok(())
}

/// A plain count per key: a record processed twice would show.
pub(crate) fn event_counts() -> anyhow::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream("events", Consumed::with(Serdes::string(), Serdes::string()))
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::named("counts"))
        .to_stream()
        .to("counts", Produced::with(Serdes::string(), Serdes::i64().nullable()));
    Ok(builder.build()?)
}

#[test]
fn an_instance_joining_through_a_broker_takes_tasks_over_without_processing_a_record_twice() -> anyhow::Result<()> {
    let events = Events::start(4, |addr| Remote::new(addr))?;
    let Events { dir, rt, remote, admin, .. } = &events;
    let produce = |from, to| events.produce(from, to);
    let instance = |name: &str| -> anyhow::Result<StreamsApp> {
        let mut config = StreamsConfig::new("joining")?;
        config.state_dir = dir.path().join(name);
        config.commit_interval = std::time::Duration::from_millis(100);
        let substrate = remote.clone();
        let mut app = StreamsApp::new(event_counts()?, substrate, config, rt.handle().clone())?;
        app.start()?;
        Ok(app)
    };
    let a = instance("a")?;
    a.wait_until_running(std::time::Duration::from_secs(60))?;
    // A quarter of the events with A alone, half while B joins, a quarter with both.
    produce(0, N_EVENTS / 4);
    let b = instance("b")?;
    for from in (N_EVENTS / 4..N_EVENTS * 3 / 4).step_by(100) {
        produce(from, from + 100);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    b.wait_until_running(std::time::Duration::from_secs(60))?;
    wait_for("B to get tasks", 60, || {
        rt.block_on(admin.group_members("joining"))
            .unwrap()
            .is_some_and(|g| g.members.len() == 2 && g.members.iter().all(|m| m.assignment.len() == 2))
    });
    produce(N_EVENTS * 3 / 4, N_EVENTS);
    wait_for("every event to be read", 60, || a.metrics().records_in + b.metrics().records_in >= N_EVENTS as u64);
    let (a_in, b_in) = (a.metrics().records_in, b.metrics().records_in);
    a.close()?;
    b.close()?;
    assert!(b_in > 0, "B took tasks over");
    assert_eq!(a_in + b_in, N_EVENTS as u64, "every event read once: A {a_in}, B {b_in}");
    let mut consumer = remote.consumer(ConsumerConfig::default())?;
    rt.block_on(consumer.assign((0..4).map(|p| TopicPartition::new("counts", p)).collect()))?;
    let mut counts = std::collections::BTreeMap::new();
    let expected = Events::expected(N_EVENTS);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while counts != expected && std::time::Instant::now() < deadline {
        for b in rt.block_on(consumer.poll(std::time::Duration::from_millis(200)))? {
            for r in b.records()? {
                let key = String::from_utf8(r.key.unwrap().to_vec())?;
                counts.insert(key, i64::from_be_bytes(r.value.unwrap()[..].try_into()?));
            }
        }
    }
    assert_eq!(counts, expected, "A read {a_in} records, B {b_in}");
    events.stop();
    Ok(())
}

/// Makes every restore take `0` longer.
struct SlowRestore(std::time::Duration);

impl RestoreListener for SlowRestore {
    fn on_start(&self, _: &RestoreProgress) {
        std::thread::sleep(self.0);
    }
    fn on_progress(&self, _: &RestoreProgress) {}
    fn on_end(&self, _: &RestoreProgress) {}
}

#[test]
fn a_restore_longer_than_the_poll_interval_keeps_the_thread_in_its_group() -> anyhow::Result<()> {
    // The group counts a member gone when it does not poll for 3 s.
    let events = Events::start(2, |addr| {
        Remote::new(addr)
            .with_property("session.timeout.ms", "2000")
            .with_property("heartbeat.interval.ms", "500")
            .with_property("max.poll.interval.ms", "3000")
    })?;
    let Events { dir, rt, remote, .. } = &events;
    let produce = |from, to| events.produce(from, to);
    let start = |state: &str, listener: Option<std::sync::Arc<dyn RestoreListener>>| -> anyhow::Result<StreamsApp> {
        let mut config = StreamsConfig::new("slow")?;
        config.state_dir = dir.path().join(state);
        config.commit_interval = std::time::Duration::from_millis(100);
        config.restore_listener = listener;
        let substrate = remote.clone();
        let mut app = StreamsApp::new(event_counts()?, substrate, config, rt.handle().clone())?;
        app.start()?;
        app.wait_until_running(std::time::Duration::from_secs(60))?;
        Ok(app)
    };
    // A first run fills the changelog.
    produce(0, 200);
    let app = start("first", None)?;
    wait_for("the first run to count", 60, || app.metrics().records_in >= 200);
    app.close()?;
    // On a machine without the state, every store restores, each taking 4 s.
    let app = start("second", Some(std::sync::Arc::new(SlowRestore(std::time::Duration::from_secs(4)))))?;
    assert!(!app.metrics().restores.is_empty(), "the stores restored");
    produce(200, 400);
    wait_for("the second run to count", 60, || app.metrics().records_in >= 200 || app.error().is_some());
    assert_eq!(app.error(), None);
    assert_eq!(app.state(), StreamsState::Running);
    app.close()?;
    events.stop();
    Ok(())
}
