//! `RegexRouter`: renames the topic of records whose topic matches `regex` (the whole topic, as
//! Java's `Matcher.matches`), replacing the first match with `replacement` as Java's
//! `Matcher.replaceFirst` does (`regex=(.*)-raw`, `replacement=$1-clean`).
//!
//! The replacement keeps Java's syntax rather than being translated to the regex crate's:
//! `$1` is a group and the digits after it extend the number only while such a group exists
//! (`$10` is group 1 then `0` when there are fewer than ten groups), `${name}` a named group,
//! `\` escapes the next character, and a letter after `$1` is text (`$1abc`, which the regex
//! crate would read as a group named `1abc`). Java reports a bad replacement (`$` at the end,
//! a missing group) at the first matching record; Freshet reports it with the config.
//!
//! Patterns are the regex crate's, which is Java's syntax without look-around and
//! back-references.

use regex::{Captures, Regex};

use super::operand::{parse, raw_string};
use super::{TransformPlugin, Transformation};
use crate::config::{Config, ConfigDef, ConfigKey, ConfigType, Importance};
use crate::error::{ConnectError, Result};
use crate::record::ConnectRecord;

/// `RegexRouter`.
pub(crate) const REGEX_ROUTER: TransformPlugin = TransformPlugin {
    class: "org.apache.kafka.connect.transforms.RegexRouter",
    aliases: &["RegexRouter"],
    config_def,
    make,
};

const REGEX: &str = "regex";
const REPLACEMENT: &str = "replacement";

fn config_def() -> ConfigDef {
    ConfigDef::new()
        .define(ConfigKey::required(
            REGEX,
            ConfigType::String,
            Importance::High,
            "Regular expression to use for matching.",
        ))
        .define(ConfigKey::required(REPLACEMENT, ConfigType::String, Importance::High, "Replacement string."))
}

fn make(config: &Config) -> Result<Box<dyn Transformation>> {
    let config = parse(&config_def(), config)?;
    let pattern = raw_string(&config, REGEX).unwrap_or_default();
    let (whole, first) =
        compile(&pattern).map_err(|e| ConnectError::config(REGEX, &pattern, format!("Invalid regex: {e}")))?;
    let text = raw_string(&config, REPLACEMENT).unwrap_or_default();
    let replacement =
        Replacement::parse(&text, &first).map_err(|reason| ConnectError::config(REPLACEMENT, &text, reason))?;
    Ok(Box::new(RegexRouter { whole, first, replacement }))
}

/// `pattern` compiled twice: anchored at both ends (Java's `matches`), and as given (Java's
/// `find`, which `replaceFirst` uses). The error on one line.
pub(crate) fn compile(pattern: &str) -> std::result::Result<(Regex, Regex), String> {
    let one_line = |e: regex::Error| match e {
        // The regex crate draws the pattern with a caret under the error: keep its last line.
        regex::Error::Syntax(text) => {
            let last = text.lines().last().unwrap_or_default().trim();
            last.strip_prefix("error: ").unwrap_or(last).to_string()
        }
        other => other.to_string(),
    };
    let first = Regex::new(pattern).map_err(one_line)?;
    let whole = Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(one_line)?;
    Ok((whole, first))
}

#[derive(Debug)]
struct RegexRouter {
    whole: Regex,
    first: Regex,
    replacement: Replacement,
}

impl Transformation for RegexRouter {
    fn apply(&self, mut record: ConnectRecord) -> Result<Option<ConnectRecord>> {
        if !self.whole.is_match(&record.topic) {
            tracing::trace!(topic = record.topic, "not rerouting: the topic does not match");
            return Ok(Some(record));
        }
        if let Some(captures) = self.first.captures(&record.topic) {
            let matched = captures.get(0).expect("group 0 is the match");
            let mut topic = String::with_capacity(record.topic.len());
            topic.push_str(&record.topic[..matched.start()]);
            self.replacement.expand(&captures, &mut topic);
            topic.push_str(&record.topic[matched.end()..]);
            tracing::trace!(from = record.topic, to = topic, "rerouting");
            record.topic = topic;
        }
        Ok(Some(record))
    }
}

/// A piece of a replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// A Java replacement string, resolved against a pattern's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replacement {
    pieces: Vec<Piece>,
}

impl Replacement {
    /// Reads `text` as Java's `Matcher.appendReplacement` does, for `regex`'s groups.
    pub(crate) fn parse(text: &str, regex: &Regex) -> std::result::Result<Replacement, String> {
        let n_groups = regex.captures_len() - 1;
        let chars: Vec<char> = text.chars().collect();
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '\\' => {
                    let escaped = chars.get(i + 1).ok_or("character to be escaped is missing")?;
                    literal.push(*escaped);
                    i += 2;
                }
                '$' => {
                    i += 1;
                    let next = *chars.get(i).ok_or("Illegal group reference: group index is missing")?;
                    let group = if next == '{' {
                        i += 1;
                        let name: String = chars[i..].iter().take_while(|c| c.is_ascii_alphanumeric()).collect();
                        i += name.chars().count();
                        if name.is_empty() {
                            return Err("named capturing group has 0 length name".into());
                        }
                        if chars.get(i) != Some(&'}') {
                            return Err("named capturing group is missing trailing '}'".into());
                        }
                        i += 1;
                        regex
                            .capture_names()
                            .position(|n| n == Some(name.as_str()))
                            .ok_or_else(|| format!("No group with name {{{name}}}"))?
                    } else {
                        let mut group = next.to_digit(10).ok_or("Illegal group reference")? as usize;
                        i += 1;
                        // Java takes further digits only while the group they name exists.
                        while let Some(digit) = chars.get(i).and_then(|c| c.to_digit(10)) {
                            let longer = group * 10 + digit as usize;
                            if longer > n_groups {
                                break;
                            }
                            group = longer;
                            i += 1;
                        }
                        if group > n_groups {
                            return Err(format!("No group {group}"));
                        }
                        group
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Group(group));
                }
                c => {
                    literal.push(c);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Replacement { pieces })
    }

    /// Appends the replacement for `captures` (a group that did not take part adds nothing).
    pub(crate) fn expand(&self, captures: &Captures<'_>, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Group(group) => out.push_str(captures.get(*group).map_or("", |m| m.as_str())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(pattern: &str, replacement: &str, topic: &str) -> String {
        let (whole, first) = compile(pattern).unwrap();
        let router = RegexRouter { replacement: Replacement::parse(replacement, &first).unwrap(), whole, first };
        router.apply(ConnectRecord::new(topic, None, crate::data::Value::Null)).unwrap().unwrap().topic
    }

    #[test]
    fn replacements_follow_java() {
        assert_eq!(route("(.*)-raw", "$1-clean", "orders-raw"), "orders-clean");
        assert_eq!(route("(.*)-raw", "$1abc", "orders-raw"), "ordersabc");
        assert_eq!(route("(.*)-raw", "$10", "orders-raw"), "orders0");
        assert_eq!(route("(?<name>.*)-raw", "${name}_x", "orders-raw"), "orders_x");
        assert_eq!(route("(.*)-raw", "\\$1", "orders-raw"), "$1");
        assert_eq!(route("(a)|(b)", "[$2]", "a"), "[]");
        assert_eq!(route("(.*)-raw", "x", "orders-cooked"), "orders-cooked");
        // `matches` then `replaceFirst`: the first match of `a|ab` in "ab" is "a".
        assert_eq!(route("a|ab", "X", "ab"), "Xb");
    }

    #[test]
    fn bad_replacements_are_refused() {
        let (_, first) = compile("(.*)").unwrap();
        assert_eq!(Replacement::parse("$", &first).unwrap_err(), "Illegal group reference: group index is missing");
        assert_eq!(Replacement::parse("$2", &first).unwrap_err(), "No group 2");
        assert_eq!(Replacement::parse("$x", &first).unwrap_err(), "Illegal group reference");
        assert_eq!(Replacement::parse("${nope}", &first).unwrap_err(), "No group with name {nope}");
        assert_eq!(Replacement::parse("a\\", &first).unwrap_err(), "character to be escaped is missing");
    }
}
