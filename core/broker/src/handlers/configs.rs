//! The config APIs: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs (topic resources).

use std::collections::BTreeMap;

use freshet_coord::code;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use futures::future::BoxFuture;

use crate::dispatch::{Handled, Request, Served};
use crate::errors::error_code;

/// Kafka's resource type of a topic in config requests.
const TOPIC_RESOURCE: i8 = 2;

fn describe_configs(request: DescribeConfigsRequest, served: &Served) -> DescribeConfigsResponse {
    use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let out = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
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
async fn replace_configs(request: AlterConfigsRequest, served: &Served) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let out = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let topic = resource.resource_name.to_string();
        let result = if resource.resource_type != TOPIC_RESOURCE {
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
                    freshet_log::config::TopicConfig::validate(&wanted).map_err(|e| (error_code(&e), e.to_string()))
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

async fn alter_configs(request: IncrementalAlterConfigsRequest, served: &Served) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let out = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let topic = resource.resource_name.to_string();
        // Operations: 0 set, 1 delete (back to the default); 2 append and 3 subtract apply to list
        // configs, which topics here do not have.
        let mut changes = BTreeMap::new();
        let mut refused = None;
        for c in &resource.configs {
            match c.config_operation {
                0 => {
                    changes.insert(c.name.to_string(), c.value.as_ref().map(|v| v.to_string()));
                }
                1 => {
                    changes.insert(c.name.to_string(), None);
                }
                op => {
                    refused = Some(format!("operation {op} on {} is not supported for topic configs", c.name.as_str()))
                }
            }
        }
        let result = if resource.resource_type != TOPIC_RESOURCE {
            Err((code::INVALID_CONFIG, "only topic configs can be altered".to_string()))
        } else if let Some(reason) = refused {
            Err((code::INVALID_CONFIG, reason))
        } else if request.validate_only {
            served.log.describe_topic(&topic).map(|_| ()).map_err(|e| (error_code(&e), e.to_string()))
        } else {
            served.log.alter_topic_config(&topic, changes).await.map_err(|e| (error_code(&e), e.to_string()))
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
        r.respond(&describe_configs(request, r.served))
    })
}

/// AlterConfigs: each resource's configs replaced whole.
pub(crate) fn serve_alter(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&replace_configs(request, r.served).await)
    })
}

/// IncrementalAlterConfigs.
pub(crate) fn serve_incremental_alter(mut r: Request<'_>) -> BoxFuture<'_, Handled> {
    Box::pin(async move {
        let request = r.decode()?;
        r.respond(&alter_configs(request, r.served).await)
    })
}
