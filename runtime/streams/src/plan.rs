//! What the driver and the runtime both work out from a topology before running it: how many
//! partitions each repartition topic gets, and whether the topics a sub-topology reads together
//! are co-partitioned.

use std::collections::{BTreeMap, BTreeSet};

use freshet_dsl::Topology;

use crate::error::{Error, Result};

/// Sizes the repartition topics `counts` lacks: like the other topics their reader reads (they
/// must be co-partitioned), else like the largest topic their writer reads, as Kafka Streams
/// does. `counts` holds every other topic the sub-topologies read.
pub(crate) fn size_internal_topics(topology: &Topology, counts: &mut BTreeMap<String, u32>) -> Result<()> {
    let subs = topology.subtopologies();
    let unsized_topics: BTreeSet<String> =
        topology.internal_topics().iter().map(|t| t.name.clone()).filter(|t| !counts.contains_key(t)).collect();
    // Repeat until nothing changes: a topic's size can depend on another's.
    loop {
        let mut changed = false;
        for topic in &unsized_topics {
            if counts.contains_key(topic) {
                continue;
            }
            let reader = subs.iter().find(|s| s.source_topics.contains(topic));
            let sibling =
                reader.and_then(|s| s.source_topics.iter().filter(|t| *t != topic).find_map(|t| counts.get(t)));
            let n = match sibling {
                Some(&n) => Some(n),
                None => {
                    let inputs: Vec<&String> = subs
                        .iter()
                        .filter(|s| s.sink_topics.contains(topic))
                        .flat_map(|s| s.source_topics.iter())
                        .collect();
                    if inputs.iter().all(|t| counts.contains_key(*t)) {
                        inputs.iter().map(|t| counts[*t]).max()
                    } else {
                        None
                    }
                }
            };
            if let Some(n) = n {
                counts.insert(topic.clone(), n);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    match unsized_topics.iter().find(|t| !counts.contains_key(*t)) {
        Some(t) => Err(Error::Config(format!("cannot tell how many partitions repartition topic {t} needs"))),
        None => Ok(()),
    }
}

/// Checks that each sub-topology's source topics have one partition count; returns it per
/// sub-topology id.
pub(crate) fn check_copartitioned(topology: &Topology, counts: &BTreeMap<String, u32>) -> Result<BTreeMap<usize, u32>> {
    let mut out = BTreeMap::new();
    for sub in topology.subtopologies() {
        let with_counts: Vec<(&String, u32)> =
            sub.source_topics.iter().map(|t| (t, counts.get(t).copied().unwrap_or(0))).collect();
        if let Some(&(first, n)) = with_counts.first() {
            if let Some(&(other, m)) = with_counts.iter().find(|(_, m)| *m != n) {
                return Err(Error::Config(format!(
                    "sub-topology {} reads {first} ({n} partitions) and {other} ({m} partitions): \
                     topics read together must have the same number of partitions",
                    sub.id
                )));
            }
            out.insert(sub.id, n);
        }
    }
    Ok(out)
}
