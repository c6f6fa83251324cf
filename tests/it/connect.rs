//! `freshet connect` beside Kafka Connect itself: Kafka Connect (distributed, from its jars) runs
//! the FileStream source on a Freshet broker and stores its offsets in `connect-offsets`; then
//! Freshet's worker, on the same broker, takes over the same connector from those offsets (a
//! migration path), and its REST payloads have the shapes of Kafka Connect's.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::peer::{Kind, Peer};

/// A request to a worker's REST API through a real HTTP client: the status and the JSON answer.
fn http(method: &str, url: &str, body: Option<&Json>) -> (u16, Json) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let result = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        ("POST", Some(b)) => agent.post(url).header("Content-Type", "application/json").send(b.to_string()),
        ("PUT", Some(b)) => agent.put(url).header("Content-Type", "application/json").send(b.to_string()),
        ("PUT", None) => agent.put(url).send_empty(),
        (m, _) => panic!("no such method here: {m}"),
    };
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            (status, serde_json::from_str(&text).unwrap_or(Json::Null))
        }
        // Not up yet.
        Err(_) => (0, Json::Null),
    }
}

/// Waits until `GET url` answers something `check` accepts.
fn wait_for(url: &str, what: &str, check: impl Fn(&Json) -> bool, log: &dyn Fn() -> String) -> Json {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = http("GET", url, None);
        if status == 200 && check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "waiting for {what}: GET {url} gives {status} {body}\n{}", log());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The shape of a payload: its keys and the kinds of their values, recursively; an array by its
/// first element. Freshet's extra task counters (`metrics`) are left out.
fn shape(value: &Json) -> Json {
    match value {
        Json::Object(o) => Json::Object(
            o.iter().filter(|(k, _)| k.as_str() != "metrics").map(|(k, v)| (k.clone(), shape(v))).collect(),
        ),
        Json::Array(items) => json!([items.first().map(shape)]),
        Json::String(_) => json!("string"),
        Json::Number(_) => json!("number"),
        Json::Bool(_) => json!("bool"),
        Json::Null => Json::Null,
    }
}

/// Kafka Connect's create answer lists no tasks yet (a distributed worker assigns them after);
/// shapes are compared where both have elements.
fn same_shape(freshet: &Json, kafka: &Json, what: &str) {
    fn compare(a: &Json, b: &Json, path: &str) {
        match (a, b) {
            (Json::Object(x), Json::Object(y)) => {
                let (kx, ky): (Vec<&String>, Vec<&String>) = (x.keys().collect(), y.keys().collect());
                assert_eq!(kx, ky, "keys at {path}");
                for (k, v) in x {
                    compare(v, &y[k], &format!("{path}.{k}"));
                }
            }
            (Json::Array(x), Json::Array(y)) => {
                if let (Some(p), Some(q)) = (x.first(), y.first()) {
                    if !p.is_null() && !q.is_null() {
                        compare(p, q, &format!("{path}[0]"));
                    }
                }
            }
            (x, y) => assert_eq!(x, y, "value kind at {path}"),
        }
    }
    let (a, b) = (shape(freshet), shape(kafka));
    compare(&a, &b, what);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

fn lines(from: u32, to: u32) -> String {
    (from..=to).map(|i| format!("line-{i}\n")).collect()
}

#[test]
fn freshets_worker_takes_over_a_filestream_source_from_kafka_connects_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let broker = Peer::start(Kind::Freshet, dir.path());
    std::fs::write(path("in.txt"), lines(1, 100)).unwrap();

    // Kafka Connect, distributed: configs, offsets and statuses in the broker's topics.
    let kafka_port = free_port();
    std::fs::write(
        path("kafka-worker.properties"),
        format!(
            "bootstrap.servers={}\ngroup.id=kafka-connect\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             config.storage.topic=connect-configs\noffset.storage.topic=connect-offsets\n\
             status.storage.topic=connect-status\nconfig.storage.replication.factor=1\n\
             offset.storage.replication.factor=1\nstatus.storage.replication.factor=1\n\
             offset.flush.interval.ms=500\nlisteners=http://127.0.0.1:{kafka_port}\nplugin.discovery=only_scan\n",
            broker.addr()
        ),
    )
    .unwrap();
    let kafka_log = path("kafka-connect.log");
    let log = || std::fs::read_to_string(&kafka_log).unwrap_or_default();
    let kafka = Command::new("java")
        .arg(crate::peer::log4j_config())
        .args(["-cp", &crate::peer::connect_classpath(), "org.apache.kafka.connect.cli.ConnectDistributed"])
        .arg(path("kafka-worker.properties"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&kafka_log).unwrap())
        .spawn()
        .unwrap();
    let kafka_url = format!("http://127.0.0.1:{kafka_port}");
    wait_for(&format!("{kafka_url}/connectors"), "Kafka Connect to start", |_| true, &log);

    let config =
        json!({"connector.class": "FileStreamSource", "tasks.max": "1", "file": path("in.txt"), "topic": "lines"});
    let mut kafka_answers = BTreeMap::new();
    let (status, created) =
        http("POST", &format!("{kafka_url}/connectors"), Some(&json!({"name": "src", "config": config})));
    assert_eq!(status, 201, "{created}\n{}", log());
    kafka_answers.insert("create", created);
    let size = std::fs::metadata(path("in.txt")).unwrap().len();
    let offsets = wait_for(
        &format!("{kafka_url}/connectors/src/offsets"),
        "Kafka Connect's offsets",
        |o| o["offsets"][0]["offset"]["position"] == json!(size),
        &log,
    );
    kafka_answers.insert("offsets", offsets);
    kafka_answers.insert(
        "status",
        wait_for(
            &format!("{kafka_url}/connectors/src/status"),
            "RUNNING",
            |s| s["tasks"][0]["state"] == "RUNNING",
            &log,
        ),
    );
    kafka_answers.insert("tasks", http("GET", &format!("{kafka_url}/connectors/src/tasks"), None).1);
    kafka_answers.insert("info", http("GET", &format!("{kafka_url}/connectors/src"), None).1);
    kafka_answers.insert(
        "plugin_config",
        http("GET", &format!("{kafka_url}/connector-plugins/FileStreamSource/config"), None).1,
    );
    // Stopped, then gone: the connector's offsets stay in connect-offsets.
    assert_eq!(http("PUT", &format!("{kafka_url}/connectors/src/stop"), None).0, 204, "{}", log());
    std::thread::sleep(Duration::from_secs(1));
    stop(kafka);

    // Freshet's worker on the same broker and offsets topic, with a sink to see what arrives.
    std::fs::OpenOptions::new()
        .append(true)
        .open(path("in.txt"))
        .unwrap()
        .write_all(lines(101, 150).as_bytes())
        .unwrap();
    let freshet_port = free_port();
    std::fs::write(
        path("worker.properties"),
        format!(
            "bootstrap.servers={}\nkey.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\noffset.storage.topic=connect-offsets\n\
             offset.flush.interval.ms=500\nlisteners=http://127.0.0.1:{freshet_port}\n",
            broker.addr()
        ),
    )
    .unwrap();
    std::fs::write(
        path("sink.properties"),
        format!("name=sink\nconnector.class=FileStreamSink\nfile={}\ntopics=lines\n", path("out.txt")),
    )
    .unwrap();
    let freshet_log = path("freshet-connect.log");
    let flog = || std::fs::read_to_string(&freshet_log).unwrap_or_default();
    let freshet = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["connect", "standalone"])
        .args([path("worker.properties"), path("sink.properties")])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&freshet_log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{freshet_port}");
    wait_for(&format!("{url}/connectors"), "Freshet's worker to start", |_| true, &flog);
    let mut answers = BTreeMap::new();
    answers.insert("plugin_config", http("GET", &format!("{url}/connector-plugins/FileStreamSource/config"), None).1);
    let (status, created) = http("POST", &format!("{url}/connectors"), Some(&json!({"name": "src", "config": config})));
    assert_eq!(status, 201, "{created}\n{}", flog());
    answers.insert("create", created);

    // Every line once: Kafka Connect's 100, then the 50 Freshet's worker read from position
    // Kafka Connect stored.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(path("out.txt")).unwrap_or_default().lines().count() < 150 {
        assert!(Instant::now() < deadline, "out.txt: {:?}\n{}", std::fs::read_to_string(path("out.txt")), flog());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(std::fs::read_to_string(path("out.txt")).unwrap(), lines(1, 150), "{}", flog());

    let size = std::fs::metadata(path("in.txt")).unwrap().len();
    let offsets = wait_for(
        &format!("{url}/connectors/src/offsets"),
        "Freshet's offsets",
        |o| o["offsets"][0]["offset"]["position"] == json!(size),
        &flog,
    );
    answers.insert("offsets", offsets);
    answers.insert("status", http("GET", &format!("{url}/connectors/src/status"), None).1);
    answers.insert("tasks", http("GET", &format!("{url}/connectors/src/tasks"), None).1);
    answers.insert("info", http("GET", &format!("{url}/connectors/src"), None).1);
    for (what, kafka_answer) in &kafka_answers {
        if *what != "plugin_config" {
            same_shape(&answers[what], kafka_answer, what);
        }
    }
    // Each key described with the same fields.
    let fields = |v: &Json| -> Vec<String> { v[0].as_object().unwrap().keys().cloned().collect() };
    assert_eq!(fields(&answers["plugin_config"]), fields(&kafka_answers["plugin_config"]));
    // The same keys, with the same types and defaults.
    // (The connector's version is the one default that differs.)
    let keys = |v: &Json| -> Vec<(Json, Json, Json)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|k| {
                let default =
                    if k["name"] == "connector.plugin.version" { Json::Null } else { k["default_value"].clone() };
                (k["name"].clone(), k["type"].clone(), default)
            })
            .collect()
    };
    let (mut ours, mut theirs) = (keys(&answers["plugin_config"]), keys(&kafka_answers["plugin_config"]));
    // Freshet's additions: restarting failed tasks, and a dead-letter topic for sources.
    let extras = [
        "errors.deadletterqueue.context.headers.enable",
        "errors.deadletterqueue.topic.name",
        "errors.task.restart.backoff.max.ms",
        "errors.task.restart.max",
    ];
    ours.retain(|k| !extras.contains(&k.0.as_str().unwrap()));
    ours.sort_by_key(|k| k.0.to_string());
    theirs.sort_by_key(|k| k.0.to_string());
    assert_eq!(ours, theirs);
    stop(freshet);
    broker.stop();
}

/// `freshet broker --connect`: the broker hosts a worker on the log it serves; a pipeline added
/// through the worker's REST API runs on that log, which the broker's clients see.
#[test]
fn the_broker_hosts_a_connect_worker_on_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let port = free_port();
    std::fs::write(
        path("worker.properties"),
        format!(
            "listeners=http://127.0.0.1:{port}\noffset.flush.interval.ms=200\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n"
        ),
    )
    .unwrap();
    std::fs::write(path("in.txt"), lines(1, 20)).unwrap();
    let broker =
        crate::peer::BrokerProcess::start_with(&dir.path().join("data"), &["--connect", &path("worker.properties")]);
    let url = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{url}/connectors"), "the hosted worker", |_| true, &|| String::new());
    let source = json!({"name": "src", "config": {"connector.class": "FileStreamSource", "file": path("in.txt"), "topic": "hosted"}});
    assert_eq!(http("POST", &format!("{url}/connectors"), Some(&source)).0, 201);
    // The sink through SQL, as ksqlDB's statements create connectors.
    let sql = |statements: &str| {
        Command::new(env!("CARGO_BIN_EXE_freshet"))
            .args(["sql", "--bootstrap", &broker.addr, "--connect-url", &url, "--format", "csv", "-e", statements])
            .output()
            .unwrap()
    };
    let created = sql(&format!(
        "CREATE SINK CONNECTOR sink WITH ('connector.class' = 'FileStreamSink', 'file' = '{}', topics = 'hosted');\n\
         SHOW CONNECTORS;",
        path("out.txt")
    ));
    let shown = String::from_utf8_lossy(&created.stdout);
    assert!(created.status.success(), "{shown}{}", String::from_utf8_lossy(&created.stderr));
    assert!(
        shown.contains("sink,sink,FileStreamSink,RUNNING") && shown.contains("src,source,FileStreamSource,RUNNING"),
        "{shown}"
    );
    let wrong = sql("CREATE SOURCE CONNECTOR s2 WITH ('connector.class' = 'FileStreamSink', topics = 'x')");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("is a sink connector"), "{wrong:?}");
    let described = sql("DESCRIBE CONNECTOR sink");
    let described = String::from_utf8_lossy(&described.stdout);
    assert!(described.contains("task 0,RUNNING") && described.contains("config topics,hosted"), "{described}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(path("out.txt")).unwrap_or_default() != lines(1, 20) {
        assert!(Instant::now() < deadline, "out.txt: {:?}", std::fs::read_to_string(path("out.txt")));
        std::thread::sleep(Duration::from_millis(100));
    }
    // The broker's clients see the topic the source wrote.
    let out = Command::new("kcat").args(["-b", &broker.addr, "-C", "-t", "hosted", "-e", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), lines(1, 20));
    assert!(sql("DROP CONNECTOR src; DROP CONNECTOR IF EXISTS src").status.success());
    let again = sql("DROP CONNECTOR src");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no connector named src"), "{again:?}");
    broker.stop();
}

/// A `freshet connect distributed` process with its log.
struct DistributedProcess {
    child: Child,
    url: String,
    id: String,
    log: String,
}

impl DistributedProcess {
    fn start(dir: &std::path::Path, n: usize, broker: &str, extra: &str) -> DistributedProcess {
        let port = free_port();
        let properties = dir.join(format!("worker-{n}.properties"));
        std::fs::write(
            &properties,
            format!(
                "bootstrap.servers={broker}\ngroup.id=cluster\nlisteners=http://127.0.0.1:{port}\n\
                 session.timeout.ms=6000\nheartbeat.interval.ms=500\nrebalance.timeout.ms=10000\n\
                 scheduled.rebalance.max.delay.ms=0\noffset.flush.interval.ms=200\n\
                 key.converter=org.apache.kafka.connect.storage.StringConverter\n\
                 value.converter=org.apache.kafka.connect.storage.StringConverter\n{extra}"
            ),
        )
        .unwrap();
        let log = dir.join(format!("worker-{n}.log")).display().to_string();
        let child = Command::new(env!("CARGO_BIN_EXE_freshet"))
            .args(["connect", "distributed"])
            .arg(&properties)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        wait_for(&format!("{url}/connectors"), "a distributed worker to start", |_| true, &|| {
            std::fs::read_to_string(&log).unwrap_or_default()
        });
        DistributedProcess { child, url, id: format!("127.0.0.1:{port}"), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `POST /connectors` on `url`, asked again while the group rebalances (409).
fn create(url: &str, body: &Json, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = http("POST", &format!("{url}/connectors"), Some(body));
        if status == 201 {
            return;
        }
        assert!(status == 409 && Instant::now() < deadline, "{status} {answer}\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two distributed workers run a file -> topic -> file pipeline; the one running the source task
/// is killed with SIGKILL while lines keep coming. The other takes the work over: every line
/// arrives, and a line is written twice only when the dead worker had sent it but not yet
/// stored its position (at least once) — never, with `exactly.once.source.support=enabled`, in
/// what a read_committed consumer reads from the topic.
fn a_killed_workers_pipeline_is_taken_over(kind: Kind, exactly_once: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let broker = Peer::start(kind, dir.path());
    let extra = if exactly_once { "exactly.once.source.support=enabled\n" } else { "" };
    let mut workers: Vec<DistributedProcess> =
        (0..2).map(|n| DistributedProcess::start(dir.path(), n, broker.addr(), extra)).collect();
    let logs =
        |workers: &[DistributedProcess]| workers.iter().map(DistributedProcess::log).collect::<Vec<_>>().join("\n");
    std::fs::write(path("in.txt"), "").unwrap();
    let source = json!({"name": "source", "config": {"connector.class": "FileStreamSource", "file": path("in.txt"), "topic": "lines"}});
    let sink = json!({"name": "sink", "config": {"connector.class": "FileStreamSink", "file": path("out.txt"), "topics": "lines"}});
    create(&workers[0].url, &source, &|| logs(&workers));
    create(&workers[1].url, &sink, &|| logs(&workers));
    // Lines keep coming, 20 every 50 ms, to 2000.
    let input = path("in.txt");
    let writer = std::thread::spawn(move || {
        let mut file = std::fs::OpenOptions::new().append(true).open(input).unwrap();
        for batch in 0..100 {
            file.write_all(lines(batch * 20 + 1, batch * 20 + 20).as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let url = workers[0].url.clone();
    let status = wait_for(
        &format!("{url}/connectors/source/status"),
        "the source task to run",
        |s| {
            s["tasks"][0]["state"] == "RUNNING" && std::fs::read_to_string(path("out.txt")).is_ok_and(|t| t.len() > 100)
        },
        &|| logs(&workers),
    );
    let running_it = status["tasks"][0]["worker_id"].as_str().unwrap().to_string();
    let victim = workers.iter().position(|w| w.id == running_it).expect("a worker of the two runs it");
    let mut killed = workers.remove(victim);
    let _ = Command::new("kill").args(["-9", &killed.child.id().to_string()]).status();
    let _ = killed.child.wait();
    let survivor = &workers[0];
    writer.join().unwrap();
    let expected: Vec<String> = lines(1, 2000).lines().map(str::to_string).collect();
    let deadline = Instant::now() + Duration::from_secs(150);
    let out = loop {
        let out: Vec<String> =
            std::fs::read_to_string(path("out.txt")).unwrap_or_default().lines().map(str::to_string).collect();
        let distinct: std::collections::BTreeSet<&String> = out.iter().collect();
        if distinct.len() == expected.len() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "{} of 2000 lines arrived\nkilled worker:\n{}\nsurvivor:\n{}",
            distinct.len(),
            killed.log(),
            survivor.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let distinct: std::collections::BTreeSet<&String> = out.iter().collect();
    assert!(distinct.iter().all(|l| expected.contains(l)), "only the lines written arrive");
    let status = wait_for(
        &format!("{}/connectors/source/status", survivor.url),
        "the survivor to run the source",
        |s| s["tasks"][0]["worker_id"] == survivor.id.as_str() && s["tasks"][0]["state"] == "RUNNING",
        &|| survivor.log(),
    );
    assert_eq!(status["connector"]["worker_id"], survivor.id.as_str());
    // At least once: what arrived twice is one run of consecutive lines per task that moved.
    let again = out.len() - distinct.len();
    eprintln!("{again} lines arrived twice after the worker was killed");
    let kcat = |isolation: &str| {
        let out = Command::new("kcat")
            .args(["-b", broker.addr(), "-C", "-t", "lines", "-e", "-q", "-X", &format!("isolation.level={isolation}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    let in_topic = kcat("read_committed");
    let topic_distinct: std::collections::BTreeSet<&String> = in_topic.iter().collect();
    assert_eq!(topic_distinct.len(), 2000, "every line in the topic");
    if exactly_once {
        assert_eq!(in_topic, expected, "exactly once: each line once, in order, in the topic");
    } else {
        let twice = in_topic.len() - 2000;
        eprintln!("{twice} lines were sent twice by the source");
        // Re-sent lines are the ones after the last stored position: one run, in order.
        let first_again = in_topic.iter().enumerate().find(|(i, l)| in_topic[..*i].contains(l)).map(|(i, _)| i);
        if let Some(i) = first_again {
            let start = expected.iter().position(|l| *l == in_topic[i]).unwrap();
            assert_eq!(in_topic[i..i + twice], expected[start..start + twice], "one run of re-sent lines");
        }
    }
    for w in workers {
        stop(w.child);
    }
    broker.stop();
}

#[test]
fn distributed_workers_take_over_a_killed_workers_pipeline_at_least_once() {
    a_killed_workers_pipeline_is_taken_over(Kind::Freshet, false);
}

#[test]
fn distributed_workers_take_over_a_killed_workers_exactly_once_source_without_duplicates() {
    a_killed_workers_pipeline_is_taken_over(Kind::Freshet, true);
}

/// The same on Apache Kafka itself: Freshet's distributed workers form their group through
/// Kafka's group coordinator and keep their state in its topics.
#[test]
fn distributed_workers_on_apache_kafka_take_over_a_killed_workers_exactly_once_pipeline() {
    a_killed_workers_pipeline_is_taken_over(Kind::Kafka, true);
}

/// A broker hosting a worker of a group (`--connect` with a `group.id`) and a `freshet connect
/// distributed` process reaching that broker form one group and share a connector's tasks.
#[test]
fn a_worker_hosted_by_the_broker_and_a_distributed_process_form_one_group() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let properties = dir.path().join("hosted.properties");
    std::fs::write(
        &properties,
        format!(
            "group.id=cluster\nlisteners=http://127.0.0.1:{port}\nsession.timeout.ms=3000\n\
             heartbeat.interval.ms=300\nscheduled.rebalance.max.delay.ms=0\n"
        ),
    )
    .unwrap();
    let broker =
        crate::peer::BrokerProcess::start_with(&dir.path().join("data"), &["--connect", properties.to_str().unwrap()]);
    let hosted = format!("http://127.0.0.1:{port}");
    wait_for(&format!("{hosted}/connectors"), "the hosted worker", |_| true, &|| String::new());
    let other = DistributedProcess::start(dir.path(), 1, &broker.addr, "");
    let idle = json!({"name": "idle", "config": {"connector.class": "BlackholeSink", "topics": "t", "tasks.max": "4"}});
    create(&hosted, &idle, &|| other.log());
    let both: std::collections::BTreeSet<String> =
        [format!("127.0.0.1:{port}"), other.id.clone()].into_iter().collect();
    wait_for(
        &format!("{}/connectors/idle/status", other.url),
        "the tasks to run on both workers",
        |s| {
            let tasks = s["tasks"].as_array().cloned().unwrap_or_default();
            let workers: std::collections::BTreeSet<String> =
                tasks.iter().map(|t| t["worker_id"].as_str().unwrap_or_default().to_string()).collect();
            tasks.len() == 4 && tasks.iter().all(|t| t["state"] == "RUNNING") && workers == both
        },
        &|| other.log(),
    );
    stop(other.child);
    broker.stop();
}
