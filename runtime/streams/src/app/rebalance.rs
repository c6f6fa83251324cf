//! A stream thread through a rebalance: revoked partitions committed before they move, tasks
//! opened (restoring their stores) while the thread keeps polling, suspended tasks closed.

use super::*;

impl StreamThread {
    /// Closes a task after a commit: its stores flushed and checkpointed.
    pub(super) fn close_task(&self, task: RunningTask) -> Result<()> {
        let RunningTask { mut graph, mut ctx, .. } = task;
        let r = graph.close().map_err(Error::from);
        let r2 = ctx.state.take().map_or(Ok(()), |s| s.close().map_err(Error::from));
        r.and(r2)
    }

    /// Closes a task whose last changes may not commit: exactly-once, its stores keep no
    /// checkpoint and are rebuilt from their changelogs when opened again.
    pub(super) fn close_task_dirty(&self, task: RunningTask) {
        let RunningTask { mut graph, mut ctx, id, .. } = task;
        if let Err(error) = graph.close() {
            tracing::warn!(task = %id, %error, "closing a task's processors failed");
        }
        if let Some(state) = ctx.state.take() {
            state.close_dirty();
        }
    }

    /// Exactly-once, after a failure or when the group moved on: aborts the open transaction and
    /// closes every task without committing (their input is processed again from the committed
    /// offsets by whoever owns it next), then begins a new transaction, with a new producer if
    /// this one was fenced.
    pub(super) fn abort_and_lose_tasks(&mut self, why: &str) -> Option<Error> {
        tracing::warn!(member = %self.client_id, why, "aborting the transaction and closing this thread's tasks");
        self.out.clear();
        self.unpolled.outbox.clear();
        if let Some(Sending { handle, .. }) = self.sending.take() {
            let _ = block_on(&self.runtime, handle);
        }
        for task in std::mem::take(&mut self.tasks).into_iter().chain(std::mem::take(&mut self.suspended)) {
            self.close_task_dirty(task);
        }
        self.index_partitions();
        let txn = self.txn.clone()?;
        match block_on(&self.runtime, txn.abort()) {
            Ok(()) => txn.begin().err().map(Error::from),
            Err(error) => Some(Error::from(error)),
        }
    }

    pub(super) fn enter_rebalance(&mut self) {
        if !self.in_rebalance {
            self.in_rebalance = true;
            self.shared.rebalancing.fetch_add(1, Ordering::SeqCst);
            self.shared.set_state(StreamsState::Rebalancing);
        }
    }

    pub(super) fn leave_rebalance(&mut self) {
        if self.in_rebalance {
            self.in_rebalance = false;
            self.shared.rebalancing.fetch_sub(1, Ordering::SeqCst);
        }
        if !self.ready {
            self.ready = true;
            self.shared.threads_ready.fetch_add(1, Ordering::SeqCst);
        }
        let all_ready =
            self.shared.threads_ready.load(Ordering::SeqCst) >= self.shared.n_threads.load(Ordering::SeqCst);
        if self.shared.rebalancing.load(Ordering::SeqCst) == 0 && all_ready {
            self.shared.set_state(StreamsState::Running);
        }
    }

    /// The group is taking `revoked` away (they stay this thread's until its next poll):
    /// everything processed so far is sent, flushed and committed, then the tasks that lose
    /// partitions are suspended, their buffered records dropped (the next owner reads them again
    /// from the commit).
    pub(super) fn on_revoked(&mut self, revoked: &[TopicPartition]) -> Result<()> {
        self.revocation_pending = true;
        self.enter_rebalance();
        self.send(true)?;
        self.commit_or_lose_tasks()?;
        let (lost, kept): (Vec<RunningTask>, Vec<RunningTask>) =
            std::mem::take(&mut self.tasks).into_iter().partition(|t| t.queues.keys().any(|tp| revoked.contains(tp)));
        self.tasks = kept;
        for mut task in lost {
            tracing::info!(member = %self.client_id, task = %task.id, "task suspended: its partitions were revoked");
            task.queues.values_mut().for_each(VecDeque::clear);
            task.behind.clear();
            task.waiting_since = None;
            self.suspended.push(task);
        }
        self.index_partitions();
        Ok(())
    }

    /// A rebalance ended with `assigned` this thread's partitions: suspended tasks given back
    /// resume, the others close; new tasks open (restoring their stores) and read from the
    /// committed offsets.
    pub(super) fn on_assigned(&mut self, assigned: &[TopicPartition]) -> Result<()> {
        // Placed again below; a task that moves here may be one of them.
        self.close_standbys();
        let mut wanted: BTreeMap<TaskId, (usize, u32, u32)> = BTreeMap::new();
        for tp in assigned {
            match self.sources.get(&tp.topic) {
                Some(&(sub, n)) => {
                    wanted.insert(TaskId::new(sub, tp.partition), (sub, tp.partition, n));
                }
                None => tracing::warn!(member = %self.client_id, %tp, "assigned a partition no task reads"),
            }
        }
        // Running tasks whose partitions went without a revocation (the group lost this member).
        let (kept, gone): (Vec<RunningTask>, Vec<RunningTask>) =
            std::mem::take(&mut self.tasks).into_iter().partition(|t| wanted.contains_key(&t.id));
        self.tasks = kept;
        if self.txn.is_some() && !gone.is_empty() {
            // Exactly-once: the open transaction holds their uncommitted work; it is aborted and
            // every task closed dirty (those still wanted open again below, from their changelogs).
            self.tasks.extend(gone);
            if self.abort_and_lose_tasks("partitions were lost without a revocation").is_some() {
                self.renew_producer()?;
            }
        } else {
            for task in gone {
                tracing::info!(member = %self.client_id, task = %task.id, "task closed: no longer assigned");
                self.close_task(task)?;
            }
        }
        for task in std::mem::take(&mut self.suspended) {
            if wanted.contains_key(&task.id) {
                tracing::info!(member = %self.client_id, task = %task.id, "task resumed");
                self.tasks.push(task);
            } else {
                tracing::info!(member = %self.client_id, task = %task.id, "task closed: revoked");
                self.close_task(task)?;
            }
        }
        let new: Vec<(usize, u32, u32)> =
            wanted.iter().filter(|(id, _)| !self.tasks.iter().any(|t| t.id == **id)).map(|(_, t)| *t).collect();
        if !new.is_empty() {
            let Some(opened) = self.open_while_polling(assigned, new)? else { return Ok(()) };
            for task in opened {
                tracing::info!(member = %self.client_id, task = %task.id, "task assigned");
                self.tasks.push(task);
            }
        }
        self.tasks.sort_by_key(|t| t.id);
        self.index_partitions();
        self.consumer.resume(assigned)?;
        self.standbys_placed = false;
        self.place_standbys();
        tracing::info!(member = %self.client_id, tasks = self.tasks.len(), "stream thread running");
        self.leave_rebalance();
        Ok(())
    }

    pub(super) fn opener(&self) -> TaskOpener {
        TaskOpener {
            topology: self.topology.clone(),
            changelogs: self.changelogs.clone(),
            globals: self.globals.clone(),
            config: self.config.clone(),
            shared: self.shared.clone(),
            names: self.names.clone(),
        }
    }

    /// Opens `new` tasks (restoring their stores, which may take long) while the consumer keeps
    /// polling (see `while_polling`). `None` if the application stops meanwhile.
    pub(super) fn open_while_polling(
        &mut self,
        assigned: &[TopicPartition],
        new: Vec<(usize, u32, u32)>,
    ) -> Result<Option<Vec<RunningTask>>> {
        let opener = self.opener();
        self.while_polling(assigned, move || {
            let mut tasks = Vec::new();
            for (sub, partition, n) in new {
                match opener.open_task_when_free(sub, partition, n)? {
                    Some(task) => tasks.push(task),
                    None => return Ok(None),
                }
            }
            Ok(Some(tasks))
        })
    }

    /// Runs `work` (opening stores, which may restore for long) on a helper thread while
    /// `partitions` are paused and the consumer polls every second, so the group does not count
    /// this member gone (librdkafka's `max.poll.interval.ms`). A rebalance seen meanwhile stops
    /// those polls and is handled, in order, by the next loop before it polls; no poll happens
    /// while a revocation waits for this thread's commit. The partitions are resumed after.
    pub(super) fn while_polling<T: Send + 'static>(
        &mut self,
        partitions: &[TopicPartition],
        work: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, finished) = std::sync::mpsc::channel();
        let helper = std::thread::Builder::new()
            .name(format!("{}-open", self.client_id))
            .spawn(move || done.send(work()))
            .map_err(|source| Error::ThreadStart { thread: "a thread to open stores".into(), source })?;
        self.consumer.pause(partitions)?;
        let result = loop {
            match finished.recv_timeout(KEEPALIVE_POLL) {
                Ok(result) => break result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.deferred_changes.is_empty() && !self.revocation_pending {
                        let batches = block_on(&self.runtime, self.consumer.poll(Duration::ZERO))?;
                        self.early.extend(batches);
                        self.deferred_changes.extend(self.consumer.take_group_changes());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(Error::ThreadPanicked(format!("{}-open", self.client_id)))
                }
            }
        };
        let _ = helper.join();
        self.consumer.resume(partitions)?;
        result
    }

    pub(super) fn index_partitions(&mut self) {
        self.owner.clear();
        for (i, task) in self.tasks.iter().enumerate() {
            for tp in task.queues.keys() {
                self.owner.insert(tp.clone(), i);
            }
        }
    }

    /// Commits; if the group has moved on without this member (its session ran out, or it was
    /// too slow to rejoin), its tasks belong to others now: they are closed uncommitted (their
    /// records will be processed again: at least once) and the thread waits for its next
    /// assignment.
    pub(super) fn commit_or_lose_tasks(&mut self) -> Result<()> {
        let committed = self.commit();
        match committed {
            Err(Error::Log(freshet_core::Error::Rebalanced(reason))) if self.txn.is_none() => {
                tracing::warn!(member = %self.client_id, %reason, "the group moved on; closing this thread's tasks");
                for task in std::mem::take(&mut self.tasks).into_iter().chain(std::mem::take(&mut self.suspended)) {
                    self.close_task(task)?;
                }
                self.index_partitions();
                Ok(())
            }
            other => self.recover_transaction(other),
        }
    }

    /// Exactly-once: when the transaction itself failed (the group moved on, so its offsets
    /// were refused; the producer was fenced; its records or a request timed out, a leader or
    /// a coordinator moving), nothing of it is seen: it is aborted and the tasks closed dirty,
    /// then opened again unless the group moved on (see `revive_tasks`). Any other error, and
    /// any error without a transaction, is returned.
    pub(super) fn recover_transaction(&mut self, result: Result<()>) -> Result<()> {
        let Err(error) = result else { return Ok(()) };
        let source = match &error {
            Error::Log(e) | Error::Output { source: e, .. } => Some(e),
            Error::State(freshet_state::Error::Changelog { source, .. }) => Some(source),
            _ => None,
        };
        let failed_transaction = source.filter(|e| {
            matches!(
                e,
                freshet_core::Error::Transaction(_)
                    | freshet_core::Error::ProducerFenced(_)
                    | freshet_core::Error::Rebalanced(_)
                    | freshet_core::Error::Timeout(_)
            )
        });
        let (Some(e), Some(_)) = (failed_transaction, self.txn.as_ref()) else { return Err(error) };
        let fenced = matches!(e, freshet_core::Error::ProducerFenced(_));
        let moved_on = matches!(e, freshet_core::Error::Rebalanced(_));
        let failed = self.abort_and_lose_tasks(&e.to_string());
        if fenced || failed.is_some() {
            self.renew_producer()?;
        }
        if !moved_on {
            self.revive_tasks()?;
        }
        Ok(())
    }

    /// Exactly-once, after a transaction failed on its own (timed out, its coordinator or a
    /// leader moved, the producer was fenced) while the group still counts this thread the
    /// owner of its partitions: no rebalance is coming to hand the tasks back, so they open
    /// again here, their stores restored from the changelogs, their input read again from the
    /// committed offsets (Kafka Streams revives corrupted tasks the same way). If the group has
    /// in fact moved on, the coming rebalance takes them away as usual.
    pub(super) fn revive_tasks(&mut self) -> Result<()> {
        let assigned = self.consumer.assignment();
        if assigned.is_empty() {
            return Ok(());
        }
        let committed = block_on(&self.runtime, self.consumer.committed(&assigned))?;
        for tp in &assigned {
            match committed.get(tp) {
                Some(at) => self.consumer.seek_to_offset(tp, at.offset)?,
                None => block_on(&self.runtime, self.consumer.seek(tp, OffsetSpec::Earliest))?,
            }
        }
        // Fetched past the committed offsets: read again after the seeks.
        self.early.clear();
        tracing::info!(
            member = %self.client_id,
            partitions = assigned.len(),
            "reopening this thread's tasks from their changelogs and committed offsets"
        );
        self.on_assigned(&assigned)
    }

    /// Exactly-once, after a fencing: a new transactional producer with the thread's id (which
    /// fences the old one for good) and its first transaction begun; new tasks write through it.
    pub(super) fn renew_producer(&mut self) -> Result<()> {
        let timeout = transaction_timeout(self.config.commit_interval);
        let txn = self.substrate.transactional_producer(&self.runtime, &self.client_id, timeout)?;
        txn.begin()?;
        self.changelogs = self.substrate.changelogs.transactional(txn.clone());
        self.producer = txn.clone();
        self.txn = Some(txn);
        Ok(())
    }
}
