//! Session windows: the windowed stream and its aggregate processor, merging sessions that a record bridges.

use super::*;

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// When results are forwarded (default: every update).
    pub fn emit_strategy(mut self, emit: EmitStrategy) -> Self {
        self.emit = emit;
        self
    }

    /// Calls `f` for every record dropped as late (besides counting it).
    pub fn on_late_record(mut self, f: impl Fn(&LateRecord<'_, K, V>) + Send + Sync + 'static) -> Self {
        self.on_late = Some(Arc::new(f));
        self
    }

    fn aggregate_with<A: Data>(
        &self,
        prefix: &str,
        materialized: Materialized,
        serde: Arc<dyn Serde<A>>,
        add: AddFn<K, V, A>,
        merge: MergeFn<K, A>,
    ) -> KTable<Windowed<K>, A> {
        let graph = &self.grouped.stream.graph;
        let store = materialized.store(graph, &format!("{prefix}-STATE-STORE"));
        let input = self.grouped.partitioned(&store);
        // A session can be extended until `gap + grace` past its end, and then merged with
        // sessions up to a gap before that record: kept that long by default.
        let least = self.windows.gap_ms.saturating_add(self.windows.grace_ms).saturating_add(1);
        let retention = materialized.retention_ms.unwrap_or(least.saturating_add(self.windows.gap_ms));
        if retention < least {
            graph.borrow_mut().errors.push(format!(
                "store {store}: a retention of {retention} ms is under the inactivity gap plus grace ({least} ms)"
            ));
        }
        graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_session(&store, retention)));
        let mut stores = vec![store.clone()];
        let emitted = emitted_store(graph, &materialized, &store, self.emit, &mut stores);
        let processor = SessionAggregate {
            store: store.clone(),
            emitted,
            key: self.grouped.grouped.key.clone(),
            serde: serde.clone(),
            add,
            merge,
            windows: self.windows,
            emit_final: self.emit == EmitStrategy::OnWindowClose,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            last_emit_close: None,
            open: None,
        };
        let make = make::<K, V, Windowed<K>, Change<A>, _>(move || processor.fresh());
        let node = add_stateful(graph, prefix, &[input.node], &stores, make);
        let key = self.grouped.grouped.key.clone();
        let (name, key_serde) = (store.clone(), key.clone());
        let getter = Getter {
            stores: vec![store],
            get: Arc::new(move |reader: &mut dyn StoreReader, w: &Windowed<K>| {
                let Some(kb) = encode(&key_serde, &w.key, "key", &name)? else { return Ok(None) };
                match reader.read_session(&name, &kb, w.start, w.end)? {
                    Some(stored) => Ok(Some((decode(&serde, &stored, "value", &name)?, w.end))),
                    None => Ok(None),
                }
            }),
        };
        KTable { graph: graph.clone(), node, key: Arc::new(WindowedSerde::of(key)), getter }
    }

    /// The number of records per session.
    pub fn count(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        let add: AddFn<K, V, i64> = Arc::new(|_, _, old| old.unwrap_or(0) + 1);
        let merge: MergeFn<K, i64> = Arc::new(|_, a, b| a + b);
        self.aggregate_with(
            "KSTREAM-AGGREGATE",
            materialized,
            Arc::new(crate::serde::NumberSerde::<i64>::new()),
            add,
            merge,
        )
    }

    /// Combines each session's values with `reducer` (which also merges sessions a record joins).
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, V> {
        let reducer = Arc::new(reducer);
        let r2 = reducer.clone();
        let add: AddFn<K, V, V> = Arc::new(move |_, v, old| match old {
            Some(agg) => reducer(&agg, v),
            None => v.clone(),
        });
        let merge: MergeFn<K, V> = Arc::new(move |_, a, b| r2(&a, &b));
        let serde = self.grouped.grouped.value.clone();
        self.aggregate_with("KSTREAM-REDUCE", materialized, serde, add, merge)
    }

    /// Folds each session's values into an aggregate; `merger(key, a, b)` combines the
    /// aggregates of sessions a record joins together.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, &V, A) -> A + Send + Sync + 'static,
        merger: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
        serde: impl Serde<A>,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, A> {
        let add: AddFn<K, V, A> = Arc::new(move |k, v, old| aggregator(k, v, old.unwrap_or_else(&initializer)));
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(serde), add, Arc::new(merger))
    }
}

/// Aggregates per session into a session store.
struct SessionAggregate<K, V, A> {
    store: String,
    /// Emitting final results: the store of the close time sessions were emitted up to.
    emitted: String,
    key: Arc<dyn Serde<K>>,
    serde: Arc<dyn Serde<A>>,
    add: AddFn<K, V, A>,
    merge: MergeFn<K, A>,
    windows: SessionWindows,
    emit_final: bool,
    on_late: Option<LateFn<K, V>>,
    observed: i64,
    last_emit_close: Option<i64>,
    /// Emit-final only: the sessions not yet emitted as (end, start, key), in end-time order, so
    /// finding the sessions that closed reads only those (the store is ordered by key first, and
    /// reading every live session at each advance of stream time costs O(records x sessions)).
    /// Built from the store at the first record (after a restart, too), past the emitted mark.
    open: Option<BTreeSet<(i64, i64, Bytes)>>,
}

impl<K: Data, V: Data, A: Data> SessionAggregate<K, V, A> {
    fn fresh(&self) -> Self {
        SessionAggregate {
            store: self.store.clone(),
            emitted: self.emitted.clone(),
            key: self.key.clone(),
            serde: self.serde.clone(),
            add: self.add.clone(),
            merge: self.merge.clone(),
            windows: self.windows,
            emit_final: self.emit_final,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            last_emit_close: None,
            open: None,
        }
    }

    /// The sessions that closed (ended before `close`) since the last call, by end time, read
    /// before this record writes anything (see `WindowAggregate::closed_windows`).
    fn closed_sessions(
        &mut self,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<(Windowed<Bytes>, Bytes)>> {
        if !self.emit_final {
            return Ok(Vec::new());
        }
        let mark = match self.open {
            Some(_) => i64::MIN,
            None => read_mark(ctx, &self.emitted)?,
        };
        let store = ctx.session_store::<Bytes, Bytes>(&self.store)?;
        let open = match &mut self.open {
            Some(open) => open,
            None => {
                let mut open = BTreeSet::new();
                // Sessions ending before the mark were emitted.
                for session in store.sessions_ending(mark.max(0), i64::MAX)? {
                    let (w, _) = session?;
                    open.insert((w.end, w.start, w.key));
                }
                self.open.insert(open)
            }
        };
        if close <= 0 || self.last_emit_close.is_some_and(|last| close <= last) {
            return Ok(Vec::new());
        }
        self.last_emit_close = Some(close);
        let still_open = open.split_off(&(close, i64::MIN, Bytes::new()));
        let closed = std::mem::replace(open, still_open);
        let mut sessions = Vec::with_capacity(closed.len());
        let any = !closed.is_empty();
        for (end, start, key) in closed {
            // A session the store no longer holds (expired) has nothing to emit.
            if let Some(value) = store.fetch_session(&key, start, end)? {
                sessions.push((Windowed { key, start, end }, value));
            }
        }
        if any {
            write_mark(ctx, &self.emitted, close)?;
        }
        Ok(sessions)
    }

    /// Keeps the emit-final index of open sessions in step with the store.
    fn track(&mut self, session: &Windowed<Bytes>, open: bool) {
        if let Some(index) = &mut self.open {
            let entry = (session.end, session.start, session.key.clone());
            if open {
                index.insert(entry);
            } else {
                index.remove(&entry);
            }
        }
    }

    /// Forwards the final results of `closed` sessions, but those this record merged away.
    fn emit_closed(
        &self,
        closed: Vec<(Windowed<Bytes>, Bytes)>,
        merged_away: &[Windowed<Bytes>],
        r: &Record<K, V>,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<()> {
        for (w, stored) in closed {
            if merged_away.contains(&w) {
                continue;
            }
            let key = decode(&self.key, &w.key, "key", &self.store)?;
            let value = decode(&self.serde, &stored, "value", &self.store)?;
            let session = Windowed { key, start: w.start, end: w.end };
            let change = Change { new: Some(value), old: None };
            ctx.forward(Record { key: session, value: change, timestamp: w.end, headers: r.headers.clone() })?;
        }
        Ok(())
    }
}

impl<K: Data, V: Data, A: Data> Processor<K, V, Windowed<K>, Change<A>> for SessionAggregate<K, V, A> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) -> Result<()> {
        let Some(kb) = key_or_drop(ctx, &self.key, &r.key, &self.store)? else { return Ok(()) };
        if !windowable(ctx, r.timestamp, &self.store) {
            return Ok(());
        }
        let (t, gap) = (r.timestamp, self.windows.gap_ms);
        self.observed = self.observed.max(t);
        let close = self.observed.saturating_sub(self.windows.grace_ms).saturating_sub(gap);
        let closed = self.closed_sessions(close, ctx)?;
        let overlapping: Vec<(Windowed<Bytes>, Bytes)> = ctx
            .session_store::<Bytes, Bytes>(&self.store)?
            .find_sessions(&kb, t.saturating_sub(gap), t.saturating_add(gap))?
            .collect::<freshet_state::Result<_>>()?;
        let (mut start, mut end) = (t, t);
        let mut agg: Option<A> = None;
        let mut merged = Vec::with_capacity(overlapping.len());
        for (session, stored) in overlapping {
            start = start.min(session.start);
            end = end.max(session.end);
            let value = decode(&self.serde, &stored, "value", &self.store)?;
            agg = Some(match agg {
                Some(a) => (self.merge)(&r.key, a, value.clone()),
                None => value.clone(),
            });
            merged.push((session, value));
        }
        if end < close {
            tracing::debug!(store = %self.store, timestamp = t, start, end, close, "skipping a record for a closed session");
            ctx.count_late();
            if let Some(f) = &self.on_late {
                f(&LateRecord { key: &r.key, value: &r.value, timestamp: t, window: (start, end), close_time: close });
            }
            return self.emit_closed(closed, &[], &r, ctx);
        }
        let mut merged_away = Vec::new();
        if (start, end) != (t, t) {
            for (session, value) in merged {
                merged_away.push(session.clone());
                ctx.session_store::<Bytes, Bytes>(&self.store)?.remove(&session)?;
                self.track(&session, false);
                if !self.emit_final {
                    let key = Windowed { key: r.key.clone(), start: session.start, end: session.end };
                    let change = Change { new: None, old: Some(value) };
                    ctx.forward(Record { key, value: change, timestamp: session.end, headers: r.headers.clone() })?;
                }
            }
        }
        let new = (self.add)(&r.key, &r.value, agg);
        let session = Windowed { key: kb, start, end };
        match encode(&self.serde, &new, "value", &self.store)? {
            Some(b) => {
                ctx.session_store::<Bytes, Bytes>(&self.store)?.put(&session, &b)?;
                self.track(&session, true);
            }
            None => {
                ctx.session_store::<Bytes, Bytes>(&self.store)?.remove(&session)?;
                self.track(&session, false);
            }
        }
        if self.emit_final {
            return self.emit_closed(closed, &merged_away, &r, ctx);
        }
        let key = Windowed { key: r.key.clone(), start, end };
        ctx.forward(Record { key, value: Change { new: Some(new), old: None }, timestamp: end, headers: r.headers })
    }
}
