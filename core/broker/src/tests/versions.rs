//! Every advertised version of every API served, with a realistic request: each version's fields
//! set as a client of that version sets them, on a log with data, a group with a member and open
//! transactions, so the handlers take their real paths and fill their responses. Every response
//! must encode at its version and decode back whole, so no version is advertised that the broker
//! cannot answer; the answers are checked where a version changes what they carry.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use freshet_coord::code;
use freshet_coord::group::GroupOffsets;
use freshet_log::Log;

use super::test_served;
use crate::dispatch::{handle_frame, Served, APIS};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

/// The versions of `api` served.
fn versions(api: ApiKey) -> std::ops::RangeInclusive<i16> {
    let a = APIS.iter().find(|a| a.key == api).unwrap_or_else(|| panic!("{api:?} is served"));
    a.min_version..=a.max_version
}

/// `v` brought into the range of `api`'s versions.
fn clamp(api: ApiKey, v: i16) -> i16 {
    let r = versions(api);
    v.clamp(*r.start(), *r.end())
}

/// Runs requests through the request path and records which API versions were answered.
struct Client {
    served: Served,
    answered: BTreeSet<(i16, i16)>,
}

impl Client {
    /// Sends `request` as `api` v`version`; the response must decode at that version and leave
    /// no byte behind.
    async fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, request: &Q) -> R {
        let mut frame = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(i32::from(version) + 1000)
            .with_client_id(Some(s("every-version")))
            .encode(&mut frame, api.request_header_version(version))
            .unwrap_or_else(|e| panic!("encoding the {api:?} v{version} request header: {e}"));
        request.encode(&mut frame, version).unwrap_or_else(|e| panic!("encoding the {api:?} v{version} request: {e}"));
        let mut response = handle_frame(frame.freeze(), SocketAddr::from(([127, 0, 0, 1], 1)), &self.served)
            .await
            .unwrap_or_else(|e| panic!("{api:?} v{version}: the connection would close: {e}"))
            .unwrap_or_else(|| panic!("{api:?} v{version}: no response"));
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version))
            .unwrap_or_else(|e| panic!("{api:?} v{version}: the response header: {e}"));
        assert_eq!(header.correlation_id, i32::from(version) + 1000, "{api:?} v{version}");
        let body = R::decode(&mut response, version).unwrap_or_else(|e| panic!("{api:?} v{version}: decoding: {e}"));
        assert!(response.is_empty(), "{api:?} v{version}: {} bytes left after the response", response.len());
        self.answered.insert((api as i16, version));
        body
    }
}

/// A record batch of `n` records (timestamps 1000, 1001, ...), keyless when `keys` is false;
/// from producer `(id, epoch, first sequence)` in a transaction when given.
fn records(n: usize, keys: bool, producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut builder = freshet_log::batch::BatchBuilder::with_capacity(256);
    if let Some((id, epoch, sequence)) = producer {
        builder = builder.producer(id, epoch, sequence).transactional();
    }
    for i in 0..n {
        let key = format!("k{i}");
        builder.push(keys.then_some(key.as_bytes()), Some(format!("v{i}").as_bytes()), &[], 1_000 + i as i64);
    }
    builder.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_of_every_api_served_answers_a_realistic_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    log.create_topic("t", 2, BTreeMap::new()).await.unwrap();
    log.create_topic("c", 1, [("cleanup.policy".to_string(), "compact".to_string())].into()).await.unwrap();
    let mut c = Client { served: test_served(&log, offsets), answered: BTreeSet::new() };

    api_versions(&mut c).await;
    metadata(&mut c).await;
    produce(&mut c).await;
    fetch_and_list_offsets(&mut c).await;
    topics(&mut c).await;
    configs(&mut c).await;
    groups(&mut c).await;
    transactions(&mut c).await;
    acls(&mut c).await;

    let missing: Vec<String> = APIS
        .iter()
        .flat_map(|a| (a.min_version..=a.max_version).map(move |v| (a.key, v)))
        // Produce v0-2 carry message sets, answered by `legacy` and tested there.
        .filter(|(k, v)| !(*k == ApiKey::Produce && *v < 3))
        .filter(|(k, v)| !c.answered.contains(&(*k as i16, *v)))
        .map(|(k, v)| format!("{k:?} v{v}"))
        .collect();
    assert!(missing.is_empty(), "versions advertised but not tried: {missing:?}");
    log.close().await.unwrap();
}

/// No authorizer: every ACL request is answered SECURITY_DISABLED, as Kafka answers without one.
async fn acls(c: &mut Client) {
    for v in versions(ApiKey::CreateAcls) {
        let creation = create_acls_request::AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s("t"))
            .with_resource_pattern_type(3)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(3)
            .with_permission_type(3);
        let req = CreateAclsRequest::default().with_creations(vec![creation.clone(), creation]);
        let r: CreateAclsResponse = c.call(ApiKey::CreateAcls, v, &req).await;
        let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, [code::SECURITY_DISABLED; 2], "CreateAcls v{v}");
    }
    for v in versions(ApiKey::DescribeAcls) {
        let req = DescribeAclsRequest::default().with_resource_type_filter(1).with_pattern_type_filter(1);
        let r: DescribeAclsResponse =
            c.call(ApiKey::DescribeAcls, v, &req.with_operation(1).with_permission_type(1)).await;
        assert_eq!(r.error_code, code::SECURITY_DISABLED, "DescribeAcls v{v}");
    }
    for v in versions(ApiKey::DeleteAcls) {
        let filter = delete_acls_request::DeleteAclsFilter::default()
            .with_resource_type_filter(1)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1);
        let r: DeleteAclsResponse =
            c.call(ApiKey::DeleteAcls, v, &DeleteAclsRequest::default().with_filters(vec![filter])).await;
        assert_eq!(r.filter_results[0].error_code, code::SECURITY_DISABLED, "DeleteAcls v{v}");
    }
}

async fn api_versions(c: &mut Client) {
    for v in versions(ApiKey::ApiVersions) {
        let mut req = ApiVersionsRequest::default();
        if v >= 3 {
            req = req.with_client_software_name(s("freshet-test")).with_client_software_version(s("1.0"));
        }
        let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, v, &req).await;
        assert_eq!((r.error_code, r.api_keys.len()), (code::NONE, APIS.len()), "ApiVersions v{v}");
    }
}

async fn metadata(c: &mut Client) {
    for v in versions(ApiKey::Metadata) {
        let mut req = MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic("t"))),
            metadata_request::MetadataRequestTopic::default().with_name(Some(topic(&format!("auto-{v}")))),
        ]));
        if v >= 8 {
            req = req.with_include_topic_authorized_operations(true);
        }
        if (8..=10).contains(&v) {
            req = req.with_include_cluster_authorized_operations(true);
        }
        let r: MetadataResponse = c.call(ApiKey::Metadata, v, &req).await;
        assert_eq!(r.brokers.len(), 1, "Metadata v{v}");
        let t = &r.topics[0];
        assert_eq!((t.error_code, t.partitions.len()), (code::NONE, 2), "Metadata v{v}");
        assert_eq!(t.topic_id.is_nil(), v < 10, "Metadata v{v}: topic ids from v10");
        if v >= 8 {
            use crate::handlers::authorized;
            assert_eq!(t.topic_authorized_operations, authorized::TOPIC, "Metadata v{v}");
            let cluster = if v <= 10 { authorized::CLUSTER } else { authorized::NOT_ASKED };
            assert_eq!(r.cluster_authorized_operations, cluster, "Metadata v{v}");
        }
        // Auto-creation is on by default (v4+ may ask for it; before, it is always allowed).
        assert_eq!(r.topics[1].error_code, code::NONE, "Metadata v{v}: auto-created");
        if v >= 10 {
            // By id only.
            let by_id = MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_topic_id(t.topic_id)]));
            let r: MetadataResponse = c.call(ApiKey::Metadata, v, &by_id).await;
            assert_eq!(r.topics[0].name.as_ref().map(|n| n.0.as_str()), Some("t"), "Metadata v{v} by id");
        }
    }
    // All topics.
    let r: MetadataResponse = c.call(ApiKey::Metadata, 1, &MetadataRequest::default().with_topics(None)).await;
    assert!(r.topics.len() >= 2);
}

async fn produce(c: &mut Client) {
    for v in versions(ApiKey::Produce).filter(|v| *v >= 3) {
        let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(5_000).with_topic_data(vec![
            produce_request::TopicProduceData::default().with_name(topic("t")).with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records(3, true, None))),
                produce_request::PartitionProduceData::default()
                    .with_index(1)
                    .with_records(Some(records(2, true, None))),
            ]),
            // Keyless records on a compacted topic: refused one by one.
            produce_request::TopicProduceData::default().with_name(topic("c")).with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records(3, false, None))),
            ]),
            produce_request::TopicProduceData::default().with_name(topic("nope")).with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records(1, true, None))),
            ]),
        ]);
        let r: ProduceResponse = c.call(ApiKey::Produce, v, &req).await;
        let t = &r.responses[0].partition_responses;
        assert!(t.iter().all(|p| p.error_code == code::NONE && p.base_offset >= 0), "Produce v{v}: {t:?}");
        let refused = &r.responses[1].partition_responses[0];
        assert_eq!(refused.error_code, code::INVALID_RECORD, "Produce v{v}");
        let indexes: Vec<i32> = refused.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, if v >= 8 { vec![0, 1, 2] } else { vec![] }, "Produce v{v}: record errors");
        assert_eq!(r.responses[2].partition_responses[0].error_code, code::UNKNOWN_TOPIC_OR_PARTITION, "Produce v{v}");
    }
}

async fn fetch_and_list_offsets(c: &mut Client) {
    for v in versions(ApiKey::Fetch) {
        let mut partition = fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(0)
            .with_partition_max_bytes(1 << 20);
        if v >= 9 {
            partition = partition.with_current_leader_epoch(0);
        }
        if v >= 5 {
            partition = partition.with_log_start_offset(-1);
        }
        let mut req = FetchRequest::default()
            .with_max_wait_ms(10)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_isolation_level(1)
            .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic("t")).with_partitions(vec![
                partition,
                fetch_request::FetchPartition::default().with_partition(7).with_partition_max_bytes(1 << 20),
            ])]);
        if v >= 7 {
            req = req.with_session_id(0).with_session_epoch(-1);
        }
        if v >= 11 {
            req = req.with_rack_id(s("rack-a"));
        }
        let r: FetchResponse = c.call(ApiKey::Fetch, v, &req).await;
        let p = &r.responses[0].partitions;
        assert_eq!(p[0].error_code, code::NONE, "Fetch v{v}");
        assert!(p[0].records.as_ref().is_some_and(|b| !b.is_empty()) && p[0].high_watermark > 0, "Fetch v{v}");
        assert_eq!(p[1].error_code, code::UNKNOWN_TOPIC_OR_PARTITION, "Fetch v{v}");
    }
    for v in versions(ApiKey::ListOffsets) {
        let mut specs = vec![-2i64, -1, 1_001];
        if v >= 7 {
            specs.push(-3);
        }
        let partitions = specs
            .iter()
            .map(|t| {
                let p =
                    list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(*t);
                if v >= 4 {
                    p.with_current_leader_epoch(0)
                } else {
                    p
                }
            })
            .collect();
        let mut req = ListOffsetsRequest::default()
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(topic("t"))
                .with_partitions(partitions)]);
        if v >= 2 {
            req = req.with_isolation_level(1);
        }
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req).await;
        let found: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.offset).collect();
        assert_eq!(found[..3], [0, 21, 1], "ListOffsets v{v}: earliest, last stable, by time");
        if v >= 7 {
            assert_eq!(found[3], 2, "ListOffsets v{v}: max timestamp (the first record at 1002)");
        }
    }
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
        let asked = |epoch: i32| {
            OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(0).with_leader_epoch(epoch)
        };
        let mut req = OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic("t"))
            .with_partitions(vec![asked(0), asked(4), OffsetForLeaderPartition::default().with_partition(7)])]);
        if v >= 3 {
            req = req.with_replica_id(BrokerId(-1));
        }
        let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, v, &req).await;
        let p = &r.topics[0].partitions;
        assert_eq!((p[0].error_code, p[0].leader_epoch), (code::NONE, 0), "OffsetForLeaderEpoch v{v}");
        assert!(p[0].end_offset > 0, "OffsetForLeaderEpoch v{v}: epoch 0 ends at the log end");
        assert_eq!((p[1].leader_epoch, p[1].end_offset), (-1, -1), "OffsetForLeaderEpoch v{v}: an unknown epoch");
        assert_eq!(p[2].error_code, code::UNKNOWN_TOPIC_OR_PARTITION, "OffsetForLeaderEpoch v{v}");
    }
}

async fn topics(c: &mut Client) {
    for v in versions(ApiKey::CreateTopics) {
        let name = format!("created-{v}");
        let req = CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic(&name))
                .with_num_partitions(if v >= 4 { -1 } else { 3 })
                .with_replication_factor(if v >= 4 { -1 } else { 1 })
                .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
                    .with_name(s("retention.ms"))
                    .with_value(Some(s("60000")))]),
            create_topics_request::CreatableTopic::default()
                .with_name(topic("t"))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
        let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req).await;
        assert_eq!(r.topics[0].error_code, code::NONE, "CreateTopics v{v}: {:?}", r.topics[0]);
        assert_eq!(r.topics[0].topic_id.is_nil(), v < 7, "CreateTopics v{v}: the topic id from v7");
        assert_eq!(r.topics[1].error_code, code::TOPIC_ALREADY_EXISTS, "CreateTopics v{v}");

        // Replicas: an explicit assignment makes one partition per entry; a replication factor
        // or an assignment beyond the one broker is refused, as Kafka refuses it.
        let assigned = |p: i32, brokers: Vec<i32>| {
            create_topics_request::CreatableReplicaAssignment::default()
                .with_partition_index(p)
                .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
        };
        let creatable = |name: &str, partitions: i32, factor: i16, assignments| {
            create_topics_request::CreatableTopic::default()
                .with_name(topic(&format!("{name}-{v}")))
                .with_num_partitions(partitions)
                .with_replication_factor(factor)
                .with_assignments(assignments)
        };
        let req = CreateTopicsRequest::default().with_timeout_ms(5_000).with_topics(vec![
            creatable("assigned", -1, -1, vec![assigned(1, vec![0]), assigned(0, vec![0])]),
            creatable("both", 2, -1, vec![assigned(0, vec![0])]),
            creatable("elsewhere", -1, -1, vec![assigned(0, vec![1])]),
            creatable("gap", -1, -1, vec![assigned(0, vec![0]), assigned(2, vec![0])]),
            creatable("twice", -1, -1, vec![assigned(0, vec![0, 0])]),
            creatable("replicated", 1, 3, Vec::new()),
        ]);
        let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req).await;
        let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
        use code::{INVALID_REPLICATION_FACTOR, INVALID_REPLICA_ASSIGNMENT as ASSIGNMENT, INVALID_REQUEST};
        let expected = [code::NONE, INVALID_REQUEST, ASSIGNMENT, ASSIGNMENT, ASSIGNMENT, INVALID_REPLICATION_FACTOR];
        assert_eq!(codes, expected, "CreateTopics v{v}: {r:?}");
        let described = c.served.log.describe_topic(&format!("assigned-{v}")).unwrap();
        assert_eq!(described.n_partitions, 2, "CreateTopics v{v}");
    }
    for v in versions(ApiKey::CreatePartitions) {
        let req = CreatePartitionsRequest::default().with_timeout_ms(5_000).with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic(&format!("created-{}", clamp(ApiKey::CreateTopics, v))))
                .with_count(4 + i32::from(v)),
            create_partitions_request::CreatePartitionsTopic::default().with_name(topic("t")).with_count(1),
        ]);
        let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &req).await;
        assert_eq!(r.results[0].error_code, code::NONE, "CreatePartitions v{v}: {:?}", r.results[0]);
        assert_eq!(r.results[1].error_code, code::INVALID_PARTITIONS, "CreatePartitions v{v}");
    }
    for v in versions(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_timeout_ms(5_000).with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default().with_name(topic("t")).with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(1)
                    .with_offset(1 + i64::from(v)),
                // Only -1 means the high watermark; another negative offset is out of range.
                delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(-1001),
            ]),
        ]);
        let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, v, &req).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), (code::NONE, 1 + i64::from(v)), "DeleteRecords v{v}");
        let p = &r.topics[0].partitions[1];
        assert_eq!((p.error_code, p.low_watermark), (code::OFFSET_OUT_OF_RANGE, -1), "DeleteRecords v{v}");
    }
    for v in versions(ApiKey::DescribeCluster) {
        let mut req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        if v >= 1 {
            req = req.with_endpoint_type(1);
        }
        let r: DescribeClusterResponse = c.call(ApiKey::DescribeCluster, v, &req).await;
        assert_eq!((r.error_code, r.brokers.len()), (code::NONE, 1), "DescribeCluster v{v}");
        assert_eq!(r.cluster_authorized_operations, crate::handlers::authorized::CLUSTER, "DescribeCluster v{v}");
    }
    for v in versions(ApiKey::DescribeLogDirs) {
        // All topics (none named), then one partition of "t" and a topic with no replica here
        // (left out).
        let r: DescribeLogDirsResponse =
            c.call(ApiKey::DescribeLogDirs, v, &DescribeLogDirsRequest::default().with_topics(None)).await;
        assert_eq!((r.error_code, r.results.len()), (code::NONE, 1), "DescribeLogDirs v{v}");
        let dir = &r.results[0];
        let names: BTreeSet<&str> = dir.topics.iter().map(|t| t.name.0.as_str()).collect();
        assert!(names.contains("t") && names.contains("c"), "DescribeLogDirs v{v}: {names:?}");
        if v >= 4 {
            assert!(dir.total_bytes > 0 && dir.usable_bytes >= 0, "DescribeLogDirs v{v}: {dir:?}");
        }
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(topic("t"))
                .with_partitions(vec![1]),
            describe_log_dirs_request::DescribableLogDirTopic::default()
                .with_topic(topic("nope"))
                .with_partitions(vec![0]),
        ]));
        let r: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, v, &req).await;
        let topics = &r.results[0].topics;
        assert_eq!(topics.len(), 1, "DescribeLogDirs v{v}: {topics:?}");
        assert_eq!((topics[0].name.0.as_str(), topics[0].partitions.len()), ("t", 1), "DescribeLogDirs v{v}");
        assert_eq!(topics[0].partitions[0].partition_index, 1, "DescribeLogDirs v{v}");
        let size = c.served.log.describe_partitions("t").unwrap()[1].size_bytes as i64;
        assert_eq!(topics[0].partitions[0].partition_size, size, "DescribeLogDirs v{v}");
    }
    for v in versions(ApiKey::DescribeQuorum) {
        // One node has no metadata quorum to describe, and says so.
        let partition = describe_quorum_request::PartitionData::default().with_partition_index(0);
        let req = DescribeQuorumRequest::default().with_topics(vec![describe_quorum_request::TopicData::default()
            .with_topic_name(topic("__cluster_metadata"))
            .with_partitions(vec![partition])]);
        let r: DescribeQuorumResponse = c.call(ApiKey::DescribeQuorum, v, &req).await;
        assert_eq!(r.error_code, code::INVALID_REQUEST, "DescribeQuorum v{v}");
        if v >= 2 {
            let message = r.error_message.as_deref().unwrap_or_default();
            assert!(message.contains("no metadata quorum"), "DescribeQuorum v{v}: {message}");
        }
    }
    for v in versions(ApiKey::ElectLeaders) {
        let partitions =
            elect_leaders_request::TopicPartitions::default().with_topic(topic("t")).with_partitions(vec![0, 9]);
        let req = ElectLeadersRequest::default().with_topic_partitions(Some(vec![partitions])).with_timeout_ms(1000);
        let r: ElectLeadersResponse = c.call(ApiKey::ElectLeaders, v, &req).await;
        let results = &r.replica_election_results[0].partition_result;
        // One node: its partitions are led by their preferred (and only) replica.
        assert_eq!(results[0].error_code, code::ELECTION_NOT_NEEDED, "ElectLeaders v{v}");
        assert_eq!(results[1].error_code, code::UNKNOWN_TOPIC_OR_PARTITION, "ElectLeaders v{v}");
    }
    for v in versions(ApiKey::AlterPartitionReassignments) {
        use alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
        let move_to = |p: i32, replicas: Option<Vec<i32>>| {
            ReassignablePartition::default()
                .with_partition_index(p)
                .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect()))
        };
        let mut req = AlterPartitionReassignmentsRequest::default().with_timeout_ms(1000).with_topics(vec![
            ReassignableTopic::default().with_name(topic("t")).with_partitions(vec![
                move_to(0, Some(vec![0])),
                move_to(0, Some(vec![7])),
                move_to(0, None),
            ]),
        ]);
        if v >= 1 {
            req = req.with_allow_replication_factor_change(false);
        }
        let r: AlterPartitionReassignmentsResponse = c.call(ApiKey::AlterPartitionReassignments, v, &req).await;
        let codes: Vec<i16> = r.responses[0].partitions.iter().map(|p| p.error_code).collect();
        // One node holds every partition: a move to it needs nothing, to another broker is
        // refused, and there is never a move to cancel.
        assert_eq!(
            codes,
            [code::NONE, code::INVALID_REPLICA_ASSIGNMENT, code::NO_REASSIGNMENT_IN_PROGRESS],
            "AlterPartitionReassignments v{v}"
        );
    }
    for v in versions(ApiKey::ListPartitionReassignments) {
        let req = ListPartitionReassignmentsRequest::default().with_timeout_ms(1000).with_topics(None);
        let r: ListPartitionReassignmentsResponse = c.call(ApiKey::ListPartitionReassignments, v, &req).await;
        assert_eq!((r.error_code, r.topics.len()), (code::NONE, 0), "ListPartitionReassignments v{v}");
    }
    for v in versions(ApiKey::DeleteTopics) {
        let name = format!("created-{}", clamp(ApiKey::CreateTopics, v));
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(5_000);
        if v >= 6 {
            req =
                req.with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(topic(&name)))]);
        } else {
            req = req.with_topic_names(vec![topic(&name), topic("nope")]);
        }
        let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req).await;
        let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
        // Deleted once; a later version finds it gone.
        assert!(codes[0] == code::NONE || codes[0] == code::UNKNOWN_TOPIC_OR_PARTITION, "DeleteTopics v{v}: {codes:?}");
        assert_eq!(codes[1], code::UNKNOWN_TOPIC_OR_PARTITION, "DeleteTopics v{v}");
    }
}

async fn configs(c: &mut Client) {
    for v in versions(ApiKey::DescribeConfigs) {
        let mut req = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("c"))
                .with_configuration_keys(None),
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("nope"))
                .with_configuration_keys(Some(vec![s("retention.ms")])),
        ]);
        req = req.with_include_synonyms(true);
        if v >= 3 {
            req = req.with_include_documentation(true);
        }
        let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, v, &req).await;
        assert_eq!(r.results[0].error_code, code::NONE, "DescribeConfigs v{v}");
        assert!(r.results[0].configs.iter().any(|e| e.name.as_str() == "cleanup.policy"), "DescribeConfigs v{v}");
        assert_eq!(r.results[1].error_code, code::UNKNOWN_TOPIC_OR_PARTITION, "DescribeConfigs v{v}");
    }
    for v in versions(ApiKey::AlterConfigs) {
        let req =
            AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("c"))
                .with_configs(vec![
                    alter_configs_request::AlterableConfig::default()
                        .with_name(s("cleanup.policy"))
                        .with_value(Some(s("compact"))),
                    alter_configs_request::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("5000"))),
                ])]);
        let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, code::NONE, "AlterConfigs v{v}");
    }
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let op = |name: &str, operation: i8, value: &str| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(s(name))
                .with_config_operation(operation)
                .with_value(Some(s(value)))
        };
        let resource = |name: &str, ops| {
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(name))
                .with_configs(ops)
        };
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            resource("c", vec![op("cleanup.policy", 2, "delete"), op("retention.ms", 0, "6000")]),
            resource("t", vec![op("retention.ms", 2, "1")]),
        ]);
        let r: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, code::NONE, "IncrementalAlterConfigs v{v}: {:?}", r.responses[0]);
        assert_eq!(
            r.responses[1].error_code,
            code::INVALID_CONFIG,
            "IncrementalAlterConfigs v{v}: append to a non-list"
        );
        let described = c.served.log.describe_configs("c").unwrap();
        let policy = described.iter().find(|e| e.name == "cleanup.policy").unwrap();
        assert_eq!(policy.value, "compact,delete", "IncrementalAlterConfigs v{v}: APPEND");
        let req = IncrementalAlterConfigsRequest::default()
            .with_resources(vec![resource("c", vec![op("cleanup.policy", 3, "delete")])]);
        let r: IncrementalAlterConfigsResponse = c.call(ApiKey::IncrementalAlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, code::NONE, "IncrementalAlterConfigs v{v}: SUBTRACT");
        let described = c.served.log.describe_configs("c").unwrap();
        assert_eq!(described.iter().find(|e| e.name == "cleanup.policy").unwrap().value, "compact");
    }
}

/// A member's join at version `v`: its id and the generation (v4+ first gets MEMBER_ID_REQUIRED).
async fn join(c: &mut Client, group_id: &str, v: i16) -> (StrBytes, i32, JoinGroupResponse) {
    let protocol = join_group_request::JoinGroupRequestProtocol::default()
        .with_name(s("range"))
        .with_metadata(Bytes::from(consumer_subscription()));
    let mut req = JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(30_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![protocol]);
    if v >= 1 {
        req = req.with_rebalance_timeout_ms(1_000);
    }
    if v >= 8 {
        req = req.with_reason(Some(s("starting")));
    }
    let mut r: JoinGroupResponse = c.call(ApiKey::JoinGroup, v, &req).await;
    if r.error_code == code::MEMBER_ID_REQUIRED {
        assert!(v >= 4, "JoinGroup v{v}: MEMBER_ID_REQUIRED only from v4");
        req = req.with_member_id(r.member_id.clone());
        r = c.call(ApiKey::JoinGroup, v, &req).await;
    }
    assert_eq!(r.error_code, code::NONE, "JoinGroup v{v}: {r:?}");
    assert_eq!(r.leader, r.member_id, "JoinGroup v{v}: the only member leads");
    assert_eq!(r.protocol_name.as_ref().map(|p| p.as_str()), Some("range"), "JoinGroup v{v}");
    (r.member_id.clone(), r.generation_id, r)
}

/// The consumer protocol's subscription to topic "t" (version 0).
fn consumer_subscription() -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0, 0, 1, 0, 1, b't'];
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

async fn groups(c: &mut Client) {
    let top = [ApiKey::FindCoordinator, ApiKey::JoinGroup, ApiKey::SyncGroup, ApiKey::Heartbeat, ApiKey::LeaveGroup]
        .iter()
        .chain(&[
            ApiKey::OffsetCommit,
            ApiKey::OffsetFetch,
            ApiKey::ListGroups,
            ApiKey::DescribeGroups,
            ApiKey::DeleteGroups,
            ApiKey::OffsetDelete,
        ])
        .map(|k| *versions(*k).end())
        .max()
        .unwrap();
    for i in 0..=top {
        let g = format!("group-{i}");
        let v = clamp(ApiKey::FindCoordinator, i);
        let mut req = FindCoordinatorRequest::default();
        if v >= 4 {
            req = req.with_coordinator_keys(vec![s(&g), s("other")]);
        } else {
            req = req.with_key(s(&g));
        }
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req).await;
        if v >= 4 {
            assert_eq!(r.coordinators.len(), 2, "FindCoordinator v{v}");
        } else {
            assert_eq!((r.error_code, r.port), (code::NONE, 9092), "FindCoordinator v{v}");
        }

        let v = clamp(ApiKey::JoinGroup, i);
        let (member, generation, _) = join(c, &g, v).await;

        let v = clamp(ApiKey::SyncGroup, i);
        let assignment = sync_group_request::SyncGroupRequestAssignment::default()
            .with_member_id(member.clone())
            .with_assignment(Bytes::from_static(&[
                0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff,
            ]));
        let mut req = SyncGroupRequest::default()
            .with_group_id(group(&g))
            .with_generation_id(generation)
            .with_member_id(member.clone())
            .with_assignments(vec![assignment]);
        if v >= 5 {
            req = req.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s("range")));
        }
        let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, v, &req).await;
        assert_eq!(r.error_code, code::NONE, "SyncGroup v{v}");
        assert!(!r.assignment.is_empty(), "SyncGroup v{v}");

        let v = clamp(ApiKey::Heartbeat, i);
        let req = HeartbeatRequest::default()
            .with_group_id(group(&g))
            .with_generation_id(generation)
            .with_member_id(member.clone());
        let r: HeartbeatResponse = c.call(ApiKey::Heartbeat, v, &req).await;
        assert_eq!(r.error_code, code::NONE, "Heartbeat v{v}");

        let v = clamp(ApiKey::OffsetCommit, i);
        let partition = |p: i32, o: i64| {
            let out = offset_commit_request::OffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(o)
                .with_committed_metadata(Some(s("meta")));
            if v >= 6 {
                out.with_committed_leader_epoch(0)
            } else {
                out
            }
        };
        let mut req = OffsetCommitRequest::default()
            .with_group_id(group(&g))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member.clone())
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![partition(0, 2), partition(1, 3)]),
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic("nope"))
                    .with_partitions(vec![partition(0, 1)]),
            ]);
        if v <= 4 {
            req = req.with_retention_time_ms(-1);
        }
        let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, v, &req).await;
        let codes: Vec<Vec<i16>> =
            r.topics.iter().map(|t| t.partitions.iter().map(|p| p.error_code).collect()).collect();
        assert_eq!(codes, [vec![code::NONE, code::NONE], vec![code::UNKNOWN_TOPIC_OR_PARTITION]], "OffsetCommit v{v}");

        let v = clamp(ApiKey::OffsetFetch, i);
        let mut req = OffsetFetchRequest::default().with_group_id(group(&g)).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0, 1]),
        ]));
        if v >= 7 {
            req = req.with_require_stable(true);
        }
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req).await;
        let got: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.committed_offset).collect();
        assert_eq!(got, [2, 3], "OffsetFetch v{v}");

        let v = clamp(ApiKey::ListGroups, i);
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req = req.with_states_filter(vec![s("Stable")]);
        }
        if v >= 5 {
            req = req.with_types_filter(vec![s("classic")]);
        }
        let r: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &req).await;
        assert!(r.groups.iter().any(|x| x.group_id.0.as_str() == g), "ListGroups v{v}");
        if v >= 4 {
            let req = ListGroupsRequest::default().with_states_filter(vec![s("Empty")]);
            let r: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &req).await;
            assert!(!r.groups.iter().any(|x| x.group_id.0.as_str() == g), "ListGroups v{v}: only empty groups");
        }
        if v >= 5 {
            let req = ListGroupsRequest::default().with_types_filter(vec![s("consumer")]);
            let r: ListGroupsResponse = c.call(ApiKey::ListGroups, v, &req).await;
            assert!(r.groups.is_empty(), "ListGroups v{v}: no group of the new consumer protocol");
        }

        let v = clamp(ApiKey::DescribeGroups, i);
        let mut req = DescribeGroupsRequest::default().with_groups(vec![group(&g), group("nobody")]);
        if v >= 3 {
            req = req.with_include_authorized_operations(true);
        }
        let r: DescribeGroupsResponse = c.call(ApiKey::DescribeGroups, v, &req).await;
        assert_eq!(r.groups[0].members.len(), 1, "DescribeGroups v{v}");
        assert_eq!(r.groups[0].group_state.as_str(), "Stable", "DescribeGroups v{v}");
        if v >= 3 {
            assert_eq!(r.groups[0].authorized_operations, crate::handlers::authorized::GROUP, "DescribeGroups v{v}");
        }

        // OffsetDelete: refused for the topic the member subscribes to; done once it has left.
        let offset_delete = |name: &str| {
            let partitions =
                vec![offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0)];
            OffsetDeleteRequest::default().with_group_id(group(name)).with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(partitions),
            ])
        };
        let v = clamp(ApiKey::OffsetDelete, i);
        let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, v, &offset_delete(&g)).await;
        let codes = (r.error_code, r.topics[0].partitions[0].error_code);
        assert_eq!(codes, (code::NONE, code::GROUP_SUBSCRIBED_TO_TOPIC), "OffsetDelete v{v}");
        let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, v, &offset_delete("nobody")).await;
        assert_eq!(r.error_code, code::GROUP_ID_NOT_FOUND, "OffsetDelete v{v}");

        let v = clamp(ApiKey::LeaveGroup, i);
        let mut req = LeaveGroupRequest::default().with_group_id(group(&g));
        if v >= 3 {
            let mut m = leave_group_request::MemberIdentity::default().with_member_id(member.clone());
            if v >= 5 {
                m = m.with_reason(Some(s("done")));
            }
            req = req.with_members(vec![m]);
        } else {
            req = req.with_member_id(member.clone());
        }
        let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, v, &req).await;
        assert_eq!(r.error_code, code::NONE, "LeaveGroup v{v}");

        let v = clamp(ApiKey::OffsetDelete, i);
        let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, v, &offset_delete(&g)).await;
        assert_eq!((r.error_code, r.topics[0].partitions[0].error_code), (0, 0), "OffsetDelete v{v}");
        let req = OffsetFetchRequest::default().with_group_id(group(&g)).with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(topic("t"))
                .with_partition_indexes(vec![0, 1]),
        ]));
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 6, &req).await;
        let got: Vec<i64> = r.topics[0].partitions.iter().map(|p| p.committed_offset).collect();
        assert_eq!(got, [-1, 3], "OffsetDelete v{v}: partition 0's offset is gone");

        let v = clamp(ApiKey::DeleteGroups, i);
        let req = DeleteGroupsRequest::default().with_groups_names(vec![group(&g), group("nobody")]);
        let r: DeleteGroupsResponse = c.call(ApiKey::DeleteGroups, v, &req).await;
        let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, [code::NONE, code::GROUP_ID_NOT_FOUND], "DeleteGroups v{v}");
    }
}

async fn transactions(c: &mut Client) {
    let top = [
        ApiKey::InitProducerId,
        ApiKey::AddPartitionsToTxn,
        ApiKey::AddOffsetsToTxn,
        ApiKey::EndTxn,
        ApiKey::TxnOffsetCommit,
    ]
    .iter()
    .map(|k| *versions(*k).end())
    .max()
    .unwrap();
    for i in 0..=top {
        let txn = format!("txn-{i}");
        let v = clamp(ApiKey::InitProducerId, i);
        let req = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(s(&txn))))
            .with_transaction_timeout_ms(60_000);
        let r: InitProducerIdResponse = c.call(ApiKey::InitProducerId, v, &req).await;
        assert_eq!(r.error_code, code::NONE, "InitProducerId v{v}");
        let (pid, epoch) = (r.producer_id, r.producer_epoch);

        let v = clamp(ApiKey::AddPartitionsToTxn, i);
        let req = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(s(&txn)))
            .with_v3_and_below_producer_id(pid)
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(topic("t"))
                .with_partitions(vec![0])]);
        let r: AddPartitionsToTxnResponse = c.call(ApiKey::AddPartitionsToTxn, v, &req).await;
        let codes: Vec<i16> =
            r.results_by_topic_v3_and_below[0].results_by_partition.iter().map(|p| p.partition_error_code).collect();
        assert_eq!(codes, [code::NONE], "AddPartitionsToTxn v{v}");

        let batch = records(2, true, Some((pid.0, epoch, 0)));
        c.served.log.append("t", 0, BytesMut::from(&batch[..])).await.unwrap();

        let v = clamp(ApiKey::AddOffsetsToTxn, i);
        let g = format!("txn-group-{i}");
        let req = AddOffsetsToTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&txn)))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_group_id(group(&g));
        let r: AddOffsetsToTxnResponse = c.call(ApiKey::AddOffsetsToTxn, v, &req).await;
        assert_eq!(r.error_code, code::NONE, "AddOffsetsToTxn v{v}");

        let v = clamp(ApiKey::TxnOffsetCommit, i);
        let partition = |p: i32| {
            let out = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                .with_partition_index(p)
                .with_committed_offset(1)
                .with_committed_metadata(Some(s("m")));
            if v >= 2 {
                out.with_committed_leader_epoch(0)
            } else {
                out
            }
        };
        let mut req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(&txn)))
            .with_group_id(group(&g))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("t"))
                    .with_partitions(vec![partition(0)]),
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic("nope"))
                    .with_partitions(vec![partition(0)]),
            ]);
        if v >= 3 {
            req = req.with_generation_id(-1).with_member_id(s(""));
        }
        let r: TxnOffsetCommitResponse = c.call(ApiKey::TxnOffsetCommit, v, &req).await;
        let codes: Vec<i16> = r.topics.iter().map(|t| t.partitions[0].error_code).collect();
        assert_eq!(codes, [code::NONE, code::UNKNOWN_TOPIC_OR_PARTITION], "TxnOffsetCommit v{v}");

        let v = clamp(ApiKey::EndTxn, i);
        let req = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(&txn)))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_committed(i % 2 == 0);
        let r: EndTxnResponse = c.call(ApiKey::EndTxn, v, &req).await;
        assert_eq!(r.error_code, code::NONE, "EndTxn v{v}");
    }

    // WriteTxnMarkers, as another broker's coordinator sends it: the open transaction of a
    // producer it coordinates ends here; an older epoch's marker is refused.
    let batch = records(2, true, Some((777, 1, 0)));
    c.served.log.append("t", 1, BytesMut::from(&batch[..])).await.unwrap();
    let end = c.served.log.partition("t", 1).unwrap().offsets().2;
    assert!(c.served.log.last_stable_offset("t", 1).unwrap() < end, "the transaction holds readers back");
    let marker = |epoch: i16| {
        write_txn_markers_request::WritableTxnMarker::default()
            .with_producer_id(ProducerId(777))
            .with_producer_epoch(epoch)
            .with_transaction_result(true)
            .with_topics(vec![
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(topic("t"))
                    .with_partition_indexes(vec![1]),
                write_txn_markers_request::WritableTxnMarkerTopic::default()
                    .with_name(topic("nope"))
                    .with_partition_indexes(vec![0]),
            ])
    };
    let req = WriteTxnMarkersRequest::default().with_markers(vec![marker(1), marker(0)]);
    let r: WriteTxnMarkersResponse = c.call(ApiKey::WriteTxnMarkers, 1, &req).await;
    let codes: Vec<Vec<i16>> =
        r.markers.iter().map(|m| m.topics.iter().map(|t| t.partitions[0].error_code).collect()).collect();
    assert_eq!(
        codes,
        [
            [code::NONE, code::UNKNOWN_TOPIC_OR_PARTITION],
            [code::INVALID_PRODUCER_EPOCH, code::UNKNOWN_TOPIC_OR_PARTITION]
        ],
        "WriteTxnMarkers v1"
    );
    assert_eq!(c.served.log.last_stable_offset("t", 1).unwrap(), end + 1, "committed: the marker is the last record");
}

/// A response a handler got wrong (a field its version does not have) is answered with its
/// error form, not a closed connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_cannot_be_encoded_is_answered_with_its_error_form() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let served = test_served(&log, offsets);
    let request = |api: ApiKey, version: i16| crate::dispatch::Request {
        api,
        version,
        header: RequestHeader::default().with_correlation_id(5),
        body: Bytes::new(),
        peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        served: &served,
    };
    // v0 has no per-key coordinators.
    let wrong = FindCoordinatorResponse::default()
        .with_coordinators(vec![find_coordinator_response::Coordinator::default().with_key(s("g"))]);
    let mut frame = request(ApiKey::FindCoordinator, 0).respond(&wrong).unwrap().unwrap();
    ResponseHeader::decode(&mut frame, ApiKey::FindCoordinator.response_header_version(0)).unwrap();
    let answer = FindCoordinatorResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(answer.error_code, code::UNKNOWN_SERVER_ERROR);
    // Per item: a Metadata v7 topic with authorized operations (v8+) keeps its name, with the error.
    let wrong = MetadataResponse::default().with_topics(vec![metadata_response::MetadataResponseTopic::default()
        .with_name(Some(topic("t")))
        .with_topic_authorized_operations(0)]);
    let mut frame = request(ApiKey::Metadata, 7).respond(&wrong).unwrap().unwrap();
    ResponseHeader::decode(&mut frame, ApiKey::Metadata.response_header_version(7)).unwrap();
    let answer = MetadataResponse::decode(&mut frame, 7).unwrap();
    let t = &answer.topics[0];
    assert_eq!((t.name.as_ref().map(|n| n.0.as_str()), t.error_code), (Some("t"), code::UNKNOWN_SERVER_ERROR));
    log.close().await.unwrap();
}
