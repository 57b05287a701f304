//! The extended query protocol: Parse decided and mirrored once the server created the
//! statement, Bind decided again, Execute of portals (and of cursors no Bind created).

use std::sync::Arc;

use portcullis_sql::analysis::Kind;
use portcullis_wire::backend::{ErrorResponse, Severity};
use portcullis_wire::frontend::{Bind, Close, Describe, Parse, Target};
use tokio::io::AsyncWrite;
use tokio::sync::oneshot;

use super::decide::{RESERVED_PREFIX, fetches, reserved};
use super::refusal::{REFUSED, REFUSED_SQL};
use super::{Frontend, FrontendError};
use crate::audit::{Described, Tracker};
use crate::decision::{Origin, Statement};
use crate::session::portals::Effect;
use crate::session::prepared::{Prepared, Treatment};
use crate::session::queue::{Expect, OnError};
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
                parameters: &[],
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
        self.send_parse(&parse, &name, parsed.clone(), outcome);
        Ok(())
    }

    /// Sends a decided Parse: the statement tied to its name at once (settled after the
    /// next Sync), or, refused, a stand-in that fails on the server.
    fn send_parse(
        &mut self,
        parse: &Parse,
        name: &str,
        parsed: Arc<portcullis_sql::ParsedQuery>,
        outcome: Result<Treatment, ErrorResponse>,
    ) {
        match outcome {
            Ok(treatment) => {
                if parsed
                    .result
                    .as_ref()
                    .ok()
                    .and_then(|s| s.first())
                    .is_some_and(|s| s.facts.kind == Kind::Ddl)
                {
                    (self.ctx.catalog_changed)();
                }
                let prepared = Prepared {
                    parsed,
                    index: 0,
                    treatment,
                };
                // Tied to the new text at once, settled after the next Sync: a named
                // statement exists only if the server creates it (not when the name is
                // taken), and a failed Parse of the unnamed one drops it.
                let before = self.registry.take(name);
                self.registry.prepare(name, prepared);
                let creates = self.registry.statement(name).cloned();
                let (tx, rx) = oneshot::channel();
                let failure = name.is_empty().then_some(None);
                self.pending.sent(name, before, rx, creates, failure);
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
                    let before = self.registry.take(name);
                    let (tx, rx) = oneshot::channel();
                    self.pending.sent(name, before, rx, None, Some(None));
                    report = Some(tx);
                }
                self.send(
                    Expect::Parse {
                        on_error: OnError::Replace(refusal),
                        on_success: None,
                        report,
                    },
                    Parse::new(name, REFUSED_SQL, &[]).message(),
                );
            }
        }
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
        let outcome = self.treat_bind(&bind, &prepared, stmt, upstream).await?;
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

    /// A Bind of a statement decided again: its treatment and number in the trail (its
    /// event durable), or the refusal.
    async fn treat_bind<W: AsyncWrite + Unpin>(
        &mut self,
        bind: &Bind,
        prepared: &Arc<Prepared>,
        stmt: &portcullis_sql::ParsedStatement,
        upstream: &mut W,
    ) -> Result<Result<(Treatment, u64), ErrorResponse>, FrontendError> {
        let registered = self.referenced(stmt);
        let parameters = bind.parameters();
        let statement = Statement {
            origin: Origin::Bind {
                statement: bind.statement(),
            },
            text: Some(&stmt.text),
            parsed: Ok(stmt),
            prepared: registered.as_ref().and_then(|p| p.statement()),
            transaction: self.shared.transaction(),
            search_path: &self.search_path,
            parameters: &parameters,
        };
        let (verdict, mut why) = self.verdict(&statement);
        let outcome = self
            .treatment(verdict, &stmt.text, &mut why, upstream)
            .await?;
        Ok(match outcome {
            Ok(mut treatment) => {
                treatment.expected =
                    Expected::of(stmt, registered.as_ref().and_then(|p| p.statement()));
                treatment.effect = match fetches(stmt).and_then(|n| self.registry.bound_portal(n)) {
                    Some(b) => Effect::Reads(b),
                    None => Effect::of(stmt),
                };
                treatment.bound = Some(prepared.clone());
                treatment.mirrors = stmt.prepared_op().is_some_and(|op| op.changes_names());
                let seq = self.next_seq();
                let event = self.event(
                    Described::new(seq, "bind", &stmt.text, &why)
                        .facts(Some(&stmt.facts))
                        .parameters(crate::audit::parameters(bind, why.sensitive))
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
        })
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
