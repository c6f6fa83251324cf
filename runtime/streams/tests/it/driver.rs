//! The test driver running DSL topologies: stateless operators, the Processor API with state
//! stores and punctuation, partitions, sub-topologies joined by a topic, descriptions and errors.

use freshet_core::partitioner::partition_for_key;
use freshet_dsl::{
    Consumed, OnDecodeError, Processor, ProcessorContext, Produced, PunctuationId, PunctuationType, Record,
    Repartitioned, Serdes, StoreBuilder, StreamsBuilder, Topology,
};
use freshet_runtime::{DriverConfig, TestInputTopic, TestOutputTopic, TopologyTestDriver};

fn strings() -> Consumed<Option<String>, String> {
    Consumed::with(Serdes::string().nullable(), Serdes::string())
}

fn input() -> TestInputTopic<Option<String>, String> {
    TestInputTopic::new("input", Serdes::string().nullable(), Serdes::string())
}

fn output() -> TestOutputTopic<Option<String>, String> {
    TestOutputTopic::new("output", Serdes::string().nullable(), Serdes::string())
}

/// Builds a topology from `input` to `output` with `f` in between, pipes `records` (key, value,
/// timestamp) and renders what reaches `output`.
fn run(
    f: impl FnOnce(freshet_dsl::KStream<Option<String>, String>) -> freshet_dsl::KStream<Option<String>, String>,
    records: &[(Option<&str>, &str, i64)],
) -> String {
    let builder = StreamsBuilder::new();
    f(builder.stream("input", strings())).to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    for (k, v, ts) in records {
        driver.pipe(&input(), k.map(str::to_string), v.to_string(), *ts).unwrap();
    }
    driver.render_output(&output()).unwrap()
}

const WORDS: &[(Option<&str>, &str, i64)] = &[
    (Some("a"), "hello world", 1_000),
    (None, "the quick brown fox", 2_000),
    (Some("b"), "", 3_000),
    (Some("a"), "Hello Again", 4_000),
];

#[test]
fn stateless_operators() {
    let mut out = String::new();
    let mut case = |name: &str, text: String| out.push_str(&format!("-- {name}\n{text}"));
    case("map_values", run(|s| s.map_values(|v| v.to_uppercase()), WORDS));
    case("map", run(|s| s.map(|k, v| (Some(v.clone()), k.clone().unwrap_or_default())), WORDS));
    case("filter", run(|s| s.filter(|_, v| v.contains('o')), WORDS));
    case("filter_not", run(|s| s.filter_not(|_, v| v.contains('o')), WORDS));
    case(
        "flat_map",
        run(
            |s| {
                s.flat_map(|k, v| {
                    v.split_whitespace().map(|w| (Some(w.to_string()), format!("{k:?}"))).collect::<Vec<_>>()
                })
            },
            WORDS,
        ),
    );
    case(
        "flat_map_values",
        run(|s| s.flat_map_values(|v| v.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>()), WORDS),
    );
    case("select_key", run(|s| s.select_key(|_, v| v.split_whitespace().next().map(str::to_string)), WORDS));
    case(
        "merge",
        run(
            |s| {
                s.filter(|k, _| k.is_some())
                    .merge(&s.filter(|k, _| k.is_none()).map_values(|v| format!("keyless: {v}")))
            },
            WORDS,
        ),
    );
    insta::assert_snapshot!("stateless_operators", out);
}

#[test]
fn peek_and_foreach_see_every_record_in_order() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (peeked, done) = (seen.clone(), seen.clone());
    let builder = StreamsBuilder::new();
    let s = builder.stream("input", strings());
    s.peek(move |_, v| peeked.lock().unwrap().push(format!("peek {v}"))).foreach(move |_, v| {
        done.lock().unwrap().push(format!("foreach {v}"));
    });
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    driver.pipe(&input(), None, "one".into(), 1).unwrap();
    driver.pipe(&input(), None, "two".into(), 2).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["peek one", "foreach one", "peek two", "foreach two"]);
}

#[test]
fn split_sends_each_record_to_the_first_matching_branch() {
    let builder = StreamsBuilder::new();
    let branches = builder
        .stream("input", strings())
        .split("words-")
        .branch("short", |_, v| v.len() < 5)
        .branch("hello", |_, v| v.to_lowercase().starts_with("hello"))
        .default_branch("other");
    assert_eq!(branches.keys().collect::<Vec<_>>(), ["words-hello", "words-other", "words-short"]);
    for (name, stream) in &branches {
        stream.to(name, Produced::with(Serdes::string().nullable(), Serdes::string()));
    }
    let topology = builder.build().unwrap();
    let mut driver = TopologyTestDriver::new(topology.clone()).unwrap();
    for (k, v, ts) in WORDS {
        driver.pipe(&input(), k.map(str::to_string), v.to_string(), *ts).unwrap();
    }
    let mut out = String::new();
    for name in branches.keys() {
        let topic = TestOutputTopic::new(name, Serdes::string().nullable(), Serdes::string());
        out.push_str(&format!("-- {name}\n{}", driver.render_output(&topic).unwrap()));
    }
    insta::assert_snapshot!("split", out);
    insta::assert_snapshot!("split_describe", topology.describe());
}

/// A processor of the low-level API: numbers the records it sees per task and tags each with
/// where it came from.
struct Tagger {
    n: u64,
}

impl Processor<Option<String>, String, Option<String>, String> for Tagger {
    fn process(
        &mut self,
        record: Record<Option<String>, String>,
        ctx: &mut ProcessorContext<'_, Option<String>, String>,
    ) -> freshet_dsl::Result<()> {
        self.n += 1;
        let meta = ctx.record_meta().cloned().expect("from a topic");
        let tagged = format!(
            "#{} {} from {}-{}@{} (stream time {})",
            self.n,
            record.value,
            meta.topic,
            meta.partition,
            meta.offset,
            ctx.stream_time_ms()
        );
        ctx.forward(record.with_value(tagged))
    }
}

#[test]
fn the_processor_api_sees_metadata_and_keeps_state_per_task() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", strings())
        .process(|| Tagger { n: 0 })
        .named("tagger")
        .to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let config = DriverConfig::default().partitions("input", 2).partitions("output", 2);
    let mut driver = TopologyTestDriver::with_config(builder.build().unwrap(), config).unwrap();
    // Two keys on different partitions, so two tasks each keep their own count and stream time.
    let x = "x";
    let y = ["y", "z", "w", "v", "u"]
        .into_iter()
        .find(|k| partition_for_key(k.as_bytes(), 2) != partition_for_key(b"x", 2))
        .unwrap();
    // Out of order in time: stream time stays at the largest timestamp seen per task.
    for (k, ts) in [(x, 5), (y, 7), (x, 3), (y, 9), (x, 8), (y, 4)] {
        driver.pipe(&input(), Some(k.to_string()), format!("{k}{ts}"), ts).unwrap();
    }
    insta::assert_snapshot!("processor_api", driver.render_output(&output()).unwrap());
}

/// A repartition by hand: re-keyed records go through a topic with three partitions, land where
/// Kafka's partitioner puts their key, and are processed by the task of that partition.
#[test]
fn records_cross_sub_topologies_through_a_topic_by_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", strings())
        .flat_map(|_, v| v.split_whitespace().map(|w| (Some(w.to_lowercase()), w.to_string())).collect::<Vec<_>>())
        .to("by-word", Produced::with(Serdes::string().nullable(), Serdes::string()));
    builder
        .stream("by-word", Consumed::with(Serdes::string().nullable(), Serdes::string()))
        .process(|| Tagger { n: 0 })
        .to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let topology = builder.build().unwrap();
    assert_eq!(topology.subtopologies().len(), 2);
    insta::assert_snapshot!("two_subtopologies_describe", topology.describe());
    let config = DriverConfig::default().partitions("input", 2).partitions("by-word", 3).partitions("output", 3);
    let mut driver = TopologyTestDriver::with_config(topology, config).unwrap();
    for (k, v, ts) in WORDS {
        driver.pipe(&input(), k.map(str::to_string), v.to_string(), *ts).unwrap();
    }
    for r in driver.topic_records("by-word") {
        assert_eq!(r.partition, partition_for_key(r.key.as_ref().unwrap(), 3), "{r:?}");
    }
    insta::assert_snapshot!("two_subtopologies_output", driver.render_output(&output()).unwrap());
}

/// `repartition` puts re-keyed records through an internal topic into a new sub-topology, whose
/// tasks then see each key's records together.
#[test]
fn repartition_moves_records_to_the_task_of_their_new_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", strings())
        .flat_map(|_, v| v.split_whitespace().map(|w| (Some(w.to_lowercase()), w.to_string())).collect::<Vec<_>>())
        .repartition(
            Repartitioned::with(Serdes::string().nullable(), Serdes::string()).named("by-word").with_partitions(3),
        )
        .process(|| Tagger { n: 0 })
        .to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let topology = builder.build().unwrap();
    assert_eq!(topology.internal_topics()[0].name, "by-word-repartition");
    insta::assert_snapshot!("repartition_describe", topology.describe());
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    for (k, v, ts) in WORDS {
        driver.pipe(&input(), k.map(str::to_string), v.to_string(), *ts).unwrap();
    }
    let moved = driver.topic_records("by-word-repartition");
    assert_eq!(moved.len(), 8);
    for r in moved {
        assert_eq!(r.partition, partition_for_key(r.key.as_ref().unwrap(), 3), "{r:?}");
    }
    insta::assert_snapshot!("repartition_output", driver.render_output(&output()).unwrap());
}

#[test]
fn a_record_that_does_not_decode_names_its_topic_partition_and_offset() {
    let builder = StreamsBuilder::new();
    builder
        .stream("numbers", Consumed::with(Serdes::string().nullable(), Serdes::i64()))
        .map_values(|v| v * 2)
        .to("doubled", Produced::with(Serdes::string().nullable(), Serdes::i64()));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let good = TestInputTopic::new("numbers", Serdes::string().nullable(), Serdes::i64());
    let bad = TestInputTopic::new("numbers", Serdes::string().nullable(), Serdes::string());
    driver.pipe(&good, None, 21, 1).unwrap();
    let err = driver.pipe(&bad, Some("k".into()), "twenty".into(), 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot deserialize the value of the record at numbers-0 offset 1 with i64: \
         6 bytes where a i64 of 8 bytes was expected"
    );
    let out = TestOutputTopic::new("doubled", Serdes::string().nullable(), Serdes::i64());
    let doubled: Vec<i64> = driver.read_output(&out).unwrap().into_iter().map(|r| r.record.value).collect();
    assert_eq!(doubled, [42], "the bad record changed nothing");
}

/// Poison records are skipped or sent to a dead-letter topic, as the source says, and counted.
#[test]
fn poison_records_are_skipped_or_dead_lettered_when_the_source_says_so() {
    for policy in [OnDecodeError::Skip, OnDecodeError::DeadLetter("numbers-dlq".into())] {
        let builder = StreamsBuilder::new();
        let consumed = Consumed::with(Serdes::string().nullable(), Serdes::i64());
        builder
            .stream("numbers", consumed.on_decode_error(policy.clone()))
            .map_values(|v| v * 2)
            .to("doubled", Produced::with(Serdes::string().nullable(), Serdes::i64()));
        let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
        let good = TestInputTopic::new("numbers", Serdes::string().nullable(), Serdes::i64());
        let bad = TestInputTopic::new("numbers", Serdes::string().nullable(), Serdes::string());
        driver.pipe(&good, None, 1, 1).unwrap();
        driver.pipe(&bad, Some("k".into()), "two".into(), 2).unwrap();
        driver.pipe(&good, None, 3, 3).unwrap();
        let out = TestOutputTopic::new("doubled", Serdes::string().nullable(), Serdes::i64());
        let doubled: Vec<i64> = driver.read_output(&out).unwrap().into_iter().map(|r| r.record.value).collect();
        assert_eq!(doubled, [2, 6], "{policy:?}");
        assert_eq!(driver.dropped_records(), 1, "{policy:?}");
        let dlq = driver.topic_records("numbers-dlq");
        if policy == OnDecodeError::Skip {
            assert!(dlq.is_empty());
            continue;
        }
        assert_eq!(dlq.len(), 1);
        let r = &dlq[0];
        assert_eq!((r.key.as_deref(), r.value.as_deref(), r.timestamp), (Some(&b"k"[..]), Some(&b"two"[..]), 2));
        let header = |name: &str| {
            let h = r.headers.iter().find(|h| h.key == name).unwrap();
            String::from_utf8(h.value.clone().unwrap().to_vec()).unwrap()
        };
        assert_eq!(header("freshet.source"), "numbers-0@1");
        assert_eq!(
            header("freshet.error"),
            "cannot deserialize the value of the record at numbers-0 offset 1 with i64: 3 bytes where a i64 of 8 bytes was expected"
        );
    }
}

#[test]
fn invalid_topologies_and_configs_are_refused_with_the_offender_named() {
    let builder = StreamsBuilder::new();
    let s = builder.stream("input", strings());
    s.map_values(|v| v.clone()).named("twice");
    s.filter(|_, _| true).named("twice");
    let err = builder.build().unwrap_err().to_string();
    assert_eq!(err, "invalid topology: two nodes are named \"twice\"; names must be unique");

    let builder = StreamsBuilder::new();
    builder.stream("input", strings());
    builder.stream("input", strings());
    let err = builder.build().unwrap_err().to_string();
    assert!(
        err.contains("topic \"input\" is read by both KSTREAM-SOURCE-0000000000 and KSTREAM-SOURCE-0000000001"),
        "{err}"
    );

    let builder = StreamsBuilder::new();
    let a = builder.stream("a", strings());
    let b = builder.stream("b", strings());
    a.merge(&b).to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let topology: Topology = builder.build().unwrap();
    let config = DriverConfig::default().partitions("a", 2).partitions("b", 3);
    let err = TopologyTestDriver::with_config(topology, config).unwrap_err().to_string();
    assert!(err.contains("reads a (2 partitions) and b (3 partitions)"), "{err}");

    // A cycle through topics: a reads x and writes y; b reads y and writes x.
    let builder = StreamsBuilder::new();
    builder.stream("x", strings()).to("y", Produced::with(Serdes::string().nullable(), Serdes::string()));
    builder
        .stream("y", strings())
        .filter(|_, _| true)
        .to("x", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let err = builder.build().unwrap_err().to_string();
    assert!(
        err.contains("cycle through topics (sub-topology 0 writes y, read by sub-topology 1; sub-topology 1 writes x, read by sub-topology 0)"),
        "{err}"
    );
    let builder = StreamsBuilder::new();
    builder.stream("x", strings()).to("x", Produced::with(Serdes::string().nullable(), Serdes::string()));
    assert!(builder.build().unwrap_err().to_string().contains("sub-topology 0 writes x, read by sub-topology 0"));
}

#[test]
fn describe_and_dot_are_stable() {
    let builder = StreamsBuilder::new();
    let words = builder.stream("input", strings().named("read-input"));
    let upper = words.map_values(|v| v.to_uppercase()).named("upper");
    upper
        .filter(|_, v| !v.is_empty())
        .merge(&words)
        .to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("describe", topology.describe());
    insta::assert_snapshot!("dot", topology.to_dot());
}

/// Counts words in a key-value store (the Processor API's state), emits each new count, and
/// emits a summary on every stream-time punctuation.
struct WordCounter;

impl Processor<Option<String>, String, String, i64> for WordCounter {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, String, i64>) -> freshet_dsl::Result<()> {
        ctx.schedule(std::time::Duration::from_millis(10), PunctuationType::StreamTime)?;
        Ok(())
    }

    fn process(
        &mut self,
        record: Record<Option<String>, String>,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> freshet_dsl::Result<()> {
        for word in record.value.split_whitespace().map(str::to_lowercase) {
            let store = ctx.kv_store::<String, i64>("counts")?;
            let n = store.get(&word)?.unwrap_or(0) + 1;
            store.put(&word, &n)?;
            ctx.forward(Record::new(word, n, record.timestamp))?;
        }
        Ok(())
    }

    fn punctuate(
        &mut self,
        _id: PunctuationId,
        timestamp_ms: i64,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> freshet_dsl::Result<()> {
        let total: i64 =
            ctx.kv_store::<String, i64>("counts")?.all()?.map(|e| e.map(|(_, n)| n)).sum::<Result<i64, _>>()?;
        ctx.forward(Record::new("(total)".to_string(), total, timestamp_ms))
    }
}

#[test]
fn processors_keep_state_in_stores_and_punctuate_on_stream_time() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value::<String, i64>("counts"));
    builder
        .stream("input", strings())
        .process_with_stores(|| WordCounter, &["counts"])
        .to("counts-out", Produced::with(Serdes::string(), Serdes::i64()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("word_counter_describe", topology.describe());
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    // Stream time 1, 5, 12, 13, 31 with a 10 ms schedule aligned to 0: it fires at 1 (due at 0),
    // 12 (due at 10) and 31, once, though both 20 and 30 passed.
    for (v, ts) in [("a b", 1), ("b", 5), ("c a", 12), ("a", 13), ("b", 31)] {
        driver.pipe(&input(), None, v.to_string(), ts).unwrap();
    }
    let out = TestOutputTopic::new("counts-out", Serdes::string(), Serdes::i64());
    insta::assert_snapshot!("word_counter_output", driver.render_output(&out).unwrap());
    assert_eq!(
        driver.kv_store_entries::<String, i64>("counts").unwrap(),
        [("a".to_string(), 3), ("b".to_string(), 3), ("c".to_string(), 1)]
    );
    driver.close().unwrap();
}

/// Wall-clock punctuation fires as the driver's clock advances, not with records.
struct Ticker;

impl Processor<Option<String>, String, Option<String>, String> for Ticker {
    fn init(&mut self, ctx: &mut ProcessorContext<'_, Option<String>, String>) -> freshet_dsl::Result<()> {
        ctx.schedule(std::time::Duration::from_secs(1), PunctuationType::WallClockTime)?;
        Ok(())
    }
    fn process(
        &mut self,
        _: Record<Option<String>, String>,
        _: &mut ProcessorContext<'_, Option<String>, String>,
    ) -> freshet_dsl::Result<()> {
        Ok(())
    }
    fn punctuate(
        &mut self,
        _: PunctuationId,
        timestamp_ms: i64,
        ctx: &mut ProcessorContext<'_, Option<String>, String>,
    ) -> freshet_dsl::Result<()> {
        ctx.forward(Record::new(None, format!("tick at {timestamp_ms}"), timestamp_ms))
    }
}

#[test]
fn wall_clock_punctuation_follows_the_drivers_clock() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", strings())
        .process(|| Ticker)
        .to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let config = DriverConfig { start_wall_clock_ms: 10_000, ..DriverConfig::default() };
    let mut driver = TopologyTestDriver::with_config(builder.build().unwrap(), config).unwrap();
    driver.pipe(&input(), None, "x".into(), 1).unwrap();
    driver.advance_wall_clock(std::time::Duration::from_millis(999)).unwrap();
    assert_eq!(driver.render_output(&output()).unwrap(), "", "not due yet");
    driver.advance_wall_clock(std::time::Duration::from_millis(1)).unwrap();
    driver.advance_wall_clock(std::time::Duration::from_millis(2_500)).unwrap();
    assert_eq!(
        driver.render_output(&output()).unwrap(),
        "0@0 t=11000 None => \"tick at 11000\"\n0@1 t=13500 None => \"tick at 13500\"\n"
    );
}

/// Uses a store it did not declare.
struct Snoop;

impl Processor<Option<String>, String, Option<String>, String> for Snoop {
    fn process(
        &mut self,
        record: Record<Option<String>, String>,
        ctx: &mut ProcessorContext<'_, Option<String>, String>,
    ) -> freshet_dsl::Result<()> {
        ctx.kv_store::<String, i64>("counts")?;
        ctx.forward(record)
    }
}

#[test]
fn a_processor_reaches_only_the_stores_it_declared() {
    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value::<String, i64>("counts"));
    builder.add_state_store(StoreBuilder::session::<String, i64>("sessions", 60_000));
    let s = builder.stream("input", strings());
    s.process_with_stores(|| WordCounter, &["counts", "sessions"])
        .to("x", Produced::with(Serdes::string(), Serdes::i64()));
    s.process(|| Snoop).to("output", Produced::with(Serdes::string().nullable(), Serdes::string()));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let err = driver.pipe(&input(), None, "a".into(), 1).unwrap_err().to_string();
    assert!(err.contains("uses state store \"counts\" without declaring it (process_with_stores)"), "{err}");
}

#[test]
fn stores_must_be_declared_and_tie_their_users_into_one_sub_topology() {
    let builder = StreamsBuilder::new();
    builder
        .stream("input", strings())
        .process_with_stores(|| WordCounter, &["counts"])
        .to("x", Produced::with(Serdes::string(), Serdes::i64()));
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("uses state store \"counts\", which was never added"), "{err}");

    let builder = StreamsBuilder::new();
    builder.add_state_store(StoreBuilder::key_value::<String, i64>("counts"));
    builder
        .stream("a", strings())
        .process_with_stores(|| WordCounter, &["counts"])
        .to("x", Produced::with(Serdes::string(), Serdes::i64()));
    builder
        .stream("b", strings())
        .process_with_stores(|| WordCounter, &["counts"])
        .to("y", Produced::with(Serdes::string(), Serdes::i64()));
    // As in Kafka Streams, processors sharing a store run in one task: one sub-topology whose
    // topics must then be co-partitioned.
    let topology = builder.build().unwrap();
    let subs = topology.subtopologies();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].source_topics, ["a", "b"]);
    let config = DriverConfig::default().partitions("a", 2).partitions("b", 3);
    let err = TopologyTestDriver::with_config(topology, config).unwrap_err().to_string();
    assert!(err.contains("reads a (2 partitions) and b (3 partitions)"), "{err}");
}

/// Counts records per key in 10 ms tumbling windows kept in a window store.
struct WindowCounter;

impl Processor<Option<String>, String, String, i64> for WindowCounter {
    fn process(
        &mut self,
        record: Record<Option<String>, String>,
        ctx: &mut ProcessorContext<'_, String, i64>,
    ) -> freshet_dsl::Result<()> {
        let key = record.key.clone().unwrap_or_default();
        let start = record.timestamp - record.timestamp.rem_euclid(10);
        let store = ctx.window_store::<String, i64>("per-window")?;
        let n = store.fetch(&key, start)?.unwrap_or(0) + 1;
        store.put(&key, Some(&n), start)?;
        ctx.forward(Record::new(format!("{key}@{start}"), n, record.timestamp))
    }
}

#[test]
fn processors_use_window_stores() {
    let builder = StreamsBuilder::new();
    let window = freshet_state::WindowOptions { retention_ms: 1_000, window_size_ms: 10, retain_duplicates: false };
    builder.add_state_store(StoreBuilder::window::<String, i64>("per-window", window));
    builder
        .stream("input", strings())
        .process_with_stores(|| WindowCounter, &["per-window"])
        .to("output", Produced::with(Serdes::string(), Serdes::i64()));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    for (k, ts) in [("a", 1), ("a", 9), ("b", 9), ("a", 10), ("a", 3)] {
        driver.pipe(&input(), Some(k.into()), String::new(), ts).unwrap();
    }
    let out = TestOutputTopic::new("output", Serdes::string(), Serdes::i64());
    let counts: Vec<(String, i64)> =
        driver.read_output(&out).unwrap().into_iter().map(|r| (r.record.key, r.record.value)).collect();
    let expected = [("a@0", 1), ("a@0", 2), ("b@0", 1), ("a@10", 1), ("a@0", 3)];
    assert_eq!(counts, expected.map(|(k, n)| (k.to_string(), n)));
}
