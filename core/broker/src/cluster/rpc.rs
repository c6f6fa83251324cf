//! The controller listener's protocol: what nodes of a cluster say to the controllers.
//!
//! A frame is a 4-byte big-endian length and a JSON [`Call`], answered by one [`Reply`] frame.
//! Controllers carry their Raft messages over it, and brokers register, heartbeat, follow the
//! metadata image and forward admin requests. Clients never reach this listener (Kafka's
//! `controller.listener.names` is not in what Metadata advertises), so the protocol is Freshet's
//! own: openraft's messages are not KRaft's, and JSON keeps it readable in a packet capture.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use freshet_cluster::controller::{IsrChange, NewTopic, Registration};
use freshet_cluster::raft::{NodeId, RaftRequest, RaftResponse, Transport};
use freshet_cluster::records::{AclEntry, BrokerId, ConfigResource, TopicId};
use freshet_cluster::{ControllerError, Heartbeat, HeartbeatReply, MetadataImage, QuorumDescription};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest frame: a metadata image of many thousands of partitions.
const MAX_FRAME: usize = 256 << 20;

/// A request to a controller.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Call {
    /// Between controllers.
    Raft(RaftRequest),
    /// BrokerRegistration.
    Register(Registration),
    /// BrokerHeartbeat.
    Heartbeat(Heartbeat),
    /// The committed image, once it is past offset `known` (waiting up to `wait_ms`).
    Image { known: u64, wait_ms: u64 },
    /// CreateTopics, one topic.
    CreateTopic { topic: NewTopic, validate_only: bool },
    /// DeleteTopics, one topic.
    DeleteTopic { name: String },
    /// CreatePartitions, one topic.
    CreatePartitions { name: String, count: i32, assignments: Vec<Vec<BrokerId>>, validate_only: bool },
    /// ElectLeaders (PREFERRED), one partition.
    ElectPreferred { topic: String, partition: i32 },
    /// ElectLeaders (UNCLEAN), one partition.
    ElectUnclean { topic: String, partition: i32 },
    /// AllocateProducerIds.
    AllocateProducerIds { broker_id: BrokerId, broker_epoch: i64 },
    /// IncrementalAlterConfigs of one resource.
    AlterConfigs { resource: ConfigResource, changes: Vec<(String, Option<String>)> },
    /// CreateAcls (`add`) and DeleteAcls (`remove`, the ACLs the filters matched).
    AlterAcls { add: Vec<AclEntry>, remove: Vec<AclEntry> },
    /// DescribeQuorum.
    DescribeQuorum,
    /// AlterPartition: a leader's ISR change.
    AlterPartition(IsrChange),
    /// AlterPartitionReassignments, one partition (`target` `None`: cancel).
    Reassign { topic: String, partition: i32, target: Option<Vec<BrokerId>>, allow_rf_change: bool },
}

/// A controller's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// To [`Call::Raft`].
    Raft(RaftResponse),
    /// This node is not the active controller; the one it knows of, if any.
    NotController(Option<NodeId>),
    /// To Register: the broker's epoch.
    Epoch(Result<i64, ControllerError>),
    /// To Heartbeat.
    Heartbeat(Result<HeartbeatReply, ControllerError>),
    /// To Image: the image if newer than asked.
    Image(Option<Box<MetadataImage>>),
    /// To CreateTopic: the id, partitions and replication factor.
    Created(Result<(TopicId, i32, i16), ControllerError>),
    /// To AllocateProducerIds: the first id and the block's size.
    ProducerIds(Result<(i64, i64), ControllerError>),
    /// To DescribeQuorum.
    Quorum(Result<QuorumDescription, ControllerError>),
    /// To the other admin calls.
    Done(Result<(), ControllerError>),
    /// The node could not serve the call (not a controller, stopping).
    Unavailable(String),
}

/// Reads one frame's JSON value; `None` at a clean end of stream.
pub(crate) async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> Result<Option<T>, String> {
    let size = match stream.read_u32().await {
        Ok(size) => size as usize,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("reading a frame size: {e}")),
    };
    if size > MAX_FRAME {
        return Err(format!("a frame of {size} bytes (the maximum is {MAX_FRAME})"));
    }
    let mut frame = vec![0u8; size];
    stream.read_exact(&mut frame).await.map_err(|e| format!("reading a frame of {size} bytes: {e}"))?;
    serde_json::from_slice(&frame).map(Some).map_err(|e| format!("a frame that is not a controller message: {e}"))
}

/// Writes one frame.
pub(crate) async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> Result<(), String> {
    let body = serde_json::to_vec(value).map_err(|e| format!("encoding a controller message: {e}"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.map_err(|e| format!("writing a controller message: {e}"))
}

/// Connections to the controllers: one kept open per address, used by one call at a time.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    conns: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<Option<TcpStream>>>>>,
}

impl Peers {
    /// Sends `call` to `addr` and waits up to `timeout` for the reply. The connection is taken
    /// out of its slot for the exchange and put back only after a whole reply was read: a call
    /// that fails, times out or is dropped half-way (its caller gave up) closes it, so a late
    /// reply is never read as the answer to the next call.
    pub(crate) async fn call(&self, addr: SocketAddr, call: &Call, timeout: Duration) -> Result<Reply, String> {
        let slot = self.conns.lock().expect("controller connections lock").entry(addr).or_default().clone();
        let mut conn = slot.lock().await;
        let taken = conn.take();
        let attempt = async move {
            let mut stream = match taken {
                Some(stream) => stream,
                None => {
                    let stream = TcpStream::connect(addr).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
                    let _ = stream.set_nodelay(true);
                    stream
                }
            };
            write_frame(&mut stream, call).await?;
            let reply = read_frame(&mut stream).await?.ok_or_else(|| format!("{addr} closed the connection"))?;
            Ok::<_, String>((stream, reply))
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok((stream, reply))) => {
                *conn = Some(stream);
                Ok(reply)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("{addr} did not answer within {timeout:?}")),
        }
    }
}

/// Raft messages between controllers over the controller listeners.
#[derive(Debug)]
pub(crate) struct TcpTransport {
    pub(crate) peers: Arc<Peers>,
    pub(crate) voters: std::collections::BTreeMap<NodeId, SocketAddr>,
}

#[async_trait]
impl Transport for TcpTransport {
    async fn send(&self, _from: NodeId, to: NodeId, request: RaftRequest) -> Result<RaftResponse, String> {
        let addr = *self.voters.get(&to).ok_or_else(|| format!("controller {to} is not a voter"))?;
        match self.peers.call(addr, &Call::Raft(request), Duration::from_secs(10)).await? {
            Reply::Raft(response) => Ok(response),
            other => Err(format!("controller {to} answered {other:?} to a Raft message")),
        }
    }
}
