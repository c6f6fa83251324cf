//! How the workers of a group share connectors and tasks: each member tells the leader what it
//! runs; the leader keeps everything where it runs, gives out what runs nowhere to the least
//! loaded, and moves only what must move, as Kafka Connect's incremental cooperative assignor
//! does:
//!
//! * work that no longer exists, or that two members claim, is revoked (from all but one);
//! * a member holding more than its share (connectors and tasks counted apart) gives the excess
//!   up; what it gives up is handed out in the next round, once it has stopped, so nothing ever
//!   runs twice;
//! * the work of a member that left is held back for `scheduled.rebalance.max.delay.ms`, in case
//!   it comes back (a restart), then handed out; the leader rejoins when that delay ends.
//!
//! Metadata and assignments are JSON, under the protocol name [`PROTOCOL`]: a Kafka Connect
//! worker cannot join a group of Freshet workers by mistake (the coordinator finds no protocol
//! in common), nor the reverse.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The group protocol type Kafka Connect's workers use too.
pub(crate) const PROTOCOL_TYPE: &str = "connect";

/// Freshet's assignment protocol.
pub(crate) const PROTOCOL: &str = "freshet-1";

/// A piece of work: a connector's instance, or one task.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) enum Work {
    /// The connector itself (it makes the task configs).
    Connector(String),
    /// A task.
    Task(String, u32),
}

impl Work {
    fn is_task(&self) -> bool {
        matches!(self, Work::Task(..))
    }
}

/// What a member tells the leader as it joins.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Metadata {
    /// Its REST address (`http://host:port`).
    pub(crate) url: String,
    /// What it runs now.
    pub(crate) running: BTreeSet<Work>,
}

/// What the leader tells a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Assignment {
    /// The leader's member id.
    pub(crate) leader: String,
    /// The leader's REST address.
    pub(crate) leader_url: String,
    /// Everything the member runs from now on.
    pub(crate) work: BTreeSet<Work>,
    /// What it stops; it rejoins once stopped, so the work can go elsewhere.
    pub(crate) revoked: BTreeSet<Work>,
    /// When work of departed members is held back: in how many ms the group should rebalance to
    /// hand it out.
    pub(crate) delay_ms: Option<u64>,
    /// All the work the leader shared out: a member that sees the config topic describe other
    /// work rejoins, so the group shares that out.
    pub(crate) all: BTreeSet<Work>,
}

/// The leader's memory between rounds: who ran what, and the held-back work of departed members.
#[derive(Debug, Default)]
pub(crate) struct Leader {
    previous: BTreeMap<Work, String>,
    held: BTreeMap<Work, u64>,
}

impl Leader {
    /// Every member's assignment. `members` are (member id, metadata); `all` is the work there
    /// is; `now_ms` and `delay_ms` (`scheduled.rebalance.max.delay.ms`) time held-back work.
    pub(crate) fn assign(
        &mut self,
        leader: &str,
        members: &[(String, Metadata)],
        all: &BTreeSet<Work>,
        now_ms: u64,
        delay_ms: u64,
    ) -> BTreeMap<String, Assignment> {
        let present: BTreeSet<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
        let mut owner: BTreeMap<Work, String> = BTreeMap::new();
        let mut keep: BTreeMap<String, BTreeSet<Work>> = BTreeMap::new();
        let mut revoked: BTreeMap<String, BTreeSet<Work>> = BTreeMap::new();
        for (id, metadata) in members {
            keep.entry(id.clone()).or_default();
            for w in &metadata.running {
                if all.contains(w) && !owner.contains_key(w) {
                    owner.insert(w.clone(), id.clone());
                    keep.entry(id.clone()).or_default().insert(w.clone());
                } else {
                    revoked.entry(id.clone()).or_default().insert(w.clone());
                }
            }
        }
        // Work nobody runs: new, given up last round, or left behind by a departed member.
        let mut free = Vec::new();
        self.held.retain(|w, _| all.contains(w) && !owner.contains_key(w));
        for w in all.iter().filter(|w| !owner.contains_key(*w)) {
            let departed =
                self.held.contains_key(w) || self.previous.get(w).is_some_and(|m| !present.contains(m.as_str()));
            if departed && delay_ms > 0 {
                let until = *self.held.entry(w.clone()).or_insert(now_ms + delay_ms);
                if now_ms < until {
                    continue;
                }
            }
            self.held.remove(w);
            free.push(w.clone());
        }
        // A member over its share gives the excess up (connectors and tasks apart).
        for tasks in [false, true] {
            let total = all.iter().filter(|w| w.is_task() == tasks).count();
            let share = total.div_ceil(members.len().max(1));
            for (id, work) in &mut keep {
                let mine: Vec<Work> = work.iter().filter(|w| w.is_task() == tasks).cloned().collect();
                for w in mine.into_iter().skip(share) {
                    work.remove(&w);
                    revoked.entry(id.clone()).or_default().insert(w);
                }
            }
        }
        // What is free goes to whoever has least of its kind.
        for w in free {
            let least = keep
                .iter()
                .min_by_key(|(id, work)| (work.iter().filter(|x| x.is_task() == w.is_task()).count(), (*id).clone()))
                .map(|(id, _)| id.clone());
            if let Some(id) = least {
                keep.entry(id).or_default().insert(w);
            }
        }
        self.previous = keep.iter().flat_map(|(id, work)| work.iter().map(move |w| (w.clone(), id.clone()))).collect();
        let delay = self.held.values().min().map(|until| until.saturating_sub(now_ms));
        let leader_url = members.iter().find(|(id, _)| id == leader).map(|(_, m)| m.url.clone()).unwrap_or_default();
        keep.into_iter()
            .map(|(id, work)| {
                let assignment = Assignment {
                    leader: leader.to_string(),
                    leader_url: leader_url.clone(),
                    work,
                    revoked: revoked.remove(&id).unwrap_or_default(),
                    delay_ms: delay,
                    all: all.clone(),
                };
                (id, assignment)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: &str) -> Work {
        Work::Connector(n.into())
    }

    fn t(n: &str, i: u32) -> Work {
        Work::Task(n.into(), i)
    }

    fn member(id: &str, running: &[Work]) -> (String, Metadata) {
        (id.into(), Metadata { url: format!("http://{id}"), running: running.iter().cloned().collect() })
    }

    fn work(a: &BTreeMap<String, Assignment>, id: &str) -> Vec<Work> {
        a[id].work.iter().cloned().collect()
    }

    #[test]
    fn work_is_shared_and_only_what_must_move_moves() {
        let mut leader = Leader::default();
        let all: BTreeSet<Work> = [c("a"), t("a", 0), t("a", 1), t("a", 2), c("b"), t("b", 0)].into();
        // One worker takes everything.
        let a = leader.assign("w1", &[member("w1", &[])], &all, 0, 1000);
        assert_eq!(a["w1"].work, all);
        // A second joins: the first gives up its excess, keeps the rest; nothing runs twice.
        let running: Vec<Work> = all.iter().cloned().collect();
        let a = leader.assign("w1", &[member("w1", &running), member("w2", &[])], &all, 1, 1000);
        assert_eq!(a["w1"].revoked, [c("b"), t("a", 2), t("b", 0)].into());
        assert!(a["w2"].work.is_empty(), "revoked work moves next round");
        // Once the first has stopped it and rejoined, the second takes it.
        let a = leader.assign("w1", &[member("w1", &work(&a, "w1")), member("w2", &[])], &all, 2, 1000);
        assert_eq!(work(&a, "w1"), [c("a"), t("a", 0), t("a", 1)]);
        assert_eq!(work(&a, "w2"), [c("b"), t("a", 2), t("b", 0)]);
        assert!(a.values().all(|x| x.revoked.is_empty() && x.delay_ms.is_none()));
        // The second leaves: its work is held for the delay, then handed out.
        let w1 = work(&a, "w1");
        let a = leader.assign("w1", &[member("w1", &w1)], &all, 10, 1000);
        assert_eq!(work(&a, "w1"), w1);
        assert_eq!(a["w1"].delay_ms, Some(1000));
        let a = leader.assign("w1", &[member("w1", &w1)], &all, 500, 1000);
        assert_eq!(a["w1"].delay_ms, Some(510));
        let a = leader.assign("w1", &[member("w1", &w1)], &all, 1010, 1000);
        assert_eq!(a["w1"].work, all);
        assert_eq!(a["w1"].delay_ms, None);
    }

    #[test]
    fn deleted_and_doubly_claimed_work_is_revoked() {
        let mut leader = Leader::default();
        let all: BTreeSet<Work> = [c("a"), t("a", 0)].into();
        let a =
            leader.assign("w1", &[member("w1", &[c("a"), c("gone")]), member("w2", &[c("a"), t("a", 0)])], &all, 0, 0);
        assert_eq!(a["w1"].revoked, [c("gone")].into());
        assert_eq!(a["w2"].revoked, [c("a")].into());
        assert_eq!(work(&a, "w1"), [c("a")]);
        assert_eq!(work(&a, "w2"), [t("a", 0)]);
        // Without a delay, a departed member's work is handed out at once.
        let a = leader.assign("w1", &[member("w1", &[c("a")])], &all, 1, 0);
        assert_eq!(a["w1"].work, all);
    }
}
