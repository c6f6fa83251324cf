//! The plugins a worker knows, by name: connectors (the built-ins and any a program registers),
//! converters, transforms and predicates. A config's `connector.class` (or `*.converter`,
//! `transforms.<t>.type`) names one by Kafka's class name or by an alias, so Kafka's configs work
//! as they are. Plugins are compiled in, so there is no `plugin.path` to scan: a program that
//! embeds the worker registers its own connectors with [`Plugins::register`].

use crate::builtin;
use crate::connector::{ConnectorPlugin, ConnectorType};
use crate::converter::{converters, ConverterPlugin};
use crate::transforms::{predicates, transforms, PredicatePlugin, TransformPlugin};

/// The plugins a worker knows.
#[derive(Debug, Clone)]
pub struct Plugins {
    connectors: Vec<ConnectorPlugin>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins::builtin()
    }
}

impl Plugins {
    /// The built-in plugins.
    pub fn builtin() -> Self {
        Plugins { connectors: builtin::connectors() }
    }

    /// Adds a connector plugin; one of the same class is replaced.
    pub fn register(&mut self, plugin: ConnectorPlugin) -> &mut Self {
        self.connectors.retain(|p| p.class != plugin.class);
        self.connectors.push(plugin);
        self
    }

    /// The connector plugin called `name` (its class or an alias).
    pub fn connector(&self, name: &str) -> Option<&ConnectorPlugin> {
        let name = name.trim();
        self.connectors.iter().find(|p| p.is_named(name))
    }

    /// Every connector plugin, by class.
    pub fn connectors(&self) -> Vec<&ConnectorPlugin> {
        let mut out: Vec<&ConnectorPlugin> = self.connectors.iter().collect();
        out.sort_by(|a, b| a.class.cmp(&b.class));
        out
    }

    /// Every plugin as `GET /connector-plugins` lists them: (class, type), connectors only or all.
    pub fn listing(&self, connectors_only: bool) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> =
            self.connectors().into_iter().map(|p| (p.class.clone(), p.kind().name())).collect();
        if !connectors_only {
            let mut others: Vec<(String, &'static str)> = Vec::new();
            others.extend(transforms().iter().map(|t: &TransformPlugin| (t.class.to_string(), "transformation")));
            others.extend(predicates().iter().map(|p: &PredicatePlugin| (p.class.to_string(), "predicate")));
            for c in converters() {
                let c: ConverterPlugin = c;
                others.push((c.class.to_string(), "converter"));
                if c.make_header.is_some() {
                    others.push((c.class.to_string(), "header_converter"));
                }
            }
            others.sort();
            out.extend(others);
        }
        out
    }

    /// Whether `name` names a connector of `kind`.
    pub fn is_kind(&self, name: &str, kind: ConnectorType) -> bool {
        self.connector(name).is_some_and(|p| p.kind() == kind)
    }
}
