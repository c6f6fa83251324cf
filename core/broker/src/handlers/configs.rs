//! The config APIs: DescribeConfigs, AlterConfigs, IncrementalAlterConfigs (topic resources).

use std::collections::BTreeMap;

use freshet_coord::code;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsSynonym;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use futures::future::BoxFuture;

use freshet_log::config::TopicConfig;

use crate::acl::op;
use crate::dispatch::{Access, Handled, Request, Served};
use crate::dynamic::{topic_key_of, Scope};
use crate::errors::error_code;

/// Kafka's resource type of a topic in config requests.
const TOPIC_RESOURCE: i8 = 2;
/// Kafka's resource type of a broker in config requests.
const BROKER_RESOURCE: i8 = 4;
/// Config sources: set on the topic, in the broker's config file, or the default.
const TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

/// Config sources of dynamic broker configs: this broker's, the cluster's default.
const DYNAMIC_BROKER_CONFIG: i8 = 2;
const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;

/// One broker setting as DescribeConfigs gives it: name, value, source, and whether it can be
/// changed while the broker runs.
struct BrokerSetting {
    name: String,
    value: String,
    source: i8,
    dynamic: bool,
}

/// This broker's settings under Kafka's names, as DescribeConfigs gives a BROKER resource, the
/// dynamic values of the defaults of topic configs over the config file's.
fn broker_settings(served: &Served) -> Vec<BrokerSetting> {
    let (own, default) = (served.dynamic.get(Scope::Broker), served.dynamic.get(Scope::ClusterDefault));
    static_broker_configs(served)
        .into_iter()
        .map(|(name, value, is_default)| {
            let dynamic = topic_key_of(&name).is_some();
            let static_source = if is_default { DEFAULT_CONFIG } else { STATIC_BROKER_CONFIG };
            let (value, source) = match (own.get(&name), default.get(&name)) {
                (Some(v), _) => (v.clone(), DYNAMIC_BROKER_CONFIG),
                (None, Some(v)) => (v.clone(), DYNAMIC_DEFAULT_BROKER_CONFIG),
                (None, None) => (value, static_source),
            };
            BrokerSetting { name, value, source, dynamic }
        })
        .collect()
}

/// This broker's settings from its config file and flags (or their defaults) under Kafka's
/// names: the value and whether it is the default.
fn static_broker_configs(served: &Served) -> Vec<(String, String, bool)> {
    use freshet_log::config::{Durability, LogConfig, TopicConfig};
    let (c, d) = (&served.config, crate::server::BrokerConfig::default());
    let (log, dl) = (served.log.config(), LogConfig::default());
    let count = |n: usize| n.min(i32::MAX as usize).to_string();
    let authorizer = &c.authorizer;
    let mut out: Vec<(String, String, bool)> = [
        (
            "group.min.session.timeout.ms",
            c.group_session_timeouts.start().as_millis().to_string(),
            c.group_session_timeouts.start() == d.group_session_timeouts.start(),
        ),
        (
            "group.max.session.timeout.ms",
            c.group_session_timeouts.end().as_millis().to_string(),
            c.group_session_timeouts.end() == d.group_session_timeouts.end(),
        ),
        ("node.id", c.node_id.to_string(), false),
        ("broker.id", c.node_id.to_string(), false),
        ("listeners", format!("PLAINTEXT://{}:{}", c.listen.ip(), served.port), c.listen == d.listen),
        ("advertised.listeners", format!("PLAINTEXT://{}:{}", served.host, served.port), c.advertised_host.is_none()),
        ("log.dirs", served.log.dir().display().to_string(), false),
        ("num.partitions", c.default_partitions.to_string(), c.default_partitions == d.default_partitions),
        ("auto.create.topics.enable", c.auto_create_topics.to_string(), c.auto_create_topics == d.auto_create_topics),
        ("socket.request.max.bytes", count(c.max_frame_bytes), c.max_frame_bytes == d.max_frame_bytes),
        ("max.connections", count(c.max_connections), c.max_connections == d.max_connections),
        (
            "max.connections.per.ip",
            count(c.max_connections_per_ip),
            c.max_connections_per_ip == d.max_connections_per_ip,
        ),
        ("group.max.size", count(c.group_max_size), c.group_max_size == d.group_max_size),
        (
            "group.initial.rebalance.delay.ms",
            c.group_initial_rebalance_delay.as_millis().to_string(),
            c.group_initial_rebalance_delay == d.group_initial_rebalance_delay,
        ),
        (
            "authorizer.class.name",
            if authorizer.enabled { "org.apache.kafka.metadata.authorizer.StandardAuthorizer" } else { "" }.to_string(),
            !authorizer.enabled,
        ),
        (
            "allow.everyone.if.no.acl.found",
            authorizer.allow_everyone_if_no_acl_found.to_string(),
            !authorizer.allow_everyone_if_no_acl_found,
        ),
        ("super.users", authorizer.super_users.join(";"), authorizer.super_users.is_empty()),
        (
            "log.retention.check.interval.ms",
            log.maintenance_interval.as_millis().to_string(),
            log.maintenance_interval == dl.maintenance_interval,
        ),
        (
            "log.flush.interval.messages",
            if log.durability == Durability::Fsync { "1".to_string() } else { i64::MAX.to_string() },
            log.durability == dl.durability,
        ),
        (
            "log.flush.interval.ms",
            match log.durability {
                Durability::Interval { flush_interval_ms } => flush_interval_ms.to_string(),
                _ => String::new(),
            },
            !matches!(log.durability, Durability::Interval { .. }),
        ),
    ]
    .into_iter()
    .map(|(name, value, is_default)| (name.to_string(), value, is_default))
    .collect();
    // The defaults of topic configs, under their broker names.
    for entry in TopicConfig::describe(&log.topic_defaults) {
        if let Some(name) = freshet_log::config::broker_synonym(&entry.name) {
            out.push((name.to_string(), entry.value, entry.is_default));
        }
    }
    out.sort();
    out
}

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

/// One synonym of a config (the setting its value comes from), as DescribeConfigs v1+ lists them
/// when asked.
fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value.to_string())))
        .with_source(source)
}

fn describe_configs(request: DescribeConfigsRequest, served: &Served, access: &Access<'_>) -> DescribeConfigsResponse {
    use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
    let synonyms = request.include_synonyms;
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
            let wanted =
                resource.configuration_keys.as_ref().map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
            if resource.resource_type == BROKER_RESOURCE {
                // This broker's settings ("0"), or the cluster's dynamic defaults ("").
                let settings = match Scope::of(&resource.resource_name, served.config.node_id) {
                    Err(message) => {
                        return out
                            .with_error_code(code::INVALID_REQUEST)
                            .with_error_message(Some(StrBytes::from_string(message)))
                    }
                    Ok(Scope::ClusterDefault) => served
                        .dynamic
                        .get(Scope::ClusterDefault)
                        .into_iter()
                        .map(|(name, value)| BrokerSetting {
                            name,
                            value,
                            source: DYNAMIC_DEFAULT_BROKER_CONFIG,
                            dynamic: true,
                        })
                        .collect(),
                    Ok(Scope::Broker) => broker_settings(served),
                };
                let configs = settings
                    .into_iter()
                    .filter(|setting| wanted.as_ref().is_none_or(|w| w.contains(&setting.name)))
                    .map(|setting| {
                        let listed = if synonyms {
                            vec![synonym(&setting.name, &setting.value, setting.source)]
                        } else {
                            Vec::new()
                        };
                        DescribeConfigsResourceResult::default()
                            .with_name(StrBytes::from_string(setting.name))
                            .with_value(Some(StrBytes::from_string(setting.value)))
                            .with_read_only(!setting.dynamic)
                            .with_config_source(setting.source)
                            .with_synonyms(listed)
                    })
                    .collect();
                return out.with_configs(configs);
            }
            if resource.resource_type != TOPIC_RESOURCE {
                // Other resources (groups, loggers): no configs.
                return out;
            }
            match topic_configs(served, &resource.resource_name) {
                Ok(entries) => {
                    let broker_defaults = &served.log.config().topic_defaults;
                    let (own, cluster) = (served.dynamic.get(Scope::Broker), served.dynamic.get(Scope::ClusterDefault));
                    let configs = entries
                        .into_iter()
                        .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
                        .map(|e| {
                            // Sources: 1 set on the topic, 4 the broker's default from its config
                            // file, 5 Kafka's default.
                            let broker_name = freshet_log::config::broker_synonym(&e.name).unwrap_or(&e.name);
                            let source = if !e.is_default {
                                TOPIC_CONFIG
                            } else if own.contains_key(broker_name) {
                                DYNAMIC_BROKER_CONFIG
                            } else if cluster.contains_key(broker_name) {
                                DYNAMIC_DEFAULT_BROKER_CONFIG
                            } else if broker_defaults.contains_key(&e.name) {
                                STATIC_BROKER_CONFIG
                            } else {
                                DEFAULT_CONFIG
                            };
                            // From the most specific: the topic's own value, the broker's
                            // dynamic values, its config file's, Kafka's default.
                            let mut listed = Vec::new();
                            if synonyms {
                                if source == TOPIC_CONFIG {
                                    listed.push(synonym(&e.name, &e.value, TOPIC_CONFIG));
                                }
                                if let Some(v) = own.get(broker_name) {
                                    listed.push(synonym(broker_name, v, DYNAMIC_BROKER_CONFIG));
                                }
                                if let Some(v) = cluster.get(broker_name) {
                                    listed.push(synonym(broker_name, v, DYNAMIC_DEFAULT_BROKER_CONFIG));
                                }
                                if let Some(v) = broker_defaults.get(&e.name) {
                                    listed.push(synonym(broker_name, v, STATIC_BROKER_CONFIG));
                                }
                                let default = TopicConfig::describe(&BTreeMap::new())
                                    .into_iter()
                                    .find(|d| d.name == e.name)
                                    .map(|d| d.value)
                                    .unwrap_or_default();
                                listed.push(synonym(broker_name, &default, DEFAULT_CONFIG));
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(e.name))
                                .with_value(Some(StrBytes::from_string(e.value)))
                                .with_config_source(source)
                                .with_synonyms(listed)
                        })
                        .collect();
                    out.with_configs(configs)
                }
                Err((code, message)) => {
                    out.with_error_code(code).with_error_message(Some(StrBytes::from_string(message)))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A topic's overrides: in a cluster, its metadata's (any broker answers for any topic, as
/// Kafka's do, whether it holds a replica or not); on one node, the log's.
fn topic_overrides(served: &Served, topic: &str) -> Result<BTreeMap<String, String>, (i16, String)> {
    match &served.cluster {
        Some(cluster) => {
            let image = cluster.image();
            if image.topic(topic).is_none() {
                return Err((code::UNKNOWN_TOPIC_OR_PARTITION, format!("unknown topic \"{topic}\"")));
            }
            Ok(image.topic_configs.get(topic).cloned().unwrap_or_default())
        }
        None => served.log.describe_topic(topic).map(|d| d.overrides).map_err(|e| (error_code(&e), e.to_string())),
    }
}

/// Every config of a topic with the value in effect.
fn topic_configs(served: &Served, topic: &str) -> Result<Vec<freshet_log::config::ConfigEntry>, (i16, String)> {
    Ok(served.log.describe_overrides(&topic_overrides(served, topic)?))
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
        } else if resource.resource_type == BROKER_RESOURCE {
            let wanted: BTreeMap<String, String> = resource
                .configs
                .iter()
                .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                .collect();
            alter_broker(served, &topic, wanted, request.validate_only).await
        } else if resource.resource_type != TOPIC_RESOURCE {
            Err((code::INVALID_CONFIG, "only topic and broker configs can be altered".to_string()))
        } else {
            let wanted: BTreeMap<String, String> = resource
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map_or_else(String::new, |v| v.to_string())))
                .collect();
            match topic_overrides(served, &topic) {
                Err(e) => Err(e),
                Ok(_) if request.validate_only => {
                    TopicConfig::validate(&wanted).map_err(|e| (error_code(&e), e.to_string()))
                }
                Ok(current) => {
                    let mut changes: BTreeMap<String, Option<String>> =
                        current.keys().filter(|k| !wanted.contains_key(*k)).map(|k| (k.clone(), None)).collect();
                    changes.extend(wanted.into_iter().map(|(k, v)| (k, Some(v))));
                    store_topic_config(served, &topic, changes).await
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
    let in_effect: BTreeMap<String, String> =
        topic_configs(served, topic)?.into_iter().map(|e| (e.name, e.value)).collect();
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

/// Stores a topic's changed overrides: in the log, or in a cluster through the controller (every
/// broker holding the topic then applies them from the image).
async fn store_topic_config(
    served: &Served,
    topic: &str,
    changes: BTreeMap<String, Option<String>>,
) -> Result<(), (i16, String)> {
    match &served.cluster {
        None => served.log.alter_topic_config(topic, changes).await.map_err(|e| (error_code(&e), e.to_string())),
        Some(cluster) => cluster
            .alter_configs(
                freshet_cluster::records::ConfigResource::Topic(topic.to_owned()),
                changes.into_iter().collect(),
            )
            .await
            .map_err(|e| (e.code, e.message)),
    }
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
        } else if resource.resource_type == BROKER_RESOURCE {
            match incremental_broker_changes(served, &topic, &resource.configs) {
                Ok(wanted) => alter_broker(served, &topic, wanted, request.validate_only).await,
                Err(e) => Err(e),
            }
        } else if resource.resource_type != TOPIC_RESOURCE {
            Err((code::INVALID_CONFIG, "only topic and broker configs can be altered".to_string()))
        } else {
            match incremental_changes(&topic, &resource.configs, served) {
                Err(e) => Err(e),
                Ok(changes) if request.validate_only => {
                    // The overrides the changes would leave, checked whole.
                    topic_overrides(served, &topic).and_then(|mut overrides| {
                        for (k, v) in changes {
                            match v {
                                Some(v) => overrides.insert(k, v),
                                None => overrides.remove(&k),
                            };
                        }
                        TopicConfig::validate(&overrides).map_err(|e| (error_code(&e), e.to_string()))
                    })
                }
                Ok(changes) => store_topic_config(served, &topic, changes).await,
            }
        };
        responses.push(match result {
            Ok(()) => out,
            Err((code, message)) => out.with_error_code(code).with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Makes `wanted` the dynamic configs of the BROKER resource `name` (this broker's node id, or "": the cluster's
/// default), each one Freshet takes while running and each value valid for the topic config it
/// is the default of.
async fn alter_broker(
    served: &Served,
    name: &str,
    wanted: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), (i16, String)> {
    let scope = Scope::of(name, served.config.node_id).map_err(|message| (code::INVALID_REQUEST, message))?;
    let fixed: Vec<&str> = wanted.keys().map(String::as_str).filter(|k| topic_key_of(k).is_none()).collect();
    if !fixed.is_empty() {
        let known: Vec<String> = static_broker_configs(served).into_iter().map(|(n, _, _)| n).collect();
        let (settings, unknown): (Vec<&str>, Vec<&str>) = fixed.iter().partition(|k| known.iter().any(|n| n == *k));
        return Err(if unknown.is_empty() {
            (
                code::INVALID_REQUEST,
                format!(
                    "cannot update these configs dynamically: {}; they come from the broker's config file (the \
                     defaults of topic configs can be, as log.retention.ms)",
                    settings.join(", ")
                ),
            )
        } else {
            (code::INVALID_CONFIG, format!("not settings of Freshet's broker: {}", unknown.join(", ")))
        });
    }
    served.dynamic.replace(scope, wanted, validate_only).await.map_err(|e| (error_code(&e), e.to_string()))
}

/// The dynamic configs of the BROKER resource `name` after IncrementalAlterConfigs' operations:
/// SET and DELETE; APPEND and SUBTRACT on a list config (`log.cleanup.policy`), from the value
/// in effect, as Kafka applies them.
fn incremental_broker_changes(
    served: &Served,
    name: &str,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, (i16, String)> {
    let scope = Scope::of(name, served.config.node_id).map_err(|message| (code::INVALID_REQUEST, message))?;
    let mut values = served.dynamic.get(scope);
    let in_effect: BTreeMap<String, String> = broker_settings(served).into_iter().map(|s| (s.name, s.value)).collect();
    for op in ops {
        let key = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        match op.config_operation {
            SET => {
                values.insert(key, value);
            }
            DELETE => {
                values.remove(&key);
            }
            APPEND | SUBTRACT if key == "log.cleanup.policy" => {
                let current = values.get(&key).or(in_effect.get(&key)).cloned().unwrap_or_default();
                let mut items: Vec<String> =
                    current.split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect();
                for item in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    if op.config_operation == APPEND {
                        if !items.iter().any(|i| i == item) {
                            items.push(item.to_string());
                        }
                    } else {
                        items.retain(|i| i != item);
                    }
                }
                values.insert(key, items.join(","));
            }
            APPEND | SUBTRACT => {
                return Err((
                    code::INVALID_CONFIG,
                    format!("{key} is not a list config: APPEND and SUBTRACT do not apply"),
                ))
            }
            other => return Err((code::INVALID_REQUEST, format!("unknown config operation {other}"))),
        }
    }
    Ok(values)
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
