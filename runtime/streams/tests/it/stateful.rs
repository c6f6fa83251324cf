//! The DSL's stateful operators in the test driver, data-driven: records in, the output a Kafka
//! Streams user expects, held as snapshots. Tables, aggregations, re-aggregation, every window
//! kind with grace, late records and emit-final, and every join.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use freshet_dsl::{
    Consumed, EmitStrategy, Grouped, JoinWindows, KStream, KTable, Materialized, Produced, Serdes, SessionWindows,
    SlidingWindows, StreamJoined, StreamsBuilder, TimeWindows, Windowed,
};
use freshet_runtime::{DriverConfig, TestInputTopic, TestOutputTopic, TopologyTestDriver};

type Records<'a> = &'a [(&'a str, Option<&'a str>, i64)];

fn strings() -> Consumed<String, String> {
    Consumed::with(Serdes::string(), Serdes::string())
}

fn topic(name: &str) -> TestInputTopic<String, Option<String>> {
    TestInputTopic::new(name, Serdes::string(), Serdes::string().nullable())
}

fn out() -> TestOutputTopic<String, Option<String>> {
    TestOutputTopic::new("out", Serdes::string(), Serdes::string().nullable())
}

fn counts_out() -> TestOutputTopic<String, Option<i64>> {
    TestOutputTopic::new("out", Serdes::string(), Serdes::i64().nullable())
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn pipe(driver: &mut TopologyTestDriver, input: &str, records: Records<'_>) {
    for (k, v, ts) in records {
        driver.pipe(&topic(input), k.to_string(), v.map(str::to_string), *ts).unwrap();
    }
}

/// Writes a windowed table's updates to `out` with the window in the key: `key@start..end` (end
/// exclusive for time windows, inclusive for sliding windows and sessions).
fn windowed_to_out<V: Clone + Send + 'static>(
    table: &KTable<Windowed<String>, V>,
    value: impl freshet_dsl::Serde<Option<V>>,
) {
    table
        .to_stream()
        .map(|w, v| (format!("{}@{}..{}", w.key, w.start, w.end), v.clone()))
        .to("out", Produced::with(Serdes::string(), value));
}

fn count_words(stream: &KStream<String, String>) -> KTable<String, i64> {
    stream
        .flat_map_values(|line| line.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>())
        .group_by(|_, word| word.clone(), Grouped::with(Serdes::string(), Serdes::string()))
        .count(Materialized::named("counts"))
}

#[test]
fn a_table_from_a_topic_keeps_the_latest_value_and_forwards_changes() {
    let builder = StreamsBuilder::new();
    let table = builder.table("users", strings(), Materialized::named("users-store"));
    table
        .filter(|_, v| !v.starts_with("banned"))
        .map_values(|v| v.to_uppercase())
        .to_stream()
        .to("out", Produced::with(Serdes::string(), Serdes::string().nullable()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("table_describe", topology.describe());
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    pipe(
        &mut driver,
        "users",
        &[
            ("alice", Some("paris"), 1),
            ("bob", Some("oslo"), 2),
            ("alice", Some("rome"), 3),
            ("bob", Some("banned: spam"), 4),
            ("carol", None, 5),
            ("alice", None, 6),
            ("dave", Some("lima"), 7),
        ],
    );
    insta::assert_snapshot!("table_output", driver.render_output(&out()).unwrap());
    let table = driver.render_table::<String, String>("users-store", &Serdes::string(), &Serdes::string()).unwrap();
    assert_eq!(table, "\"bob\" => \"banned: spam\" @ 4\n\"dave\" => \"lima\" @ 7\n");
}

#[test]
fn word_count_repartitions_by_word_and_counts_across_partitions() {
    let builder = StreamsBuilder::new();
    let lines = builder.stream("lines", strings());
    count_words(&lines).to_stream().to("out", Produced::with(Serdes::string(), Serdes::i64().nullable()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("word_count_describe", topology.describe());
    assert_eq!(topology.internal_topics()[0].name, "counts-repartition");
    let mut driver = TopologyTestDriver::with_config(topology, DriverConfig::default().partitions("lines", 3)).unwrap();
    pipe(
        &mut driver,
        "lines",
        &[("l1", Some("the cat"), 10), ("l2", Some("The dog"), 20), ("l3", Some("a cat and THE dog"), 30)],
    );
    // The repartition topic takes the partition count of the topic feeding it.
    let moved = driver.topic_records("counts-repartition");
    assert!(moved.iter().all(|r| r.partition < 3) && moved.iter().any(|r| r.partition > 0));
    let mut lines: Vec<String> = driver
        .read_output(&counts_out())
        .unwrap()
        .into_iter()
        .map(|r| format!("{} => {:?} t={}", r.record.key, r.record.value, r.record.timestamp))
        .collect();
    // Across partitions the order of different words is the partitions'; each word's counts are in order.
    lines.sort_by_key(|l| l.split(" => ").next().unwrap().to_string());
    insta::assert_snapshot!("word_count_output", lines.join("\n"));
    let counts = driver.table_entries("counts", &Serdes::string(), &Serdes::i64()).unwrap();
    let summary: Vec<String> = counts.iter().map(|(k, v, _): &(String, i64, i64)| format!("{k}={v}")).collect();
    assert_eq!(summary, ["a=1", "and=1", "cat=2", "dog=2", "the=3"]);
}

#[test]
fn reduce_and_aggregate_fold_each_keys_values() {
    let builder = StreamsBuilder::new();
    let amounts: KStream<String, i64> = builder.stream("amounts", Consumed::with(Serdes::string(), Serdes::i64()));
    let grouped = amounts.group_by_key(Grouped::with(Serdes::string(), Serdes::i64()));
    grouped
        .reduce(|a: &i64, b: &i64| a.max(b).to_owned(), Materialized::new())
        .to_stream()
        .map_values(|v| v.map(|m| format!("max {m}")))
        .to("out", Produced::with(Serdes::string(), Serdes::string().nullable()));
    grouped
        .aggregate(
            Vec::new,
            |_, v, mut seen: Vec<i64>| {
                seen.push(*v);
                seen
            },
            Serdes::json(),
            Materialized::named("history"),
        )
        .to_stream()
        .map_values(|v| v.as_ref().map(|s| format!("history {s:?}")))
        .to("out", Produced::with(Serdes::string(), Serdes::string().nullable()));
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let input = TestInputTopic::new("amounts", Serdes::string(), Serdes::i64());
    for (k, v, ts) in [("x", 5i64, 100), ("y", 1, 50), ("x", 3, 90), ("x", 9, 200)] {
        driver.pipe(&input, k.to_string(), v, ts).unwrap();
    }
    insta::assert_snapshot!("reduce_aggregate_output", driver.render_output(&out()).unwrap());
}

#[test]
fn table_group_by_subtracts_old_values_and_adds_new_ones() {
    let builder = StreamsBuilder::new();
    let users = builder.table("user-regions", strings(), Materialized::new());
    let per_region = users
        .group_by(|_, region| (region.clone(), 1i64), Grouped::with(Serdes::string(), Serdes::i64()))
        .count(Materialized::named("users-per-region"));
    per_region.to_stream().to("out", Produced::with(Serdes::string(), Serdes::i64().nullable()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("regroup_describe", topology.describe());
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    pipe(
        &mut driver,
        "user-regions",
        &[
            ("alice", Some("eu"), 1),
            ("bob", Some("eu"), 2),
            ("carol", Some("us"), 3),
            ("alice", Some("us"), 4), // moves: eu loses one, us gains one
            ("bob", Some("eu"), 5),   // same group: subtract and add in one update
            ("carol", None, 6),       // leaves: us loses one
        ],
    );
    insta::assert_snapshot!("regroup_output", driver.render_output(&counts_out()).unwrap());
}

#[test]
fn tumbling_windows_accept_records_within_grace_and_drop_late_ones() {
    let late = Arc::new(AtomicU64::new(0));
    let seen = late.clone();
    let builder = StreamsBuilder::new();
    let clicks = builder
        .stream("clicks", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
        .on_late_record(move |r| {
            assert_eq!(*r.key, "a");
            seen.fetch_add(1, Ordering::Relaxed);
        })
        .count(Materialized::named("clicks-per-10ms"));
    windowed_to_out(&clicks, Serdes::i64().nullable());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    pipe(
        &mut driver,
        "clicks",
        &[
            ("a", Some("1"), 0),
            ("a", Some("2"), 9),  // last instant of [0,10)
            ("a", Some("3"), 10), // first instant of [10,20)
            ("b", Some("4"), 14), // stream time 14: [0,10) closes at 15
            ("a", Some("5"), 4),  // out of order, within grace
            ("a", Some("6"), 15), // stream time 15: [0,10) is closed
            ("a", Some("7"), 9),  // late: dropped, counted
            ("a", Some("8"), 19),
        ],
    );
    insta::assert_snapshot!("tumbling_output", driver.render_output(&counts_out()).unwrap());
    let windows = driver.window_entries("clicks-per-10ms", &Serdes::string(), &Serdes::i64()).unwrap();
    let windows: Vec<(String, i64, i64, i64)> = windows;
    assert_eq!(windows, [("a".into(), 0, 3, 9), ("a".into(), 10, 3, 19), ("b".into(), 10, 1, 14)]);
    assert_eq!(driver.late_records(), 1);
    assert_eq!(late.load(Ordering::Relaxed), 1);
}

#[test]
fn hopping_windows_count_a_record_in_every_window_that_holds_it() {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream("clicks", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(10)).advance_by(ms(5)))
        .count(Materialized::new());
    windowed_to_out(&counts, Serdes::i64().nullable());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    pipe(&mut driver, "clicks", &[("a", Some("1"), 3), ("a", Some("2"), 7), ("a", Some("3"), 12), ("a", Some("4"), 4)]);
    insta::assert_snapshot!("hopping_output", driver.render_output(&counts_out()).unwrap());
    // 4 lies in [0,10) (closed at stream time 12 with no grace) and [-5,5) (never opened).
    assert_eq!(driver.late_records(), 1);
}

#[test]
fn emit_final_holds_each_window_until_it_closes() {
    let builder = StreamsBuilder::new();
    let views = builder
        .stream("views", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(2)))
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count(Materialized::named("views"));
    windowed_to_out(&views, Serdes::i64().nullable());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let mut steps = String::new();
    for (k, ts) in
        [("home", 1), ("cart", 3), ("home", 8), ("home", 11), ("cart", 9), ("home", 12), ("cart", 25), ("home", 31)]
    {
        pipe(&mut driver, "views", &[(k, Some("v"), ts)]);
        steps.push_str(&format!("-- {k} at {ts}\n{}", driver.render_output(&counts_out()).unwrap()));
    }
    insta::assert_snapshot!("emit_final_output", steps);
}

#[test]
fn sliding_windows_hold_every_distinct_set_of_records_within_the_difference() {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream("events", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by_sliding(SlidingWindows::of_time_difference_and_grace(ms(10), ms(20)))
        .count(Materialized::named("sliding"));
    windowed_to_out(&counts, Serdes::i64().nullable());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let mut steps = String::new();
    for ts in [10, 15, 30, 12] {
        pipe(&mut driver, "events", &[("k", Some("v"), ts)]);
        steps.push_str(&format!("-- at {ts}\n{}", driver.render_output(&counts_out()).unwrap()));
    }
    insta::assert_snapshot!("sliding_output", steps);
}

#[test]
fn sessions_merge_retract_the_sessions_they_replace_and_drop_late_records() {
    let builder = StreamsBuilder::new();
    let sessions = builder
        .stream("activity", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(5), ms(10)))
        .count(Materialized::named("sessions"));
    windowed_to_out(&sessions, Serdes::i64().nullable());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let mut steps = String::new();
    for (k, ts) in [("u", 0), ("u", 4), ("u", 20), ("u", 12), ("u", 16), ("v", 40), ("u", 9), ("u", 36)] {
        pipe(&mut driver, "activity", &[(k, Some("x"), ts)]);
        steps.push_str(&format!("-- {k} at {ts}\n{}", driver.render_output(&counts_out()).unwrap()));
    }
    insta::assert_snapshot!("session_output", steps);
    // u at 9 would join 0..4 and 12..20, which ended before the close time (40 - 10 - 5).
    assert_eq!(driver.late_records(), 1);
    let sessions: Vec<(String, i64, i64, i64)> =
        driver.session_entries("sessions", &Serdes::string(), &Serdes::i64()).unwrap();
    // 0..4 has left the store: its retention (2 gaps + grace + 1 = 21 ms) is behind stream time 40.
    let expected: Vec<(String, i64, i64, i64)> =
        vec![("u".into(), 12, 20, 3), ("u".into(), 36, 36, 1), ("v".into(), 40, 40, 1)];
    assert_eq!(sessions, expected);
}

#[test]
fn sessions_emit_final_once_closed() {
    let builder = StreamsBuilder::new();
    let sessions = builder
        .stream("activity", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by_session(SessionWindows::of_inactivity_gap_with_no_grace(ms(5)))
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count(Materialized::new());
    windowed_to_out(&sessions, Serdes::i64().nullable());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    pipe(
        &mut driver,
        "activity",
        &[("u", Some("x"), 0), ("u", Some("x"), 3), ("w", Some("x"), 6), ("u", Some("x"), 12), ("w", Some("x"), 30)],
    );
    insta::assert_snapshot!("session_emit_final_output", driver.render_output(&counts_out()).unwrap());
}

#[test]
fn sessions_emit_final_once_closed_after_merges() {
    let builder = StreamsBuilder::new();
    let sessions = builder
        .stream("activity", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(ms(5), ms(10)))
        .emit_strategy(EmitStrategy::OnWindowClose)
        .count(Materialized::new());
    windowed_to_out(&sessions, Serdes::i64().nullable());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    // u@4 arrives within grace and bridges u's sessions [0,0] and [8,8]: one session [0,8] of 3
    // closes (at stream time 30); the two it merged are never emitted.
    pipe(
        &mut driver,
        "activity",
        &[("u", Some("x"), 0), ("u", Some("x"), 8), ("u", Some("x"), 4), ("w", Some("x"), 30), ("w", Some("x"), 50)],
    );
    let out = driver.render_output(&counts_out()).unwrap();
    assert_eq!(out.trim(), "0@0 t=8 \"u@0..8\" => Some(3)\n0@1 t=30 \"w@30..30\" => Some(1)", "{out}");
}

fn join_inputs(builder: &StreamsBuilder) -> (KStream<String, String>, KStream<String, String>) {
    (builder.stream("left", strings()), builder.stream("right", strings()))
}

fn joined() -> StreamJoined<String, String, String> {
    StreamJoined::with(Serdes::string(), Serdes::string(), Serdes::string())
}

const JOIN_RECORDS: &[(&str, &str, &str, i64)] = &[
    ("left", "k", "L1", 100),
    ("right", "k", "R1", 110), // at the window's after edge: joins L1
    ("right", "k", "R2", 111), // past it: no partner yet
    ("left", "m", "L2", 115),  // never gets a partner
    ("left", "k", "L3", 121),  // R2 is 10 before it: joins R2 only
    ("right", "k", "R3", 90),  // out of order, within grace: joins L1 (10 before it)
    ("left", "z", "L4", 200),  // moves stream time: closes the windows of the unmatched
];

fn run_join(
    make: impl FnOnce(&KStream<String, String>, &KStream<String, String>) -> KStream<String, String>,
) -> (String, String) {
    let builder = StreamsBuilder::new();
    let (left, right) = join_inputs(&builder);
    make(&left, &right).to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().unwrap();
    let describe = topology.describe();
    let mut driver = TopologyTestDriver::new(topology).unwrap();
    let mut steps = String::new();
    for (t, k, v, ts) in JOIN_RECORDS {
        driver.pipe(&topic(t), k.to_string(), Some(v.to_string()), *ts).unwrap();
        steps.push_str(&format!("-- {v} at {ts}\n"));
        for r in driver.read_output(&TestOutputTopic::new("out", Serdes::string(), Serdes::string())).unwrap() {
            let r: freshet_runtime::TestRecord<String, String> = r;
            steps.push_str(&format!("{} => {} t={}\n", r.record.key, r.record.value, r.record.timestamp));
        }
    }
    (describe, steps)
}

#[test]
fn stream_stream_inner_join_pairs_records_within_the_window() {
    let (describe, steps) = run_join(|l, r| {
        l.join(r, |a, b| format!("{a}+{b}"), JoinWindows::of_time_difference_and_grace(ms(10), ms(50)), joined())
    });
    insta::assert_snapshot!("inner_join_describe", describe);
    insta::assert_snapshot!("inner_join_output", steps);
}

#[test]
fn stream_stream_left_join_emits_the_unmatched_once_their_window_closes() {
    let (_, steps) = run_join(|l, r| {
        l.left_join(
            r,
            |a, b: Option<&String>| format!("{a}+{}", b.map_or("null", |s| s)),
            JoinWindows::of_time_difference_and_grace(ms(10), ms(50)),
            joined(),
        )
    });
    insta::assert_snapshot!("left_join_output", steps);
}

#[test]
fn stream_stream_outer_join_emits_the_unmatched_of_both_sides() {
    let (_, steps) = run_join(|l, r| {
        l.outer_join(
            r,
            |a: Option<&String>, b: Option<&String>| format!("{}+{}", a.map_or("null", |s| s), b.map_or("null", |s| s)),
            JoinWindows::of_time_difference_and_grace(ms(10), ms(50)),
            joined().named("clicks-views"),
        )
    });
    insta::assert_snapshot!("outer_join_output", steps);
}

#[test]
fn asymmetric_join_windows_look_before_and_after_from_the_left() {
    let (_, steps) = run_join(|l, r| {
        let windows = JoinWindows::of_time_difference_and_grace(ms(0), ms(50)).after(ms(11));
        l.join(r, |a, b| format!("{a}+{b}"), windows, joined())
    });
    insta::assert_snapshot!("asymmetric_join_output", steps);
}

#[test]
fn stream_table_joins_look_up_the_tables_current_value() {
    let builder = StreamsBuilder::new();
    let users = builder.table("users", strings(), Materialized::new());
    let clicks = builder.stream("clicks", strings());
    clicks
        .join_table(&users, |click, user| format!("{click} by {user}"), Serdes::string())
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    clicks
        .left_join_table(&users, |click, user: Option<&String>| format!("{click} by {user:?}"), Serdes::string())
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("stream_table_describe", topology.describe());
    let mut driver =
        TopologyTestDriver::with_config(topology, DriverConfig { default_partitions: 2, ..Default::default() })
            .unwrap();
    pipe(&mut driver, "clicks", &[("alice", Some("c1"), 1)]); // no user yet
    pipe(&mut driver, "users", &[("alice", Some("Alice A."), 2), ("bob", Some("Bob B."), 2)]); // no output
    pipe(&mut driver, "clicks", &[("alice", Some("c2"), 3), ("bob", Some("c3"), 4)]);
    pipe(&mut driver, "users", &[("alice", None, 5)]);
    pipe(&mut driver, "clicks", &[("alice", Some("c4"), 6)]);
    let mut lines: Vec<String> = driver
        .read_output(&out())
        .unwrap()
        .into_iter()
        .map(|r| format!("t={} {} => {}", r.record.timestamp, r.record.key, r.record.value.unwrap()))
        .collect();
    lines.sort();
    insta::assert_snapshot!("stream_table_output", lines.join("\n"));
}

#[test]
fn stream_global_table_joins_by_a_mapped_key_without_co_partitioning() {
    let builder = StreamsBuilder::new();
    let products = builder.global_table("products", strings(), Materialized::named("products"));
    let orders = builder.stream("orders", strings());
    orders
        .join_global(&products, |_, product_id| product_id.clone(), |product_id, name| format!("{product_id}: {name}"))
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    orders
        .left_join_global(
            &products,
            |_, product_id| product_id.clone(),
            |p, name: Option<&String>| format!("{p}? {name:?}"),
        )
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("global_describe", topology.describe());
    // The global topic has 3 partitions, the orders 2: no co-partitioning needed.
    let config = DriverConfig::default().partitions("products", 3).partitions("orders", 2);
    let mut driver = TopologyTestDriver::with_config(topology, config).unwrap();
    pipe(&mut driver, "products", &[("p1", Some("lamp"), 1), ("p2", Some("desk"), 1), ("p3", Some("chair"), 1)]);
    pipe(&mut driver, "orders", &[("o1", Some("p1"), 2), ("o2", Some("p3"), 3), ("o3", Some("p9"), 4)]);
    pipe(&mut driver, "products", &[("p3", None, 5)]);
    pipe(&mut driver, "orders", &[("o4", Some("p3"), 6)]);
    let mut lines: Vec<String> = driver
        .read_output(&out())
        .unwrap()
        .into_iter()
        .map(|r| format!("t={} {} => {}", r.record.timestamp, r.record.key, r.record.value.unwrap()))
        .collect();
    lines.sort();
    insta::assert_snapshot!("global_output", lines.join("\n"));
}

#[test]
fn table_table_joins_forward_the_change_of_the_joined_value() {
    let mut all = String::new();
    for kind in ["inner", "left", "outer"] {
        let builder = StreamsBuilder::new();
        let names = builder.table("names", strings(), Materialized::new());
        let emails = builder.table("emails", strings(), Materialized::new());
        let show = |o: Option<&String>| o.map_or("null".to_string(), |s| s.clone());
        let joined = match kind {
            "inner" => names.join(&emails, |n, e| format!("{n} <{e}>")),
            "left" => names.left_join(&emails, move |n, e| format!("{n} <{}>", show(e))),
            _ => names.outer_join(&emails, move |n, e| format!("{} <{}>", show(n), show(e))),
        };
        joined.to_stream().to("out", Produced::with(Serdes::string(), Serdes::string().nullable()));
        let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
        all.push_str(&format!("== {kind}\n"));
        for (t, k, v, ts) in [
            ("names", "1", Some("Ann"), 1),
            ("emails", "1", Some("ann@x"), 5),
            ("emails", "2", Some("bo@x"), 6),
            ("names", "1", Some("Anna"), 3),
            ("emails", "1", None, 8),
            ("names", "2", Some("Bo"), 9),
            ("names", "2", None, 10),
        ] {
            driver.pipe(&topic(t), k.to_string(), v.map(str::to_string), ts).unwrap();
            all.push_str(&format!("-- {t} {k}={v:?} at {ts}\n{}", driver.render_output(&out()).unwrap()));
        }
    }
    insta::assert_snapshot!("table_table_output", all);
}

#[test]
fn joins_of_inputs_known_to_differ_in_partitions_fail_to_build() {
    let builder = StreamsBuilder::new();
    let (left, right) = join_inputs(&builder);
    let l = left.repartition(
        freshet_dsl::Repartitioned::with(Serdes::string(), Serdes::string()).named("l").with_partitions(4),
    );
    let r = right.repartition(
        freshet_dsl::Repartitioned::with(Serdes::string(), Serdes::string()).named("r").with_partitions(2),
    );
    let _ = l.join(&r, |a, b| format!("{a}{b}"), JoinWindows::of_time_difference_with_no_grace(ms(5)), joined());
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("not co-partitioned") && err.contains("4 and 2"), "{err}");

    let builder = StreamsBuilder::new();
    let _ = builder
        .stream("s", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(5)).advance_by(ms(6)))
        .count(Materialized::new());
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("advance (6 ms) must be between 1 ms and the size (5 ms)"), "{err}");

    let builder = StreamsBuilder::new();
    let _ = builder
        .stream("s", strings())
        .group_by_key(Grouped::with(Serdes::string(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_and_grace(ms(10), ms(5)))
        .count(Materialized::named("short").with_retention(ms(12)));
    let err = builder.build().unwrap_err().to_string();
    assert!(err.contains("store short") && err.contains("retention of 12 ms"), "{err}");
}

#[test]
fn records_without_a_key_or_with_a_negative_timestamp_are_dropped_and_counted() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", strings())
        .select_key(|_, v: &String| if v.is_empty() { None } else { Some(v.clone()) })
        .group_by_key(Grouped::with(Serdes::string().nullable(), Serdes::string()))
        .windowed_by(TimeWindows::of_size_with_no_grace(ms(10)))
        .count(Materialized::new());
    let mut driver = TopologyTestDriver::new(builder.build().unwrap()).unwrap();
    let input = TestInputTopic::new("in", Serdes::string(), Serdes::string());
    driver.pipe(&input, "k".to_string(), String::new(), 1).unwrap();
    driver.pipe(&input, "k".to_string(), "v".to_string(), -5).unwrap();
    driver.pipe(&input, "k".to_string(), "v".to_string(), 5).unwrap();
    assert_eq!(driver.dropped_records(), 2);
}

#[test]
fn a_join_side_whose_keys_changed_is_repartitioned_first() {
    let builder = StreamsBuilder::new();
    let (left, right) = join_inputs(&builder);
    // The right side arrives keyed by value: re-key it by the value's first word.
    let right = right.select_key(|_, v| v.split(' ').next().unwrap_or_default().to_string());
    left.join(&right, |a, b| format!("{a}+{b}"), JoinWindows::of_time_difference_with_no_grace(ms(10)), joined())
        .to("out", Produced::with(Serdes::string(), Serdes::string()));
    let topology = builder.build().unwrap();
    insta::assert_snapshot!("rekeyed_join_describe", topology.describe());
    let mut driver =
        TopologyTestDriver::with_config(topology, DriverConfig { default_partitions: 3, ..Default::default() })
            .unwrap();
    pipe(&mut driver, "left", &[("a", Some("L-a"), 1), ("b", Some("L-b"), 2), ("c", Some("L-c"), 3)]);
    pipe(&mut driver, "right", &[("x", Some("b one"), 4), ("y", Some("c two"), 5), ("z", Some("a three"), 30)]);
    let mut lines: Vec<String> = driver
        .read_output(&out())
        .unwrap()
        .into_iter()
        .map(|r| format!("t={} {} => {}", r.record.timestamp, r.record.key, r.record.value.unwrap()))
        .collect();
    lines.sort();
    assert_eq!(lines, ["t=4 b => L-b+b one", "t=5 c => L-c+c two"]);
}
