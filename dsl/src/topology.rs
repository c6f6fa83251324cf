//! The topology: the task graph a builder produces, its description, and its instantiation per
//! task.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::processor::{ErasedNode, Slot, TaskGraph};
use crate::store::StoreBuilder;

/// A topic the topology writes and reads itself (a repartition topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternalTopic {
    /// Its name.
    pub name: String,
    /// Partitions asked for; `None` leaves the choice to the runtime.
    pub partitions: Option<u32>,
}

/// What a node is, for descriptions and for the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Reads topics.
    Source {
        /// The topics read.
        topics: Vec<String>,
    },
    /// Transforms records.
    Processor {
        /// State stores it uses.
        stores: Vec<String>,
    },
    /// Writes a topic.
    Sink {
        /// The topic written.
        topic: String,
    },
}

/// Creates a fresh instance of a node for a task.
pub(crate) type MakeNode = Arc<dyn Fn() -> Box<dyn ErasedNode> + Send + Sync>;

/// One node of a topology.
#[derive(Clone)]
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    /// Whether the user gave the name (generated names are marked in descriptions).
    pub(crate) named: bool,
    pub(crate) kind: NodeKind,
    pub(crate) parents: Vec<usize>,
    pub(crate) children: Vec<usize>,
    pub(crate) make: MakeNode,
    /// A source whose records fill a table's store (`StreamsBuilder::table`).
    pub(crate) feeds_table: bool,
}

/// A part of a topology whose nodes are connected: it runs as one task per partition of its
/// source topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtopology {
    /// Its number in descriptions.
    pub id: usize,
    /// Topics it reads.
    pub source_topics: Vec<String>,
    /// Topics it writes.
    pub sink_topics: Vec<String>,
}

/// A compiled stream application: nodes and the edges between them. Built by
/// [`crate::StreamsBuilder::build`]; run by the runtime or the test driver, one [`TaskGraph`] per
/// task.
#[derive(Clone)]
pub struct Topology {
    pub(crate) nodes: Vec<NodeSpec>,
    stores: Vec<StoreBuilder>,
    /// Stores of global tables: one copy per instance, filled from their whole topic.
    global_stores: Vec<StoreBuilder>,
    internal_topics: Vec<InternalTopic>,
    /// Node indexes of each sub-topology, in creation order.
    groups: Vec<Vec<usize>>,
    /// Which groups maintain global stores (they run once per instance, not as tasks).
    global_groups: BTreeSet<usize>,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Topology {
    pub(crate) fn new(
        nodes: Vec<NodeSpec>,
        stores: Vec<StoreBuilder>,
        global_stores: Vec<StoreBuilder>,
        internal_topics: Vec<InternalTopic>,
    ) -> crate::Result<Self> {
        // Sub-topologies are the parts of the graph connected by edges or by a shared store (a
        // table and the join that reads it run in one task), numbered by their first node.
        let global_names: BTreeSet<&str> = global_stores.iter().map(|s| s.name()).collect();
        let mut users: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (n, node) in nodes.iter().enumerate() {
            if let NodeKind::Processor { stores } = &node.kind {
                for s in stores.iter().filter(|s| !global_names.contains(s.as_str())) {
                    users.entry(s.as_str()).or_default().push(n);
                }
            }
        }
        let mut group_of: Vec<Option<usize>> = vec![None; nodes.len()];
        let mut groups = Vec::new();
        for start in 0..nodes.len() {
            if group_of[start].is_some() {
                continue;
            }
            let id = groups.len();
            let mut members = Vec::new();
            let mut stack = vec![start];
            while let Some(n) = stack.pop() {
                if group_of[n].is_some() {
                    continue;
                }
                group_of[n] = Some(id);
                members.push(n);
                stack.extend(nodes[n].parents.iter().chain(&nodes[n].children).copied());
                if let NodeKind::Processor { stores } = &nodes[n].kind {
                    for s in stores {
                        stack.extend(users.get(s.as_str()).into_iter().flatten().copied());
                    }
                }
            }
            members.sort_unstable();
            groups.push(members);
        }
        // A group whose processors keep a global store is that store's updater.
        let global_groups = groups
            .iter()
            .enumerate()
            .filter(|(_, members)| {
                members.iter().any(|&n| matches!(&nodes[n].kind, NodeKind::Source { .. }))
                    && members.iter().all(|&n| match &nodes[n].kind {
                        NodeKind::Processor { stores } => stores.iter().all(|s| global_names.contains(s.as_str())),
                        NodeKind::Source { .. } => true,
                        NodeKind::Sink { .. } => false,
                    })
                    && members
                        .iter()
                        .any(|&n| matches!(&nodes[n].kind, NodeKind::Processor { stores } if !stores.is_empty()))
            })
            .map(|(id, _)| id)
            .collect();
        let topology = Topology { nodes, stores, global_stores, internal_topics, groups, global_groups };
        topology.check_acyclic()?;
        Ok(topology)
    }

    /// Refuses a topology whose records could go round forever: a sub-topology that writes a
    /// topic read by itself or by a sub-topology upstream of it.
    fn check_acyclic(&self) -> crate::Result<()> {
        let subs = self.all_subtopologies();
        // Depth-first search over "writes a topic read by" edges; 0 new, 1 on the path, 2 done.
        fn visit(at: usize, subs: &[Subtopology], state: &mut [u8], path: &mut Vec<String>) -> Option<Vec<String>> {
            state[at] = 1;
            for topic in &subs[at].sink_topics {
                for next in subs.iter().filter(|s| s.source_topics.contains(topic)) {
                    path.push(format!("sub-topology {} writes {topic}, read by sub-topology {}", at, next.id));
                    if state[next.id] == 1 {
                        return Some(path.clone());
                    }
                    if state[next.id] == 0 {
                        if let Some(cycle) = visit(next.id, subs, state, path) {
                            return Some(cycle);
                        }
                    }
                    path.pop();
                }
            }
            state[at] = 2;
            None
        }
        let mut state = vec![0u8; subs.len()];
        for start in 0..subs.len() {
            if state[start] == 0 {
                if let Some(cycle) = visit(start, &subs, &mut state, &mut Vec::new()) {
                    return Err(crate::Error::Topology(format!(
                        "the topology has a cycle through topics ({}); records would go round without end",
                        cycle.join("; ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// The stores of global tables.
    pub fn global_stores(&self) -> &[StoreBuilder] {
        &self.global_stores
    }

    /// The sub-topologies that fill global stores: each runs once per instance over every
    /// partition of its topics, before and beside the tasks.
    pub fn global_subtopologies(&self) -> Vec<Subtopology> {
        self.all_subtopologies().into_iter().filter(|s| self.global_groups.contains(&s.id)).collect()
    }

    /// The topics the topology writes and reads itself (repartition topics).
    pub fn internal_topics(&self) -> &[InternalTopic] {
        &self.internal_topics
    }

    /// The state stores of sub-topology `id`.
    pub fn stores_of(&self, id: usize) -> Vec<&StoreBuilder> {
        let names: BTreeSet<&str> = self.groups[id]
            .iter()
            .filter_map(|&n| match &self.nodes[n].kind {
                NodeKind::Processor { stores } => Some(stores.iter().map(String::as_str)),
                _ => None,
            })
            .flatten()
            .collect();
        self.stores.iter().filter(|s| names.contains(s.name())).collect()
    }

    /// The sub-topologies that run as tasks (one per partition), in description order.
    pub fn subtopologies(&self) -> Vec<Subtopology> {
        self.all_subtopologies().into_iter().filter(|s| !self.global_groups.contains(&s.id)).collect()
    }

    fn all_subtopologies(&self) -> Vec<Subtopology> {
        self.groups
            .iter()
            .enumerate()
            .map(|(id, members)| {
                let mut source_topics = BTreeSet::new();
                let mut sink_topics = BTreeSet::new();
                for &n in members {
                    match &self.nodes[n].kind {
                        NodeKind::Source { topics } => source_topics.extend(topics.iter().cloned()),
                        NodeKind::Sink { topic } => {
                            sink_topics.insert(topic.clone());
                        }
                        NodeKind::Processor { .. } => {}
                    }
                }
                Subtopology {
                    id,
                    source_topics: source_topics.into_iter().collect(),
                    sink_topics: sink_topics.into_iter().collect(),
                }
            })
            .collect()
    }

    /// A fresh instance of sub-topology `id` for one task.
    pub fn build_task(&self, id: usize) -> TaskGraph {
        let members = &self.groups[id];
        let local = |n: usize| members.binary_search(&n).expect("edges stay inside a sub-topology");
        let mut slots = Vec::with_capacity(members.len());
        let mut sources = Vec::new();
        let mut tables = BTreeSet::new();
        for (i, &n) in members.iter().enumerate() {
            let spec = &self.nodes[n];
            if let NodeKind::Source { topics } = &spec.kind {
                sources.extend(topics.iter().map(|t| (t.clone(), i)));
                if spec.feeds_table {
                    tables.extend(topics.iter().cloned());
                }
            }
            slots.push(Slot {
                name: spec.name.clone(),
                children: spec.children.iter().map(|&c| local(c)).collect(),
                stores: match &spec.kind {
                    NodeKind::Processor { stores } => stores.clone(),
                    _ => Vec::new(),
                },
                node: Some((spec.make)()),
            });
        }
        TaskGraph { slots, sources, tables }
    }

    /// A stable text description, as Kafka Streams prints it: sub-topologies, then each node with
    /// its topics or stores and its edges. Generated names are marked `(generated name)`.
    pub fn describe(&self) -> String {
        let mut out = String::from("Topologies:\n");
        let names = |ids: &[usize]| ids.iter().map(|&i| self.nodes[i].name.as_str()).collect::<Vec<_>>().join(", ");
        for (id, members) in self.groups.iter().enumerate() {
            let global =
                if self.global_groups.contains(&id) { " for global store (will not generate tasks)" } else { "" };
            let _ = writeln!(out, "   Sub-topology: {id}{global}");
            for &n in members {
                let node = &self.nodes[n];
                let generated = if node.named { "" } else { " (generated name)" };
                let _ = match &node.kind {
                    NodeKind::Source { topics } => {
                        writeln!(out, "    Source: {}{generated} (topics: [{}])", node.name, topics.join(", "))
                    }
                    NodeKind::Processor { stores } => {
                        writeln!(out, "    Processor: {}{generated} (stores: [{}])", node.name, stores.join(", "))
                    }
                    NodeKind::Sink { topic } => writeln!(out, "    Sink: {}{generated} (topic: {topic})", node.name),
                };
                if !node.children.is_empty() {
                    let _ = writeln!(out, "      --> {}", names(&node.children));
                }
                if !node.parents.is_empty() {
                    let _ = writeln!(out, "      <-- {}", names(&node.parents));
                }
            }
        }
        out
    }

    /// The graph in Graphviz DOT: topics as ellipses, nodes as boxes, one cluster per
    /// sub-topology.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph topology {\n  rankdir=LR;\n");
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\\\""));
        let mut topics = BTreeSet::new();
        for (id, members) in self.groups.iter().enumerate() {
            let _ = writeln!(out, "  subgraph cluster_{id} {{\n    label=\"Sub-topology {id}\";");
            for &n in members {
                let _ = writeln!(out, "    {} [shape=box];", quote(&self.nodes[n].name));
            }
            out.push_str("  }\n");
        }
        for node in &self.nodes {
            for &c in &node.children {
                let _ = writeln!(out, "  {} -> {};", quote(&node.name), quote(&self.nodes[c].name));
            }
            match &node.kind {
                NodeKind::Source { topics: ts } => {
                    for t in ts {
                        topics.insert(t.clone());
                        let _ = writeln!(out, "  {} -> {};", quote(&format!("topic {t}")), quote(&node.name));
                    }
                }
                NodeKind::Sink { topic } => {
                    topics.insert(topic.clone());
                    let _ = writeln!(out, "  {} -> {};", quote(&node.name), quote(&format!("topic {topic}")));
                }
                NodeKind::Processor { .. } => {}
            }
        }
        for t in topics {
            let _ = writeln!(out, "  {} [shape=ellipse];", quote(&format!("topic {t}")));
        }
        out.push_str("}\n");
        out
    }
}
