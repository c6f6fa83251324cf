//! The JDBC sink in a real `freshet connect standalone` process on a Freshet broker, killed with
//! SIGKILL while it writes: after a restart the table equals the topic's latest value per key
//! (upserts and tombstone deletes are idempotent, and offsets were committed only after their
//! rows).

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use freshet_connectors::testing::Postgres;
use serde_json::json;

use crate::peer::{connect_standalone, kcat_produce, BrokerProcess};

fn worker(dir: &std::path::Path, log_name: &str) -> Child {
    connect_standalone(&[dir.join("worker.properties"), dir.join("sink.properties")], &dir.join(log_name))
}

#[test]
fn a_jdbc_sink_killed_mid_write_leaves_the_latest_value_per_key_after_a_restart() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pg = rt.block_on(Postgres::start(false)).unwrap();
    let url = rt.block_on(pg.database("killed"));
    let client = rt.block_on(pg.connect("killed")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("broker"));
    let created = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["topic", "create", "orders", "--bootstrap", &broker.addr])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // 40,000 upserts over 2,000 keys, then a tombstone for every tenth key, through kcat.
    let key = |id: i64| json!({"schema": {"type": "int64", "optional": false}, "payload": id}).to_string();
    let schema = json!({"type": "struct", "name": "counter", "optional": false, "fields": [
        {"field": "id", "type": "int64", "optional": false}, {"field": "n", "type": "int64", "optional": false},
        {"field": "label", "type": "string", "optional": true}]});
    let mut model: BTreeMap<i64, i64> = BTreeMap::new();
    let mut input = String::new();
    let n_upserts = 40_000i64;
    for n in 0..n_upserts {
        let id = (n * 7919) % 2000;
        let value = json!({"schema": schema, "payload": {"id": id, "n": n, "label": format!("label-{n}")}});
        input.push_str(&format!("{}\t{value}\n", key(id)));
        model.insert(id, n);
    }
    for id in (0..2000).step_by(10) {
        input.push_str(&format!("{}\t\n", key(id)));
        model.remove(&id);
    }
    let n_records = n_upserts + 200;
    kcat_produce(&["-b", &broker.addr, "-t", "orders", "-K", "\t", "-Z"], &input);

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("worker.properties"),
        format!(
            "bootstrap.servers={}\nkey.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\noffset.flush.interval.ms=500\n\
             listeners=http://127.0.0.1:{port}\n",
            broker.addr
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sink.properties"),
        format!(
            "name=pg\nconnector.class=io.confluent.connect.jdbc.JdbcSinkConnector\ntopics=orders\n\
             connection.url={url}\ninsert.mode=upsert\npk.mode=record_key\npk.fields=id\ndelete.enabled=true\n\
             auto.create=true\nbatch.size=500\n"
        ),
    )
    .unwrap();
    let log = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();

    // Killed as soon as rows appear: mid-stream, most likely mid-batch.
    let mut first = worker(dir.path(), "first.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows_at_kill = loop {
        let count = rt.block_on(client.query_one("SELECT count(*), coalesce(max(n), -1) FROM orders", &[]));
        if let Ok(row) = count {
            let (count, max_n): (i64, i64) = (row.get(0), row.get(1));
            if count > 0 {
                let _ = Command::new("kill").args(["-9", &first.id().to_string()]).status();
                break (count, max_n);
            }
        }
        assert!(Instant::now() < deadline, "no rows were written:\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(10));
    };
    first.wait().unwrap();

    let mut second = worker(dir.path(), "second.log");
    let offsets_url = format!("http://127.0.0.1:{port}/connectors/pg/offsets");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = agent
            .get(&offsets_url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|o| o["offsets"][0]["offset"]["kafka_offset"] == n_records);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted worker did not finish:\n{}", log("second.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let got: BTreeMap<i64, i64> = rt
        .block_on(client.query("SELECT id, n FROM orders", &[]))
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got.len(), model.len(), "killed with {rows_at_kill:?} (rows, highest n) written");
    assert_eq!(got, model, "killed with {rows_at_kill:?} (rows, highest n) written");
    let _ = Command::new("kill").arg(second.id().to_string()).status();
    second.wait().unwrap();
    broker.stop();
}
