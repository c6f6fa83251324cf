//! The [`Admin`] over librdkafka's admin client, with consumers for offset lookups.

use super::*;

pub(super) async fn offset_for_time<C: ConsumerContext + 'static>(
    consumer: Arc<BaseConsumer<C>>,
    tp: &TopicPartition,
    timestamp: i64,
) -> Result<Option<i64>> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(timestamp))
        .map_err(|e| client_error("looking up an offset by time", e))?;
    let found = blocking(move || consumer.offsets_for_times(tpl, REQUEST_TIMEOUT))
        .await?
        .map_err(|e| client_error(&format!("looking up an offset by time in {tp}"), e))?;
    let element = found.elements().into_iter().next().map(|e| (e.offset(), e.error()));
    match element {
        Some((Offset::Offset(offset), Ok(()))) if offset >= 0 => Ok(Some(offset)),
        Some((_, Err(e))) => Err(client_error(&format!("looking up an offset by time in {tp}"), e)),
        _ => Ok(None),
    }
}

/// The [`Admin`] over librdkafka.
pub struct RemoteAdmin {
    pub(super) remote: Remote,
    pub(super) admin: Arc<AdminClient<DefaultClientContext>>,
    pub(super) lookup: Arc<BaseConsumer>,
    /// Looks offsets up at `read_committed` isolation: its high watermark is the last stable offset.
    pub(super) committed_lookup: Arc<BaseConsumer>,
}

impl std::fmt::Debug for RemoteAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAdmin").field("bootstrap", &self.remote.bootstrap).finish_non_exhaustive()
    }
}

pub(super) fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(REQUEST_TIMEOUT)).operation_timeout(Some(REQUEST_TIMEOUT))
}

/// The result of one topic of an admin operation.
pub(super) fn topic_result(doing: &str, results: Vec<rdkafka::admin::TopicResult>) -> Result<()> {
    for result in results {
        if let Err((topic, code)) = result {
            return Err(topic_error(doing, &topic, code, None));
        }
    }
    Ok(())
}

impl RemoteAdmin {
    /// Topic name -> partition count, for one topic or all.
    pub(super) async fn metadata(&self, topic: Option<&str>) -> Result<Vec<(String, u32)>> {
        let lookup = self.lookup.clone();
        let name = topic.map(str::to_owned);
        let metadata = blocking(move || lookup.fetch_metadata(name.as_deref(), REQUEST_TIMEOUT))
            .await?
            .map_err(|e| client_error("reading the cluster's metadata", e))?;
        let mut out = Vec::new();
        for t in metadata.topics() {
            if let Some(error) = t.error() {
                let code = RDKafkaErrorCode::from(error);
                return Err(topic_error("describing", t.name(), code, None));
            }
            out.push((t.name().to_string(), t.partitions().len() as u32));
        }
        Ok(out)
    }

    /// Waits until the cluster's metadata shows `topic` with `n` partitions, each with a leader:
    /// a created topic (or a grown one) reaches every broker's metadata shortly after the
    /// request succeeds, and its leaders are elected a little later (Kafka Streams waits the
    /// same way before using its internal topics); offset lookups right after would fail.
    pub(super) async fn await_partitions(&self, topic: &str, n: u32) -> Result<()> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.placement(topic).await {
                Ok(p) if p.len() >= n as usize && p.iter().all(|p| p.leader.is_some()) => return Ok(()),
                Ok(_) | Err(Error::UnknownTopic(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(_) => {
                    return Err(Error::Remote(format!(
                        "{topic:?} was created but its metadata never showed a leader for each of its {n} partitions"
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the cluster's metadata no longer shows `topic`: the controller has taken the
    /// deletion when the request succeeds, but brokers learn of it a little later, and a lookup
    /// or a create of the same name right after would still find the old topic.
    pub(super) async fn await_gone(&self, topic: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.placement(topic).await {
                Err(Error::UnknownTopic(_)) => return Ok(()),
                Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(_) => {
                    return Err(Error::Remote(format!(
                        "{topic:?} was deleted but the cluster's metadata still showed it after {REQUEST_TIMEOUT:?}"
                    )))
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(super) async fn configs(&self, names: &[String]) -> Result<BTreeMap<String, Vec<ConfigEntry>>> {
        let specifiers: Vec<ResourceSpecifier<'_>> = names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        if specifiers.is_empty() {
            return Ok(BTreeMap::new());
        }
        let results = self
            .admin
            .describe_configs(&specifiers, &options())
            .await
            .map_err(|e| client_error("describing configs", e))?;
        let mut out = BTreeMap::new();
        for (name, result) in names.iter().zip(results) {
            let resource = result.map_err(|code| topic_error("describing the configs of", name, code, None))?;
            let entries = resource
                .entries
                .into_iter()
                .map(|e| ConfigEntry {
                    is_default: e.is_default || e.source == ConfigSource::Default,
                    name: e.name,
                    value: e.value.unwrap_or_default(),
                })
                .collect();
            out.insert(name.clone(), entries);
        }
        Ok(out)
    }

    pub(super) fn describe(name: String, n_partitions: u32, configs: &[ConfigEntry]) -> TopicDescription {
        TopicDescription {
            internal: name.starts_with("__"),
            name,
            // The metadata librdkafka gives does not carry topic ids.
            id: String::new(),
            n_partitions,
            overrides: configs.iter().filter(|c| !c.is_default).map(|c| (c.name.clone(), c.value.clone())).collect(),
        }
    }
}

#[async_trait]
impl Admin for RemoteAdmin {
    async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        let n = i32::try_from(topic.n_partitions).ok().filter(|n| *n > 0).ok_or_else(|| Error::InvalidConfig {
            key: "partitions".into(),
            value: topic.n_partitions.to_string(),
            reason: "a topic needs between 1 and 2^31-1 partitions".into(),
        })?;
        let mut new = RdNewTopic::new(&topic.name, n, TopicReplication::Fixed(-1));
        for (k, v) in &topic.configs {
            new = new.set(k, v);
        }
        let results =
            self.admin.create_topics([&new], &options()).await.map_err(|e| client_error("creating a topic", e))?;
        topic_result("creating", results)?;
        self.await_partitions(&topic.name, topic.n_partitions).await
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        let results =
            self.admin.delete_topics(&[name], &options()).await.map_err(|e| client_error("deleting a topic", e))?;
        topic_result("deleting", results)?;
        self.await_gone(name).await
    }

    async fn list_topics(&self) -> Result<Vec<TopicDescription>> {
        let mut topics = self.metadata(None).await?;
        topics.sort();
        let names: Vec<String> = topics.iter().map(|(n, _)| n.clone()).collect();
        let mut configs = self.configs(&names).await?;
        Ok(topics
            .into_iter()
            .map(|(name, n)| {
                let configs = configs.remove(&name).unwrap_or_default();
                Self::describe(name, n, &configs)
            })
            .collect())
    }

    async fn describe_topic(&self, name: &str) -> Result<(TopicDescription, Vec<PartitionDescription>)> {
        let placement = self.placement(name).await?;
        let n = placement.len() as u32;
        let configs = self.configs(&[name.to_string()]).await?.remove(name).unwrap_or_default();
        let mut partitions = Vec::with_capacity(placement.len());
        for at in &placement {
            // No leader, no broker to ask.
            let (low, high) = match at.leader {
                None => (-1, -1),
                Some(_) => watermarks(self.lookup.clone(), &TopicPartition::new(name, at.partition)).await?,
            };
            partitions.push(PartitionDescription {
                partition: at.partition,
                log_start_offset: low,
                high_watermark: high,
                log_end_offset: high,
                // Sizes on disk are the broker's business; the client API does not give them.
                size_bytes: 0,
                n_segments: 0,
            });
        }
        Ok((Self::describe(name.to_string(), n, &configs), partitions))
    }

    async fn placement(&self, name: &str) -> Result<Vec<PartitionPlacement>> {
        let lookup = self.lookup.clone();
        let asked = name.to_owned();
        let metadata = blocking(move || lookup.fetch_metadata(Some(&asked), REQUEST_TIMEOUT))
            .await?
            .map_err(|e| client_error("reading the cluster's metadata", e))?;
        let topic = metadata.topics().iter().find(|t| t.name() == name);
        let topic = topic.ok_or_else(|| Error::UnknownTopic(name.to_string()))?;
        if let Some(error) = topic.error() {
            return Err(topic_error("describing", name, RDKafkaErrorCode::from(error), None));
        }
        let mut placement: Vec<PartitionPlacement> = topic
            .partitions()
            .iter()
            .map(|p| PartitionPlacement {
                partition: p.id() as u32,
                leader: (p.leader() >= 0).then_some(p.leader()),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
            })
            .collect();
        placement.sort_by_key(|p| p.partition);
        Ok(placement)
    }

    async fn describe_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let mut entries = self.configs(&[name.to_string()]).await?.remove(name).unwrap_or_default();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn alter_configs(&self, name: &str, changes: BTreeMap<String, Option<String>>) -> Result<()> {
        // AlterConfigs replaces a topic's whole set of overrides: start from the current ones.
        let current = self.describe_configs(name).await?;
        let mut overrides: BTreeMap<String, String> =
            current.into_iter().filter(|c| !c.is_default).map(|c| (c.name, c.value)).collect();
        for (k, v) in changes {
            match v {
                Some(v) => overrides.insert(k, v),
                None => overrides.remove(&k),
            };
        }
        let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
        for (k, v) in &overrides {
            alter = alter.set(k, v);
        }
        let results =
            self.admin.alter_configs([&alter], &options()).await.map_err(|e| client_error("altering configs", e))?;
        for result in results {
            if let Err((_, code)) = result {
                return Err(topic_error("altering the configs of", name, code, None));
            }
        }
        Ok(())
    }

    async fn create_partitions(&self, name: &str, n_partitions: u32) -> Result<()> {
        let new = NewPartitions::new(name, n_partitions as usize);
        let results = self
            .admin
            .create_partitions([&new], &options())
            .await
            .map_err(|e| client_error("creating partitions", e))?;
        topic_result("adding partitions to", results)?;
        self.await_partitions(name, n_partitions).await
    }

    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<(i64, i64)>> {
        // The timestamp of the record found is not in librdkafka's answer: -1.
        match spec {
            OffsetSpec::Earliest => Ok(Some((watermarks(self.lookup.clone(), tp).await?.0, -1))),
            OffsetSpec::Latest => Ok(Some((watermarks(self.lookup.clone(), tp).await?.1, -1))),
            // librdkafka asks for offsets at its consumer's isolation level.
            OffsetSpec::LastStable => Ok(Some((watermarks(self.committed_lookup.clone(), tp).await?.1, -1))),
            OffsetSpec::Timestamp(ts) => Ok(offset_for_time(self.lookup.clone(), tp, ts).await?.map(|o| (o, -1))),
            // Kafka's MAX_TIMESTAMP (-3), which ListOffsets v7 carries as the timestamp asked for.
            OffsetSpec::MaxTimestamp => Ok(offset_for_time(self.lookup.clone(), tp, -3).await?.map(|o| (o, -1))),
        }
    }

    async fn delete_records(&self, tp: &TopicPartition, before_offset: i64) -> Result<i64> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        tpl.add_partition_offset(&tp.topic, partition_i32(tp.partition)?, Offset::Offset(before_offset))
            .map_err(|e| client_error("deleting records", e))?;
        let result =
            self.admin.delete_records(&tpl, &options()).await.map_err(|e| client_error("deleting records", e))?;
        let element = result.elements().into_iter().next().map(|e| (e.offset(), e.error()));
        match element {
            Some((Offset::Offset(low), Ok(()))) => Ok(low),
            Some((_, Err(e))) => Err(client_error(&format!("deleting records of {tp}"), e)),
            _ => Err(Error::Remote(format!("deleting records of {tp}: no answer for the partition"))),
        }
    }

    async fn list_groups(&self) -> Result<Vec<String>> {
        let lookup = self.lookup.clone();
        let mut names = blocking(move || {
            let groups = lookup.fetch_group_list(None, REQUEST_TIMEOUT)?;
            Ok::<_, KafkaError>(groups.groups().iter().map(|g| g.name().to_string()).collect::<Vec<_>>())
        })
        .await?
        .map_err(|e| client_error("listing groups", e))?;
        names.sort();
        Ok(names)
    }

    async fn group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        // OffsetFetch for every partition of every topic, as this group.
        let mut partitions = Vec::new();
        for (topic, n) in self.metadata(None).await? {
            partitions.extend((0..n).map(|p| TopicPartition::new(topic.clone(), p)));
        }
        let reader: Arc<BaseConsumer> = Arc::new(
            self.remote
                .client_config(&[("group.id", group), ("enable.auto.commit", "false")])
                .create()
                .map_err(|e| client_error("creating a consumer to read committed offsets", e))?,
        );
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        committed(reader, &partitions).await
    }

    async fn delete_group(&self, group: &str) -> Result<bool> {
        let results =
            self.admin.delete_groups(&[group], &options()).await.map_err(|e| client_error("deleting a group", e))?;
        match results.into_iter().next() {
            Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) => Ok(false),
            Some(Err((_, code))) => Err(Error::Remote(format!("deleting group {group}: {code}"))),
            _ => Ok(true),
        }
    }

    async fn group_members(&self, group: &str) -> Result<Option<GroupMembers>> {
        let lookup = self.lookup.clone();
        let name = group.to_string();
        let described = blocking(move || {
            let groups = lookup.fetch_group_list(Some(&name), REQUEST_TIMEOUT)?;
            Ok::<_, KafkaError>(groups.groups().iter().find(|g| g.name() == name).map(|g| {
                let members: Vec<(String, String, String, Option<Vec<u8>>)> = g
                    .members()
                    .iter()
                    .map(|m| {
                        let assignment = m.assignment().map(<[u8]>::to_vec);
                        (m.id().to_string(), m.client_id().to_string(), m.client_host().to_string(), assignment)
                    })
                    .collect();
                (g.state().to_string(), g.protocol().to_string(), g.protocol_type().to_string(), members)
            }))
        })
        .await?
        .map_err(|e| client_error(&format!("describing group {group:?}"), e))?;
        let Some((state, protocol, protocol_type, members)) = described else { return Ok(None) };
        if state == "Dead" {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(members.len());
        for (member_id, client_id, host, assignment) in members {
            let assignment = match assignment {
                Some(bytes) if protocol_type == "consumer" && !bytes.is_empty() => decode_assignment(&bytes)
                    .map_err(|e| Error::Remote(format!("member {member_id} of {group:?}: {e}")))?,
                _ => Vec::new(),
            };
            out.push(GroupMember { member_id, client_id, host, assignment });
        }
        Ok(Some(GroupMembers { state, protocol, members: out }))
    }
}

/// The partitions of a consumer-protocol assignment. Its layout (versions 0 to 3, all
/// big-endian, not flexible): `version i16, [topic string, [partition i32]], user_data bytes`;
/// the user data is not read.
pub(super) fn decode_assignment(bytes: &[u8]) -> std::result::Result<Vec<TopicPartition>, String> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take(&mut self, n: usize, what: &str) -> std::result::Result<&[u8], String> {
            if self.0.len() < n {
                return Err(format!("an assignment cut short in its {what}"));
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn i16(&mut self, what: &str) -> std::result::Result<i16, String> {
            Ok(i16::from_be_bytes(self.take(2, what)?.try_into().expect("two bytes")))
        }
        fn i32(&mut self, what: &str) -> std::result::Result<i32, String> {
            Ok(i32::from_be_bytes(self.take(4, what)?.try_into().expect("four bytes")))
        }
        /// An array's length; each element takes at least `min_element` bytes, so a length the
        /// bytes left cannot hold is refused before anything is allocated for it.
        fn len(&mut self, min_element: usize, what: &str) -> std::result::Result<usize, String> {
            let n = self.i32(what)?;
            let n = usize::try_from(n.max(0)).expect("a non-negative i32");
            if n.saturating_mul(min_element) > self.0.len() {
                return Err(format!("an assignment whose {what} count {n} exceeds its bytes"));
            }
            Ok(n)
        }
    }
    let mut reader = Reader(bytes);
    let version = reader.i16("version")?;
    if !(0..=3).contains(&version) {
        return Err(format!("a consumer-protocol assignment of version {version} (0 to 3 are known)"));
    }
    let mut out = Vec::new();
    for _ in 0..reader.len(6, "topics")? {
        let name_len = usize::try_from(reader.i16("topic name")?).map_err(|_| "a null topic name".to_string())?;
        let name = std::str::from_utf8(reader.take(name_len, "topic name")?)
            .map_err(|_| "a topic name that is not UTF-8".to_string())?
            .to_string();
        for _ in 0..reader.len(4, "partitions")? {
            let p = reader.i32("partition")?;
            out.push(TopicPartition::new(name.as_str(), u32::try_from(p).map_err(|_| format!("partition {p}"))?));
        }
    }
    Ok(out)
}
