//! The leader's side: what each follower holds, the ISR proposals, and the high watermark.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use freshet_coord::code;
use freshet_log::Log;
use tokio::time::Instant;

use crate::controller::IsrChange;
use crate::records::{BrokerId, TopicId, NO_LEADER};
use crate::MetadataImage;

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

impl Follower {
    fn unheard(caught_up: Instant, now: Instant) -> Self {
        Follower { log_end: -1, caught_up, last_fetch: now, leader_end_at_last_fetch: -1 }
    }
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

/// Why a write was not replicated as `acks=all` asks: Kafka's code and a message.
pub type NotReplicated = (i16, String);

/// The partitions one broker leads, with their followers' progress: the leader's state of
/// Kafka's replication protocol, without the network. The caller feeds it images, followers'
/// fetches and the time; it bounds the log's high watermarks and returns the ISR changes to
/// propose to the controller (AlterPartition), which count only once an image has them.
#[derive(Debug)]
pub struct Leaderships {
    me: BrokerId,
    lag_max: Duration,
    led: BTreeMap<(String, i32), Led>,
    /// ISR changes of partitions this broker led, as its images showed them.
    isr_shrinks: u64,
    isr_expands: u64,
}

/// What a broker reports of its replicas, as Kafka's `ReplicaManager` and controller metrics
/// do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaMetrics {
    /// Copies of partitions this broker holds (`PartitionCount`).
    pub partitions: u64,
    /// Partitions it leads (`LeaderCount`).
    pub leaders: u64,
    /// Partitions it leads whose ISR lacks one of their replicas (`UnderReplicatedPartitions`).
    pub under_replicated: Vec<(String, i32)>,
    /// Partitions it leads whose ISR is smaller than `min.insync.replicas`: `acks=all` writes
    /// are refused (`UnderMinIsrPartitionCount`).
    pub under_min_isr: Vec<(String, i32)>,
    /// Partitions it leads whose ISR is exactly `min.insync.replicas` (`AtMinIsrPartitionCount`).
    pub at_min_isr: u64,
    /// Partitions of the cluster without a leader (`OfflinePartitionsCount`).
    pub offline: u64,
    /// Times the ISR of a partition this broker led shrank (`IsrShrinksPerSec`'s count).
    pub isr_shrinks: u64,
    /// Times it grew (`IsrExpandsPerSec`'s count).
    pub isr_expands: u64,
}

impl Leaderships {
    /// The leaderships of broker `me`, whose followers leave the ISR when they have not caught
    /// up within `lag_max` (`replica.lag.time.max.ms`).
    pub fn new(me: BrokerId, lag_max: Duration) -> Self {
        Leaderships { me, lag_max, led: BTreeMap::new(), isr_shrinks: 0, isr_expands: 0 }
    }

    /// The broker's replica metrics under `image` (the one it last followed).
    pub fn metrics(&self, log: &Log, image: &MetadataImage) -> ReplicaMetrics {
        let mut m =
            ReplicaMetrics { isr_shrinks: self.isr_shrinks, isr_expands: self.isr_expands, ..Default::default() };
        for (topic, index, p) in image.partitions() {
            if p.leader == NO_LEADER {
                m.offline += 1;
            }
            if !p.replicas.contains(&self.me) {
                continue;
            }
            m.partitions += 1;
            if !self.leads(&topic.name, index) {
                continue;
            }
            m.leaders += 1;
            let key = (topic.name.clone(), index);
            if p.isr.len() < p.replicas.len() {
                m.under_replicated.push(key.clone());
            }
            let min = log.partition(&topic.name, index as u32).map_or(1, |q| q.min_insync_replicas());
            match (p.isr.len() as i64).cmp(&min) {
                std::cmp::Ordering::Less => m.under_min_isr.push(key),
                std::cmp::Ordering::Equal => m.at_min_isr += 1,
                std::cmp::Ordering::Greater => {}
            }
        }
        m
    }

    /// `replica.lag.time.max.ms`.
    pub fn lag_max(&self) -> Duration {
        self.lag_max
    }

    /// Whether this broker leads `topic`-`index` (under the image it last followed).
    pub fn leads(&self, topic: &str, index: i32) -> bool {
        self.led.contains_key(&(topic.to_owned(), index))
    }

    /// The replicas `topic`-`index`'s high watermark waits for (the ISR, with a proposed
    /// newcomer), when this broker leads it.
    pub fn maximal_isr(&self, topic: &str, index: i32) -> Option<BTreeSet<BrokerId>> {
        self.led.get(&(topic.to_owned(), index)).map(Led::maximal_isr)
    }

    /// Follows a new image: partitions this broker now leads start their epoch in the log and
    /// forget the followers' progress under the previous leadership; those it no longer leads
    /// are dropped; the ISR and epochs are the image's.
    ///
    /// Every copy's role is set here, from the image alone: a copy whose partition another
    /// broker leads takes only that leader's batches (and shows no more than it has until the
    /// leader's high watermark arrives), a led one takes appends. Leadership counts only when
    /// `registered` (the image has this process's registration): the image a restarted broker
    /// starts from may still name it leader of what others lead now.
    pub fn on_image(&mut self, log: &Log, image: &MetadataImage, registered: bool, now: Instant) {
        let mut still = BTreeSet::new();
        for (topic, index, p) in image.partitions() {
            if !p.replicas.contains(&self.me) {
                continue;
            }
            let Ok(partition) = log.partition(&topic.name, index as u32) else { continue };
            let leads = p.leader == self.me && registered;
            if !leads && !partition.is_follower() {
                // Another broker leads, none does, or this one is named with a registration
                // the controller no longer holds: the copy takes no appends.
                partition.set_follower(true);
                let hw = partition.offsets().1;
                if let Err(error) = log.bound_high_watermark(&topic.name, index as u32, Some(hw), false) {
                    tracing::warn!(topic = %topic.name, partition = index, %error, "high watermark not bounded");
                }
                tracing::info!(topic = %topic.name, partition = index, leader = p.leader, epoch = p.leader_epoch, "following");
            }
            if !leads {
                continue;
            }
            let key = (topic.name.clone(), index);
            still.insert(key.clone());
            let fresh = self.led.get(&key).is_none_or(|l| l.leader_epoch != p.leader_epoch || l.topic_id != topic.id);
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
                let never = now.checked_sub(self.lag_max * 2).unwrap_or(now);
                let followers = p
                    .replicas
                    .iter()
                    .filter(|b| **b != self.me)
                    .map(|b| (*b, Follower::unheard(if p.isr.contains(b) { now } else { never }, now)))
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
                self.led.insert(
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
            let l = self.led.get_mut(&key).expect("inserted");
            if l.partition_epoch != p.partition_epoch {
                match p.isr.len().cmp(&l.isr.len()) {
                    std::cmp::Ordering::Less => self.isr_shrinks += 1,
                    std::cmp::Ordering::Greater => self.isr_expands += 1,
                    std::cmp::Ordering::Equal => {}
                }
                l.partition_epoch = p.partition_epoch;
                l.isr = p.isr.clone();
                l.proposed = None;
                for b in &p.replicas {
                    l.followers.entry(*b).or_insert(Follower::unheard(now, now));
                }
                let me = self.me;
                l.followers.retain(|b, _| p.replicas.contains(b) && *b != me);
                l.replicas = p.replicas.clone();
            }
            update_high_watermark(self.me, log, &key, l);
        }
        self.led.retain(|k, _| still.contains(k));
    }

    /// A follower's fetch of a partition this broker leads, starting at `fetch_offset` (its log
    /// end): moves the high watermark. Returns the ISR change to propose when the follower
    /// caught up and may join (`follower_live`: not fenced in this broker's image; a fenced one
    /// is not proposed, the controller would refuse), with this broker's registration epoch.
    #[allow(clippy::too_many_arguments)] // one fetch's facts, each needed
    pub fn on_follower_fetch(
        &mut self,
        log: &Log,
        topic: &str,
        index: i32,
        follower: BrokerId,
        fetch_offset: i64,
        follower_live: bool,
        broker_epoch: Option<i64>,
        now: Instant,
    ) -> Option<IsrChange> {
        let key = (topic.to_owned(), index);
        let l = self.led.get_mut(&key)?;
        let partition = log.partition(topic, index as u32).ok()?;
        let (_, hw, leader_end) = partition.offsets();
        let f = l.followers.get_mut(&follower)?;
        if fetch_offset >= leader_end {
            f.caught_up = now;
        } else if f.leader_end_at_last_fetch >= 0 && fetch_offset >= f.leader_end_at_last_fetch {
            f.caught_up = f.caught_up.max(f.last_fetch);
        }
        f.log_end = fetch_offset;
        f.last_fetch = now;
        f.leader_end_at_last_fetch = leader_end;
        let joins = !l.isr.contains(&follower)
            && l.proposed.is_none()
            && l.refused_at.is_none_or(|t| now.duration_since(t) >= RETRY_REFUSED)
            && follower_live
            && fetch_offset >= hw
            && fetch_offset >= l.epoch_start;
        let mut change = None;
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
            change = propose(self.me, broker_epoch, index, l, isr);
        }
        update_high_watermark(self.me, log, &key, l);
        change
    }

    /// The ISR changes that take out of the ISR every follower that has not caught up within
    /// `replica.lag.time.max.ms`.
    pub fn shrink_lagging(&mut self, broker_epoch: Option<i64>, now: Instant) -> Vec<(String, IsrChange)> {
        let mut changes = Vec::new();
        for (key, l) in self.led.iter_mut() {
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
                if let Some(change) = propose(self.me, broker_epoch, key.1, l, isr) {
                    changes.push((key.0.clone(), change));
                }
            }
        }
        changes
    }

    /// Whether `change` of `topic` still waits for its outcome: this broker leads the partition
    /// under the partition epoch it was proposed from, and has not learned the outcome. An
    /// outcome not known (no controller answered, or the quorum failed after the proposal may
    /// have been written) is asked again while this holds: the change may have been committed,
    /// and the joining replica must count for the high watermark until the image says.
    pub fn awaits(&self, topic: &str, change: &IsrChange) -> bool {
        self.led.get(&(topic.to_owned(), change.partition)).is_some_and(|l| {
            l.leader_epoch == change.leader_epoch
                && l.partition_epoch == change.partition_epoch
                && l.proposed.as_ref() == Some(&change.new_isr)
        })
    }

    /// A proposed ISR change of `topic` was settled: committed and in the image this broker
    /// follows, or refused by the controller with `refused` (a code for which [`decided`]
    /// holds). Another change may be proposed from then on (after a refusal, not for a while).
    ///
    /// A refusal because the controller's partition is newer than this leader's (another
    /// partition epoch or leader epoch) may follow this very change, committed by an attempt
    /// whose answer was lost: the maximal ISR then holds until the image shows the partition as
    /// the controller has it.
    pub fn proposal_settled(&mut self, topic: &str, change: &IsrChange, refused: Option<i16>, now: Instant) {
        let Some(l) = self.led.get_mut(&(topic.to_owned(), change.partition)) else { return };
        let newer = refused.is_some_and(|code| {
            matches!(
                code,
                code::INVALID_UPDATE_VERSION
                    | code::FENCED_LEADER_EPOCH
                    | code::NOT_LEADER_OR_FOLLOWER
                    | code::UNKNOWN_TOPIC_ID
            )
        });
        if l.partition_epoch == change.partition_epoch && !newer {
            l.proposed = None;
        }
        if refused.is_some() {
            l.refused_at = Some(now);
        }
    }
}

/// Whether an error answering an ISR change is the controller's decision on its image, made
/// without writing anything; otherwise the outcome is not known and the change is asked again.
pub fn decided(code: i16) -> bool {
    matches!(
        code,
        code::UNKNOWN_TOPIC_ID
            | code::NOT_LEADER_OR_FOLLOWER
            | code::FENCED_LEADER_EPOCH
            | code::INVALID_UPDATE_VERSION
            | code::INVALID_REQUEST
            | code::INELIGIBLE_REPLICA
    )
}

fn propose(
    me: BrokerId,
    broker_epoch: Option<i64>,
    partition: i32,
    l: &mut Led,
    new_isr: Vec<BrokerId>,
) -> Option<IsrChange> {
    let broker_epoch = broker_epoch?;
    l.proposed = Some(new_isr.clone());
    Some(IsrChange {
        broker_id: me,
        broker_epoch,
        topic_id: l.topic_id,
        partition,
        leader_epoch: l.leader_epoch,
        partition_epoch: l.partition_epoch,
        new_isr,
    })
}

/// Sets the partition's high watermark bound from the maximal ISR's log ends.
fn update_high_watermark(me: BrokerId, log: &Log, key: &(String, i32), l: &Led) {
    let others: Vec<BrokerId> = l.maximal_isr().into_iter().filter(|b| *b != me).collect();
    let bound = if others.is_empty() {
        None
    } else {
        let ends: Vec<i64> = others.iter().map(|b| l.followers.get(b).map_or(-1, |f| f.log_end)).collect();
        // A member not heard from under this leadership holds the high watermark where it is.
        let current = log.partition(&key.0, key.1 as u32).map(|p| p.offsets().1).unwrap_or(0);
        Some(if ends.contains(&-1) { current } else { ends.into_iter().min().unwrap_or(current) })
    };
    if let Err(error) = log.bound_high_watermark(&key.0, key.1 as u32, bound, false) {
        tracing::warn!(topic = %key.0, partition = key.1, %error, "high watermark not updated");
    }
}

/// Whether an `acks=all` write to `topic`-`index` may be appended: refused with
/// NOT_ENOUGH_REPLICAS when the image's ISR is smaller than `min.insync.replicas`.
pub fn check_min_isr(log: &Log, image: &MetadataImage, topic: &str, index: i32) -> Result<(), NotReplicated> {
    let Some(p) = image.topic(topic).and_then(|t| t.partitions.get(&index)) else { return Ok(()) };
    let min = log.partition(topic, index as u32).map_or(1, |p| p.min_insync_replicas());
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
