//! One statement decided: the reserved names, the policy's verdict (holds waited out),
//! the analysis of text in the session's settings, and the audit records of decisions.

use std::borrow::Cow;
use std::sync::Arc;

use portcullis_sql::analysis::Tag;
use portcullis_sql::{ClientEncoding, LexerOptions, ParsedQuery};
use portcullis_wire::backend::{ErrorResponse, Severity};
use tokio::io::AsyncWrite;

use super::refusal;
use super::refusal::unanalysable;
use super::{Frontend, FrontendError};
use crate::audit::{Described, statement_event, unavailable};
use crate::decision::{Origin, Reasons, Statement, Verdict};
use crate::session::prepared::Prepared;

/// The prepared statement an `EXECUTE` runs, wherever it sits (`EXPLAIN EXECUTE`,
/// `CREATE TABLE … AS EXECUTE`).
pub(super) fn executes(s: &portcullis_sql::ParsedStatement) -> Option<&str> {
    if s.facts.tags.contains(&Tag::Execute) {
        s.facts.prepared_name.as_deref()
    } else {
        None
    }
}

/// The cursor a `FETCH` or `MOVE` reads from.
pub(super) fn fetches(s: &portcullis_sql::ParsedStatement) -> Option<&str> {
    if s.facts.tags.contains(&Tag::Fetch) {
        s.facts.prepared_name.as_deref()
    } else {
        None
    }
}

/// Names of prepared statements and portals the gateway uses for itself (its refusals,
/// probes and queries of the server's settings depend on no client holding them).
pub(super) const RESERVED_PREFIX: &str = "portcullis_";

pub(super) fn reserved(name: &str) -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "42501",
        format!(
            "the name \"{name}\" is reserved: names starting with {RESERVED_PREFIX} belong to the gateway"
        ),
    )
}

/// The reserved name a statement would create a prepared statement or cursor under, if
/// any: a protocol Parse, SQL `PREPARE`, `DECLARE`.
pub(super) fn creates_reserved_name<'a>(statement: &'a Statement<'_>) -> Option<&'a str> {
    use pg_query::NodeEnum;
    let name = match (statement.origin, statement.parsed) {
        (Origin::Parse { name }, _) => name,
        (_, Ok(s)) => match s.root()? {
            NodeEnum::PrepareStmt(p) => p.name.as_str(),
            NodeEnum::DeclareCursorStmt(d) => d.portalname.as_str(),
            _ => return None,
        },
        _ => return None,
    };
    name.starts_with(RESERVED_PREFIX).then_some(name)
}

impl Frontend<'_> {
    /// Records a statement that is not forwarded (refused); nothing waits for it.
    pub(super) fn record_refusal(
        &mut self,
        origin: &'static str,
        text: &str,
        facts: Option<&portcullis_sql::analysis::Facts>,
        reasons: &Reasons,
        refusal: &ErrorResponse,
    ) {
        let seq = self.next_seq();
        let event = self.event(
            Described::new(seq, origin, text, reasons)
                .facts(facts)
                .refused(refusal),
        );
        self.ctx.audit.log.record(event);
    }

    /// The statement event of a decided statement, in the session's current search path.
    pub(super) fn event(&self, d: Described<'_>) -> portcullis_audit::Event {
        statement_event(
            &self.ctx.info,
            Described {
                search_path: &self.search_path,
                ..d
            },
        )
    }

    /// Records text the gateway cannot analyse: it never runs as sent (the server either
    /// rejects it too, or the gateway refuses it).
    pub(super) fn record_unanalysable(
        &mut self,
        origin: &'static str,
        text: Option<&str>,
        bytes: &[u8],
        reason: &str,
    ) {
        let e = unanalysable(reason);
        let why = Reasons::of(&Verdict::Refuse(e.clone()));
        let text = text.map_or_else(|| String::from_utf8_lossy(bytes), Cow::Borrowed);
        self.record_refusal(origin, &text, None, &why, &e);
    }

    /// Makes the events of statements about to be forwarded durable. Output already
    /// batched goes out first, so earlier pipelined work proceeds during the wait.
    pub(super) async fn audit_durable<W: AsyncWrite + Unpin>(
        &mut self,
        events: Vec<portcullis_audit::Event>,
        upstream: &mut W,
    ) -> Result<Result<(), ErrorResponse>, FrontendError> {
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                portcullis_audit::Event::Statement(s) => Some(s.seq),
                _ => None,
            })
            .collect();
        let waits: Vec<_> = events
            .into_iter()
            .map(|e| self.ctx.audit.log.durable(e))
            .collect();
        self.flush(upstream).await?;
        let durable = async {
            for w in waits {
                w.await?;
            }
            Ok::<(), portcullis_audit::AuditError>(())
        };
        let ctx = self.ctx;
        tokio::select! {
            biased;
            // A cancel after the client sent these statements is for them: they are not
            // forwarded (the server, idle, would ignore it and run them to the end).
            () = ctx.cancels.after(self.cancels_seen) => {
                let e = refusal::canceled();
                for seq in seqs {
                    let finished = crate::audit::Tracker::new(seq, None)
                        .finish(None, None, Some(&e));
                    ctx.audit.log.record(finished.into_event(&ctx.info));
                }
                Ok(Err(e))
            }
            r = durable => Ok(r.map_err(|e| unavailable(&e))),
        }
    }

    /// What a statement runs besides itself: the prepared statement an `EXECUTE` names,
    /// the cursor a `FETCH` reads.
    pub(super) fn referenced(&self, s: &portcullis_sql::ParsedStatement) -> Option<Arc<Prepared>> {
        executes(s)
            .and_then(|n| self.registry.statement(n).cloned())
            .or_else(|| fetches(s).and_then(|n| self.registry.cursor(n)))
    }

    /// The policy's verdict on one statement, and why. Pure: holds are waited out by
    /// `treatment`, once the statement (which borrows the session) is no longer needed.
    pub(super) fn verdict(&self, statement: &Statement<'_>) -> (Verdict, Reasons) {
        if let Some(name) = creates_reserved_name(statement) {
            let e = reserved(name);
            let why = Reasons::of(&Verdict::Refuse(e.clone()));
            return (Verdict::Refuse(e), why);
        }
        self.ctx
            .decider
            .decide_with_reasons(&self.ctx.info, statement)
    }

    /// Decodes and parses statement text in the session's encoding and lexer settings.
    /// For a simple query, `query` lets statements that differ only in constants share an
    /// analysis; the returned flag says the parse's statement texts belong to another text.
    pub(super) fn analyse<'b>(
        &self,
        bytes: &'b [u8],
        query: bool,
        (encoding, lexer): (ClientEncoding, LexerOptions),
    ) -> (Option<Cow<'b, str>>, Arc<ParsedQuery>, bool) {
        match encoding.decode(bytes) {
            Some(text) if query => {
                let found = self.ctx.cache.get_query(&text, lexer);
                (Some(text), found.parsed, found.shared)
            }
            Some(text) => {
                let parsed = self.ctx.cache.get(&text, lexer);
                (Some(text), parsed, false)
            }
            None => (
                None,
                Arc::new(ParsedQuery {
                    result: Err("the text is not valid in the client encoding".into()),
                }),
                false,
            ),
        }
    }
}
