//! The broker's metrics, in Prometheus' text exposition format: its replicas' health as Kafka's
//! `ReplicaManager` and controller report it (partitions, leaders, under-replicated and
//! under-min-ISR partitions, ISR shrinks and expansions, offline partitions on the active
//! controller), and the log's appends. `freshet broker --metrics-listen` serves them over HTTP.

use std::fmt::Write;

use freshet_cluster::replication::ReplicaMetrics;
use freshet_log::Log;

use crate::cluster::ClusterNode;

/// A broker's metrics, rendered afresh on each [`Metrics::render`]; cheap to clone, so an HTTP
/// endpoint can hold one.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub(crate) log: Log,
    pub(crate) cluster: Option<std::sync::Arc<ClusterNode>>,
}

impl Metrics {
    /// The metrics now, in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        render(&self.log, self.cluster.as_deref())
    }
}

/// Renders the metrics of a broker serving `log` (in `cluster`, when it is a node of one).
fn render(log: &Log, cluster: Option<&ClusterNode>) -> String {
    let (replicas, active_controller) = match cluster {
        Some(node) => (node.replica_metrics(), node.is_active_controller()),
        None => {
            // One broker: it leads every partition, and all its replicas are in sync.
            let partitions: u64 = log.list_topics().iter().map(|t| u64::from(t.n_partitions)).sum();
            (ReplicaMetrics { partitions, leaders: partitions, ..Default::default() }, true)
        }
    };
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP freshet_{name} {help}\n# TYPE freshet_{name} {kind}\nfreshet_{name} {value}");
    };
    metric("partitions", "gauge", "Copies of partitions this broker holds.", replicas.partitions);
    metric("leader_partitions", "gauge", "Partitions this broker leads.", replicas.leaders);
    metric(
        "under_replicated_partitions",
        "gauge",
        "Partitions this broker leads whose ISR lacks one of their replicas.",
        replicas.under_replicated.len() as u64,
    );
    metric(
        "under_min_isr_partitions",
        "gauge",
        "Partitions this broker leads whose ISR is smaller than min.insync.replicas (acks=all writes are refused).",
        replicas.under_min_isr.len() as u64,
    );
    metric(
        "at_min_isr_partitions",
        "gauge",
        "Partitions this broker leads whose ISR is exactly min.insync.replicas.",
        replicas.at_min_isr,
    );
    metric("isr_shrinks_total", "counter", "ISR shrinks of partitions this broker led.", replicas.isr_shrinks);
    metric("isr_expands_total", "counter", "ISR expansions of partitions this broker led.", replicas.isr_expands);
    metric("active_controller", "gauge", "1 on the active controller.", u64::from(active_controller));
    metric(
        "offline_partitions",
        "gauge",
        "Partitions without a leader (reported by the active controller).",
        if active_controller { replicas.offline } else { 0 },
    );
    let stats = log.stats();
    metric("log_batches_appended_total", "counter", "Record batches appended to the log.", stats.batches_appended);
    metric("log_bytes_appended_total", "counter", "Bytes appended to the log.", stats.bytes_appended);
    metric("log_fsyncs_total", "counter", "Partition syncs of the log.", stats.fsyncs);
    for (name, help, partitions) in [
        (
            "partition_under_replicated",
            "1 for each partition this broker leads that is under-replicated.",
            &replicas.under_replicated,
        ),
        (
            "partition_under_min_isr",
            "1 for each partition this broker leads whose ISR is under min.insync.replicas.",
            &replicas.under_min_isr,
        ),
    ] {
        let _ = writeln!(out, "# HELP freshet_{name} {help}\n# TYPE freshet_{name} gauge");
        for (topic, partition) in partitions {
            let topic = topic.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "freshet_{name}{{topic=\"{topic}\",partition=\"{partition}\"}} 1");
        }
    }
    out
}
