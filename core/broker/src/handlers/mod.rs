//! The handlers, one module per family of APIs. Each `serve_*` function decodes its request from
//! a [`Request`](crate::dispatch::Request), runs it against the log and the coordinators, and
//! encodes the response; `dispatch::APIS` names them.

pub(crate) mod acls;
pub(crate) mod cluster;
pub(crate) mod configs;
pub(crate) mod fetch;
pub(crate) mod groups;
pub(crate) mod produce;
pub(crate) mod topics;
pub(crate) mod txn;

/// The operations a resource type supports, as the bit field (bit n: ACL operation n) that
/// Metadata, DescribeCluster and DescribeGroups return when asked: of these, those the
/// authorizer allows the client (`dispatch::Access::operations`); all of them without one, as in
/// Kafka.
pub(crate) mod authorized {
    const READ: i32 = 1 << 3;
    const WRITE: i32 = 1 << 4;
    const CREATE: i32 = 1 << 5;
    const DELETE: i32 = 1 << 6;
    const ALTER: i32 = 1 << 7;
    const DESCRIBE: i32 = 1 << 8;
    const CLUSTER_ACTION: i32 = 1 << 9;
    const DESCRIBE_CONFIGS: i32 = 1 << 10;
    const ALTER_CONFIGS: i32 = 1 << 11;
    const IDEMPOTENT_WRITE: i32 = 1 << 12;

    /// What the protocol returns when the operations were not asked for.
    pub(crate) const NOT_ASKED: i32 = i32::MIN;
    /// On a topic.
    pub(crate) const TOPIC: i32 = READ | WRITE | CREATE | DELETE | ALTER | DESCRIBE | DESCRIBE_CONFIGS | ALTER_CONFIGS;
    /// On a group.
    pub(crate) const GROUP: i32 = READ | DELETE | DESCRIBE | DESCRIBE_CONFIGS | ALTER_CONFIGS;
    /// On the cluster.
    pub(crate) const CLUSTER: i32 =
        CREATE | ALTER | DESCRIBE | CLUSTER_ACTION | DESCRIBE_CONFIGS | ALTER_CONFIGS | IDEMPOTENT_WRITE;

    /// `operations()` when `asked`, else [`NOT_ASKED`].
    pub(crate) fn when(asked: bool, operations: impl FnOnce() -> i32) -> i32 {
        if asked {
            operations()
        } else {
            NOT_ASKED
        }
    }
}

/// Whether `topic` has a partition `index`: in a cluster the image says (the partition may live
/// on other brokers), else the log.
pub(crate) fn partition_exists(served: &crate::dispatch::Served, topic: &str, index: i32) -> bool {
    match &served.cluster {
        Some(cluster) => cluster.image().topic(topic).is_some_and(|t| t.partitions.contains_key(&index)),
        None => u32::try_from(index).is_ok_and(|i| served.log.partition(topic, i).is_ok()),
    }
}
