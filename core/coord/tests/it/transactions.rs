//! Transactions in the log and their coordinator: the last stable offset, `read_committed`
//! reads that stop there and list aborted transactions, fencing of old epochs, state rebuilt on
//! reopen (after a clean close and after a crash), and the coordinator's commit, abort, offsets,
//! fencing and timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::BytesMut;
use freshet_coord::group::{GroupOffsets, OffsetAndMetadata, TopicPartition};
use freshet_coord::transactions::{Refusal, Transactions, TxnPhase, TRANSACTIONAL_ID_EXPIRATION};
use freshet_log::batch::{BatchBuilder, Batches};
use freshet_log::clock::Clock as _;
use freshet_log::Error;
use freshet_log::{AbortedFilter, AbortedTxn, Isolation, Log, Marker, ReadLimit};

use crate::support;

fn txn_batch(producer: i64, epoch: i16, sequence: i32, values: &[&str]) -> BytesMut {
    let mut b = BatchBuilder::default().producer(producer, epoch, sequence).transactional();
    for v in values {
        b.push(None, Some(v.as_bytes()), &[], 1);
    }
    BytesMut::from(&b.finish()[..])
}

/// The values a `read_committed` consumer sees from offset 0, and the offset it stops at.
async fn committed_values(log: &Log, topic: &str) -> (Vec<String>, i64) {
    let fetched =
        log.read_isolated(topic, 0, 0, ReadLimit::AtLeastOne(1 << 20), Isolation::ReadCommitted).await.unwrap();
    let mut filter = AbortedFilter::new(fetched.aborted.clone());
    let mut values = Vec::new();
    for batch in Batches::new(&fetched.batches) {
        let batch = batch.unwrap();
        if filter.keep(&batch) {
            batch
                .for_each_record(|r| {
                    values.push(String::from_utf8_lossy(r.value.unwrap()).into_owned());
                    Ok(())
                })
                .unwrap();
        }
    }
    (values, fetched.last_stable_offset)
}

#[tokio::test]
async fn read_committed_stops_at_the_first_open_transaction_and_skips_aborted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    log.append("t", 0, support::values_batch("plain", 1, 1)).await.unwrap(); // 0
    log.append("t", 0, txn_batch(1, 0, 0, &["p1-a", "p1-b"])).await.unwrap(); // 1-2
    log.append("t", 0, txn_batch(2, 0, 0, &["p2-a"])).await.unwrap(); // 3
    log.append("t", 0, support::values_batch("plain", 1, 1)).await.unwrap(); // 4
    let (values, lso) = committed_values(&log, "t").await;
    assert_eq!((values, lso), (vec!["plain-0".to_string()], 1), "producer 1's open transaction holds the LSO");
    let all = log.read_isolated("t", 0, 0, ReadLimit::AtLeastOne(1 << 20), Isolation::ReadUncommitted).await.unwrap();
    assert_eq!(Batches::new(&all.batches).count(), 4, "read_uncommitted sees everything");

    log.append("t", 0, Marker::Abort.batch(1, 0, 0, 1)).await.unwrap(); // 5
    let (values, lso) = committed_values(&log, "t").await;
    assert_eq!(lso, 3, "producer 2 is still open");
    assert_eq!(values, ["plain-0"], "producer 1's records are aborted");
    log.append("t", 0, Marker::Commit.batch(2, 0, 0, 1)).await.unwrap(); // 6
    let (values, lso) = committed_values(&log, "t").await;
    assert_eq!(lso, 7);
    assert_eq!(values, ["plain-0", "p2-a", "plain-0"]);
    let fetched = log.read_isolated("t", 0, 0, ReadLimit::AtLeastOne(1 << 20), Isolation::ReadCommitted).await.unwrap();
    assert_eq!(fetched.aborted, [AbortedTxn { producer_id: 1, first_offset: 1, last_offset: 5 }]);

    // The state comes back after a clean close, and after a crash (no close).
    log.close().await.unwrap();
    drop(log);
    let log = support::open(dir.path()).await;
    log.append("t", 0, txn_batch(3, 0, 0, &["p3"])).await.unwrap(); // 7
    assert_eq!(committed_values(&log, "t").await, (vec!["plain-0".into(), "p2-a".into(), "plain-0".into()], 7));
    drop(log);
    let log = support::open(dir.path()).await;
    let (values, lso) = committed_values(&log, "t").await;
    assert_eq!(lso, 7, "the open transaction survived the crash");
    assert_eq!(values.len(), 3);
    let fetched = log.read_isolated("t", 0, 0, ReadLimit::AtLeastOne(1 << 20), Isolation::ReadCommitted).await.unwrap();
    assert_eq!(fetched.aborted, [AbortedTxn { producer_id: 1, first_offset: 1, last_offset: 5 }]);
}

#[tokio::test]
async fn a_fenced_epoch_and_malformed_markers_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    log.append("t", 0, txn_batch(9, 1, 0, &["a"])).await.unwrap();
    log.append("t", 0, Marker::Abort.batch(9, 2, 0, 1)).await.unwrap();
    let err = log.append("t", 0, txn_batch(9, 1, 1, &["zombie"])).await.unwrap_err();
    assert!(err.to_string().contains("producer 9 at epoch 1: epoch 2 took over"), "{err}");
    // A control batch whose record is not a marker.
    let mut bad = BatchBuilder::default().producer(9, 2, -1).control();
    bad.push(Some(&[0, 0, 0, 7]), Some(&[0; 6]), &[], 1);
    let err = log.append("t", 0, BytesMut::from(&bad.finish()[..])).await.unwrap_err();
    assert!(err.to_string().contains("control record type 7"), "{err}");
    assert_eq!(log.partition("t", 0).unwrap().offsets().2, 2, "nothing was written");
    log.append("t", 0, txn_batch(9, 2, 0, &["b"])).await.unwrap();
}

async fn coordinator(log: &Log) -> (Transactions, GroupOffsets) {
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let txns = Transactions::new(log.clone(), offsets.clone());
    txns.load().await.unwrap();
    (txns, offsets)
}

#[tokio::test]
async fn the_coordinator_commits_aborts_fences_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("out", 2, BTreeMap::new()).await.unwrap();
    let (txns, offsets) = coordinator(&log).await;
    let tp = |p| TopicPartition::new("out", p);
    let (pid, epoch) = txns.init_producer_id("app", Duration::from_secs(60)).await.unwrap();
    assert_eq!(epoch, 0);
    txns.add_partitions("app", pid, epoch, &[tp(0), tp(1)]).await.unwrap();
    log.append("out", 0, txn_batch(pid, epoch, 0, &["x"])).await.unwrap();
    txns.add_offsets("app", pid, epoch, "g").await.unwrap();
    let mut offset = OffsetAndMetadata::new(42);
    (offset.leader_epoch, offset.metadata) = (7, "m".into());
    let commit = BTreeMap::from([(TopicPartition::new("in", 0), offset)]);
    txns.commit_offsets("app", pid, epoch, "g", &commit).await.unwrap();
    assert_eq!(offsets.pending_offsets("g").len(), 1);
    assert!(offsets.fetch("g", None).is_empty(), "offsets wait for the commit");
    txns.end("app", pid, epoch, true).await.unwrap();
    let committed = &offsets.fetch("g", None)[&TopicPartition::new("in", 0)];
    assert_eq!((committed.offset, committed.leader_epoch, committed.metadata.as_str()), (42, 7, "m"));
    assert!(offsets.pending_offsets("g").is_empty());
    assert_eq!(committed_values(&log, "out").await, (vec!["x".to_string()], 2), "data and marker");
    assert_eq!(log.partition("out", 1).unwrap().offsets().2, 1, "a marker in every partition of the transaction");

    // Bad requests are refused with what was wrong.
    txns.end("app", pid, epoch, true).await.expect("a retried commit is answered as the first was");
    let err = txns.end("app", pid, epoch, false).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::InvalidState, "{err}");
    let err = txns.add_partitions("app", pid, epoch, &[TopicPartition::new("nope", 0)]).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::UnknownPartition, "{err}");
    let err = txns.add_partitions("app", pid + 1, epoch, &[tp(0)]).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::UnknownProducer, "{err}");
    let err = txns.init_producer_id("app", Duration::from_secs(3600)).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::InvalidTimeout, "{err}");

    // A new incarnation aborts the open transaction and fences the old epoch.
    txns.add_partitions("app", pid, epoch, &[tp(0)]).await.unwrap();
    log.append("out", 0, txn_batch(pid, epoch, 1, &["lost"])).await.unwrap();
    let (pid2, epoch2) = txns.init_producer_id("app", Duration::from_secs(60)).await.unwrap();
    assert_eq!((pid2, epoch2), (pid, 2), "one bump to abort, one for the new incarnation");
    let err = txns.add_partitions("app", pid, epoch, &[tp(0)]).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::Fenced, "{err}");
    let err = log.append("out", 0, txn_batch(pid, epoch, 2, &["zombie"])).await.unwrap_err();
    assert!(matches!(err, Error::ProducerFenced(_)), "{err}");
    assert_eq!(committed_values(&log, "out").await.0, ["x"]);

    // A transaction open past its timeout is aborted.
    let (pid3, e3) = txns.init_producer_id("slow", Duration::from_millis(100)).await.unwrap();
    txns.add_partitions("slow", pid3, e3, &[tp(1)]).await.unwrap();
    log.append("out", 1, txn_batch(pid3, e3, 0, &["slow"])).await.unwrap();
    assert_eq!(txns.abort_expired(freshet_now() + 1_000).await.unwrap(), 1);
    let err = txns.end("slow", pid3, e3, true).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::Fenced, "{err}");
    let fetched =
        log.read_isolated("out", 1, 0, ReadLimit::AtLeastOne(1 << 20), Isolation::ReadCommitted).await.unwrap();
    assert_eq!(fetched.last_stable_offset, log.partition("out", 1).unwrap().offsets().2);
    assert_eq!(fetched.aborted.len(), 1);
}

fn freshet_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test]
async fn a_decided_transaction_is_completed_by_the_next_coordinator_and_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("out", 1, BTreeMap::new()).await.unwrap();
    let (txns, _) = coordinator(&log).await;
    let (pid, epoch) = txns.init_producer_id("app", Duration::from_secs(60)).await.unwrap();
    txns.add_partitions("app", pid, epoch, &[TopicPartition::new("out", 0)]).await.unwrap();
    log.append("out", 0, txn_batch(pid, epoch, 0, &["kept"])).await.unwrap();
    // The commit decision is stored, then the coordinator dies before writing any marker. Its
    // offset is in the earlier form, an array without a leader epoch.
    let decided = serde_json::json!({
        "producer_id": pid, "producer_epoch": epoch, "timeout_ms": 60000, "phase": "PrepareCommit",
        "partitions": [["out", 0]], "offsets": {"g": [["in", 0, 42, "m"]]}, "started_ms": 0,
    });
    let mut b = BatchBuilder::default();
    b.push(Some(b"app"), Some(decided.to_string().as_bytes()), &[], 1);
    log.append("__transaction_state", 0, BytesMut::from(&b.finish()[..])).await.unwrap();
    drop(txns);
    assert_eq!(committed_values(&log, "out").await.1, 0, "undecided for readers until the marker");
    log.close().await.unwrap();
    drop(log);

    let log = support::open(dir.path()).await;
    let (txns, offsets) = coordinator(&log).await;
    assert_eq!(committed_values(&log, "out").await, (vec!["kept".to_string()], 2), "the commit was completed");
    let committed = &offsets.fetch("g", None)[&TopicPartition::new("in", 0)];
    assert_eq!((committed.offset, committed.leader_epoch, committed.metadata.as_str()), (42, -1, "m"));
    let described = txns.describe().await;
    assert_eq!((described[0].producer_id, described[0].phase), (pid, TxnPhase::CompleteCommit));
    let (pid2, epoch2) = txns.init_producer_id("app", Duration::from_secs(60)).await.unwrap();
    assert_eq!((pid2, epoch2), (pid, epoch + 1), "the producer id and epoch survived");
}

/// A transaction's offsets wait in `__consumer_offsets` as the producer's transactional batch:
/// its marker there makes them the group's or drops them, a reopened store replays the same, and
/// a fenced epoch cannot add offsets.
#[tokio::test]
async fn transactional_offsets_wait_in_the_offsets_topic_for_their_marker_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    let (txns, offsets) = coordinator(&log).await;
    let tp = |p| TopicPartition::new("in", p);
    let at = |o| BTreeMap::from([(tp(0), OffsetAndMetadata::new(o))]);
    let (pid, epoch) = txns.init_producer_id("app", Duration::from_secs(60)).await.unwrap();
    txns.add_offsets("app", pid, epoch, "committed").await.unwrap();
    txns.commit_offsets("app", pid, epoch, "committed", &at(10)).await.unwrap();
    txns.end("app", pid, epoch, true).await.unwrap();
    txns.add_offsets("app", pid, epoch, "aborted").await.unwrap();
    txns.commit_offsets("app", pid, epoch, "aborted", &at(20)).await.unwrap();
    txns.end("app", pid, epoch, false).await.unwrap();
    // Offsets of a producer with no marker yet, written straight to the group's partition.
    offsets.commit_transactional("open", pid + 1, 0, &at(30)).await.unwrap();
    let err = txns.commit_offsets("app", pid, epoch, "never-added", &at(1)).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::InvalidState, "{err}");
    let state = |o: &GroupOffsets| {
        (
            o.fetch("committed", None).get(&tp(0)).map(|c| c.offset),
            o.fetch("aborted", None).len(),
            o.pending_offsets("open"),
        )
    };
    let expected = (Some(10), 0, [tp(0)].into_iter().collect());
    assert_eq!(state(&offsets), expected);

    // A new incarnation fences the old epoch's offsets at the coordinator; at the partition once
    // the new epoch has written there (here, a marker of its transaction).
    let (_, epoch2) = txns.init_producer_id("app", Duration::from_secs(60)).await.unwrap();
    let err = txns.commit_offsets("app", pid, epoch, "committed", &at(99)).await.unwrap_err();
    assert_eq!(err.refusal, Refusal::Fenced, "{err}");
    txns.add_offsets("app", pid, epoch2, "committed").await.unwrap();
    txns.end("app", pid, epoch2, false).await.unwrap();
    let err = offsets.commit_transactional("committed", pid, epoch, &at(99)).await.unwrap_err();
    assert!(matches!(err, Error::ProducerFenced(_)), "{err}");

    log.close().await.unwrap();
    drop((txns, offsets, log));
    let log = support::open(dir.path()).await;
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    assert_eq!(state(&offsets), expected, "the same after replaying the topic");
    offsets.complete_transaction(0, pid + 1, true);
    assert_eq!(offsets.fetch("open", None)[&tp(0)].offset, 30);
    assert!(offsets.pending_offsets("open").is_empty());
}

/// The coordinators read time from the log's clock, never the system's: a simulation that sets
/// the clock decides commit timestamps and transaction timeouts.
#[tokio::test]
async fn the_coordinators_keep_time_by_the_logs_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = support::manual_clock_config();
    let log = Log::open(dir.path(), config).await.unwrap();
    log.create_topic("out", 1, BTreeMap::new()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let tp = TopicPartition::new("out", 0);
    offsets.commit("g", &BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(5))])).await.unwrap();
    assert_eq!(offsets.fetch("g", None)[&tp].commit_timestamp, 1_000_000, "stamped by the log's clock");

    let txns = Transactions::new(log.clone(), offsets);
    let (pid, epoch) = txns.init_producer_id("t", Duration::from_secs(60)).await.unwrap();
    txns.add_partitions("t", pid, epoch, std::slice::from_ref(&tp)).await.unwrap();
    clock.advance_ms(59_000);
    assert_eq!(txns.abort_expired(clock.now_ms()).await.unwrap(), 0, "59 s of a 60 s timeout");
    clock.advance_ms(2_000);
    assert_eq!(txns.abort_expired(clock.now_ms()).await.unwrap(), 1, "61 s of a 60 s timeout");
}

/// An idle transactional id is forgotten after `transactional.id.expiration.ms`, durably; one with
/// a transaction open is not.
#[tokio::test]
async fn idle_transactional_ids_expire_and_stay_forgotten_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = support::manual_clock_config();
    let log = Log::open(dir.path(), config.clone()).await.unwrap();
    log.create_topic("out", 1, BTreeMap::new()).await.unwrap();
    let (txns, _offsets) = coordinator(&log).await;
    let tp = TopicPartition::new("out", 0);
    let (idle_pid, _) = txns.init_producer_id("idle", Duration::from_secs(60)).await.unwrap();
    let (busy_pid, busy_epoch) = txns.init_producer_id("busy", Duration::from_secs(900)).await.unwrap();
    txns.add_partitions("busy", busy_pid, busy_epoch, std::slice::from_ref(&tp)).await.unwrap();
    let day = 24 * 3600 * 1000;
    clock.advance_ms(7 * day - 1_000);
    assert_eq!(txns.expire_ids(clock.now_ms(), TRANSACTIONAL_ID_EXPIRATION).await.unwrap(), 0);
    clock.advance_ms(2_000);
    assert_eq!(txns.expire_ids(clock.now_ms(), TRANSACTIONAL_ID_EXPIRATION).await.unwrap(), 1);
    let ids: Vec<String> = txns.describe().await.into_iter().map(|d| d.transactional_id).collect();
    assert_eq!(ids, ["busy"], "an open transaction keeps its id (its timeout aborts it first)");

    log.close().await.unwrap();
    drop((txns, _offsets, log));
    let log = Log::open(dir.path(), config).await.unwrap();
    let (txns, _offsets) = coordinator(&log).await;
    let ids: Vec<String> = txns.describe().await.into_iter().map(|d| d.transactional_id).collect();
    assert_eq!(ids, ["busy"], "the tombstone keeps it forgotten");
    let (pid, epoch) = txns.init_producer_id("idle", Duration::from_secs(60)).await.unwrap();
    assert_eq!(epoch, 0, "an expired id starts anew");
    assert_ne!(pid, idle_pid);
}
