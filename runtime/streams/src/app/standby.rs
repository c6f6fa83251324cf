//! Standby copies of other instances' tasks: placed from the group's description, brought to
//! the changelogs' end at every commit.

use super::*;

impl StreamThread {
    /// Places the standby copies from the group's description (members in member-id order): the
    /// first replica of a stateful task goes to the member the range assignor would give the
    /// task if its instance left; further replicas to the next members, after the one running
    /// it, of instances holding no copy yet (a copy on the same instance would not survive its
    /// loss).
    /// While the group is not settled, the placement waits for the next commit.
    pub(super) fn place_standbys(&mut self) {
        if self.standbys_placed {
            return;
        }
        if !self.config.backend.persistent() || self.config.num_standby_replicas == 0 {
            self.standbys.clear();
            self.standbys_placed = true;
            return;
        }
        let described = match block_on(&self.runtime, self.substrate.admin.group_members(self.app())) {
            Ok(Some(d)) if d.state == "Stable" => d,
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(member = %self.client_id, %error, "cannot describe the group to place standbys");
                return;
            }
        };
        let mut members = described.members;
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let instance =
            |client_id: &str| client_id.rsplit_once("-StreamThread-").map_or(client_id, |(i, _)| i).to_string();
        // Where the range assignor would deal each partition if one instance's members left:
        // the first replica goes there, so a task that moves when its instance dies lands where
        // its warm copy is.
        let topics: Vec<String> = self.sources.keys().cloned().collect();
        let sources = self.sources.clone();
        let mut if_gone: HashMap<String, BTreeMap<String, Vec<TopicPartition>>> = HashMap::new();
        let mut mine = Vec::new();
        for &task in self.all_tasks.iter() {
            let (sub, partition, _) = task;
            if self.topology.stores_of(sub).is_empty() {
                continue;
            }
            let Some(topic) = self.sources.iter().find(|(_, s)| s.0 == sub).map(|(t, _)| t) else { continue };
            let tp = TopicPartition::new(topic.clone(), partition);
            let Some(active) = members.iter().position(|m| m.assignment.contains(&tp)) else {
                // Not settled yet: some task has no member.
                return;
            };
            let gone = instance(&members[active].client_id);
            let survivors = if_gone.entry(gone.clone()).or_insert_with(|| {
                let left: Vec<(String, Vec<String>)> = members
                    .iter()
                    .filter(|m| instance(&m.client_id) != gone)
                    .map(|m| (m.member_id.clone(), topics.clone()))
                    .collect();
                freshet_core::range_assign(&left, |t| sources.get(t).map(|s| s.1))
            });
            let heir = survivors.iter().find(|(_, a)| a.contains(&tp)).map(|(m, _)| m.clone());
            let mut used = vec![gone];
            if let Some(heir) = heir.and_then(|h| members.iter().find(|m| m.member_id == h)) {
                used.push(instance(&heir.client_id));
                if heir.client_id == self.client_id {
                    mine.push(task);
                }
            }
            for r in used.len()..=self.config.num_standby_replicas {
                let host = (0..members.len())
                    .map(|k| &members[(active + r + k) % members.len()])
                    .find(|m| !used.contains(&instance(&m.client_id)));
                let Some(host) = host else { break };
                used.push(instance(&host.client_id));
                if host.client_id == self.client_id {
                    mine.push(task);
                }
            }
        }
        tracing::debug!(member = %self.client_id, standbys = mine.len(), "standbys placed");
        self.standbys = mine;
        self.standbys_placed = true;
        self.refresh_standbys();
    }

    /// Brings each standby copy up to its changelog's end: a copy already open applies what its
    /// changelogs gained since (and checkpoints); one not open yet opens its stores, restoring
    /// the tail past their checkpoint, and stays open. Copies no longer placed here are closed. A
    /// copy whose directory is busy (its task runs in this instance) waits for the next commit.
    pub(super) fn refresh_standbys(&mut self) {
        let placed: BTreeMap<TaskId, (usize, u32, u32)> =
            self.standbys.iter().map(|&(s, p, n)| (TaskId::new(s, p), (s, p, n))).collect();
        let gone: Vec<TaskId> = self.standby_states.keys().filter(|id| !placed.contains_key(*id)).copied().collect();
        for id in gone {
            self.close_standby(&id);
        }
        let open: Vec<TaskId> = self.standby_states.keys().copied().collect();
        for id in &open {
            let caught_up = self.standby_states.get_mut(id).map_or(Ok(0), |state| state.catch_up());
            match caught_up {
                Ok(n) => tracing::debug!(member = %self.client_id, task = %id, applied = n, "standby refreshed"),
                Err(error) => {
                    tracing::debug!(member = %self.client_id, task = %id, %error, "standby not refreshed this time");
                    self.close_standby(id);
                }
            }
        }
        // New copies restore what their checkpoint lacks (everything, the first time): on a
        // helper thread, as tasks do.
        let new: Vec<(TaskId, (usize, u32, u32))> =
            placed.into_iter().filter(|(id, _)| !self.standby_states.contains_key(id)).collect();
        if new.is_empty() {
            return;
        }
        let opener = self.opener();
        let assignment = self.consumer.assignment();
        let opened = self.while_polling(&assignment, move || {
            Ok(new
                .into_iter()
                .map(|(id, (sub, partition, n))| {
                    let state = opener.open_standby(sub, partition, n);
                    (id, state)
                })
                .collect::<Vec<_>>())
        });
        match opened {
            Ok(opened) => {
                for (id, state) in opened {
                    match state {
                        Ok(state) => {
                            let restored: u64 = state.restores().iter().map(|r| r.n_records).sum();
                            tracing::debug!(member = %self.client_id, task = %id, restored, "standby opened");
                            self.standby_states.insert(id, state);
                        }
                        Err(error) => {
                            tracing::debug!(member = %self.client_id, task = %id, %error, "standby not opened this time")
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(member = %self.client_id, %error, "standbys not opened this time"),
        }
    }
}

impl StreamThread {
    pub(super) fn close_standby(&mut self, id: &TaskId) {
        if let Some(state) = self.standby_states.remove(id) {
            if let Err(error) = state.close() {
                tracing::debug!(member = %self.client_id, task = %id, %error, "closing a standby copy failed");
            }
        }
    }

    /// Closes every standby copy (a rebalance may make one of them a task of this instance).
    pub(super) fn close_standbys(&mut self) {
        let ids: Vec<TaskId> = self.standby_states.keys().copied().collect();
        for id in ids {
            self.close_standby(&id);
        }
    }
}

impl TaskOpener {
    pub(super) fn open_standby(&self, sub: usize, partition: u32, n: u32) -> Result<TaskState> {
        let id = TaskId::new(sub, partition);
        let mut config = TaskConfig::new(
            &self.config.state_dir,
            &self.config.application_id,
            &id.to_string(),
            partition,
            n,
            self.config.backend.clone(),
            Some(self.changelogs.clone()),
        );
        config.cache_bytes_per_store = self.config.cache_bytes_per_store;
        let mut state = TaskState::open(config)?;
        for store in self.topology.stores_of(sub) {
            store.open_in(&mut state, store.options())?;
        }
        Ok(state)
    }
}
