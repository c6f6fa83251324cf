//! The topic APIs: Metadata, CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeCluster.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    create_topics_request::CreatableTopic, create_topics_response::CreatableTopicResult,
    delete_topics_response::DeletableTopicResult, metadata_response::MetadataResponseBroker,
    metadata_response::MetadataResponsePartition, metadata_response::MetadataResponseTopic, BrokerId,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeClusterRequest, DescribeClusterResponse,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use freshet_coord::code;
use freshet_log::{Error, OffsetSpec};

use futures::future::BoxFuture;

use crate::acl::{op, resource, CLUSTER_NAME};
use crate::dispatch::{name, Access, Handled, Request, Served};
use crate::errors::error_code;
use crate::handlers::authorized;

/// A topic's id as the protocol carries it (the log keeps it as 32 hex digits).
pub(crate) fn topic_uuid(id: &str) -> Uuid {
    Uuid::try_parse(id).unwrap_or(Uuid::nil())
}

/// The name of the topic with id `id`, if there is one.
fn topic_named_by(served: &Served, id: Uuid) -> Option<String> {
    served.log.list_topics().into_iter().find(|t| topic_uuid(&t.id) == id).map(|t| t.name)
}

/// The topics a Metadata request asks for (`all()` when it names none), and the answers to the
/// ids (v10+, a look-up by id: an empty name with an id set) that `named` finds no topic for.
pub(crate) fn metadata_names(
    request: &MetadataRequest,
    all: impl FnOnce() -> Vec<String>,
    named: impl Fn(Uuid) -> Option<String>,
) -> (Vec<String>, Vec<MetadataResponseTopic>) {
    let Some(asked) = &request.topics else { return (all(), Vec::new()) };
    let mut unknown = Vec::new();
    let names = asked
        .iter()
        .filter_map(|t| match &t.name {
            Some(n) if !n.0.is_empty() || t.topic_id.is_nil() => Some(n.0.to_string()),
            _ => named(t.topic_id).or_else(|| {
                unknown.push(
                    MetadataResponseTopic::default().with_topic_id(t.topic_id).with_error_code(code::UNKNOWN_TOPIC_ID),
                );
                None
            }),
        })
        .collect();
    (names, unknown)
}

async fn metadata(request: MetadataRequest, served: &Served, access: &Access<'_>) -> MetadataResponse {
    let log = &served.log;
    // All topics: those the client may describe.
    let all = || {
        log.list_topics()
            .into_iter()
            .filter(|t| !t.internal && access.topic(op::DESCRIBE, &t.name))
            .map(|t| t.name)
            .collect()
    };
    let (names, mut topics) = metadata_names(&request, all, |id| topic_named_by(served, id));
    for topic in names {
        if !access.topic(op::DESCRIBE, &topic) {
            topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(name(&topic)))
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED),
            );
            continue;
        }
        let mut described = log.describe_topic(&topic);
        let creatable = || access.cluster(op::CREATE) || access.topic(op::CREATE, &topic);
        if matches!(described, Err(Error::UnknownTopic(_)))
            && request.allow_auto_topic_creation
            && served.config.auto_create_topics
            && !creatable()
        {
            topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(name(&topic)))
                    .with_error_code(code::TOPIC_AUTHORIZATION_FAILED),
            );
            continue;
        }
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
            Ok(d) => MetadataResponseTopic::default()
                .with_name(Some(name(&topic)))
                .with_topic_id(topic_uuid(&d.id))
                .with_is_internal(d.internal)
                .with_topic_authorized_operations(authorized::when(request.include_topic_authorized_operations, || {
                    access.operations(resource::TOPIC, &topic, authorized::TOPIC)
                }))
                .with_partitions(
                    (0..d.n_partitions as i32)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(served.config.node_id))
                                .with_replica_nodes(vec![BrokerId(served.config.node_id)])
                                .with_isr_nodes(vec![BrokerId(served.config.node_id)])
                        })
                        .collect(),
                ),
            Err(e) => MetadataResponseTopic::default().with_name(Some(name(&topic))).with_error_code(error_code(&e)),
        };
        topics.push(entry);
    }
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(served.config.node_id))
        .with_host(StrBytes::from_string(served.host.clone()))
        .with_port(served.port);
    MetadataResponse::default()
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_string(served.config.cluster_id.clone())))
        .with_controller_id(BrokerId(served.config.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(authorized::when(request.include_cluster_authorized_operations, || {
            access.operations(resource::CLUSTER, CLUSTER_NAME, authorized::CLUSTER)
        }))
}

async fn create_partitions(
    request: CreatePartitionsRequest,
    served: &Served,
    access: &Access<'_>,
) -> CreatePartitionsResponse {
    use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name_str = topic.name.0.to_string();
        let result = match served.log.describe_topic(&name_str) {
            _ if !access.topic(op::ALTER, &name_str) => {
                Err((code::TOPIC_AUTHORIZATION_FAILED, format!("ALTER on topic {name_str:?} is not allowed")))
            }
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

async fn delete_records(request: DeleteRecordsRequest, served: &Served, access: &Access<'_>) -> DeleteRecordsResponse {
    use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name_str = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let out = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            if !access.topic(op::DELETE, &name_str) {
                partitions.push(out.with_error_code(code::TOPIC_AUTHORIZATION_FAILED).with_low_watermark(-1));
                continue;
            }
            let result = match u32::try_from(p.partition_index) {
                // As Kafka: -1 is the high watermark; any other negative offset is out of range.
                Ok(_) if p.offset < -1 => {
                    partitions.push(out.with_error_code(code::OFFSET_OUT_OF_RANGE).with_low_watermark(-1));
                    continue;
                }
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

async fn create_topics(request: CreateTopicsRequest, served: &Served, access: &Access<'_>) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    let cluster_create = access.cluster(op::CREATE);
    for topic in request.topics {
        let topic_name = topic.name.0.to_string();
        let n = if !topic.assignments.is_empty() {
            topic.assignments.len() as i32
        } else if topic.num_partitions == -1 {
            served.config.default_partitions as i32
        } else {
            topic.num_partitions
        };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let outcome: std::result::Result<(), (i16, String)> = if !cluster_create
            && !access.topic(op::CREATE, &topic_name)
        {
            Err((code::TOPIC_AUTHORIZATION_FAILED, format!("CREATE on topic {topic_name:?} is not allowed")))
        } else if let Err(refused) = check_replicas(&topic, served.config.node_id) {
            Err(refused)
        } else if n < 1 {
            Err((code::INVALID_PARTITIONS, format!("{n} partitions: a topic needs at least one")))
        } else if let Err(e) = freshet_log::validate_topic_name(&topic_name) {
            Err((error_code(&e), e.to_string()))
        } else if served.log.describe_topic(&topic_name).is_ok() {
            Err((code::TOPIC_ALREADY_EXISTS, format!("topic {topic_name} already exists")))
        } else if request.validate_only {
            freshet_log::config::TopicConfig::validate(&configs).map_err(|e| (error_code(&e), e.to_string()))
        } else {
            served.log.create_topic(&topic_name, n as u32, configs).await.map_err(|e| (error_code(&e), e.to_string()))
        };
        let mut result =
            CreatableTopicResult::default().with_name(topic.name).with_num_partitions(n).with_replication_factor(1);
        match outcome {
            Err((code, message)) => {
                result = result.with_error_code(code).with_error_message(Some(StrBytes::from_string(message)))
            }
            Ok(()) => {
                if let Ok(d) = served.log.describe_topic(&topic_name) {
                    result = result.with_topic_id(topic_uuid(&d.id));
                }
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// The replication a CreateTopics asks for, checked as Kafka checks it against the brokers there
/// are (this one, `node`): a replication factor of at most 1 (-1: the default), or an explicit
/// assignment (then no partition count or factor) of partitions 0..n, each to this broker once.
fn check_replicas(topic: &CreatableTopic, node: i32) -> std::result::Result<(), (i16, String)> {
    if topic.assignments.is_empty() {
        return match topic.replication_factor {
            -1 | 1 => Ok(()),
            f if f < 1 => {
                Err((code::INVALID_REPLICATION_FACTOR, format!("replication factor {f}: must be at least 1")))
            }
            f => Err((
                code::INVALID_REPLICATION_FACTOR,
                format!("replication factor {f} is larger than the 1 broker available"),
            )),
        };
    }
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            code::INVALID_REQUEST,
            "both a partition count or replication factor and a replica assignment were given".to_string(),
        ));
    }
    let mut indexes: Vec<i32> = topic.assignments.iter().map(|a| a.partition_index).collect();
    indexes.sort_unstable();
    if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
        return Err((
            code::INVALID_REPLICA_ASSIGNMENT,
            format!("partition indexes {indexes:?}: they must be 0 to {} with no gap", indexes.len() - 1),
        ));
    }
    for a in &topic.assignments {
        match a.broker_ids.as_slice() {
            [BrokerId(b)] if *b == node => {}
            [] => {
                let message = format!("partition {} is assigned to no broker", a.partition_index);
                return Err((code::INVALID_REPLICA_ASSIGNMENT, message));
            }
            ids if ids.iter().any(|b| b.0 != node) => {
                let message = format!(
                    "partition {} is assigned to brokers {:?}; only broker {node} exists",
                    a.partition_index,
                    ids.iter().map(|b| b.0).collect::<Vec<_>>()
                );
                return Err((code::INVALID_REPLICA_ASSIGNMENT, message));
            }
            _ => {
                let message = format!("partition {} lists broker {node} more than once", a.partition_index);
                return Err((code::INVALID_REPLICA_ASSIGNMENT, message));
            }
        }
    }
    Ok(())
}

async fn delete_topics(
    request: DeleteTopicsRequest,
    version: i16,
    served: &Served,
    access: &Access<'_>,
) -> DeleteTopicsResponse {
    let (names, mut results) = deletion_names(request, version, |id| topic_named_by(served, id));
    for topic in names {
        let id = served.log.describe_topic(&topic.0).map(|d| topic_uuid(&d.id)).unwrap_or_default();
        let mut result = DeletableTopicResult::default().with_name(Some(topic.clone())).with_topic_id(id);
        if !access.topic(op::DELETE, &topic.0) {
            let message = format!("DELETE on topic {:?} is not allowed", topic.0.as_str());
            result = result
                .with_topic_id(Default::default())
                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                .with_error_message(Some(StrBytes::from_string(message)));
        } else if let Err(e) = served.log.delete_topic(&topic.0).await {
            result =
                result.with_error_code(error_code(&e)).with_error_message(Some(StrBytes::from_string(e.to_string())));
        }
        results.push(result);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

/// The topics a DeleteTopics names (from v6 by name or by id, ids looked up with `named`), and
/// the results of the ids that name no topic.
pub(crate) fn deletion_names(
    request: DeleteTopicsRequest,
    version: i16,
    named: impl Fn(Uuid) -> Option<String>,
) -> (Vec<TopicName>, Vec<DeletableTopicResult>) {
    if version < 6 {
        return (request.topic_names, Vec::new());
    }
    let mut names = Vec::with_capacity(request.topics.len());
    let mut results = Vec::new();
    for t in request.topics {
        match t.name.or_else(|| named(t.topic_id).map(|n| name(&n))) {
            Some(n) => names.push(n),
            None => results.push(
                DeletableTopicResult::default()
                    .with_topic_id(t.topic_id)
                    .with_error_code(code::UNKNOWN_TOPIC_ID)
                    .with_error_message(Some(StrBytes::from_string(format!("no topic has id {}", t.topic_id)))),
            ),
        }
    }
    (names, results)
}

/// Metadata (creating the topics it names when auto-creation is on).
pub(crate) fn serve_metadata(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        if let Some(cluster) = &r.served.cluster {
            return r.respond(&super::cluster::metadata(request, r.served, &r.access(), cluster).await);
        }
        r.respond(&metadata(request, r.served, &r.access()).await)
    })
}

/// CreateTopics.
pub(crate) fn serve_create_topics(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        if let Some(cluster) = &r.served.cluster {
            return r.respond(&super::cluster::create_topics(request, &r.access(), cluster).await);
        }
        r.respond(&create_topics(request, r.served, &r.access()).await)
    })
}

/// DeleteTopics.
pub(crate) fn serve_delete_topics(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        if let Some(cluster) = &r.served.cluster {
            return r.respond(&super::cluster::delete_topics(request, r.version, &r.access(), cluster).await);
        }
        r.respond(&delete_topics(request, r.version, r.served, &r.access()).await)
    })
}

/// CreatePartitions.
pub(crate) fn serve_create_partitions(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        if let Some(cluster) = &r.served.cluster {
            return r.respond(&super::cluster::create_partitions(request, &r.access(), cluster).await);
        }
        r.respond(&create_partitions(request, r.served, &r.access()).await)
    })
}

/// DeleteRecords.
pub(crate) fn serve_delete_records(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&delete_records(request, r.served, &r.access()).await)
    })
}

/// DescribeCluster: this broker, which is also the controller (or, in a cluster, the brokers of
/// the image).
pub(crate) fn serve_describe_cluster(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: DescribeClusterRequest = r.decode()?;
        if let Some(cluster) = &r.served.cluster {
            return r.respond(&super::cluster::describe_cluster(&request, &r.access(), cluster));
        }
        let broker = kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker::default()
            .with_broker_id(BrokerId(r.served.config.node_id))
            .with_host(StrBytes::from_string(r.served.host.clone()))
            .with_port(r.served.port);
        let response = DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_string(r.served.config.cluster_id.clone()))
            .with_controller_id(BrokerId(r.served.config.node_id))
            .with_brokers(vec![broker])
            .with_cluster_authorized_operations(authorized::when(
                request.include_cluster_authorized_operations,
                || r.access().operations(resource::CLUSTER, CLUSTER_NAME, authorized::CLUSTER),
            ));
        r.respond(&response)
    })
}

/// DescribeLogDirs: the data directory of this broker and the replicas it holds (every partition
/// of the log; in a cluster, those the image places here), each with its size on disk, and the
/// directory's volume's total and usable bytes. Topics asked for that have no replica here are
/// left out, as in Kafka. Needs DESCRIBE on the cluster.
pub(crate) fn serve_describe_log_dirs(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    use kafka_protocol::messages::describe_log_dirs_response::{
        DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
    };
    Box::pin(async move {
        let request: DescribeLogDirsRequest = r.decode()?;
        if !r.access().cluster(op::DESCRIBE) {
            // No directories; from v3 with the reason, as Kafka answers.
            let code = if r.version >= 3 { code::CLUSTER_AUTHORIZATION_FAILED } else { code::NONE };
            return r.respond(&DescribeLogDirsResponse::default().with_error_code(code));
        }
        let log = &r.served.log;
        // In a cluster the local log has every partition of a topic with a replica here; the
        // image says which are this broker's.
        let image = r.served.cluster.as_ref().map(|c| (c.image(), c.config.node_id));
        let placed_here = |topic: &str, partition: i32| match &image {
            Some((image, me)) => {
                image.topic(topic).and_then(|t| t.partitions.get(&partition)).is_some_and(|p| p.replicas.contains(me))
            }
            None => true,
        };
        let asked: Option<BTreeMap<String, Vec<i32>>> =
            request.topics.map(|topics| topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect());
        let mut topics = Vec::new();
        for topic in log.list_topics() {
            let wanted = match &asked {
                None => None,
                Some(asked) => match asked.get(&topic.name) {
                    Some(partitions) => Some(partitions),
                    None => continue,
                },
            };
            // A topic deleted meanwhile has no replicas to describe.
            let Ok(described) = log.describe_partitions(&topic.name) else { continue };
            let partitions: Vec<DescribeLogDirsPartition> = described
                .iter()
                .filter(|p| wanted.is_none_or(|w| w.contains(&(p.partition as i32))))
                .filter(|p| placed_here(&topic.name, p.partition as i32))
                .map(|p| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.partition as i32)
                        .with_partition_size(i64::try_from(p.size_bytes).unwrap_or(i64::MAX))
                })
                .collect();
            if !partitions.is_empty() {
                topics.push(DescribeLogDirsTopic::default().with_name(name(&topic.name)).with_partitions(partitions));
            }
        }
        let (total_bytes, usable_bytes) = match rustix::fs::statvfs(log.dir()) {
            Ok(fs) => {
                let block = fs.f_frsize as i64;
                ((fs.f_blocks as i64).saturating_mul(block), (fs.f_bavail as i64).saturating_mul(block))
            }
            Err(_) => (-1, -1),
        };
        let dir = std::fs::canonicalize(log.dir()).unwrap_or_else(|_| log.dir().to_path_buf());
        let result = DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_string(dir.display().to_string()))
            .with_topics(topics)
            .with_total_bytes(total_bytes)
            .with_usable_bytes(usable_bytes);
        r.respond(&DescribeLogDirsResponse::default().with_results(vec![result]))
    })
}
