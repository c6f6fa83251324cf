//! A partition's side of replication: a follower's copy holds the leader's batches byte for
//! byte (offsets, leader epochs, producer state), truncates where it diverged, answers where an
//! epoch ended, and exposes no more than its bound on the high watermark allows.

use bytes::{Bytes, BytesMut};
use freshet_log::batch::{BatchBuilder, Batches};
use freshet_log::config::Durability;
use freshet_log::{Error, Log, Marker, ReadLimit};

use crate::support::{self, configs};

async fn pair(dir: &std::path::Path) -> (Log, Log) {
    let leader = Log::open(dir.join("leader"), support::config(Durability::OsCache)).await.unwrap();
    let follower = Log::open(dir.join("follower"), support::config(Durability::Fsync)).await.unwrap();
    for log in [&leader, &follower] {
        log.create_topic("t", 1, configs(&[("segment.bytes", "2048")])).await.unwrap();
    }
    follower.partition("t", 0).unwrap().set_follower(true);
    (leader, follower)
}

/// Copies what the leader holds past the follower's log end, as a follower's fetches would.
async fn replicate(leader: &Log, follower: &Log) -> i64 {
    loop {
        let leo = follower.partition("t", 0).unwrap().offsets().2;
        let fetched = leader.read_replica("t", 0, leo, ReadLimit::AtLeastOne(4096)).await.unwrap();
        if fetched.batches.is_empty() {
            return leo;
        }
        follower.append_replicated("t", 0, fetched.batches).await.unwrap();
    }
}

fn idempotent(pid: i64, seq: i32, n: usize) -> BytesMut {
    let mut b = BatchBuilder::with_capacity(256).producer(pid, 0, seq);
    for i in 0..n {
        b.push(Some(b"k"), Some(format!("{pid}-{seq}-{i}-{}", "x".repeat(60)).as_bytes()), &[], 1_000);
    }
    BytesMut::from(&b.finish()[..])
}

/// Every stored batch's bytes, from the log start to the log end.
async fn stored(log: &Log) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut position = log.partition("t", 0).unwrap().offsets().0;
    loop {
        let fetched = log.read_replica("t", 0, position, ReadLimit::AtLeastOne(4096)).await.unwrap();
        if fetched.batches.is_empty() {
            return out;
        }
        for batch in Batches::new(&fetched.batches) {
            let batch = batch.unwrap();
            position = batch.next_offset();
            out.push(Bytes::copy_from_slice(batch.as_bytes()));
        }
    }
}

#[tokio::test]
async fn a_follower_holds_the_leaders_batches_as_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = pair(dir.path()).await;
    let lp = leader.partition("t", 0).unwrap();
    for seq in 0..10 {
        leader.append("t", 0, idempotent(7, seq * 3, 3)).await.unwrap();
        if seq == 4 {
            lp.bump_leader_epoch(3).unwrap();
        }
    }
    leader.append("t", 0, Marker::Commit.batch(7, 0, 3, 1_000)).await.unwrap();
    let leo = replicate(&leader, &follower).await;
    assert_eq!(leo, lp.offsets().2);
    assert_eq!(stored(&leader).await, stored(&follower).await, "the same bytes at the same offsets");
    let fp = follower.partition("t", 0).unwrap();
    assert_eq!(fp.leader_epochs(), vec![(0, 0), (3, 15)], "the follower learned epoch 3 where it began");
    assert_eq!(fp.producers(), lp.producers(), "producer state rebuilt from what was replicated");
    // A follower's copy takes no appends; once it leads, a retry of a replicated batch is
    // recognized.
    let err = follower.append("t", 0, idempotent(7, 27, 3)).await.unwrap_err();
    assert!(matches!(err, Error::NotLeader { .. }), "{err}");
    fp.set_follower(false);
    let retry = follower.append("t", 0, idempotent(7, 27, 3)).await.unwrap();
    assert_eq!(retry.base_offset, 27, "a duplicate is answered with its stored offsets");
    assert_eq!(fp.offsets().2, leo, "and not stored again");
    // A batch that does not start at the follower's log end is refused and changes nothing.
    fp.set_follower(true);
    let gap = leader.read_replica("t", 0, 3, ReadLimit::AtLeastOne(1)).await.unwrap();
    let err = follower.append_replicated("t", 0, gap.batches).await.unwrap_err();
    assert!(matches!(err, Error::InvalidBatch(ref m) if m.contains("starts at offset 3")), "{err}");
    assert_eq!(fp.offsets().2, leo);
}

#[tokio::test]
async fn a_diverged_follower_truncates_to_where_the_epochs_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = pair(dir.path()).await;
    for seq in 0..4 {
        leader.append("t", 0, idempotent(1, seq * 2, 2)).await.unwrap();
    }
    replicate(&leader, &follower).await;
    // The follower led epoch 1 for a while and wrote what nobody else has.
    let fp = follower.partition("t", 0).unwrap();
    fp.set_follower(false);
    fp.bump_leader_epoch(1).unwrap();
    for seq in 0..3 {
        follower.append("t", 0, idempotent(2, seq * 2, 2)).await.unwrap();
    }
    // Meanwhile the old leader went on in epoch 2.
    let lp = leader.partition("t", 0).unwrap();
    lp.bump_leader_epoch(2).unwrap();
    leader.append("t", 0, idempotent(3, 0, 5)).await.unwrap();
    assert_eq!(fp.latest_epoch(), 1);
    fp.set_follower(true);
    // The leader says where epoch 1 ended in its log: it never had epoch 1, so epoch 0 ends at 8.
    assert_eq!(lp.end_offset_for_epoch(1), (0, 8));
    assert_eq!(lp.end_offset_for_epoch(2), (2, 13));
    assert_eq!(lp.end_offset_for_epoch(5), (-1, -1));
    let (epoch, end) = lp.end_offset_for_epoch(fp.latest_epoch());
    let local = fp.end_offset_for_epoch(epoch);
    let to = end.min(local.1);
    assert_eq!(follower.truncate_replica("t", 0, to).await.unwrap(), 8);
    assert_eq!(fp.leader_epochs(), vec![(0, 0)], "epoch 1 began past the cut");
    assert_eq!(fp.producers().iter().map(|p| p.producer_id).collect::<Vec<_>>(), vec![1], "producer 2's batches went");
    replicate(&leader, &follower).await;
    assert_eq!(stored(&leader).await, stored(&follower).await);
    assert_eq!(fp.leader_epochs(), vec![(0, 0), (2, 8)]);
    // Truncation survives a reopen (the copy is recovered, not replayed from memory).
    drop(fp);
    follower.close().await.unwrap();
    drop(follower);
    let follower = Log::open(dir.path().join("follower"), support::config(Durability::Fsync)).await.unwrap();
    assert_eq!(stored(&leader).await, stored(&follower).await);
}

#[tokio::test]
async fn a_follower_far_behind_the_leaders_log_start_starts_again_there() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = pair(dir.path()).await;
    follower.partition("t", 0).unwrap().set_follower(false);
    follower.append("t", 0, idempotent(9, 0, 2)).await.unwrap();
    follower.partition("t", 0).unwrap().set_follower(true);
    for seq in 0..40 {
        leader.append("t", 0, idempotent(1, seq * 2, 2)).await.unwrap();
    }
    let start = leader.delete_records("t", 0, 50).await.unwrap();
    assert_eq!(start, 50);
    follower.restart_replica("t", 0, start).await.unwrap();
    let fp = follower.partition("t", 0).unwrap();
    assert_eq!(fp.offsets(), (50, 50, 50));
    replicate(&leader, &follower).await;
    assert_eq!(stored(&leader).await, stored(&follower).await);
}

#[tokio::test]
async fn the_high_watermark_waits_for_the_in_sync_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = pair(dir.path()).await;
    let lp = leader.partition("t", 0).unwrap();
    // Two followers in sync, at offsets 0: nothing is visible past 0 however much is written.
    leader.bound_high_watermark("t", 0, Some(0), false).unwrap();
    for seq in 0..5 {
        leader.append("t", 0, idempotent(1, seq * 2, 2)).await.unwrap();
    }
    assert_eq!(lp.offsets(), (0, 0, 10));
    assert!(leader.read("t", 0, 0, 4096).await.unwrap().batches.is_empty(), "readers see nothing past it");
    // The slower follower reaches 6: the high watermark follows, on a batch boundary.
    assert_eq!(leader.bound_high_watermark("t", 0, Some(6), false).unwrap(), 6);
    let visible: i64 = support::read_all(&leader, "t", 0).await.len() as i64;
    assert_eq!(visible, 6);
    // A follower the leader has not heard from since it led again cannot lower it.
    assert_eq!(leader.bound_high_watermark("t", 0, Some(2), false).unwrap(), 6);
    // Alone in sync, the leader's own log end decides.
    assert_eq!(leader.bound_high_watermark("t", 0, None, false).unwrap(), 10);
    // A follower takes its leader's high watermark, as far as its own log reaches, and may go
    // below what it had.
    replicate(&leader, &follower).await;
    let fp = follower.partition("t", 0).unwrap();
    assert_eq!(follower.bound_high_watermark("t", 0, Some(4), true).unwrap(), 4);
    assert_eq!(follower.bound_high_watermark("t", 0, Some(40), true).unwrap(), 10);
    assert_eq!(fp.offsets().1, 10);
}

#[tokio::test]
async fn a_replicated_copy_reopens_at_its_checkpointed_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = || freshet_log::config::LogConfig { replicated: true, ..support::config(Durability::OsCache) };
    let log = Log::open(dir.path(), config()).await.unwrap();
    log.create_topic("t", 1, configs(&[])).await.unwrap();
    // A replicated copy takes no appends until its broker makes it the leader's.
    let refused = log.append("t", 0, idempotent(7, 0, 3)).await;
    assert!(matches!(refused, Err(freshet_log::Error::NotLeader { .. })), "{refused:?}");
    log.partition("t", 0).unwrap().set_follower(false);
    // A leader whose followers hold offsets below 6: the high watermark stops there.
    log.bound_high_watermark("t", 0, Some(6), false).unwrap();
    for seq in 0..5 {
        log.append("t", 0, idempotent(7, seq * 3, 3)).await.unwrap();
    }
    assert_eq!(log.partition("t", 0).unwrap().offsets(), (0, 6, 15));
    log.close().await.unwrap();
    drop(log);
    // Reopened, it shows only what was known to be replicated, not all it holds...
    let log = Log::open(dir.path(), config()).await.unwrap();
    let p = log.partition("t", 0).unwrap();
    assert!(p.is_follower(), "a reopened copy leads again only when its broker says so");
    assert_eq!(p.offsets(), (0, 6, 15), "the records past the checkpointed high watermark stay hidden");
    assert_eq!(log.read("t", 0, 6, 4096).await.unwrap().batches.len(), 0);
    // ...until the replication says more is: here it leads alone.
    log.bound_high_watermark("t", 0, None, false).unwrap();
    assert_eq!(p.offsets().1, 15);
    log.close().await.unwrap();
    drop((p, log));
    // A log of its own shows everything it holds.
    let log = Log::open(dir.path(), support::config(Durability::OsCache)).await.unwrap();
    assert_eq!(log.partition("t", 0).unwrap().offsets().1, 15);
}

/// A copy of a directory as it is now, as a crash would leave it to the next open.
fn snapshot(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            snapshot(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn the_maintenance_pass_checkpoints_a_moved_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let config = || freshet_log::config::LogConfig { replicated: true, ..support::config(Durability::OsCache) };
    let log = Log::open(dir.path().join("live"), config()).await.unwrap();
    log.create_topic("t", 1, configs(&[])).await.unwrap();
    let p = log.partition("t", 0).unwrap();
    p.set_follower(false);
    log.bound_high_watermark("t", 0, Some(0), false).unwrap();
    for seq in 0..5 {
        log.append("t", 0, idempotent(7, seq * 3, 3)).await.unwrap();
    }
    log.bound_high_watermark("t", 0, Some(9), false).unwrap();
    assert_eq!(p.offsets(), (0, 9, 15));
    // A crash now reopens at the checkpoint written before the mark moved...
    snapshot(&dir.path().join("live"), &dir.path().join("before"));
    log.run_maintenance(0).await.unwrap();
    // ...and after the maintenance pass, where the mark was.
    snapshot(&dir.path().join("live"), &dir.path().join("after"));
    for (name, hw) in [("before", 0), ("after", 9)] {
        let reopened = Log::open(dir.path().join(name), config()).await.unwrap();
        assert_eq!(reopened.partition("t", 0).unwrap().offsets(), (0, hw, 15), "{name} the pass");
        reopened.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_write_waiting_for_its_replicas_fails_once_its_copy_stops_leading_in_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let config = freshet_log::config::LogConfig { replicated: true, ..support::config(Durability::OsCache) };
    let log = Log::open(dir.path(), config).await.unwrap();
    log.create_topic("t", 1, configs(&[])).await.unwrap();
    let p = log.partition("t", 0).unwrap();
    p.set_follower(false);
    p.bump_leader_epoch(3).unwrap();
    // Alone in sync: replicated as soon as written.
    log.bound_high_watermark("t", 0, None, false).unwrap();
    let info = log.append("t", 0, idempotent(1, 0, 2)).await.unwrap();
    assert_eq!(info.leader_epoch, 3);
    let wait = std::time::Duration::from_secs(5);
    log.wait_replicated("t", 0, &info, wait).await.unwrap();
    // A follower holds the high watermark back: the next write waits...
    log.bound_high_watermark("t", 0, Some(2), false).unwrap();
    let info = log.append("t", 0, idempotent(1, 2, 2)).await.unwrap();
    let short = std::time::Duration::from_millis(200);
    let timed_out = log.wait_replicated("t", 0, &info, short).await;
    assert!(matches!(timed_out, Err(Error::NotReplicated { offset: 3, .. })), "{timed_out:?}");
    // ...and fails when the copy leads again under a newer epoch (the batch may have been cut
    // away and the offset filled again by another leader's), even with the mark past it.
    p.bump_leader_epoch(5).unwrap();
    log.bound_high_watermark("t", 0, None, false).unwrap();
    let moved = log.wait_replicated("t", 0, &info, wait).await;
    assert!(matches!(moved, Err(Error::NotLeader { .. })), "{moved:?}");
    // Or when it follows.
    log.bound_high_watermark("t", 0, Some(4), false).unwrap();
    let info = log.append("t", 0, idempotent(1, 4, 1)).await.unwrap();
    let waiting = log.wait_replicated("t", 0, &info, wait);
    let demoted = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        p.set_follower(true);
    };
    let (followed, ()) = tokio::join!(waiting, demoted);
    assert!(matches!(followed, Err(Error::NotLeader { .. })), "{followed:?}");
}
