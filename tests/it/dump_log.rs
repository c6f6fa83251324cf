//! `freshet dump-log`: what a user reaches for when a segment looks wrong.

use std::process::Command;

fn freshet(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_freshet")).args(args).output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dump_log_prints_batches_and_records_and_names_damage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, _, stderr) =
        freshet(&["quickstart", "--events", "3000", "--partitions", "1", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let segment = data.join("topics/quickstart-events/0/00000000000000000000.log");
    let (ok, stdout, stderr) = freshet(&["dump-log", "--records", segment.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("Dumping "), "{stdout}");
    // Two producer calls of 2000 and 1000 events, in whichever order they landed, then the three
    // closing purchases of the quickstart's streams part.
    assert!(stdout.contains("baseOffset: 0 ") && stdout.contains("count: 2000") && stdout.contains("count: 1000"));
    assert!(stdout.contains("| offset: 2999 "), "every record is printed");
    assert!(stdout.contains("crc: valid") && !stdout.contains("INVALID"));
    assert!(stdout.trim_end().ends_with("3 batches, 3003 records"), "{}", &stdout[stdout.len().saturating_sub(200)..]);

    // Flip a byte inside the last batch: its CRC no longer matches.
    let mut bytes = std::fs::read(&segment).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    let damaged = dir.path().join("damaged.log");
    std::fs::write(&damaged, &bytes).unwrap();
    let (ok, stdout, _) = freshet(&["dump-log", damaged.to_str().unwrap()]);
    assert!(ok);
    assert!(stdout.contains("crc: INVALID (invalid record batch: CRC-32C mismatch"), "{stdout}");

    // A cut file: the trailing partial batch is named.
    std::fs::write(&damaged, &bytes[..bytes.len() - 100]).unwrap();
    let (_, stdout, _) = freshet(&["dump-log", damaged.to_str().unwrap()]);
    assert!(stdout.contains("trailing bytes at position"), "{stdout}");

    let (ok, _, stderr) = freshet(&["dump-log", "/nonexistent/segment.log"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "error: reading /nonexistent/segment.log: No such file or directory (os error 2)");
}
