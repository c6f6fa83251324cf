//! What the REST API asks of a worker, standalone or distributed (Kafka Connect's `Herder`):
//! the standalone [`Worker`] answers from its own memory, a
//! [`DistributedWorker`](crate::distributed::DistributedWorker) from the group's config and
//! status topics.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::Value as Json;

use crate::config::Props;
use crate::plugins::Plugins;
use crate::worker::{ApiResult, ConnectorInfo, TargetState, Worker};

/// The operations behind each REST endpoint; errors carry the HTTP status Kafka Connect answers.
#[async_trait]
pub trait Herder: Send + Sync + 'static {
    /// What `GET /` answers.
    fn server_info(&self) -> Json;
    /// The plugins.
    fn plugins(&self) -> &Plugins;
    /// `PUT /connector-plugins/{p}/config/validate`.
    fn validate(&self, props: &Props) -> ApiResult<Json>;
    /// The connectors' names, sorted.
    async fn connectors(&self) -> Vec<String>;
    /// A connector's config and tasks.
    async fn info(&self, name: &str) -> ApiResult<ConnectorInfo>;
    /// `POST /connectors`.
    async fn create(&self, name: &str, config: Props, initial: TargetState) -> ApiResult<ConnectorInfo>;
    /// `PUT /connectors/{c}/config`: `(created, info)`.
    async fn put_config(&self, name: &str, config: Props) -> ApiResult<(bool, ConnectorInfo)>;
    /// `PATCH /connectors/{c}/config` (`None` removes a key).
    async fn patch_config(&self, name: &str, patch: BTreeMap<String, Option<String>>) -> ApiResult<ConnectorInfo>;
    /// `DELETE /connectors/{c}`.
    async fn delete(&self, name: &str) -> ApiResult<()>;
    /// `PUT /connectors/{c}/pause`.
    async fn pause(&self, name: &str) -> ApiResult<()>;
    /// `PUT /connectors/{c}/resume`.
    async fn resume(&self, name: &str) -> ApiResult<()>;
    /// `PUT /connectors/{c}/stop`.
    async fn stop(&self, name: &str) -> ApiResult<()>;
    /// `POST /connectors/{c}/restart`: the status once the restart began.
    async fn restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> ApiResult<Json>;
    /// `POST /connectors/{c}/tasks/{t}/restart`.
    async fn restart_task(&self, name: &str, id: u32) -> ApiResult<()>;
    /// `GET /connectors/{c}/status`.
    async fn status(&self, name: &str) -> ApiResult<Json>;
    /// `GET /connectors/{c}/tasks/{t}/status`.
    async fn task_status(&self, name: &str, id: u32) -> ApiResult<Json>;
    /// `GET /connectors/{c}/tasks`.
    async fn tasks(&self, name: &str) -> ApiResult<Json>;
    /// `GET /connectors/{c}/offsets`.
    async fn offsets(&self, name: &str) -> ApiResult<Json>;
    /// `PATCH /connectors/{c}/offsets`.
    async fn alter_offsets(&self, name: &str, body: &Json) -> ApiResult<Json>;
    /// `DELETE /connectors/{c}/offsets`.
    async fn reset_offsets(&self, name: &str) -> ApiResult<Json>;
}

#[async_trait]
impl Herder for Worker {
    fn server_info(&self) -> Json {
        Worker::server_info(self)
    }
    fn plugins(&self) -> &Plugins {
        Worker::plugins(self)
    }
    fn validate(&self, props: &Props) -> ApiResult<Json> {
        Worker::validate(self, props)
    }
    async fn connectors(&self) -> Vec<String> {
        Worker::connectors(self).await
    }
    async fn info(&self, name: &str) -> ApiResult<ConnectorInfo> {
        Worker::info(self, name).await
    }
    async fn create(&self, name: &str, config: Props, initial: TargetState) -> ApiResult<ConnectorInfo> {
        Worker::create(self, name, config, initial).await
    }
    async fn put_config(&self, name: &str, config: Props) -> ApiResult<(bool, ConnectorInfo)> {
        Worker::put_config(self, name, config).await
    }
    async fn patch_config(&self, name: &str, patch: BTreeMap<String, Option<String>>) -> ApiResult<ConnectorInfo> {
        Worker::patch_config(self, name, patch).await
    }
    async fn delete(&self, name: &str) -> ApiResult<()> {
        Worker::delete(self, name).await
    }
    async fn pause(&self, name: &str) -> ApiResult<()> {
        Worker::pause(self, name).await
    }
    async fn resume(&self, name: &str) -> ApiResult<()> {
        Worker::resume(self, name).await
    }
    async fn stop(&self, name: &str) -> ApiResult<()> {
        Worker::stop(self, name).await
    }
    async fn restart(&self, name: &str, include_tasks: bool, only_failed: bool) -> ApiResult<Json> {
        Worker::restart(self, name, include_tasks, only_failed).await
    }
    async fn restart_task(&self, name: &str, id: u32) -> ApiResult<()> {
        Worker::restart_task(self, name, id).await
    }
    async fn status(&self, name: &str) -> ApiResult<Json> {
        Worker::status(self, name).await
    }
    async fn task_status(&self, name: &str, id: u32) -> ApiResult<Json> {
        Worker::task_status(self, name, id).await
    }
    async fn tasks(&self, name: &str) -> ApiResult<Json> {
        Worker::tasks(self, name).await
    }
    async fn offsets(&self, name: &str) -> ApiResult<Json> {
        Worker::offsets(self, name).await
    }
    async fn alter_offsets(&self, name: &str, body: &Json) -> ApiResult<Json> {
        Worker::alter_offsets(self, name, body).await
    }
    async fn reset_offsets(&self, name: &str) -> ApiResult<Json> {
        Worker::reset_offsets(self, name).await
    }
}
