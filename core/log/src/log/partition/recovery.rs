//! Opening a partition's directory after a clean shutdown or a crash: segments found, indexes
//! trusted or rebuilt, torn tails cut, leftovers of interrupted operations removed.

use super::*;

pub(super) fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

pub(super) fn parse_base(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

impl Partition {
    /// Opens an existing partition directory, repairing what a crash left behind.
    pub(crate) fn open(
        dir: PathBuf,
        topic: &str,
        index: u32,
        config: Arc<TopicConfig>,
        durability: Host,
        clean_shutdown: bool,
    ) -> Result<(Arc<Self>, RecoveryReport)> {
        let mut report =
            RecoveryReport { topic: topic.to_owned(), partition: index, clean_shutdown, ..Default::default() };
        let interval = config.index_interval_bytes;
        let names = list_dir(&dir)?;

        // Compaction leftovers first: `.cleaned` files were never committed; a `.swap` file was, and
        // replaces every segment it covers.
        for name in &names {
            if name.ends_with(".cleaned") {
                remove_if_exists(&dir.join(name))?;
                report.n_cleaned_discarded += 1;
            }
        }
        let mut bases: Vec<i64> = names.iter().filter_map(|n| parse_base(n, ".log")).collect();
        for name in &names {
            let Some((swap_base, end)) = segment::parse_swap_name(name) else { continue };
            let swap_path = dir.join(name);
            for &base in bases.iter().filter(|&&b| b > swap_base && b < end) {
                Segment::delete_files(&dir, base)?;
            }
            bases.retain(|&b| b <= swap_base || b >= end);
            remove_if_exists(&segment::index_path(&dir, swap_base))?;
            remove_if_exists(&segment::time_index_path(&dir, swap_base))?;
            std::fs::rename(&swap_path, segment::log_path(&dir, swap_base)).at(&swap_path)?;
            if !bases.contains(&swap_base) {
                bases.push(swap_base);
                bases.sort_unstable();
            }
            report.n_swaps_completed += 1;
        }
        // Index files without a log file are leftovers of deleted segments.
        for name in &names {
            for suffix in [".index", ".timeindex"] {
                if let Some(base) = parse_base(name, suffix) {
                    if !bases.contains(&base) {
                        remove_if_exists(&dir.join(name))?;
                    }
                }
            }
        }

        let checkpoint = match Checkpoint::read(&dir) {
            Ok(cp) => cp,
            Err(error) => {
                tracing::warn!(partition = %dir.display(), %error, "checkpoint unreadable; recovering every segment");
                None
            }
        };
        let first_base = bases.first().copied().unwrap_or(0);
        // Compaction only rewrites segments below the recovery point as last written to the
        // checkpoint, so segments from there on have no gaps and recovery may insist on contiguous
        // offsets in them. Without a checkpoint nothing is known, and gaps are allowed everywhere.
        let gaps_below = checkpoint.as_ref().map_or(i64::MAX, |c| c.recovery_point);
        let mut checkpoint = checkpoint.unwrap_or(Checkpoint {
            log_start_offset: first_base,
            recovery_point: first_base,
            high_watermark: 0,
            cleaner_offset: first_base,
            leader_epochs: vec![(0, first_base)],
        });
        let trust_all = clean_shutdown;
        let recovery_point = checkpoint.recovery_point;

        // Segments wholly below the log start offset were being deleted when the process stopped.
        while bases.len() > 1 && bases[1] <= checkpoint.log_start_offset {
            Segment::delete_files(&dir, bases[0])?;
            bases.remove(0);
            report.n_segments_deleted += 1;
        }

        let mut segments = BTreeMap::new();
        // Segments whose files recovery changed, to sync before the partition is used.
        let mut touched = Vec::new();
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let is_last = i + 1 == bases.len();
            let synced = !is_last && bases[i + 1] <= recovery_point;
            let contiguous = base >= gaps_below;
            let (segment, recovery) = if is_last {
                if trust_all {
                    Segment::open_active_clean(&dir, base, interval, contiguous)?
                } else {
                    report.n_segments_scanned += 1;
                    Segment::open_recover(&dir, base, true, interval, contiguous)?
                }
            } else if trust_all || synced {
                Segment::open_sealed(&dir, base, bases[i + 1], interval, contiguous)?
            } else {
                report.n_segments_scanned += 1;
                let (segment, recovery) = Segment::open_recover(&dir, base, false, interval, contiguous)?;
                if !recovery.valid || segment.next_offset > bases[i + 1] {
                    // The log must be contiguous: drop everything after a damaged segment and make
                    // this one active again.
                    for &later in &bases[i + 1..] {
                        Segment::delete_files(&dir, later)?;
                        report.n_segments_deleted += 1;
                    }
                    bases.truncate(i + 1);
                    drop(segment);
                    report.bytes_truncated += recovery.bytes_truncated;
                    let (segment, again) = Segment::open_recover(&dir, base, true, interval, contiguous)?;
                    report.n_indexes_rebuilt += usize::from(again.indexes_rebuilt);
                    touched.push(base);
                    segments.insert(base, segment);
                    break;
                }
                (segment, recovery)
            };
            report.bytes_truncated += recovery.bytes_truncated;
            report.n_indexes_rebuilt += usize::from(recovery.indexes_rebuilt);
            if recovery.indexes_rebuilt || recovery.bytes_truncated > 0 {
                touched.push(base);
            }
            segments.insert(base, segment);
            i += 1;
        }
        if segments.is_empty() {
            let base = checkpoint.log_start_offset.max(0);
            segments.insert(base, Segment::create(&dir, base)?);
        }
        report.n_segments = segments.len();

        let leo = segments.values().next_back().expect("non-empty").next_offset;
        checkpoint.log_start_offset =
            checkpoint.log_start_offset.clamp(segments.keys().next().copied().unwrap_or(0), leo.max(0));
        checkpoint.leader_epochs.retain(|&(_, start)| start <= leo);
        if checkpoint.leader_epochs.is_empty() {
            checkpoint.leader_epochs.push((0, checkpoint.log_start_offset));
        }
        if !touched.is_empty() || report.repaired() {
            // Make what recovery rebuilt or cut durable before anyone relies on it.
            for base in &touched {
                if let Some(segment) = segments.get(base) {
                    segment.sync()?;
                    segment.indexes.sync()?;
                }
            }
            sync_dir(&dir)?;
        }
        let partition = Self::assemble(dir, topic, index, config, durability, segments, checkpoint);
        report.producer_batches_replayed = partition.load_producer_state(&mut partition.lock())?;
        remove_if_exists(&partition.dir.join(TRANSACTIONAL_FILE))?;
        partition.write_checkpoint()?;
        if report.repaired() {
            tracing::info!(?report, "partition recovered");
        }
        Ok((partition, report))
    }
}
