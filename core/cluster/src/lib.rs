//! Freshet's cluster: the metadata quorum and the active controller.
//!
//! Role: a cluster of brokers agrees on its metadata (brokers, topics, partitions with their
//! replicas, leaders, leader epochs and ISR, configs, producer-id blocks) the way KRaft does:
//! controllers replicate a log of [`MetadataRecord`]s through a Raft quorum, every node applies
//! the committed records to a [`MetadataImage`], and the quorum's leader is the active
//! [`Controller`], which turns requests (register a broker, heartbeat, create a topic, ...) into
//! records. Partition data does not go through the quorum: it moves by Fetch between brokers.
//!
//! Layout: [`records`] (the log's records), [`image`] (applying them), [`controller`] (the pure
//! decisions: placement, fencing, elections), [`Controller`] (the active controller: sessions and
//! serialized proposals), [`raft`] (openraft behind the [`Quorum`] trait: storage on a [`Disk`],
//! messages over a [`raft::Transport`]), [`replication`] (partition data: the leader's and the
//! follower's sides of Kafka's replication protocol over a broker's log).
//!
//! Boundary: no broker and no sockets here. The broker carries [`raft::RaftRequest`]s between
//! controllers and serves clients from the image; the simulation tests carry them in memory
//! under a seeded clock and network.

pub mod controller;
pub mod image;
pub mod raft;
pub mod records;
pub mod replication;
mod service;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

pub use crate::controller::ControllerError;
pub use crate::image::MetadataImage;
pub use crate::records::{MetadataBatch, MetadataRecord};
pub use crate::service::{Controller, ControllerConfig, Heartbeat, HeartbeatReply, QuorumDescription, ReplicaProgress};

/// Where a quorum node's metadata log stands (Kafka's DescribeQuorum reports it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumProgress {
    /// The last entry applied to the image: committed.
    pub committed: u64,
    /// The last entry in this node's log.
    pub last_log_index: u64,
    /// The voters, each with the last index its log is known to match the leader's (known on
    /// the leader only; this node's is its last log index).
    pub voters: std::collections::BTreeMap<raft::NodeId, Option<u64>>,
}

/// Why the quorum did not commit or confirm.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// This node is not the leader; `leader` is the one it knows, if any.
    #[error("this controller is not the quorum's leader (the leader is {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<raft::NodeId>,
    },
    /// The quorum could not act (no majority reachable, the node stopping, storage failing).
    #[error("the metadata quorum failed: {0}")]
    Failed(String),
}

/// The metadata quorum as the controller sees it: a replicated log of metadata batches and the
/// image applied from it. openraft implements it ([`raft::QuorumNode`]); nothing above this trait
/// names openraft.
#[async_trait]
pub trait Quorum: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> raft::NodeId;
    /// The leader this node knows of.
    fn leader(&self) -> Option<raft::NodeId>;
    /// The current term: a new leader always has a new term.
    fn term(&self) -> u64;
    /// The image of the committed log, updated as entries are applied.
    fn image(&self) -> watch::Receiver<Arc<MetadataImage>>;
    /// Commits `batch` (on the leader only) and answers its log index once it is applied here.
    async fn propose(&self, batch: MetadataBatch) -> Result<u64, QuorumError>;
    /// Where the metadata log stands on this node, and, on the leader, how far each voter's log
    /// is known to match its own.
    fn progress(&self) -> QuorumProgress;
    /// Confirms this node still leads (a majority answers) and returns the index the image must
    /// reach for a decision to see every committed entry and every entry this leader appended
    /// (a proposal whose caller gave up may still commit).
    async fn barrier(&self) -> Result<u64, QuorumError>;
}
