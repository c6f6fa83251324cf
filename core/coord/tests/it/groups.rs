//! Committed offsets kept by the group store: how long those of a group without members are kept.

use std::collections::BTreeMap;
use std::time::Duration;

use freshet_coord::group::{GroupOffsets, OffsetAndMetadata, TopicPartition};
use freshet_log::clock::Clock as _;
use freshet_log::Log;

use crate::support;

/// A group's committed offsets expire `offsets.retention.minutes` after its last commit once it
/// has no members, durably; a group with members keeps them however old they are.
#[tokio::test]
async fn offsets_of_groups_without_members_expire_after_the_retention() {
    use freshet_coord::group::OFFSETS_RETENTION;
    use freshet_coord::membership::{Coordinator, JoinRequest};
    let dir = tempfile::tempdir().unwrap();
    let (config, clock) = support::manual_clock_config();
    let log = Log::open(dir.path(), config.clone()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let tp = TopicPartition::new("t", 0);
    for group in ["idle", "live"] {
        offsets.commit(group, &BTreeMap::from([(tp.clone(), OffsetAndMetadata::new(5))])).await.unwrap();
    }
    let coordinator = Coordinator::new();
    let join = |member_id: String| JoinRequest {
        group: "live".into(),
        member_id,
        instance_id: None,
        client_id: "c".into(),
        client_host: "/h".into(),
        session_timeout: Duration::from_secs(30),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::new())],
        requires_known_member_id: true,
    };
    let id = coordinator.join(join(String::new())).await.member_id;
    coordinator.join(join(id)).await;
    let day = 24 * 3600 * 1000;
    assert_eq!(offsets.expire(&coordinator, clock.now_ms(), OFFSETS_RETENTION).await.unwrap(), Vec::<String>::new());
    clock.advance_ms(7 * day + 1_000);
    assert_eq!(offsets.expire(&coordinator, clock.now_ms(), OFFSETS_RETENTION).await.unwrap(), ["idle"]);
    assert_eq!(offsets.groups(), ["live"], "a group with members keeps its offsets");
    log.close().await.unwrap();
    drop((offsets, log));
    let log = Log::open(dir.path(), config).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    assert_eq!(offsets.groups(), ["live"], "the expiry is durable");
}
