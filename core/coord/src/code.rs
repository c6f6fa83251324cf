//! Kafka's error codes: the one table the coordinators and the broker answer with.
//!
//! The numbers are Kafka's (`org.apache.kafka.common.protocol.Errors`); clients act on them, so
//! they never change meaning. Only the codes Freshet answers with are listed.

/// An error the server could not classify.
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
/// No error.
pub const NONE: i16 = 0;
/// The requested offset is outside the partition's range.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// A record batch fails its checks (CRC, layout).
pub const CORRUPT_MESSAGE: i16 = 2;
/// No such topic or partition.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// A batch exceeds the topic's `max.message.bytes`.
pub const MESSAGE_TOO_LARGE: i16 = 10;
/// A topic name Kafka's rules refuse.
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
/// The generation is not the group's current one.
pub const ILLEGAL_GENERATION: i16 = 22;
/// The protocols a member offers share none with the group's.
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
/// The group id is empty.
pub const INVALID_GROUP_ID: i16 = 24;
/// The member is not in the group.
pub const UNKNOWN_MEMBER_ID: i16 = 25;
/// The session timeout is outside what the broker allows.
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
/// The group is rebalancing: rejoin.
pub const REBALANCE_IN_PROGRESS: i16 = 27;
/// The client may not perform the operation on the topic (an ACL).
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
/// The client may not perform the operation on the group (an ACL).
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
/// The client may not perform the operation on the cluster (an ACL).
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
/// The client may not use the transactional id (an ACL).
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
/// Not attempted: another part of the same request failed.
pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
/// The disk under the partition failed (retriable: the partition's leadership moves).
pub const KAFKA_STORAGE_ERROR: i16 = 56;
/// The API version is not supported.
pub const UNSUPPORTED_VERSION: i16 = 35;
/// A topic of that name exists.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
/// A partition count that is not allowed.
pub const INVALID_PARTITIONS: i16 = 37;
/// The request needs security features (an authorizer, SASL) that are not configured.
pub const SECURITY_DISABLED: i16 = 54;
/// A replication factor that is not allowed (more than the brokers there are, say).
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
/// A replica assignment that is not allowed (an unknown broker, a gap in partition indexes).
pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
/// A configuration value that is not allowed.
pub const INVALID_CONFIG: i16 = 40;
/// A request that breaks the protocol's rules.
pub const INVALID_REQUEST: i16 = 42;
/// A producer sequence number with a gap before it.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// A producer sequence number already written.
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
/// A producer epoch older than the current one.
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
/// A transactional request the transaction's state does not allow.
pub const INVALID_TXN_STATE: i16 = 48;
/// A producer id that does not match the transactional id.
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
/// A transaction timeout over the broker's maximum.
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
/// The previous transaction of this producer is still completing: retry.
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
/// The group still has members.
pub const NON_EMPTY_GROUP: i16 = 68;
/// No such group.
pub const GROUP_ID_NOT_FOUND: i16 = 69;
/// A first join without a member id: rejoin with the one given.
pub const MEMBER_ID_REQUIRED: i16 = 79;
/// The group has `group.max.size` members already.
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
/// Another instance with the same `group.instance.id` has taken this static member's place.
pub const FENCED_INSTANCE_ID: i16 = 82;
/// The group's members subscribe to the topic whose offsets were to be deleted.
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
/// A record the broker refuses, such as one without a key on a compacted topic.
pub const INVALID_RECORD: i16 = 87;
/// An offset of an open transaction is pending for the partition.
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
/// A newer producer with the same transactional id has fenced this one.
pub const PRODUCER_FENCED: i16 = 90;
/// No topic has the id given.
pub const UNKNOWN_TOPIC_ID: i16 = 100;
/// The request went to a node that is not the metadata quorum's active controller.
pub const NOT_CONTROLLER: i16 = 41;
/// A broker's heartbeat or request carried an epoch older than its current registration.
pub const STALE_BROKER_EPOCH: i16 = 77;
/// The preferred leader was not in sync or not alive, so it could not be elected.
pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
/// A leader election was asked for a partition already led by its preferred replica.
pub const ELECTION_NOT_NEEDED: i16 = 84;
/// A partition reassignment was asked to be cancelled where none is in progress.
pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
/// Another incarnation of this broker id is registered and its session has not expired.
pub const DUPLICATE_BROKER_REGISTRATION: i16 = 101;
/// The broker id is not registered with the controller.
pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
/// The request named a cluster id other than this cluster's.
pub const INCONSISTENT_CLUSTER_ID: i16 = 104;
/// The request did not complete in time (the metadata quorum could not commit it).
pub const REQUEST_TIMED_OUT: i16 = 7;
/// The partition has no leader right now (its in-sync replicas are all fenced).
pub const LEADER_NOT_AVAILABLE: i16 = 5;
/// This broker does not lead the partition; the client refreshes its metadata.
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// The coordinator's partition has no leader right now.
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// This broker is not the coordinator of the group or transactional id.
pub const NOT_COORDINATOR: i16 = 16;
/// The client's leader epoch is older than the partition's.
pub const FENCED_LEADER_EPOCH: i16 = 74;
/// The client's leader epoch is newer than this broker knows.
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
/// A new leader's high watermark has not yet reached the start of its epoch: the latest offset
/// it would answer may be below one the previous leader gave. Retry shortly.
pub const OFFSET_NOT_AVAILABLE: i16 = 78;
/// No replica is eligible to lead the partition in the election asked for.
pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
/// Fewer replicas are in sync than the topic's `min.insync.replicas`: an `acks=all` write is
/// refused before it is appended.
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
/// The write was appended, but the in-sync replicas fell below `min.insync.replicas` before it
/// was replicated.
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
/// An AlterPartition carried a partition epoch other than the current one.
pub const INVALID_UPDATE_VERSION: i16 = 95;
/// An AlterPartition named a replica that may not join the ISR (fenced, or not a replica).
pub const INELIGIBLE_REPLICA: i16 = 107;
/// The coordinator is loading its state (it just took its partition over): retry shortly.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
