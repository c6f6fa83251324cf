//! The leader's side of replication: what each follower holds, the ISR, and the high watermark.
//!
//! Followers replicate by fetching (see [`super::fetcher`]); the offset a follower's fetch
//! starts at is its log end, so every fetch tells the leader how far that follower is. From it
//! the leader keeps, for each partition it leads:
//!
//! - the **high watermark**: the lowest log end among the in-sync replicas (the leader's own
//!   counts as far as its durability allows), never lowered. While an ISR expansion waits for the
//!   controller, the joining replica already counts, as Kafka's "maximal ISR" has it: once the
//!   controller commits it, it may be elected, and must hold all that was exposed;
//! - the **ISR**: a follower that has not caught up with the leader's log end within
//!   `replica.lag.time.max.ms` is proposed out, one that reached the high watermark (and the
//!   start of the leader's epoch) is proposed in. Proposals go to the controller
//!   (AlterPartition) and count only once committed: the image is the ISR.
//!
//! `acks=all` writes wait here until the high watermark passes them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use freshet_cluster::controller::IsrChange;
use freshet_cluster::records::{BrokerId, TopicId, NO_LEADER};
use freshet_cluster::MetadataImage;
use freshet_coord::code;
use freshet_log::Log;

use super::rpc::{Call, Reply};
use super::ClusterNode;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct Follower {
    /// Its log end, from its latest fetch; -1 until it fetches under this leadership.
    log_end: i64,
    /// When it last held everything the leader had.
    caught_up: Instant,
    /// When it last fetched, and the leader's log end then: a fetch reaching that log end
    /// means the follower was caught up at that time.
    last_fetch: Instant,
    leader_end_at_last_fetch: i64,
}

/// A partition this broker leads.
#[derive(Debug)]
struct Led {
    topic_id: TopicId,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<BrokerId>,
    isr: Vec<BrokerId>,
    /// Where this leader's epoch began in its log: a follower joins the ISR only past it.
    epoch_start: i64,
    followers: BTreeMap<BrokerId, Follower>,
    /// The ISR proposed to the controller and not yet in the image.
    proposed: Option<Vec<BrokerId>>,
    /// When the controller last refused a proposal: none is made again for a while (the image
    /// it refused from may be behind, or the follower fenced).
    refused_at: Option<Instant>,
}

/// How long after a refused ISR change the leader waits before proposing again.
const RETRY_REFUSED: Duration = Duration::from_secs(1);

impl Led {
    /// The replicas the high watermark waits for: the ISR, with a proposed expansion's newcomer.
    fn maximal_isr(&self) -> BTreeSet<BrokerId> {
        let mut isr: BTreeSet<BrokerId> = self.isr.iter().copied().collect();
        if let Some(proposed) = &self.proposed {
            isr.extend(proposed.iter().copied());
        }
        isr
    }
}

/// The partitions this broker leads, with their followers' progress.
#[derive(Debug)]
pub(crate) struct Replicas {
    me: BrokerId,
    log: Log,
    lag_max: Duration,
    node: Weak<ClusterNode>,
    led: Mutex<BTreeMap<(String, i32), Led>>,
}

/// Why a write was not replicated as `acks=all` asks: Kafka's code and a message.
pub(crate) type NotReplicated = (i16, String);

impl Replicas {
    pub(crate) fn new(me: BrokerId, log: Log, lag_max: Duration, node: Weak<ClusterNode>) -> Self {
        Replicas { me, log, lag_max, node, led: Mutex::new(BTreeMap::new()) }
    }

    /// Follows a new image: partitions this broker now leads start their epoch in the log and
    /// forget the followers' progress under the previous leadership; those it no longer leads
    /// are dropped; the ISR and epochs are the image's.
    ///
    /// Every copy's role is set here, from the image alone: a copy whose partition another
    /// broker leads takes only that leader's batches (and shows no more than it has until the
    /// leader's high watermark arrives), a led one takes appends. Leadership counts only in an
    /// image that has this process's registration: the image a restarted broker starts from
    /// may still name it leader of what others lead now.
    pub(crate) fn on_image(&self, image: &MetadataImage) {
        let now = Instant::now();
        let registered = self
            .node
            .upgrade()
            .and_then(|n| *n.epoch.borrow())
            .is_some_and(|epoch| image.brokers.get(&self.me).is_some_and(|b| b.epoch == epoch));
        let mut led = self.led.lock().expect("replicas lock");
        let mut still = BTreeSet::new();
        for (topic, index, p) in image.partitions() {
            if !p.replicas.contains(&self.me) {
                continue;
            }
            let Ok(partition) = self.log.partition(&topic.name, index as u32) else { continue };
            if p.leader != self.me && p.leader != NO_LEADER && !partition.is_follower() {
                partition.set_follower(true);
                let hw = partition.offsets().1;
                if let Err(error) = self.log.bound_high_watermark(&topic.name, index as u32, Some(hw), false) {
                    tracing::warn!(topic = %topic.name, partition = index, %error, "high watermark not bounded");
                }
                tracing::info!(topic = %topic.name, partition = index, leader = p.leader, epoch = p.leader_epoch, "following");
            }
            if p.leader != self.me || !registered {
                continue;
            }
            let key = (topic.name.clone(), index);
            still.insert(key.clone());
            let fresh = led.get(&key).is_none_or(|l| l.leader_epoch != p.leader_epoch || l.topic_id != topic.id);
            if fresh {
                // From here on the copy takes appends, not its old leader's batches.
                partition.set_follower(false);
                if p.leader_epoch > partition.latest_epoch() {
                    if let Err(error) = partition.bump_leader_epoch(p.leader_epoch) {
                        tracing::warn!(topic = %topic.name, partition = index, %error, "leader epoch not recorded");
                    }
                }
                let epoch_start = partition.offsets().2;
                // As Kafka: the ISR's followers get the benefit of the doubt from now on, the
                // others have never caught up.
                let followers = p
                    .replicas
                    .iter()
                    .filter(|b| **b != self.me)
                    .map(|b| {
                        let caught_up =
                            if p.isr.contains(b) { now } else { now.checked_sub(self.lag_max * 2).unwrap_or(now) };
                        (*b, Follower { log_end: -1, caught_up, last_fetch: now, leader_end_at_last_fetch: -1 })
                    })
                    .collect();
                if p.leader_recovering {
                    let (_, hw, end) = partition.offsets();
                    tracing::error!(
                        topic = %topic.name,
                        partition = index,
                        epoch = p.leader_epoch,
                        log_end = end,
                        high_watermark = hw,
                        "unclean leader election: this broker leads from outside the ISR; acknowledged records the old in-sync replicas held past this copy's log end are lost, and their copies are cut back to this one"
                    );
                }
                tracing::info!(topic = %topic.name, partition = index, epoch = p.leader_epoch, isr = ?p.isr, "leading");
                led.insert(
                    key.clone(),
                    Led {
                        topic_id: topic.id,
                        leader_epoch: p.leader_epoch,
                        partition_epoch: p.partition_epoch,
                        replicas: p.replicas.clone(),
                        isr: p.isr.clone(),
                        epoch_start,
                        followers,
                        proposed: None,
                        refused_at: None,
                    },
                );
            }
            let l = led.get_mut(&key).expect("inserted");
            if l.partition_epoch != p.partition_epoch {
                l.partition_epoch = p.partition_epoch;
                l.isr = p.isr.clone();
                l.proposed = None;
                for b in &p.replicas {
                    l.followers.entry(*b).or_insert(Follower {
                        log_end: -1,
                        caught_up: now,
                        last_fetch: now,
                        leader_end_at_last_fetch: -1,
                    });
                }
                l.followers.retain(|b, _| p.replicas.contains(b) && *b != self.me);
                l.replicas = p.replicas.clone();
            }
            self.update_high_watermark(&key, l);
        }
        led.retain(|k, _| still.contains(k));
    }

    /// A follower's fetch of a partition this broker leads, starting at `fetch_offset` (its log
    /// end): moves the high watermark and proposes the follower into the ISR once it caught up.
    pub(crate) fn on_follower_fetch(self: &Arc<Self>, topic: &str, index: i32, follower: BrokerId, fetch_offset: i64) {
        let now = Instant::now();
        let key = (topic.to_owned(), index);
        let mut led = self.led.lock().expect("replicas lock");
        let Some(l) = led.get_mut(&key) else { return };
        let Ok(partition) = self.log.partition(topic, index as u32) else { return };
        let (_, hw, leader_end) = partition.offsets();
        let Some(f) = l.followers.get_mut(&follower) else { return };
        if fetch_offset >= leader_end {
            f.caught_up = now;
        } else if f.leader_end_at_last_fetch >= 0 && fetch_offset >= f.leader_end_at_last_fetch {
            f.caught_up = f.caught_up.max(f.last_fetch);
        }
        f.log_end = fetch_offset;
        f.last_fetch = now;
        f.leader_end_at_last_fetch = leader_end;
        // As Kafka's leaders: a fenced follower is not proposed (the controller would refuse).
        let live = self.node.upgrade().is_some_and(|n| n.image().is_live(follower));
        let joins = !l.isr.contains(&follower)
            && l.proposed.is_none()
            && l.refused_at.is_none_or(|t| now.duration_since(t) >= RETRY_REFUSED)
            && live
            && fetch_offset >= hw
            && fetch_offset >= l.epoch_start;
        if joins {
            let mut isr = l.isr.clone();
            isr.push(follower);
            tracing::info!(
                topic,
                partition = index,
                follower,
                fetch_offset,
                hw,
                "a follower caught up: proposing it into the ISR"
            );
            self.propose(&key, l, isr);
        }
        self.update_high_watermark(&key, l);
    }

    /// Proposes out of the ISR every follower that has not caught up within
    /// `replica.lag.time.max.ms`.
    pub(crate) fn shrink_lagging(self: &Arc<Self>) {
        let now = Instant::now();
        let mut led = self.led.lock().expect("replicas lock");
        for (key, l) in led.iter_mut() {
            if l.proposed.is_some() || l.refused_at.is_some_and(|t| now.duration_since(t) < RETRY_REFUSED) {
                continue;
            }
            let lagging: Vec<BrokerId> = l
                .isr
                .iter()
                .copied()
                .filter(|b| *b != self.me)
                .filter(|b| l.followers.get(b).is_none_or(|f| now.duration_since(f.caught_up) > self.lag_max))
                .collect();
            if !lagging.is_empty() {
                let isr: Vec<BrokerId> = l.isr.iter().copied().filter(|b| !lagging.contains(b)).collect();
                tracing::warn!(topic = %key.0, partition = key.1, ?lagging, lag_max_ms = self.lag_max.as_millis() as u64, "followers fell behind: proposing them out of the ISR");
                self.propose(key, l, isr);
            }
        }
    }

    fn propose(self: &Arc<Self>, key: &(String, i32), l: &mut Led, new_isr: Vec<BrokerId>) {
        let Some(node) = self.node.upgrade() else { return };
        let Some(broker_epoch) = *node.epoch.borrow() else { return };
        l.proposed = Some(new_isr.clone());
        let change = IsrChange {
            broker_id: self.me,
            broker_epoch,
            topic_id: l.topic_id,
            partition: key.1,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        };
        let (this, key) = (self.clone(), key.clone());
        tokio::spawn(async move {
            let result = match node.ask_controller(Call::AlterPartition(change.clone()), Duration::from_secs(10)).await
            {
                Ok(Reply::Done(result)) => result,
                Ok(other) => Err(super::unexpected(&other)),
                Err(e) => Err(e),
            };
            let refused = result.is_err();
            match result {
                Ok(()) => {
                    node.wait_image(|i| {
                        i.topic(&key.0)
                            .and_then(|t| t.partitions.get(&key.1))
                            .is_none_or(|p| p.partition_epoch > change.partition_epoch)
                    })
                    .await
                }
                Err(e) => tracing::info!(topic = %key.0, partition = key.1, error = %e, "the ISR change was refused"),
            }
            // Whatever happened, the image now says what the ISR is; a refused proposal may be
            // made again from it.
            let mut led = this.led.lock().expect("replicas lock");
            if let Some(l) = led.get_mut(&key) {
                if l.partition_epoch == change.partition_epoch {
                    l.proposed = None;
                }
                if refused {
                    l.refused_at = Some(Instant::now());
                }
            }
        });
    }

    /// Sets the partition's high watermark bound from the maximal ISR's log ends.
    fn update_high_watermark(&self, key: &(String, i32), l: &Led) {
        let others: Vec<BrokerId> = l.maximal_isr().into_iter().filter(|b| *b != self.me).collect();
        let bound = if others.is_empty() {
            None
        } else {
            let ends: Vec<i64> = others.iter().map(|b| l.followers.get(b).map_or(-1, |f| f.log_end)).collect();
            // A member not heard from under this leadership holds the high watermark where it is.
            let current = self.log.partition(&key.0, key.1 as u32).map(|p| p.offsets().1).unwrap_or(0);
            Some(if ends.contains(&-1) { current } else { ends.into_iter().min().unwrap_or(current) })
        };
        if let Err(error) = self.log.bound_high_watermark(&key.0, key.1 as u32, bound, false) {
            tracing::warn!(topic = %key.0, partition = key.1, %error, "high watermark not updated");
        }
    }

    /// Whether an `acks=all` write to `topic`-`index` may be appended: refused with
    /// NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`.
    pub(crate) fn check_min_isr(&self, image: &MetadataImage, topic: &str, index: i32) -> Result<(), NotReplicated> {
        let Some(p) = image.topic(topic).and_then(|t| t.partitions.get(&index)) else { return Ok(()) };
        let min = self.min_isr(topic, index);
        if (p.isr.len() as i64) < min {
            return Err((
                code::NOT_ENOUGH_REPLICAS,
                format!(
                    "{topic}-{index} has {} in-sync replicas {:?}, fewer than min.insync.replicas={min}",
                    p.isr.len(),
                    p.isr
                ),
            ));
        }
        Ok(())
    }

    fn min_isr(&self, topic: &str, index: i32) -> i64 {
        self.log.partition(topic, index as u32).map_or(1, |p| p.min_insync_replicas())
    }

    /// Waits until every in-sync replica holds offsets up to `last_offset` (the high watermark
    /// passed it), within `timeout`. Refused when this broker stops leading the partition
    /// meanwhile, and with NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR it reached is smaller
    /// than `min.insync.replicas`.
    pub(crate) async fn wait_replicated(
        &self,
        node: &ClusterNode,
        topic: &str,
        index: i32,
        last_offset: i64,
        timeout: Duration,
    ) -> Result<(), NotReplicated> {
        let partition =
            self.log.partition(topic, index as u32).map_err(|e| (code::UNKNOWN_TOPIC_OR_PARTITION, e.to_string()))?;
        let mut hw = partition.watch_high_watermark();
        let mut images = node.images();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *hw.borrow_and_update() > last_offset {
                return self.check_min_isr(&node.image(), topic, index).map_err(|(_, why)| {
                    (code::NOT_ENOUGH_REPLICAS_AFTER_APPEND, format!("the write was appended, but {why}"))
                });
            }
            {
                let image = images.borrow_and_update();
                let leader = image.topic(topic).and_then(|t| t.partitions.get(&index)).map_or(NO_LEADER, |p| p.leader);
                if leader != self.me {
                    return Err((
                        code::NOT_LEADER_OR_FOLLOWER,
                        format!("broker {} stopped leading {topic}-{index} before the write was replicated", self.me),
                    ));
                }
            }
            tokio::select! {
                changed = hw.changed() => if changed.is_err() {
                    return Err((code::NOT_LEADER_OR_FOLLOWER, format!("{topic}-{index} was closed")));
                },
                _ = images.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err((
                        code::REQUEST_TIMED_OUT,
                        format!("the in-sync replicas of {topic}-{index} did not all reach offset {last_offset} within {} ms", timeout.as_millis()),
                    ));
                }
            }
        }
    }
}

/// Every `replica.lag.time.max.ms / 2`, proposes lagging followers out of the ISR.
pub(super) async fn run_isr_checks(replicas: Arc<Replicas>) {
    let every = (replicas.lag_max / 2).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        replicas.shrink_lagging();
    }
}
