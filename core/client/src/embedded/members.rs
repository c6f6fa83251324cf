//! The embedded consumers' side of the classic group protocol, over the same coordinator a
//! broker serving this log uses (`freshet_coord::membership`): join, the leader's range
//! assignment, sync, heartbeats, leave. As with Kafka's eager protocol, a member gives up all its
//! partitions (reporting them revoked) before it rejoins, and the coordinator completes a
//! rebalance only when every member has rejoined, so a partition never has two owners.

use super::*;

use freshet_coord::code;
use freshet_coord::consumer_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};
use freshet_coord::membership::{Coordinator, JoinRequest};

/// How long a member may go without a heartbeat before the coordinator drops it (Kafka's
/// `session.timeout.ms` default).
pub(super) const SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// How long the coordinator waits for every member to rejoin a rebalance (Kafka's
/// `max.poll.interval.ms` default, the rebalance timeout of its consumers).
pub(super) const REBALANCE_TIMEOUT: Duration = Duration::from_secs(300);

/// How often a member's session is kept alive between polls (Kafka's `heartbeat.interval.ms`).
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// The assignment protocol, by the name Kafka's range assignor has.
const PROTOCOL: &str = "range";

/// What a completed join and sync gave a member.
#[derive(Debug)]
pub(super) struct Joined {
    pub(super) member_id: String,
    pub(super) generation: i32,
    pub(super) assignment: Vec<TopicPartition>,
    /// For the leader, the partition counts of the members' topics the assignment was computed
    /// from (`None`: the topic did not exist): when they change, the leader rejoins, so the
    /// group deals the new partitions out, as a Kafka consumer's leader does on a metadata change.
    pub(super) leader_counts: Option<Vec<(String, Option<u32>)>>,
}

/// A join that did not complete: the error code and the member id to rejoin with.
#[derive(Debug)]
pub(super) struct NotJoined {
    pub(super) code: i16,
    pub(super) member_id: String,
}

/// Who a member is to the coordinator, once joined: read by its keep-alive task.
pub(super) type Identity = Arc<Mutex<Option<(String, i32)>>>;

/// Joins `group` (rejoining with `member_id` when the coordinator gave one) and syncs. The
/// leader computes the range assignment of every member's subscription over the log's partition
/// counts; other members receive theirs.
pub(super) async fn join_and_sync(
    coordinator: Coordinator,
    log: Log,
    group: String,
    mut member_id: String,
    topics: Vec<String>,
    client_id: String,
) -> std::result::Result<Joined, NotJoined> {
    loop {
        let join = coordinator
            .join(JoinRequest {
                group: group.clone(),
                member_id: member_id.clone(),
                instance_id: None,
                client_id: client_id.clone(),
                client_host: "/in-process".into(),
                session_timeout: SESSION_TIMEOUT,
                rebalance_timeout: REBALANCE_TIMEOUT,
                protocol_type: "consumer".into(),
                protocols: vec![(PROTOCOL.into(), encode_subscription(&topics))],
                requires_known_member_id: true,
            })
            .await;
        match join.error_code {
            code::NONE => {}
            code::MEMBER_ID_REQUIRED => {
                member_id = join.member_id;
                continue;
            }
            code => return Err(NotJoined { code, member_id: join.member_id }),
        }
        member_id = join.member_id.clone();
        let mut leader_counts = None;
        let assignments = if join.leader == member_id {
            let members: Vec<(String, Vec<String>)> = join
                .members
                .iter()
                .map(|m| (m.member_id.clone(), decode_subscription(&m.metadata).unwrap_or_default()))
                .collect();
            let mut topics: Vec<String> = members.iter().flat_map(|(_, t)| t.iter().cloned()).collect();
            topics.sort();
            topics.dedup();
            leader_counts = Some(topic_counts(&log, &topics));
            let counts = |t: &str| log.describe_topic(t).ok().map(|d| d.n_partitions);
            range_assign(&members, counts).into_iter().map(|(m, ps)| (m, encode_assignment(&ps))).collect()
        } else {
            Vec::new()
        };
        let sync = coordinator.sync(&group, join.generation, &member_id, None, assignments).await;
        match sync.error_code {
            code::NONE => {
                let assignment = decode_assignment(&sync.assignment).unwrap_or_default();
                return Ok(Joined { member_id, generation: join.generation, assignment, leader_counts });
            }
            // Another member joined meanwhile: join again.
            code::REBALANCE_IN_PROGRESS => continue,
            code => return Err(NotJoined { code, member_id }),
        }
    }
}

/// The partition counts of `topics` in the log now (`None` for a topic that does not exist).
pub(super) fn topic_counts(log: &Log, topics: &[String]) -> Vec<(String, Option<u32>)> {
    topics.iter().map(|t| (t.clone(), log.describe_topic(t).ok().map(|d| d.n_partitions))).collect()
}

/// Keeps a member's session alive between polls until `identity` is dropped.
pub(super) fn keep_alive(coordinator: Coordinator, group: String, identity: &Identity) {
    let identity = Arc::downgrade(identity);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            let Some(identity) = identity.upgrade() else { return };
            let current = identity.lock().expect("member identity lock").clone();
            if let Some((member_id, generation)) = current {
                // A rebalance or a lost membership is the poll's to act on.
                coordinator.heartbeat(&group, generation, &member_id, None).await;
            }
        }
    });
}

/// Leaves `group` in the background on `runtime` (the one the member subscribed on: a consumer
/// may be dropped on a thread outside any runtime, and a drop cannot wait).
pub(super) fn leave_soon(
    coordinator: &Coordinator,
    runtime: &tokio::runtime::Handle,
    group: String,
    member_id: String,
) {
    if member_id.is_empty() {
        return;
    }
    let coordinator = coordinator.clone();
    runtime.spawn(async move {
        coordinator.leave(&group, &[(member_id, None)]).await;
    });
}

/// The members of `group` as an admin client describes them.
pub(super) async fn describe(coordinator: &Coordinator, group: &str) -> Option<GroupMembers> {
    let described = coordinator.describe(group).await?;
    if described.members.is_empty() {
        return None;
    }
    let members = described
        .members
        .into_iter()
        .map(|m| GroupMember {
            member_id: m.member_id,
            client_id: m.client_id,
            host: m.client_host,
            assignment: decode_assignment(&m.assignment).unwrap_or_default(),
        })
        .collect();
    Some(GroupMembers { state: described.state.name().to_string(), protocol: described.protocol, members })
}

/// Membership of groups with a protocol of their own, over this log's group coordinator: the
/// same one a broker serving the log answers JoinGroup and SyncGroup with.
#[derive(Debug, Clone)]
pub(super) struct EmbeddedMembership {
    pub(super) coordinator: Coordinator,
}

#[async_trait]
impl GroupMembership for EmbeddedMembership {
    async fn join(&self, join: &JoinGroup) -> Result<GroupJoined> {
        let mut member_id = join.member_id.clone();
        loop {
            let joined = self
                .coordinator
                .join(JoinRequest {
                    group: join.group.clone(),
                    member_id: member_id.clone(),
                    instance_id: None,
                    client_id: "freshet".into(),
                    client_host: "/in-process".into(),
                    session_timeout: join.session_timeout,
                    rebalance_timeout: join.rebalance_timeout,
                    protocol_type: join.protocol_type.clone(),
                    protocols: join.protocols.clone(),
                    requires_known_member_id: true,
                })
                .await;
            match joined.error_code {
                code::NONE => {
                    let members = joined.members.into_iter().map(|m| (m.member_id, m.metadata)).collect();
                    return Ok(GroupJoined {
                        generation: joined.generation,
                        member_id: joined.member_id,
                        leader: joined.leader,
                        protocol: joined.protocol_name.unwrap_or_default(),
                        members,
                    });
                }
                code::MEMBER_ID_REQUIRED => member_id = joined.member_id,
                code::UNKNOWN_MEMBER_ID if !member_id.is_empty() => member_id = String::new(),
                error => return Err(membership_refused("join", &join.group, error)),
            }
        }
    }

    async fn sync(
        &self,
        group: &str,
        joined: &GroupJoined,
        _protocol_type: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Option<Bytes>> {
        let synced = self.coordinator.sync(group, joined.generation, &joined.member_id, None, assignments).await;
        match synced.error_code {
            code::NONE => Ok(Some(synced.assignment)),
            code::REBALANCE_IN_PROGRESS => Ok(None),
            error => Err(membership_refused("sync", group, error)),
        }
    }

    async fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> Result<Heartbeat> {
        Ok(match self.coordinator.heartbeat(group, generation, member_id, None).await {
            code::NONE => Heartbeat::Stable,
            code::REBALANCE_IN_PROGRESS => Heartbeat::Rebalance,
            _ => Heartbeat::Lost,
        })
    }

    async fn leave(&self, group: &str, member_id: &str) -> Result<()> {
        self.coordinator.leave(group, &[(member_id.to_string(), None)]).await;
        Ok(())
    }
}
