//! The topic APIs of a node of a cluster: answered from the metadata image, and the admin
//! requests forwarded to the active controller (any broker takes them, as in Kafka).

use std::collections::BTreeMap;

use freshet_cluster::controller::NewTopic;
use freshet_cluster::image::BrokerImage;
use freshet_cluster::records::NO_LEADER;
use freshet_cluster::ControllerError;
use freshet_coord::code;
use futures::future::BoxFuture;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::acl::{op, resource, CLUSTER_NAME};
use crate::cluster::ClusterNode;
use crate::dispatch::{name, Access, Handled, Request, Served};
use crate::handlers::authorized;

/// The internal topics of the coordinators, left out of a listing of all topics.
fn internal(topic: &str) -> bool {
    topic == freshet_coord::group::OFFSETS_TOPIC || topic == freshet_coord::transactions::TRANSACTION_STATE_TOPIC
}

fn message(e: &ControllerError) -> Option<StrBytes> {
    Some(StrBytes::from_string(e.message.clone()))
}

/// A broker's client endpoint: the one registered under this cluster's client listener name.
pub(crate) fn endpoint<'a>(cluster: &ClusterNode, broker: &'a BrokerImage) -> Option<(&'a str, i32)> {
    let e = broker.endpoints.iter().find(|e| e.name == cluster.config.listener_name).or(broker.endpoints.first())?;
    Some((e.host.as_str(), i32::from(e.port)))
}

/// The controller id clients are given: this broker. Controllers are not reachable by clients
/// (as in Kafka's KRaft, which names some live broker), and any broker forwards admin requests
/// to the active controller; naming the broker a client already talks to keeps a dead
/// controller out of its way.
fn controller_id(cluster: &ClusterNode) -> i32 {
    cluster.config.node_id
}

pub(crate) async fn metadata(
    request: MetadataRequest,
    served: &Served,
    access: &Access<'_>,
    cluster: &ClusterNode,
) -> MetadataResponse {
    let mut image = cluster.image();
    let all = || image.topics.keys().filter(|t| !internal(t) && access.topic(op::DESCRIBE, t)).cloned().collect();
    let (names, mut topics) =
        super::topics::metadata_names(&request, all, |id| image.topic_name(id.as_u128()).map(str::to_owned));
    for topic in names {
        let refused = |code| MetadataResponseTopic::default().with_name(Some(name(&topic))).with_error_code(code);
        if !access.topic(op::DESCRIBE, &topic) {
            topics.push(refused(code::TOPIC_AUTHORIZATION_FAILED));
            continue;
        }
        if image.topic(&topic).is_none() && request.allow_auto_topic_creation && served.config.auto_create_topics {
            if !(access.cluster(op::CREATE) || access.topic(op::CREATE, &topic)) {
                topics.push(refused(code::TOPIC_AUTHORIZATION_FAILED));
                continue;
            }
            let new = NewTopic { name: topic.clone(), partitions: -1, replication_factor: -1, ..Default::default() };
            match cluster.create_topic(new, false).await {
                Ok(_) => tracing::info!(%topic, "auto-created a topic"),
                Err(e) if e.code == code::TOPIC_ALREADY_EXISTS => {}
                Err(e) => {
                    topics.push(refused(e.code));
                    continue;
                }
            }
            image = cluster.image();
        }
        let Some(t) = image.topic(&topic) else {
            topics.push(refused(code::UNKNOWN_TOPIC_OR_PARTITION));
            continue;
        };
        let partitions = t
            .partitions
            .iter()
            .map(|(index, p)| {
                let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
                let offline: Vec<i32> = p.replicas.iter().copied().filter(|b| !image.is_live(*b)).collect();
                MetadataResponsePartition::default()
                    .with_partition_index(*index)
                    .with_error_code(if p.leader == NO_LEADER { code::LEADER_NOT_AVAILABLE } else { code::NONE })
                    .with_leader_id(BrokerId(p.leader))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(ids(&p.replicas))
                    .with_isr_nodes(ids(&p.isr))
                    .with_offline_replicas(ids(&offline))
            })
            .collect();
        topics.push(
            MetadataResponseTopic::default()
                .with_name(Some(name(&topic)))
                .with_topic_id(Uuid::from_u128(t.id))
                .with_is_internal(internal(&topic))
                .with_topic_authorized_operations(authorized::when(request.include_topic_authorized_operations, || {
                    access.operations(resource::TOPIC, &topic, authorized::TOPIC)
                }))
                .with_partitions(partitions),
        );
    }
    let brokers = image
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = endpoint(cluster, b)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(host.to_owned()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(cluster.config.cluster_id.clone())))
        .with_controller_id(BrokerId(controller_id(cluster)))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized::when(request.include_cluster_authorized_operations, || {
            access.operations(resource::CLUSTER, CLUSTER_NAME, authorized::CLUSTER)
        }))
}

pub(crate) async fn create_topics(
    request: CreateTopicsRequest,
    access: &Access<'_>,
    cluster: &ClusterNode,
) -> CreateTopicsResponse {
    let cluster_create = access.cluster(op::CREATE);
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let topic_name = topic.name.0.to_string();
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        if !cluster_create && !access.topic(op::CREATE, &topic_name) {
            let m = format!("CREATE on topic {topic_name:?} is not allowed");
            results.push(
                result
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(m))),
            );
            continue;
        }
        if let Err(e) = freshet_log::config::TopicConfig::validate(&configs) {
            let m = Some(StrBytes::from_string(e.to_string()));
            results.push(result.with_error_code(crate::errors::error_code(&e)).with_error_message(m));
            continue;
        }
        let new = NewTopic {
            name: topic_name,
            partitions: topic.num_partitions,
            replication_factor: topic.replication_factor,
            assignments: topic
                .assignments
                .iter()
                .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                .collect(),
            configs: configs.into_iter().collect(),
        };
        result = match cluster.create_topic(new, request.validate_only).await {
            Ok((id, partitions, rf)) => result
                .with_topic_id(if request.validate_only { Uuid::nil() } else { Uuid::from_u128(id) })
                .with_num_partitions(partitions)
                .with_replication_factor(rf),
            Err(e) => result
                .with_error_code(e.code)
                .with_error_message(message(&e))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        };
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(crate) async fn delete_topics(
    request: DeleteTopicsRequest,
    version: i16,
    access: &Access<'_>,
    cluster: &ClusterNode,
) -> DeleteTopicsResponse {
    let image = cluster.image();
    let (names, mut results) =
        super::topics::deletion_names(request, version, |id| image.topic_name(id.as_u128()).map(str::to_owned));
    for topic in names {
        let id = image.topic(&topic.0).map_or(Uuid::nil(), |t| Uuid::from_u128(t.id));
        let result = DeletableTopicResult::default().with_name(Some(topic.clone())).with_topic_id(id);
        results.push(if !access.topic(op::DELETE, &topic.0) {
            let m = format!("DELETE on topic {:?} is not allowed", topic.0.as_str());
            result
                .with_topic_id(Uuid::nil())
                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                .with_error_message(Some(StrBytes::from_string(m)))
        } else {
            match cluster.delete_topic(&topic.0).await {
                Ok(()) => result,
                Err(e) => result.with_error_code(e.code).with_error_message(message(&e)),
            }
        });
    }
    DeleteTopicsResponse::default().with_responses(results)
}

pub(crate) async fn create_partitions(
    request: CreatePartitionsRequest,
    access: &Access<'_>,
    cluster: &ClusterNode,
) -> CreatePartitionsResponse {
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name_str = topic.name.0.to_string();
        let out = CreatePartitionsTopicResult::default().with_name(topic.name);
        if !access.topic(op::ALTER, &name_str) {
            let m = format!("ALTER on topic {name_str:?} is not allowed");
            results.push(
                out.with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(m))),
            );
            continue;
        }
        let assignments: Vec<Vec<i32>> = topic
            .assignments
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
            .collect();
        results.push(
            match cluster.create_partitions(&name_str, topic.count, assignments, request.validate_only).await {
                Ok(()) => out,
                Err(e) => out.with_error_code(e.code).with_error_message(message(&e)),
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

pub(crate) fn describe_cluster(
    request: &DescribeClusterRequest,
    access: &Access<'_>,
    cluster: &ClusterNode,
) -> DescribeClusterResponse {
    let image = cluster.image();
    let brokers = image
        .brokers
        .values()
        .filter(|b| !b.fenced || request.include_fenced_brokers)
        .filter_map(|b| {
            let (host, port) = endpoint(cluster, b)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(host.to_owned()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(b.fenced),
            )
        })
        .collect();
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(cluster.config.cluster_id.clone()))
        .with_controller_id(BrokerId(controller_id(cluster)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(authorized::when(request.include_cluster_authorized_operations, || {
            access.operations(resource::CLUSTER, CLUSTER_NAME, authorized::CLUSTER)
        }))
}

/// The broker that coordinates `key` (a group when `key_type` is 0, else a transactional id):
/// the leader of its partition of the coordinator's topic, which is created the first time
/// (as Kafka creates `__consumer_offsets` at the first FindCoordinator). `Err`: the error code.
pub(crate) async fn coordinator_of(
    served: &Served,
    cluster: &ClusterNode,
    key_type: i8,
    key: &str,
) -> Result<(i32, String, i32), i16> {
    let (topic, partitions, partition, rf) = if key_type == 0 {
        let offsets = &served.offsets;
        (
            freshet_coord::group::OFFSETS_TOPIC,
            offsets.n_partitions() as i32,
            offsets.partition_for(key) as i32,
            cluster.config.offsets_replication_factor,
        )
    } else {
        (freshet_coord::transactions::TRANSACTION_STATE_TOPIC, 1, 0, cluster.config.transactions_replication_factor)
    };
    if cluster.image().topic(topic).is_none() {
        let new = NewTopic {
            name: topic.to_owned(),
            partitions,
            replication_factor: rf,
            configs: vec![("cleanup.policy".into(), "compact".into())],
            ..Default::default()
        };
        match cluster.create_topic(new, false).await {
            Ok(_) => tracing::info!(topic, "created the coordinators' topic"),
            Err(e) if e.code == code::TOPIC_ALREADY_EXISTS => {}
            Err(e) => {
                tracing::info!(topic, error = %e, "the coordinators' topic cannot be created yet");
                return Err(code::COORDINATOR_NOT_AVAILABLE);
            }
        }
    }
    let image = cluster.image();
    let leader = image.topic(topic).and_then(|t| t.partitions.get(&partition)).map_or(NO_LEADER, |p| p.leader);
    let broker = image.brokers.get(&leader).filter(|b| !b.fenced).ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
    let (host, port) = endpoint(cluster, broker).ok_or(code::COORDINATOR_NOT_AVAILABLE)?;
    Ok((leader, host.to_owned(), port))
}

/// Whether this broker coordinates `key` (see [`coordinator_of`]), without creating anything:
/// `Some(code)` when it does not.
pub(crate) fn not_coordinator(served: &Served, key_type: i8, key: &str) -> Option<i16> {
    let cluster = served.cluster.as_ref()?;
    let (topic, partition) = if key_type == 0 {
        (freshet_coord::group::OFFSETS_TOPIC, served.offsets.partition_for(key) as i32)
    } else {
        (freshet_coord::transactions::TRANSACTION_STATE_TOPIC, 0)
    };
    let image = cluster.image();
    match image.topic(topic).and_then(|t| t.partitions.get(&partition)) {
        Some(p) if p.leader == cluster.config.node_id => {
            (!cluster.coordinator_loaded(topic, partition, p.leader_epoch))
                .then_some(code::COORDINATOR_LOAD_IN_PROGRESS)
        }
        Some(p) if p.leader == NO_LEADER => Some(code::COORDINATOR_NOT_AVAILABLE),
        Some(_) => Some(code::NOT_COORDINATOR),
        None => Some(code::COORDINATOR_NOT_AVAILABLE),
    }
}

/// ElectLeaders: PREFERRED and UNCLEAN elections through the controller (a partition already
/// led by its preferred replica, or with a leader at all for UNCLEAN, gets ELECTION_NOT_NEEDED,
/// as in Kafka; all partitions when none are named).
async fn elect_leaders(request: ElectLeadersRequest, served: &Served) -> ElectLeadersResponse {
    use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
    let image = served.cluster.as_ref().map(|c| c.image());
    let wanted: Vec<(String, Vec<i32>)> = match request.topic_partitions {
        Some(topics) => topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
        None => match &image {
            Some(image) => image
                .topics
                .values()
                .map(|t| {
                    let moved = t.partitions.iter().filter(|(_, p)| p.leader != p.preferred_leader());
                    (t.name.clone(), moved.map(|(i, _)| *i).collect::<Vec<_>>())
                })
                .filter(|(_, p)| !p.is_empty())
                .collect(),
            None => Vec::new(),
        },
    };
    let mut results = Vec::with_capacity(wanted.len());
    for (topic, partitions) in wanted {
        let mut out = Vec::with_capacity(partitions.len());
        for partition in partitions {
            let result: Result<(), ControllerError> = match (&served.cluster, request.election_type) {
                (Some(cluster), 1) => cluster.elect_unclean(&topic, partition).await,
                (Some(cluster), _) => cluster.elect_preferred(&topic, partition).await,
                (None, _) => match served.log.describe_topic(&topic) {
                    Ok(d) if (0..d.n_partitions as i32).contains(&partition) => Err(ControllerError::new(
                        code::ELECTION_NOT_NEEDED,
                        format!("Leader election not needed for topic partition {topic}-{partition}."),
                    )),
                    _ => Err(ControllerError::new(
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("This server does not host topic-partition {topic}-{partition}."),
                    )),
                },
            };
            let r = PartitionResult::default().with_partition_id(partition);
            out.push(match result {
                Ok(()) => r,
                Err(e) => r.with_error_code(e.code).with_error_message(message(&e)),
            });
        }
        results.push(ReplicaElectionResult::default().with_topic(name(&topic)).with_partition_result(out));
    }
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// ElectLeaders (ALTER on the cluster).
pub(crate) fn serve_elect_leaders(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: ElectLeadersRequest = r.decode()?;
        if !r.access().cluster(op::ALTER) {
            return r.respond(&ElectLeadersResponse::default().with_error_code(code::CLUSTER_AUTHORIZATION_FAILED));
        }
        r.respond(&elect_leaders(request, r.served).await)
    })
}

/// AlterPartitionReassignments: each partition's move to new replicas (or, with no replicas,
/// the cancellation of its move) through the controller. Answered once the controller has
/// started it: the new replicas copy the partition from its leader, and the move completes
/// when they are all in sync (ListPartitionReassignments shows it until then). A single broker
/// holds every partition already: a move to it alone needs nothing, any other is refused.
async fn alter_reassignments(
    request: AlterPartitionReassignmentsRequest,
    version: i16,
    served: &Served,
) -> AlterPartitionReassignmentsResponse {
    use kafka_protocol::messages::alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    let allow_rf_change = version < 1 || request.allow_replication_factor_change;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name_ = topic.name.0.to_string();
        let mut out = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let target: Option<Vec<i32>> = p.replicas.map(|r| r.into_iter().map(|b| b.0).collect());
            let result = match &served.cluster {
                Some(cluster) => cluster.alter_reassignment(&name_, p.partition_index, target, allow_rf_change).await,
                None => match (served.log.describe_topic(&name_), target) {
                    (Err(_), _) => Err(ControllerError::new(
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!("This server does not host topic-partition {name_}-{}.", p.partition_index),
                    )),
                    (Ok(_), None) => Err(ControllerError::new(
                        code::NO_REASSIGNMENT_IN_PROGRESS,
                        format!("No reassignment of {name_}-{} is in progress.", p.partition_index),
                    )),
                    (Ok(_), Some(t)) if t == [served.config.node_id] => Ok(()),
                    (Ok(_), Some(t)) => Err(ControllerError::new(
                        code::INVALID_REPLICA_ASSIGNMENT,
                        format!(
                            "A single broker ({}) holds every partition; {t:?} names others.",
                            served.config.node_id
                        ),
                    )),
                },
            };
            let r = ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            out.push(match result {
                Ok(()) => r,
                Err(e) => {
                    tracing::info!(topic = %name_, partition = p.partition_index, error = %e, "reassignment refused");
                    r.with_error_code(e.code).with_error_message(message(&e))
                }
            });
        }
        topics.push(ReassignableTopicResponse::default().with_name(topic.name).with_partitions(out));
    }
    AlterPartitionReassignmentsResponse::default().with_responses(topics)
}

/// AlterPartitionReassignments (ALTER on the cluster).
pub(crate) fn serve_alter_reassignments(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: AlterPartitionReassignmentsRequest = r.decode()?;
        if !r.access().cluster(op::ALTER) {
            let refused = AlterPartitionReassignmentsResponse::default()
                .with_error_code(code::CLUSTER_AUTHORIZATION_FAILED)
                .with_error_message(Some(StrBytes::from_static_str("ALTER on the cluster is not allowed")));
            return r.respond(&refused);
        }
        let version = r.version;
        r.respond(&alter_reassignments(request, version, r.served).await)
    })
}

/// ListPartitionReassignments (DESCRIBE on the cluster): the moves in progress, from the image,
/// of the partitions named or of all.
pub(crate) fn serve_list_reassignments(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    use kafka_protocol::messages::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };
    Box::pin(async move {
        let request: ListPartitionReassignmentsRequest = r.decode()?;
        if !r.access().cluster(op::DESCRIBE) {
            let refused =
                ListPartitionReassignmentsResponse::default().with_error_code(code::CLUSTER_AUTHORIZATION_FAILED);
            return r.respond(&refused);
        }
        let Some(image) = r.served.cluster.as_ref().map(|c| c.image()) else {
            return r.respond(&ListPartitionReassignmentsResponse::default());
        };
        let wanted: Option<Vec<(String, Vec<i32>)>> =
            request.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
        let ids = |v: &[i32]| v.iter().map(|b| kafka_protocol::messages::BrokerId(*b)).collect::<Vec<_>>();
        let mut topics = Vec::new();
        for t in image.topics.values() {
            let asked: Option<&Vec<i32>> = match &wanted {
                None => None,
                Some(w) => match w.iter().find(|(n, _)| *n == t.name) {
                    Some((_, ps)) => Some(ps),
                    None => continue,
                },
            };
            let ongoing: Vec<OngoingPartitionReassignment> = t
                .partitions
                .iter()
                .filter(|(i, p)| {
                    asked.is_none_or(|a| a.contains(i))
                        && !(p.adding_replicas.is_empty() && p.removing_replicas.is_empty())
                })
                .map(|(i, p)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(*i)
                        .with_replicas(ids(&p.replicas))
                        .with_adding_replicas(ids(&p.adding_replicas))
                        .with_removing_replicas(ids(&p.removing_replicas))
                })
                .collect();
            if !ongoing.is_empty() {
                topics.push(OngoingTopicReassignment::default().with_name(name(&t.name)).with_partitions(ongoing));
            }
        }
        r.respond(&ListPartitionReassignmentsResponse::default().with_topics(topics))
    })
}

/// DescribeQuorum: the metadata quorum of `__cluster_metadata`'s one partition, from the active
/// controller (any broker asks it): the leader and its epoch, the high watermark, each voter's log
/// end, and the brokers that follow without voting. Needs DESCRIBE on the cluster. A broker
/// without a quorum (no `controller.quorum.voters` naming other nodes) has none to describe.
pub(crate) fn serve_describe_quorum(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    use kafka_protocol::messages::describe_quorum_response::{Listener, Node, PartitionData, ReplicaState, TopicData};
    Box::pin(async move {
        let request: DescribeQuorumRequest = r.decode()?;
        let version = r.version;
        let refuse = |error: i16, message: String| {
            tracing::info!(error, %message, "DescribeQuorum refused");
            let response = DescribeQuorumResponse::default().with_error_code(error);
            if version >= 2 {
                response.with_error_message(Some(StrBytes::from_string(message)))
            } else {
                response.with_error_message(None)
            }
        };
        if !r.access().cluster(op::DESCRIBE) {
            return r
                .respond(&refuse(code::CLUSTER_AUTHORIZATION_FAILED, "DESCRIBE on the cluster is not allowed".into()));
        }
        let Some(cluster) = &r.served.cluster else {
            let why = "this broker has no metadata quorum: controller.quorum.voters names no other node".to_owned();
            return r.respond(&refuse(code::INVALID_REQUEST, why));
        };
        let quorum = match cluster.describe_quorum().await {
            Ok(quorum) => quorum,
            Err(e) => return r.respond(&refuse(e.code, e.message)),
        };
        let replica = |p: &freshet_cluster::ReplicaProgress| {
            let state = ReplicaState::default().with_replica_id(BrokerId(p.id)).with_log_end_offset(p.log_end_offset);
            if version >= 1 {
                state.with_last_fetch_timestamp(p.last_fetch_ms).with_last_caught_up_timestamp(p.last_caught_up_ms)
            } else {
                state
            }
        };
        let topics = request
            .topics
            .into_iter()
            .map(|t| {
                let known = t.topic_name.0.as_str() == METADATA_TOPIC;
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let out = PartitionData::default().with_partition_index(p.partition_index);
                        let out = if version >= 2 { out } else { out.with_error_message(None) };
                        if !known || p.partition_index != 0 {
                            return out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                        }
                        out.with_leader_id(BrokerId(quorum.leader_id))
                            .with_leader_epoch(quorum.leader_epoch)
                            .with_high_watermark(quorum.high_watermark)
                            .with_current_voters(quorum.voters.iter().map(replica).collect())
                            .with_observers(quorum.observers.iter().map(replica).collect())
                    })
                    .collect();
                TopicData::default().with_topic_name(t.topic_name).with_partitions(partitions)
            })
            .collect();
        let mut response = DescribeQuorumResponse::default().with_topics(topics);
        if version >= 2 {
            // The voters' controller listeners.
            let nodes = cluster
                .config
                .voters
                .iter()
                .map(|(id, address)| {
                    let listener = Listener::default()
                        .with_name(StrBytes::from_static_str("CONTROLLER"))
                        .with_host(StrBytes::from_string(address.ip().to_string()))
                        .with_port(address.port());
                    Node::default().with_node_id(BrokerId(*id)).with_listeners(vec![listener])
                })
                .collect();
            response = response.with_nodes(nodes);
        } else {
            response = response.with_error_message(None);
        }
        r.respond(&response)
    })
}

/// The metadata log's topic, as KRaft names it.
const METADATA_TOPIC: &str = "__cluster_metadata";
