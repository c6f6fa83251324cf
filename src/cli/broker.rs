//! `freshet broker`: the log served over the Kafka protocol, its continuous SQL queries run
//! beside it.

use crate::*;

#[derive(clap::Args)]
pub(crate) struct BrokerArgs {
    /// A properties file (`key=value` lines, `#` comments) with Kafka's broker setting names:
    /// `log.dirs`, `listeners`, `advertised.listeners`, `num.partitions`,
    /// `auto.create.topics.enable`, `socket.request.max.bytes`, `max.connections`,
    /// `max.connections.per.ip`, `group.max.size`, `group.initial.rebalance.delay.ms`,
    /// `log.flush.interval.messages`, `log.flush.interval.ms`, `log.retention.check.interval.ms`,
    /// `authorizer.class.name`, `allow.everyone.if.no.acl.found`, `super.users`, and the defaults
    /// of topic configs (`log.retention.hours`, `log.segment.bytes`, `log.cleanup.policy`,
    /// `compression.type`, `message.max.bytes`, ...). Flags given override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory of the log [default: freshet-data].
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to listen on (port 0: any free port; the one chosen is printed) [default: 127.0.0.1:9092].
    #[arg(long)]
    pub(crate) listen: Option<std::net::SocketAddr>,
    /// Host name clients are told to connect to (default: the listen address's IP).
    #[arg(long)]
    pub(crate) advertised_host: Option<String>,
    /// Largest request frame accepted, in bytes [default: 104857600].
    #[arg(long)]
    pub(crate) max_frame_bytes: Option<usize>,
    /// Partitions of topics created automatically [default: 1].
    #[arg(long)]
    pub(crate) num_partitions: Option<u32>,
    /// Do not create topics that clients ask for and that do not exist.
    #[arg(long)]
    pub(crate) no_auto_create_topics: bool,
    /// When an append is acknowledged: `fsync` (after an fdatasync covering it, shared by
    /// concurrent appends: group commit), `interval` (written to the page cache, flushed every
    /// second) or `none` (the page cache; flushed as segments roll and on close) [default: fsync].
    /// In the config file, Kafka's `log.flush.interval.messages=1` is `fsync`,
    /// `log.flush.interval.ms=N` a flush every N ms, and a larger message count `none`.
    #[arg(long)]
    pub(crate) durability: Option<String>,
    /// Host a connect worker on the log, with this worker properties file (Kafka Connect's keys;
    /// its REST API on `listeners`, default http://:8083), as `freshet connect standalone` runs
    /// one, or, when the file has a `group.id`, as a worker of that group that `freshet connect
    /// distributed` workers reaching this broker join; connectors are added through its REST API.
    #[arg(long, value_name = "WORKER.properties")]
    pub(crate) connect: Option<PathBuf>,
    /// Serve the broker's metrics (Prometheus' text format: under-replicated and under-min-ISR
    /// partitions, leaders, ISR shrinks and expansions, offline partitions, appends) over HTTP at
    /// `http://ADDRESS/metrics`. In the config file: `metrics.listen=ADDRESS`.
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
}

/// The broker's settings: flags over the config file over the defaults.
pub(crate) struct BrokerSettings {
    pub(crate) data_dir: PathBuf,
    pub(crate) config: freshet::broker::BrokerConfig,
    pub(crate) durability: Durability,
    /// How often retention, DeleteRecords' segment deletion and compaction run.
    pub(crate) maintenance_interval: std::time::Duration,
    /// Defaults of topic configs, by topic config name.
    pub(crate) topic_defaults: std::collections::BTreeMap<String, String>,
    /// Where the metrics are served over HTTP, if anywhere.
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
}

impl BrokerArgs {
    /// The settings of a broker properties file alone (no flags).
    pub(crate) fn from_config(config: PathBuf) -> BrokerArgs {
        BrokerArgs {
            config: Some(config),
            data_dir: None,
            listen: None,
            advertised_host: None,
            max_frame_bytes: None,
            num_partitions: None,
            no_auto_create_topics: false,
            durability: None,
            connect: None,
            metrics_listen: None,
        }
    }

    pub(crate) fn settings(self) -> anyhow::Result<BrokerSettings> {
        let mut data_dir = PathBuf::from("freshet-data");
        let mut config = freshet::broker::BrokerConfig::default();
        let mut durability = LogConfig::default().durability;
        let mut maintenance_interval = LogConfig::default().maintenance_interval;
        let mut topic_defaults = std::collections::BTreeMap::new();
        // log.retention.{ms,minutes,hours} and log.roll.{ms,hours}: (milliseconds, unit rank)
        // of the finest unit given.
        let mut retention: Option<(i64, u8)> = None;
        let mut roll: Option<(i64, u8)> = None;
        let mut node = NodeSettings::default();
        let mut metrics_listen = None;
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                    continue;
                }
                let at = || format!("{} line {}", path.display(), i + 1);
                let (key, value) = line
                    .split_once('=')
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .with_context(|| format!("{}: expected key=value, found {line:?}", at()))?;
                let bad = |why: &str| anyhow::anyhow!("{}: {key}={value:?}: {why}", at());
                match key {
                    "metrics.listen" => {
                        metrics_listen = Some(value.parse().map_err(|e| bad(&format!("expected HOST:PORT ({e})")))?);
                    }
                    "log.dirs" | "log.dir" => {
                        anyhow::ensure!(!value.contains(','), bad("one data directory is served"));
                        data_dir = PathBuf::from(value);
                    }
                    "listeners" => node.listeners = listeners(value).map_err(|e| bad(&e))?,
                    "advertised.listeners" => node.advertised = listeners(value).map_err(|e| bad(&e))?,
                    "listener.security.protocol.map" => {
                        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                            let (name, protocol) =
                                pair.split_once(':').ok_or_else(|| bad(&format!("{pair:?}: expected NAME:PROTOCOL")))?;
                            node.protocols.insert(name.trim().to_string(), protocol.trim().to_string());
                        }
                    }
                    "node.id" | "broker.id" => {
                        let id: i32 =
                            value.parse().ok().filter(|n| *n >= 0).ok_or_else(|| bad("expected a node id, 0 or more"))?;
                        if let Some((other_key, other)) = node.id.filter(|(_, other)| *other != id) {
                            return Err(bad(&format!("{other_key}={other} was given too: they must be the same")));
                        }
                        node.id = Some((key.to_string(), id));
                    }
                    "process.roles" => {
                        let roles: Vec<&str> = value.split(',').map(str::trim).filter(|r| !r.is_empty()).collect();
                        if let Some(r) = roles.iter().find(|r| !matches!(**r, "broker" | "controller")) {
                            return Err(bad(&format!("{r:?} is not a role: broker, controller or both")));
                        }
                        anyhow::ensure!(!roles.is_empty(), bad("name broker, controller or both"));
                        node.roles = roles.into_iter().map(String::from).collect();
                    }
                    "controller.quorum.voters" => {
                        for voter in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                            let (id, address) = voter
                                .split_once('@')
                                .ok_or_else(|| bad(&format!("{voter:?}: expected id@host:port")))?;
                            let id: i32 = id.parse().map_err(|_| bad(&format!("{voter:?}: {id:?} is not a node id")))?;
                            anyhow::ensure!(address.rsplit_once(':').is_some(), bad(&format!("{voter:?}: expected id@host:port")));
                            node.voters.push((id, address.to_string()));
                        }
                    }
                    "controller.quorum.bootstrap.servers" => {
                        node.quorum_bootstrap =
                            value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect();
                    }
                    "controller.listener.names" => {
                        node.controller_listeners =
                            value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect();
                    }
                    "inter.broker.listener.name" => node.inter_broker_listener = Some(value.to_string()),
                    "broker.rack" => node.rack = Some(value.to_string()),
                    "default.replication.factor"
                    | "offsets.topic.replication.factor"
                    | "transaction.state.log.replication.factor" => {
                        let n: i16 =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?;
                        node.replication.insert(key.to_string(), n);
                    }
                    "broker.session.timeout.ms"
                    | "replica.lag.time.max.ms"
                    | "broker.heartbeat.interval.ms"
                    | "controller.quorum.election.timeout.ms" => {
                        let ms: u64 =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected milliseconds, 1 or more"))?;
                        node.timings.insert(key.to_string(), ms);
                    }
                    "metadata.log.dir" => node.metadata_dir = Some(PathBuf::from(value)),
                    "auto.leader.rebalance.enable" => {
                        node.auto_leader_rebalance = Some(value.parse().map_err(|_| bad("expected true or false"))?);
                    }
                    "unclean.leader.election.enable" => {
                        node.unclean_election = value.parse().map_err(|_| bad("expected true or false"))?;
                        topic_defaults.insert(key.to_string(), value.to_string());
                    }
                    "leader.imbalance.check.interval.seconds" => {
                        let s: u64 =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected seconds, 1 or more"))?;
                        node.timings.insert(key.to_string(), s * 1000);
                    }
                    "advertised.host.name" => config.advertised_host = Some(value.to_string()),
                    "num.partitions" => {
                        config.default_partitions =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?
                    }
                    "auto.create.topics.enable" => {
                        config.auto_create_topics = value.parse().map_err(|_| bad("expected true or false"))?
                    }
                    "socket.request.max.bytes" => {
                        config.max_frame_bytes =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a byte count"))?
                    }
                    "max.connections" => {
                        config.max_connections =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?
                    }
                    "max.connections.per.ip" => {
                        config.max_connections_per_ip =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?
                    }
                    "group.initial.rebalance.delay.ms" => {
                        let ms: u64 = value.parse().map_err(|_| bad("expected milliseconds"))?;
                        config.group_initial_rebalance_delay = std::time::Duration::from_millis(ms);
                    }
                    "group.min.session.timeout.ms" | "group.max.session.timeout.ms" => {
                        let ms: u64 = value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("expected milliseconds, 1 or more"))?;
                        let ms = std::time::Duration::from_millis(ms);
                        let (min, max) = config.group_session_timeouts.clone().into_inner();
                        config.group_session_timeouts =
                            if key.contains(".min.") { ms..=max } else { min..=ms };
                    }
                    "group.max.size" => {
                        config.group_max_size =
                            value.parse().ok().filter(|n| *n > 0).ok_or_else(|| bad("expected a count of 1 or more"))?
                    }
                    // Kafka's flush settings: after every message is Freshet's group commit;
                    // Kafka's default (a count never reached) is the page cache.
                    "log.flush.interval.messages" => {
                        let n: u64 = value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("expected a count of 1 or more"))?;
                        if n == 1 {
                            durability = Durability::Fsync;
                        } else if durability == Durability::Fsync {
                            durability = Durability::OsCache;
                        }
                    }
                    "log.flush.interval.ms" => {
                        let ms: u64 = value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("expected milliseconds, 1 or more"))?;
                        durability = Durability::Interval { flush_interval_ms: ms };
                    }
                    // ACLs are enforced with either of Kafka's authorizers named; empty: none.
                    "authorizer.class.name" => {
                        config.authorizer.enabled = match value {
                            "" => false,
                            "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                            | "kafka.security.authorizer.AclAuthorizer" => true,
                            _ => return Err(bad("Freshet's authorizer is Kafka's StandardAuthorizer: name org.apache.kafka.metadata.authorizer.StandardAuthorizer, or leave it empty")),
                        }
                    }
                    "allow.everyone.if.no.acl.found" => {
                        config.authorizer.allow_everyone_if_no_acl_found =
                            value.parse().map_err(|_| bad("expected true or false"))?
                    }
                    "super.users" => {
                        let users: Vec<String> =
                            value.split(';').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect();
                        if let Some(user) = users.iter().find(|u| !u.contains(':')) {
                            return Err(bad(&format!("{user:?} is not a principal: expected User:name")));
                        }
                        config.authorizer.super_users = users;
                    }
                    "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" | "log.roll.ms"
                    | "log.roll.hours" => {
                        let n: i64 = value.parse().map_err(|_| bad("expected a whole number"))?;
                        let (scale, rank) = match key.rsplit('.').next() {
                            Some("ms") => (1, 3),
                            Some("minutes") => (60_000, 2),
                            _ => (3_600_000, 1),
                        };
                        // -1: no limit (retention only), whatever the unit.
                        let ms = if n < 0 { -1 } else { n.saturating_mul(scale) };
                        let slot = if key.starts_with("log.roll") { &mut roll } else { &mut retention };
                        if slot.is_none_or(|(_, r)| rank >= r) {
                            *slot = Some((ms, rank));
                        }
                    }
                    "log.retention.check.interval.ms" => {
                        let ms: u64 = value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| bad("expected milliseconds, 1 or more"))?;
                        maintenance_interval = std::time::Duration::from_millis(ms);
                    }
                    // The default of a topic config, checked as the topic config would be.
                    other => {
                        let synonym = freshet::log::config::BROKER_SYNONYMS.iter().find(|(b, _)| *b == other);
                        let Some((_, topic_key)) = synonym else {
                            if crate::kafka_keys::is_kafka_key(other) {
                                node.ignored.push(other.to_string());
                                continue;
                            }
                            let hint = crate::kafka_keys::closest(other)
                                .map(|k| format!("; did you mean {k}?"))
                                .unwrap_or_default();
                            return Err(anyhow::anyhow!("{}: {other} is not a Kafka broker setting{hint}", at()));
                        };
                        let one = std::collections::BTreeMap::from([(topic_key.to_string(), value.to_string())]);
                        freshet::log::config::TopicConfig::validate(&one)
                            .map_err(|e| bad(&format!("as the default of topic config {topic_key}: {e}")))?;
                        topic_defaults.insert(topic_key.to_string(), value.to_string());
                    }
                }
            }
        }
        for (slot, topic_key) in [(retention, "retention.ms"), (roll, "segment.ms")] {
            if let Some((ms, _)) = slot {
                let one = std::collections::BTreeMap::from([(topic_key.to_string(), ms.to_string())]);
                freshet::log::config::TopicConfig::validate(&one)
                    .map_err(|e| anyhow::anyhow!("the default of topic config {topic_key} ({ms} ms): {e}"))?;
                topic_defaults.insert(topic_key.to_string(), ms.to_string());
            }
        }
        anyhow::ensure!(
            !config.group_session_timeouts.is_empty(),
            "group.min.session.timeout.ms ({} ms) is above group.max.session.timeout.ms ({} ms)",
            config.group_session_timeouts.start().as_millis(),
            config.group_session_timeouts.end().as_millis()
        );
        if let Some(d) = self.data_dir {
            data_dir = d;
        }
        node.apply(&mut config, &data_dir).map_err(|e| match &self.config {
            Some(path) => anyhow::anyhow!("{}: {e}", path.display()),
            None => e,
        })?;
        if let Some(l) = self.listen {
            config.listen = l;
        }
        if let Some(h) = self.advertised_host {
            config.advertised_host = Some(h);
        }
        if let Some(m) = self.max_frame_bytes {
            config.max_frame_bytes = m;
        }
        if let Some(n) = self.num_partitions {
            anyhow::ensure!(n > 0, "--num-partitions 0: a topic needs at least one partition");
            config.default_partitions = n;
        }
        if self.no_auto_create_topics {
            config.auto_create_topics = false;
        }
        if let Some(d) = &self.durability {
            durability = crate::target::durability(d)?;
        }
        Ok(BrokerSettings {
            data_dir,
            config,
            durability,
            maintenance_interval,
            topic_defaults,
            metrics_listen: self.metrics_listen.or(metrics_listen),
        })
    }
}

/// The node's part of a broker properties file: its id and roles, its listeners, the quorum.
#[derive(Debug, Default)]
struct NodeSettings {
    /// `node.id` (or `broker.id`): the key it came from and the id.
    id: Option<(String, i32)>,
    roles: Vec<String>,
    listeners: Vec<(String, String)>,
    advertised: Vec<(String, String)>,
    protocols: std::collections::BTreeMap<String, String>,
    voters: Vec<(i32, String)>,
    quorum_bootstrap: Vec<String>,
    controller_listeners: Vec<String>,
    inter_broker_listener: Option<String>,
    rack: Option<String>,
    /// `default.replication.factor`, `offsets.topic.replication.factor`,
    /// `transaction.state.log.replication.factor`.
    replication: std::collections::BTreeMap<String, i16>,
    /// `broker.session.timeout.ms`, `broker.heartbeat.interval.ms`,
    /// `controller.quorum.election.timeout.ms`, `replica.lag.time.max.ms`,
    /// `leader.imbalance.check.interval.seconds` (as milliseconds).
    timings: std::collections::BTreeMap<String, u64>,
    /// `metadata.log.dir`.
    metadata_dir: Option<PathBuf>,
    /// `auto.leader.rebalance.enable` (Kafka's default: on).
    auto_leader_rebalance: Option<bool>,
    /// `unclean.leader.election.enable`.
    unclean_election: bool,
    /// Kafka settings Freshet does not act on.
    ignored: Vec<String>,
}

impl NodeSettings {
    /// Checks the node's settings as Kafka checks them and sets what this broker serves: its id
    /// and the listener clients reach (the inter-broker one, or the first that is not a
    /// controller's).
    fn apply(self, config: &mut freshet::broker::BrokerConfig, data_dir: &std::path::Path) -> anyhow::Result<()> {
        let id = self.id.as_ref().map(|(_, id)| *id).unwrap_or(config.node_id);
        config.node_id = id;
        let controller = self.roles.iter().any(|r| r == "controller");
        let broker = self.roles.is_empty() || self.roles.iter().any(|r| r == "broker");
        if controller && !self.voters.is_empty() {
            anyhow::ensure!(
                self.voters.iter().any(|(v, _)| *v == id),
                "process.roles includes controller, so controller.quorum.voters must name this node ({id})"
            );
        }
        // A cluster of several nodes when the quorum names another node, or this node is not
        // one of its controllers; else a one-node cluster, its broker its own controller.
        let clustered = self.voters.iter().any(|(v, _)| *v != id) || (!self.voters.is_empty() && !controller);
        anyhow::ensure!(
            broker || clustered,
            "process.roles=controller: a controller-only node needs controller.quorum.voters naming the cluster's controllers"
        );
        if !self.quorum_bootstrap.is_empty() && self.voters.is_empty() {
            anyhow::bail!(
                "controller.quorum.bootstrap.servers without controller.quorum.voters: Freshet's quorum is static; name its voters (id@host:port) in controller.quorum.voters"
            );
        }
        // The listener clients reach, by name (none when no listeners are given).
        let mut served_name = None;
        if !self.listeners.is_empty() {
            let protocol = |name: &str| -> anyhow::Result<String> {
                if let Some(p) = self.protocols.get(name) {
                    return Ok(p.clone());
                }
                match name {
                    "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL" => Ok(name.to_string()),
                    // A controller listener not in the map speaks PLAINTEXT, as Kafka takes it.
                    _ if self.controller_listeners.iter().any(|c| c == name) => Ok("PLAINTEXT".into()),
                    _ => anyhow::bail!("listener {name} has no security protocol in listener.security.protocol.map"),
                }
            };
            for (name, _) in &self.listeners {
                protocol(name)?;
            }
            for c in &self.controller_listeners {
                anyhow::ensure!(
                    self.listeners.iter().any(|(n, _)| n == c) || self.roles.iter().all(|r| r != "controller"),
                    "controller.listener.names names {c}, which is not in listeners"
                );
            }
            // A controller-only node serves no clients.
            if broker {
                let served = match &self.inter_broker_listener {
                    Some(name) => self
                        .listeners
                        .iter()
                        .find(|(n, _)| n == name)
                        .with_context(|| format!("inter.broker.listener.name={name} is not in listeners"))?,
                    None => self
                        .listeners
                        .iter()
                        .find(|(n, _)| !self.controller_listeners.contains(n))
                        .context("listeners has no listener for clients: each is a controller listener")?,
                };
                let served_protocol = protocol(&served.0)?;
                anyhow::ensure!(
                    served_protocol == "PLAINTEXT",
                    "listener {} speaks {served_protocol}: Freshet serves PLAINTEXT only",
                    served.0
                );
                config.listen = listener(&served.1).map_err(|e| anyhow::anyhow!("listeners: {}: {e}", served.0))?;
                served_name = Some(served.0.clone());
            }
        }
        // The served listener's advertised entry; without listeners, the first.
        let advertised = match &served_name {
            Some(name) => self.advertised.iter().find(|(n, _)| n == name),
            None => self.advertised.first(),
        };
        if let Some((_, address)) = advertised {
            let host = address.rsplit_once(':').map_or(address.as_str(), |(h, _)| h);
            config.advertised_host = Some(host.to_string());
        }
        let replication = |key: &str| self.replication.get(key).copied().unwrap_or(1);
        if clustered {
            let ms = |key: &str, default: u64| {
                std::time::Duration::from_millis(self.timings.get(key).copied().unwrap_or(default))
            };
            let mut voters = std::collections::BTreeMap::new();
            for (voter, address) in &self.voters {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(address.as_str())
                    .ok()
                    .and_then(|mut a| a.find(|a| a.is_ipv4()))
                    .with_context(|| format!("controller.quorum.voters: {voter}@{address} is not an address"))?;
                voters.insert(*voter, addr);
            }
            let controller_listen = match (controller, self.controller_listeners.first()) {
                (false, _) => None,
                (true, Some(name)) => {
                    let (_, address) = self.listeners.iter().find(|(n, _)| n == name).with_context(|| {
                        format!("controller.listener.names names {name}, which is not in listeners")
                    })?;
                    Some(listener(address).map_err(|e| anyhow::anyhow!("listeners: {name}: {e}"))?)
                }
                (true, None) => {
                    anyhow::bail!("process.roles includes controller: name its listener in controller.listener.names")
                }
            };
            let metadata_dir = self.metadata_dir.clone().unwrap_or_else(|| data_dir.join("__cluster_metadata-0"));
            let mut cluster = freshet::broker::ClusterConfig::new(id, voters, metadata_dir, String::new());
            cluster.controller = controller;
            cluster.broker = broker;
            cluster.controller_listen = controller_listen;
            cluster.rack = self.rack.clone();
            cluster.listener_name = served_name.clone().unwrap_or_else(|| "PLAINTEXT".into());
            cluster.session_timeout = ms("broker.session.timeout.ms", 9000);
            cluster.heartbeat_interval = ms("broker.heartbeat.interval.ms", 2000);
            cluster.election_timeout = ms("controller.quorum.election.timeout.ms", 1000);
            cluster.defaults.num_partitions = config.default_partitions as i32;
            cluster.defaults.replication_factor = replication("default.replication.factor");
            cluster.offsets_replication_factor = replication("offsets.topic.replication.factor");
            cluster.transactions_replication_factor = replication("transaction.state.log.replication.factor");
            cluster.replica_lag_max = ms("replica.lag.time.max.ms", 30_000);
            let balance = ms("leader.imbalance.check.interval.seconds", 300_000);
            cluster.leader_rebalance = self.auto_leader_rebalance.unwrap_or(true).then_some(balance);
            cluster.unclean_election = self.unclean_election;
            config.cluster = Some(cluster);
        } else {
            let single: Vec<String> =
                self.replication.iter().filter(|(_, n)| **n > 1).map(|(k, n)| format!("{k}={n}")).collect();
            if !single.is_empty() {
                tracing::warn!(
                    settings = single.join(", "),
                    "one node keeps one copy of each partition: replication settings above one act as one"
                );
            }
        }
        for key in &self.ignored {
            tracing::warn!(key, "a Kafka setting Freshet does not act on: ignored");
        }
        Ok(())
    }
}

/// `listeners`: `NAME://host:port` entries (a bare `host:port` is `PLAINTEXT`), as
/// `(name, host:port)`.
fn listeners(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, address) = match entry.split_once("://") {
            Some((name, address)) => (name.to_string(), address.to_string()),
            None => ("PLAINTEXT".to_string(), entry.to_string()),
        };
        if address.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()) {
            return Err(format!("{entry:?}: expected NAME://host:port"));
        }
        if out.iter().any(|(n, _): &(String, String)| *n == name) {
            return Err(format!("listener {name} is named twice"));
        }
        out.push((name, address));
    }
    Ok(out)
}

/// `PLAINTEXT://host:port` or `host:port` (one listener) as an address.
pub(crate) fn listener(value: &str) -> Result<std::net::SocketAddr, String> {
    if value.contains(',') {
        return Err("one listener is served".into());
    }
    let address = match value.split_once("://") {
        Some(("PLAINTEXT", address)) => address,
        Some((protocol, _)) => return Err(format!("the {protocol} protocol is not served (PLAINTEXT only)")),
        None => value,
    };
    let address = if address.starts_with(':') { format!("0.0.0.0{address}") } else { address.to_string() };
    std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map_err(|e| format!("not an address: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| "no IPv4 address".to_string())
}

pub(crate) async fn broker(args: BrokerArgs) -> anyhow::Result<()> {
    let worker_props = args.connect.as_deref().map(crate::connect::read_worker).transpose()?;
    let BrokerSettings { data_dir, mut config, durability, maintenance_interval, topic_defaults, metrics_listen } =
        args.settings()?;
    // Before anything starts: a stop asked for while the queries still start is kept.
    let mut stop = crate::target::StopSignals::listen()?;
    if let Some(cluster) = &mut config.cluster {
        // Every node of a cluster carries one cluster id, given when its directory was
        // formatted (as Kafka's KRaft nodes need `kafka-storage format`).
        let meta = crate::storage::read_meta(&data_dir)?.with_context(|| {
            format!(
                "{} is not formatted for a cluster: run `freshet storage format -t <cluster id> -c <this file>` on every node with the same id (`freshet storage random-uuid` makes one)",
                data_dir.display()
            )
        })?;
        anyhow::ensure!(
            meta.node_id == config.node_id,
            "{} belongs to node {} of cluster {}, not to node {} (node.id)",
            data_dir.display(),
            meta.node_id,
            meta.cluster_id,
            config.node_id
        );
        anyhow::ensure!(
            worker_props.is_none(),
            "--connect: in a cluster, run `freshet connect distributed --bootstrap <brokers>` beside it"
        );
        cluster.cluster_id = meta.cluster_id.clone();
        config.cluster_id = meta.cluster_id;
        if !cluster.broker {
            let node = freshet::broker::ControllerNode::start(cluster.clone()).await?;
            say(&format!(
                "Freshet controller {} of cluster {} (controller listener {})",
                config.node_id,
                config.cluster_id,
                cluster.controller_listen.map(|a| a.to_string()).unwrap_or_default()
            ));
            stop.wait().await;
            node.stop().await;
            say("Controller stopped.");
            return Ok(());
        }
    } else {
        // The directory's identity: formatted for this node on first start, refused if another's.
        config.cluster_id = crate::storage::ensure_formatted(&data_dir, config.node_id)?.cluster_id;
    }
    let clustered = config.cluster.is_some();
    let embedded = crate::target::open_log_with(
        &data_dir,
        LogConfig { durability, maintenance_interval, topic_defaults, replicated: clustered, ..LogConfig::default() },
    )
    .await?;
    let log = embedded.log().clone();
    // One coordinator for the groups of the broker's clients and of the queries it hosts.
    let coordinator = embedded.group_coordinator().clone();
    let broker =
        freshet::broker::Broker::start_sharing(log.clone(), embedded.group_offsets().clone(), coordinator, config)
            .await?;
    say(&format!("Freshet broker listening on {} (data in {})", broker.local_addr(), data_dir.display()));
    let metrics = match metrics_listen {
        Some(addr) => Some(serve_metrics(addr, broker.metrics()).await?),
        None => None,
    };
    // The log's continuous SQL queries run here, as ksqlDB's run beside Kafka (on one node: in a
    // cluster a node's log holds only its own partitions).
    #[cfg(feature = "sql")]
    let host = match clustered {
        false => Some(
            crate::sql::QueryHost::start(
                std::sync::Arc::new(embedded.clone()),
                &crate::sql::state_dir_of(&data_dir),
                None,
            )
            .await?,
        ),
        true => None,
    };
    // A connect worker on the same log, its pipelines beside the broker's clients.
    let worker = match &worker_props {
        Some(props) => {
            // With a group.id, a worker of that group: other `freshet connect distributed`
            // workers reaching this broker join it and share the work.
            let grouped = props.get("group.id").is_some_and(|g| !g.trim().is_empty());
            let mode = if grouped { crate::connect::Mode::Distributed } else { crate::connect::Mode::Standalone };
            let hosted =
                crate::connect::HostedWorker::start(std::sync::Arc::new(embedded.clone()), props, mode, Vec::new())
                    .await?;
            say(&format!("connect worker {}: REST API at http://{}", hosted.id, hosted.addr));
            Some(hosted)
        }
        None => None,
    };
    // The broker's one log directory failing (an fsync that failed) stops it at once, as Kafka
    // halts a broker whose log directories all failed: serving on, it would keep leading
    // partitions it cannot append to; stopped, the other replicas take them over. Nothing is
    // closed cleanly: the disk cannot be trusted with it.
    let mut storage = log.watch_storage_failure();
    tokio::select! {
        _ = stop.wait() => {}
        failed = storage.wait_for(Option::is_some) => {
            let failure = failed.map(|f| f.clone().unwrap_or_default()).unwrap_or_default();
            tracing::error!(%failure, "the log directory failed; the broker stops");
            eprintln!("error: the log directory {} failed ({failure}); the broker stops", data_dir.display());
            std::process::exit(1);
        }
    }
    if let Some(worker) = worker {
        worker.stop().await?;
    }
    #[cfg(feature = "sql")]
    if let Some(host) = host {
        host.stop().await?;
    }
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    broker.stop().await;
    embedded.close().await?;
    say("Broker stopped; the log was closed cleanly.");
    Ok(())
}

/// Serves `metrics` at `http://addr/metrics` until the task is aborted.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    metrics: freshet::broker::Metrics,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("metrics.listen={addr}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render()) }
        }),
    );
    say(&format!("Freshet metrics at http://{bound}/metrics"));
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the metrics endpoint stopped");
        }
    }))
}
