//! Connector pipelines: Freshet's worker beside Kafka Connect (4.3, from its jars), on this
//! machine, in one run, both on the same Freshet broker.
//!
//! `cargo bench -p freshet --bench connect` (after `./dev test` has fetched Kafka's jars).
//! `FRESHET_BENCH_CONNECT_RECORDS` sets the lines (default 1 M, 100 bytes each).
//!
//! Limits first, measured in the same run (disk with fdatasync, sequential writes, memory copy,
//! one loopback TCP connection). Then:
//! - file -> topic -> file: the FileStream source reads a file of lines into a topic and the
//!   FileStream sink writes the topic into another file, with string converters, as Kafka's
//!   quickstart runs it: Kafka Connect standalone (`ConnectStandalone`), then `freshet connect
//!   standalone`, each alone on the machine but for the broker; Kafka Connect with the heap its
//!   script gives it (`-Xms256M -Xmx2G`). Records/s from the first line out
//!   to the last; the worker's CPU-seconds over the whole run (start-up included) and from the
//!   first line out, as records/s per core; its peak resident memory (VmHWM).
//! - datagen -> blackhole, Freshet alone (Kafka ships no generator): the Datagen source's Nexmark
//!   bids through the embedded log into a sink that drops them; the same figures.
//!
//! - topic -> PostgreSQL: the JDBC sink (`freshet connect standalone` on the embedded log)
//!   upserting rows keyed by id from JSON records with schemas, beside what PostgreSQL itself
//!   does with the same rows by `psql`: `\copy` of a CSV file into a staging table and one
//!   `INSERT ... ON CONFLICT DO UPDATE` from it, in one transaction (the least work an upsert of
//!   those rows can be). Both on one private server with its default durability (fsync on).
//!   `FRESHET_BENCH_PG_ROWS` sets the rows (default 200,000).
//!
//! - topic -> Parquet lake: the Parquet sink (`freshet connect standalone` on the embedded log)
//!   writing schemaless JSON records by a declared schema into snappy-compressed Parquet files
//!   (files committed with their offsets, fsync included), beside a plain write of the records'
//!   bytes (their JSON) to one file, flushed once: MB/s of records from the worker's start to the
//!   last offset committed, and the Parquet's size and MB/s. `FRESHET_BENCH_PARQUET_RECORDS`
//!   sets the records (default 1 M, about 110 B of JSON each); with `--no-default-features`, add
//!   `--features lake`.
//!
//! - PostgreSQL -> topic: change capture (`freshet connect standalone` on the embedded log) of a
//!   table pgbench inserts into with two clients, beside pgbench alone on another table: pgbench's
//!   inserts/s with and without capture, the slot's lag behind the WAL while pgbench runs (sampled
//!   every 250 ms) and how long the capture takes to catch up after. `FRESHET_BENCH_CDC_SECS` sets
//!   pgbench's run (default 20 s).
//!
//! `FRESHET_BENCH_CONNECT` picks sections: a comma-separated list of `file`, `datagen`,
//! `postgres`, `cdc`, `parquet` (default all).
//!
//! Targets (issue "Connector pipelines"): at least 3x Kafka Connect's records/s per core, at most
//! a tenth of its memory. (Issue "Connectors to real systems"): the JDBC sink at least half of
//! psql's rows/s; change capture keeping up with pgbench (its lag bounded); the Parquet sink's
//! MB/s reported beside the plain write's.

#![allow(clippy::print_stdout)]

#[path = "common/limits.rs"]
mod limits;
#[allow(dead_code, unreachable_pub)]
#[path = "../tests/it/peer.rs"]
mod peer;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use limits::{cpu_seconds, peak_rss_mib, print_limits, ratio};
use peer::{Kind, Peer};

/// What one worker did.
#[derive(Debug, Default)]
struct Run {
    /// Seconds from the first record out to the last.
    steady_secs: f64,
    /// CPU-seconds of the worker from its start to the last record.
    cpu_total: f64,
    /// CPU-seconds of the worker from the first record out to the last.
    cpu_steady: f64,
    /// Peak resident memory, MiB.
    peak_rss_mib: f64,
    /// Seconds from the worker's start to the last record.
    wall: f64,
}

impl Run {
    /// Records/s from the first record out to the last.
    fn rate(&self, n: u64) -> f64 {
        n as f64 / self.steady_secs
    }

    fn per_core(&self, n: u64) -> f64 {
        n as f64 / self.cpu_steady
    }

    fn per_core_total(&self, n: u64) -> f64 {
        n as f64 / self.cpu_total
    }
}

/// Where a connector's status has its first task's count of records written.
const WRITTEN: &str = "/tasks/0/metrics/records-written";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A file of `n` lines of 100 bytes each (the newline included).
fn write_input(path: &Path, n: u64) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        writeln!(f, "line {i:010} {}", "x".repeat(83)).unwrap();
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Which worker runs the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Worker {
    KafkaConnect,
    Freshet,
}

/// The file pipeline on `broker` with `worker`: its figures once the output file equals the
/// input.
fn file_pipeline(worker: Worker, broker: &str, dir: &Path, input: &Path, size: u64) -> Run {
    let name = match worker {
        Worker::KafkaConnect => "kafka",
        Worker::Freshet => "freshet",
    };
    let path = |f: &str| dir.join(format!("{name}-{f}"));
    let output = path("out.txt");
    std::fs::write(
        path("worker.properties"),
        format!(
            "bootstrap.servers={broker}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.storage.file.filename={}\noffset.flush.interval.ms=10000\n\
             listeners=http://127.0.0.1:{}\nplugin.discovery=only_scan\n",
            path("offsets").display(),
            free_port()
        ),
    )
    .unwrap();
    std::fs::write(
        path("source.properties"),
        format!(
            "name=source\nconnector.class=FileStreamSource\ntasks.max=1\nfile={}\ntopic={name}-lines\n",
            input.display()
        ),
    )
    .unwrap();
    std::fs::write(
        path("sink.properties"),
        format!(
            "name=sink\nconnector.class=FileStreamSink\ntasks.max=1\nfile={}\ntopics={name}-lines\n",
            output.display()
        ),
    )
    .unwrap();
    let files = [path("worker.properties"), path("source.properties"), path("sink.properties")];
    let log = std::fs::File::create(path("worker.log")).unwrap();
    let mut command = match worker {
        Worker::KafkaConnect => {
            let mut c = Command::new("java");
            // The heap connect-standalone.sh gives it (KAFKA_HEAP_OPTS' default).
            c.args(["-Xms256M", "-Xmx2G"]).arg(peer::log4j_config()).args([
                "-cp",
                &peer::connect_classpath(),
                "org.apache.kafka.connect.cli.ConnectStandalone",
            ]);
            c
        }
        Worker::Freshet => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_freshet"));
            c.args(["connect", "standalone"]);
            c
        }
    };
    let started = Instant::now();
    let child = command.args(files).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let run =
        watch(child.id(), started, || std::fs::metadata(&output).map_or(0, |m| m.len()), size, &path("worker.log"));
    stop(child);
    assert_eq!(std::fs::read(&output).unwrap(), std::fs::read(input).unwrap(), "{name}: the output is the input");
    run
}

/// `freshet connect standalone` with `files` (the worker's properties, then connectors') on the
/// embedded log of `data`, its log to `log`.
fn standalone(files: &[PathBuf], data: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["connect", "standalone"])
        .args(files)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// A number a worker's REST API answers at `url`, at the JSON `pointer` (0 until it answers).
fn rest_number(url: String, pointer: &'static str) -> impl Fn() -> u64 {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    move || {
        let Ok(mut response) = agent.get(&url).call() else { return 0 };
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        answer.pointer(pointer).and_then(serde_json::Value::as_u64).unwrap_or(0)
    }
}

/// Samples a worker until `progress` reaches `done`: the figures of its run.
fn watch(pid: u32, started: Instant, progress: impl Fn() -> u64, done: u64, log: &PathBuf) -> Run {
    let deadline = started + Duration::from_secs(1800);
    let mut first: Option<(Instant, f64)> = None;
    loop {
        let now = progress();
        if now > 0 && first.is_none() {
            first = Some((Instant::now(), cpu_seconds(pid)));
        }
        if now >= done {
            let end = Instant::now();
            let cpu = cpu_seconds(pid);
            let (t0, cpu0) = first.expect("seen before the end");
            return Run {
                steady_secs: (end - t0).as_secs_f64(),
                cpu_total: cpu,
                cpu_steady: cpu - cpu0,
                peak_rss_mib: peak_rss_mib(pid),
                wall: (end - started).as_secs_f64(),
            };
        }
        assert!(
            Instant::now() < deadline,
            "the worker made {now} of {done} in 30 minutes; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The datagen -> blackhole pipeline on the embedded log: Freshet's figures.
fn datagen_pipeline(dir: &Path, n: u64) -> Run {
    let path = |f: &str| dir.join(f);
    let port = free_port();
    std::fs::write(
        path("datagen-worker.properties"),
        format!("offset.flush.interval.ms=10000\nlisteners=http://127.0.0.1:{port}\n"),
    )
    .unwrap();
    std::fs::write(
        path("datagen.properties"),
        format!("name=datagen\nconnector.class=DatagenSource\nkafka.topic=bids\nquickstart=bids\niterations={n}\n"),
    )
    .unwrap();
    std::fs::write(path("blackhole.properties"), "name=blackhole\nconnector.class=BlackholeSink\ntopics=bids\n")
        .unwrap();
    let started = Instant::now();
    let files = [path("datagen-worker.properties"), path("datagen.properties"), path("blackhole.properties")];
    let child = standalone(&files, &path("datagen-data"), &path("datagen.log"));
    let url = format!("http://127.0.0.1:{port}/connectors/blackhole/status");
    let written = rest_number(url, WRITTEN);
    let run = watch(child.id(), started, written, n, &path("datagen.log"));
    stop(child);
    run
}

/// A private PostgreSQL server (durable) and a runtime to talk to it.
struct Pg {
    rt: tokio::runtime::Runtime,
    server: freshet_connectors::testing::Postgres,
}

impl Pg {
    fn start() -> Pg {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let server = rt.block_on(freshet_connectors::testing::Postgres::start(true)).unwrap();
        Pg { rt, server }
    }

    fn count(&self, db: &str, table: &str) -> u64 {
        self.rt.block_on(async {
            let Ok(client) = self.server.connect(db).await else { return 0 };
            match client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await {
                Ok(row) => row.get::<_, i64>(0) as u64,
                Err(_) => 0,
            }
        })
    }
}

/// The label of row `i` (about 40 bytes, as a name or an address would be).
fn label(i: u64) -> String {
    format!("customer-{i:08}-{}", "x".repeat(i as usize % 16 + 8))
}

/// `psql`: `\copy` a CSV of the rows into a staging table, then one upsert from it, in one
/// transaction. Seconds.
fn psql_upsert(pg: &Pg, dir: &Path, n: u64) -> f64 {
    let url = pg.rt.block_on(pg.server.database("bench_psql"));
    let csv = dir.join("rows.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
    for i in 0..n {
        writeln!(f, "{i},{i},{},2026-12-05 10:00:00", label(i)).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let _ = url;
    let port = pg.server.port().to_string();
    let psql = |args: &[&str]| {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "freshet",
                "-d",
                "bench_psql",
            ])
            .args(args)
            .output()
            .expect("psql is installed (./dev test installs PostgreSQL)");
        assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    };
    psql(&["-c", "CREATE TABLE rows (id bigint PRIMARY KEY, n bigint NOT NULL, label text, at timestamp)"]);
    let started = Instant::now();
    psql(&[
        "-1",
        "-c",
        "CREATE TEMPORARY TABLE stage (id bigint, n bigint, label text, at timestamp) ON COMMIT DROP",
        "-c",
        &format!("\\copy stage FROM '{}' WITH (FORMAT csv)", csv.display()),
        "-c",
        "INSERT INTO rows SELECT * FROM stage ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n, label = EXCLUDED.label, \
         at = EXCLUDED.at",
    ]);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(pg.count("bench_psql", "rows"), n);
    secs
}

/// The JDBC sink upserting the same rows from a topic of JSON records with schemas, in `freshet
/// connect standalone` on the embedded log: from the worker's start to the last row committed.
fn jdbc_sink(pg: &Pg, dir: &Path, n: u64) -> Run {
    let url = pg.rt.block_on(pg.server.database("bench_sink"));
    let data = dir.join("pg-data");
    let schema = serde_json::json!({"type": "struct", "name": "row", "optional": false, "fields": [
        {"field": "id", "type": "int64", "optional": false}, {"field": "n", "type": "int64", "optional": false},
        {"field": "label", "type": "string", "optional": true},
        {"field": "at", "type": "int64", "optional": true, "name": "org.apache.kafka.connect.data.Timestamp"}]});
    pg.rt.block_on(async {
        use freshet_core::{Embedded, NewTopic, ProducerRecord, Substrate};
        let log = Embedded::open(&data, freshet_core::config::LogConfig::default()).await.unwrap();
        let substrate: &dyn Substrate = &log;
        let admin = substrate.admin().unwrap();
        admin.create_topic(NewTopic { name: "rows".into(), n_partitions: 1, ..Default::default() }).await.unwrap();
        let producer = substrate.producer().unwrap();
        let mut batch = Vec::new();
        for i in 0..n {
            let key = format!(r#"{{"schema":{{"type":"int64","optional":false}},"payload":{i}}}"#);
            let value = serde_json::json!({"schema": schema, "payload":
                {"id": i, "n": i, "label": label(i), "at": 1_796_464_800_000i64}});
            batch.push(ProducerRecord::new("rows", Some(key), value.to_string()));
            if batch.len() == 5000 {
                producer.send(std::mem::take(&mut batch)).await.unwrap();
            }
        }
        producer.send(batch).await.unwrap();
        log.close().await.unwrap();
    });
    let path = |f: &str| dir.join(f);
    let port = free_port();
    std::fs::write(
        path("pg-worker.properties"),
        format!(
            "offset.flush.interval.ms=10000\nlisteners=http://127.0.0.1:{port}\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n"
        ),
    )
    .unwrap();
    std::fs::write(
        path("pg-sink.properties"),
        format!(
            "name=pg\nconnector.class=io.confluent.connect.jdbc.JdbcSinkConnector\ntopics=rows\n\
             connection.url={url}\ninsert.mode=upsert\npk.mode=record_key\npk.fields=id\nauto.create=true\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let child = standalone(&[path("pg-worker.properties"), path("pg-sink.properties")], &data, &path("pg.log"));
    // Progress from the task's counter (records written are rows committed: a put commits its
    // transaction before it returns), so that sampling adds no load to the server.
    let written = rest_number(format!("http://127.0.0.1:{port}/connectors/pg/status"), WRITTEN);
    let run = watch(child.id(), started, written, n, &path("pg.log"));
    stop(child);
    assert_eq!(pg.count("bench_sink", "rows"), n, "every row is in the table");
    run
}

/// The Parquet sink writing `n` schemaless JSON records of one topic partition from the embedded
/// log, in `freshet connect standalone`: its run to the last offset committed, the input's bytes
/// and the Parquet bytes written.
fn parquet_sink(dir: &Path, n: u64) -> (Run, u64, u64) {
    let data = dir.join("lake-data");
    let lake = dir.join("lake");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let input_bytes = rt.block_on(async {
        use freshet_core::{Embedded, NewTopic, ProducerRecord, Substrate};
        let log = Embedded::open(&data, freshet_core::config::LogConfig::default()).await.unwrap();
        let substrate: &dyn Substrate = &log;
        let admin = substrate.admin().unwrap();
        admin.create_topic(NewTopic { name: "clicks".into(), n_partitions: 1, ..Default::default() }).await.unwrap();
        let producer = substrate.producer().unwrap();
        let (mut batch, mut bytes) = (Vec::new(), 0u64);
        for i in 0..n {
            let value = serde_json::json!({"id": i, "user": format!("user-{}", i % 1000), "page": format!("/p/{}", i % 5000),
                "amount": (i % 10_000) as f64 / 100.0, "at": 1_796_464_800_000i64 + (i % 3_600_000) as i64});
            let value = value.to_string();
            bytes += value.len() as u64;
            batch.push(ProducerRecord::new("clicks", None::<String>, value));
            if batch.len() == 5000 {
                producer.send(std::mem::take(&mut batch)).await.unwrap();
            }
        }
        producer.send(batch).await.unwrap();
        log.close().await.unwrap();
        bytes
    });
    let path = |f: &str| dir.join(f);
    let port = free_port();
    std::fs::write(
        path("lake-worker.properties"),
        format!(
            "offset.flush.interval.ms=200\nlisteners=http://127.0.0.1:{port}\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable=false\n"
        ),
    )
    .unwrap();
    let schema = serde_json::json!({"type": "struct", "fields": [
        {"field": "id", "type": "int64", "optional": false}, {"field": "user", "type": "string", "optional": true},
        {"field": "page", "type": "string", "optional": true}, {"field": "amount", "type": "double", "optional": true},
        {"field": "at", "type": "int64", "optional": false, "name": "org.apache.kafka.connect.data.Timestamp"}]});
    // One hour's directory, in files of a size that divides the records, so the last closes with
    // the last record.
    let chunk = [250_000, 100_000, 50_000, 10_000, 1_000, 1].into_iter().find(|c| n.is_multiple_of(*c)).unwrap();
    std::fs::write(
        path("lake.properties"),
        format!(
            "name=lake\nconnector.class=ParquetSink\ntopics=clicks\nstore.url={}\nflush.size={chunk}\n\
             timestamp.extractor=RecordField\ntimestamp.field=at\nparquet.schema={schema}\n",
            lake.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let child = standalone(&[path("lake-worker.properties"), path("lake.properties")], &data, &path("lake.log"));
    let offsets = format!("http://127.0.0.1:{port}/connectors/lake/offsets");
    let committed = rest_number(offsets, "/offsets/0/offset/kafka_offset");
    let run = watch(child.id(), started, committed, n, &path("lake.log"));
    stop(child);
    let mut parquet_bytes = 0;
    let mut stack = vec![lake.join("topics/clicks")];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                parquet_bytes += entry.metadata().unwrap().len();
            }
        }
    }
    (run, input_bytes, parquet_bytes)
}

/// pgbench inserting into `events` of `db` for `secs` with `clients`: its transactions per second.
fn pgbench(pg: &Pg, dir: &Path, db: &str, clients: u32, secs: u32) -> f64 {
    let script = dir.join("insert.sql");
    std::fs::write(
        &script,
        "\\set a random(1, 1000000)\nINSERT INTO events (a, b, label) VALUES (:a, :client_id, 'event ' || :a);\n",
    )
    .unwrap();
    let port = pg.server.port().to_string();
    let (c, t) = (clients.to_string(), secs.to_string());
    let out = Command::new("pgbench")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "freshet", "-n", "-c", &c, "-j", &c, "-T", &t, "-f"])
        .arg(&script)
        .arg(db)
        .output()
        .expect("pgbench is installed (./dev test installs PostgreSQL)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pgbench: {text}{}", String::from_utf8_lossy(&out.stderr));
    text.lines()
        .find_map(|l| l.strip_prefix("tps = ").and_then(|r| r.split_whitespace().next()).and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("pgbench printed no tps:\n{text}"))
}

/// Change capture of pgbench's inserts: pgbench alone, then with `freshet connect standalone`
/// capturing the table into the embedded log; the slot's lag sampled throughout.
fn cdc_section(dir: &Path) {
    let secs: u32 = std::env::var("FRESHET_BENCH_CDC_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let pg = Pg::start();
    println!("\nPostgreSQL -> topic, change capture of pgbench's inserts (2 clients, {secs} s), one durable server:");
    let table = "CREATE TABLE events (id bigserial PRIMARY KEY, a int NOT NULL, b int NOT NULL, label text)";
    for db in ["bench_alone", "bench_cdc"] {
        pg.rt.block_on(pg.server.database(db));
        pg.rt.block_on(async { pg.server.connect(db).await.unwrap().batch_execute(table).await.unwrap() });
    }
    let alone = pgbench(&pg, dir, "bench_alone", 2, secs);
    let path = |f: &str| dir.join(f);
    let port = free_port();
    std::fs::write(
        path("cdc-worker.properties"),
        format!(
            "offset.flush.interval.ms=1000\nlisteners=http://127.0.0.1:{port}\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n"
        ),
    )
    .unwrap();
    std::fs::write(
        path("cdc.properties"),
        format!(
            "name=cdc\nconnector.class=PostgresConnector\ndatabase.hostname=127.0.0.1\ndatabase.port={}\n\
             database.user=freshet\ndatabase.dbname=bench_cdc\ntopic.prefix=bench\ntable.include.list=public.events\n",
            pg.server.port()
        ),
    )
    .unwrap();
    let child =
        standalone(&[path("cdc-worker.properties"), path("cdc.properties")], &path("cdc-data"), &path("cdc.log"));
    let written = rest_number(format!("http://127.0.0.1:{port}/connectors/cdc/status"), WRITTEN);
    // The slot exists once the task started.
    let lag_sql = "SELECT coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::int8, -1) FROM pg_replication_slots \
                   WHERE slot_name = 'debezium'";
    let client = pg.rt.block_on(pg.server.connect("bench_cdc")).unwrap();
    let lag = || -> i64 {
        pg.rt.block_on(client.query(lag_sql, &[])).ok().and_then(|r| r.first().map(|r| r.get(0))).unwrap_or(-1)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while lag() < 0 {
        assert!(
            Instant::now() < deadline,
            "the capture never made its slot:\n{}",
            std::fs::read_to_string(path("cdc.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (bench, samples) = std::thread::scope(|scope| {
        let bench = scope.spawn(|| pgbench(&pg, dir, "bench_cdc", 2, secs));
        let mut samples = Vec::new();
        while !bench.is_finished() {
            samples.push(lag());
            std::thread::sleep(Duration::from_millis(250));
        }
        (bench.join().unwrap(), samples)
    });
    let rows: u64 =
        pg.rt.block_on(client.query_one("SELECT count(*) FROM events", &[])).unwrap().get::<_, i64>(0) as u64;
    let drain_started = Instant::now();
    let deadline = drain_started + Duration::from_secs(300);
    while written() < rows {
        assert!(
            Instant::now() < deadline,
            "the capture did not catch up:\n{}",
            std::fs::read_to_string(path("cdc.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let drain = drain_started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id());
    let rss = peak_rss_mib(child.id());
    stop(child);
    let max_lag = samples.iter().copied().max().unwrap_or(0);
    let mean_lag = samples.iter().sum::<i64>() as f64 / samples.len().max(1) as f64;
    println!("  {:<52} {:>12} {:>12} {:>8}", "", "pgbench alone", "with capture", "ratio");
    println!("  {:<52} {:>12.0} {:>12.0} {:>8}", "pgbench inserts/s", alone, bench, ratio(bench, alone));
    println!(
        "  captured {rows} inserts; the slot's lag behind the WAL while pgbench ran: mean {:.0} KiB, max {:.0} KiB \
         ({} samples); caught up {:.2} s after pgbench stopped; capture CPU {:.1} s, peak memory {:.0} MiB",
        mean_lag / 1024.0,
        max_lag as f64 / 1024.0,
        samples.len(),
        drain,
        cpu,
        rss
    );
}

/// Seconds to write `bytes` to a new file in `dir`, 1 MiB at a time, flushed once.
fn plain_write(dir: &Path, bytes: u64) -> f64 {
    let path = dir.join("plain-write");
    let chunk = vec![0x5au8; 1 << 20];
    let started = Instant::now();
    let mut f = std::fs::File::create(&path).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.sync_all().unwrap();
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path).unwrap();
    secs
}

fn parquet_section(dir: &Path) {
    let n: u64 = std::env::var("FRESHET_BENCH_PARQUET_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    println!("\ntopic -> Parquet lake, {n} schemaless JSON records (declared schema, snappy), embedded log:");
    let (sink, input, written) = parquet_sink(dir, n);
    // The plain write is of the records' bytes (their JSON): what the sink takes in.
    let plain = plain_write(dir, input);
    let mb = |b: u64, s: f64| b as f64 / 1e6 / s;
    println!("  {:<52} {:>12} {:>12} {:>8}", "", "plain write", "Parquet sink", "ratio");
    println!(
        "  {:<52} {:>12.1} {:>12.1} {:>8}",
        format!("MB/s of the {:.1} MB of records (sink: start to last commit)", input as f64 / 1e6),
        mb(input, plain),
        mb(input, sink.wall),
        ratio(mb(input, sink.wall), mb(input, plain))
    );
    println!(
        "  {:.0} records/s; {:.1} MB of Parquet ({:.1}x smaller), {:.1} MB/s of it; worker CPU {:.1} s ({:.0} \
         records/s per core); peak memory {:.0} MiB",
        n as f64 / sink.wall,
        written as f64 / 1e6,
        input as f64 / written as f64,
        mb(written, sink.wall),
        sink.cpu_total,
        sink.per_core_total(n),
        sink.peak_rss_mib
    );
}

fn main() {
    let n: u64 = std::env::var("FRESHET_BENCH_CONNECT_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // The Parquet sink is in builds with the `lake` feature (`--features lake` beside
    // `--no-default-features`).
    let all = if cfg!(feature = "lake") { "file,datagen,postgres,cdc,parquet" } else { "file,datagen,postgres,cdc" };
    let sections = std::env::var("FRESHET_BENCH_CONNECT").unwrap_or_else(|_| all.into());
    let wanted = |s: &str| sections.split(',').any(|x| x.trim() == s);
    let scratch = tempfile::tempdir().unwrap();
    println!("Connector pipelines: Freshet's worker beside Kafka Connect 4.3 and PostgreSQL on this machine");
    print_limits(scratch.path());
    if wanted("postgres") {
        let rows: u64 = std::env::var("FRESHET_BENCH_PG_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
        let pg = Pg::start();
        println!("\ntopic -> PostgreSQL, {rows} upserts by id (id, n, label, timestamp), one durable server:");
        let psql = psql_upsert(&pg, scratch.path(), rows);
        let sink = jdbc_sink(&pg, scratch.path(), rows);
        let (psql_rate, sink_rate) = (rows as f64 / psql, rows as f64 / sink.wall);
        println!("  {:<52} {:>12} {:>12} {:>8}", "", "psql", "JDBC sink", "ratio");
        println!(
            "  {:<52} {:>12.0} {:>12.0} {:>8}",
            "rows/s (psql: COPY + merge; sink: worker start to last row)",
            psql_rate,
            sink_rate,
            ratio(sink_rate, psql_rate)
        );
        println!(
            "  sink from its first row to its last: {:.0} rows/s; worker CPU {:.1} s ({:.0} rows/s per core); peak \
             memory {:.0} MiB",
            sink.rate(rows),
            sink.cpu_total,
            sink.per_core_total(rows),
            sink.peak_rss_mib
        );
    }
    if wanted("cdc") {
        cdc_section(scratch.path());
    }
    if wanted("parquet") {
        if cfg!(feature = "lake") {
            parquet_section(scratch.path());
        } else {
            println!("\ntopic -> Parquet lake: not in this build (add --features lake)");
        }
    }
    if !wanted("file") && !wanted("datagen") {
        return;
    }

    if wanted("file") {
        file_section(scratch.path(), n);
    }
    if wanted("datagen") {
        println!("\ndatagen -> blackhole, {n} Nexmark bids, JSON with schemas, embedded log (Freshet alone):");
        let dg = datagen_pipeline(scratch.path(), n);
        println!("  records/s (first record out to last): {:.0}", dg.rate(n));
        println!("  records/s per core: {:.0} (start-up included: {:.0})", dg.per_core(n), dg.per_core_total(n));
        println!("  peak resident memory: {:.0} MiB", dg.peak_rss_mib);
    }
}

/// file -> topic -> file, Kafka Connect then Freshet.
fn file_section(dir: &Path, n: u64) {
    let scratch = dir;
    let broker_dir = scratch.join("broker");
    std::fs::create_dir_all(&broker_dir).unwrap();
    let broker = Peer::start(Kind::Freshet, &broker_dir);
    let input = scratch.join("in.txt");
    let size = write_input(&input, n);
    println!("\nfile -> topic -> file, {n} lines of 100 B, string converters, on a Freshet broker:");
    let mut runs = Vec::new();
    for worker in [Worker::KafkaConnect, Worker::Freshet] {
        runs.push(file_pipeline(worker, broker.addr(), scratch, &input, size));
        let _ = Command::new("sync").status();
    }
    broker.stop();
    let (kafka, freshet) = (&runs[0], &runs[1]);
    println!("  {:<36} {:>14} {:>14} {:>8}", "", "Kafka Connect", "Freshet", "ratio");
    let row = |what: &str, k: f64, f: f64, unit: &str| {
        println!("  {what:<36} {:>14} {:>14} {:>8}", format!("{k:.0}{unit}"), format!("{f:.0}{unit}"), ratio(f, k));
    };
    row("records/s (first line out to last)", kafka.rate(n), freshet.rate(n), "");
    row("records/s per core (same interval)", kafka.per_core(n), freshet.per_core(n), "");
    row("records/s per core (start-up included)", kafka.per_core_total(n), freshet.per_core_total(n), "");
    row("worker CPU-seconds, whole run", kafka.cpu_total, freshet.cpu_total, "");
    row("seconds from start to the last line", kafka.wall, freshet.wall, "");
    row("peak resident memory, MiB", kafka.peak_rss_mib, freshet.peak_rss_mib, "");
}
