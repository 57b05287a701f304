//! The tripwire: the server's answers must fit what the gateway decided. A CommandComplete
//! that reports a write (`DELETE 5000`) for a statement the gateway analysed as something
//! else, or more statement results than the gateway analysed, means the gateway's picture
//! of a statement differed from the server's. It cannot undo what ran; it makes a bypass
//! loud instead of silent: the session ends with a FATAL error, the trail records a
//! security event, and the gateway logs at error level.

use pg_query::NodeEnum;
use portcullis_sql::ParsedStatement;

/// What the CommandComplete of a statement may report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expected {
    /// Not checked: the gateway did not analyse it (text the server will reject, a
    /// statement prepared before the gateway saw it).
    #[default]
    Unchecked,
    /// A data-changing statement (its tag may vary with rules on the target).
    Write,
    /// COPY: `COPY n`.
    Copy,
    /// Anything else: never a write's tag.
    NoWrite,
}

/// Tags that report changed rows.
const WRITE_TAGS: &[&str] = &["INSERT", "UPDATE", "DELETE", "MERGE", "COPY"];

impl Expected {
    /// What the statement's result may report. An `EXECUTE` reports what it runs: the
    /// statement `prepared` under that name (a protocol-level Parse, or SQL `PREPARE`).
    pub fn of(statement: &ParsedStatement, prepared: Option<&ParsedStatement>) -> Expected {
        match statement.root() {
            Some(NodeEnum::ExecuteStmt(_)) => match prepared {
                Some(p) => Expected::of_node(p.root()),
                None => Expected::Unchecked,
            },
            root => Expected::of_node(root),
        }
    }

    fn of_node(node: Option<&NodeEnum>) -> Expected {
        match node {
            Some(
                NodeEnum::InsertStmt(_)
                | NodeEnum::UpdateStmt(_)
                | NodeEnum::DeleteStmt(_)
                | NodeEnum::MergeStmt(_),
            ) => Expected::Write,
            Some(NodeEnum::CopyStmt(_)) => Expected::Copy,
            Some(NodeEnum::PrepareStmt(p)) => {
                Expected::of_node(p.query.as_ref().and_then(|q| q.node.as_ref()))
            }
            Some(_) => Expected::NoWrite,
            None => Expected::Unchecked,
        }
    }

    /// Why the command tag `tag` does not fit, if it does not.
    pub fn contradiction(self, tag: &str) -> Option<String> {
        let keyword = tag.split(' ').next().unwrap_or("");
        let fits = match self {
            Expected::Unchecked | Expected::Write => true,
            Expected::Copy => keyword == "COPY",
            Expected::NoWrite => !WRITE_TAGS.contains(&keyword),
        };
        (!fits).then(|| format!("the server reported \"{tag}\" for a statement the gateway analysed as not changing rows"))
    }
}

/// The error the client's session ends with.
pub fn fatal(reason: &str) -> portcullis_wire::backend::ErrorResponse {
    portcullis_wire::backend::ErrorResponse::new(
        portcullis_wire::backend::Severity::Fatal,
        "XX000",
        format!(
            "terminating connection: {reason}; the gateway's analysis and the server disagree, so it ended the session and recorded a security event"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sql::{LexerOptions, parse};

    fn of(sql: &str) -> Expected {
        let p = parse(sql, LexerOptions::default()).result.unwrap();
        Expected::of(&p[0], None)
    }

    #[test]
    fn writes_fit_only_writes() {
        assert_eq!(of("select 1"), Expected::NoWrite);
        assert!(of("select 1").contradiction("DELETE 5000").is_some());
        assert!(of("select 1").contradiction("SELECT 1").is_none());
        assert!(
            of("explain analyze select 1")
                .contradiction("EXPLAIN")
                .is_none()
        );
        // A data-modifying CTE under a SELECT reports SELECT.
        assert_eq!(
            of("with d as (delete from t returning 1) select * from d"),
            Expected::NoWrite
        );
        assert_eq!(of("delete from t"), Expected::Write);
        assert!(of("delete from t").contradiction("DELETE 3").is_none());
        assert!(of("copy t to stdout").contradiction("COPY 3").is_none());
        assert!(of("copy t to stdout").contradiction("DELETE 3").is_some());
        assert!(of("set x = 1").contradiction("INSERT 0 1").is_some());
        let p = parse(
            "prepare p as delete from t; execute p",
            LexerOptions::default(),
        )
        .result
        .unwrap();
        assert_eq!(Expected::of(&p[1], Some(&p[0])), Expected::Write);
        assert_eq!(Expected::of(&p[1], None), Expected::Unchecked);
    }
}
