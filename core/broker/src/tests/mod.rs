//! Unit tests of the request path: produce payloads split into batches, random and mutated
//! frames, idempotent producers' retries; `versions`: every version of every API served.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

use freshet_coord::code;
use freshet_coord::group::GroupOffsets;
use freshet_coord::transactions::new_producer_id;
use freshet_log::{Log, OffsetSpec};

use crate::dispatch::{handle_frame, Served};

mod versions;
use crate::handlers::produce::{produce_partition, split_batches, Acks};
use crate::server::BrokerConfig;
use freshet_coord::membership::Coordinator;

#[test]
fn produce_payloads_split_into_batches_and_bad_ones_are_named() {
    let mut payload = BytesMut::new();
    for body in [&b"abc"[..], &b"defgh"[..]] {
        payload.put_i64(0);
        payload.put_i32(body.len() as i32);
        payload.put_slice(body);
    }
    let batches = split_batches(payload.clone().freeze()).unwrap();
    assert_eq!(batches.iter().map(Bytes::len).collect::<Vec<_>>(), [15, 17]);
    assert!(split_batches(payload.freeze().slice(..29)).unwrap_err().contains("a batch of 17 bytes in 14 bytes"));
    assert!(split_batches(Bytes::from_static(&[0; 5])).unwrap_err().contains("shorter than a batch header"));
    let mut negative = BytesMut::new();
    negative.put_i64(0);
    negative.put_i32(-5);
    assert!(split_batches(negative.freeze()).unwrap_err().contains("a batch length of -5"));
}

/// Valid request frames of several APIs, as a client would send them.
fn sample_frames() -> Vec<Vec<u8>> {
    let frame = |key: ApiKey, version: i16, body: &dyn Fn(&mut BytesMut)| {
        let mut out = BytesMut::new();
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")));
        header.encode(&mut out, key.request_header_version(version)).unwrap();
        body(&mut out);
        out.to_vec()
    };
    vec![
        // Produce v2 with a message set of format v1 (the legacy path).
        frame(ApiKey::Produce, 2, &|b| {
            let mut message = vec![1u8, 0];
            message.extend_from_slice(&1_000i64.to_be_bytes());
            message.extend_from_slice(&1i32.to_be_bytes());
            message.push(b'k');
            message.extend_from_slice(&2i32.to_be_bytes());
            message.extend_from_slice(b"v1");
            let crc = crc32fast::hash(&message);
            b.put_i16(1);
            b.put_i32(1000);
            b.put_i32(1);
            b.put_i16(1);
            b.put_slice(b"t");
            b.put_i32(1);
            b.put_i32(0);
            b.put_i32(12 + 4 + message.len() as i32);
            b.put_i64(0);
            b.put_i32(4 + message.len() as i32);
            b.put_u32(crc);
            b.put_slice(&message);
        }),
        frame(ApiKey::ApiVersions, 3, &|b| {
            // client software name and version, compact strings, then no tagged fields
            b.put_slice(&[5, b'f', b'u', b'z', b'z', 2, b'1', 0]);
        }),
        frame(ApiKey::Metadata, 1, &|b| {
            b.put_i32(1);
            b.put_i16(1);
            b.put_slice(b"t");
        }),
        frame(ApiKey::ListOffsets, 1, &|b| {
            b.put_i32(-1);
            b.put_i32(1);
            b.put_i16(1);
            b.put_slice(b"t");
            b.put_i32(1);
            b.put_i32(0);
            b.put_i64(-2);
        }),
        frame(ApiKey::Heartbeat, 0, &|b| {
            b.put_i16(1);
            b.put_slice(b"g");
            b.put_i32(1);
            b.put_i16(1);
            b.put_slice(b"m");
        }),
    ]
}

/// Random and mutated frames through the request path: each gets an answer or a refusal
/// (its connection would close), never a panic, and the broker still answers a good request
/// after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_frames_never_panic_the_request_path() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
    log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let served = Served {
        config: BrokerConfig { auto_create_topics: false, ..BrokerConfig::default() },
        ..test_served(&log, offsets)
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let samples = sample_frames();
    for sample in &samples {
        assert!(handle_frame(Bytes::from(sample.clone()), peer, &served).await.unwrap().is_some());
    }
    let seed =
        std::env::var("FRESHET_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let rounds = if std::env::var_os("FRESHET_SLOW_TESTS").is_some() { 200_000 } else { 20_000 };
    let (mut answered, mut refused) = (0u32, 0u32);
    for _ in 0..rounds {
        let mut frame = match rng.u8(..4) {
            // Pure noise, sometimes with a real API key and version in front.
            0 => (0..rng.usize(..64)).map(|_| rng.u8(..)).collect::<Vec<u8>>(),
            1 => {
                let mut f = vec![0, rng.u8(..70), 0, rng.u8(..14), 0, 0, 0, 1];
                f.extend((0..rng.usize(..48)).map(|_| rng.u8(..)));
                f
            }
            // A valid frame, cut short or with bytes flipped.
            2 => {
                let s = &samples[rng.usize(..samples.len())];
                s[..rng.usize(..=s.len())].to_vec()
            }
            _ => {
                let mut s = samples[rng.usize(..samples.len())].clone();
                for _ in 0..rng.usize(1..4) {
                    let i = rng.usize(..s.len());
                    s[i] = rng.u8(..);
                }
                s
            }
        };
        if frame.len() > 4 && rng.bool() {
            // Huge array and string lengths are refused before anything is allocated.
            let i = rng.usize(4..frame.len());
            frame[i] = 0x7f;
        }
        match handle_frame(Bytes::from(frame), peer, &served).await {
            Ok(_) => answered += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(answered > 0 && refused > 0, "seed {seed}: {answered} answered, {refused} refused");
    assert!(handle_frame(Bytes::from(samples[1].clone()), peer, &served).await.unwrap().is_some(), "seed {seed}");
    log.close().await.unwrap();
}

/// A batch of `n` records from idempotent producer `pid` at `epoch`, starting at `seq`.
fn idempotent_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let mut builder = freshet_log::batch::BatchBuilder::with_capacity(256).producer(pid, epoch, seq);
    for i in 0..n {
        builder.push(Some(b"k"), Some(format!("v{i}").as_bytes()), &[], 1_000);
    }
    builder.finish()
}

fn test_served(log: &Log, offsets: GroupOffsets) -> Served {
    Served::new(log.clone(), offsets, Coordinator::new(), BrokerConfig::default(), "127.0.0.1".into(), 9092)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_producer_retry_is_stored_once_and_gaps_and_old_epochs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
    log.create_topic("t", 1, BTreeMap::new()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let served = test_served(&log, offsets.clone());
    let pid = new_producer_id(served.log.clock().now_ms());
    let send = |served: &Served, batch: Bytes| {
        let served = served.clone();
        async move {
            produce_partition("t", 0, batch, Acks { acks: -1, timeout: std::time::Duration::from_secs(30) }, &served)
                .await
                .map(|r| r.0)
                .map_err(|e| e.code)
        }
    };
    assert_eq!(send(&served, idempotent_batch(pid, 0, 0, 3)).await, Ok(0));
    assert_eq!(send(&served, idempotent_batch(pid, 0, 3, 2)).await, Ok(3));
    // A retry of either batch: its original offset, nothing stored again.
    assert_eq!(send(&served, idempotent_batch(pid, 0, 0, 3)).await, Ok(0));
    assert_eq!(send(&served, idempotent_batch(pid, 0, 3, 2)).await, Ok(3));
    let end = |log: Log| async move { log.list_offset("t", 0, OffsetSpec::Latest).await.unwrap().unwrap().0 };
    assert_eq!(end(log.clone()).await, 5);
    // A gap and an old epoch are refused; a producer not known here may start at any sequence (its
    // state may have expired), as in Kafka.
    assert_eq!(send(&served, idempotent_batch(pid, 0, 9, 1)).await, Err(code::OUT_OF_ORDER_SEQUENCE_NUMBER));
    assert_eq!(send(&served, idempotent_batch(pid, 1, 0, 1)).await, Ok(5), "a new epoch starts over at 0");
    assert_eq!(send(&served, idempotent_batch(pid, 0, 5, 1)).await, Err(code::INVALID_PRODUCER_EPOCH));
    assert_eq!(send(&served, idempotent_batch(pid, 2, 3, 1)).await, Err(code::OUT_OF_ORDER_SEQUENCE_NUMBER));
    assert_eq!(send(&served, idempotent_batch(pid + 1, 0, 4, 1)).await, Ok(6));
    assert_eq!(end(log.clone()).await, 7);
    // After a restart (state read back from the partition's snapshot), a retry is still recognized.
    log.close().await.unwrap();
    drop((served, offsets, log));
    let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let restarted = test_served(&log, offsets);
    assert_eq!(send(&restarted, idempotent_batch(pid, 1, 0, 1)).await, Ok(5));
    assert_eq!(send(&restarted, idempotent_batch(pid + 1, 0, 4, 1)).await, Ok(6));
    assert_eq!(send(&restarted, idempotent_batch(pid, 1, 1, 1)).await, Ok(7));
    assert_eq!(end(log.clone()).await, 8);
    // A plain producer is not checked.
    let mut plain = freshet_log::batch::BatchBuilder::with_capacity(64);
    plain.push(None, Some(b"x"), &[], 1);
    assert_eq!(send(&restarted, plain.finish()).await, Ok(8));
    log.close().await.unwrap();
}

/// The table of APIs is what ApiVersions advertises: each API once, each range one the message
/// types can decode (Produce below v3 excepted: `legacy` decodes those), and ApiVersions lists
/// exactly the table.
#[test]
fn the_api_table_is_what_api_versions_advertises_and_every_range_can_be_decoded() {
    use crate::dispatch::{api_versions, APIS};
    let mut seen = std::collections::BTreeSet::new();
    for api in APIS {
        assert!(seen.insert(api.key as i16), "{:?} is in the table twice", api.key);
        assert!(api.min_version <= api.max_version, "{:?}", api.key);
        let decodable = api.key.valid_versions();
        let lowest = if api.key == ApiKey::Produce { 3 } else { api.min_version };
        assert!(
            decodable.min <= lowest && api.max_version <= decodable.max,
            "{:?} v{}-{} served, but its message types decode v{}-{}",
            api.key,
            api.min_version,
            api.max_version,
            decodable.min,
            decodable.max
        );
    }
    let advertised: std::collections::BTreeMap<i16, (i16, i16)> =
        api_versions(0).api_keys.iter().map(|a| (a.api_key, (a.min_version, a.max_version))).collect();
    let table: std::collections::BTreeMap<i16, (i16, i16)> =
        APIS.iter().map(|a| (a.key as i16, (a.min_version, a.max_version))).collect();
    assert_eq!(advertised, table);
}

/// A fetch stays within its `max_bytes`: only the first partition with data may go over it, by
/// its first batch, so a batch larger than the limit is not stuck; later partitions return
/// nothing once the budget is spent, but still their high watermarks (as Kafka's fetch does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_over_several_partitions_keeps_to_max_bytes() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), freshet_log::config::LogConfig::default()).await.unwrap();
    log.create_topic("t", 3, BTreeMap::new()).await.unwrap();
    let offsets = GroupOffsets::open(log.clone(), 1).await.unwrap();
    let served = test_served(&log, offsets);
    let value = vec![b'x'; 1000];
    for partition in 0..3 {
        for _ in 0..2 {
            let mut builder = freshet_log::batch::BatchBuilder::with_capacity(1100);
            builder.push(None, Some(&value), &[], 1_000);
            log.append("t", partition, builder.finish()).await.unwrap();
        }
    }
    let request = |max_bytes: i32, partition_max_bytes: i32| {
        let partitions = (0..3)
            .map(|p| FetchPartition::default().with_partition(p).with_partition_max_bytes(partition_max_bytes))
            .collect();
        FetchRequest::default().with_max_bytes(max_bytes).with_min_bytes(1).with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(partitions)])
    };
    // Sizes of the records returned, per partition, and each partition's high watermark.
    let fetch = |request: FetchRequest| {
        let served = served.clone();
        async move {
            let response = crate::handlers::fetch::fetch(request, &served, &served.access([127, 0, 0, 1].into())).await;
            let partitions = &response.responses[0].partitions;
            assert!(partitions.iter().all(|p| p.error_code == 0 && p.high_watermark == 2));
            partitions.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len())).collect::<Vec<_>>()
        }
    };
    let batch = fetch(request(1, 1)).await[0];
    assert!(batch > 1000 && batch < 1200, "one batch of one 1000-byte record: {batch} bytes");
    // Over both limits: the first partition's first batch only.
    assert_eq!(fetch(request(1, 1)).await, vec![batch, 0, 0]);
    assert_eq!(fetch(request(1, 1 << 20)).await, vec![batch, 0, 0]);
    // Room for three batches: two from the first partition, one from the second.
    assert_eq!(fetch(request(3 * batch as i32, 1 << 20)).await, vec![2 * batch, batch, 0]);
    // A partition limit of one batch each.
    assert_eq!(fetch(request(1 << 20, batch as i32)).await, vec![batch, batch, batch]);
    // A partition with no data does not use up the first partition's leeway.
    let mut skip_first = request(1, 1);
    skip_first.topics[0].partitions[0].fetch_offset = 2;
    assert_eq!(fetch(skip_first).await, vec![0, batch, 0]);
    log.close().await.unwrap();
}
