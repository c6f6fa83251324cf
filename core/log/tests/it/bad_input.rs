//! Bad input is refused with an error that names the problem, and changes nothing.

use bytes::BytesMut;

use crate::support::{self, configs, read_all, values_batch};

fn check_rejected(error: freshet_log::Error, expected: &str) {
    let message = error.to_string();
    assert!(message.contains(expected), "error {message:?} should mention {expected:?}");
}

#[tokio::test]
async fn corrupt_truncated_and_oversized_batches_are_refused_and_leave_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[("max.message.bytes", "2000")])).await.unwrap();
    log.append("t", 0, values_batch("good", 2, 1)).await.unwrap();

    let good = values_batch("x", 3, 1);
    let mut cases: Vec<(BytesMut, &str)> = Vec::new();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    cases.push((flipped, "CRC-32C mismatch"));
    let mut magic = good.clone();
    magic[16] = 1;
    cases.push((magic, "magic byte is 1"));
    cases.push((BytesMut::from(&good[..good.len() - 1]), "only 70"));
    cases.push((BytesMut::from(&good[..30]), "shorter than the 61-byte batch header"));
    let mut long = good.clone();
    long.extend_from_slice(&[0u8; 5]);
    cases.push((long, "append one batch at a time"));
    let mut short_len = good.clone();
    short_len[8..12].copy_from_slice(&10i32.to_be_bytes());
    cases.push((short_len, "smaller than the 49 bytes of a v2 header"));
    cases.push((values_batch("big", 200, 1), "exceeds max.message.bytes = 2000"));
    let mut count = good.clone();
    count[57..61].copy_from_slice(&4i32.to_be_bytes());
    let crc = crc32c::crc32c(&count[21..]);
    count[17..21].copy_from_slice(&crc.to_be_bytes());
    cases.push((count, "last offset delta is 2 but the batch declares 4 records"));

    for (bytes, expected) in cases {
        // The truncated case's exact length depends on the encoding; match on the stable part.
        let expected = if expected == "only 70" { "but only" } else { expected };
        check_rejected(log.append("t", 0, bytes).await.unwrap_err(), expected);
    }
    assert_eq!(read_all(&log, "t", 0).await.len(), 2, "nothing but the good batch is in the log");
    let next = log.append("t", 0, values_batch("after", 1, 1)).await.unwrap();
    assert_eq!(next.base_offset, 2, "rejected batches took no offsets");
}

#[tokio::test]
async fn unknown_topics_partitions_and_offsets_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("orders", 3, Default::default()).await.unwrap();
    let e = log.append("nope", 0, values_batch("v", 1, 1)).await.unwrap_err();
    assert_eq!(e.to_string(), "unknown topic \"nope\"");
    let e = log.append("orders", 7, values_batch("v", 1, 1)).await.unwrap_err();
    assert_eq!(e.to_string(), "topic \"orders\" has 3 partitions, but partition 7 was requested");
    let e = log.read("orders", 0, 5, 100).await.unwrap_err();
    assert_eq!(e.to_string(), "offset 5 is out of range for orders-0: the log holds [0, 0)");
    let e = log.read("orders", 0, -1, 100).await.unwrap_err();
    assert!(e.to_string().starts_with("offset -1 is out of range"), "{e}");
}

#[tokio::test]
async fn bad_topic_names_and_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    for (name, reason) in [
        ("", "cannot be empty"),
        ("..", "are not allowed"),
        ("a/b", "character '/' is not allowed"),
        ("spaced name", "character ' ' is not allowed"),
    ] {
        check_rejected(log.create_topic(name, 1, Default::default()).await.unwrap_err(), reason);
    }
    check_rejected(log.create_topic(&"x".repeat(250), 1, Default::default()).await.unwrap_err(), "longer than 249");
    check_rejected(log.create_topic("t", 0, Default::default()).await.unwrap_err(), "at least one partition");
    check_rejected(
        log.create_topic("t", 1, configs(&[("retention.ms", "forever")])).await.unwrap_err(),
        "invalid config retention.ms=\"forever\": not an integer",
    );
    check_rejected(log.create_topic("t", 1, configs(&[("colour", "blue")])).await.unwrap_err(), "unknown topic config");
    assert!(log.list_topics().is_empty(), "no rejected topic was created");
    log.create_topic("t", 1, Default::default()).await.unwrap();
    check_rejected(log.create_topic("t", 1, Default::default()).await.unwrap_err(), "topic \"t\" already exists");
    check_rejected(
        log.alter_topic_config("t", [("cleanup.policy".to_string(), Some("sometimes".to_string()))].into())
            .await
            .unwrap_err(),
        "cleanup.policy",
    );
    assert!(log.describe_configs("t").unwrap().iter().all(|e| e.is_default), "a refused change changes nothing");
}

#[tokio::test]
async fn compacted_topics_refuse_records_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("c", 1, configs(&[("cleanup.policy", "compact")])).await.unwrap();
    check_rejected(log.append("c", 0, values_batch("v", 1, 1)).await.unwrap_err(), "every record needs a key");
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _log = support::open(dir.path()).await;
    let e =
        freshet_log::Log::open(dir.path(), support::config(freshet_log::config::Durability::Fsync)).await.unwrap_err();
    assert!(e.to_string().contains("another process has this data directory open"), "{e}");
}
