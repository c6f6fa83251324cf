//! What the runtime holds of its substrate, and the settings of the clients it makes.

use super::*;

/// What the runtime holds of its substrate: the substrate itself (consumers, transactional
/// producers), the producer and admin client every thread shares, and the stores' changelogs in
/// it. Instances of an application on one substrate (in this process or, on a cluster,
/// anywhere) share its tasks through its consumer group.
#[derive(Clone)]
pub(super) struct Plumbing {
    pub(super) substrate: Arc<dyn Substrate>,
    pub(super) producer: Arc<dyn Producer>,
    pub(super) admin: Arc<dyn Admin>,
    pub(super) changelogs: Changelogs,
}

impl std::fmt::Debug for Plumbing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plumbing").field("substrate", &self.substrate).finish_non_exhaustive()
    }
}

impl Plumbing {
    /// The clients of `substrate`, made once here so that a substrate that cannot make them
    /// (a remote configuration librdkafka refuses) fails the application's creation.
    pub(super) fn new(substrate: Arc<dyn Substrate>, runtime: Handle) -> Result<Self> {
        let client = |source| Error::Substrate { substrate: substrate.describe(), source };
        let producer = substrate.producer().map_err(client)?;
        let admin = substrate.admin().map_err(client)?;
        // A consumer fails only on a configuration the substrate refuses: checked once here.
        substrate.consumer(ConsumerConfig::default()).map_err(client)?;
        let changelogs = Changelogs::new(substrate.clone(), runtime)?;
        Ok(Plumbing { substrate, producer, admin, changelogs })
    }

    pub(super) fn consumer(&self, config: ConsumerConfig) -> Result<Box<dyn Consumer>> {
        Ok(self.substrate.consumer(config)?)
    }

    /// A transactional producer with `id` and a transaction timeout.
    pub(super) fn transactional_producer(
        &self,
        runtime: &Handle,
        id: &str,
        timeout: Duration,
    ) -> Result<Arc<dyn TransactionalProducer>> {
        Ok(block_on(runtime, self.substrate.transactional_producer(id, timeout))?)
    }
}

pub(super) fn block_on<F: std::future::Future>(runtime: &Handle, future: F) -> F::Output {
    runtime.block_on(future)
}

pub(super) fn consumer_config(group: Option<&str>) -> ConsumerConfig {
    ConsumerConfig {
        group_id: group.map(str::to_string),
        auto_offset_reset: AutoOffsetReset::Earliest,
        max_partition_fetch_bytes: 1 << 20,
        fetch_max_bytes: 16 << 20,
        ..ConsumerConfig::default()
    }
}

/// A stream thread's transaction timeout: at least Kafka Streams' 10 s under exactly-once, and
/// twice the commit interval, since a transaction stays open for one.
pub(super) fn transaction_timeout(commit_interval: Duration) -> Duration {
    (commit_interval * 2).max(Duration::from_secs(10)).min(freshet_core::MAX_TRANSACTION_TIMEOUT)
}

/// A number naming one started application instance: random per process (std's hasher keys),
/// with the time and a count, so instances on other machines differ too.
pub(super) fn instance_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(STARTED.fetch_add(1, Ordering::Relaxed));
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}
