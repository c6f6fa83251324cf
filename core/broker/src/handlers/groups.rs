//! The classic consumer-group protocol (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, ListGroups, DescribeGroups, DeleteGroups) over `freshet_coord::membership`, and
//! committed offsets (OffsetCommit, OffsetFetch) over `freshet_coord::group`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse};
use kafka_protocol::protocol::StrBytes;

use freshet_coord::code;
use freshet_coord::group::{OffsetAndMetadata, TopicPartition};
use freshet_coord::membership::JoinRequest;

use futures::future::BoxFuture;

use crate::acl::op;
use crate::dispatch::{name, Access, Handled, Request, Served};
use crate::errors::coordinator_write_code;
use crate::handlers::authorized;
use crate::handlers::cluster::not_coordinator;
use crate::handlers::partition_exists;

async fn delete_groups(request: DeleteGroupsRequest, served: &Served, access: &Access<'_>) -> DeleteGroupsResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group in request.groups_names {
        if !access.group(op::DELETE, &group.0) {
            results.push(
                DeletableGroupResult::default().with_group_id(group).with_error_code(code::GROUP_AUTHORIZATION_FAILED),
            );
            continue;
        }
        if let Some(code) = not_coordinator(served, 0, &group.0) {
            results.push(DeletableGroupResult::default().with_group_id(group).with_error_code(code));
            continue;
        }
        let mut error = served.coordinator.delete(&group.0).await;
        if error == 0 {
            error = match served.offsets.delete_group(&group.0).await {
                Ok(true) => 0,
                Ok(false) => code::GROUP_ID_NOT_FOUND,
                Err(e) => coordinator_write_code(&e),
            };
        }
        results.push(DeletableGroupResult::default().with_group_id(group).with_error_code(error));
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// Whether the sender may look up the coordinator of `key`: DESCRIBE on the group (key type 0)
/// or the transactional id (1). The error code when it may not.
fn coordinator_denied(access: &Access<'_>, key_type: i8, key: &str) -> Option<i16> {
    match key_type {
        0 if !access.group(op::DESCRIBE, key) => Some(code::GROUP_AUTHORIZATION_FAILED),
        1 if !access.transactional_id(op::DESCRIBE, key) => Some(code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED),
        _ => None,
    }
}

/// Where `key` is coordinated: this broker on one node; in a cluster, the leader of the key's
/// partition of the coordinators' topic.
async fn locate(served: &Served, key_type: i8, key: &str) -> std::result::Result<(i32, String, i32), i16> {
    match &served.cluster {
        None => Ok((served.config.node_id, served.host.clone(), served.port)),
        Some(cluster) => super::cluster::coordinator_of(served, cluster, key_type, key).await,
    }
}

async fn find_coordinator(
    request: FindCoordinatorRequest,
    version: i16,
    served: &Served,
    access: &Access<'_>,
) -> FindCoordinatorResponse {
    if version < 4 {
        let found = match coordinator_denied(access, request.key_type, &request.key) {
            Some(error) => Err(error),
            None => locate(served, request.key_type, &request.key).await,
        };
        return match found {
            Err(error) => FindCoordinatorResponse::default()
                .with_error_code(error)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1),
            Ok((node, host, port)) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_string(host))
                .with_port(port),
        };
    }
    // From v4 a request looks up many keys at once, and the answer is a coordinator per key; the
    // single-key fields are not in the message.
    let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
    for key in request.coordinator_keys {
        let coordinator = kafka_protocol::messages::find_coordinator_response::Coordinator::default();
        let found = match coordinator_denied(access, request.key_type, &key) {
            Some(error) => Err(error),
            None => locate(served, request.key_type, &key).await,
        };
        coordinators.push(match found {
            Err(error) => coordinator
                .with_key(key)
                .with_error_code(error)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1),
            Ok((node, host, port)) => coordinator
                .with_key(key)
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_string(host))
                .with_port(port),
        });
    }
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

async fn join_group(
    request: JoinGroupRequest,
    version: i16,
    client_id: String,
    peer: SocketAddr,
    served: &Served,
    access: &Access<'_>,
) -> JoinGroupResponse {
    if request.group_id.0.is_empty() {
        return JoinGroupResponse::default().with_error_code(code::INVALID_GROUP_ID).with_generation_id(-1);
    }
    if !access.group(op::READ, &request.group_id.0) {
        return JoinGroupResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED).with_generation_id(-1);
    }
    if let Some(code) = not_coordinator(served, 0, &request.group_id.0) {
        return JoinGroupResponse::default().with_error_code(code).with_generation_id(-1);
    }
    let session = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    if !served.config.group_session_timeouts.contains(&session) {
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
pub(crate) fn committed(
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

async fn offset_commit(request: OffsetCommitRequest, served: &Served, access: &Access<'_>) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let instance = request.group_instance_id.as_deref();
    let generation = request.generation_id_or_member_epoch;
    let check = if let Some(code) = not_coordinator(served, 0, &group) {
        code
    } else if access.group(op::READ, &group) {
        served.coordinator.check_commit(&group, generation, &request.member_id, instance, false).await
    } else {
        code::GROUP_AUTHORIZATION_FAILED
    };
    // As Kafka: a partition of a topic the client may not read is refused on its own
    // (TOPIC_AUTHORIZATION_FAILED), as is one that does not exist (UNKNOWN_TOPIC_OR_PARTITION);
    // the others are committed.
    let readable: BTreeSet<String> =
        request.topics.iter().map(|t| t.name.0.to_string()).filter(|t| access.topic(op::READ, t)).collect();
    let exists = |topic: &TopicName, index: i32| {
        readable.contains(topic.0.as_str()) && partition_exists(served, &topic.0, index)
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
    if check != 0 {
        tracing::info!(%group, member = %request.member_id, generation = request.generation_id_or_member_epoch, code = check, "offset commit refused");
    }
    let stored = if check != 0 {
        check
    } else if offsets.is_empty() {
        code::NONE
    } else {
        match served.offsets.commit(&group, &offsets).await {
            Ok(()) => code::NONE,
            Err(e) => coordinator_write_code(&e),
        }
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let code = if check == 0 && !readable.contains(t.name.0.as_str()) {
                        code::TOPIC_AUTHORIZATION_FAILED
                    } else if check == 0 && !exists(&t.name, p.partition_index) {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        stored
                    };
                    kafka_protocol::messages::offset_commit_response::OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                })
                .collect();
            kafka_protocol::messages::offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

async fn offset_fetch(request: OffsetFetchRequest, served: &Served, access: &Access<'_>) -> OffsetFetchResponse {
    use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
    let group = request.group_id.0.to_string();
    if !access.group(op::DESCRIBE, &group) {
        return OffsetFetchResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
    }
    if let Some(code) = not_coordinator(served, 0, &group) {
        return OffsetFetchResponse::default().with_error_code(code);
    }
    let committed = served.offsets.fetch(&group, None);
    // A consumer that requires stable offsets waits while a transaction holds some uncommitted.
    let pending = if request.require_stable { served.offsets.pending_offsets(&group) } else { BTreeSet::new() };
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        Some(topics) => topics.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect(),
        None => {
            // All of the group's: those of topics the client may describe.
            let mut all: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for tp in committed.keys().filter(|tp| access.topic(op::DESCRIBE, &tp.topic)) {
                all.entry(tp.topic.clone()).or_default().push(tp.partition as i32);
            }
            all.into_iter().collect()
        }
    };
    let topics = wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let describable = access.topic(op::DESCRIBE, &topic);
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    if !describable {
                        return OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                            .with_committed_offset(-1);
                    }
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

/// OffsetDelete: a group's committed offsets for some partitions, refused for the topics its
/// members subscribe to (GROUP_SUBSCRIBED_TO_TOPIC), and altogether for a group with members
/// that is not a consumer group (NON_EMPTY_GROUP) or a group that does not exist.
async fn offset_delete(request: OffsetDeleteRequest, served: &Served, access: &Access<'_>) -> OffsetDeleteResponse {
    use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
    let group = request.group_id.0.to_string();
    if !access.group(op::DELETE, &group) {
        return OffsetDeleteResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
    }
    let readable = |topic: &str| access.topic(op::READ, topic);
    let members = served.coordinator.subscriptions(&group).await;
    let known = members.is_some() || served.offsets.groups().contains(&group);
    let refused = match &members {
        _ if !known => Some(code::GROUP_ID_NOT_FOUND),
        Some((false, _)) => Some(code::NON_EMPTY_GROUP),
        _ => None,
    };
    if let Some(error) = refused {
        return OffsetDeleteResponse::default().with_error_code(error);
    }
    let subscribed = members.map(|(_, topics)| topics).unwrap_or_default();
    let deleted: Vec<TopicPartition> = request
        .topics
        .iter()
        .filter(|t| !subscribed.contains(t.name.0.as_str()) && readable(&t.name.0))
        .flat_map(|t| {
            let topic = t.name.0.to_string();
            t.partitions.iter().filter_map(move |p| {
                u32::try_from(p.partition_index).ok().map(|p| TopicPartition::new(topic.clone(), p))
            })
        })
        .collect();
    let stored = match served.offsets.delete_offsets(&group, &deleted).await {
        Ok(()) => code::NONE,
        Err(e) => coordinator_write_code(&e),
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let error = if !readable(&t.name.0) {
                code::TOPIC_AUTHORIZATION_FAILED
            } else if subscribed.contains(t.name.0.as_str()) {
                code::GROUP_SUBSCRIBED_TO_TOPIC
            } else {
                stored
            };
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}

/// OffsetDelete.
pub(crate) fn serve_offset_delete(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = offset_delete(request, r.served, &access).await;
        r.respond(&response)
    })
}

/// ListGroups, with its filters on state (v4+) and type (v5+; every group here is "classic").
async fn list_groups(request: ListGroupsRequest, served: &Served, access: &Access<'_>) -> ListGroupsResponse {
    use kafka_protocol::messages::list_groups_response::ListedGroup;
    let wanted =
        |filter: &[StrBytes], value: &str| filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value));
    let mut groups: BTreeMap<String, (String, String)> =
        served.offsets.groups().into_iter().map(|g| (g, ("consumer".to_string(), "Empty".to_string()))).collect();
    for (group, protocol_type, state) in served.coordinator.list().await {
        groups.insert(group, (protocol_type, state.name().to_string()));
    }
    // Every group to a client that may describe the cluster, else those it may describe.
    let all = access.cluster(op::DESCRIBE);
    let listed = groups
        .into_iter()
        .filter(|(group, _)| all || access.group(op::DESCRIBE, group))
        .filter(|(_, (_, state))| wanted(&request.states_filter, state) && wanted(&request.types_filter, "classic"))
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

async fn describe_groups(
    request: DescribeGroupsRequest,
    served: &Served,
    access: &Access<'_>,
) -> DescribeGroupsResponse {
    use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
    let mut described = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        if !access.group(op::DESCRIBE, &group.0) {
            described.push(
                DescribedGroup::default()
                    .with_group_id(group)
                    .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
                    .with_authorized_operations(authorized::NOT_ASKED),
            );
            continue;
        }
        if let Some(code) = not_coordinator(served, 0, &group.0) {
            described.push(
                DescribedGroup::default()
                    .with_group_id(group)
                    .with_error_code(code)
                    .with_authorized_operations(authorized::NOT_ASKED),
            );
            continue;
        }
        let operations = authorized::when(request.include_authorized_operations, || {
            access.operations(crate::acl::resource::GROUP, &group.0, authorized::GROUP)
        });
        let out = DescribedGroup::default().with_group_id(group.clone()).with_authorized_operations(operations);
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

/// FindCoordinator: this broker coordinates every group and transaction (in a cluster, the
/// leader of the key's partition of `__consumer_offsets` or `__transaction_state`).
pub(crate) fn serve_find_coordinator(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&find_coordinator(request, r.version, r.served, &r.access()).await)
    })
}

/// JoinGroup.
pub(crate) fn serve_join_group(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let client_id = r.header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default();
        r.respond(&join_group(request, r.version, client_id, r.peer, r.served, &r.access()).await)
    })
}

/// SyncGroup.
pub(crate) fn serve_sync_group(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: SyncGroupRequest = r.decode()?;
        if !r.access().group(op::READ, &request.group_id.0) {
            return r.respond(&SyncGroupResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED));
        }
        if let Some(code) = not_coordinator(r.served, 0, &request.group_id.0) {
            return r.respond(&SyncGroupResponse::default().with_error_code(code));
        }
        let assignments = request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
        let sync = r
            .served
            .coordinator
            .sync(
                &request.group_id.0,
                request.generation_id,
                &request.member_id,
                request.group_instance_id.as_deref(),
                assignments,
            )
            .await;
        if sync.error_code == code::NONE {
            store_membership(r.served, &request.group_id.0, Some((request.generation_id, &request.member_id))).await;
        }
        let response = SyncGroupResponse::default()
            .with_error_code(sync.error_code)
            .with_protocol_type(sync.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(sync.protocol_name.map(StrBytes::from_string))
            .with_assignment(sync.assignment);
        r.respond(&response)
    })
}

/// Heartbeat.
pub(crate) fn serve_heartbeat(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: HeartbeatRequest = r.decode()?;
        if !r.access().group(op::READ, &request.group_id.0) {
            return r.respond(&HeartbeatResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED));
        }
        if let Some(code) = not_coordinator(r.served, 0, &request.group_id.0) {
            return r.respond(&HeartbeatResponse::default().with_error_code(code));
        }
        let instance = request.group_instance_id.as_deref();
        let coordinator = &r.served.coordinator;
        let error =
            coordinator.heartbeat(&request.group_id.0, request.generation_id, &request.member_id, instance).await;
        r.respond(&HeartbeatResponse::default().with_error_code(error))
    })
}

/// LeaveGroup.
pub(crate) fn serve_leave_group(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: LeaveGroupRequest = r.decode()?;
        if !r.access().group(op::READ, &request.group_id.0) {
            return r.respond(&LeaveGroupResponse::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED));
        }
        if let Some(code) = not_coordinator(r.served, 0, &request.group_id.0) {
            return r.respond(&LeaveGroupResponse::default().with_error_code(code));
        }
        let group = request.group_id.0.to_string();
        let response = leave_group(request, r.version, r.served).await;
        store_membership(r.served, &group, None).await;
        r.respond(&response)
    })
}

/// Stores a group's membership once a rebalance completed (at the leader's SyncGroup of the
/// generation, `leader_sync`) or its last member left or expired (`None`), as Kafka's
/// coordinator does, so that its next coordinator (another broker, or this one restarted) goes on
/// with it. A store that fails is logged: the members then join again at the next coordinator, as
/// without it.
pub(crate) async fn store_membership(served: &Served, group: &str, leader_sync: Option<(i32, &str)>) {
    let Some(snapshot) = served.coordinator.snapshot(group).await else { return };
    let settled = match leader_sync {
        Some((generation, member)) => snapshot.generation == generation && snapshot.leader.as_deref() == Some(member),
        None => snapshot.members.is_empty(),
    };
    if settled {
        if let Err(error) = served.offsets.store_group(group, &snapshot).await {
            tracing::warn!(group, %error, "the group's membership was not stored");
        }
    }
}

/// OffsetCommit.
pub(crate) fn serve_offset_commit(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = offset_commit(request, r.served, &access).await;
        r.respond(&response)
    })
}

/// OffsetFetch.
pub(crate) fn serve_offset_fetch(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = offset_fetch(request, r.served, &access).await;
        r.respond(&response)
    })
}

/// ListGroups.
pub(crate) fn serve_list_groups(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request: ListGroupsRequest = r.decode()?;
        let access = r.access();
        let response = list_groups(request, r.served, &access).await;
        r.respond(&response)
    })
}

/// DescribeGroups.
pub(crate) fn serve_describe_groups(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = describe_groups(request, r.served, &access).await;
        r.respond(&response)
    })
}

/// DeleteGroups.
pub(crate) fn serve_delete_groups(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = delete_groups(request, r.served, &access).await;
        r.respond(&response)
    })
}
