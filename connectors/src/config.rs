//! Configs as Kafka Connect defines them: keys with a type, a default, an importance and a doc
//! ([`ConfigDef`], Kafka's `ConfigDef`), checked into a [`Config`]; the per-key results the REST
//! API's validate endpoint returns; and Java `.properties` files.

use std::collections::BTreeMap;

use crate::error::{ConnectError, Result};

/// Raw configs: key to string value, as REST bodies and properties files give them.
pub type Props = BTreeMap<String, String>;

/// A config value's type (Kafka's `ConfigDef.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` or `false`.
    Boolean,
    /// Any string.
    String,
    /// A 32-bit integer.
    Int,
    /// A 16-bit integer.
    Short,
    /// A 64-bit integer.
    Long,
    /// A double.
    Double,
    /// A comma-separated list.
    List,
    /// A plugin's name (a class, in Kafka).
    Class,
    /// A secret: never shown.
    Password,
}

impl ConfigType {
    /// Kafka's name (`STRING`, `INT`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }

    /// Checks a value parses as this type; the reason when it does not, in Kafka's words.
    fn check(self, value: &str) -> std::result::Result<(), String> {
        let value = value.trim();
        let ok = match self {
            ConfigType::Boolean => value.eq_ignore_ascii_case("true") || value.eq_ignore_ascii_case("false"),
            ConfigType::Int => value.parse::<i32>().is_ok(),
            ConfigType::Short => value.parse::<i16>().is_ok(),
            ConfigType::Long => value.parse::<i64>().is_ok(),
            ConfigType::Double => value.parse::<f64>().is_ok(),
            ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => true,
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            ConfigType::Boolean => "Expected value to be either true or false".into(),
            ty => format!("Not a number of type {}", ty.name()),
        })
    }
}

/// How much a key matters (Kafka's `ConfigDef.Importance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    /// HIGH.
    High,
    /// MEDIUM.
    Medium,
    /// LOW.
    Low,
}

impl Importance {
    /// Kafka's name.
    pub fn name(self) -> &'static str {
        match self {
            Importance::High => "HIGH",
            Importance::Medium => "MEDIUM",
            Importance::Low => "LOW",
        }
    }
}

/// A check of a value beyond its type.
#[derive(Debug, Clone, PartialEq)]
pub enum Validator {
    /// One of these strings (case-insensitively).
    OneOf(Vec<String>),
    /// A number at least this.
    AtLeast(f64),
    /// A number in this range, both ends included.
    Between(f64, f64),
    /// A non-empty string.
    NonEmpty,
}

impl Validator {
    /// One of `values`.
    pub fn one_of(values: &[&str]) -> Validator {
        Validator::OneOf(values.iter().map(|v| v.to_string()).collect())
    }

    fn check(&self, value: &str) -> std::result::Result<(), String> {
        let value = value.trim();
        let number = || value.parse::<f64>().map_err(|_| "Not a number".to_string());
        match self {
            Validator::OneOf(values) if values.iter().any(|v| v.eq_ignore_ascii_case(value)) => Ok(()),
            Validator::OneOf(values) => Err(format!("String must be one of: {}", values.join(", "))),
            Validator::AtLeast(min) if number()? >= *min => Ok(()),
            Validator::AtLeast(min) => Err(format!("Value must be at least {min}")),
            Validator::Between(min, max) if (*min..=*max).contains(&number()?) => Ok(()),
            Validator::Between(min, max) => Err(format!("Value must be no less than {min} and no more than {max}")),
            Validator::NonEmpty if !value.is_empty() => Ok(()),
            Validator::NonEmpty => Err("String must be non-empty".into()),
        }
    }
}

/// One key of a [`ConfigDef`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKey {
    /// The key.
    pub name: String,
    /// Its type.
    pub ty: ConfigType,
    /// Its default: `None` makes it required.
    pub default: Option<Option<String>>,
    /// How much it matters.
    pub importance: Importance,
    /// What it does.
    pub doc: String,
    /// The group it is shown in (`Common`, `Transforms`, ...).
    pub group: Option<String>,
    /// A check beyond the type.
    pub validator: Option<Validator>,
}

impl ConfigKey {
    /// A key with no default: required.
    pub fn required(name: impl Into<String>, ty: ConfigType, importance: Importance, doc: impl Into<String>) -> Self {
        ConfigKey { name: name.into(), ty, default: None, importance, doc: doc.into(), group: None, validator: None }
    }

    /// A key with a default (`None`: null).
    pub fn optional(
        name: impl Into<String>,
        ty: ConfigType,
        default: Option<&str>,
        importance: Importance,
        doc: impl Into<String>,
    ) -> Self {
        ConfigKey { default: Some(default.map(str::to_string)), ..ConfigKey::required(name, ty, importance, doc) }
    }

    /// This key with a validator.
    pub fn validated(self, validator: Validator) -> Self {
        ConfigKey { validator: Some(validator), ..self }
    }

    /// This key in a group.
    pub fn in_group(self, group: &str) -> Self {
        ConfigKey { group: Some(group.into()), ..self }
    }

    /// Checks `value` (`None`: not given); the errors, in Kafka's words.
    pub fn check(&self, value: Option<&str>) -> Vec<String> {
        let value = match (value, &self.default) {
            (Some(v), _) => v,
            (None, Some(_)) => return Vec::new(),
            (None, None) => {
                return vec![format!("Missing required configuration \"{}\" which has no default value.", self.name)]
            }
        };
        let mut errors = Vec::new();
        if let Err(reason) = self.ty.check(value) {
            errors.push(format!("Invalid value {value} for configuration {}: {reason}", self.name));
        } else if let Some(Err(reason)) = self.validator.as_ref().map(|v| v.check(value)) {
            errors.push(format!("Invalid value {value} for configuration {}: {reason}", self.name));
        }
        errors
    }

    /// The definition as the REST API shows it (Kafka's `ConfigKeyInfo`).
    pub fn info(&self) -> serde_json::Value {
        let default = match &self.default {
            Some(Some(v)) if self.ty == ConfigType::Password => serde_json::Value::String(hidden(v)),
            Some(Some(v)) => serde_json::Value::String(v.clone()),
            Some(None) | None => serde_json::Value::Null,
        };
        serde_json::json!({
            "name": self.name,
            "type": self.ty.name(),
            "required": self.default.is_none(),
            "default_value": default,
            "importance": self.importance.name(),
            "documentation": self.doc,
            "group": self.group,
            "width": "NONE",
            "display_name": self.name,
            "dependents": [],
            "order_in_group": -1,
        })
    }
}

/// How a password is shown.
fn hidden(_: &str) -> String {
    "[hidden]".into()
}

/// The keys a plugin takes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigDef {
    keys: Vec<ConfigKey>,
}

impl ConfigDef {
    /// No keys.
    pub fn new() -> Self {
        ConfigDef::default()
    }

    /// Adds a key (replacing one of the same name).
    pub fn define(mut self, key: ConfigKey) -> Self {
        self.keys.retain(|k| k.name != key.name);
        self.keys.push(key);
        self
    }

    /// Adds every key of `other`.
    pub fn merge(mut self, other: &ConfigDef) -> Self {
        for key in &other.keys {
            self = self.define(key.clone());
        }
        self
    }

    /// The keys, in definition order.
    pub fn keys(&self) -> &[ConfigKey] {
        &self.keys
    }

    /// A key by name.
    pub fn key(&self, name: &str) -> Option<&ConfigKey> {
        self.keys.iter().find(|k| k.name == name)
    }

    /// Checks `props` against every key: one result per key, in order.
    pub fn validate(&self, props: &Props) -> Vec<ConfigValue> {
        self.keys
            .iter()
            .map(|key| {
                let given = props.get(&key.name).map(String::as_str);
                ConfigValue {
                    name: key.name.clone(),
                    value: given.map(str::to_string).or_else(|| key.default.clone().flatten()),
                    errors: key.check(given),
                    password: key.ty == ConfigType::Password,
                }
            })
            .collect()
    }

    /// Checks `props` and gives the config with defaults filled in; the first error otherwise.
    /// Keys the def does not know are kept (Kafka passes them through, as `originals`).
    pub fn parse(&self, props: &Props) -> Result<Config> {
        let mut values = props.clone();
        for key in &self.keys {
            let given = props.get(&key.name).map(String::as_str);
            if let Some(error) = key.check(given).into_iter().next() {
                return Err(ConnectError::config(&key.name, given.unwrap_or(""), error));
            }
            if given.is_none() {
                if let Some(Some(default)) = &key.default {
                    values.insert(key.name.clone(), default.clone());
                }
            }
        }
        Ok(Config { values, originals: props.clone() })
    }
}

/// One key's result of a validation (Kafka's `ConfigValue`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigValue {
    /// The key.
    pub name: String,
    /// The value given, or the default.
    pub value: Option<String>,
    /// What is wrong with it.
    pub errors: Vec<String>,
    /// Whether to hide the value.
    pub password: bool,
}

impl ConfigValue {
    /// The value as the REST API shows it (Kafka's `ConfigValueInfo`).
    pub fn info(&self) -> serde_json::Value {
        let value = match &self.value {
            Some(v) if self.password => serde_json::Value::String(hidden(v)),
            Some(v) => serde_json::Value::String(v.clone()),
            None => serde_json::Value::Null,
        };
        serde_json::json!({
            "name": self.name,
            "value": value,
            "recommended_values": [],
            "errors": self.errors,
            "visible": true,
        })
    }
}

/// Checked configs, defaults filled in, with typed getters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    values: Props,
    originals: Props,
}

impl Config {
    /// Configs taken as they are (no def).
    pub fn from_props(values: Props) -> Self {
        Config { originals: values.clone(), values }
    }

    /// The configs as given, without defaults (Kafka's `originals`): what a connector hands its
    /// tasks.
    pub fn originals(&self) -> &Props {
        &self.originals
    }

    /// Every value, the unknown keys included.
    pub fn props(&self) -> &Props {
        &self.values
    }

    /// A value as given (`None`: not given and no default, or a null default).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A required string.
    pub fn string(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| ConnectError::config(key, "", "a value is required"))
    }

    /// A number of any integer or float type, parsed as `T`.
    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let raw = self.string(key)?;
        raw.parse().map_err(|_| ConnectError::config(key, raw, "not a number of the right type"))
    }

    /// An optional number.
    pub fn number_or<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(_) => self.number(key),
        }
    }

    /// A boolean, `default` when not given.
    pub fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(ConnectError::config(key, v, "expected true or false")),
        }
    }

    /// A comma-separated list, trimmed, empty entries dropped.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key).map(split_list).unwrap_or_default()
    }

    /// The configs under `prefix` (`transforms.route.`), with it removed.
    pub fn with_prefix(&self, prefix: &str) -> Props {
        self.values.iter().filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v.clone()))).collect()
    }
}

/// A comma-separated list, trimmed, empty entries dropped.
pub fn split_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Reads a Java `.properties` text: `key=value`, `key: value` or `key value` lines, `#` and `!`
/// comments, a trailing `\` continuing a line, and `\t`, `\n`, `\uXXXX` escapes.
pub fn parse_properties(text: &str) -> Props {
    let mut props = Props::new();
    let mut logical = String::new();
    for line in text.lines() {
        let line = line.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (key, value) = split_property(&logical);
        props.insert(key, value);
        logical.clear();
    }
    if !logical.is_empty() {
        let (key, value) = split_property(&logical);
        props.insert(key, value);
    }
    props
}

/// One logical line's key and value, unescaped.
fn split_property(line: &str) -> (String, String) {
    let mut key_end = line.len();
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' => {
                key_end = i;
                break;
            }
            _ => {}
        }
    }
    let key = &line[..key_end];
    let mut rest = line[key_end..].trim_start_matches([' ', '\t']);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches([' ', '\t']);
    }
    (unescape(key), unescape(rest))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_files_parse_as_java_reads_them() {
        let text = "# comment\n! also\nname=local-file-source\nconnector.class : FileStreamSource\n\
                    tasks.max 1\nfile=/tmp/a\\\n  b.txt\nkey\\=with=eq\nunicode=caf\\u00e9\n";
        let props = parse_properties(text);
        assert_eq!(props["name"], "local-file-source");
        assert_eq!(props["connector.class"], "FileStreamSource");
        assert_eq!(props["tasks.max"], "1");
        assert_eq!(props["file"], "/tmp/ab.txt");
        assert_eq!(props["key=with"], "eq");
        assert_eq!(props["unicode"], "café");
    }

    #[test]
    fn validation_names_the_key() {
        let def = ConfigDef::new()
            .define(ConfigKey::required("topic", ConfigType::String, Importance::High, "The topic"))
            .define(ConfigKey::optional("batch.size", ConfigType::Int, Some("2000"), Importance::Low, "Lines"));
        let props = Props::from([("batch.size".to_string(), "many".to_string())]);
        let results = def.validate(&props);
        assert_eq!(results[0].errors, ["Missing required configuration \"topic\" which has no default value."]);
        assert_eq!(results[1].errors, ["Invalid value many for configuration batch.size: Not a number of type INT"]);
        let err = def.parse(&props).unwrap_err();
        assert!(err.to_string().contains("topic"), "{err}");
        let ok = def.parse(&Props::from([("topic".to_string(), "t".to_string())])).unwrap();
        assert_eq!(ok.number::<i32>("batch.size").unwrap(), 2000);
    }
}
