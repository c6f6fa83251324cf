//! The network: the listener, connection limits, and each connection's frames.
//!
//! Each connection reads size-prefixed frames (the size bounded by `max_frame_bytes` before
//! anything is allocated) and answers them one after another, so responses go out in request
//! order; connections are served concurrently. A frame that is not a valid request closes its
//! own connection only.
//!
//! Connections are bounded as Kafka bounds them: at `max_connections` the listener stops
//! accepting until one closes (clients wait in the kernel's backlog rather than being refused),
//! and a client address over `max_connections_per_ip` has its new connection closed at once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use freshet_coord::group::GroupOffsets;
use freshet_coord::membership::Coordinator;
use freshet_coord::transactions::{LocalParticipants, Transactions};
use freshet_log::{Error, Log, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::dispatch::{handle_frame, Served};

/// Settings of a broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The host clients are told to connect to (default: the listen address's IP).
    pub advertised_host: Option<String>,
    /// The largest request frame accepted (Kafka's `socket.request.max.bytes`, 100 MiB).
    pub max_frame_bytes: usize,
    /// Whether a Metadata request may create the topics it names (`auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics (`num.partitions`).
    pub default_partitions: u32,
    /// Connections served at once (Kafka's `max.connections`); at the limit the listener waits
    /// for one to close before accepting another.
    pub max_connections: usize,
    /// Connections from one client address at once (Kafka's `max.connections.per.ip`); a new
    /// connection over it is closed at once.
    pub max_connections_per_ip: usize,
    /// Members one consumer group takes (Kafka's `group.max.size`); a join past it is refused
    /// with GROUP_MAX_SIZE_REACHED.
    pub group_max_size: usize,
    /// How long the first rebalance of an empty group waits for more members (Kafka's
    /// `group.initial.rebalance.delay.ms`; 0, as Kafka's shipped `server.properties` sets it).
    pub group_initial_rebalance_delay: std::time::Duration,
    /// Whether and how ACLs are enforced (Kafka's `authorizer.class.name`,
    /// `allow.everyone.if.no.acl.found`, `super.users`); off by default, as in Kafka.
    pub authorizer: crate::acl::AuthorizerConfig,
    /// The session timeouts a member may ask for (Kafka's `group.min.session.timeout.ms` and
    /// `group.max.session.timeout.ms`); a join outside them gets INVALID_SESSION_TIMEOUT. The
    /// least is 1 s by default (Kafka's is 6 s), so a member's death is seen sooner.
    pub group_session_timeouts: std::ops::RangeInclusive<std::time::Duration>,
    /// This broker's id (Kafka's `node.id`), as Metadata names it.
    pub node_id: i32,
    /// The cluster's id, as Metadata and DescribeCluster give it (the data directory's
    /// `meta.properties` holds it).
    pub cluster_id: String,
    /// This node's place in a cluster of brokers (`controller.quorum.voters` naming other
    /// nodes); `None`: a one-node cluster whose broker is its own controller.
    pub cluster: Option<crate::cluster::ClusterConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            max_frame_bytes: 100 << 20,
            auto_create_topics: true,
            default_partitions: 1,
            // Each connection holds a socket and a task; the bound keeps the broker inside the
            // file descriptors a default process gets raised to, with room for the log's files.
            max_connections: 10_000,
            // Kafka's default: no limit of its own below `max_connections`.
            max_connections_per_ip: usize::MAX,
            group_max_size: freshet_coord::membership::DEFAULT_MAX_GROUP_SIZE,
            group_initial_rebalance_delay: std::time::Duration::ZERO,
            authorizer: crate::acl::AuthorizerConfig::default(),
            group_session_timeouts: std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(1_800),
            node_id: 0,
            cluster_id: "freshet".into(),
            cluster: None,
        }
    }
}

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    local_addr: SocketAddr,
    log: Log,
    cluster: Option<Arc<crate::cluster::ClusterNode>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The connections open from each client address.
#[derive(Debug, Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// Counts a connection from `ip` unless that address already has `max` open.
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut open = self.open.lock().expect("connection table lock");
        let n = open.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { per_ip: self.clone(), ip })
    }
}

/// One counted connection of an address; dropping it uncounts it.
#[derive(Debug)]
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.per_ip.open.lock().expect("connection table lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Broker {
    /// Listens on `config.listen` and serves `log` (its groups' offsets in `offsets`) until
    /// [`Broker::stop`].
    pub async fn start(log: Log, offsets: GroupOffsets, config: BrokerConfig) -> Result<Broker> {
        let coordinator = Coordinator::with_clock(log.clock().clone());
        Self::start_sharing(log, offsets, coordinator, config).await
    }

    /// Like [`Broker::start`], with the group coordinator `coordinator`: the embedded substrate's
    /// (`Embedded::group_coordinator`), so that consumers in this process and the broker's
    /// clients are members of the same groups.
    pub async fn start_sharing(
        log: Log,
        offsets: GroupOffsets,
        coordinator: Coordinator,
        config: BrokerConfig,
    ) -> Result<Broker> {
        for (key, value) in
            [("max.connections", config.max_connections), ("max.connections.per.ip", config.max_connections_per_ip)]
        {
            if value == 0 {
                return Err(Error::InvalidConfig {
                    key: key.into(),
                    value: "0".into(),
                    reason: "a broker that accepts no connection serves no one; give 1 or more".into(),
                });
            }
        }
        let listener = TcpListener::bind(config.listen).await.map_err(|e| Error::InvalidConfig {
            key: "listeners".into(),
            value: config.listen.to_string(),
            reason: format!("cannot listen: {e}"),
        })?;
        let local_addr = listener.local_addr().map_err(|e| Error::Internal(format!("no local address: {e}")))?;
        let log_handle = log.clone();
        let host = config.advertised_host.clone().unwrap_or_else(|| local_addr.ip().to_string());
        let (max_connections, max_per_ip) = (config.max_connections, config.max_connections_per_ip);
        let cluster = match &config.cluster {
            Some(c) => Some(
                crate::cluster::ClusterNode::start(c.clone(), Some((log.clone(), (host.clone(), local_addr.port()))))
                    .await?,
            ),
            None => None,
        };
        let mut served = Served::new(log, offsets, coordinator, config, host, i32::from(local_addr.port()));
        if let Some(cluster) = &cluster {
            // The transaction coordinator reaches partitions other brokers lead through them.
            let local = LocalParticipants::new(served.log.clone(), served.offsets.clone());
            let participants = crate::cluster::participants::ClusterParticipants::new(cluster.clone(), local);
            served.transactions =
                Transactions::with_participants(served.log.clone(), served.offsets.clone(), Arc::new(participants));
            // Coordinators move with the leadership of their topics' partitions.
            let follow = crate::cluster::coordinators::follow(
                cluster.clone(),
                served.offsets.clone(),
                served.transactions.clone(),
                served.coordinator.clone(),
            );
            cluster.spawn(follow);
        }
        served.cluster = cluster.clone();
        served.coordinator.start_expiry();
        served.offsets.start_expiry(served.coordinator.clone());
        // Transactions a previous run decided are completed before any client is served. (In a
        // cluster, by the broker that leads `__transaction_state` once it has loaded it.)
        if served.cluster.is_none() {
            served.transactions.load().await?;
            // Groups go on with the membership stored before a restart.
            for partition in 0..served.offsets.n_partitions() {
                for (group, snapshot) in served.offsets.stored_groups(partition).await? {
                    served.coordinator.restore(&group, snapshot).await;
                }
            }
        }
        match &served.cluster {
            // A cluster's ACLs and dynamic configs are its metadata's.
            Some(cluster) => {
                served.authorizer.follow(cluster.clone());
                served.dynamic.follow(cluster.clone());
            }
            None => {
                served.authorizer.load().await?;
                served.dynamic.load().await?;
            }
        }
        served.transactions.start_expiry(Duration::from_secs(1));
        let (stop, mut stopped) = watch::channel(false);
        let connections = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
        let per_ip = Arc::new(PerIp::default());
        let serving = served.cluster.clone();
        let task = tokio::spawn(async move {
            // Everything serving holds the log: the connections and the keeper of emptied
            // groups. `stop` returns once they have ended.
            let mut running = JoinSet::new();
            running.spawn(keep_emptied_groups(served.clone(), stopped.clone()));
            // A broker of a cluster serves clients once the controller has unfenced it (it has
            // caught up with the metadata), as Kafka's brokers open their listeners then: before,
            // it could tell clients of no broker at all. Clients wait in the listen backlog.
            if let Some(cluster) = serving {
                tokio::select! {
                    _ = cluster.wait_unfenced() => tracing::info!("unfenced: serving clients"),
                    _ = stopped.changed() => {
                        drain(running).await;
                        return;
                    }
                }
            }
            loop {
                // A connection slot first: at the limit, nothing more is accepted until one closes.
                let slot = tokio::select! {
                    slot = connections.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = stopped.changed() => break,
                };
                let (stream, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            continue;
                        }
                    },
                    _ = stopped.changed() => break,
                };
                let Some(ip_slot) = per_ip.admit(peer.ip(), max_per_ip) else {
                    tracing::info!(%peer, max_connections_per_ip = max_per_ip, "connection refused: too many from its address");
                    drop(stream);
                    continue;
                };
                while running.try_join_next().is_some() {}
                let served = served.clone();
                let stopped = stopped.clone();
                running.spawn(async move {
                    let _slots = (slot, ip_slot);
                    if let Err(reason) = serve_connection(stream, peer, &served, stopped).await {
                        tracing::info!(%peer, %reason, "connection closed");
                    }
                });
            }
            drain(running).await;
        });
        tracing::info!(%local_addr, "broker listening");
        Ok(Broker { local_addr, log: log_handle, cluster, stop, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its metrics (Prometheus' text exposition format): its replicas' health (partitions,
    /// leaders, under-replicated and under-min-ISR partitions, ISR shrinks and expansions,
    /// offline partitions on the active controller) and the log's appends.
    pub fn metrics(&self) -> crate::Metrics {
        crate::Metrics { log: self.log.clone(), cluster: self.cluster.clone() }
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        if let Some(cluster) = &self.cluster {
            cluster.stop().await;
        }
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How long a stopping broker lets requests in progress finish before it cancels them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Waits for a stopping broker's connections (each closes before its next request) and the
/// keeper of emptied groups; those still busy after [`STOP_GRACE`] (a join waiting for its
/// rebalance) are cancelled. Either way none holds the log afterwards.
async fn drain(mut running: JoinSet<()>) {
    let finished = tokio::time::timeout(STOP_GRACE, async { while running.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
}

/// Stores a group the coordinator's expiry left without members as empty, so that its next
/// coordinator (another broker, or this one restarted) does not bring them back; until the
/// broker stops.
async fn keep_emptied_groups(served: Served, mut stopped: watch::Receiver<bool>) {
    let mut emptied = served.coordinator.watch_emptied();
    loop {
        let group = tokio::select! {
            group = emptied.recv() => match group {
                Some(group) => group,
                None => return,
            },
            _ = stopped.changed() => return,
        };
        if crate::handlers::cluster::not_coordinator(&served, 0, &group).is_none() {
            crate::handlers::groups::store_membership(&served, &group, None).await;
        }
    }
}

/// Serves one connection until the client leaves, sends something that is not a valid request,
/// or the broker stops. The error says why the connection closed.
async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    served: &Served,
    mut stopped: watch::Receiver<bool>,
) -> std::result::Result<(), String> {
    let _ = stream.set_nodelay(true);
    loop {
        let size = tokio::select! {
            read = stream.read_i32() => match read {
                Ok(size) => size,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(format!("reading a frame size: {e}")),
            },
            _ = stopped.changed() => return Ok(()),
        };
        if size < 0 || size as usize > served.config.max_frame_bytes {
            return Err(format!("a frame of {size} bytes (the maximum is {})", served.config.max_frame_bytes));
        }
        let mut frame = vec![0u8; size as usize];
        stream.read_exact(&mut frame).await.map_err(|e| format!("reading a frame of {size} bytes: {e}"))?;
        let response = handle_frame(Bytes::from(frame), peer, served).await?;
        if let Some(response) = response {
            // The size, then the response as encoded: one vectored write, no copy.
            let size = (response.len() as i32).to_be_bytes();
            let mut out = bytes::Buf::chain(&size[..], response);
            stream.write_all_buf(&mut out).await.map_err(|e| format!("writing a response: {e}"))?;
        }
    }
}
