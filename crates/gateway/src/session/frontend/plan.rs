//! The pure step between deciding and sending: decided statements → what the server is
//! sent and what the queue expects of each message. No I/O and no session state here, so
//! every rule is tested on its own (`tests.rs`), beside the end-to-end tests.

use std::sync::Arc;

use portcullis_sql::ParsedStatement;
use portcullis_sql::analysis::Kind;
use portcullis_wire::Message;
use portcullis_wire::backend::{ErrorResponse, Severity};
use portcullis_wire::frontend::{Describe, Query, Target};
use tokio::sync::oneshot;

use super::refusal::REFUSED_SQL;
use crate::audit::Tracker;
use crate::rewrite::ResultRewriter;
use crate::session::portals::{Bound, Effect};
use crate::session::prepared::Treatment;
use crate::session::queue::{Expect, LimitReport, OnError, QueryLimits, RowLimit};

/// How a decided simple Query goes to the server.
pub(super) enum QueryPlan {
    /// In its place, text the server rejects; its error is replaced by the refusal.
    Refused(ErrorResponse),
    /// Forwarded as sent.
    Forward(PerStatement),
    /// Forwarded inside a transaction the gateway can undo (see `row_limit`): per
    /// statement, its row limit.
    Limited(PerStatement, Vec<Option<RowLimit>>),
}

/// What the queue needs of each statement of a Query.
pub(super) struct PerStatement {
    pub rewrites: Vec<Option<Arc<dyn ResultRewriter>>>,
    pub expected: Vec<crate::session::tripwire::Expected>,
    /// Empty when no statement does anything to the server's portals.
    pub effects: Vec<Effect>,
}

/// Plans a simple Query whose statements were decided: `treatments` per statement, or
/// the first refusal; `reads` the statements (by index) that FETCH from a portal bound
/// through the gateway.
pub(super) fn plan_query(
    statements: &[ParsedStatement],
    treatments: Result<&[Treatment], ErrorResponse>,
    reads: Vec<(usize, Bound)>,
) -> QueryPlan {
    let treatments = match treatments {
        Ok(t) => t,
        Err(e) => return QueryPlan::Refused(e),
    };
    let limited = treatments.iter().any(|t| t.cap.is_some());
    if limited
        && statements.len() > 1
        && statements.iter().any(|s| s.facts.kind == Kind::Transaction)
    {
        // The gateway's own BEGIN and COMMIT around the query would interleave with the
        // client's.
        return QueryPlan::Refused(ErrorResponse::new(
            Severity::Error,
            "0A000",
            "a statement with a row limit cannot share a query string with transaction control; send it on its own",
        ));
    }
    let mut effects: Vec<Effect> = statements.iter().map(Effect::of).collect();
    for (index, b) in reads {
        if let Some(e) = effects.get_mut(index) {
            *e = Effect::Reads(b);
        }
    }
    if effects.iter().all(|e| *e == Effect::None) {
        effects = Vec::new();
    }
    let per = PerStatement {
        rewrites: treatments.iter().map(|t| t.rewrite.clone()).collect(),
        expected: treatments.iter().map(|t| t.expected).collect(),
        effects,
    };
    if limited {
        QueryPlan::Limited(per, treatments.iter().map(|t| t.cap.clone()).collect())
    } else {
        QueryPlan::Forward(per)
    }
}

/// The stand-in for a refused Query: text that fails on the server (failing the
/// transaction as the server's own error would), its error replaced by the refusal.
pub(super) fn refused_query(refusal: ErrorResponse) -> (Expect, Message) {
    (
        Expect::Query {
            effects: Vec::new(),
            statements: Vec::new(),
            expected: Vec::new(),
            on_error: OnError::Replace(refusal),
            limits: None,
            completed: None,
            audit: Vec::new(),
        },
        Query::new(REFUSED_SQL).message().clone(),
    )
}

impl PerStatement {
    /// What the server owes for the Query these statements are, forwarded as sent.
    pub(super) fn forwarded(
        self,
        limits: Option<QueryLimits>,
        completed: Option<oneshot::Sender<usize>>,
        audit: Vec<Option<Tracker>>,
    ) -> Expect {
        Expect::Query {
            effects: self.effects,
            statements: self.rewrites,
            expected: self.expected,
            on_error: OnError::Forward,
            limits,
            completed,
            audit,
        }
    }
}

/// What follows a row-limited Query once its row counts are known: the text the gateway
/// sends and whether the client sees that statement's errors. `began`: the gateway
/// opened the transaction (the client was idle).
pub(super) fn after_limited(began: bool, report: LimitReport) -> Option<(&'static [u8], bool)> {
    match (began, report) {
        (true, LimitReport::Within) => Some((b"COMMIT", true)),
        (true, _) => Some((b"ROLLBACK", false)),
        // The client's own transaction: failed on purpose, so nothing of it commits.
        (false, LimitReport::Exceeded) => Some((REFUSED_SQL, false)),
        (false, _) => None,
    }
}

/// The gateway's own Describe of a portal, sent before an Execute when the rows must be
/// rewritten or recorded and no Describe of the portal was sent since its Bind: the
/// backend binds the rewriter to the answer and swallows it.
pub(super) fn describe_first(
    portal: &str,
    rewrite: Option<Arc<dyn ResultRewriter>>,
    recorded: bool,
    described: bool,
) -> Option<(Expect, Message)> {
    if described || (rewrite.is_none() && !recorded) {
        return None;
    }
    Some((
        Expect::Describe {
            of: (true, Arc::from(portal)),
            rewrite,
            swallow: true,
        },
        Describe::new(Target::Portal, portal).message().clone(),
    ))
}
