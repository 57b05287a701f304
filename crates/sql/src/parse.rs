//! Parsing a query string into statements with libpg_query.

use pg_query::NodeEnum;
use pg_query::protobuf::Node;

use crate::analysis::{Facts, Kind, analyse_with_values};

/// Session settings that change how the lexer reads text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LexerOptions {
    /// `standard_conforming_strings`: when off, backslashes escape inside '…' literals.
    pub standard_conforming_strings: bool,
}

impl Default for LexerOptions {
    fn default() -> Self {
        LexerOptions {
            standard_conforming_strings: true,
        }
    }
}

impl LexerOptions {
    fn bits(self) -> pg_query::ParserOptions {
        if self.standard_conforming_strings {
            pg_query::ParserOptions::DEFAULT
        } else {
            pg_query::ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS
        }
    }
}

/// A prepared-statement or cursor operation at the SQL level, which the gateway mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreparedOp {
    Prepare(String),
    Execute(String),
    /// `DEALLOCATE name`, or `DEALLOCATE ALL` as `None`.
    Deallocate(Option<String>),
    /// `DECLARE name CURSOR FOR …`.
    Declare(String),
    /// `CLOSE name`, or `CLOSE ALL` as `None`.
    Close(Option<String>),
    /// `DISCARD ALL`: every prepared statement and cursor goes.
    DiscardAll,
}

impl PreparedOp {
    /// Whether the statement changes what names hold (everything but `EXECUTE`): the
    /// gateway mirrors it once the server has done it.
    pub fn changes_names(&self) -> bool {
        !matches!(self, PreparedOp::Execute(_))
    }
}

/// One statement of a query string.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    /// The statement's own text, as it appears in the query string.
    pub text: String,
    /// The parse tree's root.
    pub node: Option<Node>,
    /// What the statement does, from the parse tree.
    pub facts: Facts,
    /// Byte offsets (in the whole query string) of the constants that are mere values,
    /// sorted: the cache shares this analysis only with texts whose every constant sits
    /// at one of them.
    pub(crate) value_constants: Vec<i32>,
}

impl ParsedStatement {
    /// A statement the gateway describes itself, with no parse tree (a startup parameter
    /// that sets the role, decided like `SET ROLE`).
    pub fn synthetic(text: String, facts: Facts) -> Self {
        ParsedStatement {
            text,
            node: None,
            facts,
            value_constants: Vec::new(),
        }
    }

    /// The root node of the statement.
    pub fn root(&self) -> Option<&NodeEnum> {
        self.node.as_ref().and_then(|n| n.node.as_ref())
    }

    /// What this statement does to the session's prepared statements.
    pub fn prepared_op(&self) -> Option<PreparedOp> {
        match self.root()? {
            NodeEnum::PrepareStmt(p) => Some(PreparedOp::Prepare(p.name.clone())),
            NodeEnum::ExecuteStmt(e) => Some(PreparedOp::Execute(e.name.clone())),
            NodeEnum::DeallocateStmt(d) => Some(PreparedOp::Deallocate(if d.isall {
                None
            } else {
                Some(d.name.clone())
            })),
            NodeEnum::DiscardStmt(d)
                if d.target == pg_query::protobuf::DiscardMode::DiscardAll as i32 =>
            {
                Some(PreparedOp::DiscardAll)
            }
            NodeEnum::DeclareCursorStmt(d) => Some(PreparedOp::Declare(d.portalname.clone())),
            NodeEnum::ClosePortalStmt(c) => Some(PreparedOp::Close(
                (!c.portalname.is_empty()).then(|| c.portalname.clone()),
            )),
            _ => None,
        }
    }
}

/// The statements of a query string, or why it does not parse.
#[derive(Debug, Clone)]
pub struct ParsedQuery {
    pub result: Result<Vec<ParsedStatement>, String>,
}

/// Parses `sql` into its statements. Empty statements (`;;`) are not returned, as the
/// server does not run them.
pub fn parse(sql: &str, options: LexerOptions) -> ParsedQuery {
    let result = match pg_query::parse(sql, options.bits()) {
        Err(e) => Err(e.to_string()),
        Ok(parsed) => parsed
            .protobuf
            .stmts
            .into_iter()
            .map(|raw| {
                let start = usize::try_from(raw.stmt_location).unwrap_or(0);
                let end = match usize::try_from(raw.stmt_len) {
                    Ok(0) | Err(_) => sql.len(),
                    Ok(len) => start.saturating_add(len).min(sql.len()),
                };
                let text = sql.get(start..end).ok_or_else(|| {
                    "statement boundaries are not on character boundaries".to_string()
                })?;
                let node = raw.stmt.map(|b| *b);
                let (facts, value_constants) = match &node {
                    Some(n) => analyse_with_values(n),
                    None => (Facts::new(Kind::Unknown, "empty"), Vec::new()),
                };
                Ok(ParsedStatement {
                    text: text.to_owned(),
                    node,
                    facts,
                    value_constants,
                })
            })
            .collect(),
    };
    ParsedQuery { result }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<String> {
        parse(sql, LexerOptions::default())
            .result
            .unwrap()
            .into_iter()
            .map(|s| s.text.trim().to_string())
            .collect()
    }

    #[test]
    fn splits_like_the_server() {
        assert_eq!(
            statements("select ';'; /* ; */ select 2;; select $$a;b$$"),
            vec!["select ';'", "select 2", "select $$a;b$$"]
        );
        assert!(statements("  -- only a comment\n").is_empty());
        assert!(
            parse("select from where", LexerOptions::default())
                .result
                .is_err()
        );
    }

    #[test]
    fn lexer_follows_standard_conforming_strings() {
        let off = LexerOptions {
            standard_conforming_strings: false,
        };
        let on = LexerOptions::default();
        // Standard strings: a backslash is an ordinary character.
        assert_eq!(parse(r"select 'a\', 'b'", on).result.unwrap().len(), 1);
        assert!(parse(r"select 'a\', 'b'", off).result.is_err());
        // Escape strings: \' is a quote inside the literal.
        assert_eq!(parse(r"select 'a\'b'", off).result.unwrap().len(), 1);
        assert!(parse(r"select 'a\'b'", on).result.is_err());
    }

    #[test]
    fn prepared_ops() {
        let q = parse(
            "PREPARE p(int) AS select $1; EXECUTE p(1); DEALLOCATE p; DEALLOCATE ALL; DISCARD ALL; DECLARE c CURSOR FOR SELECT 1; CLOSE c; CLOSE ALL",
            LexerOptions::default(),
        );
        let ops: Vec<_> = q.result.unwrap().iter().map(|s| s.prepared_op()).collect();
        assert_eq!(
            ops,
            vec![
                Some(PreparedOp::Prepare("p".into())),
                Some(PreparedOp::Execute("p".into())),
                Some(PreparedOp::Deallocate(Some("p".into()))),
                Some(PreparedOp::Deallocate(None)),
                Some(PreparedOp::DiscardAll),
                Some(PreparedOp::Declare("c".into())),
                Some(PreparedOp::Close(Some("c".into()))),
                Some(PreparedOp::Close(None)),
            ]
        );
    }
}
