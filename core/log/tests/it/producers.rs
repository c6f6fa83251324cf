//! Producer state kept by the partition: retries recognized across clean and unclean restarts,
//! rebuilt from snapshots rather than from the start of the log, and bounded in time.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use freshet_log::batch::BatchBuilder;
use freshet_log::clock::Clock;
use freshet_log::config::Durability;
use freshet_log::{Error, Log, Marker, ProducerInfo};

use crate::support::{self, configs};

/// A batch of `n` records from producer `pid` at `epoch`, from sequence `seq`.
fn idempotent(pid: i64, epoch: i16, seq: i32, n: usize) -> BytesMut {
    let mut b = BatchBuilder::with_capacity(256).producer(pid, epoch, seq);
    for i in 0..n {
        b.push(Some(b"k"), Some(format!("{pid}-{seq}-{i}-{}", "x".repeat(40)).as_bytes()), &[], 1_000);
    }
    BytesMut::from(&b.finish()[..])
}

fn transactional(pid: i64, epoch: i16, seq: i32) -> BytesMut {
    let mut b = BatchBuilder::with_capacity(256).producer(pid, epoch, seq).transactional();
    b.push(Some(b"k"), Some(b"in a transaction"), &[], 1_000);
    BytesMut::from(&b.finish()[..])
}

fn snapshots(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    all.sort();
    all
}

fn report_of(log: &Log) -> freshet_log::RecoveryReport {
    log.recovery_reports().into_iter().find(|r| r.topic == "t").unwrap()
}

/// Writes three producers' batches (one of them transactional, its transaction left open) into a
/// topic whose segments roll every few batches. Returns the state the partition holds and the
/// number of producer batches written.
async fn write_producers(log: &Log) -> (Vec<ProducerInfo>, usize) {
    log.create_topic("t", 1, configs(&[("segment.bytes", "1024")])).await.unwrap();
    let mut n = 0;
    for round in 0..12 {
        for pid in [10, 11] {
            log.append("t", 0, idempotent(pid, 0, round * 2, 2)).await.unwrap();
            n += 1;
        }
    }
    log.append("t", 0, transactional(12, 3, 0)).await.unwrap();
    log.append("t", 0, Marker::Abort.batch(12, 3, 0, 1_000)).await.unwrap();
    log.append("t", 0, transactional(12, 3, 1)).await.unwrap();
    n += 3;
    (log.partition("t", 0).unwrap().producers(), n)
}

#[tokio::test]
async fn producer_state_survives_restarts_and_is_read_from_snapshots_not_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    let (before, n_batches) = write_producers(&log).await;
    assert_eq!(before.iter().map(|p| p.producer_id).collect::<Vec<_>>(), [10, 11, 12]);
    assert_eq!((before[0].epoch, before[0].last_sequence), (0, 23));
    assert_eq!(before[2].current_txn_start_offset, Some(log.partition("t", 0).unwrap().offsets().2 - 1));
    let pdir = log.partition("t", 0).unwrap().dir().to_owned();
    let leo = log.partition("t", 0).unwrap().offsets().2;

    // A clean restart reads the snapshot taken at close: nothing is replayed.
    log.close().await.unwrap();
    drop(log);
    assert!(snapshots(&pdir).len() >= 2, "{:?}", snapshots(&pdir));
    let log = support::open(dir.path()).await;
    assert_eq!(report_of(&log).producer_batches_replayed, 0);
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.producers(), before);
    assert_eq!(log.last_stable_offset("t", 0).unwrap(), before[2].current_txn_start_offset.unwrap());
    let retry = log.append("t", 0, idempotent(10, 0, 22, 2)).await.unwrap();
    assert_eq!(p.offsets().2, leo, "a retry after a restart is not stored again");
    assert!(retry.last_offset < leo);

    // After a crash, only the batches after the latest segment's snapshot are replayed.
    log.append("t", 0, idempotent(10, 0, 24, 2)).await.unwrap();
    let before = p.producers();
    drop(p);
    drop(log);
    let log = support::open(dir.path()).await;
    let replayed = report_of(&log).producer_batches_replayed;
    assert!(replayed > 0 && replayed < n_batches, "{replayed} of {n_batches} batches replayed");
    assert_eq!(log.partition("t", 0).unwrap().producers(), before);

    // Damaged snapshots are set aside and the state rebuilt from the log itself.
    drop(log);
    for path in snapshots(&pdir) {
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"\xff", 20).unwrap();
    }
    let log = support::open(dir.path()).await;
    assert_eq!(report_of(&log).producer_batches_replayed, n_batches + 1);
    assert_eq!(log.partition("t", 0).unwrap().producers(), before);
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_snapshot_past_a_log_cut_by_a_crash_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 1, configs(&[])).await.unwrap();
    for seq in 0..4 {
        log.append("t", 0, idempotent(5, 0, seq, 1)).await.unwrap();
    }
    let segment = log.partition("t", 0).unwrap().dir().join(format!("{:020}.log", 0));
    log.close().await.unwrap();
    drop(log);
    // A crash that kept only the first two batches (the close's snapshot, at offset 4, survived).
    let bytes = std::fs::read(&segment).unwrap();
    let two: usize = freshet_log::batch::Batches::new(&bytes).take(2).map(|b| b.unwrap().size()).sum();
    std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(two as u64).unwrap();
    std::fs::remove_file(dir.path().join(".clean-shutdown")).unwrap();
    let log = support::open(dir.path()).await;
    let p = log.partition("t", 0).unwrap();
    assert_eq!(p.offsets().2, 2);
    assert_eq!(p.producers()[0].last_sequence, 1, "the state of the log that survived, not the snapshot's");
    assert!(snapshots(p.dir()).iter().all(|s| !s.ends_with(format!("{:020}.snapshot", 4))));
    // Sequence 2 was lost with the tail: it is appended again, at offset 2.
    assert_eq!(log.append("t", 0, idempotent(5, 0, 2, 1)).await.unwrap().base_offset, 2);
    log.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_queued_behind_its_original_is_answered_with_the_original_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), support::config(Durability::Fsync)).await.unwrap();
    log.create_topic("t", 1, configs(&[])).await.unwrap();
    let appends = (0..8).map(|_| log.append("t", 0, idempotent(3, 0, 0, 4)));
    let infos: Vec<_> = futures::future::join_all(appends).await.into_iter().map(Result::unwrap).collect();
    assert!(infos.iter().all(|i| (i.base_offset, i.last_offset) == (0, 3)), "{infos:?}");
    assert_eq!(log.partition("t", 0).unwrap().offsets().2, 4);
    // A gap and an old epoch are refused with Kafka's errors, and nothing is stored.
    let gap = log.append("t", 0, idempotent(3, 0, 7, 1)).await.unwrap_err();
    assert!(matches!(&gap, Error::OutOfOrderSequence(m) if m.contains("sequence 7 where 4 was expected")), "{gap}");
    log.append("t", 0, idempotent(3, 1, 0, 1)).await.unwrap();
    let old = log.append("t", 0, idempotent(3, 0, 4, 1)).await.unwrap_err();
    assert!(matches!(old, Error::InvalidProducerEpoch(_)), "{old}");
    assert_eq!(log.partition("t", 0).unwrap().offsets().2, 5);
    log.close().await.unwrap();
}

#[tokio::test]
async fn idle_producers_expire_after_producer_id_expiration_ms_unless_a_transaction_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = freshet_log::clock::ManualClock::new(1_000);
    let config = freshet_log::config::LogConfig {
        clock: clock.clone(),
        producer_id_expiration_ms: 60_000,
        ..support::config(Durability::Fsync)
    };
    let log = Log::open(dir.path(), config).await.unwrap();
    log.create_topic("t", 1, configs(&[])).await.unwrap();
    log.append("t", 0, idempotent(1, 0, 0, 1)).await.unwrap();
    log.append("t", 0, transactional(2, 0, 0)).await.unwrap();
    clock.advance_ms(59_000);
    log.run_maintenance(clock.now_ms()).await.unwrap();
    assert_eq!(log.partition("t", 0).unwrap().n_producers(), 2);
    clock.advance_ms(2_000);
    log.run_maintenance(clock.now_ms()).await.unwrap();
    let left = log.partition("t", 0).unwrap().producers();
    assert_eq!(left.iter().map(|p| p.producer_id).collect::<Vec<_>>(), [2], "an open transaction keeps its producer");
    // The expired producer is unknown now: any sequence is taken, as in Kafka.
    log.append("t", 0, idempotent(1, 0, 40, 1)).await.unwrap();
    log.close().await.unwrap();
}
