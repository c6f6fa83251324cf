//! The consumer-group coordinator of the classic protocol, as the broker serves it.
//!
//! A group goes Empty -> PreparingRebalance (members join) -> CompletingRebalance (the leader
//! computes assignments) -> Stable, and back to PreparingRebalance whenever a member joins, leaves
//! or misses its session timeout. A JoinGroup waits until every known member has joined again
//! (or the rebalance timeout passes, when the missing ones are removed); then all joins are
//! answered at once: the leader with every member's protocol metadata. A SyncGroup from a
//! follower waits for the leader's, which carries everyone's assignment. Heartbeats tell members
//! when a rebalance is in progress. A member waiting in a join or a sync is alive; any other
//! member that neither heartbeats nor calls within its session timeout is removed, whatever the
//! group's state. A first join without a member id (JoinGroup v4+) gets MEMBER_ID_REQUIRED and a
//! new id, and the group's join phase waits for such pending members to join with it.
//!
//! Members with a `group.instance.id` (static membership) survive restarts: a new instance
//! joining with the same instance id takes the old member's place under a new member id, without
//! a rebalance in a stable group whose protocol it does not change, and the old instance is
//! fenced: its join, sync, heartbeat, commit or leave gets FENCED_INSTANCE_ID. A static member
//! that does not rejoin a rebalance stays in the group until its session runs out.
//!
//! Membership lives in memory; committed offsets live in the log
//! ([`GroupOffsets`](crate::group::GroupOffsets)). As Kafka's coordinator does, the broker also
//! stores each completed rebalance's outcome there ([`Coordinator::snapshot`], a GroupMetadata
//! record), so a coordinator that takes a group over, or restarts, goes on with its members and
//! generation ([`Coordinator::restore`]) instead of making every member join again.

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

/// A group's membership as Kafka's coordinator stores it in `__consumer_offsets` (its
/// GroupMetadata record): the outcome of the last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// e.g. `consumer`.
    pub protocol_type: String,
    /// The generation.
    pub generation: i32,
    /// The protocol (assignor) chosen.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: Option<String>,
    /// When it was stored (ms, the coordinator's clock).
    pub timestamp: i64,
    /// The members, none for an empty group.
    pub members: Vec<MemberSnapshot>,
}

/// A member in a [`GroupSnapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout: Duration,
    /// Session timeout.
    pub session_timeout: Duration,
    /// Its metadata for the chosen protocol.
    pub subscription: Bytes,
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

impl Member {
    /// Its metadata for `protocol` (empty when it offered none).
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, md)| md.clone()).unwrap_or_default()
    }
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
    /// Member ids given with MEMBER_ID_REQUIRED whose join has not come yet, with when they are
    /// forgotten (their session timeout). The join phase waits for them.
    pending_members: BTreeMap<String, i64>,
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
            pending_members: BTreeMap::new(),
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
        let all_joined = self.members.values().all(|m| m.joined) && self.pending_members.is_empty();
        if !all_joined && !force {
            return;
        }
        self.initial_delay = None;
        // As Kafka: dynamic members that did not rejoin are removed; static ones stay until their
        // session runs out.
        self.members.retain(|id, m| {
            let stays = m.joined || m.instance_id.is_some();
            if !stays {
                tracing::info!(member = %id, "removed from its group: it did not rejoin in time");
            }
            stays
        });
        if !self.members.is_empty() && !self.members.values().any(|m| m.joined) {
            // Only static members that have not rejoined: wait another rebalance timeout for one
            // to rejoin or for their sessions to run out.
            let timeout = self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or_default();
            self.rebalance_deadline = Some(now.saturating_add(timeout.as_millis() as i64));
            return;
        }
        self.rebalance_deadline = None;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.generation += 1;
            self.leader = None;
            self.protocol = None;
            return;
        }
        // The leader stays if it rejoined; otherwise a member that did leads.
        let leader = match &self.leader {
            Some(l) if self.members.get(l).is_some_and(|m| m.joined) => l.clone(),
            _ => self.members.iter().find(|(_, m)| m.joined).map(|(id, _)| id.clone()).expect("a joined member"),
        };
        // The first protocol, in the leader's preference order, that every member offers.
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
        // Sessions count from the answer: waiting in a join is being alive.
        for m in self.members.values_mut() {
            m.last_seen = now;
        }
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

    /// The member id of the static member `instance`, if it is one of the group's.
    fn static_member(&self, instance: &str) -> Option<String> {
        self.members.iter().find(|(_, m)| m.instance_id.as_deref() == Some(instance)).map(|(id, _)| id.clone())
    }

    /// Whether a request from `member_id` (with its `instance` id, if static) comes from a current
    /// member: FENCED_INSTANCE_ID when another instance has taken the instance id's place,
    /// UNKNOWN_MEMBER_ID when there is no such member.
    fn check_member(&self, member_id: &str, instance: Option<&str>) -> i16 {
        if let Some(instance) = instance {
            match self.static_member(instance) {
                Some(current) if current != member_id => return code::FENCED_INSTANCE_ID,
                Some(_) => {}
                None => return code::UNKNOWN_MEMBER_ID,
            }
        }
        if self.members.contains_key(member_id) {
            code::NONE
        } else {
            code::UNKNOWN_MEMBER_ID
        }
    }

    /// A new instance of static member `old` takes its place as `new`: the old instance's waiting
    /// join or sync is answered FENCED_INSTANCE_ID, and the leadership moves with the place.
    fn replace_static_member(&mut self, old: &str, new: &str) {
        let member = self.members.remove(old).expect("a member");
        if let Some(i) = self.pending_joins.iter().position(|(id, _)| id == old) {
            let (_, tx) = self.pending_joins.remove(i);
            let _ = tx.send(JoinResponse {
                error_code: code::FENCED_INSTANCE_ID,
                member_id: old.to_string(),
                generation: -1,
                ..Default::default()
            });
        }
        if let Some(i) = self.pending_syncs.iter().position(|(id, _)| id == old) {
            let (_, tx) = self.pending_syncs.remove(i);
            let _ = tx.send(SyncResponse { error_code: code::FENCED_INSTANCE_ID, ..Default::default() });
        }
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.to_string());
        }
        self.members.insert(new.to_string(), member);
    }

    /// Whether every member still offers the group's chosen protocol.
    fn protocol_still_offered(&self) -> bool {
        self.protocol.as_ref().is_some_and(|p| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == p)))
    }

    fn remove_member(&mut self, member_id: &str, now: i64) {
        if let Some(i) = self.pending_joins.iter().position(|(id, _)| id == member_id) {
            // Its join is answered, so that a client still there joins again.
            let (_, tx) = self.pending_joins.remove(i);
            let _ = tx.send(JoinResponse { error_code: code::UNKNOWN_MEMBER_ID, ..Default::default() });
        }
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
    /// Told the name of each group the expiry task left without members ([`Coordinator::watch_emptied`]).
    emptied: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>>,
}

impl Default for Coordinator {
    fn default() -> Self {
        Coordinator {
            groups: Arc::default(),
            max_group_size: Arc::new(std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_GROUP_SIZE)),
            expiring: Arc::default(),
            initial_rebalance_delay_ms: Arc::default(),
            clock: freshet_log::clock::system(),
            emptied: Arc::default(),
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

    /// The names of groups the expiry task leaves without members from now on (their last
    /// members' sessions or the rebalance timeout ran out), for the broker to store them empty as
    /// Kafka's coordinator does: their next coordinator must not bring those members back. One
    /// watcher per coordinator and its clones; a later call replaces the earlier.
    pub fn watch_emptied(&self) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *self.emptied.lock().expect("emptied lock") = Some(tx);
        rx
    }

    /// Checks sessions and rebalance deadlines every 100 ms, while the coordinator lives (once for a
    /// coordinator and its clones, however often called).
    pub fn start_expiry(&self) {
        if self.expiring.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let groups = Arc::downgrade(&self.groups);
        let clock = self.clock.clone();
        let emptied = self.emptied.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(groups) = groups.upgrade() else { return };
                let mut groups = groups.lock().await;
                let now = clock.now_ms();
                for (name, group) in groups.iter_mut() {
                    let had_members = !group.members.is_empty();
                    // A member waiting in a join or a sync is alive (as in Kafka); any other must
                    // have been heard from within its session timeout, in every state.
                    let expired: Vec<String> = group
                        .members
                        .iter()
                        .filter(|(id, m)| {
                            let waiting = (group.state == GroupState::PreparingRebalance && m.joined)
                                || group.pending_syncs.iter().any(|(s, _)| s == *id);
                            !waiting && now.saturating_sub(m.last_seen) > m.session_timeout.as_millis() as i64
                        })
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in expired {
                        tracing::info!(group = %name, member = %id, "session expired");
                        group.remove_member(&id, now);
                    }
                    let before = group.pending_members.len();
                    group.pending_members.retain(|_, until| now < *until);
                    if group.pending_members.len() < before {
                        group.maybe_complete_join(false, now);
                    }
                    if group.rebalance_deadline.is_some_and(|d| now >= d) {
                        group.maybe_complete_join(true, now);
                    } else if group.initial_delay.is_some_and(|(until, _)| now >= until) {
                        group.maybe_complete_join(false, now);
                    }
                    if had_members && group.members.is_empty() {
                        if let Some(tx) = emptied.lock().expect("emptied lock").as_ref() {
                            let _ = tx.send(name.clone());
                        }
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
            let now = self.clock.now_ms();
            let mut member_id = request.member_id.clone();
            let current_static = request.instance_id.as_deref().and_then(|i| group.static_member(i));
            let mut replaced = false;
            if member_id.is_empty() {
                let new_id = new_member_id(&request.client_id);
                if let Some(old) = current_static {
                    // A new instance of a static member takes the old one's place under a new id;
                    // the old instance is fenced.
                    tracing::info!(group = %request.group, instance = ?request.instance_id, %old, new = %new_id, "static member replaced by a new instance");
                    let leader_before = group.leader.clone().unwrap_or_default();
                    group.replace_static_member(&old, &new_id);
                    let m = group.members.get_mut(&new_id).expect("replaced");
                    m.protocols = request.protocols.clone();
                    m.session_timeout = request.session_timeout;
                    m.rebalance_timeout = request.rebalance_timeout;
                    m.client_id = request.client_id.clone();
                    m.client_host = request.client_host.clone();
                    m.last_seen = now;
                    if group.state == GroupState::Stable && group.protocol_still_offered() {
                        // No rebalance. The leader's id from before is returned, so that a new
                        // instance of the leader does not compute assignments a stable group
                        // would not hand out; it syncs for its assignment as a follower does.
                        return JoinResponse {
                            error_code: code::NONE,
                            generation: group.generation,
                            protocol_type: Some(group.protocol_type.clone()),
                            protocol_name: group.protocol.clone(),
                            leader: leader_before,
                            member_id: new_id,
                            members: Vec::new(),
                        };
                    }
                    // Otherwise a rebalance: while the leader assigns, it may have the old id.
                    replaced = true;
                    member_id = new_id;
                } else if request.requires_known_member_id && request.instance_id.is_none() {
                    // The client joins again with this id (KIP-394); until then it is pending.
                    let until = now.saturating_add(request.session_timeout.as_millis() as i64);
                    group.pending_members.insert(new_id.clone(), until);
                    return JoinResponse {
                        error_code: code::MEMBER_ID_REQUIRED,
                        member_id: new_id,
                        ..Default::default()
                    };
                } else {
                    member_id = new_id;
                }
            } else if request.instance_id.is_some() {
                let error = match current_static {
                    Some(current) if current != member_id => code::FENCED_INSTANCE_ID,
                    Some(_) => code::NONE,
                    None => code::UNKNOWN_MEMBER_ID,
                };
                if error != code::NONE {
                    tracing::info!(group = %request.group, member = %member_id, instance = ?request.instance_id, code = error, "join refused");
                    return JoinResponse { error_code: error, member_id, ..Default::default() };
                }
            } else if group.pending_members.remove(&member_id).is_none() && !group.members.contains_key(&member_id) {
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
                last_seen: now,
                joined: false,
                assignment: Bytes::new(),
            });
            member.protocols = request.protocols.clone();
            member.session_timeout = request.session_timeout;
            member.rebalance_timeout = request.rebalance_timeout;
            member.last_seen = now;
            // As Kafka's coordinator: a follower rejoining a stable group with nothing changed,
            // or any member rejoining unchanged while the leader assigns (it missed its join
            // answer), gets the current generation back without a rebalance. The leader
            // rejoining a stable group forces one: that is how a consumer's leader reacts to
            // what its metadata shows changed (a topic created, partitions added), which the
            // members' subscriptions do not show.
            let leader = group.leader.clone().unwrap_or_default();
            let is_leader = leader == member_id;
            if !changed
                && !replaced
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

    /// SyncGroup: the leader's carries every assignment; followers wait for it. `instance` is the
    /// static member's `group.instance.id`.
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResponse {
        let receiver = {
            let mut groups = self.groups.lock().await;
            let Some(group) = groups.get_mut(group_id) else {
                return SyncResponse { error_code: code::UNKNOWN_MEMBER_ID, ..Default::default() };
            };
            let error = group.check_member(member_id, instance);
            if error != code::NONE {
                return SyncResponse { error_code: error, ..Default::default() };
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
                let now = self.clock.now_ms();
                for (id, tx) in std::mem::take(&mut group.pending_syncs) {
                    // Sessions count from the answer: waiting in a sync is being alive.
                    if let Some(m) = group.members.get_mut(&id) {
                        m.last_seen = now;
                    }
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

    /// Heartbeat: keeps the session alive; says when to rejoin. `instance` is the static member's
    /// `group.instance.id`.
    pub async fn heartbeat(&self, group_id: &str, generation: i32, member_id: &str, instance: Option<&str>) -> i16 {
        let mut groups = self.groups.lock().await;
        let Some(group) = groups.get_mut(group_id) else { return code::UNKNOWN_MEMBER_ID };
        let error = group.check_member(member_id, instance);
        if error != code::NONE {
            return error;
        }
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
                if !member_id.is_empty()
                    && group.check_member(member_id, instance.as_deref()) == code::FENCED_INSTANCE_ID
                {
                    return code::FENCED_INSTANCE_ID;
                }
                let id = match instance {
                    Some(i) => group.static_member(i),
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

    /// Whether an offset commit from `member_id` (with its `instance` id, if static) at
    /// `generation` may go through, as Kafka decides: a commit with no generation (-1) and no
    /// member, from the admin client or a consumer outside group management, only into a group
    /// without members (or any group, in a transaction); a member's only in its current
    /// generation, and not while the leader assigns.
    pub async fn check_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance: Option<&str>,
        transactional: bool,
    ) -> i16 {
        let groups = self.groups.lock().await;
        let Some(group) = groups.get(group_id) else {
            return if generation < 0 { code::NONE } else { code::ILLEGAL_GENERATION };
        };
        if generation < 0 && group.state == GroupState::Empty {
            return code::NONE;
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            let error = group.check_member(member_id, instance);
            if error != code::NONE {
                return error;
            }
            if group.generation != generation {
                return code::ILLEGAL_GENERATION;
            }
        } else if !transactional {
            return code::UNKNOWN_MEMBER_ID;
        }
        if !transactional && group.state == GroupState::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        code::NONE
    }

    /// When `group_id` has members: whether it is a consumer group (protocol type `consumer`)
    /// and the topics its members subscribe to, read from their subscriptions.
    pub async fn subscriptions(&self, group_id: &str) -> Option<(bool, std::collections::BTreeSet<String>)> {
        let groups = self.groups.lock().await;
        let group = groups.get(group_id).filter(|g| !g.members.is_empty())?;
        if group.protocol_type != "consumer" {
            return Some((false, Default::default()));
        }
        let topics = group
            .members
            .values()
            .flat_map(|m| m.protocols.iter().map(|(_, metadata)| metadata))
            .filter_map(|metadata| crate::consumer_protocol::decode_subscription(metadata))
            .flatten()
            .collect();
        Some((true, topics))
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
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// What to store of `group_id` after a rebalance completed or its last member left: its
    /// membership when Stable or Empty; `None` in the middle of a rebalance (nothing settled to
    /// store) or for a group this coordinator does not know.
    pub async fn snapshot(&self, group_id: &str) -> Option<GroupSnapshot> {
        let groups = self.groups.lock().await;
        let group = groups.get(group_id)?;
        if !matches!(group.state, GroupState::Stable | GroupState::Empty) {
            return None;
        }
        let protocol = group.protocol.clone().unwrap_or_default();
        Some(GroupSnapshot {
            protocol_type: group.protocol_type.clone(),
            generation: group.generation,
            protocol: group.protocol.clone(),
            leader: group.leader.clone(),
            timestamp: self.clock.now_ms(),
            members: group
                .members
                .iter()
                .map(|(id, m)| MemberSnapshot {
                    member_id: id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout,
                    session_timeout: m.session_timeout,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }

    /// Takes over a group from what was stored of it (this coordinator took the group's
    /// partition over, or restarted): its members, generation, protocol, leader and
    /// assignments, each member's session counting from now, as Kafka's coordinator loads a
    /// group. A group this coordinator already holds at the same or a later generation is kept.
    pub async fn restore(&self, group_id: &str, snapshot: GroupSnapshot) {
        let mut groups = self.groups.lock().await;
        if groups.get(group_id).is_some_and(|g| g.generation >= snapshot.generation && !g.members.is_empty()) {
            return;
        }
        let now = self.clock.now_ms();
        let mut group = Group::new();
        group.state = if snapshot.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        group.generation = snapshot.generation;
        group.protocol_type = snapshot.protocol_type;
        group.leader = snapshot.leader;
        for m in snapshot.members {
            let protocols = snapshot.protocol.iter().map(|p| (p.clone(), m.subscription.clone())).collect();
            group.members.insert(
                m.member_id,
                Member {
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols,
                    last_seen: now,
                    joined: false,
                    assignment: m.assignment,
                },
            );
        }
        group.protocol = snapshot.protocol;
        groups.insert(group_id.to_owned(), group);
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
mod tests;
