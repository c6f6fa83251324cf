//! The config APIs: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs (topic resources).

use std::collections::BTreeMap;

use freshet_coord::code;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use futures::future::BoxFuture;

use freshet_log::config::TopicConfig;

use crate::acl::op;
use crate::dispatch::{Access, Handled, Request, Served};
use crate::errors::error_code;

/// Kafka's resource type of a topic in config requests.
const TOPIC_RESOURCE: i8 = 2;

/// Why the sender may not perform `operation` (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a config
/// resource, if it may not: a topic's configs need the operation on the topic, the others on the
/// cluster.
fn denied(access: &Access<'_>, resource_type: i8, name: &str, operation: i8) -> Option<(i16, String)> {
    let what = if operation == op::ALTER_CONFIGS { "ALTER_CONFIGS" } else { "DESCRIBE_CONFIGS" };
    if resource_type == TOPIC_RESOURCE {
        (!access.topic(operation, name))
            .then(|| (code::TOPIC_AUTHORIZATION_FAILED, format!("{what} on topic {name:?} is not allowed")))
    } else {
        (!access.cluster(operation))
            .then(|| (code::CLUSTER_AUTHORIZATION_FAILED, format!("{what} on the cluster is not allowed")))
    }
}

fn describe_configs(request: DescribeConfigsRequest, served: &Served, access: &Access<'_>) -> DescribeConfigsResponse {
    use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if let Some((error, message)) =
                denied(access, resource.resource_type, &resource.resource_name, op::DESCRIBE_CONFIGS)
            {
                return out.with_error_code(error).with_error_message(Some(StrBytes::from_string(message)));
            }
            if resource.resource_type != TOPIC_RESOURCE {
                // Broker configs: none are described yet; an empty list, no error.
                return out;
            }
            match served.log.describe_configs(&resource.resource_name) {
                Ok(entries) => {
                    let wanted =
                        resource.configuration_keys.map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
                    let configs = entries
                        .into_iter()
                        .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
                        .map(|e| {
                            // Sources: 1 set on the topic, 5 the default.
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(e.name))
                                .with_value(Some(StrBytes::from_string(e.value)))
                                .with_config_source(if e.is_default { 5 } else { 1 })
                        })
                        .collect();
                    out.with_configs(configs)
                }
                Err(e) => {
                    out.with_error_code(error_code(&e)).with_error_message(Some(StrBytes::from_string(e.to_string())))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// AlterConfigs (the older API, which librdkafka's admin client uses): the configs given become
/// the topic's whole set of overrides; every override not given goes back to its default.
async fn replace_configs(request: AlterConfigsRequest, served: &Served, access: &Access<'_>) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let out = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let topic = resource.resource_name.to_string();
        let result = if let Some(refused) = denied(access, resource.resource_type, &topic, op::ALTER_CONFIGS) {
            Err(refused)
        } else if resource.resource_type != TOPIC_RESOURCE {
            Err((code::INVALID_CONFIG, "only topic configs can be altered".to_string()))
        } else {
            let wanted: BTreeMap<String, String> = resource
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map_or_else(String::new, |v| v.to_string())))
                .collect();
            match served.log.describe_topic(&topic) {
                Err(e) => Err((error_code(&e), e.to_string())),
                Ok(_) if request.validate_only => {
                    TopicConfig::validate(&wanted).map_err(|e| (error_code(&e), e.to_string()))
                }
                Ok(current) => {
                    let mut changes: BTreeMap<String, Option<String>> = current
                        .overrides
                        .keys()
                        .filter(|k| !wanted.contains_key(*k))
                        .map(|k| (k.clone(), None))
                        .collect();
                    changes.extend(wanted.into_iter().map(|(k, v)| (k, Some(v))));
                    served.log.alter_topic_config(&topic, changes).await.map_err(|e| (error_code(&e), e.to_string()))
                }
            }
        };
        responses.push(match result {
            Ok(()) => out,
            Err((code, message)) => out.with_error_code(code).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Kafka's IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// The changes one resource's operations make to a topic's overrides (`None`: back to the
/// default). APPEND and SUBTRACT apply to list configs, starting from the value in effect, as
/// Kafka applies them; on any other config they are refused.
fn incremental_changes(
    topic: &str,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    served: &Served,
) -> Result<BTreeMap<String, Option<String>>, (i16, String)> {
    let in_effect: BTreeMap<String, String> = served
        .log
        .describe_configs(topic)
        .map_err(|e| (error_code(&e), e.to_string()))?
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    let mut changes: BTreeMap<String, Option<String>> = BTreeMap::new();
    for c in ops {
        let key = c.name.to_string();
        let value = c.value.as_ref().map(|v| v.to_string());
        match c.config_operation {
            SET => {
                changes.insert(key, value);
            }
            DELETE => {
                changes.insert(key, None);
            }
            op @ (APPEND | SUBTRACT) => {
                let verb = if op == APPEND { "append" } else { "subtract" };
                if !TopicConfig::is_list(&key) {
                    return Err((
                        code::INVALID_CONFIG,
                        format!("cannot {verb} to {key}: it is not a list config (use SET)"),
                    ));
                }
                // An earlier operation on the same key in this request counts.
                let current = match changes.get(&key) {
                    Some(Some(v)) => v.clone(),
                    _ => in_effect.get(&key).cloned().unwrap_or_default(),
                };
                let mut items: Vec<String> =
                    current.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
                let given: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                if op == APPEND {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                changes.insert(key, Some(items.join(",")));
            }
            op => return Err((code::INVALID_REQUEST, format!("unknown config operation {op} on {key}"))),
        }
    }
    Ok(changes)
}

async fn alter_configs(
    request: IncrementalAlterConfigsRequest,
    served: &Served,
    access: &Access<'_>,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let out = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let topic = resource.resource_name.to_string();
        let result = if let Some(refused) = denied(access, resource.resource_type, &topic, op::ALTER_CONFIGS) {
            Err(refused)
        } else if resource.resource_type != TOPIC_RESOURCE {
            Err((code::INVALID_CONFIG, "only topic configs can be altered".to_string()))
        } else {
            match incremental_changes(&topic, &resource.configs, served) {
                Err(e) => Err(e),
                Ok(changes) if request.validate_only => {
                    // The overrides the changes would leave, checked whole.
                    served.log.describe_topic(&topic).map_err(|e| (error_code(&e), e.to_string())).and_then(|d| {
                        let mut overrides = d.overrides;
                        for (k, v) in changes {
                            match v {
                                Some(v) => overrides.insert(k, v),
                                None => overrides.remove(&k),
                            };
                        }
                        TopicConfig::validate(&overrides).map_err(|e| (error_code(&e), e.to_string()))
                    })
                }
                Ok(changes) => {
                    served.log.alter_topic_config(&topic, changes).await.map_err(|e| (error_code(&e), e.to_string()))
                }
            }
        };
        responses.push(match result {
            Ok(()) => out,
            Err((code, message)) => out.with_error_code(code).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// DescribeConfigs.
pub(crate) fn serve_describe(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&describe_configs(request, r.served, &r.access()))
    })
}

/// AlterConfigs: each resource's configs replaced whole.
pub(crate) fn serve_alter(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = replace_configs(request, r.served, &access).await;
        r.respond(&response)
    })
}

/// IncrementalAlterConfigs.
pub(crate) fn serve_incremental_alter(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        let access = r.access();
        let response = alter_configs(request, r.served, &access).await;
        r.respond(&response)
    })
}
