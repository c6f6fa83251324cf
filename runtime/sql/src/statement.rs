//! Freshet's own statements, recognised before DataFusion sees the text: continuous queries
//! (`CREATE STREAM|TABLE name AS SELECT ... [EMIT CHANGES|FINAL]`), declarations in the
//! `WITH (topic = ...)` style, and `SHOW QUERIES`, `EXPLAIN`, `DROP QUERY`, `DROP STREAM`.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::continuous::{Emit, OutputKind};

/// A statement Freshet handles itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement {
    /// `CREATE STREAM|TABLE name [WITH (...)] AS <query> [EMIT ...]`.
    CreateAs(CreateAs),
    /// `CREATE STREAM|SOURCE|TABLE name [(columns)] WITH (topic = ..., ...)`, as the equivalent
    /// `CREATE EXTERNAL TABLE`.
    Declare {
        name: String,
        external: String,
    },
    ShowQueries,
    /// `EXPLAIN` of a continuous query, or of a running one (`EXPLAIN QUERY name`).
    Explain(Box<Statement>),
    ExplainQuery(String),
    DropQuery(String),
    /// `DROP STREAM|TABLE [IF EXISTS] name`.
    Drop {
        name: String,
        if_exists: bool,
    },
    /// `CREATE SOURCE|SINK CONNECTOR [IF NOT EXISTS] name WITH ('key' = 'value', ...)`, as
    /// ksqlDB has it.
    CreateConnector {
        name: String,
        source: bool,
        if_not_exists: bool,
        config: Vec<(String, String)>,
    },
    ShowConnectors,
    DescribeConnector(String),
    DropConnector {
        name: String,
        if_exists: bool,
    },
}

/// A continuous query: `CREATE STREAM|TABLE name [WITH (...)] AS <query> [EMIT ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateAs {
    pub(crate) kind: OutputKind,
    pub(crate) name: String,
    pub(crate) query: String,
    pub(crate) emit: Emit,
    /// The output's options (`format`, `partitions`).
    pub(crate) with: Vec<(String, String)>,
}

struct Tokens<'a> {
    sql: &'a str,
    tokens: Vec<TokenWithSpan>,
    /// Byte offset of each line's start.
    lines: Vec<usize>,
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(sql: &'a str) -> Option<Self> {
        let tokens = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location().ok()?;
        let tokens = tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect();
        let mut lines = vec![0];
        lines.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Some(Tokens { sql, tokens, lines, at: 0 })
    }
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.token)
    }
    fn word(&mut self, w: &str) -> bool {
        match self.peek() {
            Some(Token::Word(x)) if x.value.eq_ignore_ascii_case(w) && x.quote_style.is_none() => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }
    fn name(&mut self) -> Option<String> {
        match self.peek() {
            Some(Token::Word(x)) => {
                let name = if x.quote_style.is_some() { x.value.clone() } else { x.value.to_ascii_lowercase() };
                self.at += 1;
                Some(name)
            }
            _ => None,
        }
    }
    fn token(&mut self, t: &Token) -> bool {
        if self.peek() == Some(t) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    /// Byte offset of token `i` (the text's end past the last).
    fn offset(&self, i: usize) -> usize {
        let Some(t) = self.tokens.get(i) else { return self.sql.len() };
        let (line, column) = (t.span.start.line as usize, t.span.start.column as usize);
        let start = self.lines.get(line.saturating_sub(1)).copied().unwrap_or(0);
        self.sql[start..].char_indices().nth(column.saturating_sub(1)).map_or(self.sql.len(), |(o, _)| start + o)
    }
    fn rest(&self) -> &'a str {
        &self.sql[self.offset(self.at)..]
    }
    fn done(&self) -> bool {
        matches!(self.peek(), None | Some(Token::EOF) | Some(Token::SemiColon))
    }
    /// Skips a parenthesised group; the text inside.
    fn group(&mut self) -> Option<&'a str> {
        if !self.token(&Token::LParen) {
            return None;
        }
        let start = self.offset(self.at);
        let mut depth = 1;
        while depth > 0 {
            match self.peek()? {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::EOF => return None,
                _ => {}
            }
            self.at += 1;
        }
        Some(&self.sql[start..self.offset(self.at - 1)])
    }
    /// `(key = 'value', ...)`.
    /// A connector's `('key' = 'value', ...)`: keys quoted or dotted words, values quoted,
    /// numbers or words.
    fn connector_options(&mut self) -> Option<Vec<(String, String)>> {
        if !self.token(&Token::LParen) {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let key = match self.peek()? {
                Token::SingleQuotedString(k) | Token::DoubleQuotedString(k) => {
                    let k = k.clone();
                    self.at += 1;
                    k
                }
                Token::Word(_) => {
                    let mut parts = vec![self.name()?];
                    while self.token(&Token::Period) {
                        parts.push(self.name()?);
                    }
                    parts.join(".")
                }
                _ => return None,
            };
            if !self.token(&Token::Eq) {
                return None;
            }
            let value = match self.peek()? {
                Token::SingleQuotedString(v) | Token::DoubleQuotedString(v) => v.clone(),
                Token::Number(n, _) => n.clone(),
                Token::Word(w) => w.value.clone(),
                _ => return None,
            };
            self.at += 1;
            out.push((key, value));
            if self.token(&Token::RParen) {
                return Some(out);
            }
            if !self.token(&Token::Comma) {
                return None;
            }
        }
    }

    fn options(&mut self) -> Option<Vec<(String, String)>> {
        if !self.token(&Token::LParen) {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let key = self.name()?;
            self.token(&Token::Eq);
            let value = match self.peek()? {
                Token::SingleQuotedString(v) => v.clone(),
                Token::Number(n, _) => n.clone(),
                Token::Word(w) => w.value.clone(),
                _ => return None,
            };
            self.at += 1;
            out.push((key, value));
            if self.token(&Token::RParen) {
                return Some(out);
            }
            if !self.token(&Token::Comma) {
                return None;
            }
        }
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The Freshet statement `sql` is, if it is one (`Err`: it is one, but malformed).
pub(crate) fn parse(sql: &str) -> Result<Option<Statement>, String> {
    let Some(mut t) = Tokens::new(sql) else { return Ok(None) };
    if t.word("show") {
        if t.word("queries") {
            return Ok(Some(Statement::ShowQueries));
        }
        if t.word("connectors") {
            return Ok(Some(Statement::ShowConnectors));
        }
    }
    t.at = 0;
    if t.word("describe") && t.word("connector") {
        let name = t.name().ok_or("DESCRIBE CONNECTOR needs a connector name")?;
        return Ok(Some(Statement::DescribeConnector(name)));
    }
    t.at = 0;
    if t.word("create") && (t.word("source") || t.word("sink")) && t.word("connector") {
        let source = matches!(&t.tokens[1].token, Token::Word(w) if w.value.eq_ignore_ascii_case("source"));
        let if_not_exists = t.word("if") && t.word("not") && t.word("exists");
        let name = t.name().ok_or("CREATE CONNECTOR needs a connector name")?;
        if !t.word("with") {
            return Err("CREATE CONNECTOR needs WITH ('connector.class' = '...', ...)".into());
        }
        let config = t.connector_options().ok_or("CREATE CONNECTOR: WITH takes ('key' = 'value', ...)")?;
        return Ok(Some(Statement::CreateConnector { name, source, if_not_exists, config }));
    }
    t.at = 0;
    if t.word("explain") {
        if t.word("query") {
            let name = t.name().ok_or("EXPLAIN QUERY needs a query name")?;
            return Ok(Some(Statement::ExplainQuery(name)));
        }
        let rest = t.rest();
        return Ok(match parse(rest)? {
            Some(s @ Statement::CreateAs(_)) => Some(Statement::Explain(Box::new(s))),
            _ => None,
        });
    }
    if t.word("drop") {
        if t.word("connector") {
            let if_exists = t.word("if") && t.word("exists");
            let name = t.name().ok_or("DROP CONNECTOR needs a connector name")?;
            return Ok(Some(Statement::DropConnector { name, if_exists }));
        }
        if t.word("query") {
            let name = t.name().ok_or("DROP QUERY needs a query name")?;
            return Ok(Some(Statement::DropQuery(name)));
        }
        if t.word("stream") || t.word("table") {
            let if_exists = t.word("if") && t.word("exists");
            let name = t.name().ok_or("DROP needs a name")?;
            return Ok(Some(Statement::Drop { name, if_exists }));
        }
        return Ok(None);
    }
    t.at = 0;
    if !t.word("create") {
        return Ok(None);
    }
    let kind = if t.word("stream") || t.word("source") {
        OutputKind::Stream
    } else if t.word("table") {
        OutputKind::Table
    } else {
        return Ok(None);
    };
    let Some(name) = t.name() else { return Ok(None) };
    // `WITH (...)` before AS: the output's options.
    let before_with = t.at;
    let mut with = Vec::new();
    if t.word("with") {
        match t.options() {
            Some(options) if t.word("as") => {
                with = options;
                t.at -= 1;
            }
            _ => t.at = before_with,
        }
    }
    if t.word("as") {
        // The query, without an EMIT clause at its end.
        let start = t.offset(t.at);
        let mut end = sql.len();
        let mut emit = Emit::Changes;
        let last = t.tokens.iter().rposition(|x| !matches!(x.token, Token::EOF | Token::SemiColon));
        if let Some(last) = last.filter(|l| *l > 0) {
            let is =
                |i: usize, w: &str| matches!(&t.tokens[i].token, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
            if is(last - 1, "emit") {
                emit = if is(last, "final") {
                    Emit::Final
                } else if is(last, "changes") {
                    Emit::Changes
                } else {
                    return Err("EMIT is followed by CHANGES or FINAL".into());
                };
                end = t.offset(last - 1);
            }
        }
        let query = sql[start..end].trim().trim_end_matches(';').trim().to_string();
        return Ok(Some(Statement::CreateAs(CreateAs { kind, name, query, emit, with })));
    }
    // A declaration: optional columns, then WITH (...).
    let columns =
        if t.peek() == Some(&Token::LParen) { Some(t.group().ok_or("unbalanced parentheses")?) } else { None };
    if !t.word("with") {
        return Ok(None);
    }
    let options = t.options().ok_or("WITH takes (name = 'value', ...)")?;
    if !t.done() {
        return Err(format!("unexpected text after WITH (...): {}", t.rest()));
    }
    let mut topic = None;
    let mut external = Vec::new();
    for (k, v) in options {
        match k.as_str() {
            "topic" | "kafka_topic" => topic = Some(v),
            "format" | "value_format" => external.push(format!("'format' {}", quote(&v.to_ascii_lowercase()))),
            "key" => external.push(format!("'key' {}", quote(&v))),
            "schema" | "value_schema" => external.push(format!("'schema' {}", quote(&v))),
            "framing" => external.push(format!("'framing' {}", quote(&v))),
            other => return Err(format!("option {other} is not known (known: topic, format, key, schema, framing)")),
        }
    }
    if kind == OutputKind::Table {
        external.push("'kind' 'table'".into());
    }
    let topic = topic.unwrap_or_else(|| name.clone());
    let columns = columns.map(|c| format!(" ({c})")).unwrap_or_default();
    let options = if external.is_empty() { String::new() } else { format!(" OPTIONS ({})", external.join(", ")) };
    let external = format!("CREATE EXTERNAL TABLE {name}{columns} STORED AS TOPIC LOCATION {}{options}", quote(&topic));
    Ok(Some(Statement::Declare { name, external }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_statements_are_recognised() {
        let s = parse(
            "CREATE SOURCE CONNECTOR IF NOT EXISTS files WITH ('connector.class' = 'FileStreamSource', \
             file = '/tmp/in.txt', tasks.max = 2, \"topic\" = 'lines');",
        );
        assert_eq!(
            s.unwrap().unwrap(),
            Statement::CreateConnector {
                name: "files".into(),
                source: true,
                if_not_exists: true,
                config: vec![
                    ("connector.class".into(), "FileStreamSource".into()),
                    ("file".into(), "/tmp/in.txt".into()),
                    ("tasks.max".into(), "2".into()),
                    ("topic".into(), "lines".into()),
                ],
            }
        );
        let s = parse("create sink connector out with ('connector.class'='FileStreamSink')").unwrap().unwrap();
        assert!(matches!(s, Statement::CreateConnector { source: false, ref name, .. } if name == "out"));
        assert_eq!(parse("SHOW CONNECTORS").unwrap(), Some(Statement::ShowConnectors));
        assert_eq!(parse("describe connector Out").unwrap(), Some(Statement::DescribeConnector("out".into())));
        assert_eq!(
            parse("DROP CONNECTOR IF EXISTS out").unwrap(),
            Some(Statement::DropConnector { name: "out".into(), if_exists: true })
        );
        assert!(parse("CREATE SOURCE CONNECTOR x").unwrap_err().contains("WITH"));
        assert!(parse("CREATE SOURCE CONNECTOR x WITH (a =)").unwrap_err().contains("WITH"));
        // A declaration of a source relation is still one.
        assert!(matches!(
            parse("CREATE SOURCE people WITH (topic = 'people', format = 'json')").unwrap(),
            Some(Statement::Declare { .. })
        ));
    }

    #[test]
    fn freshet_statements_are_recognised() {
        let s = parse("CREATE STREAM big AS SELECT a FROM t WHERE a > 1 EMIT FINAL;").unwrap().unwrap();
        assert_eq!(
            s,
            Statement::CreateAs(CreateAs {
                kind: OutputKind::Stream,
                name: "big".into(),
                query: "SELECT a FROM t WHERE a > 1".into(),
                emit: Emit::Final,
                with: Vec::new(),
            })
        );
        let s = parse("create table Counts as\nselect k, count(*) from t group by k").unwrap().unwrap();
        assert!(
            matches!(s, Statement::CreateAs(CreateAs { kind: OutputKind::Table, ref name, .. }) if name == "counts")
        );
        let s = parse("CREATE STREAM big WITH (format = 'avro', partitions = 3) AS SELECT a FROM t").unwrap().unwrap();
        let Statement::CreateAs(c) = s else { panic!("{s:?}") };
        assert_eq!(c.with, [("format".to_string(), "avro".to_string()), ("partitions".to_string(), "3".to_string())]);
        assert_eq!(c.query, "SELECT a FROM t");
        let s =
            parse("CREATE TABLE people (id BIGINT, name VARCHAR) WITH (topic = 'people', format = 'json', key = 'id')");
        assert_eq!(
            s.unwrap().unwrap(),
            Statement::Declare {
                name: "people".into(),
                external: "CREATE EXTERNAL TABLE people (id BIGINT, name VARCHAR) STORED AS TOPIC LOCATION 'people' \
                           OPTIONS ('format' 'json', 'key' 'id', 'kind' 'table')"
                    .into()
            }
        );
        assert_eq!(parse("SHOW QUERIES").unwrap(), Some(Statement::ShowQueries));
        assert_eq!(parse("drop query big").unwrap(), Some(Statement::DropQuery("big".into())));
        assert!(matches!(parse("EXPLAIN CREATE STREAM x AS SELECT 1").unwrap(), Some(Statement::Explain(_))));
        assert_eq!(parse("SELECT 1").unwrap(), None);
        assert_eq!(parse("CREATE TABLE t (a INT)").unwrap(), None);
        assert!(parse("CREATE STREAM x AS SELECT a FROM t EMIT SOMETIMES").is_err());
        assert!(parse("CREATE STREAM x (a INT) WITH (topic = 'x', colour = 'red')").is_err());
    }
}
