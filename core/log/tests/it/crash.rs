//! Crash tests: a writer process killed at random moments, and files cut or damaged at random
//! bytes. After reopening, every acknowledged record is present, in order, exactly once, and no
//! unacknowledged bytes show up as garbage.
//!
//! The writer is this test binary itself, started again with `FRESHET_CRASH_WRITER` set: the
//! test `crash_writer_process` does nothing in a normal run.
//! `FRESHET_SLOW_TESTS=1` runs many more rounds.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use freshet_log::config::Durability;
use freshet_log::Log;

use crate::support::{self, configs, read_all, text, values_batch};

const WRITER_ENV: &str = "FRESHET_CRASH_WRITER";

fn rounds(normal: usize, slow: usize) -> usize {
    if std::env::var_os("FRESHET_SLOW_TESTS").is_some() {
        slow
    } else {
        normal
    }
}

/// The writer: appends batches `b<i>` of 1-20 records, several in flight, and prints
/// `ack <batch> <base_offset> <n>` as each is acknowledged.
#[test]
#[allow(clippy::print_stdout)] // the parent reads the acknowledgements from stdout
fn crash_writer_process() {
    let Some(dir) = std::env::var_os(WRITER_ENV) else { return };
    let compact = std::env::var_os("FRESHET_CRASH_COMPACT").is_some();
    let life = std::env::var("FRESHET_CRASH_LIFE").unwrap_or_default();
    // With a file-size limit (the disk "fills up"), failed appends are reported, not fatal.
    let full_disk = std::env::var_os("FRESHET_CRASH_FULL_DISK").is_some();
    let retention = std::env::var_os("FRESHET_CRASH_RETENTION").is_some();
    let n_errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async move {
        let log = Log::open(&dir, support::config(Durability::Fsync)).await.unwrap();
        let topic_configs = if compact {
            configs(&[("cleanup.policy", "compact"), ("segment.bytes", "4000"), ("min.cleanable.dirty.ratio", "0.01")])
        } else if full_disk {
            configs(&[("index.interval.bytes", "500")])
        } else if retention {
            configs(&[("segment.bytes", "4000"), ("retention.bytes", "40000"), ("retention.ms", "-1")])
        } else {
            configs(&[("segment.bytes", "20000"), ("index.interval.bytes", "500")])
        };
        if log.describe_topic("t").is_err() {
            log.create_topic("t", 1, topic_configs).await.unwrap();
        }
        let start = log.partition("t", 0).unwrap().offsets().2;
        println!("start {start}");
        let mut in_flight = tokio::task::JoinSet::new();
        for i in 0u64.. {
            let n = 1 + (i * 7 % 20) as usize;
            let batch = if compact {
                let mut b = freshet_log::batch::BatchBuilder::default();
                for j in 0..n {
                    let key = format!("k{}", (i as usize * 3 + j) % 40);
                    b.push(Some(key.as_bytes()), Some(format!("b{i}-{j}").as_bytes()), &[], 1000);
                }
                bytes::BytesMut::from(&b.finish()[..])
            } else {
                values_batch(&format!("L{life}b{i}"), n, 1000)
            };
            let log2 = log.clone();
            let errors = n_errors.clone();
            in_flight.spawn(async move {
                match log2.append("t", 0, batch).await {
                    Ok(info) => println!("ack {i} {} {n}", info.base_offset),
                    Err(e) if full_disk => {
                        println!("err {i} {e}");
                        errors.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(e) => panic!("append failed: {e}"),
                }
            });
            if n_errors.load(std::sync::atomic::Ordering::SeqCst) >= 20 {
                while in_flight.join_next().await.is_some() {}
                println!("done");
                return;
            }
            while in_flight.len() >= 8 {
                in_flight.join_next().await.unwrap().unwrap();
            }
            if (compact || retention) && i % 50 == 49 {
                log.run_maintenance(i64::MAX / 4).await.unwrap();
            }
        }
    });
}

/// Acknowledged batches: (batch number, base offset, record count).
fn writer_command() -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["crash::crash_writer_process", "--exact", "--nocapture", "--test-threads", "1"]);
    cmd
}

fn run_writer_and_kill(dir: &Path, compact: bool, life: usize, kill_after: Duration) -> Vec<(u64, i64, usize)> {
    run_writer_with_env_and_kill(
        dir,
        if compact { "FRESHET_CRASH_COMPACT" } else { "FRESHET_CRASH_PLAIN" },
        life,
        kill_after,
    )
}

fn run_writer_with_env_and_kill(dir: &Path, mode: &str, life: usize, kill_after: Duration) -> Vec<(u64, i64, usize)> {
    let mut cmd = writer_command();
    cmd.env(mode, "1");
    cmd.env(WRITER_ENV, dir).env("FRESHET_CRASH_LIFE", life.to_string()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first_ack_tx, first_ack) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if parts.first() == Some(&"ack") && parts.len() == 4 {
                acks.push((parts[1].parse().unwrap(), parts[2].parse().unwrap(), parts[3].parse().unwrap()));
                let _ = first_ack_tx.send(());
            }
        }
        acks
    });
    // The kill moment is random, counted from the first acknowledgement, so that a slow start on a
    // loaded machine cannot leave a round with nothing to check.
    let _ = first_ack.recv_timeout(Duration::from_secs(120));
    std::thread::sleep(kill_after);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_loses_no_acknowledged_record() {
    let mut rng = fastrand::Rng::with_seed(support::seed(0x5eed_c0de));
    for round in 0..rounds(3, 30) {
        let dir = tempfile::tempdir().unwrap();
        let mut acked = Vec::new();
        // Several lives: each writer is killed, the next one recovers and continues.
        for life in 0..rounds(2, 4) {
            let kill_after = Duration::from_millis(rng.u64(0..700));
            let acks = tokio::task::spawn_blocking({
                let dir = dir.path().to_owned();
                move || run_writer_and_kill(&dir, false, life, kill_after)
            })
            .await
            .unwrap();
            acked.push(acks);
        }
        let log = support::open(dir.path()).await;
        let records = read_all(&log, "t", 0).await;
        // Everything in the log is whole batches in order: offsets 0, 1, 2, ...
        for (i, (offset, _, _)) in records.iter().enumerate() {
            assert_eq!(*offset, i as i64, "round {round}: offsets must be dense and in order");
        }
        // Every acknowledged batch is there, exactly, at the offsets it was acknowledged with.
        let mut n_acked = 0;
        for (life, acks) in acked.iter().enumerate() {
            for &(batch, base, n) in acks {
                for j in 0..n {
                    let (offset, _, value) = &records
                        .get((base + j as i64) as usize)
                        .unwrap_or_else(|| panic!("round {round}: acknowledged offset {} is missing", base + j as i64));
                    assert_eq!(*offset, base + j as i64);
                    assert_eq!(text(value).unwrap(), format!("L{life}b{batch}-{j}"), "round {round} offset {offset}");
                }
                n_acked += n;
            }
        }
        assert!(n_acked > 0, "round {round}: the writer acknowledged nothing; the test proves nothing");
        // No record appears twice (every value names its batch and position).
        let mut values: Vec<String> = records.iter().map(|r| text(&r.2).unwrap()).collect();
        let n = values.len();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), n, "round {round}: a record appears twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_during_compaction_keeps_every_latest_value() {
    let mut rng = fastrand::Rng::with_seed(support::seed(0xc0_4ac7));
    for round in 0..rounds(2, 20) {
        let dir = tempfile::tempdir().unwrap();
        let kill_after = Duration::from_millis(rng.u64(0..1500));
        let acks = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || run_writer_and_kill(&dir, true, 0, kill_after)
        })
        .await
        .unwrap();
        assert!(!acks.is_empty());
        let log = support::open(dir.path()).await;
        let records = read_all(&log, "t", 0).await;
        // The latest acknowledged value of each key must be present, or be superseded by a later
        // (unacknowledged but whole) write of the same key.
        let mut latest = std::collections::BTreeMap::new();
        for &(batch, base, n) in &acks {
            for j in 0..n {
                let key = format!("k{}", (batch as usize * 3 + j) % 40);
                let offset = base + j as i64;
                let e = latest.entry(key).or_insert((offset, String::new()));
                if offset >= e.0 {
                    *e = (offset, format!("b{batch}-{j}"));
                }
            }
        }
        for (key, (offset, value)) in latest {
            let found = records.iter().rev().find(|r| text(&r.1).as_deref() == Some(key.as_str()));
            let (found_offset, _, found_value) = found.unwrap_or_else(|| panic!("round {round}: key {key} vanished"));
            assert!(*found_offset >= offset, "round {round}: key {key} went back from {offset} to {found_offset}");
            if *found_offset == offset {
                assert_eq!(text(found_value).unwrap(), value);
            }
        }
        let mut last = -1;
        for r in &records {
            assert!(r.0 > last, "round {round}: offsets must increase");
            last = r.0;
        }
    }
}

/// Writes `n` batches durably and closes without a clean shutdown; returns the segment path, the
/// size of the acknowledged prefix and the values in order.
async fn write_then_stop(dir: &Path, n_acked: usize, n_unacked: usize) -> (std::path::PathBuf, u64, Vec<String>) {
    let log = support::open(dir).await;
    log.create_topic("t", 1, configs(&[("index.interval.bytes", "300")])).await.unwrap();
    let mut values = Vec::new();
    for i in 0..n_acked + n_unacked {
        log.append("t", 0, values_batch(&format!("b{i}"), 1 + i % 5, 1000 + i as i64)).await.unwrap();
        values.extend((0..1 + i % 5).map(|j| format!("b{i}-{j}")));
        if i + 1 == n_acked {
            // Remember how many records the acknowledged prefix holds.
            values.push(String::from("--acked--"));
        }
    }
    let path = log.partition("t", 0).unwrap().dir().join(format!("{:020}.log", 0));
    drop(log);
    // The acknowledged prefix: the bytes of the first n_acked batches.
    let bytes = std::fs::read(&path).unwrap();
    let mut acked_len = 0usize;
    for (i, b) in freshet_log::batch::Batches::new(&bytes).enumerate() {
        if i == n_acked {
            break;
        }
        acked_len += b.unwrap().size();
    }
    (path, acked_len as u64, values)
}

fn split_acked(values: &[String]) -> (Vec<String>, Vec<String>) {
    let at = values.iter().position(|v| v == "--acked--").unwrap();
    (values[..at].to_vec(), values[at + 1..].to_vec())
}

#[tokio::test]
async fn torn_and_corrupt_tails_are_cut_and_acknowledged_data_survives() {
    let mut rng = fastrand::Rng::with_seed(support::seed(0x7043));
    for round in 0..rounds(40, 400) {
        let dir = tempfile::tempdir().unwrap();
        let (path, acked_len, values) = write_then_stop(dir.path(), 30, 20).await;
        let (acked, unacked) = split_acked(&values);
        let len = std::fs::metadata(&path).unwrap().len();
        // Damage only what a crash could damage: bytes after the acknowledged (synced) prefix.
        let at = rng.u64(acked_len..len);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        match rng.u8(0..3) {
            0 => file.set_len(at).unwrap(),
            1 => {
                let n = rng.usize(1..64);
                let garbage: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
                file.write_all_at(&garbage, at).unwrap();
            }
            _ => {
                // A torn write: zeros from `at` on (blocks that never reached the disk).
                let zeros = vec![0u8; (len - at) as usize];
                file.write_all_at(&zeros, at).unwrap();
            }
        }
        drop(file);
        let log = support::open(dir.path()).await;
        let report = log.recovery_reports().into_iter().find(|r| r.topic == "t").unwrap();
        let got: Vec<String> = read_all(&log, "t", 0).await.iter().map(|r| text(&r.2).unwrap()).collect();
        assert!(got.len() >= acked.len(), "round {round}: lost acknowledged records ({report:?})");
        assert_eq!(got[..acked.len()], acked[..], "round {round}");
        // What survives beyond is a prefix of what was written after: whole batches, no garbage.
        let extra = &got[acked.len()..];
        assert_eq!(extra, &unacked[..extra.len()], "round {round}: garbage after the acknowledged prefix");
        // And the log takes appends again at the right offset.
        let next = log.append("t", 0, values_batch("after", 1, 1)).await.unwrap();
        assert_eq!(next.base_offset, got.len() as i64, "round {round}");
    }
}

#[tokio::test]
async fn damaged_or_missing_indexes_and_checkpoints_are_rebuilt() {
    let mut rng = fastrand::Rng::with_seed(support::seed(0x1de));
    for round in 0..rounds(12, 100) {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = support::open(dir.path()).await;
            log.create_topic("t", 1, configs(&[("segment.bytes", "2000"), ("index.interval.bytes", "200")]))
                .await
                .unwrap();
            for i in 0..200 {
                log.append("t", 0, values_batch(&format!("b{i}"), 2, 1000 + i)).await.unwrap();
            }
            if round % 2 == 0 {
                log.close().await.unwrap();
            }
        }
        let pdir = dir.path().join("topics/t/0");
        let mut files: Vec<_> = std::fs::read_dir(&pdir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.ends_with(".index") || name.ends_with(".timeindex") || name == "partition.checkpoint"
            })
            .collect();
        files.sort();
        for _ in 0..3 {
            let victim = &files[rng.usize(..files.len())];
            let Ok(metadata) = std::fs::metadata(victim) else { continue };
            let len = metadata.len();
            match rng.u8(0..3) {
                0 => std::fs::remove_file(victim).unwrap_or(()),
                1 if len > 0 => {
                    std::fs::OpenOptions::new().write(true).open(victim).unwrap().set_len(rng.u64(0..len)).unwrap()
                }
                _ if len > 0 => {
                    let f = std::fs::OpenOptions::new().write(true).open(victim).unwrap();
                    f.write_all_at(&[rng.u8(..), rng.u8(..), rng.u8(..)], rng.u64(0..len)).unwrap();
                }
                _ => {}
            }
        }
        let log = support::open(dir.path()).await;
        let records = read_all(&log, "t", 0).await;
        let values: Vec<String> = records.iter().map(|r| text(&r.2).unwrap()).collect();
        let expected: Vec<String> = (0..200).flat_map(|i| (0..2).map(move |j| format!("b{i}-{j}"))).collect();
        assert_eq!(values, expected, "round {round}");
        // Random reads land on the right batch, so the indexes in use are right.
        for _ in 0..50 {
            let offset = rng.i64(0..400);
            let fetched = log.read("t", 0, offset, 1).await.unwrap();
            let b = freshet_log::batch::BatchView::parse(&fetched.batches).unwrap();
            assert!(b.base_offset() <= offset && offset <= b.last_offset(), "round {round}: offset {offset} in {b:?}");
        }
        // Lookups by time too.
        let t = 1000 + rng.i64(0..200);
        let found = log.list_offset("t", 0, freshet_log::OffsetSpec::Timestamp(t)).await.unwrap();
        assert_eq!(found, Some(((t - 1000) * 2, t)), "round {round}");
    }
}

#[tokio::test]
async fn a_bit_flip_in_synced_data_is_reported_on_read_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _, _) = write_then_stop(dir.path(), 10, 0).await;
    // Reopen cleanly once so the segment is trusted, then flip a byte inside the first batch.
    let log = support::open(dir.path()).await;
    log.close().await.unwrap();
    drop(log);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, 70).unwrap();
    file.write_all_at(&[b[0] ^ 0x01], 70).unwrap();
    drop(file);
    let log = support::open(dir.path()).await;
    let e = log.read("t", 0, 0, 1 << 20).await.unwrap_err();
    let message = e.to_string();
    assert!(message.contains("corrupt data in") && message.contains("CRC-32C mismatch"), "{message}");
    assert!(message.contains("00000000000000000000.log at byte 0"), "{message}");
}

#[test]
fn a_full_disk_fails_appends_cleanly_and_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    // `ulimit -f` makes writes past 2 MiB fail with EFBIG, as a full disk fails them with ENOSPC;
    // SIGXFSZ is ignored so the write returns the error instead of killing the process.
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("bash")
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 2048; exec "$0" "$@""#)
        .arg(exe)
        .args(["crash::crash_writer_process", "--exact", "--nocapture", "--test-threads", "1"])
        .env(WRITER_ENV, dir.path())
        .env("FRESHET_CRASH_FULL_DISK", "1")
        .env("FRESHET_CRASH_LIFE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("done"),
        "the writer did not finish:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for line in stdout.lines() {
        let parts: Vec<&str> = line.splitn(3, ' ').collect();
        match parts[0] {
            "ack" => {
                let rest: Vec<&str> = parts[2].split(' ').collect();
                acked.push((
                    parts[1].parse::<u64>().unwrap(),
                    rest[0].parse::<i64>().unwrap(),
                    rest[1].parse::<usize>().unwrap(),
                ));
            }
            "err" => errors.push(parts[2].to_owned()),
            _ => {}
        }
    }
    assert!(!acked.is_empty() && errors.len() >= 20, "{} acks, {} errors", acked.len(), errors.len());
    assert!(errors.iter().all(|e| e.contains("nothing was written")), "{errors:?}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let log = support::open(dir.path()).await;
        let records = read_all(&log, "t", 0).await;
        // Exactly the acknowledged batches are in the log: failed appends left nothing behind.
        let mut expected = Vec::new();
        acked.sort_by_key(|a| a.1);
        for (batch, base, n) in &acked {
            for j in 0..*n {
                expected.push((base + j as i64, format!("L0b{batch}-{j}")));
            }
        }
        let got: Vec<(i64, String)> = records.iter().map(|r| (r.0, text(&r.2).unwrap())).collect();
        assert_eq!(got, expected);
        // With room again, appends continue at the next offset.
        let next = log.append("t", 0, values_batch("after", 1, 1)).await.unwrap();
        assert_eq!(next.base_offset, expected.len() as i64);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writer_during_retention_leaves_a_contiguous_log() {
    let mut rng = fastrand::Rng::with_seed(support::seed(0x4e7e));
    for round in 0..rounds(2, 20) {
        let dir = tempfile::tempdir().unwrap();
        let kill_after = Duration::from_millis(rng.u64(0..1200));
        let acks = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || run_writer_with_env_and_kill(&dir, "FRESHET_CRASH_RETENTION", 0, kill_after)
        })
        .await
        .unwrap();
        assert!(!acks.is_empty(), "round {round}: nothing acknowledged");
        let log = support::open(dir.path()).await;
        let (start, _, end) = log.partition("t", 0).unwrap().offsets();
        let records = read_all(&log, "t", 0).await;
        // Whatever retention removed, what is left runs without holes from the log start...
        let offsets: Vec<i64> = records.iter().map(|r| r.0).collect();
        assert_eq!(offsets, (start..end).collect::<Vec<_>>(), "round {round}");
        // ...and holds every acknowledged batch at or above it, exactly.
        for &(batch, base, n) in &acks {
            for j in 0..n {
                let offset = base + j as i64;
                if offset >= start {
                    assert_eq!(
                        text(&records[(offset - start) as usize].2).unwrap(),
                        format!("L0b{batch}-{j}"),
                        "round {round}"
                    );
                }
            }
        }
        assert!(end > start, "round {round}: retention by bytes must keep the newest segments");
    }
}

#[tokio::test]
async fn a_failed_fsync_fails_its_appends_and_takes_the_partition_offline_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let log = support::open(dir.path()).await;
    log.create_topic("t", 2, Default::default()).await.unwrap();
    log.append("t", 0, values_batch("before", 2, 1)).await.unwrap();
    freshet_log::failpoint::arm("flush.fsync", log.partition("t", 0).unwrap().dir());
    let e = log.append("t", 0, values_batch("during", 2, 1)).await.unwrap_err();
    assert!(e.to_string().contains("may or may not survive a crash"), "{e}");
    assert!(matches!(e, freshet_log::Error::StorageFailed(_)), "{e:?}");
    let e = log.append("t", 0, values_batch("after", 1, 1)).await.unwrap_err();
    assert!(e.to_string().contains("offline after a failed fsync"), "{e}");
    assert!(matches!(e, freshet_log::Error::StorageFailed(_)), "{e:?}");
    // Whoever watches the storage (a broker, which stops) hears of it.
    let failure = log.watch_storage_failure().borrow().clone().expect("the failure is reported");
    assert!(failure.contains("t-0") && failure.contains("flush.fsync"), "{failure}");
    // Other partitions carry on.
    log.append("t", 1, values_batch("other", 1, 1)).await.unwrap();
    drop(log);
    let log = support::open(dir.path()).await;
    let values: Vec<String> = read_all(&log, "t", 0).await.iter().map(|r| text(&r.2).unwrap()).collect();
    assert_eq!(values[..2], ["before-0".to_string(), "before-1".to_string()], "acknowledged records stay");
    // The unacknowledged batch was written; whether it survives is up to the disk. Either way the
    // partition takes appends again after reopening.
    assert!(values.len() == 2 || values.len() == 4, "{values:?}");
    let next = log.append("t", 0, values_batch("again", 1, 1)).await.unwrap();
    assert_eq!(next.base_offset, values.len() as i64);
}
