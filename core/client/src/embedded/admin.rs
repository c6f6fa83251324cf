//! The embedded [`Admin`].

use super::*;

/// The embedded [`Admin`].
#[derive(Debug, Clone)]
pub struct EmbeddedAdmin {
    pub(super) log: Log,
    pub(super) groups: GroupOffsets,
    pub(super) coordinator: Coordinator,
}

#[async_trait]
impl Admin for EmbeddedAdmin {
    async fn create_topic(&self, topic: NewTopic) -> Result<()> {
        self.log.create_topic(&topic.name, topic.n_partitions, topic.configs).await
    }
    async fn delete_topic(&self, name: &str) -> Result<()> {
        self.log.delete_topic(name).await?;
        self.groups.forget_topic(name).await
    }
    async fn list_topics(&self) -> Result<Vec<TopicDescription>> {
        Ok(self.log.list_topics())
    }
    async fn describe_topic(&self, name: &str) -> Result<(TopicDescription, Vec<PartitionDescription>)> {
        Ok((self.log.describe_topic(name)?, self.log.describe_partitions(name)?))
    }
    async fn describe_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        self.log.describe_configs(name)
    }
    async fn alter_configs(&self, name: &str, changes: BTreeMap<String, Option<String>>) -> Result<()> {
        self.log.alter_topic_config(name, changes).await
    }
    async fn create_partitions(&self, name: &str, n_partitions: u32) -> Result<()> {
        self.log.create_partitions(name, n_partitions).await
    }
    async fn list_offset(&self, tp: &TopicPartition, spec: OffsetSpec) -> Result<Option<(i64, i64)>> {
        self.log.list_offset(&tp.topic, tp.partition, spec).await
    }
    async fn delete_records(&self, tp: &TopicPartition, before_offset: i64) -> Result<i64> {
        self.log.delete_records(&tp.topic, tp.partition, before_offset).await
    }
    async fn list_groups(&self) -> Result<Vec<String>> {
        Ok(self.groups.groups())
    }
    async fn group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, OffsetAndMetadata>> {
        Ok(self.groups.fetch(group, None))
    }
    async fn delete_group(&self, group: &str) -> Result<bool> {
        if self.coordinator.delete(group).await == freshet_coord::code::NON_EMPTY_GROUP {
            return Err(Error::InvalidConfig {
                key: "group.id".into(),
                value: group.into(),
                reason: "the group has members, so it cannot be deleted".into(),
            });
        }
        self.groups.delete_group(group).await
    }
    async fn group_members(&self, group: &str) -> Result<Option<GroupMembers>> {
        Ok(describe(&self.coordinator, group).await)
    }
}
