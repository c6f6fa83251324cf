//! The Parquet lake sink in a real `freshet connect standalone` process on a Freshet broker,
//! killed with SIGKILL while it writes: after the last restart every record of the topic is
//! in the lake once, with no half file. `freshet sql` reads the lake back (DataFusion's Parquet
//! reader, the directories as partition columns) and finds it equal to the topic; pyarrow reads
//! the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::peer::{connect_standalone, kcat_produce, BrokerProcess};

/// 2026-12-04T10:00:00Z.
const T0: i64 = 1_796_378_400_000;
const RECORDS: i64 = 30_000;

fn worker(dir: &Path, log_name: &str) -> Child {
    connect_standalone(&[dir.join("worker.properties"), dir.join("lake.properties")], &dir.join(log_name))
}

/// The committed Parquet files under `dir`.
fn committed_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('_')) {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// Waits until at least `n` committed files are in the lake, then kills the worker.
fn kill_after_files(child: &mut Child, lake: &Path, n: usize, log: &dyn Fn() -> String) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let files = committed_files(lake).len();
        if files >= n {
            let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
            child.wait().unwrap();
            return files;
        }
        assert!(Instant::now() < deadline, "the lake has {files} of {n} files:\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sql(broker: &str, statements: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["sql", "--bootstrap", broker, "--format", "csv", "-e", statements])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{statements}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn a_lake_sink_killed_mid_write_leaves_every_record_once_readable_by_sql_and_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("broker"));
    let created = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["topic", "create", "clicks", "--partitions", "3", "--bootstrap", &broker.addr])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // Clicks one second apart over eight hours and more, keyed by user, as schemaless JSON.
    let mut per_hour: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut input = String::new();
    for id in 0..RECORDS {
        let at = T0 + id * 1_000;
        let value = json!({"id": id, "name": format!("u{}", id % 97), "amount": id as f64 / 8.0, "at": at});
        input.push_str(&format!("u{}\t{value}\n", id % 97));
        let hour = 10 + (at - T0) / 3_600_000;
        *per_hour.entry((format!("2026-12-{:02}", 4 + hour / 24), format!("{:02}", hour % 24))).or_default() += 1;
    }
    kcat_produce(&["-b", &broker.addr, "-t", "clicks", "-K", "\t"], &input);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("worker.properties"),
        format!(
            "bootstrap.servers={}\nkey.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\nvalue.converter.schemas.enable=false\n\
             offset.flush.interval.ms=300\nlisteners=http://127.0.0.1:{port}\n",
            broker.addr
        ),
    )
    .unwrap();
    let lake = dir.path().join("lake");
    let schema = json!({"type": "struct", "fields": [
        {"field": "id", "type": "int64", "optional": false},
        {"field": "name", "type": "string", "optional": true},
        {"field": "amount", "type": "double", "optional": true},
        {"field": "at", "type": "int64", "optional": false, "name": "org.apache.kafka.connect.data.Timestamp"}]});
    std::fs::write(
        dir.path().join("lake.properties"),
        format!(
            "name=lake\nconnector.class=freshet.connect.ParquetSinkConnector\ntopics=clicks\n\
             store.url=file://{}\nflush.size=700\nrotate.schedule.interval.ms=1500\n\
             timestamp.extractor=RecordField\ntimestamp.field=at\nparquet.schema={schema}\n",
            lake.display()
        ),
    )
    .unwrap();
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let topic_dir = lake.join("topics/clicks");

    // Killed mid-stream once the first files are committed: with others open, or closed and not
    // yet committed. (The window between renaming a file and recording it is the connectors
    // crate's test's: a kill cannot be aimed at it.) The restarted worker joins the group once
    // the dead one's session has expired.
    let mut first = worker(dir.path(), "first.log");
    let at_kill = kill_after_files(&mut first, &topic_dir, 1, &|| log("first.log"));

    let mut last = worker(dir.path(), "last.log");
    let offsets_url = format!("http://127.0.0.1:{port}/connectors/lake/offsets");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let committed: i64 = agent
            .get(&offsets_url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|o| {
                o["offsets"].as_array().map(|a| a.iter().filter_map(|x| x["offset"]["kafka_offset"].as_i64()).sum())
            })
            .unwrap_or(0);
        if committed == RECORDS {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted worker committed {committed}:\n{}", log("last.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill").arg(last.id().to_string()).status();
    last.wait().unwrap();
    let total = committed_files(&topic_dir).len();
    assert!(at_kill < total, "killed mid-stream: {at_kill} of {total} files were committed");
    let killed = format!("killed with {at_kill} of {total} files committed");

    // DataFusion over the lake, with `dt` and `hour` from the directories, beside the topic.
    let declare = format!(
        "CREATE EXTERNAL TABLE lake STORED AS PARQUET LOCATION '{}/';\n\
         CREATE EXTERNAL TABLE clicks (id BIGINT, name VARCHAR, amount DOUBLE, at BIGINT) STORED AS TOPIC \
         LOCATION 'clicks' OPTIONS ('format' 'json');",
        topic_dir.display()
    );
    let counts =
        sql(&broker.addr, &format!("{declare}\nSELECT count(*), count(DISTINCT id), min(id), max(id) FROM lake"));
    assert_eq!(counts.lines().last(), Some(format!("{RECORDS},{RECORDS},0,{}", RECORDS - 1).as_str()), "{killed}");
    let differ = sql(
        &broker.addr,
        "SELECT count(*) FROM (SELECT id, name, amount, at FROM clicks EXCEPT \
         SELECT id, name, amount, CAST(at AS BIGINT) FROM lake)",
    );
    assert_eq!(differ.lines().last(), Some("0"), "every record of the topic is in the lake as it was: {killed}");
    let hours = sql(&broker.addr, "SELECT dt, hour, count(*) FROM lake GROUP BY dt, hour ORDER BY dt, hour");
    let got: BTreeMap<(String, String), i64> = hours
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            ((f[0].to_string(), f[1].to_string()), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(got, per_hour, "each record in the directory of its time");

    // pyarrow reads the same files, with the same partition columns.
    let python = std::env::var("FRESHET_PYTHON")
        .unwrap_or_else(|_| format!("{}/.cache/freshet/venv/bin/python", std::env::var("HOME").unwrap()));
    let script = "import sys, json, pyarrow.dataset as ds\n\
        t = ds.dataset(sys.argv[1], format='parquet', partitioning='hive').to_table()\n\
        ids = t.column('id').to_pylist()\n\
        print(json.dumps({'rows': t.num_rows, 'distinct': len(set(ids)), 'columns': t.schema.names,\n\
            'at': str(t.schema.field('at').type)}))\n";
    let out = Command::new(&python).args(["-c", script]).arg(&topic_dir).output().expect("the venv's python");
    assert!(out.status.success(), "pyarrow: {}", String::from_utf8_lossy(&out.stderr));
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        read,
        json!({"rows": RECORDS, "distinct": RECORDS, "columns": ["id", "name", "amount", "at", "dt", "hour"],
               "at": "timestamp[ms, tz=UTC]"}),
        "{killed}"
    );
    broker.stop();
}
