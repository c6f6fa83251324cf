//! The one table of the APIs the broker serves, and the request path through it.
//!
//! [`APIS`] names every API with the versions served and its handler. ApiVersions answers from
//! it, and a request is dispatched through it, so no version can be advertised that has no
//! handler, nor a handler reached for a version not advertised. A frame's header is checked
//! against the table before anything else is decoded: an unknown key, an API not served or a
//! version outside the range closes the connection (ApiVersions excepted, which answers error
//! 35 with the ranges served, as Kafka does, so a client can pick its versions).

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use freshet_coord::code;
use freshet_coord::group::GroupOffsets;
use freshet_coord::membership::Coordinator;
use freshet_coord::transactions::Transactions;
use freshet_log::Log;
use futures::future::BoxFuture;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::acl::{Authorizer, ANONYMOUS};
use crate::fallback::ErrorForm;
use crate::handlers::{acls, cluster, configs, fetch, groups, produce, topics, txn};
use crate::server::BrokerConfig;

/// What handling a request gives: the response frame (`None`: none is sent, as for acks=0), or
/// why the connection closes.
pub(crate) type Handled = std::result::Result<Option<Bytes>, String>;

/// A handler: decodes the request, runs it, encodes the response.
pub(crate) type Handler = for<'a> fn(Request<'a>) -> BoxFuture<'a, Handled>;

/// One API served: its key, the versions served, its handler.
#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) key: ApiKey,
    pub(crate) min_version: i16,
    pub(crate) max_version: i16,
    handler: Handler,
}

const fn api(key: ApiKey, min_version: i16, max_version: i16, handler: Handler) -> Api {
    Api { key, min_version, max_version, handler }
}

/// Every API served, with its versions and handler.
pub(crate) const APIS: &[Api] = &[
    // From v0: older librdkafka compresses only when a broker serves Produce v0 (see `legacy`).
    api(ApiKey::Produce, 0, 9, produce::serve),
    api(ApiKey::Fetch, 4, 12, fetch::serve_fetch),
    api(ApiKey::ListOffsets, 1, 7, fetch::serve_list_offsets),
    api(ApiKey::OffsetForLeaderEpoch, 2, 4, fetch::serve_offsets_for_leader_epoch),
    api(ApiKey::Metadata, 0, 12, topics::serve_metadata),
    api(ApiKey::ApiVersions, 0, 3, serve_api_versions),
    api(ApiKey::CreateTopics, 2, 7, topics::serve_create_topics),
    api(ApiKey::DeleteTopics, 1, 5, topics::serve_delete_topics),
    api(ApiKey::FindCoordinator, 0, 4, groups::serve_find_coordinator),
    api(ApiKey::JoinGroup, 0, 9, groups::serve_join_group),
    api(ApiKey::SyncGroup, 0, 5, groups::serve_sync_group),
    api(ApiKey::Heartbeat, 0, 4, groups::serve_heartbeat),
    api(ApiKey::LeaveGroup, 0, 5, groups::serve_leave_group),
    api(ApiKey::OffsetCommit, 2, 8, groups::serve_offset_commit),
    api(ApiKey::OffsetFetch, 1, 7, groups::serve_offset_fetch),
    api(ApiKey::ListGroups, 0, 5, groups::serve_list_groups),
    api(ApiKey::DescribeGroups, 0, 5, groups::serve_describe_groups),
    api(ApiKey::DeleteGroups, 0, 2, groups::serve_delete_groups),
    api(ApiKey::OffsetDelete, 0, 0, groups::serve_offset_delete),
    api(ApiKey::DescribeConfigs, 1, 4, configs::serve_describe),
    api(ApiKey::CreateAcls, 1, 3, acls::serve_create),
    api(ApiKey::DescribeAcls, 1, 3, acls::serve_describe),
    api(ApiKey::DeleteAcls, 1, 3, acls::serve_delete),
    api(ApiKey::AlterConfigs, 0, 2, configs::serve_alter),
    api(ApiKey::IncrementalAlterConfigs, 0, 1, configs::serve_incremental_alter),
    api(ApiKey::CreatePartitions, 0, 3, topics::serve_create_partitions),
    api(ApiKey::DeleteRecords, 0, 2, topics::serve_delete_records),
    api(ApiKey::DescribeCluster, 0, 1, topics::serve_describe_cluster),
    api(ApiKey::DescribeLogDirs, 1, 4, topics::serve_describe_log_dirs),
    api(ApiKey::DescribeQuorum, 0, 2, cluster::serve_describe_quorum),
    api(ApiKey::ElectLeaders, 0, 2, cluster::serve_elect_leaders),
    api(ApiKey::AlterPartitionReassignments, 0, 1, cluster::serve_alter_reassignments),
    api(ApiKey::ListPartitionReassignments, 0, 0, cluster::serve_list_reassignments),
    api(ApiKey::InitProducerId, 0, 4, txn::serve_init_producer_id),
    api(ApiKey::AddPartitionsToTxn, 0, 3, txn::serve_add_partitions),
    api(ApiKey::AddOffsetsToTxn, 0, 3, txn::serve_add_offsets),
    api(ApiKey::EndTxn, 0, 3, txn::serve_end_txn),
    api(ApiKey::TxnOffsetCommit, 0, 3, txn::serve_txn_offset_commit),
    api(ApiKey::WriteTxnMarkers, 1, 1, txn::serve_write_txn_markers),
];

/// What every handler serves from: the log, the coordinators, and what the broker tells clients about itself.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) log: Log,
    pub(crate) offsets: GroupOffsets,
    pub(crate) coordinator: Coordinator,
    pub(crate) transactions: Transactions,
    pub(crate) authorizer: Authorizer,
    pub(crate) dynamic: crate::dynamic::DynamicConfigs,
    pub(crate) config: BrokerConfig,
    pub(crate) host: String,
    pub(crate) port: i32,
    /// This node's part in a cluster of brokers, if it is one.
    pub(crate) cluster: Option<std::sync::Arc<crate::cluster::ClusterNode>>,
}

impl Served {
    pub(crate) fn new(
        log: Log,
        offsets: GroupOffsets,
        coordinator: Coordinator,
        config: BrokerConfig,
        host: String,
        port: i32,
    ) -> Self {
        coordinator.set_max_group_size(config.group_max_size);
        coordinator.set_initial_rebalance_delay(config.group_initial_rebalance_delay);
        let transactions = Transactions::new(log.clone(), offsets.clone());
        let authorizer = Authorizer::new(log.clone(), config.authorizer.clone());
        let dynamic = crate::dynamic::DynamicConfigs::new(log.clone());
        Served { log, offsets, coordinator, transactions, authorizer, dynamic, config, host, port, cluster: None }
    }

    /// A client at `ip`, as the authorizer sees it.
    pub(crate) fn access(&self, ip: std::net::IpAddr) -> Access<'_> {
        Access { authorizer: &self.authorizer, host: ip.to_string() }
    }
}

/// A request being handled: its API, version and header, its body (not yet decoded), where it
/// came from and what it is served from.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    pub(crate) api: ApiKey,
    pub(crate) version: i16,
    pub(crate) header: RequestHeader,
    pub(crate) body: Bytes,
    pub(crate) peer: SocketAddr,
    pub(crate) served: &'a Served,
}

/// Who sent a request, as the authorizer sees them: every connection is unauthenticated
/// PLAINTEXT, so the principal is `User:ANONYMOUS`; the host is the client's address.
#[derive(Debug, Clone)]
pub(crate) struct Access<'a> {
    authorizer: &'a Authorizer,
    host: String,
}

impl Access<'_> {
    /// Whether the sender may perform `operation` on the resource `name` of `resource_type`.
    pub(crate) fn allows(&self, operation: i8, resource_type: i8, name: &str) -> bool {
        self.authorizer.authorize(ANONYMOUS, &self.host, operation, resource_type, name)
    }

    /// Whether the sender may perform `operation` on the topic `name`.
    pub(crate) fn topic(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, crate::acl::resource::TOPIC, name)
    }

    /// Whether the sender may perform `operation` on the group `name`.
    pub(crate) fn group(&self, operation: i8, name: &str) -> bool {
        self.allows(operation, crate::acl::resource::GROUP, name)
    }

    /// Whether the sender may perform `operation` on the transactional id `id`.
    pub(crate) fn transactional_id(&self, operation: i8, id: &str) -> bool {
        self.allows(operation, crate::acl::resource::TRANSACTIONAL_ID, id)
    }

    /// Whether the sender may perform `operation` on the cluster.
    pub(crate) fn cluster(&self, operation: i8) -> bool {
        self.allows(operation, crate::acl::resource::CLUSTER, crate::acl::CLUSTER_NAME)
    }

    /// Whether the sender may perform `operation` on some resource of `resource_type`.
    pub(crate) fn any(&self, operation: i8, resource_type: i8) -> bool {
        self.authorizer.authorize_any(ANONYMOUS, &self.host, operation, resource_type)
    }

    /// Of the operations in `supported` (a bit per operation code), those the sender may perform
    /// on the resource `name` of `resource_type`: the bit field Metadata, DescribeCluster and
    /// DescribeGroups return.
    pub(crate) fn operations(&self, resource_type: i8, name: &str, supported: i32) -> i32 {
        (0..31)
            .filter(|bit| supported & (1 << bit) != 0 && self.allows(*bit as i8, resource_type, name))
            .fold(0, |field, bit| field | (1 << bit))
    }
}

impl Request<'_> {
    /// Who sent the request, for the authorizer's checks.
    pub(crate) fn access(&self) -> Access<'_> {
        self.served.access(self.peer.ip())
    }

    /// The request's body, decoded at its version.
    pub(crate) fn decode<T: Decodable>(&mut self) -> std::result::Result<T, String> {
        T::decode(&mut self.body, self.version)
            .map_err(|e| format!("a malformed {:?} v{} request: {e}", self.api, self.version))
    }

    /// The response header and its version.
    pub(crate) fn response_header(&self) -> (ResponseHeader, i16) {
        (
            ResponseHeader::default().with_correlation_id(self.header.correlation_id),
            self.api.response_header_version(self.version),
        )
    }

    /// The response frame of `body`. A body that cannot be encoded at the request's version (a
    /// bug: a field set that the version does not have) is answered with its error form, every
    /// item UNKNOWN_SERVER_ERROR, so the client gets an answer and keeps its connection.
    pub(crate) fn respond<T: Encodable + ErrorForm>(&self, body: &T) -> Handled {
        let (header, header_version) = self.response_header();
        match encode(header.clone(), header_version, body, self.version) {
            Ok(frame) => Ok(Some(frame)),
            Err(reason) => {
                tracing::error!(api = ?self.api, version = self.version, %reason, "a response that cannot be encoded: answering with its error form");
                let fallback = body.error_form(code::UNKNOWN_SERVER_ERROR, self.version);
                encode(header, header_version, &fallback, self.version).map(Some)
            }
        }
    }
}

/// The request path without a socket, for the fuzz target in `core/broker/fuzz`: a frame goes
/// through the decoding and handling a connection's frames go through.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct FrameHarness {
    served: Served,
}

impl FrameHarness {
    /// Serves `log` as a broker with `config` would (no listener).
    pub fn new(log: Log, offsets: GroupOffsets, config: BrokerConfig) -> Self {
        let port = i32::from(config.listen.port());
        FrameHarness { served: Served::new(log, offsets, Coordinator::new(), config, "127.0.0.1".into(), port) }
    }

    /// One request frame (without its length prefix): the response frame, `None` when there is
    /// none (acks=0), or why the connection would be closed.
    pub async fn handle(&self, frame: Bytes) -> Handled {
        handle_frame(frame, SocketAddr::from(([127, 0, 0, 1], 1)), &self.served).await
    }
}

/// Decodes a request frame's header, finds its API in [`APIS`] and runs its handler.
pub(crate) async fn handle_frame(mut frame: Bytes, peer: SocketAddr, served: &Served) -> Handled {
    if frame.len() < 8 {
        return Err(format!("a request of {} bytes, shorter than its header", frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    let Some(served_api) = APIS.iter().find(|a| a.key == api) else {
        return Err(format!("API {api:?} is not served"));
    };
    if !(served_api.min_version..=served_api.max_version).contains(&version) {
        if api == ApiKey::ApiVersions {
            // As Kafka: a v0 body saying which versions are served.
            let response = api_versions(code::UNSUPPORTED_VERSION);
            return encode(ResponseHeader::default().with_correlation_id(correlation_id), 0, &response, 0).map(Some);
        }
        return Err(format!(
            "{api:?} version {version} (served: {} to {})",
            served_api.min_version, served_api.max_version
        ));
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("a malformed {api:?} request header: {e}"))?;
    (served_api.handler)(Request { api, version, header, body: frame, peer, served }).await
}

/// ApiVersions: the table above.
fn serve_api_versions(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let _: ApiVersionsRequest = r.decode()?;
        r.respond(&api_versions(code::NONE))
    })
}

/// Every API of [`APIS`] with its versions.
pub(crate) fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let api_keys = APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min_version)
                .with_max_version(a.max_version)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

/// A response frame: the header, then the body, each at its version.
pub(crate) fn encode<T: Encodable>(
    header: ResponseHeader,
    header_version: i16,
    body: &T,
    version: i16,
) -> std::result::Result<Bytes, String> {
    let mut out = BytesMut::new();
    header.encode(&mut out, header_version).map_err(|e| format!("encoding a response header: {e}"))?;
    body.encode(&mut out, version).map_err(|e| format!("encoding a response: {e}"))?;
    Ok(out.freeze())
}

/// A topic name as the protocol carries it.
pub(crate) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}
