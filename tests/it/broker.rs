//! `freshet broker` with real Kafka clients: kcat (librdkafka) produces and consumes through the
//! broker process, per compression codec, with keys, null values and repeated headers; consumers
//! in a group share partitions and resume from committed offsets; bad frames close only their own
//! connection; a restart loses no acknowledged record; confluent-kafka and kafka-python exchange
//! records with keys, null values, repeated headers and timestamps intact, and use transactions
//! (`tests/clients`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) use crate::peer::BrokerProcess;

pub(crate) fn kcat(args: &[&str], stdin: &str) -> String {
    let output = crate::peer::run_with_stdin(
        Command::new("kcat").args(args),
        stdin,
        "kcat is installed (./dev test installs it)",
    );
    assert!(output.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn kcat_produces_and_consumes_through_the_broker_with_every_codec() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    let b = broker.addr.clone();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("events-{codec}");
        // Keys, an empty value sent as null (-Z), and a header key repeated.
        kcat(
            &["-b", &b, "-P", "-t", &topic, "-K", ":", "-Z", "-z", codec, "-H", "h=1", "-H", "h=2"],
            "a:one\nb:\nc:three\n",
        );
        let out = kcat(&["-b", &b, "-C", "-t", &topic, "-o", "beginning", "-e", "-q", "-f", "%o %k=%s (%S) %h\n"], "");
        assert_eq!(out, "0 a=one (3) h=1,h=2\n1 b= (-1) h=1,h=2\n2 c=three (5) h=1,h=2\n", "{codec}");
        // A consumer starting in the middle of a batch gets the records from there on.
        let out = kcat(&["-b", &b, "-C", "-t", &topic, "-o", "1", "-e", "-q", "-f", "%o %k\n"], "");
        assert_eq!(out, "1 b\n2 c\n", "{codec}");
        // And the client really compresses (older librdkafka refuses to when the broker does not
        // serve Produce v0): a batch worth compressing is stored with its codec.
        let packed = format!("packed-{codec}");
        kcat(&["-b", &b, "-P", "-t", &packed, "-z", codec], &format!("{}\n", "x".repeat(60)).repeat(100));
        let segment = dir.path().join(format!("data/topics/{packed}/0/00000000000000000000.log"));
        let dump = Command::new(env!("CARGO_BIN_EXE_freshet")).arg("dump-log").arg(&segment).output().unwrap();
        let dump = String::from_utf8_lossy(&dump.stdout);
        let want = match codec {
            "none" => "None",
            "gzip" => "Gzip",
            "snappy" => "Snappy",
            "lz4" => "Lz4",
            _ => "Zstd",
        };
        assert!(dump.contains(&format!("compression: {want} ")), "{codec}: {dump}");
    }
    let listing = kcat(&["-b", &b, "-L"], "");
    assert!(listing.contains("topic \"events-zstd\" with 1 partitions"), "{listing}");
    broker.stop();
}

#[test]
fn bad_frames_close_their_connection_and_the_broker_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    let closed = |frame: &[u8]| {
        let mut s = TcpStream::connect(&broker.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(frame).unwrap();
        let mut buf = [0u8; 64];
        matches!(s.read(&mut buf), Ok(0) | Err(_))
    };
    // A frame over the maximum: refused from its size, before anything is allocated.
    assert!(closed(&i32::MAX.to_be_bytes()));
    // A negative size.
    assert!(closed(&(-1i32).to_be_bytes()));
    // An unknown API key.
    let mut unknown = 12i32.to_be_bytes().to_vec();
    unknown.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
    assert!(closed(&unknown));
    // A Metadata request cut short in its body.
    let mut cut = 10i32.to_be_bytes().to_vec();
    cut.extend_from_slice(&[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff]);
    assert!(closed(&cut));
    // Random bytes.
    let noise: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut random = (noise.len() as i32).to_be_bytes().to_vec();
    random.extend_from_slice(&noise);
    assert!(closed(&random));
    // A client that leaves in the middle of a request.
    {
        let mut s = TcpStream::connect(&broker.addr).unwrap();
        s.write_all(&100i32.to_be_bytes()).unwrap();
        s.write_all(&[0, 3]).unwrap();
    }
    // An ApiVersions request of a version the broker does not serve gets error 35 and the ranges.
    let mut s = TcpStream::connect(&broker.addr).unwrap();
    let mut request = 10i32.to_be_bytes().to_vec();
    request.extend_from_slice(&[0, 18, 0x7f, 0, 0, 0, 0, 7, 0xff, 0xff]);
    s.write_all(&request).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).unwrap();
    assert_eq!(&body[..4], &7i32.to_be_bytes(), "the correlation id");
    assert_eq!(&body[4..6], &35i16.to_be_bytes(), "UNSUPPORTED_VERSION");
    // Everyone else is still served.
    kcat(&["-b", &broker.addr, "-P", "-t", "after", "-K", ":"], "k:v\n");
    let out = kcat(&["-b", &broker.addr, "-C", "-t", "after", "-o", "beginning", "-e", "-q", "-f", "%k=%s\n"], "");
    assert_eq!(out, "k=v\n");
    broker.stop();
}

#[test]
fn a_broker_restart_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data);
    let lines: String = (0..500).map(|i| format!("k{i}:v{i}\n")).collect();
    // acks=all: kcat waits for every acknowledgement before it exits.
    kcat(&["-b", &broker.addr, "-P", "-t", "durable", "-K", ":", "-X", "acks=all"], &lines);
    broker.stop();
    let broker = BrokerProcess::start(&data);
    let out = kcat(&["-b", &broker.addr, "-C", "-t", "durable", "-o", "beginning", "-e", "-q", "-f", "%k:%s\n"], "");
    assert_eq!(out, lines);
    broker.stop();
}

/// A kcat group consumer running until stopped, its output lines collected as they come.
struct GroupConsumer {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl GroupConsumer {
    fn start(addr: &str, group: &str, topic: &str) -> Self {
        let mut child = Command::new("kcat")
            .args(["-b", addr, "-G", group, "-X", "auto.offset.reset=earliest", "-X", "heartbeat.interval.ms=100"])
            // Offsets are committed every 100 ms while the group is stable, not only as a member
            // leaves (a commit racing the rebalance a leaving member starts may be refused).
            .args(["-X", "auto.commit.interval.ms=100"])
            // -u: unbuffered output, so each line comes as its record does.
            .args(["-u", "-q", "-f", "%p %s\n", topic])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kcat is installed (./dev test installs it)");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        GroupConsumer { child, lines }
    }

    fn count(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Stops it as Ctrl-C would: it commits and leaves the group.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.lines.lock().unwrap().clone()
    }
}

#[test]
fn three_consumers_in_a_group_share_six_partitions_and_resume_from_committed_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start_with(&data, &["--num-partitions", "6"]);
    let b = broker.addr.clone();
    kcat(&["-b", &b, "-P", "-t", "shared", "-K", ":"], "k:first\n");
    // Three balanced consumers join; once the group settles, the records come.
    let consumers: Vec<GroupConsumer> = (0..3).map(|_| GroupConsumer::start(&b, "readers", "shared")).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while consumers.iter().map(GroupConsumer::count).sum::<usize>() < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Members learn of a rebalance from their next heartbeat (every 100 ms here).
    std::thread::sleep(Duration::from_secs(2));
    let lines: String = (0..600).map(|i| format!("k{i}:v{i}\n")).collect();
    kcat(&["-b", &b, "-P", "-t", "shared", "-K", ":"], &lines);
    while consumers.iter().map(GroupConsumer::count).sum::<usize>() < 601 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the members commit what they read before the first one leaves.
    std::thread::sleep(Duration::from_millis(500));
    // What each read while the group was stable, before any left.
    let stable: Vec<Vec<String>> = consumers.iter().map(|c| c.lines.lock().unwrap().clone()).collect();
    let outputs: Vec<Vec<String>> = consumers.into_iter().map(GroupConsumer::stop).collect();
    let mut seen: Vec<String> = Vec::new();
    let mut partitions_of = Vec::new();
    for (out, stable) in outputs.iter().zip(&stable) {
        let mut partitions: Vec<&str> =
            stable.iter().filter(|l| !l.ends_with("first")).map(|l| l.split(' ').next().unwrap()).collect();
        partitions.sort_unstable();
        partitions.dedup();
        partitions_of.push(partitions.len());
        seen.extend(out.iter().map(|l| l.split(' ').nth(1).unwrap().to_string()).filter(|v| v != "first"));
    }
    seen.sort_by_key(|v| v[1..].parse::<u32>().unwrap());
    // At least once, as a Kafka group gives it: every record read, and none twice but after a
    // rebalance (members leaving one by one here), which is reported.
    let read = seen.len();
    seen.dedup();
    if read != seen.len() {
        eprintln!("{} records were read again after a rebalance", read - seen.len());
    }
    let expected: Vec<String> = (0..600).map(|i| format!("v{i}")).collect();
    if seen != expected {
        // What each member read, per partition, and what the broker's group coordinator did.
        let per_member: Vec<BTreeMap<&str, usize>> = outputs
            .iter()
            .map(|out| {
                let mut counts = BTreeMap::new();
                for l in out {
                    *counts.entry(l.split(' ').next().unwrap()).or_default() += 1;
                }
                counts
            })
            .collect();
        let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
        panic!(
            "every record read across the group: {read} read, {} distinct\nrecords per partition per member: {per_member:?}\nbroker log:\n{log}",
            seen.len()
        );
    }
    assert_eq!(partitions_of, [2, 2, 2], "six partitions shared by three members");
    // The group committed as its members left: after a broker restart, a new member reads only
    // what is new.
    broker.stop();
    let broker = BrokerProcess::start_with(&data, &["--num-partitions", "6"]);
    let b = broker.addr.clone();
    kcat(&["-b", &b, "-P", "-t", "shared", "-K", ":"], "k600:v600\nk601:v601\n");
    let out =
        kcat(&["-b", &b, "-G", "readers", "-X", "auto.offset.reset=earliest", "-e", "-q", "-f", "%s\n", "shared"], "");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    assert_eq!(got, ["v600", "v601"]);
    broker.stop();
}

/// Runs a script of `tests/clients` with the Python Kafka clients; it prints "ok" when all held.
pub(crate) fn python_clients(script: &str, args: &[&str]) {
    let (python, script) = python_script(script);
    let output = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{python}: {e} (./dev test installs confluent-kafka and kafka-python there)"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stdout.trim() == "ok", "{script}:\n{stdout}\n{stderr}");
}

/// The Python with the Kafka clients, and the path of `tests/clients/<script>`.
pub(crate) fn python_script(script: &str) -> (String, String) {
    let home = std::env::var("HOME").unwrap_or_default();
    let python = std::env::var("FRESHET_PYTHON").unwrap_or_else(|_| format!("{home}/.cache/freshet/venv/bin/python"));
    (python, format!("{}/tests/clients/{script}", env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn the_broker_reads_its_settings_from_a_config_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.properties");
    let data = dir.path().join("from-file");
    std::fs::write(
        &file,
        format!(
            "# Kafka's names\nlog.dirs={}\nlisteners=PLAINTEXT://127.0.0.1:0\nnum.partitions=3\nauto.create.topics.enable=true\n\
             log.flush.interval.messages=1\nlog.retention.check.interval.ms=300000\n",
            data.display()
        ),
    )
    .unwrap();
    let flag_dir = dir.path().join("from-flag");
    // `start_with` passes --data-dir (and --listen), which override the file's.
    let broker = BrokerProcess::start_with(&flag_dir, &["--config", file.to_str().unwrap()]);
    kcat(&["-b", &broker.addr, "-P", "-t", "auto"], "x\n");
    let metadata = kcat(&["-b", &broker.addr, "-L", "-t", "auto"], "");
    assert!(metadata.contains("with 3 partitions"), "{metadata}");
    broker.stop();
    assert!(flag_dir.join("topics/auto").exists() && !data.exists());

    std::fs::write(&file, "log.dirs=/tmp/x\nlisteners=SSL://127.0.0.1:9093\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(["broker", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("listener SSL speaks SSL: Freshet serves PLAINTEXT only"), "{err}");
    std::fs::write(&file, "log.flush.interval.ms=soon\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(["broker", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("line 1: log.flush.interval.ms=\"soon\": expected milliseconds"),
        "{err}"
    );
    std::fs::write(&file, "log.retention.check.interval.ms=0\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(["broker", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("log.retention.check.interval.ms=\"0\": expected milliseconds"),
        "{err}"
    );
    std::fs::write(&file, "log.segment.bytes=big\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(["broker", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("log.segment.bytes=\"big\": as the default of topic config segment.bytes"),
        "{err}"
    );
    std::fs::write(&file, "num.partitons=3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(["broker", "--config"]).arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("line 1: num.partitons is not a Kafka broker setting; did you mean num.partitions?"),
        "{err}"
    );
}

/// Kafka's own KRaft `server.properties` (one node, broker and controller) runs as it is: the
/// node's id and the PLAINTEXT listener are taken, the controller listener and quorum are this
/// node's, Kafka settings Freshet does not act on are named as ignored; the data directory is
/// formatted with a cluster id on first start, which Metadata gives and a restart keeps; a
/// directory of another node or cluster is refused, naming both.
#[test]
fn kafkas_kraft_server_properties_run_as_they_are_and_the_directory_keeps_its_cluster_id() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.properties");
    let data = dir.path().join("kraft-combined-logs");
    let kafka_sample = |node: i32| {
        format!(
            "process.roles=broker,controller
node.id={node}
controller.quorum.voters={node}@127.0.0.1:19093
             listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:19093
inter.broker.listener.name=PLAINTEXT
             advertised.listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:19093
             controller.listener.names=CONTROLLER
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
             num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
             socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs={}
num.partitions=1
             num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
             share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
             transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
             log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
",
            data.display()
        )
    };
    std::fs::write(&file, kafka_sample(1)).unwrap();
    let freshet = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_freshet")).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // Formatted with a cluster id as Kafka's tool does it.
    let (ok, id, _) = freshet(&["storage", "random-uuid"]);
    let id = id.trim().to_string();
    assert!(ok && id.len() == 22, "{id}");
    let (ok, _, err) = freshet(&["storage", "format", "-t", &id, "-c", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    let meta = std::fs::read_to_string(data.join("meta.properties")).unwrap();
    assert!(meta.contains(&format!("cluster.id={id}")) && meta.contains("node.id=1"), "{meta}");
    let (ok, _, err) = freshet(&["storage", "format", "-t", "MkU3OEVBNTcwNTJENDM2Qk", "-c", file.to_str().unwrap()]);
    assert!(!ok && err.contains(&format!("is formatted for cluster {id}, not MkU3OEVBNTcwNTJENDM2Qk")), "{err}");
    let (ok, _, err) = freshet(&["storage", "format", "-t", &id, "-c", file.to_str().unwrap(), "--ignore-formatted"]);
    assert!(ok, "{err}");
    let (ok, _, err) = freshet(&["storage", "format", "-t", "not-an-id", "-c", file.to_str().unwrap()]);
    assert!(!ok && err.contains("cluster id \"not-an-id\""), "{err}");

    // The broker runs on Kafka's file, as node 1 of that cluster.
    let broker = BrokerProcess::start_with(&data, &["--config", file.to_str().unwrap()]);
    kcat(&["-b", &broker.addr, "-P", "-t", "kraft"], "x\n");
    let metadata = kcat(&["-b", &broker.addr, "-L", "-t", "kraft"], "");
    assert!(metadata.contains("broker 1 at") && metadata.contains("leader 1, replicas: 1, isrs: 1"), "{metadata}");
    let log = std::fs::read_to_string(data.with_extension("log")).unwrap_or_default();
    for ignored in ["num.network.threads", "share.coordinator.state.topic.min.isr", "socket.send.buffer.bytes"] {
        assert!(log.contains("a Kafka setting Freshet does not act on") && log.contains(ignored), "{ignored}: {log}");
    }
    broker.stop();
    // The Java admin client's view of the cluster id is checked in the Java tests; here kcat's.
    let broker = BrokerProcess::start_with(&data, &["--config", file.to_str().unwrap()]);
    let (ok, info, _) = freshet(&["storage", "info", "--data-dir", data.to_str().unwrap()]);
    assert!(ok && info.contains(&format!("cluster.id={id}")), "{info}");
    broker.stop();

    // Another node's file on this directory is refused, naming both.
    std::fs::write(&file, kafka_sample(2)).unwrap();
    let (ok, _, err) = freshet(&["broker", "--config", file.to_str().unwrap()]);
    assert!(!ok && err.contains("belongs to node 1 of cluster") && err.contains("not to node 2"), "{err}");
    // A node of a quorum of several needs its directory formatted for the cluster, as Kafka's do.
    let unformatted = dir.path().join("unformatted");
    std::fs::write(
        &file,
        kafka_sample(1)
            .replace("controller.quorum.voters=1@", "controller.quorum.voters=2@127.0.0.1:19094,1@")
            .replace(&data.display().to_string(), &unformatted.display().to_string()),
    )
    .unwrap();
    let (ok, _, err) = freshet(&["broker", "--config", file.to_str().unwrap()]);
    assert!(!ok && err.contains("is not formatted for a cluster") && err.contains("freshet storage format"), "{err}");
}

#[test]
fn clients_of_the_older_produce_versions_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    python_clients("legacy_produce.py", &[&broker.addr]);
    broker.stop();
}

#[test]
fn the_python_clients_produce_and_consume_through_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    python_clients("roundtrip.py", &[&broker.addr, "py"]);
    broker.stop();
}

#[test]
fn transactions_commit_abort_fence_and_time_out_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = BrokerProcess::start(&data);
    python_clients("transactions.py", &[&broker.addr, "tx"]);
    let committed = |addr: &str| {
        let out = kcat(
            &["-b", addr, "-C", "-t", "tx-out", "-o", "beginning", "-e", "-q", "-f", "%s\n"]
                .into_iter()
                .chain(["-X", "isolation.level=read_committed"])
                .collect::<Vec<_>>(),
            "",
        );
        let mut values: Vec<String> = out.lines().map(str::to_string).collect();
        values.sort();
        values
    };
    let before = committed(&broker.addr);
    assert!(before.iter().any(|v| v == "c0") && !before.iter().any(|v| v == "a0" || v == "expired"), "{before:?}");
    broker.stop();
    let broker = BrokerProcess::start(&data);
    assert_eq!(committed(&broker.addr), before, "the same records are committed after a restart");
    broker.stop();
}

#[test]
fn the_admin_client_creates_describes_alters_grows_trims_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    // The cluster id the broker formatted its directory with on first start.
    let meta = std::fs::read_to_string(dir.path().join("data/meta.properties")).unwrap();
    let cluster_id = meta.lines().find_map(|l| l.strip_prefix("cluster.id=")).unwrap().to_string();
    python_clients("admin.py", &[&broker.addr, &cluster_id]);
    broker.stop();
}
