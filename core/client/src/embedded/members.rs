//! The members of the consumer groups whose consumers are in this process: generations, range
//! assignment, partitions handed over only once given up.

use super::*;

/// The live members of consumer groups whose consumers are in this process (an embedded log is
/// used from one process): each subscribe or leave starts a new generation. A member takes its
/// range assignment when it next polls: first it gives up the partitions it loses (reporting
/// them revoked, completing at its following poll), then it takes the new ones once their
/// previous owners have given them up, so a partition never has two owners.
#[derive(Debug)]
pub(super) struct LocalMembers {
    pub(super) groups: Mutex<HashMap<String, LocalGroup>>,
    pub(super) next_member: AtomicU64,
    /// Bumped at every change of membership or ownership, so waiting members look again.
    pub(super) changed: tokio::sync::watch::Sender<u64>,
}

impl Default for LocalMembers {
    fn default() -> Self {
        LocalMembers {
            groups: Mutex::default(),
            next_member: AtomicU64::new(0),
            changed: tokio::sync::watch::Sender::new(0),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct LocalGroup {
    pub(super) generation: u64,
    /// Member id -> its topics and client id.
    pub(super) members: BTreeMap<u64, (Vec<String>, String)>,
    /// Which member holds each partition.
    pub(super) owners: HashMap<TopicPartition, u64>,
}

impl LocalMembers {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalGroup>> {
        self.groups.lock().expect("group members lock")
    }

    pub(super) fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub(super) fn join(&self, group: &str, member: u64, topics: Vec<String>, client_id: String) {
        {
            let mut groups = self.lock();
            let g = groups.entry(group.to_string()).or_default();
            g.members.insert(member, (topics, client_id));
            g.generation += 1;
        }
        self.notify();
    }

    /// Removes `member`, freeing its partitions.
    pub(super) fn leave(&self, group: &str, member: u64) {
        {
            let mut groups = self.lock();
            if let Some(g) = groups.get_mut(group) {
                if g.members.remove(&member).is_some() {
                    g.generation += 1;
                }
                g.owners.retain(|_, m| *m != member);
                if g.members.is_empty() {
                    groups.remove(group);
                }
            }
        }
        self.notify();
    }

    pub(super) fn generation(&self, group: &str) -> u64 {
        self.lock().get(group).map_or(0, |g| g.generation)
    }

    /// The generation and every member's assignment.
    pub(super) fn assignments(&self, group: &str, log: &Log) -> (u64, BTreeMap<u64, Vec<TopicPartition>>) {
        let groups = self.lock();
        let Some(g) = groups.get(group) else { return (0, BTreeMap::new()) };
        let members: Vec<(u64, Vec<String>)> = g.members.iter().map(|(m, (t, _))| (*m, t.clone())).collect();
        (g.generation, range_assign(&members, |t| log.describe_topic(t).ok().map(|d| d.n_partitions)))
    }

    /// Gives up `partitions` held by `member`.
    pub(super) fn release(&self, group: &str, member: u64, partitions: &[TopicPartition]) {
        {
            let mut groups = self.lock();
            if let Some(g) = groups.get_mut(group) {
                for tp in partitions {
                    if g.owners.get(tp) == Some(&member) {
                        g.owners.remove(tp);
                    }
                }
            }
        }
        self.notify();
    }

    /// Takes every one of `partitions` for `member` if none is held by another member and the
    /// group is still at `generation`; takes nothing otherwise.
    pub(super) fn try_take(&self, group: &str, member: u64, generation: u64, partitions: &[TopicPartition]) -> bool {
        let mut groups = self.lock();
        let Some(g) = groups.get_mut(group) else { return false };
        if g.generation != generation || partitions.iter().any(|tp| g.owners.get(tp).is_some_and(|m| *m != member)) {
            return false;
        }
        for tp in partitions {
            g.owners.insert(tp.clone(), member);
        }
        true
    }

    pub(super) fn client_id(&self, group: &str, member: u64) -> String {
        self.lock().get(group).and_then(|g| g.members.get(&member)).map_or_else(String::new, |(_, c)| c.clone())
    }
}
