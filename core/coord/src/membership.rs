//! The consumer-group coordinator of the classic protocol, as the broker serves it.
//!
//! A group goes Empty -> PreparingRebalance (members join) -> CompletingRebalance (the leader
//! computes assignments) -> Stable, and back to PreparingRebalance whenever a member joins, leaves
//! or misses its session timeout. A JoinGroup waits until every known member has joined again
//! (or the rebalance timeout passes, when the missing ones are removed); then all joins are
//! answered at once: the leader with every member's protocol metadata. A SyncGroup from a
//! follower waits for the leader's, which carries everyone's assignment. Heartbeats tell members
//! when a rebalance is in progress. Members with a `group.instance.id` (static membership) keep
//! their member id across restarts: rejoining with the same instance id replaces the old member
//! without a rebalance when its protocols are unchanged.
//!
//! Membership lives in memory (Kafka keeps it in `__consumer_offsets` too); committed offsets
//! live in the log ([`GroupOffsets`](crate::group::GroupOffsets)) and survive restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use freshet_log::clock::Clock;

use bytes::Bytes;

use crate::code;
use tokio::sync::{oneshot, Mutex};

/// Where a group is in its rebalance cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// Members are (re)joining.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignments.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// What a JoinGroup asks.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The group.
    pub group: String,
    /// The member id ("" for a first join).
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// The client's id and host, for DescribeGroups.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// e.g. `consumer`.
    pub protocol_type: String,
    /// Offered protocols (assignors) with their metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether the client understands MEMBER_ID_REQUIRED (JoinGroup v4+).
    pub requires_known_member_id: bool,
}

/// A member as the join response lists it.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, Default)]
pub struct JoinResponse {
    /// Error code.
    pub error_code: i16,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// This member's id.
    pub member_id: String,
    /// Every member, for the leader only.
    pub members: Vec<JoinedMember>,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, Default)]
pub struct SyncResponse {
    /// Error code.
    pub error_code: i16,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Its metadata for the group's protocol.
    pub metadata: Bytes,
    /// Its assignment.
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// State.
    pub state: GroupState,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocol.
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
}

#[derive(Debug)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    /// When it was last heard from (ms, by the coordinator's clock).
    last_seen: i64,
    /// Joined in the current rebalance.
    joined: bool,
    assignment: Bytes,
}

#[derive(Debug)]
struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: String,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Joins waiting for the rebalance to complete.
    pending_joins: Vec<(String, oneshot::Sender<JoinResponse>)>,
    /// Follower syncs waiting for the leader's.
    pending_syncs: Vec<(String, oneshot::Sender<SyncResponse>)>,
    /// When the current rebalance must complete at the latest.
    rebalance_deadline: Option<i64>,
    /// The first rebalance of an empty group waits until then for more members to join (Kafka's
    /// `group.initial.rebalance.delay.ms`), and since when it waits.
    initial_delay: Option<(i64, i64)>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: String::new(),
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending_joins: Vec::new(),
            pending_syncs: Vec::new(),
            rebalance_deadline: None,
            initial_delay: None,
        }
    }

    fn prepare_rebalance(&mut self, now: i64) {
        if self.state != GroupState::PreparingRebalance {
            let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::from_secs(5));
            self.rebalance_deadline = Some(now.saturating_add(timeout.as_millis() as i64));
            for m in self.members.values_mut() {
                m.joined = false;
            }
            // Followers waiting for assignments of the old generation must rejoin.
            for (_, tx) in self.pending_syncs.drain(..) {
                let _ = tx.send(SyncResponse { error_code: code::REBALANCE_IN_PROGRESS, ..Default::default() });
            }
            self.state = GroupState::PreparingRebalance;
        }
    }

    /// Completes the join phase once every member has joined (or `force`, at the deadline, when
    /// the members that did not join are removed).
    fn maybe_complete_join(&mut self, force: bool, now: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if !force && self.initial_delay.is_some_and(|(until, _)| now < until) {
            return;
        }
        self.initial_delay = None;
        let all_joined = self.members.values().all(|m| m.joined);
        if !all_joined && !force {
            return;
        }
        self.members.retain(|id, m| {
            if !m.joined {
                tracing::info!(member = %id, "removed from its group: it did not rejoin in time");
            }
            m.joined
        });
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.generation += 1;
            self.leader = None;
            self.protocol = None;
            return;
        }
        // The first protocol, in the leader's preference order, that every member offers.
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self.members.keys().next().cloned().expect("members"),
        };
        let protocol = self.members[&leader]
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .find(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == name)));
        self.generation += 1;
        self.leader = Some(leader.clone());
        self.protocol = protocol.clone();
        self.state = GroupState::CompletingRebalance;
        tracing::info!(generation = self.generation, %leader, members = ?self.members.keys().collect::<Vec<_>>(), "rebalance: join phase complete");
        let members = self.joined_members();
        for (member_id, tx) in self.pending_joins.drain(..) {
            let response = JoinResponse {
                error_code: code::NONE,
                generation: self.generation,
                protocol_type: Some(self.protocol_type.clone()),
                protocol_name: protocol.clone(),
                leader: leader.clone(),
                members: if member_id == leader { members.clone() } else { Vec::new() },
                member_id,
            };
            let _ = tx.send(response);
        }
    }

    /// Every member with its metadata for the group's protocol, as the leader's join response
    /// lists them.
    fn joined_members(&self) -> Vec<JoinedMember> {
        self.members
            .iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| Some(n) == self.protocol.as_ref())
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    fn remove_member(&mut self, member_id: &str, now: i64) {
        if self.members.remove(member_id).is_some() {
            if self.members.is_empty() && self.pending_joins.is_empty() {
                self.state = GroupState::Empty;
                self.generation += 1;
                self.leader = None;
                return;
            }
            self.prepare_rebalance(now);
            self.maybe_complete_join(false, now);
        }
    }
}

/// The groups this broker coordinates.
#[derive(Debug, Clone)]
pub struct Coordinator {
    groups: Arc<Mutex<BTreeMap<String, Group>>>,
    /// The most members one group takes (Kafka's `group.max.size`), shared by clones.
    max_group_size: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether the expiry task runs (one per coordinator and its clones).
    expiring: Arc<std::sync::atomic::AtomicBool>,
    /// Kafka's `group.initial.rebalance.delay.ms`, shared by clones.
    initial_rebalance_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Where session and rebalance timeouts read the time.
    clock: Arc<dyn Clock>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator {
            groups: Arc::default(),
            max_group_size: Arc::new(std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_GROUP_SIZE)),
            expiring: Arc::default(),
            initial_rebalance_delay_ms: Arc::default(),
            clock: freshet_log::clock::system(),
        }
    }
}

/// Kafka's default `group.max.size`: no bound of its own below the broker's connection bound.
pub const DEFAULT_MAX_GROUP_SIZE: usize = i32::MAX as usize;

fn new_member_id(client_id: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{:x}-{n}", if client_id.is_empty() { "member" } else { client_id }, nanos)
}

impl Coordinator {
    /// A coordinator with no groups; `start_expiry` removes members whose session ran out.
    pub fn new() -> Self {
        Self::default()
    }

    /// A coordinator whose groups take at most `n` members: a join past it is refused with
    /// GROUP_MAX_SIZE_REACHED (Kafka's `group.max.size`).
    pub fn with_max_group_size(n: usize) -> Self {
        let coordinator = Self::default();
        coordinator.set_max_group_size(n);
        coordinator
    }

    /// A coordinator whose session and rebalance timeouts read `clock` (the log's, so a
    /// simulation that sets the clock decides when members expire).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Coordinator { clock, ..Self::default() }
    }

    /// Sets Kafka's `group.initial.rebalance.delay.ms` for this coordinator and its clones: the
    /// first rebalance of an empty group waits that long for more members (default 0, as Kafka's
    /// shipped `server.properties` sets it).
    pub fn set_initial_rebalance_delay(&self, delay: Duration) {
        self.initial_rebalance_delay_ms.store(delay.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets `group.max.size` for this coordinator and its clones (joins from now on).
    pub fn set_max_group_size(&self, n: usize) {
        self.max_group_size.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Checks sessions and rebalance deadlines every 100 ms, while the coordinator lives (once for a
    /// coordinator and its clones, however often called).
    pub fn start_expiry(&self) {
        if self.expiring.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let groups = Arc::downgrade(&self.groups);
        let clock = self.clock.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(groups) = groups.upgrade() else { return };
                let mut groups = groups.lock().await;
                let now = clock.now_ms();
                for (name, group) in groups.iter_mut() {
                    let expired: Vec<String> = group
                        .members
                        .iter()
                        .filter(|(_, m)| {
                            group.state != GroupState::PreparingRebalance
                                && now.saturating_sub(m.last_seen) > m.session_timeout.as_millis() as i64
                        })
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in expired {
                        tracing::info!(group = %name, member = %id, "session expired");
                        group.remove_member(&id, now);
                    }
                    if group.rebalance_deadline.is_some_and(|d| now >= d) {
                        group.maybe_complete_join(true, now);
                    } else if group.initial_delay.is_some_and(|(until, _)| now >= until) {
                        group.maybe_complete_join(false, now);
                    }
                }
            }
        });
    }

    /// JoinGroup: answered when the rebalance completes.
    pub async fn join(&self, request: JoinRequest) -> JoinResponse {
        let receiver = {
            let mut groups = self.groups.lock().await;
            let group = groups.entry(request.group.clone()).or_insert_with(Group::new);
            if !group.protocol_type.is_empty()
                && !group.members.is_empty()
                && group.protocol_type != request.protocol_type
            {
                return JoinResponse { error_code: code::INCONSISTENT_GROUP_PROTOCOL, ..Default::default() };
            }
            if !group.members.is_empty()
                && !request
                    .protocols
                    .iter()
                    .any(|(n, _)| group.members.values().all(|m| m.protocols.iter().any(|(o, _)| o == n)))
            {
                return JoinResponse { error_code: code::INCONSISTENT_GROUP_PROTOCOL, ..Default::default() };
            }
            // Static members keep their id; a restarted one replaces its old self.
            let mut member_id = request.member_id.clone();
            if let Some(instance) = &request.instance_id {
                let known = group
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone());
                if let Some(old) = known {
                    if member_id.is_empty() || member_id != old {
                        let unchanged = group.members[&old].protocols == request.protocols;
                        if unchanged && group.state == GroupState::Stable {
                            // Same instance, same protocols: takes its old place, no rebalance.
                            let m = group.members.get_mut(&old).expect("known");
                            m.last_seen = self.clock.now_ms();
                            return JoinResponse {
                                error_code: code::NONE,
                                generation: group.generation,
                                protocol_type: Some(group.protocol_type.clone()),
                                protocol_name: group.protocol.clone(),
                                leader: group.leader.clone().unwrap_or_default(),
                                member_id: old,
                                members: Vec::new(),
                            };
                        }
                        member_id = old;
                    }
                }
            }
            if member_id.is_empty() {
                member_id = new_member_id(&request.client_id);
                if request.requires_known_member_id && request.instance_id.is_none() {
                    // The client rejoins with this id (KIP-394); until then it is not a member.
                    return JoinResponse { error_code: code::MEMBER_ID_REQUIRED, member_id, ..Default::default() };
                }
            } else if !group.members.contains_key(&member_id)
                && request.instance_id.is_none()
                && !request.requires_known_member_id
            {
                return JoinResponse { error_code: code::UNKNOWN_MEMBER_ID, member_id, ..Default::default() };
            }
            let max_group_size = self.max_group_size.load(std::sync::atomic::Ordering::Relaxed);
            if !group.members.contains_key(&member_id) && group.members.len() >= max_group_size {
                tracing::info!(group = %request.group, max = max_group_size, "join refused: group.max.size reached");
                return JoinResponse { error_code: code::GROUP_MAX_SIZE_REACHED, member_id, ..Default::default() };
            }
            group.protocol_type = request.protocol_type.clone();
            let changed = group.members.get(&member_id).is_none_or(|m| m.protocols != request.protocols);
            let member = group.members.entry(member_id.clone()).or_insert_with(|| Member {
                instance_id: request.instance_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                session_timeout: request.session_timeout,
                rebalance_timeout: request.rebalance_timeout,
                protocols: request.protocols.clone(),
                last_seen: self.clock.now_ms(),
                joined: false,
                assignment: Bytes::new(),
            });
            member.protocols = request.protocols.clone();
            member.session_timeout = request.session_timeout;
            member.rebalance_timeout = request.rebalance_timeout;
            member.last_seen = self.clock.now_ms();
            // As Kafka's coordinator: a follower rejoining a stable group with nothing changed,
            // or any member rejoining unchanged while the leader assigns (it missed its join
            // answer), gets the current generation back without a rebalance. The leader
            // rejoining a stable group forces one: that is how a consumer's leader reacts to
            // what its metadata shows changed (a topic created, partitions added), which the
            // members' subscriptions do not show.
            let leader = group.leader.clone().unwrap_or_default();
            let is_leader = leader == member_id;
            if !changed
                && ((group.state == GroupState::Stable && !is_leader) || group.state == GroupState::CompletingRebalance)
            {
                let protocol = group.protocol.clone();
                let members = if is_leader { group.joined_members() } else { Vec::new() };
                return JoinResponse {
                    error_code: code::NONE,
                    generation: group.generation,
                    protocol_type: Some(group.protocol_type.clone()),
                    protocol_name: protocol,
                    leader,
                    member_id,
                    members,
                };
            }
            let now = self.clock.now_ms();
            let delay = self.initial_rebalance_delay_ms.load(std::sync::atomic::Ordering::Relaxed) as i64;
            if delay > 0 {
                // As Kafka: the first rebalance of an empty group waits `delay` for more members,
                // each new one extending the wait by `delay`, up to the rebalance timeout.
                let timeout = request.rebalance_timeout.as_millis() as i64;
                if group.state == GroupState::Empty {
                    group.initial_delay = Some((now.saturating_add(delay.min(timeout)), now));
                } else if let Some((until, since)) = group.initial_delay {
                    group.initial_delay =
                        Some((until.max(now.saturating_add(delay).min(since.saturating_add(timeout))), since));
                }
            }
            group.prepare_rebalance(now);
            group.members.get_mut(&member_id).expect("inserted").joined = true;
            let (tx, rx) = oneshot::channel();
            group.pending_joins.retain(|(id, _)| *id != member_id);
            group.pending_joins.push((member_id.clone(), tx));
            group.maybe_complete_join(false, now);
            rx
        };
        receiver.await.unwrap_or(JoinResponse { error_code: code::REBALANCE_IN_PROGRESS, ..Default::default() })
    }

    /// SyncGroup: the leader's carries every assignment; followers wait for it.
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResponse {
        let receiver = {
            let mut groups = self.groups.lock().await;
            let Some(group) = groups.get_mut(group_id) else {
                return SyncResponse { error_code: code::UNKNOWN_MEMBER_ID, ..Default::default() };
            };
            if !group.members.contains_key(member_id) {
                return SyncResponse { error_code: code::UNKNOWN_MEMBER_ID, ..Default::default() };
            }
            if generation != group.generation {
                return SyncResponse { error_code: code::ILLEGAL_GENERATION, ..Default::default() };
            }
            if group.state == GroupState::PreparingRebalance {
                return SyncResponse { error_code: code::REBALANCE_IN_PROGRESS, ..Default::default() };
            }
            if let Some(m) = group.members.get_mut(member_id) {
                m.last_seen = self.clock.now_ms();
            }
            let respond = |group: &Group, member: &str| SyncResponse {
                error_code: code::NONE,
                protocol_type: Some(group.protocol_type.clone()),
                protocol_name: group.protocol.clone(),
                assignment: group.members.get(member).map(|m| m.assignment.clone()).unwrap_or_default(),
            };
            if group.state == GroupState::Stable {
                return respond(group, member_id);
            }
            if group.leader.as_deref() == Some(member_id) {
                for m in group.members.values_mut() {
                    m.assignment = Bytes::new();
                }
                for (id, assignment) in assignments {
                    if let Some(m) = group.members.get_mut(&id) {
                        m.assignment = assignment;
                    }
                }
                group.state = GroupState::Stable;
                for (id, tx) in std::mem::take(&mut group.pending_syncs) {
                    let _ = tx.send(respond(group, &id));
                }
                return respond(group, member_id);
            }
            let (tx, rx) = oneshot::channel();
            group.pending_syncs.push((member_id.to_string(), tx));
            rx
        };
        receiver.await.unwrap_or(SyncResponse { error_code: code::REBALANCE_IN_PROGRESS, ..Default::default() })
    }

    /// Heartbeat: keeps the session alive; says when to rejoin.
    pub async fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        let mut groups = self.groups.lock().await;
        let Some(group) = groups.get_mut(group_id) else { return code::UNKNOWN_MEMBER_ID };
        let Some(member) = group.members.get_mut(member_id) else { return code::UNKNOWN_MEMBER_ID };
        member.last_seen = self.clock.now_ms();
        if group.state == GroupState::PreparingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        if generation != group.generation {
            return code::ILLEGAL_GENERATION;
        }
        code::NONE
    }

    /// LeaveGroup: each member's error code.
    pub async fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<i16> {
        let mut groups = self.groups.lock().await;
        let Some(group) = groups.get_mut(group_id) else { return vec![code::UNKNOWN_MEMBER_ID; members.len()] };
        members
            .iter()
            .map(|(member_id, instance)| {
                let id = match instance {
                    Some(i) => {
                        group.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(i)).map(|(id, _)| id.clone())
                    }
                    None => Some(member_id.clone()).filter(|id| group.members.contains_key(id)),
                };
                match id {
                    Some(id) => {
                        group.remove_member(&id, self.clock.now_ms());
                        code::NONE
                    }
                    None => code::UNKNOWN_MEMBER_ID,
                }
            })
            .collect()
    }

    /// Whether an offset commit from `member_id` at `generation` may go through: a simple commit
    /// (generation -1) always; a member's only in its current generation.
    pub async fn check_commit(&self, group_id: &str, generation: i32, member_id: &str) -> i16 {
        if generation < 0 {
            return code::NONE;
        }
        let groups = self.groups.lock().await;
        let Some(group) = groups.get(group_id) else { return code::ILLEGAL_GENERATION };
        if !group.members.contains_key(member_id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        if group.generation != generation {
            return code::ILLEGAL_GENERATION;
        }
        code::NONE
    }

    /// The groups with members, and their protocol type.
    pub async fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.groups.lock().await;
        groups.iter().map(|(n, g)| (n.clone(), g.protocol_type.clone(), g.state)).collect()
    }

    /// A group's state and members (`None`: no such group here).
    pub async fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups.lock().await;
        let group = groups.get(group_id)?;
        let protocol = group.protocol.clone().unwrap_or_default();
        Some(GroupDescription {
            state: group.state,
            protocol_type: group.protocol_type.clone(),
            protocol: protocol.clone(),
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Whether `group_id` has members now.
    pub async fn has_members(&self, group_id: &str) -> bool {
        self.groups.lock().await.get(group_id).is_some_and(|g| !g.members.is_empty())
    }

    /// Forgets an empty group (DeleteGroups); `NON_EMPTY_GROUP` if it has members.
    pub async fn delete(&self, group_id: &str) -> i16 {
        let mut groups = self.groups.lock().await;
        match groups.get(group_id) {
            Some(g) if !g.members.is_empty() => code::NON_EMPTY_GROUP,
            _ => {
                groups.remove(group_id);
                code::NONE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(group: &str, member: &str, instance: Option<&str>) -> JoinRequest {
        JoinRequest {
            group: group.into(),
            member_id: member.into(),
            instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(2),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"md"))],
            requires_known_member_id: true,
        }
    }

    #[tokio::test]
    async fn sessions_expire_by_the_coordinators_clock() {
        let clock = freshet_log::clock::ManualClock::new(1_000_000);
        let c = Coordinator::with_clock(clock.clone());
        c.start_expiry();
        let a = c.join(join("g", "", None)).await.member_id;
        assert_eq!(c.join(join("g", &a, None)).await.error_code, code::NONE);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.describe("g").await.unwrap().members.len(), 1, "no time passed on the clock");
        clock.advance_ms(10_001);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(c.describe("g").await.unwrap().members.is_empty(), "10 s session, 10.001 s by the clock");
    }

    #[tokio::test]
    async fn a_join_past_group_max_size_is_refused_and_the_members_stay() {
        let c = Coordinator::with_max_group_size(1);
        let a = c.join(join("g", "", None)).await.member_id;
        assert_eq!(c.join(join("g", &a, None)).await.error_code, code::NONE);
        let b = c.join(join("g", "", None)).await.member_id;
        assert_eq!(c.join(join("g", &b, None)).await.error_code, code::GROUP_MAX_SIZE_REACHED);
        assert_eq!(c.join(join("g", &a, None)).await.error_code, code::NONE, "a member rejoins");
        assert_eq!(c.describe("g").await.unwrap().members.len(), 1);
    }

    #[tokio::test]
    async fn two_members_join_sync_and_a_leave_rebalances() {
        let c = Coordinator::new();
        c.start_expiry();
        let first = c.join(join("g", "", None)).await;
        assert_eq!(first.error_code, code::MEMBER_ID_REQUIRED);
        let a = first.member_id;
        let ja = c.join(join("g", &a, None)).await;
        assert_eq!((ja.error_code, ja.generation, ja.leader.as_str(), ja.members.len()), (0, 1, a.as_str(), 1));
        let sa = c.sync("g", 1, &a, vec![(a.clone(), Bytes::from_static(b"all"))]).await;
        assert_eq!(&sa.assignment[..], b"all");
        // B joins: A's heartbeat says rebalance; both rejoin; the leader assigns.
        let b = c.join(join("g", "", None)).await.member_id;
        let c2 = c.clone();
        let b2 = b.clone();
        let jb = tokio::spawn(async move { c2.join(join("g", &b2, None)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(c.heartbeat("g", 1, &a).await, code::REBALANCE_IN_PROGRESS);
        let ja = c.join(join("g", &a, None)).await;
        let jb = jb.await.unwrap();
        assert_eq!((ja.generation, jb.generation), (2, 2));
        let leader = ja.leader.clone();
        let (l, f) = if leader == a { (&a, &b) } else { (&b, &a) };
        let c3 = c.clone();
        let f2 = f.clone();
        let follower = tokio::spawn(async move { c3.sync("g", 2, &f2, Vec::new()).await });
        let sl = c
            .sync("g", 2, l, vec![(a.clone(), Bytes::from_static(b"p0")), (b.clone(), Bytes::from_static(b"p1"))])
            .await;
        let sf = follower.await.unwrap();
        assert_eq!(sl.error_code, 0);
        assert_eq!(sf.error_code, 0);
        assert!(!sf.assignment.is_empty());
        assert_eq!(c.heartbeat("g", 2, &a).await, code::NONE);
        assert_eq!(c.heartbeat("g", 1, &a).await, code::ILLEGAL_GENERATION);
        assert_eq!(c.leave("g", &[(b.clone(), None)]).await, vec![code::NONE]);
        assert_eq!(c.heartbeat("g", 2, &a).await, code::REBALANCE_IN_PROGRESS);
        assert_eq!(c.heartbeat("g", 2, "nobody").await, code::UNKNOWN_MEMBER_ID);
    }

    #[tokio::test]
    async fn a_member_that_does_not_rejoin_is_removed_at_the_rebalance_deadline() {
        let c = Coordinator::new();
        c.start_expiry();
        let a = c.join(join("g", "", None)).await.member_id;
        c.join(join("g", &a, None)).await;
        c.sync("g", 1, &a, Vec::new()).await;
        let b = c.join(join("g", "", None)).await.member_id;
        // B joins; A never rejoins: after the rebalance timeout (2 s) B is alone in generation 2.
        let jb = c.join(join("g", &b, None)).await;
        assert_eq!((jb.error_code, jb.generation, jb.leader), (0, 2, b.clone()));
        assert_eq!(c.describe("g").await.unwrap().members.len(), 1);
    }

    #[tokio::test]
    async fn a_static_member_that_restarts_keeps_its_place_without_a_rebalance() {
        let c = Coordinator::new();
        c.start_expiry();
        let first = c.join(join("g", "", Some("i-1"))).await;
        assert_eq!(first.error_code, 0, "static members need no second join");
        let id = first.member_id.clone();
        c.sync("g", first.generation, &id, vec![(id.clone(), Bytes::from_static(b"a"))]).await;
        let again = c.join(join("g", "", Some("i-1"))).await;
        assert_eq!((again.error_code, again.member_id, again.generation), (0, id, first.generation));
    }

    /// As Kafka: the leader rejoining a stable group starts a new generation (it may have seen
    /// a topic appear that the subscriptions do not show); a follower rejoining unchanged gets
    /// the current one back.
    #[tokio::test]
    async fn the_leader_rejoining_a_stable_group_rebalances_and_a_follower_does_not() {
        let c = Coordinator::new();
        c.start_expiry();
        let a = c.join(join("g", "", None)).await.member_id;
        let first = c.join(join("g", &a, None)).await;
        assert_eq!((first.generation, first.leader.as_str()), (1, a.as_str()));
        c.sync("g", 1, &a, vec![(a.clone(), Bytes::new())]).await;
        let again = c.join(join("g", &a, None)).await;
        assert_eq!((again.error_code, again.generation, again.members.len()), (code::NONE, 2, 1));
        c.sync("g", 2, &a, vec![(a.clone(), Bytes::from_static(b"p0"))]).await;
        // A follower joins (generation 3), then rejoins unchanged: still generation 3.
        let b = c.join(join("g", "", None)).await.member_id;
        let c2 = c.clone();
        let b2 = b.clone();
        let jb = tokio::spawn(async move { c2.join(join("g", &b2, None)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ja = c.join(join("g", &a, None)).await;
        let jb = jb.await.unwrap();
        assert_eq!((ja.generation, jb.generation, ja.leader.as_str()), (3, 3, a.as_str()));
        let c3 = c.clone();
        let b3 = b.clone();
        let follower = tokio::spawn(async move { c3.sync("g", 3, &b3, Vec::new()).await });
        c.sync("g", 3, &a, vec![(a.clone(), Bytes::new()), (b.clone(), Bytes::from_static(b"p1"))]).await;
        assert_eq!(&follower.await.unwrap().assignment[..], b"p1");
        let rejoined = c.join(join("g", &b, None)).await;
        assert_eq!((rejoined.error_code, rejoined.generation), (code::NONE, 3));
        assert_eq!(c.heartbeat("g", 3, &a).await, code::NONE, "no rebalance started");
    }

    /// Kafka's `group.initial.rebalance.delay.ms`: the first rebalance of an empty group waits
    /// for more members, so two consumers starting together share one generation.
    #[tokio::test]
    async fn the_first_rebalance_of_an_empty_group_waits_the_initial_delay() {
        let clock = freshet_log::clock::ManualClock::new(1_000_000);
        let c = Coordinator::with_clock(clock.clone());
        c.set_initial_rebalance_delay(Duration::from_secs(3));
        c.start_expiry();
        // A rebalance timeout longer than the delay and its extension.
        let join = |member: &str| JoinRequest { rebalance_timeout: Duration::from_secs(10), ..join("g", member, None) };
        let a = c.join(join("")).await.member_id;
        let b = c.join(join("")).await.member_id;
        let (c1, c2) = (c.clone(), c.clone());
        let (ja_req, jb_req) = (join(&a), join(&b));
        let ja = tokio::spawn(async move { c1.join(ja_req).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!ja.is_finished(), "the first join waits the delay");
        clock.advance_ms(1_000);
        let jb = tokio::spawn(async move { c2.join(jb_req).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        clock.advance_ms(2_500);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!ja.is_finished(), "a member joining during the delay extends it");
        clock.advance_ms(1_000);
        let (ja, jb) = (ja.await.unwrap(), jb.await.unwrap());
        assert_eq!((ja.generation, jb.generation), (1, 1), "both in the first generation");
    }
}
