//! Random appends, reads, rolls, retention, deletions and restarts, compared with an in-memory
//! model of the log. `FRESHET_SLOW_TESTS=1` runs more seeds and longer sequences.

use freshet_log::batch::{BatchBuilder, Batches};
use freshet_log::{Log, OffsetSpec};

use crate::support::{self, configs};

#[derive(Default)]
struct PartitionModel {
    /// (offset, value, timestamp) of every record ever appended.
    records: Vec<(i64, String, i64)>,
    log_start: i64,
}

impl PartitionModel {
    fn visible(&self) -> &[(i64, String, i64)] {
        &self.records[self.log_start as usize..]
    }
}

async fn check_read(log: &Log, p: u32, model: &PartitionModel, offset: i64, budget: u64, context: &str) {
    let fetched = log.read("t", p, offset, budget).await.unwrap();
    let leo = model.records.len() as i64;
    if offset == leo {
        assert!(fetched.batches.is_empty(), "{context}: read at the end returned data");
        return;
    }
    let batches: Vec<_> = Batches::new(&fetched.batches).map(Result::unwrap).collect();
    assert!(!batches.is_empty(), "{context}: no data at {offset} (end {leo})");
    let first = &batches[0];
    assert!(
        first.base_offset() <= offset && offset <= first.last_offset(),
        "{context}: first batch {first:?} misses {offset}"
    );
    let total: usize = batches.iter().map(|b| b.size()).sum();
    assert!(total as u64 <= budget.max(first.size() as u64), "{context}: {total} bytes over budget {budget}");
    let mut expected_offset = first.base_offset();
    for b in &batches {
        assert_eq!(b.base_offset(), expected_offset, "{context}: batches must be consecutive");
        for r in b.records().unwrap() {
            let r = r.unwrap();
            let (o, v, ts) = &model.records[r.offset as usize];
            assert_eq!((r.offset, r.value.unwrap(), r.timestamp), (*o, v.as_bytes(), *ts), "{context}");
        }
        expected_offset = b.next_offset();
    }
}

async fn check_all(log: &Log, models: &[PartitionModel], context: &str) {
    for (p, model) in models.iter().enumerate() {
        let records = crate::support::read_all(log, "t", p as u32).await;
        let got: Vec<(i64, String)> = records.iter().map(|r| (r.0, crate::support::text(&r.2).unwrap())).collect();
        let expected: Vec<(i64, String)> = model.visible().iter().map(|r| (r.0, r.1.clone())).collect();
        assert_eq!(got, expected, "{context}: partition {p}");
    }
}

async fn run(seed: u64, n_ops: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut log = support::open(dir.path()).await;
    let n_partitions = 2;
    log.create_topic(
        "t",
        n_partitions,
        configs(&[("segment.bytes", "700"), ("index.interval.bytes", "150"), ("retention.ms", "-1")]),
    )
    .await
    .unwrap();
    let mut models: Vec<PartitionModel> = (0..n_partitions).map(|_| PartitionModel::default()).collect();
    let mut counter = 0u64;
    for op in 0..n_ops {
        let p = rng.u32(0..n_partitions);
        let model = &mut models[p as usize];
        let context = format!("seed {seed:#x} op {op}");
        match rng.u8(0..100) {
            0..=49 => {
                let n = rng.usize(1..8);
                let mut b = BatchBuilder::default();
                let mut rows = Vec::new();
                for _ in 0..n {
                    counter += 1;
                    let value = format!("v{counter}-{}", "x".repeat(rng.usize(0..40)));
                    let ts = rng.i64(0..10_000);
                    b.push(None, Some(value.as_bytes()), &[], ts);
                    rows.push((value, ts));
                }
                let info = log.append("t", p, bytes::BytesMut::from(&b.finish()[..])).await.unwrap();
                assert_eq!(info.base_offset, model.records.len() as i64, "{context}");
                for (value, ts) in rows {
                    let offset = model.records.len() as i64;
                    model.records.push((offset, value, ts));
                }
            }
            50..=74 => {
                let leo = model.records.len() as i64;
                let offset = rng.i64(model.log_start..=leo);
                let budget = [1u64, 100, 500, 2000, 1 << 20][rng.usize(0..5)];
                check_read(&log, p, model, offset, budget, &context).await;
            }
            75..=79 => {
                let leo = model.records.len() as i64;
                let target = rng.i64(model.log_start..=leo);
                let start = log.delete_records("t", p, target).await.unwrap();
                assert_eq!(start, target.max(model.log_start), "{context}");
                model.log_start = start;
            }
            80..=84 => {
                let limit = rng.u64(500..5000);
                log.alter_topic_config("t", [("retention.bytes".to_string(), Some(limit.to_string()))].into())
                    .await
                    .unwrap();
                log.run_maintenance(0).await.unwrap();
                for (q, model) in models.iter_mut().enumerate() {
                    let d = log.describe_partitions("t").unwrap()[q].clone();
                    assert!(d.log_start_offset >= model.log_start, "{context}: log start went back");
                    model.log_start = d.log_start_offset;
                    assert_eq!(d.log_end_offset, model.records.len() as i64, "{context}");
                }
                log.alter_topic_config("t", [("retention.bytes".to_string(), None)].into()).await.unwrap();
            }
            85..=89 => {
                let t = rng.i64(0..10_500);
                let expected = model.visible().iter().find(|r| r.2 >= t).map(|r| (r.0, r.2));
                let got = log.list_offset("t", p, OffsetSpec::Timestamp(t)).await.unwrap();
                assert_eq!(
                    got,
                    expected,
                    "{context}: offset for time {t}; log start {}, records {:?}",
                    model.log_start,
                    &model.records[(model.log_start as usize).saturating_sub(3)
                        ..(model.log_start as usize + 8).min(model.records.len())]
                );
            }
            90..=94 => {
                if rng.bool() {
                    log.close().await.unwrap();
                }
                drop(log);
                log = support::open(dir.path()).await;
                check_all(&log, &models, &context).await;
            }
            _ => {
                let (start, hw, leo) = log.partition("t", p).unwrap().offsets();
                assert_eq!(
                    (start, hw, leo),
                    (model.log_start, model.records.len() as i64, model.records.len() as i64),
                    "{context}"
                );
            }
        }
    }
    check_all(&log, &models, &format!("seed {seed:#x} end")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_behaves_like_its_model() {
    let slow = std::env::var_os("FRESHET_SLOW_TESTS").is_some();
    let (n_seeds, n_ops) = if slow { (40, 3000) } else { (4, 600) };
    for seed in 0..n_seeds {
        run(support::seed(0xf5e5_0000) + seed, n_ops).await;
    }
}
