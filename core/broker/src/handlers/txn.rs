//! The transaction APIs (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
//! TxnOffsetCommit, and the coordinators' WriteTxnMarkers) over `freshet_coord::transactions`.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    EndTxnRequest, EndTxnResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use freshet_coord::code;
use freshet_coord::group::{OffsetAndMetadata, TopicPartition};
use freshet_coord::transactions::{new_producer_id, LocalParticipants, TxnError};
use freshet_log::Error;

use futures::future::BoxFuture;

use crate::acl::{op, resource};
use crate::dispatch::{Access, Handled, Request, Served};
use crate::errors::{error_code, txn_error_code, txn_result_code};
use crate::handlers::cluster::not_coordinator;
use crate::handlers::groups::committed;
use crate::handlers::partition_exists;

/// Why the sender may not put a group's offsets into a transaction, if it may not: it needs
/// WRITE on the transactional id and READ on the group.
fn offsets_denied(access: &Access<'_>, transactional_id: &str, group: &str) -> Option<i16> {
    if !access.transactional_id(op::WRITE, transactional_id) {
        Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    } else if !access.group(op::READ, group) {
        Some(code::GROUP_AUTHORIZATION_FAILED)
    } else {
        None
    }
}

async fn add_partitions_to_txn(
    request: AddPartitionsToTxnRequest,
    version: i16,
    served: &Served,
    access: &Access<'_>,
) -> AddPartitionsToTxnResponse {
    use kafka_protocol::messages::add_partitions_to_txn_response::{
        AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
    };
    let respond = |error: &dyn Fn(&str) -> i16| {
        let topics = request
            .v3_and_below_topics
            .iter()
            .map(|t| {
                let results = t
                    .partitions
                    .iter()
                    .map(|&p| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(p)
                            .with_partition_error_code(error(&t.name.0))
                    })
                    .collect();
                AddPartitionsToTxnTopicResult::default().with_name(t.name.clone()).with_results_by_partition(results)
            })
            .collect();
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
    };
    // WRITE on the transactional id, then on every topic: the partitions of topics it may not
    // write to get TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED, as in Kafka.
    if !access.transactional_id(op::WRITE, &request.v3_and_below_transactional_id) {
        return respond(&|_| code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    if let Some(code) = not_coordinator(served, 1, &request.v3_and_below_transactional_id) {
        return respond(&|_| code);
    }
    if request.v3_and_below_topics.iter().any(|t| !access.topic(op::WRITE, &t.name.0)) {
        return respond(&|topic| {
            if access.topic(op::WRITE, topic) {
                code::OPERATION_NOT_ATTEMPTED
            } else {
                code::TOPIC_AUTHORIZATION_FAILED
            }
        });
    }
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
    respond(&|_| error)
}

async fn txn_offset_commit(
    request: TxnOffsetCommitRequest,
    version: i16,
    served: &Served,
    access: &Access<'_>,
) -> TxnOffsetCommitResponse {
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    // WRITE on the transactional id and READ on the group for the whole request; READ on each
    // topic, whose partitions are refused on their own without it, as are those that do not
    // exist, as Kafka does.
    let denied = offsets_denied(access, &request.transactional_id, &request.group_id)
        .or_else(|| not_coordinator(served, 0, &request.group_id));
    let readable = |topic: &kafka_protocol::messages::TopicName| access.topic(op::READ, &topic.0);
    let exists = |topic: &kafka_protocol::messages::TopicName, index: i32| {
        readable(topic) && partition_exists(served, &topic.0, index)
    };
    let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().filter(|p| exists(&t.name, p.partition_index)).filter_map(|p| {
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
    let instance = request.group_instance_id.as_deref();
    let member = served
        .coordinator
        .check_commit(&request.group_id, request.generation_id, &request.member_id, instance, true)
        .await;
    let error = if let Some(denied) = denied {
        denied
    } else if member != code::NONE {
        tracing::info!(group = %request.group_id.0, member = %request.member_id, generation = request.generation_id, code = member, "transactional offset commit refused");
        member
    } else if not_coordinator(served, 1, &request.transactional_id).is_none() {
        // The transaction's coordinator is here too: it checks that the group was added.
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
    } else {
        // The transaction's coordinator is another broker's, which writes the marker that makes
        // these offsets the group's (as Kafka's group coordinator, this one does not ask it).
        let (pid, epoch) = (request.producer_id.0, request.producer_epoch);
        let stored = served.offsets.commit_transactional(&request.group_id, pid, epoch, &offsets).await;
        txn_result_code(stored.map_err(TxnError::from), version >= 3)
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if error == code::NONE && !readable(&t.name) {
                        code::TOPIC_AUTHORIZATION_FAILED
                    } else if error == code::NONE && !exists(&t.name, p.partition_index) {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        error
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// InitProducerId: a transactional producer's id and epoch from the transaction coordinator;
/// an idempotent producer's fresh id, or its epoch bumped (KIP-360).
pub(crate) fn serve_init_producer_id(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: InitProducerIdRequest = r.decode()?;
        let served = r.served;
        let access = r.access();
        let denied = |error| {
            InitProducerIdResponse::default()
                .with_error_code(error)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        };
        let transactional = request.transactional_id.as_ref().filter(|id| !id.is_empty());
        let response = if transactional.is_some_and(|id| !access.transactional_id(op::WRITE, id)) {
            denied(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
        } else if let Some(code) = transactional.and_then(|id| not_coordinator(served, 1, id)) {
            denied(code)
        } else if transactional.is_none()
            && !access.cluster(op::IDEMPOTENT_WRITE)
            && !access.any(op::WRITE, resource::TOPIC)
        {
            // An idempotent producer: IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
            denied(code::CLUSTER_AUTHORIZATION_FAILED)
        } else if let Some(id) = transactional {
            let timeout = Duration::from_millis(u64::try_from(request.transaction_timeout_ms).unwrap_or(0));
            match served.transactions.init_producer_id(id, timeout).await {
                Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch),
                Err(e) => {
                    tracing::info!(transactional_id = %id.0, error = %e, "InitProducerId refused");
                    InitProducerIdResponse::default()
                        .with_error_code(txn_error_code(&e, r.version >= 4))
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                }
            }
        } else if request.producer_id.0 >= 0 {
            // An existing producer bumps its epoch (KIP-360).
            InitProducerIdResponse::default()
                .with_producer_id(request.producer_id)
                .with_producer_epoch(request.producer_epoch.wrapping_add(1).max(0))
        } else if let Some(cluster) = &served.cluster {
            // Ids from this broker's block, which the controller handed out: unique in the cluster.
            match cluster.producer_id().await {
                Ok(id) => InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0),
                Err(e) => {
                    tracing::info!(error = %e, "no producer id block from the controller");
                    denied(code::COORDINATOR_NOT_AVAILABLE)
                }
            }
        } else {
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(new_producer_id(served.log.clock().now_ms())))
                .with_producer_epoch(0)
        };
        r.respond(&response)
    })
}

/// AddPartitionsToTxn.
pub(crate) fn serve_add_partitions(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = add_partitions_to_txn(request, r.version, r.served, &access).await;
        r.respond(&response)
    })
}

/// AddOffsetsToTxn.
pub(crate) fn serve_add_offsets(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: AddOffsetsToTxnRequest = r.decode()?;
        let access = r.access();
        if let Some(error) = offsets_denied(&access, &request.transactional_id, &request.group_id)
            .or_else(|| not_coordinator(r.served, 1, &request.transactional_id))
        {
            return r.respond(&AddOffsetsToTxnResponse::default().with_error_code(error));
        }
        let result = r
            .served
            .transactions
            .add_offsets(&request.transactional_id, request.producer_id.0, request.producer_epoch, &request.group_id)
            .await;
        r.respond(&AddOffsetsToTxnResponse::default().with_error_code(txn_result_code(result, r.version >= 3)))
    })
}

/// EndTxn.
pub(crate) fn serve_end_txn(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: EndTxnRequest = r.decode()?;
        if !r.access().transactional_id(op::WRITE, &request.transactional_id) {
            return r.respond(&EndTxnResponse::default().with_error_code(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
        }
        if let Some(code) = not_coordinator(r.served, 1, &request.transactional_id) {
            return r.respond(&EndTxnResponse::default().with_error_code(code));
        }
        let result = r
            .served
            .transactions
            .end(&request.transactional_id, request.producer_id.0, request.producer_epoch, request.committed)
            .await;
        r.respond(&EndTxnResponse::default().with_error_code(txn_result_code(result, r.version >= 2)))
    })
}

/// TxnOffsetCommit.
pub(crate) fn serve_txn_offset_commit(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = txn_offset_commit(request, r.version, r.served, &access).await;
        r.respond(&response)
    })
}

/// WriteTxnMarkers: a transaction coordinator (another broker's, in a cluster) ends a
/// transaction on partitions this broker leads. Needs CLUSTER_ACTION on the cluster.
pub(crate) fn serve_write_txn_markers(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };
    Box::pin(async move {
        let request: WriteTxnMarkersRequest = r.decode()?;
        let served = r.served;
        let allowed = r.access().cluster(op::CLUSTER_ACTION);
        let local = LocalParticipants::new(served.log.clone(), served.offsets.clone());
        let mut markers = Vec::with_capacity(request.markers.len());
        for marker in request.markers {
            let (pid, epoch, commit) = (marker.producer_id.0, marker.producer_epoch, marker.transaction_result);
            let mut topics = Vec::with_capacity(marker.topics.len());
            for topic in marker.topics {
                let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
                for index in topic.partition_indexes {
                    let code = if !allowed {
                        code::CLUSTER_AUTHORIZATION_FAILED
                    } else if let Some(Err(refused)) =
                        served.cluster.as_ref().map(|c| c.check_leader(&topic.name.0, index, -1))
                    {
                        refused.code
                    } else {
                        let Ok(partition) = u32::try_from(index) else {
                            partitions.push(
                                WritableTxnMarkerPartitionResult::default()
                                    .with_partition_index(index)
                                    .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
                            );
                            continue;
                        };
                        let written =
                            local.write_marker(&topic.name.0, partition, pid, epoch, marker.coordinator_epoch, commit);
                        match written.await {
                            Ok(()) => code::NONE,
                            Err(Error::ProducerFenced(_) | Error::InvalidProducerEpoch(_)) => {
                                code::INVALID_PRODUCER_EPOCH
                            }
                            Err(e) => {
                                tracing::info!(topic = %topic.name.0, partition, producer_id = pid, error = %e, "a transaction marker was not written");
                                error_code(&e)
                            }
                        }
                    };
                    partitions.push(
                        WritableTxnMarkerPartitionResult::default().with_partition_index(index).with_error_code(code),
                    );
                }
                topics.push(WritableTxnMarkerTopicResult::default().with_name(topic.name).with_partitions(partitions));
            }
            markers.push(WritableTxnMarkerResult::default().with_producer_id(marker.producer_id).with_topics(topics));
        }
        r.respond(&WriteTxnMarkersResponse::default().with_markers(markers))
    })
}
