//! The leader's side of replication in a broker: [`freshet_cluster::replication::Leaderships`]
//! fed by this broker's images and its followers' fetches, its ISR proposals sent to the
//! controller (AlterPartition), and the `acks=all` waits.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use freshet_cluster::controller::IsrChange;
use freshet_cluster::records::BrokerId;
use freshet_cluster::replication::{self, Leaderships, NotReplicated};
use freshet_cluster::MetadataImage;
use freshet_coord::code;
use freshet_log::{AppendInfo, Error, Log};
use tokio::time::Instant;

use super::rpc::{Call, Reply};
use super::ClusterNode;

/// The partitions this broker leads, with their followers' progress.
#[derive(Debug)]
pub(crate) struct Replicas {
    me: BrokerId,
    log: Log,
    node: Weak<ClusterNode>,
    led: Mutex<Leaderships>,
}

impl Replicas {
    pub(crate) fn new(me: BrokerId, log: Log, lag_max: Duration, node: Weak<ClusterNode>) -> Self {
        Replicas { me, log, node, led: Mutex::new(Leaderships::new(me, lag_max)) }
    }

    /// Follows a new image (see [`Leaderships::on_image`]). Leadership counts only in an image
    /// that has this process's registration.
    pub(crate) fn on_image(&self, image: &MetadataImage) {
        let registered = self
            .node
            .upgrade()
            .and_then(|n| *n.epoch.borrow())
            .is_some_and(|epoch| image.brokers.get(&self.me).is_some_and(|b| b.epoch == epoch));
        self.led.lock().expect("replicas lock").on_image(&self.log, image, registered, Instant::now());
    }

    /// A follower's fetch of a partition this broker leads, starting at `fetch_offset` (its log
    /// end): moves the high watermark and proposes the follower into the ISR once it caught up.
    pub(crate) fn on_follower_fetch(self: &Arc<Self>, topic: &str, index: i32, follower: BrokerId, fetch_offset: i64) {
        let Some(node) = self.node.upgrade() else { return };
        let live = node.image().is_live(follower);
        let epoch = *node.epoch.borrow();
        let change = self.led.lock().expect("replicas lock").on_follower_fetch(
            &self.log,
            topic,
            index,
            follower,
            fetch_offset,
            live,
            epoch,
            Instant::now(),
        );
        if let Some(change) = change {
            self.propose(node, topic.to_owned(), change);
        }
    }

    /// Proposes out of the ISR every follower that has not caught up within
    /// `replica.lag.time.max.ms`.
    pub(crate) fn shrink_lagging(self: &Arc<Self>) {
        let Some(node) = self.node.upgrade() else { return };
        let epoch = *node.epoch.borrow();
        let changes = self.led.lock().expect("replicas lock").shrink_lagging(epoch, Instant::now());
        for (topic, change) in changes {
            self.propose(node.clone(), topic, change);
        }
    }

    /// Sends an ISR change to the controller; once it is in this broker's image (or refused),
    /// another may be proposed. An outcome not known is asked again while the change still
    /// waits for one (see [`Leaderships::awaits`]).
    fn propose(self: &Arc<Self>, node: Arc<ClusterNode>, topic: String, change: IsrChange) {
        let this = self.clone();
        tokio::spawn(async move {
            let refused = loop {
                let result =
                    match node.ask_controller(Call::AlterPartition(change.clone()), Duration::from_secs(10)).await {
                        Ok(Reply::Done(result)) => result,
                        Ok(other) => Err(super::unexpected(&other)),
                        Err(e) => Err(e),
                    };
                match result {
                    Ok(()) => break None,
                    Err(e) if replication::decided(e.code) => {
                        tracing::info!(topic, partition = change.partition, error = %e, "the ISR change was refused");
                        break Some(e.code);
                    }
                    Err(e) => {
                        if !this.led.lock().expect("replicas lock").awaits(&topic, &change) {
                            return;
                        }
                        tracing::info!(topic, partition = change.partition, error = %e, "the ISR change's outcome is not known: asking again");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            if refused.is_none() {
                node.wait_image(|i| {
                    i.topic(&topic)
                        .and_then(|t| t.partitions.get(&change.partition))
                        .is_none_or(|p| p.partition_epoch > change.partition_epoch)
                })
                .await
            }
            this.led.lock().expect("replicas lock").proposal_settled(&topic, &change, refused, Instant::now());
        });
    }

    /// The replica metrics under `image` (see [`Leaderships::metrics`]).
    pub(crate) fn metrics(&self, image: &MetadataImage) -> replication::ReplicaMetrics {
        self.led.lock().expect("replicas lock").metrics(&self.log, image)
    }

    /// Whether an `acks=all` write to `topic`-`index` may be appended: refused with
    /// NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`.
    pub(crate) fn check_min_isr(&self, image: &MetadataImage, topic: &str, index: i32) -> Result<(), NotReplicated> {
        replication::check_min_isr(&self.log, image, topic, index)
    }

    /// Waits until every in-sync replica holds the write `appended` (the log's
    /// [`Log::wait_replicated`](freshet_log::Log::wait_replicated): refused once this copy
    /// stops leading in the epoch it was written in), within `timeout`; then refused with
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR it reached is smaller than
    /// `min.insync.replicas`.
    pub(crate) async fn wait_replicated(
        &self,
        node: &ClusterNode,
        topic: &str,
        index: i32,
        appended: &AppendInfo,
        timeout: Duration,
    ) -> Result<(), NotReplicated> {
        let partition = index as u32;
        match self.log.wait_replicated(topic, partition, appended, timeout).await {
            Ok(()) => self.check_min_isr(&node.image(), topic, index).map_err(|(_, why)| {
                (code::NOT_ENOUGH_REPLICAS_AFTER_APPEND, format!("the write was appended, but {why}"))
            }),
            Err(Error::NotLeader { .. } | Error::Closed) => Err((
                code::NOT_LEADER_OR_FOLLOWER,
                format!("broker {} stopped leading {topic}-{index} before the write was replicated", self.me),
            )),
            Err(Error::NotReplicated { .. }) => Err((
                code::REQUEST_TIMED_OUT,
                format!(
                    "the in-sync replicas of {topic}-{index} did not all reach offset {} within {} ms",
                    appended.last_offset,
                    timeout.as_millis()
                ),
            )),
            Err(e) => Err((crate::errors::error_code(&e), e.to_string())),
        }
    }
}

/// Every `replica.lag.time.max.ms / 2`, proposes lagging followers out of the ISR.
pub(super) async fn run_isr_checks(replicas: Arc<Replicas>) {
    let lag_max = replicas.led.lock().expect("replicas lock").lag_max();
    let every = (lag_max / 2).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        replicas.shrink_lagging();
    }
}
