//! The error form of every response, for a response that cannot be encoded at the version asked
//! for (a handler set a field that version does not have): the client gets the protocol's answer
//! for that request with UNKNOWN_SERVER_ERROR on each of its items, as Kafka answers a request
//! that failed, rather than a closed connection. Only the fields every version has are kept: the
//! items' keys (topic names, partition indexes, group and resource names) and their error codes.
//!
//! Such a response is a bug in Freshet; the test of every version of every API
//! (`tests::versions`) keeps it from happening, and this keeps the connection if it does.

use kafka_protocol::messages::*;

/// A response's error form: its items kept by key, each with `code`, nothing else set.
pub(crate) trait ErrorForm {
    fn error_form(&self, code: i16, version: i16) -> Self;
}

macro_rules! top_level_error {
    ($($t:ty),* $(,)?) => {$(
        impl ErrorForm for $t {
            fn error_form(&self, code: i16, _version: i16) -> Self {
                <$t>::default().with_error_code(code)
            }
        }
    )*};
}

top_level_error!(
    ApiVersionsResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    HeartbeatResponse,
    LeaveGroupResponse,
    ListGroupsResponse,
    DescribeClusterResponse,
    DescribeQuorumResponse,
    ElectLeadersResponse,
    AlterPartitionReassignmentsResponse,
    ListPartitionReassignmentsResponse,
    InitProducerIdResponse,
    AddOffsetsToTxnResponse,
    EndTxnResponse,
    OffsetDeleteResponse,
    DescribeAclsResponse,
);

impl ErrorForm for CreateAclsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use create_acls_response::AclCreationResult;
        let results = self.results.iter().map(|_| AclCreationResult::default().with_error_code(code));
        CreateAclsResponse::default().with_results(results.collect())
    }
}

impl ErrorForm for DeleteAclsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use delete_acls_response::DeleteAclsFilterResult;
        let results = self.filter_results.iter().map(|_| DeleteAclsFilterResult::default().with_error_code(code));
        DeleteAclsResponse::default().with_filter_results(results.collect())
    }
}

impl ErrorForm for FindCoordinatorResponse {
    fn error_form(&self, code: i16, version: i16) -> Self {
        use find_coordinator_response::Coordinator;
        // v4+ answers per key; older versions have the top-level error only.
        if version < 4 {
            return FindCoordinatorResponse::default().with_error_code(code);
        }
        let coordinators =
            self.coordinators.iter().map(|c| Coordinator::default().with_key(c.key.clone()).with_error_code(code));
        FindCoordinatorResponse::default().with_coordinators(coordinators.collect())
    }
}

impl ErrorForm for ProduceResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use produce_response::{PartitionProduceResponse, TopicProduceResponse};
        let topics = self.responses.iter().map(|t| {
            let partitions = t.partition_responses.iter().map(|p| {
                PartitionProduceResponse::default().with_index(p.index).with_error_code(code).with_base_offset(-1)
            });
            TopicProduceResponse::default().with_name(t.name.clone()).with_partition_responses(partitions.collect())
        });
        ProduceResponse::default().with_responses(topics.collect())
    }
}

impl ErrorForm for FetchResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use fetch_response::{FetchableTopicResponse, PartitionData};
        let topics = self.responses.iter().map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| PartitionData::default().with_partition_index(p.partition_index).with_error_code(code));
            FetchableTopicResponse::default().with_topic(t.topic.clone()).with_partitions(partitions.collect())
        });
        // The top-level error is v7+ only: each partition says it.
        FetchResponse::default().with_responses(topics.collect())
    }
}

impl ErrorForm for ListOffsetsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
        let topics = self.topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index).with_error_code(code)
            });
            ListOffsetsTopicResponse::default().with_name(t.name.clone()).with_partitions(partitions.collect())
        });
        ListOffsetsResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for OffsetForLeaderEpochResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
        let topics = self.topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(code)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1)
            });
            OffsetForLeaderTopicResult::default().with_topic(t.topic.clone()).with_partitions(partitions.collect())
        });
        OffsetForLeaderEpochResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for MetadataResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use metadata_response::MetadataResponseTopic;
        let topics = self
            .topics
            .iter()
            .map(|t| MetadataResponseTopic::default().with_name(t.name.clone()).with_error_code(code));
        MetadataResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for CreateTopicsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use create_topics_response::CreatableTopicResult;
        let topics =
            self.topics.iter().map(|t| CreatableTopicResult::default().with_name(t.name.clone()).with_error_code(code));
        CreateTopicsResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for DeleteTopicsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use delete_topics_response::DeletableTopicResult;
        let topics = self
            .responses
            .iter()
            .map(|t| DeletableTopicResult::default().with_name(t.name.clone()).with_error_code(code));
        DeleteTopicsResponse::default().with_responses(topics.collect())
    }
}

impl ErrorForm for OffsetCommitResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
        let topics = self.topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                OffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
            });
            OffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
        });
        OffsetCommitResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for OffsetFetchResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
        let topics = self.topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                OffsetFetchResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_committed_offset(-1)
                    .with_error_code(code)
            });
            OffsetFetchResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
        });
        // The top-level error is v2+; v0-1 clients read the partitions' codes.
        OffsetFetchResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for DescribeGroupsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use describe_groups_response::DescribedGroup;
        let groups = self
            .groups
            .iter()
            .map(|g| DescribedGroup::default().with_group_id(g.group_id.clone()).with_error_code(code));
        DescribeGroupsResponse::default().with_groups(groups.collect())
    }
}

impl ErrorForm for DeleteGroupsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use delete_groups_response::DeletableGroupResult;
        let groups = self
            .results
            .iter()
            .map(|g| DeletableGroupResult::default().with_group_id(g.group_id.clone()).with_error_code(code));
        DeleteGroupsResponse::default().with_results(groups.collect())
    }
}

impl ErrorForm for DescribeConfigsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use describe_configs_response::DescribeConfigsResult;
        let results = self.results.iter().map(|r| {
            DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone())
                .with_error_code(code)
        });
        DescribeConfigsResponse::default().with_results(results.collect())
    }
}

/// AlterConfigs and IncrementalAlterConfigs answer alike: per resource, its type and name.
macro_rules! alter_configs_error_form {
    ($response:ty, $module:ident) => {
        impl ErrorForm for $response {
            fn error_form(&self, code: i16, _version: i16) -> Self {
                use $module::AlterConfigsResourceResponse;
                let results = self.responses.iter().map(|r| {
                    AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone())
                        .with_error_code(code)
                });
                <$response>::default().with_responses(results.collect())
            }
        }
    };
}

alter_configs_error_form!(AlterConfigsResponse, alter_configs_response);
alter_configs_error_form!(IncrementalAlterConfigsResponse, incremental_alter_configs_response);

impl ErrorForm for CreatePartitionsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use create_partitions_response::CreatePartitionsTopicResult;
        let results = self
            .results
            .iter()
            .map(|t| CreatePartitionsTopicResult::default().with_name(t.name.clone()).with_error_code(code));
        CreatePartitionsResponse::default().with_results(results.collect())
    }
}

impl ErrorForm for DeleteRecordsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
        let topics = self.topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1)
                    .with_error_code(code)
            });
            DeleteRecordsTopicResult::default().with_name(t.name.clone()).with_partitions(partitions.collect())
        });
        DeleteRecordsResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for AddPartitionsToTxnResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use add_partitions_to_txn_response::{AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult};
        // Served to v3, whose results are per topic.
        let topics = self.results_by_topic_v3_and_below.iter().map(|t| {
            let partitions = t.results_by_partition.iter().map(|p| {
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_partition_error_code(code)
            });
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(partitions.collect())
        });
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics.collect())
    }
}

impl ErrorForm for TxnOffsetCommitResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
        let topics = self.topics.iter().map(|t| {
            let partitions = t.partitions.iter().map(|p| {
                TxnOffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
            });
            TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()).with_partitions(partitions.collect())
        });
        TxnOffsetCommitResponse::default().with_topics(topics.collect())
    }
}

impl ErrorForm for WriteTxnMarkersResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use write_txn_markers_response::{
            WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
        };
        let markers = self.markers.iter().map(|m| {
            let topics = m.topics.iter().map(|t| {
                let partitions = t.partitions.iter().map(|p| {
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code)
                });
                WritableTxnMarkerTopicResult::default().with_name(t.name.clone()).with_partitions(partitions.collect())
            });
            WritableTxnMarkerResult::default().with_producer_id(m.producer_id).with_topics(topics.collect())
        });
        WriteTxnMarkersResponse::default().with_markers(markers.collect())
    }
}

impl ErrorForm for DescribeLogDirsResponse {
    fn error_form(&self, code: i16, _version: i16) -> Self {
        use describe_log_dirs_response::DescribeLogDirsResult;
        let results = self
            .results
            .iter()
            .map(|d| DescribeLogDirsResult::default().with_log_dir(d.log_dir.clone()).with_error_code(code));
        DescribeLogDirsResponse::default().with_results(results.collect())
    }
}
