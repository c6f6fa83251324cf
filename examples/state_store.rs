//! A RocksDB key-value store with a changelog: count words, commit, stop, and come back restored,
//! with the restore drawn as a progress bar. Run with `cargo run --example state_store`.
//!
//! Store calls block (RocksDB I/O, waits for the changelog), so they run on this plain thread; the
//! changelog's futures run on the tokio runtime handed to `Changelogs`.

#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::sync::Arc;

use freshet::prelude::*;

/// Draws restore progress on one terminal line.
struct ProgressBar;

impl RestoreListener for ProgressBar {
    fn on_start(&self, p: &RestoreProgress) {
        println!("restoring {} from {} offsets {}..{}", p.store, p.changelog, p.start_offset, p.end_offset);
    }
    fn on_progress(&self, p: &RestoreProgress) {
        let done = (p.fraction_done() * 30.0) as usize;
        print!(
            "\r[{}{}] {:>3.0}%  {} records  {:.1} MB/s  {} offsets left",
            "#".repeat(done),
            " ".repeat(30 - done),
            p.fraction_done() * 100.0,
            p.n_records,
            p.mb_per_sec(),
            p.remaining_offsets()
        );
        let _ = std::io::stdout().flush();
    }
    fn on_end(&self, p: &RestoreProgress) {
        println!("\nrestored {} records in {:.2} s", p.n_records, p.elapsed.as_secs_f64());
    }
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let log = runtime.block_on(Embedded::open(dir.path().join("log"), LogConfig::default()))?;
    let backend = Backend::rocksdb(64 << 20)?;
    let changelogs = Changelogs::new(log.clone(), runtime.handle().clone())?;
    let config = |listener: Option<Arc<dyn RestoreListener>>| {
        let mut c = TaskConfig::new(
            dir.path().join("state"),
            "word-count",
            "0_0",
            0,
            1,
            backend.clone(),
            Some(changelogs.clone()),
        );
        c.restore_listener = listener;
        c
    };

    let text = "the quick brown fox jumps over the lazy dog and the dog sleeps";
    let mut task = TaskState::open(config(None))?;
    task.add_kv_store::<String, i64>("counts", StoreOptions::default())?;
    let counts = task.kv_store::<String, i64>("counts")?;
    for round in 0..2_000 {
        for word in text.split(' ') {
            let n = counts.get(&word.to_string())?.unwrap_or(0);
            counts.put(&word.to_string(), &(n + 1))?;
        }
        // Distinct keys too, so the restore has something to show.
        counts.put(&format!("round-{round:05}"), &1)?;
    }
    task.commit()?;
    // Drop the local files as if the machine were new: the changelog has everything.
    let task_dir = task.dir().to_path_buf();
    task.close()?;
    std::fs::remove_dir_all(&task_dir)?;

    let mut task = TaskState::open(config(Some(Arc::new(ProgressBar))))?;
    task.add_kv_store::<String, i64>("counts", StoreOptions::default())?;
    let counts = task.kv_store::<String, i64>("counts")?;
    for entry in counts.range(&"a".to_string(), &"z".to_string())? {
        let (word, n) = entry?;
        if !word.starts_with("round-") {
            println!("{word:>8} {n}");
        }
    }
    task.close()?;
    runtime.block_on(log.close())?;
    Ok(())
}
