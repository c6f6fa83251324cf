//! `freshet topic`, `produce`, `consume` and `groups`: on a data directory and, with
//! `--bootstrap`, on a broker process (through the remote substrate), with the same results and
//! clear errors.

use std::process::Command;

use crate::broker::BrokerProcess;

/// Where the commands work: `--data-dir <dir>` or `--bootstrap <address>`.
pub(crate) type Target = [String; 2];

pub(crate) fn data_dir(dir: &tempfile::TempDir) -> Target {
    ["--data-dir".into(), dir.path().join("data").display().to_string()]
}

pub(crate) fn freshet(args: &[&str], target: &Target) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_freshet")).args(args).args(target).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn topics_are_created_listed_described_altered_and_deleted_in_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    topics_are_created_listed_described_altered_and_deleted(&data_dir(&dir));
}

#[test]
fn topics_are_created_listed_described_altered_and_deleted_through_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    topics_are_created_listed_described_altered_and_deleted(&["--bootstrap".into(), broker.addr.clone()]);
    broker.stop();
}

pub(crate) fn topics_are_created_listed_described_altered_and_deleted(data: &Target) {
    let (ok, out, err) =
        freshet(&["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000"], data);
    assert!(ok, "{err}");
    assert_eq!(out, "created topic orders with 3 partitions\n");
    let (ok, _, err) = freshet(&["topic", "create", "orders"], data);
    assert!(!ok && err.contains("topic \"orders\" already exists"), "{err}");
    let (ok, _, err) = freshet(&["topic", "create", "bad name"], data);
    assert!(!ok && err.contains("invalid topic name \"bad name\""), "{err}");
    let (ok, _, err) = freshet(&["topic", "create", "x", "--config", "nonsense"], data);
    assert!(!ok && err.contains("--config \"nonsense\": expected key=value"), "{err}");
    let (_, out, _) = freshet(&["topic", "list"], data);
    assert_eq!(out, "orders\t3 partitions\n", "internal topics are not listed");

    let (ok, _, err) = freshet(
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "segment.ms=600000",
            "--delete-config",
            "retention.ms",
            "--partitions",
            "4",
        ],
        data,
    );
    assert!(ok, "{err}");
    let (_, out, _) = freshet(&["topic", "describe", "orders"], data);
    assert!(out.contains(", 4 partitions") && out.contains("partition 3: offsets 0..0"), "{out}");
    assert!(out.contains("  segment.ms = 600000\n") && out.contains("  retention.ms = 604800000 (default)\n"), "{out}");
    let (ok, _, err) = freshet(&["topic", "alter", "orders", "--partitions", "2"], data);
    // The cluster's answer carries the error code only.
    assert!(!ok && (err.contains("can only grow") || err.contains("Invalid number of partitions")), "{err}");

    let (ok, _, _) = freshet(&["topic", "delete", "orders"], data);
    assert!(ok);
    let (ok, _, err) = freshet(&["topic", "describe", "orders"], data);
    assert!(!ok && err.contains("unknown topic \"orders\""), "{err}");
}

pub(crate) fn freshet_stdin(args: &[&str], target: &Target, stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(args)
        .args(target)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn records_are_produced_and_consumed_with_or_without_a_group_in_a_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    records_are_produced_from_lines_or_json_and_consumed_with_or_without_a_group(&data_dir(&dir));
}

#[test]
fn records_are_produced_and_consumed_with_or_without_a_group_through_a_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir.path().join("data"));
    let target = ["--bootstrap".into(), broker.addr.clone()];
    records_are_produced_from_lines_or_json_and_consumed_with_or_without_a_group(&target);
    // A live member shows with its assignment.
    let member = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_freshet"))
            .args(["consume", "events", "--group", "live", "--follow"])
            .args(&target)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, out, _) = freshet(&["groups", "describe", "live"], &target);
        if out.contains("Stable") && out.contains("events-0") {
            assert!(out.contains("1 members"), "{out}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no live member: {out}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(member);
    broker.stop();
}

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn records_are_produced_from_lines_or_json_and_consumed_with_or_without_a_group(data: &Target) {
    freshet(&["topic", "create", "events"], data);
    let (ok, out, err) =
        freshet_stdin(&["produce", "events", "--key-separator", ":", "--header", "src=cli"], data, "a:one\nb:two\n");
    assert!(ok && out == "wrote 2 records to events\n", "{err}");
    let json = "{\"key\":\"j\",\"value\":\"v\",\"headers\":[[\"h\",\"1\"],[\"h\",\"2\"]],\"timestamp\":5}\n{\"key\":null,\"value\":null}\n";
    let (ok, _, err) = freshet_stdin(&["produce", "events", "--json"], data, json);
    assert!(ok, "{err}");
    let (ok, _, err) = freshet_stdin(&["produce", "events", "--key-separator", ":"], data, "no separator\n");
    assert!(!ok && err.contains("line 1: no key separator \":\" in \"no separator\""), "{err}");
    let (ok, _, err) = freshet_stdin(&["produce", "events", "--json"], data, "{not json\n");
    assert!(!ok && err.contains("line 1"), "{err}");

    let (_, out, _) = freshet(&["consume", "events"], data);
    assert_eq!(out, "0@0 \"a\" => \"one\"\n0@1 \"b\" => \"two\"\n0@2 \"j\" => \"v\"\n0@3 null => null\n");
    let (_, out, _) = freshet(&["consume", "events", "--from", "2", "--format", "json", "--max-records", "1"], data);
    let line: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(line["headers"], serde_json::json!([["h", "1"], ["h", "2"]]));
    assert_eq!((line["timestamp"].as_i64(), line["key"].as_str()), (Some(5), Some("j")));
    // A group resumes after what it printed.
    let (_, out, _) = freshet(&["consume", "events", "--group", "g", "--max-records", "1"], data);
    assert_eq!(out, "0@0 \"a\" => \"one\"\n");
    let (_, out, _) = freshet(&["consume", "events", "--group", "g"], data);
    assert_eq!(out.lines().count(), 3, "{out}");
    let (_, out, _) = freshet(&["consume", "events", "--group", "g"], data);
    assert_eq!(out, "");
    let (_, out, _) = freshet(&["consume", "events", "--group", "h", "--max-records", "3"], data);
    assert_eq!(out.lines().count(), 3);
    let (_, out, _) = freshet(&["groups", "list"], data);
    assert_eq!(out, "g\nh\n");
    let (_, out, _) = freshet(&["groups", "describe", "h"], data);
    assert!(out.contains("  events 0 3 4 1 \"\"\n"), "committed 3 of 4, lag 1: {out}");
    let (ok, _, err) = freshet(&["groups", "describe", "nobody"], data);
    assert!(!ok && err.contains("group \"nobody\" has no members and no committed offsets"), "{err}");
    let (ok, _, err) = freshet(&["consume", "events", "--from", "yesterday"], data);
    assert!(!ok && err.contains("--from \"yesterday\""), "{err}");
}
