//! The metadata directory on files, and a controller that restarts from it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use freshet_cluster::controller::{NewTopic, Registration};
use freshet_cluster::raft::{Disk, FileDisk, NodeId, QuorumConfig, QuorumNode, RaftRequest, RaftResponse, Transport};
use freshet_cluster::{Controller, ControllerConfig, Heartbeat, Quorum};

fn entries(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i, format!("entry {i}").into_bytes())).collect()
}

#[test]
fn entries_vote_and_snapshot_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let disk = FileDisk::open(dir.path()).unwrap();
        disk.append(&entries(1..6)).unwrap();
        disk.truncate(4).unwrap();
        disk.append(&entries(4..8)).unwrap();
        disk.purge(2).unwrap();
        disk.append(&entries(8..9)).unwrap();
        disk.save_vote(b"vote 3").unwrap();
        disk.save_snapshot(b"image at 2").unwrap();
    }
    let stored = FileDisk::open(dir.path()).unwrap().load().unwrap();
    assert_eq!(stored.entries, entries(3..9));
    assert_eq!(stored.vote.as_deref(), Some(&b"vote 3"[..]));
    assert_eq!(stored.snapshot.as_deref(), Some(&b"image at 2"[..]));
}

#[test]
fn a_torn_last_entry_is_cut_off_and_damage_before_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("raft.log");
    FileDisk::open(dir.path()).unwrap().append(&entries(1..4)).unwrap();
    let whole = std::fs::read(&log).unwrap();

    // A crash cut the last append short: that entry was never acknowledged.
    std::fs::write(&log, &whole[..whole.len() - 3]).unwrap();
    let disk = FileDisk::open(dir.path()).unwrap();
    assert_eq!(disk.load().unwrap().entries, entries(1..3));
    disk.append(&entries(3..5)).unwrap();
    drop(disk);
    assert_eq!(FileDisk::open(dir.path()).unwrap().load().unwrap().entries, entries(1..5));

    // A flipped byte in the first entry, with entries after it: refused, naming file and byte.
    let mut damaged = std::fs::read(&log).unwrap();
    damaged[20] ^= 0xff;
    std::fs::write(&log, &damaged).unwrap();
    let e = FileDisk::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("raft.log") && e.contains("damaged at byte 0"), "{e}");

    // A damaged last entry is a torn write too.
    let mut tail = whole.clone();
    let last = tail.len() - 1;
    tail[last] ^= 0xff;
    std::fs::write(&log, &tail).unwrap();
    assert_eq!(FileDisk::open(dir.path()).unwrap().load().unwrap().entries, entries(1..3));
}

/// One controller needs no network.
struct Alone;

#[async_trait]
impl Transport for Alone {
    async fn send(&self, _: NodeId, to: NodeId, _: RaftRequest) -> Result<RaftResponse, String> {
        Err(format!("no controller {to}"))
    }
}

async fn single(dir: &std::path::Path) -> (Arc<QuorumNode>, Arc<Controller>) {
    let voters = BTreeMap::from([(1, "localhost:9093".to_owned())]);
    let config = QuorumConfig {
        election_timeout: Duration::from_millis(150),
        heartbeat_interval: Duration::from_millis(50),
        snapshot_every: 10,
    };
    let node = Arc::new(
        QuorumNode::start(1, &voters, Arc::new(FileDisk::open(dir).unwrap()), Arc::new(Alone), &config).await.unwrap(),
    );
    let controller =
        Controller::new(node.clone(), ControllerConfig { cluster_id: "files".into(), ..Default::default() });
    for _ in 0..100 {
        if node.leader() == Some(1) {
            return (node, controller);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a single controller did not elect itself");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_on_files_restarts_with_its_image() {
    let dir = tempfile::tempdir().unwrap();
    let (node, controller) = single(dir.path()).await;
    let reg =
        Registration { broker_id: 1, incarnation_id: 42, cluster_id: "files".into(), endpoints: vec![], rack: None };
    let epoch = controller.register(reg).await.unwrap();
    let registered_at = controller.image().brokers[&1].registered_at;

    // A broker that has not applied its own registration stays fenced.
    let behind =
        Heartbeat { broker_id: 1, broker_epoch: epoch, metadata_offset: registered_at - 1, ..Default::default() };
    let reply = controller.heartbeat(behind).await.unwrap();
    assert!(reply.is_fenced && !reply.is_caught_up);
    let caught_up = Heartbeat { metadata_offset: registered_at, ..behind };
    assert!(!controller.heartbeat(caught_up).await.unwrap().is_fenced);
    let stale = Heartbeat { broker_epoch: epoch - 1, ..caught_up };
    assert_eq!(controller.heartbeat(stale).await.unwrap_err().code, freshet_coord::code::STALE_BROKER_EPOCH);

    // Enough entries for snapshots and a purged log head.
    for i in 0..25 {
        let topic = NewTopic { name: format!("t{i}"), partitions: 2, replication_factor: 1, ..Default::default() };
        controller.create_topic(topic, false).await.unwrap();
    }
    controller.delete_topic("t3").await.unwrap();
    let (first, _) = controller.allocate_producer_ids(1, epoch).await.unwrap();
    let (second, _) = controller.allocate_producer_ids(1, epoch).await.unwrap();
    assert_eq!(second, first + 1000);
    let before = controller.image();
    node.shutdown().await;
    drop(controller);
    drop(node);

    let (node, controller) = single(dir.path()).await;
    let mut images = node.image();
    let after = images.wait_for(|i| i.offset >= before.offset).await.unwrap().clone();
    assert_eq!(after.topics, before.topics);
    assert_eq!(after.brokers, before.brokers);
    assert_eq!(after.next_producer_id, before.next_producer_id);
    assert!(after.topic("t3").is_none());
    let (third, _) = controller.allocate_producer_ids(1, epoch).await.unwrap();
    assert_eq!(third, second + 1000, "producer id blocks never repeat across a restart");
    node.shutdown().await;
}
