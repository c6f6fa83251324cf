//! The metadata quorum on openraft (pinned: `=0.9.25`), behind [`Quorum`](crate::Quorum).
//!
//! Every controller runs a [`QuorumNode`]: openraft's Raft over a [`Disk`] (the log, the vote,
//! snapshots of the image) and a [`Transport`] to the other controllers. Entries are
//! [`MetadataBatch`]es; applying one updates the node's image. What crosses the transport is a
//! [`RaftRequest`] and its [`RaftResponse`], serde values a network transport frames and the
//! simulation hands over in memory.
//!
//! openraft draws election timeouts from its runtime's random generator; [`Runtime`] is tokio's
//! with that generator seedable per thread ([`seed_thread_rng`]), so a simulation run replays
//! from its seed.

pub mod disk;
mod store;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::io::{self, Cursor};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InitializeError, InstallSnapshotError, NetworkError, RPCError, RaftError,
    RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AsyncRuntime, BasicNode, OptionalSend, Raft, RaftNetwork, RaftNetworkFactory, TokioRuntime};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use self::disk::{Disk, FileDisk, MemDisk};
use crate::image::MetadataImage;
use crate::records::MetadataBatch;
use crate::{Quorum, QuorumError};

/// A controller's id in the quorum (its `node.id`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The metadata quorum's openraft types: entries are metadata batches, answered with
    /// their log index.
    pub Types:
        D = MetadataBatch,
        R = u64,
        NodeId = NodeId,
        Node = BasicNode,
        AsyncRuntime = Runtime,
);

thread_local! {
    static RNG: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Seeds this thread's generator of election timeouts (the simulation's replay).
pub fn seed_thread_rng(seed: u64) {
    RNG.with(|r| *r.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Draws from this thread's seeded generator, or from the OS's when none is seeded.
pub fn thread_random() -> u64 {
    ThreadRng.next_u64()
}

/// The thread's generator as openraft asks for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRng;

impl RngCore for ThreadRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        RNG.with(|r| match r.borrow_mut().as_mut() {
            Some(rng) => rng.next_u64(),
            None => rand::thread_rng().next_u64(),
        })
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// tokio, with a seedable generator.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Runtime;

type Tokio = TokioRuntime;

impl AsyncRuntime for Runtime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = ThreadRng;
    type OneshotSender<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotSender<T>;
    type OneshotReceiver<T: OptionalSend> = <Tokio as AsyncRuntime>::OneshotReceiver<T>;
    type OneshotReceiverError = <Tokio as AsyncRuntime>::OneshotReceiverError;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        Tokio::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        ThreadRng
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        Tokio::oneshot()
    }
}

/// A Raft message from one controller to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Replication and heartbeats.
    AppendEntries(AppendEntriesRequest<Types>),
    /// An election.
    Vote(VoteRequest<NodeId>),
    /// A chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<Types>),
}

/// The answer to a [`RaftRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// To AppendEntries.
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// To Vote.
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// To InstallSnapshot.
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// Carries Raft messages between controllers. An `Err` is a message that did not arrive or was
/// not answered; Raft retries.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` from controller `from` to controller `to` and waits for the answer.
    async fn send(&self, from: NodeId, to: NodeId, request: RaftRequest) -> Result<RaftResponse, String>;
}

struct Network {
    from: NodeId,
    transport: Arc<dyn Transport>,
}

struct Client {
    from: NodeId,
    to: NodeId,
    transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<Types> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Client {
        Client { from: self.from, to: target, transport: self.transport.clone() }
    }
}

fn unreachable<E: std::error::Error>(reason: String) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::new(io::ErrorKind::NotConnected, reason)))
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected answer to {what}"),
    )))
}

impl Client {
    async fn call(&self, request: RaftRequest, option: &RPCOption) -> Result<RaftResponse, String> {
        match tokio::time::timeout(option.hard_ttl(), self.transport.send(self.from, self.to, request)).await {
            Ok(r) => r,
            Err(_) => Err(format!("controller {} did not answer within {:?}", self.to, option.hard_ttl())),
        }
    }
}

impl RaftNetwork<Types> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRequest::AppendEntries(rpc), &option).await {
            Ok(RaftResponse::AppendEntries(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e))),
            Ok(_) => Err(unexpected("AppendEntries")),
            Err(reason) => Err(unreachable(reason)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Types>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(RaftRequest::InstallSnapshot(rpc), &option).await {
            Ok(RaftResponse::InstallSnapshot(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e))),
            Ok(_) => Err(unexpected("InstallSnapshot")),
            Err(reason) => Err(unreachable(reason)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RaftRequest::Vote(rpc), &option).await {
            Ok(RaftResponse::Vote(r)) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e))),
            Ok(_) => Err(unexpected("Vote")),
            Err(reason) => Err(unreachable(reason)),
        }
    }
}

/// Timing of the quorum, from Kafka's `controller.quorum.*` settings.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// `controller.quorum.election.timeout.ms`: the least time without a leader before a
    /// controller stands (openraft draws between this and twice it).
    pub election_timeout: Duration,
    /// How often the leader heartbeats (`controller.quorum.fetch.timeout.ms` / 4 by default).
    pub heartbeat_interval: Duration,
    /// Entries between snapshots of the image (`metadata.log.max.snapshot.interval` in records).
    pub snapshot_every: u64,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        Self {
            election_timeout: Duration::from_millis(1000),
            heartbeat_interval: Duration::from_millis(200),
            snapshot_every: 5000,
        }
    }
}

/// One controller of the metadata quorum.
pub struct QuorumNode {
    id: NodeId,
    raft: Raft<Types>,
    image: watch::Receiver<Arc<MetadataImage>>,
}

impl fmt::Debug for QuorumNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuorumNode").field("id", &self.id).finish()
    }
}

impl QuorumNode {
    /// Starts controller `id` of the quorum `voters` (id to address) on `disk`. A fresh quorum
    /// is initialized with the voters; every voter does the same, and Raft keeps the first.
    pub async fn start(
        id: NodeId,
        voters: &BTreeMap<NodeId, String>,
        disk: Arc<dyn Disk>,
        transport: Arc<dyn Transport>,
        config: &QuorumConfig,
    ) -> io::Result<Self> {
        let stored = {
            let disk = disk.clone();
            if disk.blocking() {
                tokio::task::spawn_blocking(move || disk.load()).await.map_err(io::Error::other)??
            } else {
                disk.load()?
            }
        };
        let (publish, image) = watch::channel(Arc::new(MetadataImage::default()));
        let sm = store::StateMachine::load(disk.clone(), &stored, publish)?;
        let log = store::LogStore::load(disk, &stored, sm.snapshot_log_id())?;
        let election = config.election_timeout.as_millis() as u64;
        let raft_config = openraft::Config {
            cluster_name: "freshet-metadata".into(),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            install_snapshot_timeout: election * 2,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: config.snapshot_every / 2,
            ..Default::default()
        };
        let raft_config = Arc::new(raft_config.validate().map_err(io::Error::other)?);
        let network = Network { from: id, transport };
        let raft = Raft::new(id, raft_config, network, log, sm).await.map_err(io::Error::other)?;
        let members: BTreeMap<NodeId, BasicNode> =
            voters.iter().map(|(id, addr)| (*id, BasicNode::new(addr))).collect();
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(io::Error::other(e)),
        }
        Ok(Self { id, raft, image })
    }

    /// Answers a message from another controller.
    pub async fn handle(&self, request: RaftRequest) -> RaftResponse {
        match request {
            RaftRequest::AppendEntries(r) => RaftResponse::AppendEntries(self.raft.append_entries(r).await),
            RaftRequest::Vote(r) => RaftResponse::Vote(self.raft.vote(r).await),
            RaftRequest::InstallSnapshot(r) => RaftResponse::InstallSnapshot(self.raft.install_snapshot(r).await),
        }
    }

    /// openraft's view of this node (leader, term, log indexes), updated as it changes.
    pub fn metrics(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>> {
        self.raft.metrics()
    }

    /// The voters of the committed membership.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    }

    /// Stops the node: it answers nothing more.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

fn not_leader(leader: Option<NodeId>) -> QuorumError {
    QuorumError::NotLeader { leader }
}

#[async_trait]
impl Quorum for QuorumNode {
    fn node_id(&self) -> NodeId {
        self.id
    }

    fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    async fn propose(&self, batch: MetadataBatch) -> Result<u64, QuorumError> {
        match self.raft.client_write(batch).await {
            Ok(r) => Ok(r.log_id.index),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(f.leader_id)),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(QuorumError::Failed(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(QuorumError::Failed(e.to_string())),
        }
    }

    fn progress(&self) -> crate::QuorumProgress {
        let metrics = self.raft.metrics().borrow().clone();
        let voters: BTreeSet<NodeId> = metrics.membership_config.membership().voter_ids().collect();
        let matched = |voter: NodeId| {
            if voter == metrics.id {
                metrics.last_log_index
            } else {
                metrics.replication.as_ref().and_then(|r| r.get(&voter).copied().flatten()).map(|l| l.index)
            }
        };
        crate::QuorumProgress {
            committed: metrics.last_applied.map_or(0, |l| l.index),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            voters: voters.into_iter().map(|v| (v, matched(v))).collect(),
        }
    }

    async fn barrier(&self) -> Result<u64, QuorumError> {
        match self.raft.ensure_linearizable().await {
            // Past the read index, also every entry this leader has appended: a request whose
            // answer timed out may still commit, and the next decision must see it.
            Ok(read) => Ok(read.map_or(0, |l| l.index).max(self.raft.metrics().borrow().last_log_index.unwrap_or(0))),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => Err(not_leader(f.leader_id)),
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                Err(QuorumError::Failed(format!("no quorum: {e}")))
            }
            Err(RaftError::Fatal(e)) => Err(QuorumError::Failed(e.to_string())),
        }
    }
}

/// A snapshot's bytes as openraft carries them.
pub type SnapshotData = Cursor<Vec<u8>>;
