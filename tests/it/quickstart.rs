//! The quickstart a new user runs first.

use std::process::Command;

#[test]
fn quickstart_produces_and_reads_back_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_freshet"))
            .args(["quickstart", "--events", "20000", "--partitions", "3", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    };
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "quickstart failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("20000 events acknowledged"), "{stdout}");
    assert!(stdout.contains("20000 events read back"), "{stdout}");
    assert!(stdout.contains("each exactly once"), "{stdout}");
    // 20000 events are 20 s of event time: one closed minute per tier, every purchase in it.
    for tier in ["gold", "silver", "bronze"] {
        let line = stdout.lines().find(|l| l.contains(&format!("{tier}:"))).unwrap_or_default();
        let expected = (0..20_000u64).filter(|i| i % 3 == 2 && freshet_tier(i % 1000) == tier).count();
        assert!(line.contains(&format!("{expected} purchases")), "{tier}: {line}\n{stdout}");
    }
    assert!(stdout.contains("3 window results in topic \"quickstart-revenue\""), "{stdout}");
    assert!(stdout.contains(" 0 late"), "{stdout}");
    // A second run finds the previous data, replaces the topic, and opens without repairs.
    let output = run();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("deleted the previous run's topic"), "{stdout}");
    assert!(!stdout.contains("repaired"), "a clean close needs no repair:\n{stdout}");
}

#[test]
fn a_bad_option_is_refused_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["quickstart", "--durability", "sometimes", "--data-dir", "/nonexistent/never-created"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--durability \"sometimes\": expected fsync, interval or none"), "{stderr}");
}

/// The quickstart's tiers: one user in ten gold, a third of the rest silver.
fn freshet_tier(user: u64) -> &'static str {
    if user.is_multiple_of(10) {
        "gold"
    } else if user.is_multiple_of(3) {
        "silver"
    } else {
        "bronze"
    }
}
