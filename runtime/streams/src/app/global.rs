//! The global thread: reads the global tables' topics whole, then follows them.

use super::*;

/// Keeps the global tables: reads their topics whole, then follows them.
pub(super) struct GlobalThread {
    pub(super) topology: Topology,
    pub(super) consumer: Box<dyn Consumer>,
    pub(super) admin: Arc<dyn Admin>,
    pub(super) runtime: Handle,
    pub(super) shared: Arc<Shared>,
    pub(super) config: Arc<StreamsConfig>,
    pub(super) globals: Arc<Mutex<TaskState>>,
}

impl GlobalThread {
    pub(super) fn run(mut self, ready: std::sync::mpsc::Sender<()>) -> Result<()> {
        let mut graphs = Vec::new();
        let mut reader = HashMap::new();
        let mut partitions = Vec::new();
        for sub in self.topology.global_subtopologies() {
            let mut graph = self.topology.build_task(sub.id);
            let mut ctx = TaskContext::new(sub.id, 0);
            ctx.globals = Some(self.globals.clone());
            graph.init(&mut ctx)?;
            for topic in &sub.source_topics {
                let (d, _) = block_on(&self.runtime, self.admin.describe_topic(topic))?;
                for p in 0..d.n_partitions {
                    let tp = TopicPartition::new(topic.clone(), p);
                    reader.insert(tp.clone(), graphs.len());
                    partitions.push(tp);
                }
            }
            graphs.push((graph, ctx));
        }
        let mut ends = BTreeMap::new();
        for tp in &partitions {
            let end = block_on(&self.runtime, self.admin.list_offset(tp, OffsetSpec::Latest))?.map_or(0, |(o, _)| o);
            ends.insert(tp.clone(), end);
        }
        block_on(&self.runtime, self.consumer.assign(partitions))?;
        let mut ready = Some(ready);
        while !self.shared.shutdown.load(Ordering::SeqCst) {
            if ready.is_some() && ends.iter().all(|(tp, &end)| self.consumer.position(tp).is_some_and(|p| p >= end)) {
                tracing::info!("global tables restored");
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            let wait = if ready.is_some() { Duration::from_millis(10) } else { self.config.poll_wait };
            for b in block_on(&self.runtime, self.consumer.poll(wait))? {
                let Some(&g) = reader.get(&b.tp) else { continue };
                let (graph, ctx) = &mut graphs[g];
                for r in b.records()? {
                    let meta = RecordMeta { topic: b.tp.topic.clone(), partition: b.tp.partition, offset: r.offset };
                    graph.process(meta, r.key, r.value, r.timestamp, r.headers, ctx)?;
                }
            }
        }
        for (mut graph, _) in graphs {
            graph.close()?;
        }
        Ok(())
    }
}
