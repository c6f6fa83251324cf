//! The log's background work: after each drained write, a flush queued when durability needs one;
//! the flusher threads that run those flushes (fsync group commit, `flush.ms`, interval
//! durability); and the maintenance thread (high-watermark checkpoints of replicated copies,
//! retention, segment deletion, producer expiry, compaction).

use super::*;

/// After a drain wrote something: queue a flush when durability (the log's, or the topic's
/// `flush.messages`) needs one, and wake readers.
pub(super) fn after_write(shared: &Shared, partition: &Arc<Partition>) {
    let durability = partition.durability();
    let needs = match durability {
        Durability::Fsync => true,
        Durability::Interval { .. } | Durability::OsCache => partition.has_pending_seal() || partition.flush_due(),
    };
    if needs && !partition.flush_queued.swap(true, Ordering::AcqRel) {
        shared.flush.queue.lock().expect("flush queue").push_back(partition.clone());
        shared.flush.ready.notify_one();
    }
    if durability != Durability::Fsync {
        shared.data_arrived.send_modify(|n| *n += 1);
    }
    shared.data_written.send_modify(|n| *n += 1);
}

/// How often, without fsync acknowledgements, the flusher looks for partitions whose topic's
/// `flush.ms` has passed.
const FLUSH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

pub(super) fn flusher(shared: &Arc<Shared>) {
    let interval = match shared.config.durability {
        Durability::Interval { flush_interval_ms } => Some(Duration::from_millis(flush_interval_ms.max(1))),
        _ => None,
    };
    // With fsync acknowledgements every append is synced; otherwise the flusher also wakes to
    // check topics' `flush.ms`.
    let tick = match shared.config.durability {
        Durability::Fsync => None,
        _ => Some(interval.map_or(FLUSH_CHECK_INTERVAL, |i| i.min(FLUSH_CHECK_INTERVAL))),
    };
    let mut last_periodic = std::time::Instant::now();
    let mut last_tick = std::time::Instant::now();
    loop {
        let next = {
            let mut queue = shared.flush.queue.lock().expect("flush queue");
            loop {
                if let Some(p) = queue.pop_front() {
                    break Some(p);
                }
                if shared.shutdown.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(tick) = tick {
                    if last_tick.elapsed() >= tick {
                        break None;
                    }
                    queue = shared.flush.ready.wait_timeout(queue, tick).expect("flush queue").0;
                } else {
                    queue = shared.flush.ready.wait(queue).expect("flush queue");
                }
            }
        };
        match next {
            Some(partition) => {
                // One flusher per partition at a time: two fsyncs of one file would only queue
                // behind each other. The flusher holding it goes round again while new appends
                // keep arriving.
                let Ok(flushing) = partition.flush_lock.try_lock() else { continue };
                loop {
                    partition.flush_queued.store(false, Ordering::Release);
                    if let Err(error) = partition.flush() {
                        tracing::error!(partition = ?partition, %error, "flush failed; the partition stops taking appends");
                        partition.fail(error.to_string());
                        storage_failed(shared, &partition, &error);
                        break;
                    }
                    if partition.durability() == Durability::Fsync {
                        shared.data_arrived.send_modify(|n| *n += 1);
                    }
                    if !partition.flush_queued.load(Ordering::Acquire) {
                        break;
                    }
                }
                drop(flushing);
                // An append that queued the partition after the last check, while it was still
                // locked here, was skipped by the flusher that popped it: queue it again.
                if partition.flush_queued.load(Ordering::Acquire) {
                    shared.flush.queue.lock().expect("flush queue").push_back(partition);
                    shared.flush.ready.notify_one();
                }
            }
            None => {
                last_tick = std::time::Instant::now();
                let periodic = interval.is_some_and(|i| last_periodic.elapsed() >= i);
                if periodic {
                    last_periodic = last_tick;
                }
                for partition in all_partitions(shared) {
                    if (periodic && partition.needs_flush()) || partition.flush_due() {
                        if let Err(error) = partition.flush() {
                            tracing::error!(partition = ?partition, %error, "flush failed");
                            partition.fail(error.to_string());
                            storage_failed(shared, &partition, &error);
                        }
                    }
                }
            }
        }
    }
}

/// Notes the storage's first failure for whoever watches it (see `Log::watch_storage_failure`).
fn storage_failed(shared: &Shared, partition: &Partition, error: &crate::error::Error) {
    shared.storage_failed.send_if_modified(|failed| {
        let first = failed.is_none();
        if first {
            *failed = Some(format!("flushing {partition:?}: {error}"));
        }
        first
    });
}

pub(super) fn maintenance(shared: &Arc<Shared>) {
    loop {
        {
            let (lock, wake) = &shared.maintenance_wake;
            let stop = lock.lock().expect("maintenance lock");
            let (stop, _) = wake
                .wait_timeout_while(stop, shared.config.maintenance_interval, |stop| !*stop)
                .expect("maintenance lock");
            if *stop {
                return;
            }
        }
        if let Err(error) = run_maintenance(shared, shared.config.clock.now_ms()) {
            tracing::warn!(%error, "maintenance pass failed");
        }
    }
}

pub(super) fn run_maintenance(shared: &Shared, now: i64) -> Result<Vec<(String, u32, Option<CleanStats>)>> {
    let _guard = shared.maintenance_lock.lock().expect("maintenance lock");
    let mut results = Vec::new();
    for partition in all_partitions(shared) {
        if shared.shutdown.load(Ordering::SeqCst) {
            break;
        }
        if shared.config.replicated {
            if let Err(error) = partition.checkpoint_high_watermark() {
                tracing::warn!(partition = ?partition, %error, "high watermark checkpoint failed");
            }
        }
        partition.apply_retention(now)?;
        partition.delete_segments_below_start()?;
        partition.expire_producers(now, shared.config.producer_id_expiration_ms);
        let stats = cleaner::clean(&partition, now, shared.config.cleaner_dedupe_buffer_bytes, &shared.shutdown)?;
        results.push((partition.topic().to_owned(), partition.index(), stats));
    }
    Ok(results)
}
