//! Group membership over the Kafka wire protocol itself: JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup for groups with a protocol of their own (protocol type `connect`, as Kafka
//! Connect's workers and Freshet's distributed connector workers use), spoken to the group's
//! coordinator with the `kafka-protocol` crate's message types.
//!
//! It exists because librdkafka, which the rest of the remote substrate uses, speaks the group
//! protocol only for consumer groups (protocol type `consumer`, its own assignors): it has no call
//! that joins a group with another protocol type or hands the leader the members' metadata.
//!
//! * On first use the client asks a bootstrap broker (each in turn) which versions it serves
//!   (ApiVersions), and from then on sends each API at the highest version both sides speak.
//! * A group's coordinator is found with FindCoordinator and remembered; a call the coordinator
//!   refuses as not (or not yet) the coordinator, or that fails on its connection, finds it again
//!   and is retried a few times with a short backoff.
//! * Every call takes a connection of its own from a small pool (one request in flight per
//!   connection), so a JoinGroup waiting for the rebalance never holds up heartbeats or the joins
//!   of other members made through the same client.
//!
//! Only PLAINTEXT listeners are supported (no TLS, no SASL).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use freshet_coord::code;
use freshet_log::{Error, Result};
use kafka_protocol::messages::find_coordinator_response::Coordinator as FoundCoordinator;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, RequestHeader, ResponseHeader, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes, VersionRange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::substrate::{membership_refused, GroupJoined, GroupMembership, Heartbeat, JoinGroup};

/// The client id every request carries.
const CLIENT_ID: &str = "freshet";

/// How long a request other than JoinGroup may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What a JoinGroup may wait beyond the rebalance timeout (the coordinator answers it when the
/// rebalance completes, at the latest at the rebalance timeout), as Kafka's clients allow.
const JOIN_MARGIN: Duration = Duration::from_secs(5);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a call is made before a coordinator that cannot be reached (or is not ready)
/// is reported.
const ATTEMPTS: u32 = 10;

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Idle connections kept per broker.
const MAX_IDLE: usize = 4;

/// The largest answer accepted: larger ones are taken for a stream out of step.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// The coordinator is loading the group's state: asked again shortly.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// No coordinator yet (a cluster just started): asked again shortly.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// The broker is not (or no longer) the group's coordinator: it is found again.
const NOT_COORDINATOR: i16 = 16;

/// Whether `error_code` says the coordinator moved or is not ready.
fn coordinator_moved(error_code: i16) -> bool {
    matches!(error_code, COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR)
}

/// Membership of groups with a protocol of their own in a Kafka-protocol cluster (a Freshet
/// broker or Apache Kafka), over the group coordinator's wire protocol (see the module's doc).
///
/// Made by `Remote`'s [`membership`](crate::Substrate::membership), which shares one between
/// its clones.
pub struct RemoteMembership {
    /// The bootstrap brokers, `host:port` each.
    bootstrap: Vec<String>,
    /// The versions of the group APIs to send, learnt on first use.
    versions: tokio::sync::OnceCell<Versions>,
    /// Each group's coordinator, `host:port`, as last found.
    coordinators: Mutex<HashMap<String, String>>,
    /// Idle connections by broker address.
    idle: Mutex<HashMap<String, Vec<Connection>>>,
}

impl std::fmt::Debug for RemoteMembership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteMembership")
            .field("bootstrap", &self.bootstrap)
            .field("versions", &self.versions.get())
            .finish_non_exhaustive()
    }
}

impl RemoteMembership {
    /// Membership through the cluster whose brokers include `bootstrap` (`host:port[,...]`),
    /// with the client `properties` of its `Remote`: only a `security.protocol` of PLAINTEXT
    /// (or none) is accepted.
    pub fn new(bootstrap: &str, properties: &BTreeMap<String, String>) -> Result<Self> {
        if let Some(protocol) = properties.get("security.protocol") {
            if !protocol.eq_ignore_ascii_case("plaintext") {
                return Err(Error::InvalidConfig {
                    key: "security.protocol".into(),
                    value: protocol.clone(),
                    reason: "Freshet's group membership for distributed connector workers speaks PLAINTEXT only".into(),
                });
            }
        }
        let bootstrap = bootstrap
            .split(',')
            .map(str::trim)
            // librdkafka accepts `PLAINTEXT://host:port` too.
            .map(|address| address.split_once("://").map_or(address, |(_, rest)| rest))
            .filter(|address| !address.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(RemoteMembership {
            bootstrap,
            versions: tokio::sync::OnceCell::new(),
            coordinators: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// The versions to send, asked of a bootstrap broker on first use.
    async fn versions(&self) -> Result<&Versions, Failure> {
        self.versions.get_or_try_init(|| self.ask_versions()).await
    }

    /// ApiVersions to each bootstrap broker in turn, until one answers.
    async fn ask_versions(&self) -> Result<Versions, Failure> {
        if self.bootstrap.is_empty() {
            return Err(Failure::Fatal(Error::Remote("group membership: no bootstrap servers given".into())));
        }
        let mut unreachable = Vec::new();
        for address in &self.bootstrap {
            match self.ask_versions_of(address).await {
                Ok(versions) => return Ok(versions),
                Err(Failure::Retry(why)) => unreachable.push(why),
                Err(fatal) => return Err(fatal),
            }
        }
        Err(Failure::Retry(format!("no bootstrap server answered: {}", unreachable.join("; "))))
    }

    /// ApiVersions to `address`: at version 3, or, if the broker does not serve it, at the
    /// highest version it says it serves.
    async fn ask_versions_of(&self, address: &str) -> Result<Versions, Failure> {
        let mut version = 3;
        for _ in 0..2 {
            let request = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let mut connection = self.take(address).await?;
            let body = connection.exchange::<ApiVersionsRequest>(&request, version, REQUEST_TIMEOUT).await?;
            self.give_back(connection);
            // A broker that does not serve the version asked answers error 35 at version 0, with
            // the versions it serves.
            let error_code = body
                .clone()
                .try_get_i16()
                .map_err(|_| Failure::Fatal(Error::Remote(format!("an empty ApiVersions answer from {address}"))))?;
            let answered_at = if error_code == code::UNSUPPORTED_VERSION { 0 } else { version };
            let response = ApiVersionsResponse::decode(&mut body.clone(), answered_at).map_err(|e| {
                Failure::Fatal(Error::Remote(format!(
                    "a malformed ApiVersions v{answered_at} answer from {address}: {e}"
                )))
            })?;
            if response.error_code == code::NONE {
                return Versions::agreed(address, &response).map_err(Failure::Fatal);
            }
            let served = response.api_keys.iter().find(|k| k.api_key == ApiKey::ApiVersions as i16);
            match served.map(|k| range_of(k.min_version, k.max_version).intersect(&ApiVersionsRequest::VERSIONS)) {
                Some(both) if response.error_code == code::UNSUPPORTED_VERSION && !both.is_empty() => {
                    version = both.max;
                }
                _ => {
                    return Err(Failure::Fatal(Error::Remote(format!(
                        "{address} refused ApiVersions v{version} (error code {})",
                        response.error_code
                    ))))
                }
            }
        }
        Err(Failure::Fatal(Error::Remote(format!("{address} refused every ApiVersions version asked"))))
    }

    /// The coordinator of `group`, as found before or asked of a bootstrap broker now.
    async fn coordinator(&self, group: &str) -> Result<String, Failure> {
        if let Some(address) = lock(&self.coordinators).get(group) {
            return Ok(address.clone());
        }
        let version = self.versions().await?.find_coordinator;
        let mut unreachable = Vec::new();
        for bootstrap in &self.bootstrap {
            match self.find_coordinator(bootstrap, group, version).await {
                Ok(address) => {
                    lock(&self.coordinators).insert(group.to_string(), address.clone());
                    return Ok(address);
                }
                Err(Failure::Retry(why)) => unreachable.push(why),
                Err(fatal) => return Err(fatal),
            }
        }
        Err(Failure::Retry(format!("finding the coordinator of group {group:?}: {}", unreachable.join("; "))))
    }

    /// FindCoordinator for `group` to the broker at `address`.
    async fn find_coordinator(&self, address: &str, group: &str, version: i16) -> Result<String, Failure> {
        let key = StrBytes::from_string(group.to_string());
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key_type(0).with_key(key)
        };
        let response = self.call(address, &request, version, REQUEST_TIMEOUT).await?;
        let found = if version >= 4 {
            response.coordinators.into_iter().find(|c| c.key.as_str() == group).ok_or_else(|| {
                Failure::Fatal(Error::Remote(format!(
                    "a malformed FindCoordinator v{version} answer from {address}: no coordinator for group {group:?}"
                )))
            })?
        } else {
            FoundCoordinator::default()
                .with_error_code(response.error_code)
                .with_error_message(response.error_message)
                .with_host(response.host)
                .with_port(response.port)
        };
        if coordinator_moved(found.error_code) {
            return Err(Failure::Retry(format!(
                "{address} knows no coordinator of group {group:?} yet (error code {})",
                found.error_code
            )));
        }
        if found.error_code != code::NONE {
            let message = found.error_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
            return Err(Failure::Fatal(Error::Remote(format!(
                "finding the coordinator of group {group:?}: {address} refused (error code {}){message}",
                found.error_code
            ))));
        }
        let port = u16::try_from(found.port).ok().filter(|p| *p > 0);
        match port {
            Some(port) if !found.host.is_empty() => Ok(host_port(&found.host, port)),
            _ => Err(Failure::Fatal(Error::Remote(format!(
                "a malformed FindCoordinator v{version} answer from {address}: coordinator at host {:?}, port {}",
                found.host.as_str(),
                found.port
            )))),
        }
    }

    /// Makes a call to the coordinator of `group`: `build` makes the request at the version
    /// given, `error_of` reads the answer's error code. A coordinator that moved, is not ready
    /// or cannot be reached is found again and the call made again, up to [`ATTEMPTS`] times.
    async fn to_coordinator<R: Request>(
        &self,
        group: &str,
        version_of: fn(&Versions) -> i16,
        build: impl Fn(i16) -> R,
        timeout: Duration,
        error_of: impl Fn(&R::Response) -> i16,
    ) -> Result<R::Response> {
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            let outcome = async {
                let version = version_of(self.versions().await?);
                let address = self.coordinator(group).await?;
                let response = match self.call(&address, &build(version), version, timeout).await {
                    Err(Failure::Retry(why)) => {
                        self.forget_coordinator(group);
                        return Err(Failure::Retry(why));
                    }
                    other => other?,
                };
                let error_code = error_of(&response);
                if coordinator_moved(error_code) {
                    self.forget_coordinator(group);
                    return Err(Failure::Retry(format!(
                        "{address} is not ready as the coordinator of group {group:?} (error code {error_code})"
                    )));
                }
                Ok(response)
            }
            .await;
            match outcome {
                Ok(response) => return Ok(response),
                Err(Failure::Retry(why)) => {
                    tracing::debug!(group, attempt, "a call to the group coordinator is retried: {why}");
                    last = why;
                }
                Err(Failure::Fatal(e)) => return Err(e),
            }
        }
        Err(Error::Remote(format!(
            "{} for group {group:?}: no answer from its coordinator after {ATTEMPTS} attempts; last: {last}",
            api_name(R::KEY)
        )))
    }

    fn forget_coordinator(&self, group: &str) {
        lock(&self.coordinators).remove(group);
    }

    /// One request to `address` and its answer, on a connection of the pool.
    async fn call<R: Request>(
        &self,
        address: &str,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, Failure> {
        let mut connection = self.take(address).await?;
        let body = match connection.exchange::<R>(request, version, timeout).await {
            Ok(body) => body,
            Err(failure) => {
                if matches!(failure, Failure::Retry(_)) {
                    // The others may be as broken (the broker went away): not reused.
                    lock(&self.idle).remove(address);
                }
                return Err(failure);
            }
        };
        self.give_back(connection);
        R::Response::decode(&mut body.clone(), version).map_err(|e| {
            Failure::Fatal(Error::Remote(format!(
                "a malformed {} v{version} answer from {address}: {e}",
                api_name(R::KEY)
            )))
        })
    }

    /// An idle connection to `address`, or a new one.
    async fn take(&self, address: &str) -> Result<Connection, Failure> {
        if let Some(connection) = lock(&self.idle).get_mut(address).and_then(Vec::pop) {
            return Ok(connection);
        }
        Connection::open(address).await
    }

    /// Keeps a connection whose last exchange completed for the next call.
    fn give_back(&self, connection: Connection) {
        let mut idle = lock(&self.idle);
        let pool = idle.entry(connection.address.clone()).or_default();
        if pool.len() < MAX_IDLE {
            pool.push(connection);
        }
    }
}

#[async_trait]
impl GroupMembership for RemoteMembership {
    async fn join(&self, join: &JoinGroup) -> Result<GroupJoined> {
        let session_ms = millis(join.session_timeout, "session timeout")?;
        let rebalance_ms = millis(join.rebalance_timeout, "rebalance timeout")?;
        let protocols: Vec<JoinGroupRequestProtocol> = join
            .protocols
            .iter()
            .map(|(name, metadata)| {
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_string(name.clone()))
                    .with_metadata(metadata.clone())
            })
            .collect();
        let timeout = join.rebalance_timeout.max(join.session_timeout) + JOIN_MARGIN;
        let mut member_id = join.member_id.clone();
        // A first join is answered MEMBER_ID_REQUIRED, and an unknown id is dropped: a few rounds
        // at most.
        let mut last_code = code::NONE;
        for _ in 0..8 {
            let build = |_version: i16| {
                JoinGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_string(join.group.clone())))
                    .with_session_timeout_ms(session_ms)
                    .with_rebalance_timeout_ms(rebalance_ms)
                    .with_member_id(StrBytes::from_string(member_id.clone()))
                    .with_group_instance_id(None)
                    .with_protocol_type(StrBytes::from_string(join.protocol_type.clone()))
                    .with_protocols(protocols.clone())
            };
            let joined = self.to_coordinator(&join.group, |v| v.join_group, build, timeout, |r| r.error_code).await?;
            last_code = joined.error_code;
            match joined.error_code {
                code::NONE => {
                    let members = joined.members.into_iter().map(|m| (m.member_id.to_string(), m.metadata)).collect();
                    return Ok(GroupJoined {
                        generation: joined.generation_id,
                        member_id: joined.member_id.to_string(),
                        leader: joined.leader.to_string(),
                        protocol: joined.protocol_name.map(|p| p.to_string()).unwrap_or_default(),
                        members,
                    });
                }
                code::MEMBER_ID_REQUIRED if !joined.member_id.is_empty() => member_id = joined.member_id.to_string(),
                code::UNKNOWN_MEMBER_ID if !member_id.is_empty() => member_id = String::new(),
                error => return Err(membership_refused("join", &join.group, error)),
            }
        }
        Err(membership_refused("join", &join.group, last_code))
    }

    async fn sync(
        &self,
        group: &str,
        joined: &GroupJoined,
        protocol_type: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Option<Bytes>> {
        let assignments: Vec<SyncGroupRequestAssignment> = assignments
            .into_iter()
            .map(|(member_id, assignment)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member_id))
                    .with_assignment(assignment)
            })
            .collect();
        let build = |version: i16| {
            let request = SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_generation_id(joined.generation)
                .with_member_id(StrBytes::from_string(joined.member_id.clone()))
                .with_group_instance_id(None)
                .with_assignments(assignments.clone());
            if version >= 5 {
                request
                    .with_protocol_type(Some(StrBytes::from_string(protocol_type.to_string())))
                    .with_protocol_name(Some(StrBytes::from_string(joined.protocol.clone())))
            } else {
                request
            }
        };
        let synced = self.to_coordinator(group, |v| v.sync_group, build, REQUEST_TIMEOUT, |r| r.error_code).await?;
        match synced.error_code {
            code::NONE => Ok(Some(synced.assignment)),
            code::REBALANCE_IN_PROGRESS => Ok(None),
            error => Err(membership_refused("sync", group, error)),
        }
    }

    async fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> Result<Heartbeat> {
        let build = |_version: i16| {
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
                .with_generation_id(generation)
                .with_member_id(StrBytes::from_string(member_id.to_string()))
                .with_group_instance_id(None)
        };
        let answer = self.to_coordinator(group, |v| v.heartbeat, build, REQUEST_TIMEOUT, |r| r.error_code).await?;
        Ok(match answer.error_code {
            code::NONE => Heartbeat::Stable,
            code::REBALANCE_IN_PROGRESS => Heartbeat::Rebalance,
            // UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION, FENCED_INSTANCE_ID and the rest: the member
            // is not in the group's current generation.
            _ => Heartbeat::Lost,
        })
    }

    async fn leave(&self, group: &str, member_id: &str) -> Result<()> {
        let build = |version: i16| {
            let request = LeaveGroupRequest::default().with_group_id(GroupId(StrBytes::from_string(group.to_string())));
            if version >= 3 {
                request.with_members(vec![
                    MemberIdentity::default().with_member_id(StrBytes::from_string(member_id.to_string()))
                ])
            } else {
                request.with_member_id(StrBytes::from_string(member_id.to_string()))
            }
        };
        let left = self.to_coordinator(group, |v| v.leave_group, build, REQUEST_TIMEOUT, |r| r.error_code).await?;
        // A member the coordinator does not know (any more) is as good as gone.
        let gone = |c: &i16| matches!(*c, code::NONE | code::UNKNOWN_MEMBER_ID);
        let error =
            std::iter::once(left.error_code).chain(left.members.iter().map(|m| m.error_code)).find(|c| !gone(c));
        match error {
            None => Ok(()),
            Some(error) => Err(membership_refused("leave", group, error)),
        }
    }
}

/// A duration in whole milliseconds, as the protocol's `int32` fields carry it.
fn millis(duration: Duration, what: &str) -> Result<i32> {
    i32::try_from(duration.as_millis()).map_err(|_| Error::InvalidConfig {
        key: what.to_string(),
        value: format!("{duration:?}"),
        reason: "longer than the group protocol carries (about 24 days)".into(),
    })
}

/// `host:port`, with an IPv6 host in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn range_of(min: i16, max: i16) -> VersionRange {
    VersionRange { min, max }
}

/// The API's name, for errors.
fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map(|k| format!("{k:?}")).unwrap_or_else(|()| format!("API {key}"))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves a map of plain values: still usable.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a call failed.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt, after finding the coordinator again: the connection failed, or the
    /// coordinator moved or is not ready.
    Retry(String),
    /// Not: a malformed answer, no answer in time, a refusal.
    Fatal(Error),
}

/// The version of each group API this client sends: the highest both it and the broker speak.
#[derive(Debug, Clone, Copy)]
struct Versions {
    find_coordinator: i16,
    join_group: i16,
    sync_group: i16,
    heartbeat: i16,
    leave_group: i16,
}

impl Versions {
    /// The versions agreed from `address`'s ApiVersions answer.
    fn agreed(address: &str, served: &ApiVersionsResponse) -> Result<Versions> {
        fn highest<R: Request>(address: &str, served: &ApiVersionsResponse) -> Result<i16> {
            let api = api_name(R::KEY);
            let range = served
                .api_keys
                .iter()
                .find(|k| k.api_key == R::KEY)
                .map(|k| range_of(k.min_version, k.max_version))
                .ok_or_else(|| {
                    Error::Remote(format!("{address} does not serve {api}, which group membership needs"))
                })?;
            let both = range.intersect(&R::VERSIONS);
            if both.is_empty() {
                return Err(Error::Remote(format!(
                    "{address} serves {api} versions {range}, none of the versions {} this client speaks",
                    R::VERSIONS
                )));
            }
            Ok(both.max)
        }
        Ok(Versions {
            find_coordinator: highest::<FindCoordinatorRequest>(address, served)?,
            join_group: highest::<JoinGroupRequest>(address, served)?,
            sync_group: highest::<SyncGroupRequest>(address, served)?,
            heartbeat: highest::<HeartbeatRequest>(address, served)?,
            leave_group: highest::<LeaveGroupRequest>(address, served)?,
        })
    }
}

/// A connection to a broker: one request at a time, each answered before the next is sent.
#[derive(Debug)]
struct Connection {
    address: String,
    stream: TcpStream,
    /// The correlation id of the next request.
    next_correlation_id: i32,
}

impl Connection {
    async fn open(address: &str) -> Result<Connection, Failure> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Failure::Retry(format!("connecting to {address}: {e}"))),
            Err(_) => {
                return Err(Failure::Retry(format!("connecting to {address}: no connection in {CONNECT_TIMEOUT:?}")))
            }
        };
        // Requests are small and each waits for its answer: not held back to fill a segment.
        let _ = stream.set_nodelay(true);
        Ok(Connection { address: address.to_string(), stream, next_correlation_id: 1 })
    }

    /// Sends `request` at `version` and reads its answer's body (after the response header),
    /// waiting at most `timeout`. A connection that failed is not to be used again.
    async fn exchange<R: Request>(&mut self, request: &R, version: i16, timeout: Duration) -> Result<Bytes, Failure> {
        let api = api_name(R::KEY);
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        let encoded =
            header.encode(&mut frame, R::header_version(version)).and_then(|()| request.encode(&mut frame, version));
        if let Err(e) = encoded {
            return Err(Failure::Fatal(Error::Remote(format!("encoding {api} v{version}: {e}"))));
        }
        let length = i32::try_from(frame.len() - 4)
            .map_err(|_| Failure::Fatal(Error::Remote(format!("a {api} request of {} bytes", frame.len()))))?;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let address = self.address.clone();
        let exchanged = tokio::time::timeout(timeout, async {
            self.stream.write_all(&frame).await?;
            let length = self.stream.read_i32().await?;
            let length = usize::try_from(length).ok().filter(|n| (4..=MAX_FRAME).contains(n)).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("an answer announced as {length} bytes"))
            })?;
            let mut answer = vec![0; length];
            self.stream.read_exact(&mut answer).await?;
            Ok::<_, std::io::Error>(Bytes::from(answer))
        })
        .await;
        let mut answer = match exchanged {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(Failure::Fatal(Error::Remote(format!("{api} v{version} to {address}: {e}"))))
            }
            Ok(Err(e)) => return Err(Failure::Retry(format!("{api} v{version} to {address}: {e}"))),
            Err(_) => {
                return Err(Failure::Fatal(Error::Remote(format!(
                    "{api} v{version} to {address}: no answer in {timeout:?}"
                ))))
            }
        };
        let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version)).map_err(|e| {
            Failure::Fatal(Error::Remote(format!("a malformed {api} v{version} response header from {address}: {e}")))
        })?;
        if header.correlation_id != correlation_id {
            return Err(Failure::Fatal(Error::Remote(format!(
                "{address} answered {api} v{version} with correlation id {} where {correlation_id} was sent",
                header.correlation_id
            ))));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plaintext_is_spoken() {
        let with = |protocol: &str| BTreeMap::from([("security.protocol".to_string(), protocol.to_string())]);
        assert!(RemoteMembership::new("localhost:9092", &BTreeMap::new()).is_ok());
        assert!(RemoteMembership::new("localhost:9092", &with("plaintext")).is_ok());
        let refused = RemoteMembership::new("localhost:9092", &with("SASL_SSL")).unwrap_err();
        assert!(
            matches!(refused, Error::InvalidConfig { ref key, ref value, .. } if key == "security.protocol" && value == "SASL_SSL"),
            "{refused:?}"
        );
    }

    #[test]
    fn bootstrap_servers_and_coordinator_addresses_are_read_as_host_and_port() {
        let membership = RemoteMembership::new(" PLAINTEXT://a:9092, b:9093,,", &BTreeMap::new()).unwrap();
        assert_eq!(membership.bootstrap, ["a:9092", "b:9093"]);
        assert_eq!(host_port("broker-1", 9092), "broker-1:9092");
        assert_eq!(host_port("::1", 9092), "[::1]:9092");
    }

    /// A "broker" that answers the first request with `answer`, then keeps the connection open.
    async fn answering(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let length = stream.read_i32().await.unwrap();
            let mut request = vec![0; usize::try_from(length).unwrap()];
            stream.read_exact(&mut request).await.unwrap();
            stream.write_all(answer).await.unwrap();
            let _ = stream.read_i32().await;
        });
        address
    }

    #[tokio::test]
    async fn malformed_answers_are_errors_that_say_what_was_wrong() {
        // Correlation id 1 and an error code, then nothing of the api_keys array.
        let address = answering(&[0, 0, 0, 6, 0, 0, 0, 1, 0, 0]).await;
        let membership = RemoteMembership::new(&address, &BTreeMap::new()).unwrap();
        let e = membership.heartbeat("g", 1, "m").await.unwrap_err();
        assert!(matches!(e, Error::Remote(ref m) if m.contains("a malformed ApiVersions v3 answer")), "{e}");

        // The answer to another request (correlation id 7).
        let address = answering(&[0, 0, 0, 6, 0, 0, 0, 7, 0, 0]).await;
        let membership = RemoteMembership::new(&address, &BTreeMap::new()).unwrap();
        let e = membership.heartbeat("g", 1, "m").await.unwrap_err();
        assert!(matches!(e, Error::Remote(ref m) if m.contains("correlation id 7 where 1 was sent")), "{e}");

        // A frame length no answer has.
        let address = answering(&[0xff, 0xff, 0xff, 0xfe]).await;
        let membership = RemoteMembership::new(&address, &BTreeMap::new()).unwrap();
        let e = membership.heartbeat("g", 1, "m").await.unwrap_err();
        assert!(matches!(e, Error::Remote(ref m) if m.contains("an answer announced as -2 bytes")), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_cluster_is_reported_after_a_few_attempts() {
        // A port nothing listens on: bound, then closed.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let membership = RemoteMembership::new(&address, &BTreeMap::new()).unwrap();
        let e = membership.heartbeat("g", 1, "m").await.unwrap_err();
        assert!(
            matches!(e, Error::Remote(ref m) if m.contains("Heartbeat for group \"g\": no answer from its coordinator after 10 attempts")),
            "{e}"
        );
    }
}
