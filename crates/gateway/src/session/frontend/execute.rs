//! Execute: a portal bound through the gateway runs as its Bind was decided (described
//! first when its rows are rewritten or recorded, under its row limit, mirrored when it
//! prepares or declares); an Execute of a SQL cursor is decided as a FETCH from it.

use std::sync::Arc;

use portcullis_sql::LexerOptions;
use portcullis_wire::backend::{ErrorResponse, Severity};
use portcullis_wire::frontend::{self, Bind, Execute, Parse};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::plan::describe_first;
use super::refusal::{REFUSED, REFUSED_SQL};
use super::{Frontend, FrontendError};
use crate::audit::{Described, Tracker};
use crate::decision::{Origin, Statement};
use crate::session::portals::Effect;
use crate::session::prepared::Treatment;
use crate::session::queue::{Expect, LimitReport, OnError};
use crate::session::tripwire::Expected;

impl Frontend<'_> {
    pub(super) async fn on_execute<W: AsyncWrite + Unpin>(
        &mut self,
        execute: Execute,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        if !execute.portal().is_empty() && !self.registry.has_portal(execute.portal()) {
            return self.execute_cursor(execute, upstream).await;
        }
        let treatment = self.registry.portal(execute.portal());
        // The unnamed portal the gateway did not bind: none the ledger holds either.
        let portal = treatment
            .portal
            .clone()
            .unwrap_or_else(|| (Arc::from(execute.portal()), 0));
        // A SET through the extended protocol: not waited for, so it may not stand.
        if let Some(s) = treatment.bound.as_ref().and_then(|b| b.statement())
            && !s.facts.session.is_empty()
        {
            let facts = s.facts.clone();
            self.track_facts(&facts, true);
        }
        let limits = &self.ctx.audit.limits;
        let audit = treatment
            .audit
            .map(|(seq, record)| Tracker::new(seq, record.then_some(limits)));
        let recorded = audit.as_ref().is_some_and(|t| t.recorder.is_some());
        let wanted = treatment.rewrite.is_some() || recorded;
        let described = wanted && self.registry.describe_portal(execute.portal());
        if let Some((expect, msg)) = describe_first(
            execute.portal(),
            treatment.rewrite.clone(),
            recorded,
            described,
        ) {
            self.send(expect, &msg);
        }
        // A row limit: nothing before the next Sync is committed, so the client's further
        // messages wait until the row count is known, and the statement is undone if it
        // is over the limit.
        let (limit, limited) = match treatment.cap {
            Some(cap) => {
                let (tx, rx) = oneshot::channel();
                (Some((cap, tx)), Some(rx))
            }
            None => (None, None),
        };
        // PREPARE, DEALLOCATE, DECLARE, CLOSE or DISCARD ALL through the extended protocol:
        // mirrored once the server has done it (a name may be taken).
        let (completed, done) = if treatment.mirrors && limit.is_none() {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.send(
            Expect::Execute {
                fetch: u64::try_from(execute.max_rows()).unwrap_or(0),
                completed,
                portal,
                bound: true,
                started: false,
                effect: treatment.effect,
                rewrite: treatment.rewrite,
                expected: treatment.expected,
                limit,
                audit,
            },
            execute.message(),
        );
        match (limited, done, &treatment.bound) {
            (Some(rx), _, _) => self.after_limited_execute(rx, upstream).await,
            (None, Some(rx), Some(bound)) => {
                self.push(&frontend::flush());
                self.flush(upstream).await?;
                if rx.await.is_ok() {
                    self.settle_now().await;
                    let (parsed, index) = (bound.parsed.clone(), bound.index);
                    self.apply_op(&parsed, index, Treatment::default());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A row-limited Execute: the client's further messages wait for its row count, and
    /// over the limit a failing Parse makes the server skip to Sync, so nothing of the
    /// transaction commits.
    async fn after_limited_execute<W: AsyncWrite + Unpin>(
        &mut self,
        rx: oneshot::Receiver<LimitReport>,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        self.push(&frontend::flush());
        self.flush(upstream).await?;
        if rx.await.map_err(|_| FrontendError::Ended)? == LimitReport::Exceeded {
            self.send(
                Expect::Parse {
                    on_error: OnError::Swallow,
                    on_success: None,
                    report: None,
                },
                Parse::new(REFUSED, REFUSED_SQL, &[]).message(),
            );
        }
        Ok(())
    }

    /// An Execute of a portal no Bind through the gateway created: a SQL cursor (declared,
    /// or opened by a function). It is decided like `FETCH ALL FROM` it, on the DECLARE
    /// the gateway saw, and audited; refused, a failing Bind stands in for it. (Decide,
    /// record, send: the three steps of every statement, here for a statement with no
    /// text of its own.)
    pub(super) async fn execute_cursor<W: AsyncWrite + Unpin>(
        &mut self,
        execute: Execute,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let name = execute.portal().to_string();
        let sql = format!("FETCH FORWARD ALL FROM \"{}\"", name.replace('"', "\"\""));
        let parsed = self.ctx.cache.get(&sql, LexerOptions::default());
        let Ok([stmt]) = parsed.result.as_deref() else {
            // Only a name no cursor can have gets here.
            let e = ErrorResponse::new(
                Severity::Error,
                "34000",
                format!("portal \"{name}\" does not exist"),
            );
            self.refuse_message("execute", &sql, e);
            return Ok(());
        };
        let cursor = self.registry.cursor(&name);
        let text = format!("/* Execute of cursor \"{name}\" */ {sql}");
        let statement = Statement {
            origin: Origin::Bind { statement: &name },
            text: Some(&text),
            parsed: Ok(stmt),
            prepared: cursor.as_ref().and_then(|c| c.statement()),
            transaction: self.shared.transaction(),
            search_path: &self.search_path,
            parameters: &[],
        };
        let (verdict, mut why) = self.verdict(&statement);
        let outcome = self.treatment(verdict, &text, &mut why, upstream).await?;
        let outcome = match outcome {
            Ok(treatment) => {
                let seq = self.next_seq();
                let event = self
                    .event(Described::new(seq, "execute", &text, &why).facts(Some(&stmt.facts)));
                let record = self.ctx.audit.recording(&why).is_some();
                let limits = &self.ctx.audit.limits;
                let tracker = Tracker::new(seq, record.then_some(limits));
                self.audit_durable(vec![event], upstream)
                    .await?
                    .map(|()| (tracker, treatment.rewrite))
            }
            Err(refusal) => {
                self.record_refusal("execute", &text, Some(&stmt.facts), &why, &refusal);
                Err(refusal)
            }
        };
        match outcome {
            Ok((tracker, rewrite)) => {
                // The cursor's description is asked for every time: SQL can replace the
                // cursor behind any name between two Executes.
                let recorded = tracker.recorder.is_some();
                if let Some((expect, msg)) = describe_first(&name, rewrite.clone(), recorded, false)
                {
                    self.send(expect, &msg);
                }
                self.send(
                    Expect::Execute {
                        fetch: 0,
                        completed: None,
                        portal: (Arc::from(name.as_str()), 0),
                        bound: false,
                        started: false,
                        effect: Effect::None,
                        rewrite,
                        expected: Expected::NoWrite,
                        limit: None,
                        audit: Some(tracker),
                    },
                    execute.message(),
                );
            }
            // Binding a statement that does not exist fails where the Execute would have.
            Err(refusal) => self.send(
                Expect::Bind {
                    portal: None,
                    on_error: OnError::Replace(refusal),
                    audit: None,
                },
                Bind::new("", REFUSED).message(),
            ),
        }
        Ok(())
    }
}
