//! The Kafka-protocol broker: serves the log to unmodified Kafka clients over TCP.
//!
//! Each connection reads size-prefixed frames (the size bounded before anything is allocated),
//! decodes the request header and body with the `kafka-protocol` crate, runs the request against
//! the [`Log`], and writes the response; requests on one connection are answered one after another,
//! so responses go out in request order; connections are served concurrently. Record batches pass
//! through as bytes: a produce appends the client's batches as they came (the log checks their
//! CRC and assigns offsets in place), a fetch returns the stored batches.
//!
//! A malformed frame, an unknown API key, an unsupported version (other than ApiVersions, which
//! answers with error 35 and the supported ranges, as Kafka does) or a frame over the configured
//! maximum closes that connection alone; the broker goes on serving everyone else.
//!
//! Served so far: ApiVersions, Metadata (with topic auto-creation), Produce (acks 0, 1, all),
//! Fetch (long-poll with max wait and min bytes), ListOffsets, CreateTopics, DeleteTopics, and
//! the classic consumer-group protocol (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups; see
//! [`freshet_coord::membership`]), DeleteGroups, and the admin APIs DescribeConfigs,
//! AlterConfigs, IncrementalAlterConfigs, CreatePartitions, DeleteRecords and DescribeCluster, and the
//! idempotent producer (InitProducerId; per-partition sequence checks that answer a retry with its
//! original offset and refuse gaps and old epochs; the state is read back from the log after a
//! restart). Produce v0-2 carry message sets of formats v0/v1, converted to record batches by
//! `legacy`. Transactions are not served.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    api_versions_response::ApiVersion, create_topics_response::CreatableTopicResult,
    delete_topics_response::DeletableTopicResult, fetch_response::FetchableTopicResponse,
    fetch_response::PartitionData, list_offsets_response::ListOffsetsPartitionResponse,
    list_offsets_response::ListOffsetsTopicResponse, metadata_response::MetadataResponseBroker,
    metadata_response::MetadataResponsePartition, metadata_response::MetadataResponseTopic,
    produce_response::PartitionProduceResponse, produce_response::TopicProduceResponse, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeGroupsRequest, DescribeGroupsResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    EndTxnRequest, EndTxnResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteGroupsRequest, DeleteGroupsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use freshet_coord::group::{GroupOffsets, OffsetAndMetadata, TopicPartition};
use freshet_coord::membership::{Coordinator, JoinRequest};
use freshet_coord::transactions::{new_producer_id, Refusal, Transactions, TxnError};
use freshet_log::{Error, Isolation, Log, OffsetSpec, Result};

use freshet_coord::code;

/// The APIs served and the versions of each.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    // From v0: older librdkafka compresses only when a broker serves Produce v0 (see `legacy`).
    (ApiKey::Produce, 0, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
];

fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max))
}

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
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_host: None,
            max_frame_bytes: 100 << 20,
            auto_create_topics: true,
            default_partitions: 1,
        }
    }
}

/// A running broker.
#[derive(Debug)]
pub struct Broker {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct Served {
    log: Log,
    offsets: GroupOffsets,
    coordinator: Coordinator,
    transactions: Transactions,
    producers: Producers,
    config: BrokerConfig,
    host: String,
    port: i32,
}

impl Served {
    fn new(log: Log, offsets: GroupOffsets, config: BrokerConfig, host: String, port: i32) -> Self {
        let transactions = Transactions::new(log.clone(), offsets.clone());
        Served {
            log,
            offsets,
            coordinator: Coordinator::new(),
            transactions,
            producers: Producers::default(),
            config,
            host,
            port,
        }
    }
}

/// The request path without a socket, for the fuzz target in `core/fuzz`: a frame goes through
/// the decoding and handling a connection's frames go through.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct FrameHarness {
    served: Served,
}

impl FrameHarness {
    /// Serves `log` as a broker with `config` would (no listener).
    pub fn new(log: Log, offsets: GroupOffsets, config: BrokerConfig) -> Self {
        let port = i32::from(config.listen.port());
        FrameHarness { served: Served::new(log, offsets, config, "127.0.0.1".into(), port) }
    }

    /// One request frame (without its length prefix): the response frame, `None` when there is
    /// none (acks=0), or why the connection would be closed.
    pub async fn handle(&self, frame: Bytes) -> std::result::Result<Option<Bytes>, String> {
        handle_frame(frame, SocketAddr::from(([127, 0, 0, 1], 1)), &self.served).await
    }
}

impl Broker {
    /// Listens on `config.listen` and serves `log` (its groups' offsets in `offsets`) until
    /// [`Broker::stop`].
    pub async fn start(log: Log, offsets: GroupOffsets, config: BrokerConfig) -> Result<Broker> {
        let listener = TcpListener::bind(config.listen).await.map_err(|e| Error::InvalidConfig {
            key: "listeners".into(),
            value: config.listen.to_string(),
            reason: format!("cannot listen: {e}"),
        })?;
        let local_addr = listener.local_addr().map_err(|e| Error::Internal(format!("no local address: {e}")))?;
        let host = config.advertised_host.clone().unwrap_or_else(|| local_addr.ip().to_string());
        let served = Served::new(log, offsets, config, host, i32::from(local_addr.port()));
        served.coordinator.start_expiry();
        // Transactions a previous run decided are completed before any client is served.
        served.transactions.load().await?;
        served.transactions.start_expiry(Duration::from_secs(1));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let served = served.clone();
                            let stopped = stopped.clone();
                            tokio::spawn(async move {
                                if let Err(reason) = serve_connection(stream, peer, &served, stopped).await {
                                    tracing::info!(%peer, %reason, "connection closed");
                                }
                            });
                        }
                        Err(error) => tracing::warn!(%error, "accept failed"),
                    },
                    _ = stopped.changed() => break,
                }
            }
        });
        tracing::info!(%local_addr, "broker listening");
        Ok(Broker { local_addr, stop, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
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
            let mut out = BytesMut::with_capacity(response.len() + 4);
            out.put_i32(response.len() as i32);
            out.put_slice(&response);
            stream.write_all(&out).await.map_err(|e| format!("writing a response: {e}"))?;
        }
    }
}

/// Decodes a request frame, runs it, encodes the response (`None`: no response, acks=0).
async fn handle_frame(
    mut frame: Bytes,
    peer: SocketAddr,
    served: &Served,
) -> std::result::Result<Option<Bytes>, String> {
    if frame.len() < 8 {
        return Err(format!("a request of {} bytes, shorter than its header", frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    let Some((min, max)) = supported(api) else {
        return Err(format!("API {api:?} is not served"));
    };
    if !(min..=max).contains(&version) {
        if api == ApiKey::ApiVersions {
            // As Kafka: a v0 body saying which versions are served.
            let response = api_versions(code::UNSUPPORTED_VERSION);
            return encode(ResponseHeader::default().with_correlation_id(correlation_id), 0, &response, 0).map(Some);
        }
        return Err(format!("{api:?} version {version} (served: {min} to {max})"));
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| format!("a malformed {api:?} request header: {e}"))?;
    let response_header = ResponseHeader::default().with_correlation_id(header.correlation_id);
    let header_version = api.response_header_version(version);
    let bad = |e: anyhow::Error| format!("a malformed {api:?} v{version} request: {e}");
    match api {
        ApiKey::ApiVersions => {
            ApiVersionsRequest::decode(&mut frame, version).map_err(bad)?;
            encode(response_header, header_version, &api_versions(code::NONE), version).map(Some)
        }
        ApiKey::Metadata => {
            let request = MetadataRequest::decode(&mut frame, version).map_err(bad)?;
            let response = metadata(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::Produce if version < 3 => {
            let request = crate::legacy::decode_produce(frame, served.log.clock().now_ms())
                .map_err(|e| format!("a malformed Produce v{version} request: {e}"))?;
            let acks = request.acks;
            let results = produce_legacy(request, served).await;
            if acks == 0 {
                return Ok(None);
            }
            let mut out = BytesMut::new();
            response_header.encode(&mut out, header_version).map_err(|e| format!("encoding a response header: {e}"))?;
            crate::legacy::encode_produce_response(&mut out, version, &results);
            Ok(Some(out.freeze()))
        }
        ApiKey::Produce => {
            let request = ProduceRequest::decode(&mut frame, version).map_err(bad)?;
            let acks = request.acks;
            let response = produce(request, served).await;
            if acks == 0 {
                return Ok(None);
            }
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::Fetch => {
            let request = FetchRequest::decode(&mut frame, version).map_err(bad)?;
            let response = fetch(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::ListOffsets => {
            let request = ListOffsetsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = list_offsets(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::CreateTopics => {
            let request = CreateTopicsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = create_topics(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::DeleteTopics => {
            let request = DeleteTopicsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = delete_topics(request, version, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::decode(&mut frame, version).map_err(bad)?;
            encode(response_header, header_version, &find_coordinator(request, version, served), version).map(Some)
        }
        ApiKey::JoinGroup => {
            let request = JoinGroupRequest::decode(&mut frame, version).map_err(bad)?;
            let client_id = header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
            let response = join_group(request, version, client_id, peer, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::SyncGroup => {
            let request = SyncGroupRequest::decode(&mut frame, version).map_err(bad)?;
            let assignments =
                request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
            let sync = served
                .coordinator
                .sync(&request.group_id.0, request.generation_id, &request.member_id, assignments)
                .await;
            let response = SyncGroupResponse::default()
                .with_error_code(sync.error_code)
                .with_protocol_type(sync.protocol_type.map(StrBytes::from_string))
                .with_protocol_name(sync.protocol_name.map(StrBytes::from_string))
                .with_assignment(sync.assignment);
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::Heartbeat => {
            let request = HeartbeatRequest::decode(&mut frame, version).map_err(bad)?;
            let error =
                served.coordinator.heartbeat(&request.group_id.0, request.generation_id, &request.member_id).await;
            encode(response_header, header_version, &HeartbeatResponse::default().with_error_code(error), version)
                .map(Some)
        }
        ApiKey::LeaveGroup => {
            let request = LeaveGroupRequest::decode(&mut frame, version).map_err(bad)?;
            let response = leave_group(request, version, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::OffsetCommit => {
            let request = OffsetCommitRequest::decode(&mut frame, version).map_err(bad)?;
            let response = offset_commit(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::OffsetFetch => {
            let request = OffsetFetchRequest::decode(&mut frame, version).map_err(bad)?;
            let response = offset_fetch(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::ListGroups => {
            ListGroupsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = list_groups(served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::DescribeGroups => {
            let request = DescribeGroupsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = describe_groups(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::DeleteGroups => {
            let request = DeleteGroupsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = delete_groups(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::DescribeConfigs => {
            let request = DescribeConfigsRequest::decode(&mut frame, version).map_err(bad)?;
            encode(response_header, header_version, &describe_configs(request, served), version).map(Some)
        }
        ApiKey::AlterConfigs => {
            let request = AlterConfigsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = replace_configs(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::IncrementalAlterConfigs => {
            let request = IncrementalAlterConfigsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = alter_configs(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::CreatePartitions => {
            let request = CreatePartitionsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = create_partitions(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::DeleteRecords => {
            let request = DeleteRecordsRequest::decode(&mut frame, version).map_err(bad)?;
            let response = delete_records(request, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::InitProducerId => {
            let request = InitProducerIdRequest::decode(&mut frame, version).map_err(bad)?;
            let response = if let Some(id) = request.transactional_id.as_ref().filter(|id| !id.is_empty()) {
                let timeout = Duration::from_millis(u64::try_from(request.transaction_timeout_ms).unwrap_or(0));
                match served.transactions.init_producer_id(id, timeout).await {
                    Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(epoch),
                    Err(e) => {
                        tracing::info!(transactional_id = %id.0, error = %e, "InitProducerId refused");
                        InitProducerIdResponse::default()
                            .with_error_code(txn_error_code(&e, version >= 4))
                            .with_producer_id(ProducerId(-1))
                            .with_producer_epoch(-1)
                    }
                }
            } else if request.producer_id.0 >= 0 {
                // An existing producer bumps its epoch (KIP-360).
                InitProducerIdResponse::default()
                    .with_producer_id(request.producer_id)
                    .with_producer_epoch(request.producer_epoch.wrapping_add(1).max(0))
            } else {
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(new_producer_id(served.log.clock().now_ms())))
                    .with_producer_epoch(0)
            };
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::AddPartitionsToTxn => {
            let request = AddPartitionsToTxnRequest::decode(&mut frame, version).map_err(bad)?;
            let response = add_partitions_to_txn(request, version, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::AddOffsetsToTxn => {
            let request = AddOffsetsToTxnRequest::decode(&mut frame, version).map_err(bad)?;
            let result = served
                .transactions
                .add_offsets(
                    &request.transactional_id,
                    request.producer_id.0,
                    request.producer_epoch,
                    &request.group_id,
                )
                .await;
            let response = AddOffsetsToTxnResponse::default().with_error_code(txn_result_code(result, version >= 3));
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::EndTxn => {
            let request = EndTxnRequest::decode(&mut frame, version).map_err(bad)?;
            let result = served
                .transactions
                .end(&request.transactional_id, request.producer_id.0, request.producer_epoch, request.committed)
                .await;
            let response = EndTxnResponse::default().with_error_code(txn_result_code(result, version >= 2));
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::TxnOffsetCommit => {
            let request = TxnOffsetCommitRequest::decode(&mut frame, version).map_err(bad)?;
            let response = txn_offset_commit(request, version, served).await;
            encode(response_header, header_version, &response, version).map(Some)
        }
        ApiKey::DescribeCluster => {
            DescribeClusterRequest::decode(&mut frame, version).map_err(bad)?;
            let broker = kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker::default()
                .with_broker_id(BrokerId(0))
                .with_host(StrBytes::from_string(served.host.clone()))
                .with_port(served.port);
            let response = DescribeClusterResponse::default()
                .with_cluster_id(StrBytes::from_static_str("freshet"))
                .with_controller_id(BrokerId(0))
                .with_brokers(vec![broker]);
            encode(response_header, header_version, &response, version).map(Some)
        }
        other => Err(format!("API {other:?} is not served")),
    }
}

/// Kafka's resource type of a topic in config requests.
const TOPIC_RESOURCE: i8 = 2;

fn describe_configs(request: DescribeConfigsRequest, served: &Served) -> DescribeConfigsResponse {
    use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if resource.resource_type != TOPIC_RESOURCE {
                // Broker configs: none are described yet; an empty list, no error.
                return out;
            }
            match served.log.describe_configs(&resource.resource_name) {
                Ok(entries) => {
                    let wanted =
                        resource.configuration_keys.map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
                    let configs = entries
                        .into_iter()
                        .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
                        .map(|e| {
                            // Sources: 1 set on the topic, 5 the default.
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(e.name))
                                .with_value(Some(StrBytes::from_string(e.value)))
                                .with_config_source(if e.is_default { 5 } else { 1 })
                        })
                        .collect();
                    out.with_configs(configs)
                }
                Err(e) => {
                    out.with_error_code(error_code(&e)).with_error_message(Some(StrBytes::from_string(e.to_string())))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// AlterConfigs (the older API, which librdkafka's admin client uses): the configs given become
/// the topic's whole set of overrides; every override not given goes back to its default.
async fn replace_configs(request: AlterConfigsRequest, served: &Served) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let out = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let topic = resource.resource_name.to_string();
        let result = if resource.resource_type != TOPIC_RESOURCE {
            Err((code::INVALID_CONFIG, "only topic configs can be altered".to_string()))
        } else {
            let wanted: BTreeMap<String, String> = resource
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map_or_else(String::new, |v| v.to_string())))
                .collect();
            match served.log.describe_topic(&topic) {
                Err(e) => Err((error_code(&e), e.to_string())),
                Ok(_) if request.validate_only => {
                    freshet_log::config::TopicConfig::validate(&wanted).map_err(|e| (error_code(&e), e.to_string()))
                }
                Ok(current) => {
                    let mut changes: BTreeMap<String, Option<String>> = current
                        .overrides
                        .keys()
                        .filter(|k| !wanted.contains_key(*k))
                        .map(|k| (k.clone(), None))
                        .collect();
                    changes.extend(wanted.into_iter().map(|(k, v)| (k, Some(v))));
                    served.log.alter_topic_config(&topic, changes).await.map_err(|e| (error_code(&e), e.to_string()))
                }
            }
        };
        responses.push(match result {
            Ok(()) => out,
            Err((code, message)) => out.with_error_code(code).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

async fn alter_configs(request: IncrementalAlterConfigsRequest, served: &Served) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let out = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let topic = resource.resource_name.to_string();
        // Operations: 0 set, 1 delete (back to the default); 2 append and 3 subtract apply to list
        // configs, which topics here do not have.
        let mut changes = BTreeMap::new();
        let mut refused = None;
        for c in &resource.configs {
            match c.config_operation {
                0 => {
                    changes.insert(c.name.to_string(), c.value.as_ref().map(|v| v.to_string()));
                }
                1 => {
                    changes.insert(c.name.to_string(), None);
                }
                op => {
                    refused = Some(format!("operation {op} on {} is not supported for topic configs", c.name.as_str()))
                }
            }
        }
        let result = if resource.resource_type != TOPIC_RESOURCE {
            Err((code::INVALID_CONFIG, "only topic configs can be altered".to_string()))
        } else if let Some(reason) = refused {
            Err((code::INVALID_CONFIG, reason))
        } else if request.validate_only {
            served.log.describe_topic(&topic).map(|_| ()).map_err(|e| (error_code(&e), e.to_string()))
        } else {
            served.log.alter_topic_config(&topic, changes).await.map_err(|e| (error_code(&e), e.to_string()))
        };
        responses.push(match result {
            Ok(()) => out,
            Err((code, message)) => out.with_error_code(code).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn create_partitions(request: CreatePartitionsRequest, served: &Served) -> CreatePartitionsResponse {
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name_str = topic.name.0.to_string();
        let result = match served.log.describe_topic(&name_str) {
            Err(e) => Err((error_code(&e), e.to_string())),
            Ok(d) if topic.count <= d.n_partitions as i32 => Err((
                code::INVALID_PARTITIONS,
                format!(
                    "topic {name_str} has {} partitions; it can only grow (asked for {})",
                    d.n_partitions, topic.count
                ),
            )),
            Ok(_) if request.validate_only => Ok(()),
            Ok(_) => served
                .log
                .create_partitions(&name_str, topic.count as u32)
                .await
                .map_err(|e| (error_code(&e), e.to_string())),
        };
        let out = CreatePartitionsTopicResult::default().with_name(topic.name);
        results.push(match result {
            Ok(()) => out,
            Err((code, message)) => out.with_error_code(code).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn delete_records(request: DeleteRecordsRequest, served: &Served) -> DeleteRecordsResponse {
    use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name_str = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let out = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let result = match u32::try_from(p.partition_index) {
                Ok(partition) => {
                    // -1: up to the high watermark.
                    let before = if p.offset == -1 {
                        served
                            .log
                            .list_offset(&name_str, partition, OffsetSpec::Latest)
                            .await
                            .map(|o| o.map_or(0, |(o, _)| o))
                    } else {
                        Ok(p.offset)
                    };
                    match before {
                        Ok(before) => served.log.delete_records(&name_str, partition, before).await,
                        Err(e) => Err(e),
                    }
                }
                Err(_) => Err(Error::UnknownTopic(name_str.clone())),
            };
            partitions.push(match result {
                Ok(low) => out.with_low_watermark(low),
                Err(e) => out.with_error_code(error_code(&e)).with_low_watermark(-1),
            });
        }
        topics.push(DeleteRecordsTopicResult::default().with_name(topic.name).with_partitions(partitions));
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

async fn delete_groups(request: DeleteGroupsRequest, served: &Served) -> DeleteGroupsResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group in request.groups_names {
        let mut error = served.coordinator.delete(&group.0).await;
        if error == 0 {
            error = match served.offsets.delete_group(&group.0).await {
                Ok(true) => 0,
                Ok(false) => code::GROUP_ID_NOT_FOUND,
                Err(e) => error_code(&e),
            };
        }
        results.push(DeletableGroupResult::default().with_group_id(group).with_error_code(error));
    }
    DeleteGroupsResponse::default().with_results(results)
}

fn find_coordinator(request: FindCoordinatorRequest, version: i16, served: &Served) -> FindCoordinatorResponse {
    // This broker coordinates every group.
    let host = StrBytes::from_string(served.host.clone());
    let response =
        FindCoordinatorResponse::default().with_node_id(BrokerId(0)).with_host(host.clone()).with_port(served.port);
    if version < 4 {
        return response;
    }
    let coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            kafka_protocol::messages::find_coordinator_response::Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(0))
                .with_host(host.clone())
                .with_port(served.port)
        })
        .collect();
    response.with_coordinators(coordinators)
}

async fn join_group(
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    peer: SocketAddr,
    served: &Served,
) -> JoinGroupResponse {
    if request.group_id.0.is_empty() {
        return JoinGroupResponse::default().with_error_code(code::INVALID_GROUP_ID).with_generation_id(-1);
    }
    let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    if !(Duration::from_millis(1_000)..=Duration::from_secs(1_800)).contains(&session) {
        return JoinGroupResponse::default().with_error_code(code::INVALID_SESSION_TIMEOUT).with_generation_id(-1);
    }
    // Before v1 the rebalance timeout is the session timeout.
    let rebalance =
        if version >= 1 { Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64) } else { session };
    let join = served
        .coordinator
        .join(JoinRequest {
            group: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            instance_id: request.group_instance_id.map(|i| i.to_string()),
            client_id,
            client_host: format!("/{}", peer.ip()),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: request.protocol_type.to_string(),
            protocols: request.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
            requires_known_member_id: version >= 4,
        })
        .await;
    let members = join
        .members
        .into_iter()
        .map(|m| {
            kafka_protocol::messages::join_group_response::JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                .with_metadata(m.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(join.error_code)
        .with_generation_id(if join.error_code == 0 { join.generation } else { -1 })
        .with_protocol_type(join.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(Some(StrBytes::from_string(join.protocol_name.unwrap_or_default())))
        .with_leader(StrBytes::from_string(join.leader))
        .with_member_id(StrBytes::from_string(join.member_id))
        .with_members(members)
}

async fn leave_group(request: LeaveGroupRequest, version: i16, served: &Served) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|i| i.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let errors = served.coordinator.leave(&request.group_id.0, &members).await;
    if version < 3 {
        return LeaveGroupResponse::default().with_error_code(errors[0]);
    }
    let responses = members
        .into_iter()
        .zip(errors)
        .map(|((id, instance), error)| {
            kafka_protocol::messages::leave_group_response::MemberResponse::default()
                .with_member_id(StrBytes::from_string(id))
                .with_group_instance_id(instance.map(StrBytes::from_string))
                .with_error_code(error)
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

/// One partition's offset of an OffsetCommit or TxnOffsetCommit request (`None`: a negative
/// partition index, which no partition has).
fn committed(
    topic: &TopicName,
    partition_index: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: &Option<StrBytes>,
) -> Option<(TopicPartition, OffsetAndMetadata)> {
    let partition = u32::try_from(partition_index).ok()?;
    let mut committed = OffsetAndMetadata::new(offset);
    committed.leader_epoch = leader_epoch;
    committed.metadata = metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
    Some((TopicPartition::new(topic.0.to_string(), partition), committed))
}

async fn offset_commit(request: OffsetCommitRequest, served: &Served) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let check =
        served.coordinator.check_commit(&group, request.generation_id_or_member_epoch, &request.member_id).await;
    let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter_map(|p| {
                committed(
                    &t.name,
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    &p.committed_metadata,
                )
            })
        })
        .collect();
    if check != 0 {
        tracing::info!(%group, member = %request.member_id, generation = request.generation_id_or_member_epoch, code = check, "offset commit refused");
    }
    let stored = if check == 0 {
        match served.offsets.commit(&group, &offsets).await {
            Ok(()) => 0,
            Err(e) => error_code(&e),
        }
    } else {
        check
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    kafka_protocol::messages::offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(stored)
                })
                .collect();
            kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

async fn offset_fetch(request: OffsetFetchRequest, served: &Served) -> OffsetFetchResponse {
    use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
    let group = request.group_id.0.to_string();
    let committed = served.offsets.fetch(&group, None);
    // A consumer that requires stable offsets waits while a transaction holds some uncommitted.
    let pending =
        if request.require_stable { served.transactions.pending_offsets(&group).await } else { BTreeSet::new() };
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect(),
        None => {
            let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for tp in committed.keys() {
                all.entry(tp.topic.clone()).or_default().push(tp.partition as i32);
            }
            all.into_iter().collect()
        }
    };
    let topics = wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    let found =
                        u32::try_from(p).ok().and_then(|p| committed.get(&TopicPartition::new(topic.clone(), p)));
                    let out = OffsetFetchResponsePartition::default().with_partition_index(p);
                    if u32::try_from(p).is_ok_and(|p| pending.contains(&TopicPartition::new(topic.clone(), p))) {
                        return out.with_error_code(code::UNSTABLE_OFFSET_COMMIT).with_committed_offset(-1);
                    }
                    match found {
                        Some(c) => out
                            .with_committed_offset(c.offset)
                            .with_committed_leader_epoch(c.leader_epoch)
                            .with_metadata(Some(StrBytes::from_string(c.metadata.clone()))),
                        None => out
                            .with_committed_offset(-1)
                            .with_committed_leader_epoch(-1)
                            .with_metadata(Some(StrBytes::default())),
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(name(&topic)).with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

async fn list_groups(served: &Served) -> ListGroupsResponse {
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    let mut groups: BTreeMap<String, (String, String)> =
        served.offsets.groups().into_iter().map(|g| (g, ("consumer".to_string(), "Empty".to_string()))).collect();
    for (group, protocol_type, state) in served.coordinator.list().await {
        groups.insert(group, (protocol_type, state.name().to_string()));
    }
    let listed = groups
        .into_iter()
        .map(|(group, (protocol_type, state))| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(StrBytes::from_string(state))
                .with_group_type(StrBytes::from_static_str("classic"))
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

async fn describe_groups(request: DescribeGroupsRequest, served: &Served) -> DescribeGroupsResponse {
    use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
    let mut described = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        let out = DescribedGroup::default().with_group_id(group.clone());
        described.push(match served.coordinator.describe(&group.0).await {
            Some(d) => out
                .with_group_state(StrBytes::from_static_str(d.state.name()))
                .with_protocol_type(StrBytes::from_string(d.protocol_type))
                .with_protocol_data(StrBytes::from_string(d.protocol))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                ),
            // A group known only by its committed offsets is empty; one never seen is "Dead".
            None if served.offsets.groups().iter().any(|g| **g == *group.0) => out
                .with_group_state(StrBytes::from_static_str("Empty"))
                .with_protocol_type(StrBytes::from_static_str("consumer")),
            None => out.with_group_state(StrBytes::from_static_str("Dead")),
        });
    }
    DescribeGroupsResponse::default().with_groups(described)
}

fn encode<T: Encodable>(
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

fn api_versions(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// The error code a log error maps to.
fn error_code(error: &Error) -> i16 {
    match error {
        Error::UnknownTopic(_) | Error::UnknownPartition { .. } => code::UNKNOWN_TOPIC_OR_PARTITION,
        Error::BatchTooLarge { .. } => code::MESSAGE_TOO_LARGE,
        Error::InvalidBatch(_) | Error::Corrupt { .. } | Error::Decode(_) => code::CORRUPT_MESSAGE,
        Error::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        Error::TopicExists(_) => code::TOPIC_ALREADY_EXISTS,
        Error::InvalidTopicName { .. } => code::INVALID_TOPIC_EXCEPTION,
        Error::InvalidConfig { .. } => code::INVALID_CONFIG,
        Error::ProducerFenced(_) => code::INVALID_PRODUCER_EPOCH,
        Error::Transaction(_) => code::INVALID_TXN_STATE,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

async fn metadata(request: MetadataRequest, served: &Served) -> MetadataResponse {
    let log = &served.log;
    let names: Vec<String> = match &request.topics {
        None => log.list_topics().into_iter().filter(|t| !t.internal).map(|t| t.name).collect(),
        Some(topics) => topics.iter().filter_map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect(),
    };
    let mut topics = Vec::with_capacity(names.len());
    for topic in names {
        let mut described = log.describe_topic(&topic);
        if matches!(described, Err(Error::UnknownTopic(_)))
            && request.allow_auto_topic_creation
            && served.config.auto_create_topics
        {
            match log.create_topic(&topic, served.config.default_partitions, BTreeMap::new()).await {
                Ok(()) | Err(Error::TopicExists(_)) => {
                    tracing::info!(%topic, "auto-created a topic");
                    described = log.describe_topic(&topic);
                }
                Err(e) => described = Err(e),
            }
        }
        let entry = match described {
            Ok(d) => MetadataResponseTopic::default().with_name(Some(name(&topic))).with_partitions(
                (0..d.n_partitions as i32)
                    .map(|p| {
                        MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_id(BrokerId(0))
                            .with_replica_nodes(vec![BrokerId(0)])
                            .with_isr_nodes(vec![BrokerId(0)])
                    })
                    .collect(),
            ),
            Err(e) => MetadataResponseTopic::default().with_name(Some(name(&topic))).with_error_code(error_code(&e)),
        };
        topics.push(entry);
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(0))
        .with_host(StrBytes::from_string(served.host.clone()))
        .with_port(served.port);
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_static_str("freshet")))
        .with_controller_id(BrokerId(0))
        .with_topics(topics)
}

/// Splits a produce payload into its record batches (each: base offset, length, then `length`
/// bytes).
fn split_batches(mut records: Bytes) -> std::result::Result<Vec<Bytes>, String> {
    let mut batches = Vec::new();
    while !records.is_empty() {
        if records.len() < 12 {
            return Err(format!("{} trailing bytes, shorter than a batch header", records.len()));
        }
        let length = i32::from_be_bytes([records[8], records[9], records[10], records[11]]);
        let total = 12usize.saturating_add(usize::try_from(length).map_err(|_| format!("a batch length of {length}"))?);
        if total > records.len() {
            return Err(format!("a batch of {total} bytes in {} bytes of records", records.len()));
        }
        batches.push(records.split_to(total));
    }
    Ok(batches)
}

/// A producer id no other producer of this log has had: the time in milliseconds (unique across
/// restarts) shifted over a counter (unique within one).
/// The Kafka error code of a refused transaction operation. Newer clients know PRODUCER_FENCED;
/// older ones expect INVALID_PRODUCER_EPOCH.
fn txn_error_code(e: &TxnError, fenced_known: bool) -> i16 {
    match e.refusal {
        Refusal::Fenced if fenced_known => code::PRODUCER_FENCED,
        Refusal::Fenced => code::INVALID_PRODUCER_EPOCH,
        Refusal::UnknownProducer => code::INVALID_PRODUCER_ID_MAPPING,
        Refusal::InvalidState => code::INVALID_TXN_STATE,
        Refusal::Concurrent => code::CONCURRENT_TRANSACTIONS,
        Refusal::InvalidTimeout => code::INVALID_TRANSACTION_TIMEOUT,
        Refusal::UnknownPartition => code::UNKNOWN_TOPIC_OR_PARTITION,
        Refusal::Storage => code::UNKNOWN_SERVER_ERROR,
    }
}

fn txn_result_code(result: std::result::Result<(), TxnError>, fenced_known: bool) -> i16 {
    match result {
        Ok(()) => code::NONE,
        Err(e) => {
            tracing::info!(error = %e, "transaction request refused");
            txn_error_code(&e, fenced_known)
        }
    }
}

async fn add_partitions_to_txn(
    request: AddPartitionsToTxnRequest,
    version: i16,
    served: &Served,
) -> AddPartitionsToTxnResponse {
    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    let partitions: Vec<TopicPartition> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter_map(|&p| u32::try_from(p).ok().map(|p| TopicPartition::new(t.name.0.to_string(), p)))
        })
        .collect();
    let result = served
        .transactions
        .add_partitions(
            &request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &partitions,
        )
        .await;
    let error = txn_result_code(result, version >= 3);
    let topics = request
        .v3_and_below_topics
        .into_iter()
        .map(|t| {
            let results = t
                .partitions
                .iter()
                .map(|&p| {
                    AddPartitionsToTxnPartitionResult::default()
                        .with_partition_index(p)
                        .with_partition_error_code(error)
                })
                .collect();
            AddPartitionsToTxnTopicResult::default().with_name(t.name).with_results_by_partition(results)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

async fn txn_offset_commit(request: TxnOffsetCommitRequest, version: i16, served: &Served) -> TxnOffsetCommitResponse {
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter_map(|p| {
                committed(
                    &t.name,
                    p.partition_index,
                    p.committed_offset,
                    p.committed_leader_epoch,
                    &p.committed_metadata,
                )
            })
        })
        .collect();
    // A member the group has moved on from may not commit for partitions now another's (KIP-447).
    let member = served.coordinator.check_commit(&request.group_id, request.generation_id, &request.member_id).await;
    let error = if member != code::NONE {
        tracing::info!(group = %request.group_id.0, member = %request.member_id, generation = request.generation_id, code = member, "transactional offset commit refused");
        member
    } else {
        let result = served
            .transactions
            .commit_offsets(
                &request.transactional_id,
                request.producer_id.0,
                request.producer_epoch,
                &request.group_id,
                &offsets,
            )
            .await;
        txn_result_code(result, version >= 3)
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// How many of each producer's latest batches are remembered per partition, as Kafka does: a
/// retry of any of them is recognized and answered with its original offset.
const REMEMBERED_BATCHES: usize = 5;

/// A producer's epoch and its latest batches: `(first sequence, last sequence, base offset)`.
type ProducerBatches = (i16, std::collections::VecDeque<(i32, i32, i64)>);

/// The idempotent producers' latest batches in one partition, by producer id.
#[derive(Debug, Default)]
struct PartitionProducers {
    loaded: bool,
    producers: std::collections::HashMap<i64, ProducerBatches>,
}

/// Each partition's producers behind its own lock.
type PartitionLocks = std::collections::HashMap<(String, u32), Arc<tokio::sync::Mutex<PartitionProducers>>>;

impl PartitionProducers {
    fn record(&mut self, producer_id: i64, epoch: i16, first: i32, last: i32, base_offset: i64) {
        let entry = self.producers.entry(producer_id).or_insert_with(|| (epoch, Default::default()));
        if epoch != entry.0 {
            *entry = (epoch, Default::default());
        }
        entry.1.push_back((first, last, base_offset));
        if entry.1.len() > REMEMBERED_BATCHES {
            entry.1.pop_front();
        }
    }

    /// `Ok(Some(offset))`: a retry of a batch stored at `offset`; `Ok(None)`: the next batch;
    /// `Err`: refused.
    fn check(
        &self,
        producer_id: i64,
        epoch: i16,
        first: i32,
        last: i32,
    ) -> std::result::Result<Option<i64>, (i16, String)> {
        let Some((known_epoch, batches)) = self.producers.get(&producer_id) else {
            return if first == 0 {
                Ok(None)
            } else {
                Err((
                    code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!("producer {producer_id} starts at sequence {first}, not 0"),
                ))
            };
        };
        if epoch < *known_epoch {
            return Err((
                code::INVALID_PRODUCER_EPOCH,
                format!("producer {producer_id}: epoch {epoch} is older than {known_epoch}"),
            ));
        }
        if epoch > *known_epoch {
            return if first == 0 {
                Ok(None)
            } else {
                Err((
                    code::OUT_OF_ORDER_SEQUENCE_NUMBER,
                    format!("producer {producer_id}: a new epoch starts at {first}, not 0"),
                ))
            };
        }
        if let Some(&(_, _, offset)) = batches.iter().find(|(f, l, _)| *f == first && *l == last) {
            return Ok(Some(offset));
        }
        let expected = batches.back().map_or(0, |(_, l, _)| l.wrapping_add(1).max(0));
        if first == expected {
            return Ok(None);
        }
        let oldest = batches.front().map_or(0, |(f, _, _)| *f);
        if first < oldest && first < expected {
            return Err((
                code::DUPLICATE_SEQUENCE_NUMBER,
                format!("producer {producer_id}: sequence {first} is older than the batches kept"),
            ));
        }
        Err((
            code::OUT_OF_ORDER_SEQUENCE_NUMBER,
            format!("producer {producer_id}: sequence {first} where {expected} was expected"),
        ))
    }
}

/// The idempotent producers' state of every partition, each behind its own lock (appends of
/// idempotent batches to one partition go one at a time, so checks and appends agree).
#[derive(Debug, Clone, Default)]
struct Producers {
    partitions: Arc<std::sync::Mutex<PartitionLocks>>,
}

impl Producers {
    fn of(&self, topic: &str, partition: u32) -> Arc<tokio::sync::Mutex<PartitionProducers>> {
        let mut all = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        all.entry((topic.to_string(), partition)).or_default().clone()
    }
}

/// Reads a partition's idempotent batches back from the log (after a restart, or the first time
/// the partition sees one), so that retries across a restart are still recognized.
async fn load_producers(log: &Log, topic: &str, partition: u32, state: &mut PartitionProducers) -> Result<()> {
    let mut offset = log.list_offset(topic, partition, OffsetSpec::Earliest).await?.map_or(0, |(o, _)| o);
    loop {
        let fetched = log.read(topic, partition, offset, 4 << 20).await?;
        let mut next = offset;
        for batch in freshet_log::batch::Batches::new(&fetched.batches) {
            let batch = batch?;
            // Markers carry no sequence.
            if batch.producer_id() >= 0 && !batch.is_control() {
                let first = batch.base_sequence();
                state.record(
                    batch.producer_id(),
                    batch.producer_epoch(),
                    first,
                    first.wrapping_add(batch.last_offset_delta()),
                    batch.base_offset(),
                );
            }
            next = batch.next_offset();
        }
        if next <= offset || next >= fetched.high_watermark {
            break;
        }
        offset = next;
    }
    state.loaded = true;
    Ok(())
}

async fn produce(request: ProduceRequest, served: &Served) -> ProduceResponse {
    // Every partition's batches at once: their appends wait for the disk together (one group
    // commit) instead of one partition after another. Each partition gets one payload per request,
    // so the order within a partition is the client's.
    let mut layout = Vec::with_capacity(request.topic_data.len());
    let mut work = Vec::new();
    for topic in request.topic_data {
        let topic_name = topic.name.0.to_string();
        layout.push((topic.name, topic_name.clone(), topic.partition_data.len()));
        for data in topic.partition_data {
            let (index, records, name) = (data.index, data.records.unwrap_or_default(), topic_name.clone());
            work.push(async move { (index, produce_partition(&name, index, records, served).await) });
        }
    }
    let mut results = futures::future::join_all(work).await.into_iter();
    let mut responses = Vec::with_capacity(layout.len());
    for (name, topic_name, n) in layout {
        let partitions = results
            .by_ref()
            .take(n)
            .map(|(index, result)| {
                let response = PartitionProduceResponse::default().with_index(index).with_log_append_time_ms(-1);
                match result {
                    Ok((base, log_start, append_time)) => response
                        .with_base_offset(base)
                        .with_log_start_offset(log_start)
                        .with_log_append_time_ms(append_time.unwrap_or(-1)),
                    Err((code, message)) => {
                        tracing::info!(topic = %topic_name, partition = index, %message, "produce refused");
                        response
                            .with_error_code(code)
                            .with_base_offset(-1)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    }
                }
            })
            .collect();
        responses.push(TopicProduceResponse::default().with_name(name).with_partition_responses(partitions));
    }
    ProduceResponse::default().with_responses(responses)
}

/// Produce v0-2: each partition's message set was converted to a record batch (or refused); the
/// batches are appended as v3+ batches are, every partition at once.
async fn produce_legacy(
    request: crate::legacy::LegacyProduce,
    served: &Served,
) -> Vec<(String, Vec<crate::legacy::PartitionResult>)> {
    let mut layout = Vec::with_capacity(request.topics.len());
    let mut work = Vec::new();
    for (topic, partitions) in request.topics {
        layout.push((topic.clone(), partitions.len()));
        for (index, batch) in partitions {
            let name = topic.clone();
            work.push(async move {
                let result = match batch {
                    Ok(batch) => produce_partition(&name, index, batch, served).await,
                    Err(reason) => Err((code::CORRUPT_MESSAGE, reason)),
                };
                if let Err((_, message)) = &result {
                    tracing::info!(topic = %name, partition = index, %message, "produce refused");
                }
                (index, result)
            });
        }
    }
    let mut results = futures::future::join_all(work).await.into_iter();
    layout
        .into_iter()
        .map(|(topic, n)| {
            let partitions = results
                .by_ref()
                .take(n)
                .map(|(partition, result)| match result {
                    Ok((base_offset, _, append_time)) => crate::legacy::PartitionResult {
                        partition,
                        error_code: code::NONE,
                        base_offset,
                        log_append_time: append_time.unwrap_or(-1),
                    },
                    Err((error_code, _)) => {
                        crate::legacy::PartitionResult { partition, error_code, base_offset: -1, log_append_time: -1 }
                    }
                })
                .collect();
            (topic, partitions)
        })
        .collect()
}

/// Appends one partition's batches: `(base offset, log start offset, append time)` of the first.
/// Batches of an idempotent producer are checked against its sequence first: a retry is answered
/// with its original offset and not stored again; a gap or an old epoch is refused.
async fn produce_partition(
    topic: &str,
    index: i32,
    records: Bytes,
    served: &Served,
) -> std::result::Result<(i64, i64, Option<i64>), (i16, String)> {
    let batches = split_batches(records).map_err(|e| (code::CORRUPT_MESSAGE, e))?;
    let partition =
        u32::try_from(index).map_err(|_| (code::UNKNOWN_TOPIC_OR_PARTITION, "a negative partition".to_string()))?;
    let idempotent =
        batches.iter().any(|b| b.len() >= 61 && i64::from_be_bytes(b[43..51].try_into().expect("8 bytes")) >= 0);
    let lock = idempotent.then(|| served.producers.of(topic, partition));
    let mut state = match &lock {
        Some(lock) => Some(lock.lock().await),
        None => None,
    };
    if let Some(state) = state.as_mut() {
        if !state.loaded {
            load_producers(&served.log, topic, partition, state).await.map_err(|e| (error_code(&e), e.to_string()))?;
        }
    }
    let log_error = |e: Error| (error_code(&e), e.to_string());
    let mut first: Option<(i64, i64, Option<i64>)> = None;
    for batch in batches {
        let view = freshet_log::batch::Batches::new(&batch).next().transpose().map_err(log_error)?;
        let producer = view.as_ref().filter(|v| v.producer_id() >= 0).map(|v| {
            let first = v.base_sequence();
            (v.producer_id(), v.producer_epoch(), first, first.wrapping_add(v.last_offset_delta()))
        });
        if let (Some(state), Some((pid, epoch, seq_first, seq_last))) = (state.as_mut(), producer) {
            if let Some(offset) = state.check(pid, epoch, seq_first, seq_last)? {
                tracing::debug!(%topic, partition, producer = pid, sequence = seq_first, "a retried batch is answered with its offset");
                first.get_or_insert((offset, -1, None));
                continue;
            }
        }
        let info = served.log.append(topic, partition, BytesMut::from(&batch[..])).await.map_err(log_error)?;
        if let (Some(state), Some((pid, epoch, seq_first, seq_last))) = (state.as_mut(), producer) {
            state.record(pid, epoch, seq_first, seq_last, info.base_offset);
        }
        first.get_or_insert((info.base_offset, info.log_start_offset, info.log_append_time));
    }
    first.ok_or((code::CORRUPT_MESSAGE, "no record batch".to_string()))
}

async fn fetch(request: FetchRequest, served: &Served) -> FetchResponse {
    let isolation = if request.isolation_level == 1 { Isolation::ReadCommitted } else { Isolation::ReadUncommitted };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let mut data = served.log.watch_data();
    loop {
        data.borrow_and_update();
        let mut total = 0usize;
        let mut budget = usize::try_from(request.max_bytes).unwrap_or(0).max(1);
        let mut topics = Vec::with_capacity(request.topics.len());
        for topic in &request.topics {
            let topic_name = topic.topic.0.to_string();
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let mut out = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_aborted_transactions(Some(Vec::new()));
                out.preferred_read_replica = BrokerId(-1);
                // At least one batch even over the limits, so a large batch is never stuck.
                let max = (p.partition_max_bytes.max(0) as usize).min(budget).max(1) as u64;
                let read = match u32::try_from(p.partition) {
                    Ok(partition) => {
                        served.log.read_isolated(&topic_name, partition, p.fetch_offset, max, isolation).await
                    }
                    Err(_) => Err(Error::UnknownPartition { topic: topic_name.clone(), n_partitions: 0, partition: 0 }),
                };
                match read {
                    Ok(fetched) => {
                        total += fetched.batches.len();
                        budget = budget.saturating_sub(fetched.batches.len());
                        let aborted = fetched
                            .aborted
                            .iter()
                            .map(|a| {
                                kafka_protocol::messages::fetch_response::AbortedTransaction::default()
                                    .with_producer_id(ProducerId(a.producer_id))
                                    .with_first_offset(a.first_offset)
                            })
                            .collect();
                        out = out
                            .with_high_watermark(fetched.high_watermark)
                            .with_last_stable_offset(fetched.last_stable_offset)
                            .with_aborted_transactions(Some(aborted))
                            .with_log_start_offset(fetched.log_start_offset)
                            .with_records(Some(fetched.batches));
                    }
                    Err(e) => {
                        out = out
                            .with_error_code(error_code(&e))
                            .with_high_watermark(-1)
                            .with_records(Some(Bytes::new()));
                    }
                }
                partitions.push(out);
            }
            topics.push(FetchableTopicResponse::default().with_topic(topic.topic.clone()).with_partitions(partitions));
        }
        let enough = total >= usize::try_from(request.min_bytes).unwrap_or(1).max(1);
        if enough || tokio::time::Instant::now() >= deadline {
            return FetchResponse::default().with_responses(topics);
        }
        match tokio::time::timeout_at(deadline, data.changed()).await {
            Ok(Ok(())) => continue,
            _ => return FetchResponse::default().with_responses(topics),
        }
    }
}

async fn list_offsets(request: ListOffsetsRequest, served: &Served) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let topic_name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let spec = match p.timestamp {
                -2 => OffsetSpec::Earliest,
                -1 => OffsetSpec::Latest,
                t => OffsetSpec::Timestamp(t),
            };
            let out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let found = match u32::try_from(p.partition_index) {
                // read_committed consumers end at the last stable offset.
                Ok(partition) if spec == OffsetSpec::Latest && request.isolation_level == 1 => {
                    served.log.last_stable_offset(&topic_name, partition).map(|o| Some((o, -1)))
                }
                Ok(partition) => served.log.list_offset(&topic_name, partition, spec).await,
                Err(_) => Err(Error::UnknownTopic(topic_name.clone())),
            };
            partitions.push(match found {
                Ok(Some((offset, timestamp))) => out.with_offset(offset).with_timestamp(timestamp),
                Ok(None) => out.with_offset(-1).with_timestamp(-1),
                Err(e) => out.with_error_code(error_code(&e)).with_offset(-1).with_timestamp(-1),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    ListOffsetsResponse::default().with_topics(topics)
}

async fn create_topics(request: CreateTopicsRequest, served: &Served) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let topic_name = topic.name.0.to_string();
        let n = if topic.num_partitions == -1 { served.config.default_partitions as i32 } else { topic.num_partitions };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let outcome: std::result::Result<(), (i16, String)> = if n < 1 {
            Err((code::INVALID_PARTITIONS, format!("{n} partitions: a topic needs at least one")))
        } else if let Err(e) = freshet_log::validate_topic_name(&topic_name) {
            Err((error_code(&e), e.to_string()))
        } else if served.log.describe_topic(&topic_name).is_ok() {
            Err((code::TOPIC_ALREADY_EXISTS, format!("topic {topic_name} already exists")))
        } else if request.validate_only {
            Ok(())
        } else {
            served.log.create_topic(&topic_name, n as u32, configs).await.map_err(|e| (error_code(&e), e.to_string()))
        };
        let mut result =
            CreatableTopicResult::default().with_name(topic.name).with_num_partitions(n).with_replication_factor(1);
        if let Err((code, message)) = outcome {
            result = result.with_error_code(code).with_error_message(Some(StrBytes::from_string(message)));
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

async fn delete_topics(request: DeleteTopicsRequest, version: i16, served: &Served) -> DeleteTopicsResponse {
    let names: Vec<TopicName> =
        if version >= 6 { request.topics.into_iter().filter_map(|t| t.name).collect() } else { request.topic_names };
    let mut results = Vec::with_capacity(names.len());
    for topic in names {
        let mut result = DeletableTopicResult::default().with_name(Some(topic.clone()));
        if let Err(e) = served.log.delete_topic(&topic.0).await {
            result =
                result.with_error_code(error_code(&e)).with_error_message(Some(StrBytes::from_string(e.to_string())));
        }
        results.push(result);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_payloads_split_into_batches_and_bad_ones_are_named() {
        let mut payload = BytesMut::new();
        for body in [&b"abc"[..], &b"defgh"[..]] {
            payload.put_i64(0);
            payload.put_i32(body.len() as i32);
            payload.put_slice(body);
        }
        let batches = split_batches(payload.clone().freeze()).unwrap();
        assert_eq!(batches.iter().map(Bytes::len).collect::<Vec<_>>(), [15, 17]);
        assert!(split_batches(payload.freeze().slice(..29)).unwrap_err().contains("a batch of 17 bytes in 14 bytes"));
        assert!(split_batches(Bytes::from_static(&[0; 5])).unwrap_err().contains("shorter than a batch header"));
        let mut negative = BytesMut::new();
        negative.put_i64(0);
        negative.put_i32(-5);
        assert!(split_batches(negative.freeze()).unwrap_err().contains("a batch length of -5"));
    }

    /// Valid request frames of several APIs, as a client would send them.
    fn sample_frames() -> Vec<Vec<u8>> {
        let frame = |key: ApiKey, version: i16, body: &dyn Fn(&mut BytesMut)| {
            let mut out = BytesMut::new();
            let header = RequestHeader::default()
                .with_request_api_key(key as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .with_client_id(Some(StrBytes::from_static_str("fuzz")));
            header.encode(&mut out, key.request_header_version(version)).unwrap();
            body(&mut out);
            out.to_vec()
        };
        vec![
            // Produce v2 with a message set of format v1 (the legacy path).
            frame(ApiKey::Produce, 2, &|b| {
                let mut message = vec![1u8, 0];
                message.extend_from_slice(&1_000i64.to_be_bytes());
                message.extend_from_slice(&1i32.to_be_bytes());
                message.push(b'k');
                message.extend_from_slice(&2i32.to_be_bytes());
                message.extend_from_slice(b"v1");
                let crc = crc32fast::hash(&message);
                b.put_i16(1);
                b.put_i32(1000);
                b.put_i32(1);
                b.put_i16(1);
                b.put_slice(b"t");
                b.put_i32(1);
                b.put_i32(0);
                b.put_i32(12 + 4 + message.len() as i32);
                b.put_i64(0);
                b.put_i32(4 + message.len() as i32);
                b.put_u32(crc);
                b.put_slice(&message);
            }),
            frame(ApiKey::ApiVersions, 3, &|b| {
                // client software name and version, compact strings, then no tagged fields
                b.put_slice(&[5, b'f', b'u', b'z', b'z', 2, b'1', 0]);
            }),
            frame(ApiKey::Metadata, 1, &|b| {
                b.put_i32(1);
                b.put_i16(1);
                b.put_slice(b"t");
            }),
            frame(ApiKey::ListOffsets, 1, &|b| {
                b.put_i32(-1);
                b.put_i32(1);
                b.put_i16(1);
                b.put_slice(b"t");
                b.put_i32(1);
                b.put_i32(0);
                b.put_i64(-2);
            }),
            frame(ApiKey::Heartbeat, 0, &|b| {
                b.put_i16(1);
                b.put_slice(b"g");
                b.put_i32(1);
                b.put_i16(1);
                b.put_slice(b"m");
            }),
        ]
    }

    /// Random and mutated frames through the request path: each gets an answer or a refusal
    /// (its connection would close), never a panic, and the broker still answers a good request
    /// after them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_and_mutated_frames_never_panic_the_request_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
        let served = Served {
            config: BrokerConfig { auto_create_topics: false, ..BrokerConfig::default() },
            ..test_served(&log, offsets)
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let samples = sample_frames();
        for sample in &samples {
            assert!(handle_frame(Bytes::from(sample.clone()), peer, &served).await.unwrap().is_some());
        }
        let seed =
            std::env::var("FRESHET_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
        let mut rng = fastrand::Rng::with_seed(seed);
        let rounds = if std::env::var_os("FRESHET_SLOW_TESTS").is_some() { 200_000 } else { 20_000 };
        let (mut answered, mut refused) = (0u32, 0u32);
        for _ in 0..rounds {
            let mut frame = match rng.u8(..4) {
                // Pure noise, sometimes with a real API key and version in front.
                0 => (0..rng.usize(..64)).map(|_| rng.u8(..)).collect::<Vec<u8>>(),
                1 => {
                    let mut f = vec![0, rng.u8(..70), 0, rng.u8(..14), 0, 0, 0, 1];
                    f.extend((0..rng.usize(..48)).map(|_| rng.u8(..)));
                    f
                }
                // A valid frame, cut short or with bytes flipped.
                2 => {
                    let s = &samples[rng.usize(..samples.len())];
                    s[..rng.usize(..=s.len())].to_vec()
                }
                _ => {
                    let mut s = samples[rng.usize(..samples.len())].clone();
                    for _ in 0..rng.usize(1..4) {
                        let i = rng.usize(..s.len());
                        s[i] = rng.u8(..);
                    }
                    s
                }
            };
            if frame.len() > 4 && rng.bool() {
                // Huge array and string lengths are refused before anything is allocated.
                let i = rng.usize(4..frame.len());
                frame[i] = 0x7f;
            }
            match handle_frame(Bytes::from(frame), peer, &served).await {
                Ok(_) => answered += 1,
                Err(_) => refused += 1,
            }
        }
        assert!(answered > 0 && refused > 0, "seed {seed}: {answered} answered, {refused} refused");
        assert!(handle_frame(Bytes::from(samples[1].clone()), peer, &served).await.unwrap().is_some(), "seed {seed}");
        log.close().await.unwrap();
    }

    /// A batch of `n` records from idempotent producer `pid` at `epoch`, starting at `seq`.
    fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
        let mut builder = freshet_log::batch::BatchBuilder::with_capacity(256).producer(pid, epoch, seq);
        for i in 0..n {
            builder.push(Some(b"k"), Some(format!("v{i}").as_bytes()), &[], 1_000);
        }
        builder.finish()
    }

    fn test_served(log: &Log, offsets: GroupOffsets) -> Served {
        Served::new(log.clone(), offsets, BrokerConfig::default(), "127.0.0.1".into(), 9092)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idempotent_producer_retry_is_stored_once_and_gaps_and_old_epochs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
        log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
        let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
        let served = test_served(&log, offsets.clone());
        let pid = new_producer_id(served.log.clock().now_ms());
        let send = |served: &Served, batch: Bytes| {
            let served = served.clone();
            async move { produce_partition("t", 0, batch, &served).await.map(|r| r.0).map_err(|e| e.0) }
        };
        assert_eq!(send(&served, idempotent_batch(pid, 0, 0, 3)).await, Ok(0));
        assert_eq!(send(&served, idempotent_batch(pid, 0, 3, 2)).await, Ok(3));
        // A retry of either batch: its original offset, nothing stored again.
        assert_eq!(send(&served, idempotent_batch(pid, 0, 0, 3)).await, Ok(0));
        assert_eq!(send(&served, idempotent_batch(pid, 0, 3, 2)).await, Ok(3));
        let end = || async { log.list_offset("t", 0, OffsetSpec::Latest).await.unwrap().unwrap().0 };
        assert_eq!(end().await, 5);
        // A gap, an old epoch, a new producer not starting at 0.
        assert_eq!(send(&served, idempotent_batch(pid, 0, 9, 1)).await, Err(code::OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(send(&served, idempotent_batch(pid + 1, 0, 4, 1)).await, Err(code::OUT_OF_ORDER_SEQUENCE_NUMBER));
        assert_eq!(send(&served, idempotent_batch(pid, 1, 0, 1)).await, Ok(5), "a new epoch starts over at 0");
        assert_eq!(send(&served, idempotent_batch(pid, 0, 5, 1)).await, Err(code::INVALID_PRODUCER_EPOCH));
        assert_eq!(end().await, 6);
        // After a restart (state read back from the log), a retry is still recognized.
        let restarted = test_served(&log, offsets);
        assert_eq!(send(&restarted, idempotent_batch(pid, 1, 0, 1)).await, Ok(5));
        assert_eq!(send(&restarted, idempotent_batch(pid, 1, 1, 1)).await, Ok(6));
        assert_eq!(end().await, 7);
        // A plain producer is not checked.
        let plain = freshet_log::batch::BatchBuilder::with_capacity(64);
        let mut plain = plain;
        plain.push(None, Some(b"x"), &[], 1);
        assert_eq!(send(&restarted, plain.finish()).await, Ok(7));
        log.close().await.unwrap();
    }
}
