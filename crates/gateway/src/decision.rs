//! The decision point: every statement a client sends (each statement of a simple Query,
//! each Parse, each FunctionCall) is shown to a [`Decider`] before anything is forwarded.
//!
//! A decider forwards it (optionally with a [`ResultRewriter`] for what comes back),
//! refuses it with an error, or holds it until someone decides (see `hold`). Refusals
//! reach the client exactly where the server's own error would have, with the transaction
//! state the server itself reports (see `session::frontend`).

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_sql::ParsedStatement;
use portcullis_wire::backend::{ErrorResponse, TransactionStatus};

use crate::hold::Hold;
use crate::rewrite::ResultRewriter;

/// Identifies a session in logs and, later, in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub u64);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s{:x}", self.0)
    }
}

/// Who is connected, to what, as what.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: SessionId,
    pub subject: String,
    pub groups: Vec<String>,
    pub target: String,
    pub upstream_role: String,
    /// How the gateway authenticated upstream: `SCRAM-SHA-256-PLUS`, `SCRAM-SHA-256`,
    /// `md5`, `password` or `trust`.
    pub upstream_auth: &'static str,
    pub client_addr: SocketAddr,
    pub application_name: Option<String>,
    pub tls: bool,
}

/// Where a statement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// Statement `index` of a simple Query holding `count` statements.
    Query { index: usize, count: usize },
    /// A Parse creating the prepared statement `name` (empty: unnamed).
    Parse { name: &'a str },
    /// A Bind of a prepared statement, decided again: policies (and the clock) may have
    /// changed since it was prepared.
    Bind { statement: &'a str },
    /// A fast-path FunctionCall of the function with this OID and these arguments; there
    /// is no SQL text (the policy decider writes out the SQL call it stands for).
    FunctionCall {
        oid: u32,
        arguments: &'a [portcullis_wire::frontend::Argument<'a>],
    },
    /// A setting in the startup packet that changes the session's identity (`role`,
    /// `session_authorization`, directly or through `options`), decided before login.
    Startup,
}

/// A statement put before the decider.
#[derive(Debug)]
pub struct Statement<'a> {
    pub origin: Origin<'a>,
    /// The statement's text in UTF-8, or `None` when the client's bytes could not be
    /// converted from its encoding.
    pub text: Option<&'a str>,
    /// The parse tree, or the parser's error for text that does not parse.
    pub parsed: Result<&'a ParsedStatement, &'a str>,
    /// For SQL-level `EXECUTE name`: what was prepared under that name, as far as the
    /// gateway has seen.
    pub prepared: Option<&'a ParsedStatement>,
    /// The transaction status at the last ReadyForQuery.
    pub transaction: TransactionStatus,
    /// The session's search path as far as the gateway has seen it set.
    pub search_path: &'a [String],
    /// For a Bind: its parameter values, each with whether it is in binary format
    /// (`None` is NULL); empty otherwise.
    pub parameters: &'a [(bool, Option<&'a [u8]>)],
}

/// What to do with a statement.
pub enum Verdict {
    /// Forward it; rewrite what comes back when a rewriter is given.
    Forward(Option<Arc<dyn ResultRewriter>>),
    /// Forward it, but undo it and answer with an error if it changes more than
    /// `max_rows` rows (UPDATE, DELETE, MERGE), as policy `policy` demands.
    ForwardLimited {
        rewrite: Option<Arc<dyn ResultRewriter>>,
        limit: portcullis_policy::RowLimit,
    },
    /// Do not run it; the client receives this error instead.
    Refuse(ErrorResponse),
    /// Wait for someone's decision (see `hold`).
    Hold(Hold),
}

impl Verdict {
    pub fn allow() -> Self {
        Verdict::Forward(None)
    }
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Forward(r) => write!(f, "Forward(rewrite: {})", r.is_some()),
            Verdict::ForwardLimited { limit, .. } => {
                write!(
                    f,
                    "ForwardLimited({} rows, policy {})",
                    limit.max, limit.policy
                )
            }
            Verdict::Refuse(e) => write!(f, "Refuse({e:?})"),
            Verdict::Hold(_) => f.write_str("Hold"),
        }
    }
}

/// Why a statement was decided as it was, for the audit trail.
#[derive(Debug, Clone)]
pub struct Reasons {
    /// `allow`, `deny`, `needs_approval` or `mask`.
    pub decision: portcullis_policy::DecisionKind,
    /// The policies that decided.
    pub policies: Arc<[String]>,
    /// What observe-only policies would have decided, when stricter.
    pub observed: Option<Arc<str>>,
    /// The facts decided on, when not the statement's own (an `EXECUTE` decided on what
    /// it runs, a fast-path function call).
    pub facts: Option<Arc<portcullis_sql::analysis::Facts>>,
    /// The SQL decided on when the statement has none of its own: the SQL call a
    /// fast-path function call stands for.
    pub text: Option<Arc<str>>,
    /// A policy asks for the statement's result rows to be recorded.
    pub record: bool,
    /// A policy marks the statement's parameters as sensitive: masked in the trail.
    pub sensitive: bool,
    /// For a held statement: the request and how it was decided.
    pub approval: Option<portcullis_audit::Approval>,
}

impl Reasons {
    /// Reasons read off a bare verdict: deciders that do not explain themselves.
    pub fn of(verdict: &Verdict) -> Reasons {
        Reasons {
            decision: match verdict {
                Verdict::Refuse(_) => portcullis_policy::DecisionKind::Deny,
                Verdict::Hold(_) => portcullis_policy::DecisionKind::NeedsApproval,
                _ => portcullis_policy::DecisionKind::Allow,
            },
            policies: Arc::from(Vec::new()),
            observed: None,
            facts: None,
            text: None,
            record: false,
            sensitive: false,
            approval: None,
        }
    }
}

/// Decides about statements. Called on the session's task for every statement, so it must
/// be quick; slow work belongs in a [`Verdict::Hold`].
pub trait Decider: Send + Sync {
    fn decide(&self, session: &SessionInfo, statement: &Statement<'_>) -> Verdict;

    /// Decides and says why; the audit trail records the reasons.
    fn decide_with_reasons(
        &self,
        session: &SessionInfo,
        statement: &Statement<'_>,
    ) -> (Verdict, Reasons) {
        let verdict = self.decide(session, statement);
        let reasons = Reasons::of(&verdict);
        (verdict, reasons)
    }
}

/// Forwards everything: the relay with authentication as its only gate.
pub struct PermitAll;

impl Decider for PermitAll {
    fn decide(&self, _session: &SessionInfo, _statement: &Statement<'_>) -> Verdict {
        Verdict::allow()
    }
}
