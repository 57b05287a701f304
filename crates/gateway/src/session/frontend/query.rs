//! The simple query protocol: every statement of a query string decided, recorded before
//! anything runs, and the session's mirrored state (prepared statements, cursors, search
//! path) updated from what the server completed.

use std::sync::Arc;

use portcullis_sql::analysis::{Kind, SessionChange};
use portcullis_sql::{ParsedQuery, ParsedStatement, PreparedOp};
use portcullis_wire::backend::{ErrorResponse, TransactionStatus};
use portcullis_wire::frontend::Query;
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::decide::{executes, fetches};
use super::plan::{QueryPlan, plan_query, refused_query};
use super::{Frontend, FrontendError};
use crate::audit::{Described, Tracker};
use crate::decision::{Origin, Reasons, Statement};
use crate::session::portals::Bound;
use crate::session::prepared::{Prepared, Treatment};
use crate::session::tripwire::Expected;

/// A Query's statements as decided, in order, up to the first refused.
struct Decided {
    treatments: Vec<Treatment>,
    reasons: Vec<Reasons>,
    refusal: Option<ErrorResponse>,
    /// FETCHes of protocol portals (by index), which must still be the ones bound when
    /// they run.
    reads: Vec<(usize, Bound)>,
}

/// The text a statement is decided and recorded as: its own, or the whole query's when
/// the analysis was shared (it is then of a single statement).
fn own_text<'t>(text: Option<&'t str>, shared: bool, s: &'t ParsedStatement) -> &'t str {
    match (text, shared) {
        (Some(t), true) => t,
        _ => s.text.as_str(),
    }
}

impl Frontend<'_> {
    /// A simple Query: decided statement by statement, planned (`plan.rs`), recorded
    /// durably, forwarded, and the session's mirrors updated from what completed.
    pub(super) async fn on_query<W: AsyncWrite + Unpin>(
        &mut self,
        query: Query,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let settings = self.server_lexer(query.sql(), upstream).await?;
        let (text, parsed, shared) = self.analyse(query.sql(), true, settings);
        let statements = match &parsed.result {
            Ok(s) => s,
            Err(reason) => {
                let reason = reason.clone();
                tracing::debug!(%reason, "probing text the gateway cannot parse");
                self.record_unanalysable("query", text.as_deref(), query.sql(), &reason);
                self.probe(query.sql(), &reason, None);
                return Ok(());
            }
        };
        let text = text.as_deref();
        let count = statements.len();
        let d = self
            .decide_query(statements, text, shared, upstream)
            .await?;
        let decided = match d.refusal {
            Some(e) => Err(e),
            None => Ok(d.treatments.as_slice()),
        };
        let mut plan = plan_query(statements, decided, d.reads);
        if let (QueryPlan::Refused(e), Some(first)) = (&plan, d.reasons.first())
            && d.treatments.len() == count
        {
            // Every statement was allowed, the query as a whole is not.
            let whole = text.unwrap_or_default().to_string();
            self.record_refusal("query", &whole, None, &first.clone(), &e.clone());
        }
        if !matches!(plan, QueryPlan::Refused(_)) {
            // Durable before anything runs.
            let first = self.seq + 1;
            let events: Vec<_> = statements
                .iter()
                .zip(&d.reasons)
                .zip(&d.treatments)
                .enumerate()
                .map(|(i, ((s, why), t))| {
                    self.event(
                        Described::new(first + i as u64, "query", own_text(text, shared, s), why)
                            .facts(Some(&s.facts))
                            .max_rows(t.cap.as_ref().map(|c| c.max)),
                    )
                })
                .collect();
            self.seq += count as u64;
            if let Err(e) = self.audit_durable(events, upstream).await? {
                plan = QueryPlan::Refused(e);
            }
        }
        self.forward_query(query, &parsed, plan, &d.treatments, &d.reasons, upstream)
            .await
    }

    /// Decides each statement of a Query, up to the first refused. A statement prepared
    /// (or a cursor declared) earlier in the same query is what a later EXECUTE (or
    /// FETCH) in it runs, as on the server.
    async fn decide_query<W: AsyncWrite + Unpin>(
        &mut self,
        statements: &[ParsedStatement],
        text: Option<&str>,
        shared: bool,
        upstream: &mut W,
    ) -> Result<Decided, FrontendError> {
        let transaction = self.shared.transaction();
        let count = statements.len();
        let mut d = Decided {
            treatments: Vec::with_capacity(count),
            reasons: Vec::with_capacity(count),
            refusal: None,
            reads: Vec::new(),
        };
        let mut local: Vec<(String, usize)> = Vec::new();
        let mut cursors: Vec<(String, usize)> = Vec::new();
        for (index, s) in statements.iter().enumerate() {
            let mut earlier = None;
            let mut registered: Option<Arc<Prepared>> = None;
            if let Some(name) = executes(s) {
                match local.iter().rev().find(|(n, _)| n == name) {
                    Some((_, i)) => earlier = statements.get(*i),
                    None => registered = self.registry.statement(name).cloned(),
                }
            }
            if let Some(name) = fetches(s) {
                match cursors.iter().rev().find(|(n, _)| n == name) {
                    Some((_, i)) => earlier = statements.get(*i),
                    None => {
                        registered = self.registry.cursor(name);
                        if let Some(b) = self.registry.bound_portal(name) {
                            d.reads.push((index, b));
                        }
                    }
                }
            }
            match s.prepared_op() {
                Some(PreparedOp::Prepare(name)) => local.push((name, index)),
                Some(PreparedOp::Declare(name)) => cursors.push((name, index)),
                _ => {}
            }
            let prepared = earlier.or_else(|| registered.as_ref().and_then(|p| p.statement()));
            let own_text = own_text(text, shared, s);
            let statement = Statement {
                origin: Origin::Query { index, count },
                text: Some(own_text),
                parsed: Ok(s),
                prepared,
                transaction,
                search_path: &self.search_path,
                parameters: &[],
            };
            let (verdict, mut why) = self.verdict(&statement);
            match self
                .treatment(verdict, own_text, &mut why, upstream)
                .await?
            {
                Ok(mut t) => {
                    t.expected = Expected::of(s, prepared);
                    d.treatments.push(t);
                    d.reasons.push(why);
                }
                Err(e) => {
                    self.record_refusal("query", own_text, Some(&s.facts), &why, &e);
                    d.refusal = Some(e);
                    break;
                }
            }
        }
        Ok(d)
    }

    /// Sends a planned Query and, when it prepares, deallocates, declares or closes
    /// something, mirrors what the server completed.
    async fn forward_query<W: AsyncWrite + Unpin>(
        &mut self,
        query: Query,
        parsed: &Arc<ParsedQuery>,
        plan: QueryPlan,
        treatments: &[Treatment],
        reasons: &[Reasons],
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let per = match plan {
            QueryPlan::Refused(e) => {
                let (expect, msg) = refused_query(e);
                self.send(expect, &msg);
                return Ok(());
            }
            QueryPlan::Forward(per) => Ok(per),
            QueryPlan::Limited(per, caps) => Err((per, caps)),
        };
        let Ok(statements) = &parsed.result else {
            return Ok(());
        };
        let first = self.seq + 1 - statements.len() as u64;
        let trackers: Vec<Option<Tracker>> = reasons
            .iter()
            .enumerate()
            .map(|(i, why)| {
                let recording = self.ctx.audit.recording(why);
                Some(Tracker::new(first + i as u64, recording))
            })
            .collect();
        self.track(parsed);
        // Prepared statements change only when the server says so: a PREPARE can fail (a
        // duplicate name, an error earlier in the query) and a DEALLOCATE can be skipped.
        // Wait for the outcome so the registry never ties a name to text the server does
        // not hold under it.
        let changes_prepared = statements
            .iter()
            .any(|s| s.prepared_op().is_some_and(|op| op.changes_names()));
        let (completed_tx, completed_rx) = if changes_prepared {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        match per {
            Ok(per) => self.send(per.forwarded(None, completed_tx, trackers), query.message()),
            Err((per, caps)) => {
                self.limited_query(query, per, caps, completed_tx, trackers, upstream)
                    .await?
            }
        }
        if let Some(rx) = completed_rx {
            self.flush(upstream).await?;
            let completed = rx.await.unwrap_or(0);
            // Parses and Closes sent before this query were answered before it: settle
            // them first, or settling later would undo what the query did.
            self.settle_now().await;
            self.apply_prepared(parsed, treatments, completed);
        }
        Ok(())
    }

    /// Applies the PREPAREs and DEALLOCATEs among the first `completed` statements.
    pub(super) fn apply_prepared(
        &mut self,
        parsed: &Arc<ParsedQuery>,
        treatments: &[Treatment],
        completed: usize,
    ) {
        let Ok(statements) = &parsed.result else {
            return;
        };
        for (index, _) in statements.iter().enumerate().take(completed) {
            let treatment = treatments.get(index).cloned().unwrap_or_default();
            self.apply_op(parsed, index, treatment);
        }
    }

    /// Mirrors what a statement the server completed did to prepared statements and
    /// cursors (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD ALL), whichever protocol ran
    /// it.
    pub(super) fn apply_op(
        &mut self,
        parsed: &Arc<ParsedQuery>,
        index: usize,
        treatment: Treatment,
    ) {
        let Some(s) = parsed.result.as_ref().ok().and_then(|s| s.get(index)) else {
            return;
        };
        let prepared = |treatment| Prepared {
            parsed: parsed.clone(),
            index,
            treatment,
        };
        match s.prepared_op() {
            Some(PreparedOp::Prepare(name)) => self.registry.prepare(&name, prepared(treatment)),
            Some(PreparedOp::Deallocate(Some(name))) => self.registry.deallocate(&name),
            Some(PreparedOp::Deallocate(None)) => self.registry.deallocate_all(),
            Some(PreparedOp::Declare(name)) => self
                .registry
                .declare(&name, Arc::new(prepared(Treatment::default()))),
            Some(PreparedOp::Close(name)) => self.registry.close_cursor(name.as_deref()),
            Some(PreparedOp::DiscardAll) => {
                self.registry.deallocate_all();
                self.registry.close_cursor(None);
            }
            _ => {}
        }
    }

    /// Mirrors what a forwarded query does to the session's search path and whether the
    /// catalog just changed.
    pub(super) fn track(&mut self, parsed: &Arc<ParsedQuery>) {
        let Ok(statements) = &parsed.result else {
            return;
        };
        // Inside a transaction block, or beside transaction control, a change may be
        // rolled back.
        let undoable = self.shared.transaction() != TransactionStatus::Idle
            || statements.iter().any(|s| s.facts.kind == Kind::Transaction);
        for s in statements {
            self.track_facts(&s.facts, undoable);
        }
    }

    /// Mirrors a statement's change of the search path. One that may not stand (a
    /// transaction may roll it back, the server may refuse it) adds the new schemas to the
    /// old instead of replacing them: names the catalog cannot place are then looked for
    /// in both, never in fewer schemas than the server may use.
    pub(super) fn track_facts(&mut self, facts: &portcullis_sql::analysis::Facts, undoable: bool) {
        for change in &facts.session {
            let new = match change {
                SessionChange::SearchPath(Some(path)) if !path.is_empty() => path.clone(),
                SessionChange::SearchPath(_) => self.ctx.search_path.clone(),
                SessionChange::Setting(all) if all == "*" => self.ctx.search_path.clone(),
                _ => continue,
            };
            if undoable {
                for schema in new {
                    if !self.search_path.contains(&schema) {
                        self.search_path.push(schema);
                    }
                }
            } else {
                self.search_path = new;
            }
        }
        if facts.kind == Kind::Ddl {
            (self.ctx.catalog_changed)();
        }
    }
}
