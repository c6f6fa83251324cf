//! A connector's chain of transforms, built from its config as Kafka Connect builds it
//! (`ConnectorConfig.transformationStages`):
//!
//! ```properties
//! transforms=dropTombstones,route
//! transforms.dropTombstones.type=org.apache.kafka.connect.transforms.Filter
//! transforms.dropTombstones.predicate=isTombstone
//! transforms.route.type=RegexRouter
//! transforms.route.regex=(.*)-raw
//! transforms.route.replacement=$1
//! predicates=isTombstone
//! predicates.isTombstone.type=org.apache.kafka.connect.transforms.predicates.RecordIsTombstone
//! ```
//!
//! Each step runs when it has no predicate, or when its predicate matches (does not match, with
//! `negate=true`); the chain stops at the first step that drops the record. Every predicate
//! listed in `predicates` is configured, used or not, as Kafka checks them all.

use std::sync::Arc;

use super::{predicates, transforms, Predicate, PredicatePlugin, TransformPlugin, Transformation};
use crate::config::{split_list, Config, ConfigDef, ConfigKey, ConfigType, ConfigValue, Importance, Props};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

const TRANSFORMS: &str = "transforms";
const PREDICATES: &str = "predicates";
const TYPE: &str = "type";
const PREDICATE: &str = "predicate";
const NEGATE: &str = "negate";

/// The transform registered under `name`: Kafka's class name or one of its aliases.
pub fn transform_plugin(name: &str) -> Option<TransformPlugin> {
    transforms().into_iter().find(|p| p.class == name || p.aliases.contains(&name))
}

/// The predicate registered under `name`: Kafka's class name or one of its aliases.
pub fn predicate_plugin(name: &str) -> Option<PredicatePlugin> {
    predicates().into_iter().find(|p| p.class == name || p.aliases.contains(&name))
}

/// One step of the chain.
#[derive(Debug)]
struct Stage {
    alias: String,
    class: &'static str,
    transform: Box<dyn Transformation>,
    /// The guard and whether it is negated.
    predicate: Option<(Arc<dyn Predicate>, bool)>,
}

/// The transforms of a connector, in order.
///
/// ```
/// use freshet_connectors::config::parse_properties;
/// use freshet_connectors::transforms::TransformChain;
/// use freshet_connectors::{Config, ConnectRecord, Value};
///
/// let config = Config::from_props(parse_properties(
///     "transforms=route\n\
///      transforms.route.type=RegexRouter\n\
///      transforms.route.regex=(.*)-raw\n\
///      transforms.route.replacement=$1-clean\n",
/// ));
/// let chain = TransformChain::from_config(&config)?;
/// let record = ConnectRecord::new("orders-raw", None, Value::String("hello".into()));
/// let routed = chain.apply(record)?.expect("RegexRouter keeps every record");
/// assert_eq!(routed.topic, "orders-clean");
/// # Ok::<(), freshet_connectors::ConnectError>(())
/// ```
#[derive(Debug, Default)]
pub struct TransformChain {
    stages: Vec<Stage>,
}

impl TransformChain {
    /// Builds the chain a connector's config describes; the first config error, naming its key.
    pub fn from_config(config: &Config) -> Result<TransformChain> {
        let props = config.props();
        let transform_aliases = aliases(props, TRANSFORMS)?;
        let predicate_aliases = aliases(props, PREDICATES)?;

        let mut predicates: Vec<(String, Arc<dyn Predicate>)> = Vec::with_capacity(predicate_aliases.len());
        for alias in &predicate_aliases {
            let prefix = format!("{PREDICATES}.{alias}.");
            let plugin =
                lookup(props, &prefix, predicate_plugin, |name| transform_plugin(name).is_some(), "Predicate")?;
            let plugin_props = plugin_props(props, &prefix, &[TYPE]);
            first_error(&prefixed((plugin.config_def)(), &prefix).validate(props))?;
            let predicate = (plugin.make)(&Config::from_props(plugin_props)).map_err(|e| prefix_error(e, &prefix))?;
            predicates.push((alias.clone(), Arc::from(predicate)));
        }

        let mut stages = Vec::with_capacity(transform_aliases.len());
        for alias in &transform_aliases {
            let prefix = format!("{TRANSFORMS}.{alias}.");
            if let Some(reason) = negate_without_predicate(props, &prefix) {
                return Err(ConnectError::config(
                    format!("{prefix}{NEGATE}"),
                    props[&format!("{prefix}{NEGATE}")].clone(),
                    reason,
                ));
            }
            let plugin =
                lookup(props, &prefix, transform_plugin, |name| predicate_plugin(name).is_some(), "Transformation")?;
            first_error(&stage_keys(&prefix).validate(props))?;
            first_error(&prefixed((plugin.config_def)(), &prefix).validate(props))?;
            let plugin_props = plugin_props(props, &prefix, &[TYPE, PREDICATE, NEGATE]);
            let transform = (plugin.make)(&Config::from_props(plugin_props)).map_err(|e| prefix_error(e, &prefix))?;
            let predicate = match props.get(&format!("{prefix}{PREDICATE}")).map(|p| p.trim()).filter(|p| !p.is_empty())
            {
                None => None,
                Some(name) => {
                    let Some((_, predicate)) = predicates.iter().find(|(alias, _)| alias == name) else {
                        return Err(ConnectError::config(
                            format!("{prefix}{PREDICATE}"),
                            name,
                            unknown_predicate(name),
                        ));
                    };
                    let negate =
                        props.get(&format!("{prefix}{NEGATE}")).is_some_and(|n| n.trim().eq_ignore_ascii_case("true"));
                    Some((Arc::clone(predicate), negate))
                }
            };
            stages.push(Stage { alias: alias.clone(), class: plugin.class, transform, predicate });
        }
        Ok(TransformChain { stages })
    }

    /// Runs `record` through the chain: the record transformed, or `None` when a step dropped
    /// it. A step's error (a poison record) names the step.
    pub fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        for stage in &self.stages {
            if let Some((predicate, negate)) = &stage.predicate {
                if predicate.test(&record) == *negate {
                    continue;
                }
            }
            match stage.transform.apply(record) {
                Ok(Some(transformed)) => record = transformed,
                Ok(None) => return Ok(None),
                Err(ConnectError::Data(message)) => {
                    return Err(ConnectError::data(format!(
                        "transform \"{}\" ({}): {message}",
                        stage.alias, stage.class
                    )))
                }
                Err(other) => return Err(other),
            }
        }
        Ok(Some(record))
    }

    /// Checks the keys under `transforms.` and `predicates.` of a connector's config: one
    /// result per key (Kafka's validate endpoint for them), each plugin's own keys included. The
    /// `transforms` and `predicates` lists belong to the connector's own definition; an alias
    /// listed twice is reported on that alias's `type` key. Beyond Kafka, which checks only what
    /// a plugin's `ConfigDef` expresses, each plugin is also configured, and what it refuses is
    /// reported on the key it names.
    pub fn validate(config: &Props) -> Vec<ConfigValue> {
        let mut results = Vec::new();
        let mut alias_lists = Vec::new();
        let mut list_errors = Vec::new();
        for key in [TRANSFORMS, PREDICATES] {
            let list = config.get(key).map(|v| split_list(v)).unwrap_or_default();
            if let Err(e) = aliases(config, key) {
                list_errors.push((key, message(&e)));
            }
            alias_lists.push(dedup(list));
        }
        let (transform_aliases, predicate_aliases) = (&alias_lists[0], &alias_lists[1]);

        for alias in transform_aliases {
            let prefix = format!("{TRANSFORMS}.{alias}.");
            let type_at = results.len();
            let plugin = check_type(
                config,
                &prefix,
                transform_plugin,
                |n| predicate_plugin(n).is_some(),
                "Transformation",
                &mut results,
            );
            if let Some(reason) = negate_without_predicate(config, &prefix) {
                results[type_at].errors.push(reason);
            }
            let stage_at = results.len();
            results.extend(stage_keys(&prefix).validate(config));
            if let Some(name) = config.get(&format!("{prefix}{PREDICATE}")).map(|p| p.trim()).filter(|p| !p.is_empty())
            {
                if !predicate_aliases.iter().any(|a| a == name) {
                    results[stage_at].errors.push(unknown_predicate(name));
                }
            }
            if let Some(plugin) = plugin {
                let props = plugin_props(config, &prefix, &[TYPE, PREDICATE, NEGATE]);
                check_plugin(
                    config,
                    &prefix,
                    (plugin.config_def)(),
                    |c| (plugin.make)(c).map(drop),
                    props,
                    type_at,
                    &mut results,
                );
            }
        }
        for alias in predicate_aliases {
            let prefix = format!("{PREDICATES}.{alias}.");
            let type_at = results.len();
            let plugin = check_type(
                config,
                &prefix,
                predicate_plugin,
                |n| transform_plugin(n).is_some(),
                "Predicate",
                &mut results,
            );
            if let Some(plugin) = plugin {
                let props = plugin_props(config, &prefix, &[TYPE]);
                check_plugin(
                    config,
                    &prefix,
                    (plugin.config_def)(),
                    |c| (plugin.make)(c).map(drop),
                    props,
                    type_at,
                    &mut results,
                );
            }
        }
        for (key, error) in list_errors {
            let duplicated = duplicate(config.get(key).map(|v| split_list(v)).unwrap_or_default());
            let type_key = format!("{key}.{}.{TYPE}", duplicated.unwrap_or_default());
            if let Some(result) = results.iter_mut().find(|r| r.name == type_key) {
                result.errors.push(error);
            }
        }
        results
    }

    /// How many steps the chain has.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// Whether the chain has no step (records pass as they are).
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }
}

/// The aliases listed under `key`, refusing one given twice.
fn aliases(props: &Props, key: &str) -> Result<Vec<String>> {
    let Some(raw) = props.get(key) else { return Ok(Vec::new()) };
    let list = split_list(raw);
    if dedup(list.clone()).len() != list.len() {
        return Err(ConnectError::config(key, raw.clone(), "Duplicate alias provided."));
    }
    Ok(list)
}

/// The first alias listed twice.
fn duplicate(list: Vec<String>) -> Option<String> {
    list.iter().enumerate().find(|(i, a)| list[..*i].contains(a)).map(|(_, a)| a.clone())
}

fn dedup(mut list: Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    list.retain(|a| {
        let new = !seen.contains(a);
        seen.push(a.clone());
        new
    });
    list
}

/// The definition of a `type` key.
fn type_key(prefix: &str, kind: &str) -> ConfigKey {
    ConfigKey::required(
        format!("{prefix}{TYPE}"),
        ConfigType::Class,
        Importance::High,
        format!("Class for the {kind}."),
    )
}

/// The keys every transform takes beside its own (Kafka's implicit `predicate` and `negate`).
fn stage_keys(prefix: &str) -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::optional(
            format!("{prefix}{PREDICATE}"),
            ConfigType::String,
            None,
            Importance::Medium,
            "The alias of a predicate used to determine whether to apply this transformation.",
        ))
        .define(ConfigKey::optional(
            format!("{prefix}{NEGATE}"),
            ConfigType::Boolean,
            Some("false"),
            Importance::Medium,
            "Whether the configured predicate should be negated.",
        ))
}

/// The plugin named by `<prefix>type`, or the config error.
fn lookup<P>(
    props: &Props,
    prefix: &str,
    find: fn(&str) -> Option<P>,
    other_kind: impl Fn(&str) -> bool,
    kind: &str,
) -> Result<P> {
    let key = type_key(prefix, kind);
    let given = props.get(&key.name).map(|v| v.trim());
    if let Some(error) = key.check(given).into_iter().next() {
        return Err(ConnectError::config(&key.name, given.unwrap_or(""), error));
    }
    let name = given.unwrap_or("");
    find(name).ok_or_else(|| ConnectError::config(&key.name, name, not_found(name, other_kind(name), kind)))
}

fn not_found(name: &str, is_other_kind: bool, kind: &str) -> String {
    if is_other_kind {
        format!("Not a {kind}")
    } else {
        format!("Class {name} could not be found.")
    }
}

/// Checks `<prefix>type` into `results`; the plugin when it names one.
fn check_type<P>(
    props: &Props,
    prefix: &str,
    find: fn(&str) -> Option<P>,
    other_kind: impl Fn(&str) -> bool,
    kind: &str,
    results: &mut Vec<ConfigValue>,
) -> Option<P> {
    let key = type_key(prefix, kind);
    let given = props.get(&key.name).map(|v| v.trim());
    let mut errors = key.check(given);
    let plugin = given.and_then(find);
    if let (Some(name), None, true) = (given, &plugin, errors.is_empty()) {
        errors.push(format!(
            "Invalid value {name} for configuration {}: {}",
            key.name,
            not_found(name, other_kind(name), kind)
        ));
    }
    results.push(ConfigValue { name: key.name, value: given.map(str::to_string), errors, password: false });
    plugin
}

/// Checks a plugin's own keys into `results`, then configures it and reports what it refuses.
fn check_plugin(
    props: &Props,
    prefix: &str,
    def: ConfigDef,
    make: impl Fn(&Config) -> Result<()>,
    plugin_props: Props,
    type_at: usize,
    results: &mut Vec<ConfigValue>,
) {
    let own = prefixed(def, prefix).validate(props);
    let clean = own.iter().all(|r| r.errors.is_empty());
    let own_at = results.len();
    results.extend(own);
    if !clean {
        return;
    }
    if let Err(e) = make(&Config::from_props(plugin_props)) {
        let e = prefix_error(e, prefix);
        let at = match &e {
            ConnectError::Config { key, .. } => {
                results[own_at..].iter().position(|r| &r.name == key).map_or(type_at, |i| own_at + i)
            }
            _ => type_at,
        };
        results[at].errors.push(message(&e));
    }
}

/// The error's text as the validate endpoint shows it (Kafka's `ConfigException` message).
fn message(e: &ConnectError) -> String {
    match e {
        ConnectError::Config { key, reason, .. }
            if key.ends_with(&format!(".{TYPE}")) || reason.contains(key.as_str()) =>
        {
            reason.clone()
        }
        ConnectError::Config { key, value, reason } => {
            format!("Invalid value {value} for configuration {key}: {reason}")
        }
        other => other.to_string(),
    }
}

/// `negate` given without `predicate`: Kafka's error.
fn negate_without_predicate(props: &Props, prefix: &str) -> Option<String> {
    let (negate, predicate) = (format!("{prefix}{NEGATE}"), format!("{prefix}{PREDICATE}"));
    (props.contains_key(&negate) && !props.contains_key(&predicate)).then(|| {
        format!(
            "Config '{negate}' was provided but there is no config '{predicate}' defining a predicate to be negated."
        )
    })
}

fn unknown_predicate(name: &str) -> String {
    format!("Predicate alias \"{name}\" is not one of the aliases listed in \"{PREDICATES}\"")
}

/// The keys under `prefix`, with it and the `skip` keys removed.
fn plugin_props(props: &Props, prefix: &str, skip: &[&str]) -> Props {
    props
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, v)))
        .filter(|(k, _)| !skip.contains(k))
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A plugin's definition with every key under `prefix`, so that messages name the full key.
fn prefixed(def: ConfigDef, prefix: &str) -> ConfigDef {
    def.keys().iter().fold(ConfigDef::new(), |out, key| {
        out.define(ConfigKey { name: format!("{prefix}{}", key.name), ..key.clone() })
    })
}

/// The first error of a validation.
fn first_error(results: &[ConfigValue]) -> Result<()> {
    match results.iter().find(|r| !r.errors.is_empty()) {
        None => Ok(()),
        Some(r) => {
            let value = r.value.clone().unwrap_or_default();
            // `ConnectError::Config` says which value and key itself.
            let repeated = format!("Invalid value {value} for configuration {}: ", r.name);
            let reason = r.errors[0].strip_prefix(&repeated).unwrap_or(&r.errors[0]).to_string();
            Err(ConnectError::config(&r.name, value, reason))
        }
    }
}

/// A plugin's config error with its key under the plugin's prefix.
fn prefix_error(e: ConnectError, prefix: &str) -> ConnectError {
    match e {
        ConnectError::Config { key, value, reason } => {
            ConnectError::Config { key: format!("{prefix}{key}"), value, reason }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plugin_is_found_by_class_and_alias() {
        for plugin in transforms() {
            assert_eq!(transform_plugin(plugin.class).unwrap().class, plugin.class);
            for alias in plugin.aliases {
                assert_eq!(transform_plugin(alias).unwrap().class, plugin.class);
            }
        }
        for plugin in predicates() {
            assert_eq!(predicate_plugin(plugin.class).unwrap().class, plugin.class);
        }
        assert_eq!(transforms().len(), 26);
        assert_eq!(predicates().len(), 3);
        assert!(transform_plugin("Cast").is_none());
    }
}
