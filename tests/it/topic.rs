//! `freshet topic`: topic administration of a data directory, with clear errors.

use std::process::Command;

fn freshet(args: &[&str], data: &std::path::Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_freshet")).args(args).arg("--data-dir").arg(data).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn topics_are_created_listed_described_altered_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, out, err) =
        freshet(&["topic", "create", "orders", "--partitions", "3", "--config", "retention.ms=3600000"], &data);
    assert!(ok, "{err}");
    assert_eq!(out, "created topic orders with 3 partitions\n");
    let (ok, _, err) = freshet(&["topic", "create", "orders"], &data);
    assert!(!ok && err.contains("topic \"orders\" already exists"), "{err}");
    let (ok, _, err) = freshet(&["topic", "create", "bad name"], &data);
    assert!(!ok && err.contains("invalid topic name \"bad name\""), "{err}");
    let (ok, _, err) = freshet(&["topic", "create", "x", "--config", "nonsense"], &data);
    assert!(!ok && err.contains("--config \"nonsense\": expected key=value"), "{err}");
    let (_, out, _) = freshet(&["topic", "list"], &data);
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
        &data,
    );
    assert!(ok, "{err}");
    let (_, out, _) = freshet(&["topic", "describe", "orders"], &data);
    assert!(out.contains(", 4 partitions") && out.contains("partition 3: offsets 0..0"), "{out}");
    assert!(out.contains("  segment.ms = 600000\n") && out.contains("  retention.ms = 604800000 (default)\n"), "{out}");
    let (ok, _, err) = freshet(&["topic", "alter", "orders", "--partitions", "2"], &data);
    assert!(!ok && err.contains("can only grow"), "{err}");

    let (ok, _, _) = freshet(&["topic", "delete", "orders"], &data);
    assert!(ok);
    let (ok, _, err) = freshet(&["topic", "describe", "orders"], &data);
    assert!(!ok && err.contains("unknown topic \"orders\""), "{err}");
}
