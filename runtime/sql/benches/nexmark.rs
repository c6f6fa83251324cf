//! Nexmark as continuous SQL on the embedded log.
//!
//! `cargo bench -p freshet-sql --bench nexmark`. Generates Nexmark events
//! (`FRESHET_NEXMARK_EVENTS`, default 2 million; the `nexmark` crate's default mix: 2% persons,
//! 6% auctions, 92% bids; values JSON, record time the event's time) twice, each time on a log of
//! its own, in two layouts:
//!
//! - **mixed**, Flink's setup: one topic of all events (each a flat JSON object with its
//!   `event_type`), which every query reads whole; `person_stream`, `auction` and `bid` are views
//!   over it that keep one kind of event. q3's person table is then a query of its own (each
//!   person's latest values by id, `last_value`), run first; q3's time is both queries'.
//! - **split**: a topic per kind (`person` keyed by id, read as a table by q3 and as a stream by
//!   the others; `auction` keyed by id; `bid` keyed by auction), so a query reads only the events
//!   it uses.
//!
//! `FRESHET_NEXMARK_LAYOUTS=mixed` or `split` runs one layout; `FRESHET_NEXMARK_QUERIES=q3,q8`
//! chosen queries.
//!
//! Each query runs as a continuous query with one stream thread (one core) until it has read its
//! input. A line prints events per second beside Flink's published per-core figure and beside the
//! storage engine's read throughput of the same topics, measured in the same run. A query is
//! timed from its first record read to its last record in or out; starting up (joining the
//! group, opening stores) is printed apart.
//!
//! Each line also shows the records the query wrote beside the count an ad-hoc query over the
//! same topics expects (EMIT FINAL writes fewer: windows still open at the end are not final), and
//! the records it skipped, dropped or found late. States are written upper-case, as Nexmark's own
//! generator writes them (q3 filters on 'OR', 'ID', 'CA').
//!
//! The last columns count CPU rather than time: the cores the whole process used while the query
//! ran (its stream thread, and the log's threads appending its repartition, changelog and output
//! records, serving fetches and flushing), and the events per CPU-second of all of them, beside
//! Flink's per-core figure: the strictest comparison, as it charges the query with the work of
//! the log (a Kafka broker's, which Flink's figures leave out).
//!
//! Events per second count the events of the topics a query reads: in the mixed layout all of
//! them, as Flink's figures do (its queries read its one source whole), the like-for-like
//! comparison; in the split layout only the query's kinds (bids, or persons and auctions), a
//! stricter measure. The `workload/s` column counts all Nexmark events generated over the time
//! the query took to cover them (the same as events/s in the mixed layout). The layouts differ
//! most for q3 and q8, which read 8% of the events in the split layout.
//!
//! q5 and q7 are Nexmark's whole queries: q5 the auctions with the most bids per hopping window
//! (the per-auction counts joined on their window with the aggregate of their maximum; the counts
//! are computed once for both), q7 the bids at their tumbling window's highest price (the bids
//! joined with the windows' maxima, bounded by the window). Both EMIT FINAL, so windows still open
//! at the end write nothing: their expected counts leave out the windows whose results could not
//! be final yet (q5's second stage waits one window more for late results, see the SQL module).
//! q8 is Nexmark's too: the persons (per tumbling window) who opened an auction in that window, a
//! join of two windowed aggregates' final results on the person and the window. `q8j` is not a
//! Nexmark query: q8's persons and auctions joined record by record (a windowed stream-stream
//! join on the seller and date_bin of both times, one result per auction), shown beside q8's
//! Flink figure for scale.

#![allow(clippy::print_stdout)]

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::arrow::array::Int64Array;
use freshet_core::config::LogConfig;
use freshet_core::{Admin, Consumer, ConsumerConfig, Embedded, NewTopic, Producer, ProducerRecord, TopicPartition};
use freshet_runtime::{Metrics, StreamsApp, StreamsConfig};
use freshet_sql::SqlSession;
use nexmark::event::Event;
use tokio::runtime::Runtime;

const TOPICS: [&str; 3] = ["person", "auction", "bid"];

const DECLARATIONS: &str = "
CREATE TABLE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR, city VARCHAR,
    state VARCHAR, date_time BIGINT, extra VARCHAR) WITH (topic = 'person', key = 'id');
CREATE STREAM person_stream (id BIGINT, name VARCHAR, city VARCHAR, state VARCHAR, date_time BIGINT)
    WITH (topic = 'person');
CREATE STREAM auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT, reserve BIGINT,
    date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra VARCHAR) WITH (topic = 'auction');
CREATE STREAM bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR, date_time BIGINT,
    extra VARCHAR) WITH (topic = 'bid');
";

/// The mixed layout: every event in one topic, its fields flat beside `event_type` (0 a person, 1
/// an auction, 2 a bid; persons and auctions share `id`, `date_time` and `extra`), as Flink's
/// Nexmark source gives them; each kind a view over it, under the names the queries use.
const MIXED_DECLARATIONS: &str = "
CREATE STREAM nexmark (event_type INT, id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR,
    city VARCHAR, state VARCHAR, date_time BIGINT, extra VARCHAR, item_name VARCHAR, description VARCHAR,
    initial_bid BIGINT, reserve BIGINT, expires BIGINT, seller BIGINT, category BIGINT, auction BIGINT,
    bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR) WITH (topic = 'nexmark');
CREATE VIEW person_stream AS SELECT id, name, city, state, date_time, _timestamp FROM nexmark WHERE event_type = 0;
CREATE VIEW auction AS SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller,
    category, extra, _timestamp FROM nexmark WHERE event_type = 1;
CREATE VIEW bid AS SELECT auction, bidder, price, channel, url, date_time, extra, _timestamp FROM nexmark
    WHERE event_type = 2;
";

/// q3's person table in the mixed layout: each person's latest values, by id.
const PERSON_TABLE: &str = "CREATE TABLE person AS SELECT id, last_value(name) AS name, last_value(city) AS city, \
    last_value(state) AS state FROM person_stream GROUP BY id";

/// How the events lie in topics.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One topic of all events, which every query reads whole (Flink's setup).
    Mixed,
    /// One topic per kind of event; a query reads only the kinds it uses.
    Split,
}

/// (name, Flink's events per core-second, the query, the topics it reads).
type Query = (&'static str, f64, &'static str, &'static [&'static str]);

const QUERIES: [Query; 8] = [
    ("q0", 155_000.0, "CREATE STREAM q0 AS SELECT auction, bidder, price, date_time FROM bid", &["bid"]),
    (
        "q1",
        158_000.0,
        "CREATE STREAM q1 AS SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid",
        &["bid"],
    ),
    ("q2", 175_000.0, "CREATE STREAM q2 AS SELECT auction, price FROM bid WHERE auction % 123 = 0", &["bid"]),
    (
        "q3",
        152_000.0,
        "CREATE STREAM q3 AS SELECT p.name, p.city, p.state, a.id FROM auction a JOIN person p ON a.seller = p.id \
         WHERE a.category = 10 AND (p.state = 'OR' OR p.state = 'ID' OR p.state = 'CA')",
        &["auction", "person"],
    ),
    (
        "q5",
        22_000.0,
        "CREATE STREAM q5 AS SELECT ab.auction, ab.num FROM \
         (SELECT auction, count(*) AS num, window_start() AS starttime, window_end() AS endtime FROM bid \
          GROUP BY hop(INTERVAL '2' SECOND, INTERVAL '10' SECOND), auction) ab \
         JOIN (SELECT max(num) AS maxn, starttime, endtime FROM \
          (SELECT auction, count(*) AS num, window_start() AS starttime, window_end() AS endtime FROM bid \
           GROUP BY hop(INTERVAL '2' SECOND, INTERVAL '10' SECOND), auction) cb GROUP BY starttime, endtime) mb \
         ON ab.starttime = mb.starttime AND ab.endtime = mb.endtime AND ab.num >= mb.maxn EMIT FINAL",
        &["bid"],
    ),
    (
        "q7",
        12_000.0,
        "CREATE STREAM q7 AS SELECT b.auction, b.price, b.bidder, b.date_time, b.extra FROM bid b \
         JOIN (SELECT max(price) AS maxprice, window_start() AS starttime, window_end() AS endtime FROM bid \
          GROUP BY tumble(INTERVAL '10' SECOND)) m \
         ON b.price = m.maxprice AND b._timestamp >= m.starttime AND b._timestamp < m.endtime EMIT FINAL",
        &["bid"],
    ),
    (
        "q8",
        146_000.0,
        "CREATE STREAM q8 AS SELECT p.id, p.name, p.starttime FROM \
         (SELECT id, name, window_start() AS starttime, window_end() AS endtime FROM person_stream \
          GROUP BY tumble(INTERVAL '10' SECOND), id, name) p \
         JOIN (SELECT seller, window_start() AS starttime, window_end() AS endtime FROM auction \
          GROUP BY tumble(INTERVAL '10' SECOND), seller) a \
         ON p.id = a.seller AND p.starttime = a.starttime AND p.endtime = a.endtime EMIT FINAL",
        &["person", "auction"],
    ),
    (
        "q8j",
        146_000.0,
        "CREATE STREAM q8j AS SELECT p.id, p.name, a.reserve FROM person_stream p JOIN auction a ON p.id = a.seller \
         AND date_bin(INTERVAL '10' SECOND, p._timestamp) = date_bin(INTERVAL '10' SECOND, a._timestamp)",
        &["person", "auction"],
    ),
];

/// The records each query should write, counted by an ad-hoc query over the same topics
/// (EMIT FINAL queries write fewer: the windows still open when the input ends are not final).
/// q3 joins each auction with the person table as of the auction's time, so the count leaves out
/// auctions whose seller's record is later than the auction (Nexmark writes a few: 41 of 12,374
/// matches at 2 million events).
fn expected(name: &str) -> Option<&'static str> {
    Some(match name {
        "q0" | "q1" => "SELECT count(*) FROM bid",
        "q2" => "SELECT count(*) FROM bid WHERE auction % 123 = 0",
        "q3" => {
            "SELECT count(*) FROM auction a JOIN person p ON a.seller = p.id \
             WHERE a.category = 10 AND (p.state = 'OR' OR p.state = 'ID' OR p.state = 'CA') \
             AND p._timestamp <= a._timestamp"
        }
        // Windows close once a bid at or past their end comes: all but the last.
        "q7" => {
            "SELECT count(*) FROM bid b JOIN \
             (SELECT date_bin(INTERVAL '10' SECOND, _timestamp) AS s, max(price) AS m FROM bid GROUP BY 1) w \
             ON b.price = w.m AND date_bin(INTERVAL '10' SECOND, b._timestamp) = w.s \
             WHERE w.s + INTERVAL '10' SECOND <= (SELECT max(_timestamp) FROM bid)"
        }
        // Each bid counts in the five windows that hold it. The counts' windows close as q7's;
        // their maximum's a window (10 s, its grace) later, and one hop (2 s) more: the next
        // window's results must come to move its time past the grace.
        "q5" => {
            "WITH c AS (SELECT auction, date_bin(INTERVAL '2' SECOND, b._timestamp) - k.d AS s, \
             count(*) AS num FROM bid b CROSS JOIN (VALUES (INTERVAL '0' SECOND), (INTERVAL '2' SECOND), \
             (INTERVAL '4' SECOND), (INTERVAL '6' SECOND), (INTERVAL '8' SECOND)) AS k(d) GROUP BY 1, 2), \
             m AS (SELECT s, max(num) AS maxn FROM c GROUP BY s) \
             SELECT count(*) FROM c JOIN m ON c.s = m.s AND c.num >= m.maxn \
             WHERE c.s <= date_bin(INTERVAL '2' SECOND, (SELECT max(_timestamp) FROM bid)) - INTERVAL '22' SECOND"
        }
        // Each side's windows close as its own records' time passes their end.
        "q8" => {
            "SELECT count(*) FROM \
             (SELECT DISTINCT id, name, date_bin(INTERVAL '10' SECOND, _timestamp) AS s FROM person_stream) p JOIN \
             (SELECT DISTINCT seller, date_bin(INTERVAL '10' SECOND, _timestamp) AS s FROM auction) a \
             ON p.id = a.seller AND p.s = a.s \
             WHERE p.s + INTERVAL '10' SECOND <= (SELECT max(_timestamp) FROM person_stream) \
             AND p.s + INTERVAL '10' SECOND <= (SELECT max(_timestamp) FROM auction)"
        }
        "q8j" => {
            "SELECT count(*) FROM person_stream p JOIN auction a ON p.id = a.seller \
             AND date_bin(INTERVAL '10' SECOND, p._timestamp) = date_bin(INTERVAL '10' SECOND, a._timestamp)"
        }
        _ => return None,
    })
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The event as (topic, key, JSON value, time).
fn record(event: &Event) -> (&'static str, String, String, u64) {
    match event {
        Event::Person(p) => (
            "person",
            p.id.to_string(),
            format!(
                r#"{{"id":{},"name":{},"email_address":{},"credit_card":{},"city":{},"state":{},"date_time":{},"extra":{}}}"#,
                p.id,
                json_string(&p.name),
                json_string(&p.email_address),
                json_string(&p.credit_card),
                json_string(&p.city),
                json_string(&p.state.to_uppercase()),
                p.date_time,
                json_string(&p.extra)
            ),
            p.date_time,
        ),
        Event::Auction(a) => (
            "auction",
            a.id.to_string(),
            format!(
                r#"{{"id":{},"item_name":{},"description":{},"initial_bid":{},"reserve":{},"date_time":{},"expires":{},"seller":{},"category":{},"extra":{}}}"#,
                a.id,
                json_string(&a.item_name),
                json_string(&a.description),
                a.initial_bid,
                a.reserve,
                a.date_time,
                a.expires,
                a.seller,
                a.category,
                json_string(&a.extra)
            ),
            a.date_time,
        ),
        Event::Bid(b) => (
            "bid",
            b.auction.to_string(),
            format!(
                r#"{{"auction":{},"bidder":{},"price":{},"channel":{},"url":{},"date_time":{},"extra":{}}}"#,
                b.auction,
                b.bidder,
                b.price,
                json_string(&b.channel),
                json_string(&b.url),
                b.date_time,
                json_string(&b.extra)
            ),
            b.date_time,
        ),
    }
}

/// Writes `n` events in `layout`; returns how many there are of each kind.
fn generate(rt: &Runtime, log: &Embedded, n: usize, layout: Layout) -> [u64; 3] {
    let admin = log.admin();
    let topics: &[&str] = match layout {
        Layout::Mixed => &["nexmark"],
        Layout::Split => &TOPICS,
    };
    for t in topics {
        let topic = NewTopic { name: (*t).into(), n_partitions: 1, ..Default::default() };
        rt.block_on(admin.create_topic(topic)).expect("create");
    }
    let producer = log.producer();
    let mut counts = [0u64; 3];
    let mut events = nexmark::EventGenerator::new(nexmark::config::NexmarkConfig::default());
    let mut left = n;
    while left > 0 {
        let take = left.min(10_000);
        left -= take;
        let records: Vec<ProducerRecord> = (&mut events)
            .take(take)
            .map(|e| {
                let (topic, key, value, at) = record(&e);
                let kind = TOPICS.iter().position(|t| *t == topic).expect("a topic");
                counts[kind] += 1;
                let (topic, key, value) = match layout {
                    Layout::Split => (topic.to_string(), Some(Bytes::from(key)), value),
                    Layout::Mixed => ("nexmark".to_string(), None, format!(r#"{{"event_type":{kind},{}"#, &value[1..])),
                };
                ProducerRecord {
                    topic,
                    partition: Some(0),
                    key,
                    value: Some(Bytes::from(value)),
                    timestamp: Some(at as i64),
                    ..Default::default()
                }
            })
            .collect();
        rt.block_on(producer.send(records)).expect("send");
    }
    counts
}

/// Reads the whole of `topics` with one consumer; returns records per second.
fn read(rt: &Runtime, log: &Embedded, topics: &[&str], n: u64) -> f64 {
    let mut consumer = log.consumer(ConsumerConfig::default());
    rt.block_on(consumer.assign(topics.iter().map(|t| TopicPartition::new(*t, 0)).collect())).expect("assign");
    let started = Instant::now();
    let mut seen = 0;
    while seen < n {
        for b in rt.block_on(consumer.poll(Duration::from_millis(100))).expect("poll") {
            seen += b.records().expect("records").len() as u64;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// CPU time the process has used so far (every thread, user and system), in seconds.
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // After the command (in parentheses, which may hold spaces) come the state (field 3), ...,
    // utime (14) and stime (15), in clock ticks of 1/100 s.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A query's run: seconds from its first record read to its last record in or out, its
/// start-up, the CPU seconds the whole process used over those seconds (the stream thread and
/// the log's threads: appends of repartition, changelog and output records, fetches, flushes),
/// and its metrics at the end.
struct Run {
    secs: f64,
    startup: f64,
    cpu: f64,
    metrics: Metrics,
}

/// Runs `topology` as the application `nexmark-<name>` until it has read `events` records and
/// caught up.
///
/// Done when every source partition (the inputs and the repartition topics the query writes and
/// reads itself) has been polled with no lag, the inputs were read, and nothing moved for a
/// second. Timed from the last look before the first record was read (starting up, joining the
/// group and opening stores come before, and are returned apart) to the last record in or out.
fn drive(
    rt: &Runtime,
    substrate: &Embedded,
    dir: &std::path::Path,
    name: &str,
    topology: freshet_dsl::Topology,
    inputs: usize,
    events: u64,
) -> Run {
    let mut config = StreamsConfig::new(&format!("nexmark-{name}")).expect("config");
    config.state_dir = dir.join("state");
    config.commit_interval = Duration::from_secs(10);
    let partitions = inputs + topology.internal_topics().len();
    let mut app = StreamsApp::new(topology, substrate.clone(), config, rt.handle().clone()).expect("app");
    let started = Instant::now();
    app.start().expect("start");
    let mut last = (0, 0, started);
    let mut first = started;
    let (mut cpu_first, mut cpu_last) = (process_cpu(), 0.0);
    loop {
        let m = app.metrics();
        assert!(app.error().is_none(), "{name}: {:?}", app.error());
        let now = Instant::now();
        if m.records_in == 0 {
            first = now;
            cpu_first = process_cpu();
        }
        if (m.records_in, m.records_out) != (last.0, last.1) {
            last = (m.records_in, m.records_out, now);
            cpu_last = process_cpu();
        }
        let caught_up = m.lag.len() >= partitions && m.lag.values().all(|l| *l == 0);
        if caught_up && m.records_in >= events && now - last.2 >= Duration::from_secs(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let metrics = app.metrics();
    app.close().expect("close");
    Run {
        secs: (last.2 - first).as_secs_f64(),
        startup: (first - started).as_secs_f64(),
        cpu: (cpu_last - cpu_first).max(0.01),
        metrics,
    }
}

fn main() {
    let n: usize = std::env::var("FRESHET_NEXMARK_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    let only: Option<String> = std::env::var("FRESHET_NEXMARK_QUERIES").ok();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let base = std::path::PathBuf::from(std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into()));
    std::fs::create_dir_all(&base).expect("target dir");
    let layouts: Option<String> = std::env::var("FRESHET_NEXMARK_LAYOUTS").ok();
    for (layout, name) in [(Layout::Mixed, "mixed"), (Layout::Split, "split")] {
        if layouts.as_ref().is_none_or(|l| l.split(',').any(|x| x == name)) {
            run(&rt, &base, n, layout, only.as_deref());
        }
    }
}

/// Generates the events in `layout` on a log of their own and runs the queries over them.
fn run(rt: &Runtime, base: &std::path::Path, n: usize, layout: Layout, only: Option<&str>) {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let log = rt.block_on(Embedded::open(&dir.path().join("log"), LogConfig::default())).expect("log");
    let started = Instant::now();
    let counts = generate(rt, &log, n, layout);
    let (what, declarations) = match layout {
        Layout::Mixed => ("in one topic; every query reads all of them (Flink's setup)", MIXED_DECLARATIONS),
        Layout::Split => ("in a topic per kind; a query reads only the kinds it uses", DECLARATIONS),
    };
    println!(
        "\nnexmark: {n} events ({} persons, {} auctions, {} bids) {what}; written in {:.1} s",
        counts[0],
        counts[1],
        counts[2],
        started.elapsed().as_secs_f64()
    );
    let substrate = log.clone();
    let session = rt.block_on(SqlSession::new(substrate.clone())).expect("session");
    rt.block_on(session.execute(declarations)).expect("declarations");
    println!(
        "{:<4} {:>12} {:>10} {:>8} {:>14} {:>9}  {:>9} {:>9} {:>12} {:>8} {:>6} {:>12} {:>8}",
        "",
        "events/s",
        "Flink/core",
        "ratio",
        "log read/s",
        "of read",
        "out",
        "expected",
        "workload/s",
        "ratio",
        "cores",
        "per CPU-s",
        "ratio"
    );
    for (name, flink, sql, kinds) in QUERIES {
        if only.is_some_and(|q| !q.split(',').any(|x| x == name)) {
            continue;
        }
        let topics: &[&str] = match layout {
            Layout::Mixed => &["nexmark"],
            Layout::Split => kinds,
        };
        let events: u64 = match layout {
            Layout::Mixed => n as u64,
            Layout::Split => kinds.iter().map(|t| counts[TOPICS.iter().position(|x| x == t).expect("topic")]).sum(),
        };
        let read_rate = read(rt, &log, topics, events);
        // In the mixed layout, q3's person table is a query of its own (each person's latest
        // values by id), run to the end first; q3's time is both queries'.
        let mut before = None;
        if layout == Layout::Mixed && name == "q3" {
            rt.block_on(session.execute(PERSON_TABLE)).expect("person table");
            let topology = session.query_topology("person").expect("the person table's query");
            before = Some(drive(rt, &substrate, dir.path(), "person", topology, topics.len(), events));
        }
        let compiled = rt.block_on(session.plan_query(sql)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let output = NewTopic { name: name.into(), n_partitions: 1, ..Default::default() };
        rt.block_on(log.admin().create_topic(output)).expect("output topic");
        let inputs = topics.len() + usize::from(before.is_some());
        let mut run = drive(rt, &substrate, dir.path(), name, compiled.topology, inputs, events);
        if let Some(b) = before {
            run.secs += b.secs;
            run.startup += b.startup;
            run.cpu += b.cpu;
        }
        let Run { secs, startup, cpu, metrics: m } = run;
        let output = TopicPartition::new(name, 0);
        let out = rt.block_on(log.admin().list_offset(&output, freshet_core::OffsetSpec::Latest));
        let out = out.ok().flatten().map_or(0, |o| o.0);
        let rate = events as f64 / secs;
        let expected = expected(name).map_or_else(
            || "-".to_string(),
            |sql| {
                let batches = rt.block_on(session.execute(sql)).unwrap_or_else(|e| panic!("{name} expected: {e}"));
                let count = batches[0].column(0).as_any().downcast_ref::<Int64Array>().expect("a count").value(0);
                count.to_string()
            },
        );
        let workload = n as f64 / secs;
        let per_cpu = events as f64 / cpu;
        println!(
            "{name:<4} {rate:>12.0} {flink:>10.0} {:>7.2}x {read_rate:>14.0} {:>8.1}%  {out:>9} {expected:>9} \
             {workload:>12.0} {:>7.2}x {:>6.2} {per_cpu:>12.0} {:>7.2}x   (start-up {startup:.2} s; skipped {}, \
             dropped {}, late {})",
            rate / flink,
            100.0 * rate / read_rate,
            workload / flink,
            cpu / secs,
            per_cpu / flink,
            m.records_skipped,
            m.dropped_records,
            m.late_records,
        );
    }
    drop(session);
    rt.block_on(log.close()).expect("close");
}
