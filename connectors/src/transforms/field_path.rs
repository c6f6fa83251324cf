//! Field paths of KIP-821 (Kafka's `SingleFieldPath` and `FieldSyntaxVersion`): with
//! `field.syntax.version=V1` a path is one top-level field name, dots included; with `V2` dots
//! step into nested structs and maps, and a name with dots is wrapped in backticks
//! (`` `foo.bar`.baz ``, a backtick inside escaped with a backslash).
//!
//! Apache Kafka gives the key to `ExtractField` only, and so does Freshet.

use crate::config::{Config, ConfigKey, ConfigType, Importance, Validator};
use crate::data::{Field, Schema, Struct, Type, Value};
use crate::error::{ConnectError, Result};

use super::operand::{field_value, map_get, require_map_or_null, require_struct_or_null};

/// The key choosing the syntax.
pub(crate) const FIELD_SYNTAX_VERSION: &str = "field.syntax.version";

/// The key's definition, as Kafka's `FieldSyntaxVersion.appendConfigTo` adds it.
pub(crate) fn syntax_version_key() -> ConfigKey {
    ConfigKey::optional(
        FIELD_SYNTAX_VERSION,
        ConfigType::String,
        Some("V1"),
        Importance::High,
        "Defines the version of the syntax to access fields. If set to `V1`, then the field paths are limited to \
         access the elements at the root level of the struct or map. If set to `V2`, the syntax will support \
         accessing nested elements. To access nested elements, dotted notation is used. If dots are already \
         included in the field name, then backtick pairs can be used to wrap field names containing dots. E.g. to \
         access the subfield `baz` from a field named \"foo.bar\" in a struct/map the following format can be used \
         to access its elements: \"`foo.bar`.baz\".",
    )
    .validated(Validator::one_of(&["V1", "V2"]))
}

/// A path to one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldPath {
    steps: Vec<String>,
}

impl FieldPath {
    /// The path `text` in the syntax `config` chooses.
    pub(crate) fn from_config(text: &str, config: &Config) -> Result<FieldPath> {
        let version = config.get(FIELD_SYNTAX_VERSION).unwrap_or("V1");
        if version.eq_ignore_ascii_case("V1") {
            Ok(FieldPath { steps: vec![text.to_string()] })
        } else if version.eq_ignore_ascii_case("V2") {
            FieldPath::v2(text).map_err(|reason| ConnectError::config("field", text, reason))
        } else {
            Err(ConnectError::config(FIELD_SYNTAX_VERSION, version, "Unrecognized field syntax version"))
        }
    }

    /// Splits a V2 path into its steps (Kafka's `buildFieldPathV2`).
    fn v2(path: &str) -> std::result::Result<FieldPath, String> {
        let chars: Vec<char> = path.chars().collect();
        let incomplete = |at: usize| {
            format!(
                "Incomplete backtick pair in path: [{path}], consider adding a backslash before backtick at position {at} to escape it"
            )
        };
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '`' {
                let start = i;
                match chars[i..].iter().position(|&c| c == '.') {
                    Some(dot) => {
                        steps.push(chars[start..start + dot].iter().collect());
                        i = start + dot + 1;
                    }
                    None => {
                        steps.push(chars[start..].iter().collect());
                        i = chars.len();
                    }
                }
                continue;
            }
            let backtick_at = i;
            i += 1;
            let mut step = String::new();
            let mut start = i;
            loop {
                let Some(close) = chars[i..].iter().position(|&c| c == '`').map(|p| p + i) else {
                    return Err(incomplete(backtick_at));
                };
                let escaped = chars[close - 1] == '\\';
                if close >= chars.len() - 1 {
                    if escaped {
                        return Err(incomplete(backtick_at));
                    }
                    step.extend(&chars[start..close]);
                    steps.push(std::mem::take(&mut step));
                    i = close + 1;
                    break;
                }
                if chars[close + 1] != '.' {
                    // A backtick inside the name: keep looking for one followed by a dot.
                    i = close + 1;
                    continue;
                }
                if escaped {
                    step.extend(&chars[start..close - 1]);
                    step.push('`');
                    i = close + 1;
                    start = i;
                    continue;
                }
                step.extend(&chars[start..close]);
                steps.push(std::mem::take(&mut step));
                i = close + 2;
                break;
            }
        }
        if path.ends_with('.') {
            steps.push(String::new());
        }
        if steps.is_empty() {
            steps.push(String::new());
        }
        Ok(FieldPath { steps })
    }

    fn parents(&self) -> &[String] {
        &self.steps[..self.steps.len() - 1]
    }

    fn last(&self) -> &str {
        &self.steps[self.steps.len() - 1]
    }

    /// The field at the path in `schema` (`None` when a step is missing).
    pub(crate) fn field_from<'a>(&self, schema: &'a Schema) -> Result<Option<&'a Field>> {
        let lookup = |schema: &'a Schema, name: &str| {
            if schema.ty != Type::Struct {
                return Err(ConnectError::data("Cannot look up fields on non-struct type"));
            }
            Ok(schema.field(name))
        };
        let mut current = schema;
        for step in self.parents() {
            match lookup(current, step)? {
                Some(field) => current = &field.schema,
                None => return Ok(None),
            }
        }
        lookup(current, self.last())
    }

    /// The value at the path in a struct (null when a step is missing or null).
    pub(crate) fn value_from_struct(&self, value: &Struct, with_default: bool) -> Result<Value> {
        let mut current = value;
        for step in self.parents() {
            let Some(field) = current.schema.field(step) else { return Ok(Value::Null) };
            let own = current.values.get(field.index).unwrap_or(&Value::Null);
            let next = match (own, &field.schema.default) {
                (Value::Null, Some(default)) => default,
                _ => own,
            };
            match require_struct_or_null(next, "nested field access")? {
                Some(s) => current = s,
                None => return Ok(Value::Null),
            }
        }
        Ok(current.schema.field(self.last()).map_or(Value::Null, |f| field_value(current, f, with_default)))
    }

    /// The value at the path in a schemaless map (null when a step is missing or null).
    pub(crate) fn value_from_map(&self, entries: &[(Value, Value)]) -> Result<Value> {
        let mut current = entries;
        for step in self.parents() {
            match require_map_or_null(map_get(current, step).unwrap_or(&Value::Null), "nested field access")? {
                Some(next) => current = next,
                None => return Ok(Value::Null),
            }
        }
        Ok(map_get(current, self.last()).cloned().unwrap_or(Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(path: &str) -> Vec<String> {
        FieldPath::v2(path).unwrap().steps
    }

    #[test]
    fn v2_paths_split_as_kafka_splits_them() {
        assert_eq!(steps("foo"), ["foo"]);
        assert_eq!(steps("foo.bar.baz"), ["foo", "bar", "baz"]);
        assert_eq!(steps("`foo.bar`.baz"), ["foo.bar", "baz"]);
        assert_eq!(steps("foo.`bar.baz`"), ["foo", "bar.baz"]);
        assert_eq!(steps("`foo\\`.bar`.baz"), ["foo`.bar", "baz"]);
        assert_eq!(steps("`fo`o`.bar"), ["fo`o", "bar"]);
        assert_eq!(steps("foo."), ["foo", ""]);
        assert_eq!(steps(".foo"), ["", "foo"]);
        let err = FieldPath::v2("`foo.bar").unwrap_err();
        assert!(err.contains("Incomplete backtick pair in path: [`foo.bar]"), "{err}");
        assert!(err.contains("position 0"), "{err}");
    }
}
