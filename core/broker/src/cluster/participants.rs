//! The partitions a transaction coordinator of a cluster reaches: a partition exists when the
//! image has it, and its marker is written by its leader, here when this broker leads it, else
//! with a WriteTxnMarkers request to the leader, as Kafka's coordinator sends them.

use std::collections::BTreeMap;
use std::sync::Arc;

use freshet_cluster::records::NO_LEADER;
use freshet_coord::code;
use freshet_coord::transactions::{LocalParticipants, Participants, TRANSACTION_STATE_TOPIC};
use freshet_log::{Error, Result};
use futures::future::BoxFuture;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;

use super::link::Links;
use super::ClusterNode;

/// The participants of a cluster's transactions.
#[derive(Debug)]
pub(crate) struct ClusterParticipants {
    node: Arc<ClusterNode>,
    local: LocalParticipants,
    links: Links,
}

impl ClusterParticipants {
    pub(crate) fn new(node: Arc<ClusterNode>, local: LocalParticipants) -> Self {
        let links = Links::new(node.config.node_id, node.config.session_timeout);
        ClusterParticipants { node, local, links }
    }

    /// Writes the markers of `partitions`, all led by `leader`.
    async fn write_on(
        &self,
        leader: i32,
        marker: &WritableTxnMarker,
        partitions: &[(String, u32)],
    ) -> std::result::Result<(), String> {
        let commit = marker.transaction_result;
        let (pid, epoch) = (marker.producer_id.0, marker.producer_epoch);
        if leader == self.node.config.node_id {
            let written = self.local.write_all(pid, epoch, marker.coordinator_epoch, commit, partitions);
            return written.await.map_err(|e| e.to_string());
        }
        let image = self.node.image();
        let broker = image.brokers.get(&leader).ok_or_else(|| format!("broker {leader} is not registered"))?;
        let (host, port) = crate::handlers::cluster::endpoint(&self.node, broker)
            .ok_or_else(|| format!("broker {leader} has no listener"))?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            by_topic.entry(topic).or_default().push(*partition as i32);
        }
        let topics = by_topic
            .into_iter()
            .map(|(name, partitions)| {
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_owned())))
                    .with_partition_indexes(partitions)
            })
            .collect();
        let request = WriteTxnMarkersRequest::default().with_markers(vec![marker.clone().with_topics(topics)]);
        let response = self.links.send(leader, (host.to_owned(), port as u16), 1, &request).await?;
        let failed: Vec<String> = response
            .markers
            .iter()
            .flat_map(|m| &m.topics)
            .flat_map(|t| t.partitions.iter().map(move |p| (t, p)))
            .filter(|(_, p)| p.error_code != code::NONE && p.error_code != code::UNKNOWN_TOPIC_OR_PARTITION)
            .map(|(t, p)| format!("{}-{}: error {}", t.name.0, p.partition_index, p.error_code))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!("broker {leader} refused markers: {}", failed.join(", ")))
        }
    }
}

impl Participants for ClusterParticipants {
    fn exists(&self, topic: &str, partition: u32) -> bool {
        let partition = i32::try_from(partition).unwrap_or(-1);
        self.node.image().topic(topic).is_some_and(|t| t.partitions.contains_key(&partition))
    }

    fn write_markers<'a>(
        &'a self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        partitions: &'a [(String, u32)],
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let image = self.node.image();
            // The coordinator's epoch: the leader epoch of its partition, which a leader of a
            // partition may use to refuse an older coordinator's markers.
            let coordinator_epoch =
                image.topic(TRANSACTION_STATE_TOPIC).and_then(|t| t.partitions.get(&0)).map_or(0, |p| p.leader_epoch);
            let marker = WritableTxnMarker::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_transaction_result(commit)
                .with_coordinator_epoch(coordinator_epoch);
            let mut by_leader: BTreeMap<i32, Vec<(String, u32)>> = BTreeMap::new();
            let mut failed = Vec::new();
            for (topic, partition) in partitions {
                // A partition deleted since holds nothing to mark.
                let Some(p) = image.topic(topic).and_then(|t| t.partitions.get(&(*partition as i32))) else {
                    continue;
                };
                if p.leader == NO_LEADER {
                    failed.push(format!("{topic}-{partition} has no leader"));
                } else {
                    by_leader.entry(p.leader).or_default().push((topic.clone(), *partition));
                }
            }
            let writes = by_leader.iter().map(|(leader, partitions)| self.write_on(*leader, &marker, partitions));
            failed.extend(futures::future::join_all(writes).await.into_iter().filter_map(|r| r.err()));
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Error::Remote(failed.join("; ")))
            }
        })
    }
}
