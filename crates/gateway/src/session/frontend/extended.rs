//! The extended query protocol: Parse decided and mirrored once the server created the
//! statement, Bind decided again, Execute of portals (and of cursors no Bind created).

use std::sync::Arc;

use portcullis_sql::analysis::Kind;
use portcullis_sql::{LexerOptions, PreparedOp};
use portcullis_wire::backend::{ErrorResponse, Severity};
use portcullis_wire::frontend::{self, Bind, Close, Describe, Execute, Parse, Target};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::decide::{RESERVED_PREFIX, fetches, reserved};
use super::plan::describe_first;
use super::refusal::{REFUSED, REFUSED_SQL};
use super::{Frontend, FrontendError};
use crate::audit::{Described, Tracker};
use crate::decision::{Origin, Statement};
use crate::session::portals::Effect;
use crate::session::prepared::{Prepared, Treatment};
use crate::session::queue::{Expect, LimitReport, OnError};
use crate::session::tripwire::Expected;

impl Frontend<'_> {
    /// After a Sync, waits for the outcome of Parses and Closes the server may have
    /// refused or skipped, so the registry holds what the server holds (see `Pending`).
    /// The server answered them before the Sync's ReadyForQuery, so this rarely waits.
    pub(super) async fn settle_statements<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        if self.pending.must_settle() {
            self.flush(upstream).await?;
            self.settle_now().await;
        }
        Ok(())
    }

    /// Settles every pending change, once its outcome is known to have been sent (the
    /// server answered something after it).
    pub(super) async fn settle_now(&mut self) {
        for (name, holds) in self.pending.settle().await {
            self.registry.set(&name, holds);
        }
    }

    pub(super) async fn on_parse<W: AsyncWrite + Unpin>(
        &mut self,
        parse: Parse,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let settings = self.server_lexer(parse.sql(), upstream).await?;
        let (_, parsed, _) = self.analyse(parse.sql(), false, settings);
        let name = parse.name().to_string();
        let statements = match &parsed.result {
            Ok(s) => s,
            Err(reason) => {
                let reason = reason.clone();
                self.registry.deallocate(&name);
                self.record_unanalysable("parse", None, parse.sql(), &reason);
                self.probe(parse.sql(), &reason, Some(&name));
                return Ok(());
            }
        };
        let transaction = self.shared.transaction();
        let mut outcome: Result<Treatment, ErrorResponse> = Ok(Treatment::default());
        for (i, s) in statements.iter().enumerate() {
            let registered = self.referenced(s);
            let statement = Statement {
                origin: Origin::Parse { name: &name },
                text: Some(&s.text),
                parsed: Ok(s),
                prepared: registered.as_ref().and_then(|p| p.statement()),
                transaction,
                search_path: &self.search_path,
            };
            let (verdict, mut why) = self.verdict(&statement);
            match (
                self.treatment(verdict, &s.text, &mut why, upstream).await?,
                why,
            ) {
                (Ok(t), _) if i == 0 => outcome = Ok(t),
                (Ok(_), _) => {}
                (Err(e), why) => {
                    self.record_refusal("parse", &s.text, Some(&s.facts), &why, &e);
                    outcome = Err(e);
                    break;
                }
            }
        }
        match outcome {
            Ok(treatment) => {
                if statements
                    .first()
                    .is_some_and(|s| s.facts.kind == Kind::Ddl)
                {
                    (self.ctx.catalog_changed)();
                }
                let prepared = Prepared {
                    parsed: parsed.clone(),
                    index: 0,
                    treatment,
                };
                // Tied to the new text at once, settled after the next Sync: a named
                // statement exists only if the server creates it (not when the name is
                // taken), and a failed Parse of the unnamed one drops it.
                let before = self.registry.take(&name);
                self.registry.prepare(&name, prepared);
                let creates = self.registry.statement(&name).cloned();
                let (tx, rx) = oneshot::channel();
                let failure = name.is_empty().then_some(None);
                self.pending.sent(&name, before, rx, creates, failure);
                self.send(
                    Expect::Parse {
                        on_error: OnError::Forward,
                        on_success: None,
                        report: Some(tx),
                    },
                    parse.message(),
                );
            }
            Err(refusal) => {
                let mut report = None;
                if name.is_empty() {
                    // The stand-in fails, dropping the old statement, unless it is skipped.
                    let before = self.registry.take(&name);
                    let (tx, rx) = oneshot::channel();
                    self.pending.sent(&name, before, rx, None, Some(None));
                    report = Some(tx);
                }
                self.send(
                    Expect::Parse {
                        on_error: OnError::Replace(refusal),
                        on_success: None,
                        report,
                    },
                    Parse::new(&name, REFUSED_SQL, &[]).message(),
                );
            }
        }
        Ok(())
    }

    /// A Bind runs a prepared statement: it is decided again, so that policy changes and
    /// time-of-day rules reach statements prepared earlier.
    pub(super) async fn on_bind<W: AsyncWrite + Unpin>(
        &mut self,
        bind: Bind,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        if bind.portal().starts_with(RESERVED_PREFIX) {
            let e = reserved(bind.portal());
            let text = format!("/* Bind of portal \"{}\" */", bind.portal());
            self.refuse_message("bind", &text, e);
            return Ok(());
        }
        let Some(prepared) = self.registry.statement(bind.statement()).cloned() else {
            // Unknown to the gateway. Usually unknown to the server too, but a function's
            // dynamic SQL can PREPARE behind the gateway's back: never run what was not
            // decided. The client gets the error the server gives for a missing statement.
            let e = ErrorResponse::new(
                Severity::Error,
                "26000",
                match bind.statement() {
                    "" => "unnamed prepared statement does not exist".to_string(),
                    name => format!("prepared statement \"{name}\" does not exist"),
                },
            );
            let text = format!(
                "/* Bind of prepared statement \"{}\", which the gateway has not seen prepared */",
                bind.statement()
            );
            // The failing stand-in leaves the server's portal of that name as it was.
            self.refuse_message("bind", &text, e);
            return Ok(());
        };
        let Some(stmt) = prepared.statement() else {
            // An empty query string: nothing to decide.
            let bound = self.registry.bind(bind.portal(), bind.statement());
            self.send(
                Expect::Bind {
                    portal: Some(bound),
                    on_error: OnError::Forward,
                    audit: None,
                },
                bind.message(),
            );
            return Ok(());
        };
        let registered = self.referenced(stmt);
        let statement = Statement {
            origin: Origin::Bind {
                statement: bind.statement(),
            },
            text: Some(&stmt.text),
            parsed: Ok(stmt),
            prepared: registered.as_ref().and_then(|p| p.statement()),
            transaction: self.shared.transaction(),
            search_path: &self.search_path,
        };
        let (verdict, mut why) = self.verdict(&statement);
        let outcome = self
            .treatment(verdict, &stmt.text, &mut why, upstream)
            .await?;
        let outcome = match outcome {
            Ok(mut treatment) => {
                treatment.expected =
                    Expected::of(stmt, registered.as_ref().and_then(|p| p.statement()));
                treatment.effect = match fetches(stmt).and_then(|n| self.registry.bound_portal(n)) {
                    Some(b) => Effect::Reads(b),
                    None => Effect::of(stmt),
                };
                treatment.bound = Some(prepared.clone());
                treatment.mirrors = matches!(
                    stmt.prepared_op(),
                    Some(
                        PreparedOp::Prepare(_)
                            | PreparedOp::Deallocate(_)
                            | PreparedOp::Declare(_)
                            | PreparedOp::Close(_)
                            | PreparedOp::DiscardAll
                    )
                );
                let seq = self.next_seq();
                let event = self.event(
                    Described::new(seq, "bind", &stmt.text, &why)
                        .facts(Some(&stmt.facts))
                        .parameters(crate::audit::parameters(&bind, why.sensitive))
                        .max_rows(treatment.cap.as_ref().map(|c| c.max)),
                );
                let record = self.ctx.audit.recording(&why).is_some();
                treatment.audit = Some((seq, record));
                self.audit_durable(vec![event], upstream)
                    .await?
                    .map(|()| (treatment, seq))
            }
            Err(refusal) => {
                self.record_refusal("bind", &stmt.text, Some(&stmt.facts), &why, &refusal);
                Err(refusal)
            }
        };
        match outcome {
            Ok((treatment, seq)) => {
                let bound = self.registry.bind_treated(bind.portal(), treatment);
                self.send(
                    Expect::Bind {
                        portal: Some(bound),
                        on_error: OnError::Forward,
                        audit: Some(Tracker::new(seq, None)),
                    },
                    bind.message(),
                );
            }
            Err(refusal) => {
                // Binding a statement that does not exist fails on the server, which then
                // skips to Sync as after any error; its portal of that name stays as it was.
                self.send(
                    Expect::Bind {
                        portal: None,
                        on_error: OnError::Replace(refusal),
                        audit: None,
                    },
                    Bind::new(bind.portal(), REFUSED).message(),
                );
            }
        }
        Ok(())
    }

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
        if let Some(rx) = limited {
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
        } else if let (Some(rx), Some(bound)) = (done, &treatment.bound) {
            self.push(&frontend::flush());
            self.flush(upstream).await?;
            if rx.await.is_ok() {
                self.settle_now().await;
                let (parsed, index) = (bound.parsed.clone(), bound.index);
                self.apply_op(&parsed, index, Treatment::default());
            }
        }
        Ok(())
    }

    /// An Execute of a portal no Bind through the gateway created: a SQL cursor (declared,
    /// or opened by a function). It is decided like `FETCH ALL FROM` it, on the DECLARE
    /// the gateway saw, and audited; refused, a failing Bind stands in for it.
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

    pub(super) fn on_describe(&mut self, d: Describe) -> Result<(), FrontendError> {
        let of = (d.target() == Target::Portal, Arc::<str>::from(d.name()));
        // A statement's description passes as the server gives it; a portal's binds the
        // rewriter of its rows.
        let rewrite = match d.target() {
            Target::Statement => None,
            Target::Portal => {
                self.registry.describe_portal(d.name());
                self.registry.portal(d.name()).rewrite
            }
        };
        self.send(
            Expect::Describe {
                of,
                rewrite,
                swallow: false,
            },
            d.message(),
        );
        Ok(())
    }

    pub(super) fn on_close(&mut self, c: Close) -> Result<(), FrontendError> {
        if c.target() == Target::Statement {
            // Forgotten at once, settled after the next Sync (a Close after an error is
            // skipped, and the statement stays).
            let before = self.registry.take(c.name());
            let (tx, rx) = oneshot::channel();
            self.pending.sent(c.name(), before, rx, None, None);
            self.send(
                Expect::Close {
                    portal: None,
                    swallow: false,
                    report: Some(tx),
                },
                c.message(),
            );
            return Ok(());
        }
        // A portal stays in the registry: if the Close is skipped the server keeps it, and
        // if not, the ledger knows (see `portals`).
        let portal = match c.target() {
            Target::Statement => {
                self.registry.deallocate(c.name());
                None
            }
            Target::Portal => Some(Arc::<str>::from(c.name())),
        };
        self.send(
            Expect::Close {
                portal,
                swallow: false,
                report: None,
            },
            c.message(),
        );
        Ok(())
    }
}
