//! Time windows (tumbling, hopping, sliding): the windowed stream and its aggregate processor.

use super::*;

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
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
    ) -> KTable<Windowed<K>, A> {
        let graph = &self.grouped.stream.graph;
        let store = materialized.store(graph, &format!("{prefix}-STATE-STORE"));
        let input = self.grouped.partitioned(&store);
        let span = self.layout.span_ms();
        let least = span.saturating_add(self.layout.grace_ms()).saturating_add(1);
        let retention = materialized.retention_ms.unwrap_or(least);
        if retention < least {
            graph.borrow_mut().errors.push(format!(
                "store {store}: a retention of {retention} ms is under the window span plus grace ({least} ms)"
            ));
        }
        let size = match self.layout {
            Layout::Time(w) => w.size_ms,
            Layout::Sliding(w) => w.difference_ms,
        };
        let mut stores = vec![store.clone()];
        let options = WindowOptions { retention_ms: retention, window_size_ms: size, retain_duplicates: false };
        graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_window(&store, options)));
        let records = format!("{store}-records");
        if let Layout::Sliding(w) = self.layout {
            // Sliding windows are built from the records they hold: kept long enough to build
            // the windows on either side of any record still within grace.
            let retention = retention.max(2 * w.difference_ms + w.grace_ms + 2);
            let options = WindowOptions { retention_ms: retention, window_size_ms: 1, retain_duplicates: true };
            graph.borrow_mut().stores.push(materialized.apply(StoreBuilder::raw_window(&records, options)));
            stores.push(records.clone());
        }
        let emitted = emitted_store(graph, &materialized, &store, self.emit, &mut stores);
        let processor = WindowAggregate {
            store: store.clone(),
            records,
            emitted,
            key: self.grouped.grouped.key.clone(),
            value: self.grouped.grouped.value.clone(),
            serde: serde.clone(),
            add,
            layout: self.layout,
            emit_final: self.emit == EmitStrategy::OnWindowClose,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            pending: None,
        };
        let make = make::<K, V, Windowed<K>, Change<A>, _>(move || processor.fresh());
        let node = add_stateful(graph, prefix, &[input.node], &stores, make);
        let key = self.grouped.grouped.key.clone();
        let getter = windowed_getter(&store, key.clone(), serde);
        KTable { graph: graph.clone(), node, key: Arc::new(WindowedSerde::of(key)), getter }
    }

    /// The number of records per key and window.
    pub fn count(&self, materialized: Materialized) -> KTable<Windowed<K>, i64> {
        let add: AddFn<K, V, i64> = Arc::new(|_, _, old| old.unwrap_or(0) + 1);
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(crate::serde::NumberSerde::<i64>::new()), add)
    }

    /// Combines each key's values per window with `reducer(aggregate, value)`.
    pub fn reduce(
        &self,
        reducer: impl Fn(&V, &V) -> V + Send + Sync + 'static,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, V> {
        let add: AddFn<K, V, V> = Arc::new(move |_, v, old| match old {
            Some(agg) => reducer(&agg, v),
            None => v.clone(),
        });
        let serde = self.grouped.grouped.value.clone();
        self.aggregate_with("KSTREAM-REDUCE", materialized, serde, add)
    }

    /// Folds each key's values per window into an aggregate stored with `serde`.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, &V, A) -> A + Send + Sync + 'static,
        serde: impl Serde<A>,
        materialized: Materialized,
    ) -> KTable<Windowed<K>, A> {
        let add: AddFn<K, V, A> = Arc::new(move |k, v, old| aggregator(k, v, old.unwrap_or_else(&initializer)));
        self.aggregate_with("KSTREAM-AGGREGATE", materialized, Arc::new(serde), add)
    }
}

fn windowed_getter<K: Data, A: Data>(
    store: &str,
    key: Arc<dyn Serde<K>>,
    serde: Arc<dyn Serde<A>>,
) -> Getter<Windowed<K>, A> {
    let name = store.to_string();
    Getter {
        stores: vec![store.to_string()],
        get: Arc::new(move |reader: &mut dyn StoreReader, w: &Windowed<K>| {
            let Some(kb) = encode(&key, &w.key, "key", &name)? else { return Ok(None) };
            match reader.read_window(&name, &kb, w.start)? {
                Some(stored) => Ok(Some(decode_stamped(&serde, &stored, &name)?)),
                None => Ok(None),
            }
        }),
    }
}

/// Aggregates per time or sliding window into a window store.
struct WindowAggregate<K, V, A> {
    store: String,
    /// Sliding windows: the store of the records themselves.
    records: String,
    /// Emitting final results: the store of the start up to which windows were emitted.
    emitted: String,
    key: Arc<dyn Serde<K>>,
    value: Arc<dyn Serde<V>>,
    serde: Arc<dyn Serde<A>>,
    add: AddFn<K, V, A>,
    layout: Layout,
    emit_final: bool,
    on_late: Option<LateFn<K, V>>,
    /// The largest timestamp this operator has seen.
    observed: i64,
    /// Emitting final results: the windows written and not emitted yet, by start, with their
    /// keys; built on the first record after the task starts from the store's windows past the
    /// emitted mark (so windows that closed while it was away are emitted then, and open ones
    /// later). A close reads just its windows, by key, rather than scanning the store's segments.
    pending: Option<BTreeMap<i64, BTreeSet<Bytes>>>,
}

/// A window's new aggregate: start, new value, old value, timestamp.
type Update<A> = (i64, A, Option<A>, i64);

impl<K: Data, V: Data, A: Data> WindowAggregate<K, V, A> {
    fn fresh(&self) -> Self {
        WindowAggregate {
            store: self.store.clone(),
            records: self.records.clone(),
            emitted: self.emitted.clone(),
            key: self.key.clone(),
            value: self.value.clone(),
            serde: self.serde.clone(),
            add: self.add.clone(),
            layout: self.layout,
            emit_final: self.emit_final,
            on_late: self.on_late.clone(),
            observed: i64::MIN,
            pending: None,
        }
    }

    fn late(
        &self,
        r: &Record<K, V>,
        window: (i64, i64),
        close_time: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) {
        tracing::debug!(store = %self.store, timestamp = r.timestamp, start = window.0, end = window.1, close_time, "skipping a record for a closed window");
        ctx.count_late();
        if let Some(f) = &self.on_late {
            f(&LateRecord { key: &r.key, value: &r.value, timestamp: r.timestamp, window, close_time });
        }
    }

    fn fetch(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
        kb: &Bytes,
        start: i64,
    ) -> Result<Option<(A, i64)>> {
        let stored = ctx.window_store::<Bytes, Bytes>(&self.store)?.fetch(kb, start)?;
        stored.map(|b| decode_stamped(&self.serde, &b, &self.store)).transpose()
    }

    fn put(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
        kb: &Bytes,
        start: i64,
        value: &A,
        ts: i64,
    ) -> Result<()> {
        let stored = encode_stamped(&self.serde, value, ts, &self.store)?;
        Ok(ctx.window_store::<Bytes, Bytes>(&self.store)?.put(kb, stored.as_ref(), start)?)
    }

    /// Tumbling and hopping windows: each window holding the record is updated.
    fn time_windows(
        &self,
        w: TimeWindows,
        r: &Record<K, V>,
        kb: &Bytes,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<Update<A>>> {
        let mut updates = Vec::new();
        for start in w.starts_for(r.timestamp) {
            let end = start + w.size_ms;
            if end <= close {
                self.late(r, (start, end), close, ctx);
                continue;
            }
            let old = self.fetch(ctx, kb, start)?;
            let ts = old.as_ref().map_or(r.timestamp, |(_, t)| r.timestamp.max(*t));
            let old = old.map(|(v, _)| v);
            let new = (self.add)(&r.key, &r.value, old.clone());
            self.put(ctx, kb, start, &new, ts)?;
            updates.push((start, new, old, ts));
        }
        Ok(updates)
    }

    /// The aggregate of the stored records of a key with timestamps in `[from, to]`.
    fn build(
        &self,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
        key: &K,
        kb: &Bytes,
        from: i64,
        to: i64,
    ) -> Result<Option<(A, i64)>> {
        let records: Vec<(i64, Bytes)> = ctx
            .window_store::<Bytes, Bytes>(&self.records)?
            .fetch_range(kb, from, to)?
            .collect::<freshet_state::Result<_>>()?;
        let mut agg: Option<(A, i64)> = None;
        for (ts, bytes) in records {
            let v = decode(&self.value, &bytes, "value", &self.records)?;
            let (old, old_ts) = match agg.take() {
                Some((a, t)) => (Some(a), t),
                None => (None, ts),
            };
            agg = Some(((self.add)(key, &v, old), old_ts.max(ts)));
        }
        Ok(agg)
    }

    /// Sliding windows: the windows already holding the record are updated; the window ending
    /// at the record, the one starting right after it, and the one starting right after the
    /// record before it are built from the stored records when they do not exist yet.
    fn sliding_windows(
        &self,
        w: SlidingWindows,
        r: &Record<K, V>,
        kb: &Bytes,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<Update<A>>> {
        let (t, d) = (r.timestamp, w.difference_ms);
        if t + 1 + d <= close {
            self.late(r, (t.saturating_sub(d).max(0), t), close, ctx);
            return Ok(Vec::new());
        }
        let Some(vb) = encode(&self.value, &r.value, "value", &self.records)? else { return Ok(Vec::new()) };
        ctx.window_store::<Bytes, Bytes>(&self.records)?.put(kb, Some(&vb), t)?;
        let existing: Vec<(i64, Bytes)> = ctx
            .window_store::<Bytes, Bytes>(&self.store)?
            .fetch_range(kb, (t - d).max(0), t)?
            .collect::<freshet_state::Result<_>>()?;
        let mut updates = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for (start, stored) in existing {
            seen.insert(start);
            if start + d <= close {
                continue;
            }
            let (old, old_ts) = decode_stamped(&self.serde, &stored, &self.store)?;
            let new = (self.add)(&r.key, &r.value, Some(old.clone()));
            let ts = old_ts.max(t);
            self.put(ctx, kb, start, &new, ts)?;
            updates.push((start, new, Some(old), ts));
        }
        // The record before this one (within reach of a window holding it).
        let before: Option<i64> = ctx
            .window_store::<Bytes, Bytes>(&self.records)?
            .fetch_range(kb, (t - d - 1).max(0), t - 1)?
            .map(|e| e.map(|(ts, _)| ts))
            .collect::<freshet_state::Result<Vec<_>>>()?
            .into_iter()
            .max();
        let mut candidates = vec![(t - d).max(0), t + 1];
        if let Some(p) = before {
            candidates.push(p + 1);
        }
        for start in candidates {
            if seen.contains(&start) || start + d <= close || self.fetch(ctx, kb, start)?.is_some() {
                continue;
            }
            seen.insert(start);
            if let Some((agg, ts)) = self.build(ctx, &r.key, kb, start, start + d)? {
                self.put(ctx, kb, start, &agg, ts)?;
                updates.push((start, agg, None, ts));
            }
        }
        updates.sort_by_key(|u| u.0);
        Ok(updates)
    }

    /// The final results of the windows that closed since the last call, read before this
    /// record writes anything (a write moves the store's retention on, which could expire windows
    /// not yet emitted after a jump in stream time).
    fn closed_windows(
        &mut self,
        close: i64,
        ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>,
    ) -> Result<Vec<(Windowed<K>, A, i64)>> {
        let span = self.layout.span_ms();
        let upper = close.saturating_sub(span);
        let pending = match &mut self.pending {
            Some(pending) => pending,
            None => {
                let mark = read_mark(ctx, &self.emitted)?;
                let mut pending: BTreeMap<i64, BTreeSet<Bytes>> = BTreeMap::new();
                for entry in ctx.window_store::<Bytes, Bytes>(&self.store)?.all()? {
                    let (w, _) = entry?;
                    if w.start > mark {
                        pending.entry(w.start).or_default().insert(w.key);
                    }
                }
                self.pending.insert(pending)
            }
        };
        if upper < 0 || pending.first_key_value().is_none_or(|(start, _)| *start > upper) {
            return Ok(Vec::new());
        }
        let open = pending.split_off(&upper.saturating_add(1));
        let closed = std::mem::replace(pending, open);
        let store = ctx.window_store::<Bytes, Bytes>(&self.store)?;
        let mut out = Vec::new();
        // By start, then key bytes.
        for (start, keys) in closed {
            for kb in keys {
                // Gone only if the store's retention passed it (a jump in stream time).
                let Some(stored) = store.fetch(&kb, start)? else { continue };
                let key = decode(&self.key, &kb, "key", &self.store)?;
                let (value, timestamp) = decode_stamped(&self.serde, &stored, &self.store)?;
                out.push((Windowed { key, start, end: start + span }, value, timestamp));
            }
        }
        write_mark(ctx, &self.emitted, upper)?;
        Ok(out)
    }
}

impl<K: Data, V: Data, A: Data> Processor<K, V, Windowed<K>, Change<A>> for WindowAggregate<K, V, A> {
    fn process(&mut self, r: Record<K, V>, ctx: &mut ProcessorContext<'_, Windowed<K>, Change<A>>) -> Result<()> {
        let Some(kb) = key_or_drop(ctx, &self.key, &r.key, &self.store)? else { return Ok(()) };
        if !windowable(ctx, r.timestamp, &self.store) {
            return Ok(());
        }
        self.observed = self.observed.max(r.timestamp);
        let close = self.observed.saturating_sub(self.layout.grace_ms());
        let closed = if self.emit_final { self.closed_windows(close, ctx)? } else { Vec::new() };
        let updates = match self.layout {
            Layout::Time(w) => self.time_windows(w, &r, &kb, close, ctx)?,
            Layout::Sliding(w) => self.sliding_windows(w, &r, &kb, close, ctx)?,
        };
        if self.emit_final {
            if let Some(pending) = &mut self.pending {
                for (start, ..) in &updates {
                    pending.entry(*start).or_default().insert(kb.clone());
                }
            }
            for (key, value, timestamp) in closed {
                let change = Change { new: Some(value), old: None };
                ctx.forward(Record { key, value: change, timestamp, headers: r.headers.clone() })?;
            }
            return Ok(());
        }
        let span = self.layout.span_ms();
        for (start, new, old, timestamp) in updates {
            let key = Windowed { key: r.key.clone(), start, end: start + span };
            ctx.forward(Record { key, value: Change { new: Some(new), old }, timestamp, headers: r.headers.clone() })?;
        }
        Ok(())
    }
}
