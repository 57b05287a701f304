//! Client → server: every message is framed, statements are decided, and what the server
//! owes in return is queued before the message is forwarded.
//!
//! A refused statement is never forwarded. In its place the gateway sends text that fails
//! to parse, so the server itself raises an error at exactly that point in the pipeline:
//! the transaction becomes failed if one was open, the extended protocol skips to Sync,
//! and ReadyForQuery carries the server's own status. The backend swaps that error for the
//! refusal (see `queue`).
//!
//! Text the gateway's parser rejects is *probed*: sent to the server as a Parse of a
//! throwaway statement. If the server rejects it too, the client gets the server's own
//! syntax error, word for word; if the server accepts it, the gateway refuses it, because
//! it cannot know what it would do.
//!
//! A statement with a row limit runs inside a transaction the gateway controls: the limit
//! is checked against the CommandComplete count, and a statement over it is undone before
//! anyone can commit it.

use std::borrow::Cow;
use std::sync::Arc;

use portcullis_sql::analysis::{Kind, SessionChange};
use portcullis_sql::{ClientEncoding, LexerOptions, ParsedQuery, PreparedOp};
use portcullis_wire::backend::{ErrorResponse, Severity, TransactionStatus};
use portcullis_wire::frontend::{self, Bind, Close, Describe, Execute, Parse, Query, Target};
use portcullis_wire::{Frame, FrameReader, Message, StreamError, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use super::outbox::Outbox;
use super::prepared::{Prepared, Registry, Treatment, UnnamedParses};
use super::queue::{Expect, LimitReport, OnError, QueryLimits, RowCap};
use super::settled::Sent;
use super::tripwire::Expected;
use super::{Context, Shared};
use crate::audit::{Described, Tracker, statement_event, unavailable};
use crate::decision::{Origin, Reasons, Statement, Verdict};

/// Text the server is certain to reject at parse time, with no side effects; stands in
/// for a refused statement.
const REFUSED_SQL: &[u8] = b"/* portcullis: statement refused */ PORTCULLIS_REFUSED";
/// Names of the gateway's own throwaway prepared statements.
const PROBE: &str = "portcullis_probe";
const REFUSED: &str = "portcullis_refused";
/// The gateway's own query of the settings the server's lexer reads.
const LEXER_SETTINGS_SQL: &[u8] = b"SELECT pg_catalog.current_setting('client_encoding'), pg_catalog.current_setting('standard_conforming_strings')";

/// How the client side ended.
#[derive(Debug)]
pub enum FrontendEnd {
    Terminated,
    ClientClosed,
}

/// Why the client side failed.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("{0}")]
    Client(#[from] WireError),
    #[error("upstream write failed: {0}")]
    Upstream(std::io::Error),
    #[error("the session ended while a statement was running")]
    Ended,
}

pub struct Frontend<'s> {
    ctx: &'s Context,
    shared: &'s Shared,
    queue: UnboundedSender<Expect>,
    registry: Registry,
    search_path: Vec<String>,
    pub out: Outbox,
    /// Statements audited so far in this session.
    pub seq: u64,
    /// What was sent, to know whether the lexer settings last reported still hold.
    settled: Sent,
    /// The gateway's own queries of the lexer settings so far (each gets a fresh name).
    lexer_queries: u64,
    /// Parses of the unnamed statement the server may have skipped.
    unnamed: UnnamedParses,
}

/// The server after a barrier: its transaction status, and whether it is discarding
/// messages until Sync (so that it will not parse the next one).
struct CaughtUp {
    status: TransactionStatus,
    skipping: bool,
}

/// The prepared statement an `EXECUTE` runs, wherever it sits (`EXPLAIN EXECUTE`,
/// `CREATE TABLE … AS EXECUTE`).
fn executes(s: &portcullis_sql::ParsedStatement) -> Option<&str> {
    if s.facts.tags.contains("execute") {
        s.facts.prepared_name.as_deref()
    } else {
        None
    }
}

/// The cursor a `FETCH` or `MOVE` reads from.
fn fetches(s: &portcullis_sql::ParsedStatement) -> Option<&str> {
    if s.facts.tags.contains("fetch") {
        s.facts.prepared_name.as_deref()
    } else {
        None
    }
}

/// Names of prepared statements and portals the gateway uses for itself (its refusals,
/// probes and queries of the server's settings depend on no client holding them).
const RESERVED_PREFIX: &str = "portcullis_";

fn reserved(name: &str) -> ErrorResponse {
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
fn creates_reserved_name<'a>(statement: &'a Statement<'_>) -> Option<&'a str> {
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

fn canceled() -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "57014",
        "canceling statement due to user request",
    )
}

/// The refusal of text the gateway's parser rejects but the server's accepts. It carries
/// the parser's own message, as the server would have raised a similar error running it.
fn unanalysable(reason: &str) -> ErrorResponse {
    let reason = reason.strip_prefix("Invalid statement: ").unwrap_or(reason);
    ErrorResponse::new(Severity::Error, "42601", reason)
}

impl<'s> Frontend<'s> {
    pub fn new(ctx: &'s Context, shared: &'s Shared, queue: UnboundedSender<Expect>) -> Self {
        Frontend {
            ctx,
            shared,
            queue,
            registry: Registry::default(),
            search_path: ctx.search_path.clone(),
            out: Outbox::new(),
            seq: 0,
            settled: Sent::default(),
            lexer_queries: 0,
            unnamed: UnnamedParses::default(),
        }
    }

    pub async fn run<R, W>(
        &mut self,
        client: &mut FrameReader<R>,
        upstream: &mut W,
    ) -> Result<FrontendEnd, FrontendError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            while let Some(frame) = client.try_next(|tag| tag == frontend::COPY_DATA)? {
                match frame {
                    Frame::Message(msg) => {
                        if msg.tag() == frontend::TERMINATE {
                            self.push(&msg);
                            self.flush(upstream).await?;
                            return Ok(FrontendEnd::Terminated);
                        }
                        if self.token_expired(msg.tag()) {
                            return self.end_expired(upstream).await;
                        }
                        self.on_message(msg, upstream).await?;
                    }
                    Frame::Stream { header, remaining } => {
                        // Only COPY data is streamed (the predicate above).
                        self.settled.sent(header[0], false);
                        self.out
                            .stream(client, header, remaining, upstream)
                            .await
                            .map_err(|e| match e {
                                StreamError::Read(e) => FrontendError::Client(e),
                                StreamError::Write(e) => FrontendError::Upstream(e),
                            })?
                    }
                }
                if self.out.is_full() {
                    self.flush(upstream).await?;
                }
            }
            self.flush(upstream).await?;
            if !client.fill().await? {
                return Ok(FrontendEnd::ClientClosed);
            }
        }
    }

    /// Whether the caller's token (plus the grace period) has run out and this message
    /// would start new work outside a transaction: a transaction in progress may finish.
    fn token_expired(&self, tag: u8) -> bool {
        matches!(
            tag,
            frontend::QUERY | frontend::PARSE | frontend::BIND | frontend::FUNCTION_CALL
        ) && self.shared.transaction() == TransactionStatus::Idle
            && self.ctx.clock.now().duration_since(self.ctx.expires_at)
                > jiff::SignedDuration::try_from(self.ctx.expiry_grace)
                    .unwrap_or(jiff::SignedDuration::MAX)
    }

    /// Ends the session for an expired token: the backend sends the client every answer
    /// it is owed, then the FATAL error, and ends the relay; nothing more is read here.
    async fn end_expired<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<FrontendEnd, FrontendError> {
        let e = ErrorResponse::new(
            Severity::Fatal,
            "28000",
            "token expired, run `portcullis login` (or get a new token) and reconnect",
        );
        self.send(Expect::End(e), &Message::new(frontend::FLUSH, b""));
        self.flush(upstream).await?;
        std::future::pending().await
    }

    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        self.out
            .flush(upstream)
            .await
            .map_err(FrontendError::Upstream)
    }

    /// Queues what the server owes for a message, then the message itself.
    fn send(&mut self, expect: Expect, msg: &Message) {
        self.settled.sent(msg.tag(), expect.ends_with_ready());
        // The backend owns the receiver for the session's lifetime; a send can only fail
        // when the session is already ending.
        let _ = self.queue.send(expect);
        self.out.push(msg);
    }

    /// Forwards a message the server does not answer (Flush, COPY data, Terminate).
    fn push(&mut self, msg: &Message) {
        self.settled.sent(msg.tag(), false);
        self.out.push(msg);
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Records a statement that is not forwarded (refused); nothing waits for it.
    fn record_refusal(
        &mut self,
        origin: &'static str,
        text: &str,
        facts: Option<&portcullis_sql::analysis::Facts>,
        reasons: &Reasons,
        refusal: &ErrorResponse,
    ) {
        let seq = self.next_seq();
        let event = statement_event(
            &self.ctx.info,
            Described {
                seq,
                origin,
                text,
                parameters: Vec::new(),
                facts,
                reasons,
                refusal: Some(refusal),
                max_rows: None,
                search_path: &self.search_path,
            },
        );
        self.ctx.audit.log.record(event);
    }

    /// Records text the gateway cannot analyse: it never runs as sent (the server either
    /// rejects it too, or the gateway refuses it).
    fn record_unanalysable(
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
    async fn audit_durable<W: AsyncWrite + Unpin>(
        &mut self,
        events: Vec<portcullis_audit::Event>,
        upstream: &mut W,
    ) -> Result<Result<(), ErrorResponse>, FrontendError> {
        let waits: Vec<_> = events
            .into_iter()
            .map(|e| self.ctx.audit.log.durable(e))
            .collect();
        self.flush(upstream).await?;
        for w in waits {
            if let Err(e) = w.await {
                return Ok(Err(unavailable(&e)));
            }
        }
        Ok(Ok(()))
    }

    /// What a statement runs besides itself: the prepared statement an `EXECUTE` names,
    /// the cursor a `FETCH` reads.
    fn referenced(&self, s: &portcullis_sql::ParsedStatement) -> Option<Arc<Prepared>> {
        executes(s)
            .and_then(|n| self.registry.statement(n))
            .or_else(|| fetches(s).and_then(|n| self.registry.cursor(n)))
            .cloned()
    }

    /// After a Sync, waits for the outcome of unnamed-statement Parses the server may have
    /// skipped, so the registry holds what the server holds (see `UnnamedParses`).
    async fn settle_unnamed<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        if self.unnamed.must_settle() {
            self.push(&frontend::flush());
            self.flush(upstream).await?;
            let holds = self.unnamed.settle().await;
            self.registry.set_unnamed(holds);
        }
        Ok(())
    }

    /// Asks the server to send what it has buffered, and waits until every earlier answer
    /// has been read: afterwards the transaction status is the server's current one.
    async fn catch_up<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<CaughtUp, FrontendError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.queue.send(Expect::Barrier(Some(tx)));
        self.push(&frontend::flush());
        self.flush(upstream).await?;
        let skipping = rx.await.map_err(|_| FrontendError::Ended)?;
        Ok(CaughtUp {
            status: self.shared.transaction(),
            skipping,
        })
    }

    /// The client encoding and lexer options the server will read `bytes` with, when it
    /// parses the message being decided. The settings the server last reported hold
    /// unless something sent since may have changed them (`settled`); text that reads the
    /// same under every setting (ASCII without a backslash) needs no more. Otherwise the
    /// gateway waits for the server to catch up, and when that leaves it mid-pipeline
    /// (the settings are reported only before ReadyForQuery) it asks the server, with a
    /// query of its own sent just before the client's message.
    async fn server_lexer<W: AsyncWrite + Unpin>(
        &mut self,
        bytes: &[u8],
        upstream: &mut W,
    ) -> Result<(ClientEncoding, LexerOptions), FrontendError> {
        let reported = (self.shared.encoding(), self.shared.lexer());
        let depends = !bytes.is_ascii() || bytes.contains(&b'\\');
        if !depends || self.settled.known(&self.shared.readies) {
            return Ok(reported);
        }
        let caught = self.catch_up(upstream).await?;
        if caught.skipping || self.settled.known(&self.shared.readies) {
            // Skipping: the server discards the message unparsed, whatever it says.
            return Ok((self.shared.encoding(), self.shared.lexer()));
        }
        self.lexer_queries += 1;
        let name = format!("portcullis_lexer_{}", self.lexer_queries);
        let (tx, rx) = oneshot::channel();
        // Sent without `settled` noting them: they change nothing.
        for (expect, msg) in [
            (
                Expect::Quiet,
                Parse::new(&name, LEXER_SETTINGS_SQL, &[]).message().clone(),
            ),
            (Expect::Quiet, Bind::new(&name, &name).message().clone()),
            (
                Expect::Settings {
                    row: None,
                    reply: Some(tx),
                },
                Execute::new(&name, 0).message().clone(),
            ),
            (
                Expect::Quiet,
                Close::new(Target::Portal, &name).message().clone(),
            ),
            (
                Expect::Quiet,
                Close::new(Target::Statement, &name).message().clone(),
            ),
        ] {
            let _ = self.queue.send(expect);
            self.out.push(&msg);
        }
        self.out.push(&frontend::flush());
        self.flush(upstream).await?;
        Ok(match rx.await {
            Ok((encoding, scs)) => (
                ClientEncoding::from_name(&encoding),
                LexerOptions {
                    standard_conforming_strings: scs.eq_ignore_ascii_case("on"),
                },
            ),
            // The query failed: the error went to the client and the server now discards
            // everything until Sync, this message included.
            Err(_) => reported,
        })
    }

    async fn on_message<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Message,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        match msg.tag() {
            frontend::QUERY => self.on_query(Query::decode(msg)?, upstream).await,
            frontend::PARSE => self.on_parse(Parse::decode(msg)?, upstream).await,
            frontend::BIND => self.on_bind(Bind::decode(msg)?, upstream).await,
            frontend::DESCRIBE => {
                let d = Describe::decode(msg)?;
                let rewrite = match d.target() {
                    Target::Statement => self
                        .registry
                        .statement(d.name())
                        .and_then(|p| p.treatment.rewrite.clone()),
                    Target::Portal => self.registry.portal(d.name()).rewrite,
                };
                self.send(Expect::Describe { rewrite }, d.message());
                Ok(())
            }
            frontend::EXECUTE => self.on_execute(Execute::decode(msg)?, upstream).await,
            frontend::CLOSE => {
                let c = Close::decode(msg)?;
                if c.target() == Target::Statement && !c.name().is_empty() {
                    // Forget a named statement only once the server has (a Close after
                    // an error is skipped, and the statement stays).
                    let (tx, rx) = oneshot::channel();
                    self.send(
                        Expect::Close {
                            swallow: false,
                            report: Some(tx),
                        },
                        c.message(),
                    );
                    self.push(&frontend::flush());
                    self.flush(upstream).await?;
                    if rx.await.unwrap_or(false) {
                        self.registry.deallocate(c.name());
                    }
                    return Ok(());
                }
                match c.target() {
                    Target::Statement => self.registry.deallocate(c.name()),
                    Target::Portal => self.registry.close_portal(c.name()),
                }
                self.send(
                    Expect::Close {
                        swallow: false,
                        report: None,
                    },
                    c.message(),
                );
                Ok(())
            }
            frontend::SYNC => {
                self.unnamed.synced();
                self.send(Expect::Sync, &msg);
                Ok(())
            }
            frontend::FLUSH | frontend::COPY_DATA => {
                self.push(&msg);
                Ok(())
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                self.send(Expect::CopyEnd, &msg);
                Ok(())
            }
            frontend::FUNCTION_CALL => self.on_function_call(msg, upstream).await,
            other => Err(FrontendError::Client(WireError::UnexpectedTag(
                other as char,
            ))),
        }
    }

    /// Decides one statement, waiting out holds. Pending output is flushed before waiting
    /// so that earlier pipelined work proceeds meanwhile.
    async fn decide<W: AsyncWrite + Unpin>(
        &mut self,
        statement: &Statement<'_>,
        upstream: &mut W,
    ) -> Result<(Result<Treatment, ErrorResponse>, Reasons), FrontendError> {
        if let Some(name) = creates_reserved_name(statement) {
            let e = reserved(name);
            let why = Reasons::of(&Verdict::Refuse(e.clone()));
            return Ok((Err(e), why));
        }
        let (mut verdict, reasons) = self
            .ctx
            .decider
            .decide_with_reasons(&self.ctx.info, statement);
        loop {
            match verdict {
                Verdict::Forward(rewrite) => {
                    return Ok((
                        Ok(Treatment {
                            rewrite,
                            ..Treatment::default()
                        }),
                        reasons,
                    ));
                }
                Verdict::ForwardLimited {
                    rewrite,
                    max_rows,
                    policy,
                } => {
                    return Ok((
                        Ok(Treatment {
                            rewrite,
                            cap: Some((max_rows, policy)),
                            ..Treatment::default()
                        }),
                        reasons,
                    ));
                }
                Verdict::Refuse(error) => return Ok((Err(error), reasons)),
                Verdict::Hold(future) => {
                    self.flush(upstream).await?;
                    verdict = tokio::select! {
                        v = future => v,
                        _ = self.ctx.hold.notified() => Verdict::Refuse(canceled()),
                    };
                }
            }
        }
    }

    /// Decodes and parses statement text in the session's encoding and lexer settings.
    /// For a simple query, `query` lets statements that differ only in constants share an
    /// analysis; the returned flag says the parse's statement texts belong to another text.
    fn analyse<'b>(
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

    /// Sends text the gateway could not parse to the server as a throwaway Parse: its own
    /// error goes back to the client; if it parses there, the client gets a refusal.
    /// `name` is the statement the client's Parse was creating (`None` for a Query).
    fn probe(&mut self, bytes: &[u8], reason: &str, name: Option<&str>) {
        self.send(
            Expect::Parse {
                on_error: OnError::Forward,
                on_success: Some(unanalysable(reason)),
                report: None,
            },
            Parse::new(PROBE, bytes, &[]).message(),
        );
        self.send(
            Expect::Close {
                swallow: true,
                report: None,
            },
            Close::new(Target::Statement, PROBE).message(),
        );
        // Fails whenever the probe parsed, so that the server skips to Sync and fails an
        // open transaction, as after any error. A failed Parse of the unnamed statement
        // drops it on the server too; a named one is left alone.
        let failing = match name {
            Some("") | None => "",
            Some(_) => REFUSED,
        };
        self.send(
            Expect::Parse {
                on_error: OnError::Swallow,
                on_success: None,
                report: None,
            },
            Parse::new(failing, REFUSED_SQL, &[]).message(),
        );
        if name.is_none() {
            self.send(Expect::Sync, &frontend::sync());
        }
    }

    async fn on_query<W: AsyncWrite + Unpin>(
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
        let transaction = self.shared.transaction();
        let count = statements.len();
        let mut treatments = Vec::with_capacity(count);
        let mut reasons = Vec::with_capacity(count);
        let mut refusal = None;
        // Statements prepared earlier in this same query are visible to later EXECUTEs in
        // it, as they will be on the server.
        let mut local: Vec<(String, usize)> = Vec::new();
        // So are cursors declared earlier to later FETCHes.
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
                    None => registered = self.registry.cursor(name).cloned(),
                }
            }
            match s.prepared_op() {
                Some(PreparedOp::Prepare(name)) => local.push((name, index)),
                Some(PreparedOp::Declare(name)) => cursors.push((name, index)),
                _ => {}
            }
            let prepared = earlier.or_else(|| registered.as_ref().and_then(|p| p.statement()));
            let search_path = self.search_path.clone();
            // A shared analysis is of a single statement: this query's whole text.
            let own_text = match (&text, shared) {
                (Some(t), true) => t.as_ref(),
                _ => s.text.as_str(),
            };
            let statement = Statement {
                origin: Origin::Query { index, count },
                text: Some(own_text),
                parsed: Ok(s),
                prepared,
                transaction,
                search_path: &search_path,
            };
            let (outcome, why) = self.decide(&statement, upstream).await?;
            match outcome {
                Ok(mut t) => {
                    t.expected = Expected::of(s, prepared);
                    treatments.push(t);
                    reasons.push(why);
                }
                Err(e) => {
                    self.record_refusal("query", own_text, Some(&s.facts), &why, &e);
                    refusal = Some(e);
                    break;
                }
            }
        }
        if refusal.is_none()
            && count > 1
            && treatments.iter().any(|t| t.cap.is_some())
            && statements.iter().any(|s| s.facts.kind == Kind::Transaction)
        {
            let e = ErrorResponse::new(
                Severity::Error,
                "0A000",
                "a statement with a row limit cannot share a query string with transaction control; send it on its own",
            );
            let whole = text.as_deref().unwrap_or_default().to_string();
            if let Some(first) = reasons.first().cloned() {
                self.record_refusal("query", &whole, None, &first, &e);
            }
            refusal = Some(e);
        }
        if refusal.is_none() {
            // Durable before anything runs.
            let first = self.seq + 1;
            let events: Vec<_> = statements
                .iter()
                .zip(&reasons)
                .zip(&treatments)
                .enumerate()
                .map(|(i, ((s, why), t))| {
                    // A shared analysis is of a single statement: this query's whole text.
                    let own_text = match (&text, shared) {
                        (Some(t), true) => t.as_ref(),
                        _ => s.text.as_str(),
                    };
                    statement_event(
                        &self.ctx.info,
                        Described {
                            seq: first + i as u64,
                            origin: "query",
                            text: own_text,
                            parameters: Vec::new(),
                            facts: Some(&s.facts),
                            reasons: why,
                            refusal: None,
                            max_rows: t.cap.as_ref().map(|c| c.0),
                            search_path: &self.search_path,
                        },
                    )
                })
                .collect();
            self.seq += count as u64;
            if let Err(e) = self.audit_durable(events, upstream).await? {
                refusal = Some(e);
            }
        }
        if let Some(refusal) = refusal {
            self.send(
                Expect::Query {
                    statements: Vec::new(),
                    expected: Vec::new(),
                    on_error: OnError::Replace(refusal),
                    limits: None,
                    completed: None,
                    audit: Vec::new(),
                },
                Query::new(REFUSED_SQL).message(),
            );
            return Ok(());
        }
        let first = self.seq + 1 - count as u64;
        let trackers: Vec<Option<Tracker>> = reasons
            .iter()
            .enumerate()
            .map(|(i, why)| {
                let recording = self.ctx.audit.recording(why);
                Some(Tracker::new(
                    first + i as u64,
                    recording,
                    Arc::from(Vec::new()),
                ))
            })
            .collect();
        self.track(&parsed);
        // Prepared statements change only when the server says so: a PREPARE can fail (a
        // duplicate name, an error earlier in the query) and a DEALLOCATE can be skipped.
        // Wait for the outcome so the registry never ties a name to text the server does
        // not hold under it.
        let changes_prepared = statements.iter().any(|s| {
            matches!(
                s.prepared_op(),
                Some(
                    PreparedOp::Prepare(_)
                        | PreparedOp::Deallocate(_)
                        | PreparedOp::Declare(_)
                        | PreparedOp::Close(_)
                        | PreparedOp::DiscardAll
                )
            )
        });
        let (completed_tx, completed_rx) = if changes_prepared {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let rewrites: Vec<_> = treatments.iter().map(|t| t.rewrite.clone()).collect();
        let expected: Vec<_> = treatments.iter().map(|t| t.expected).collect();
        if treatments.iter().any(|t| t.cap.is_some()) {
            let caps = treatments
                .iter()
                .map(|t| t.cap.clone().map(|(max, policy)| RowCap { max, policy }))
                .collect();
            self.limited_query(
                query,
                (rewrites, expected),
                caps,
                completed_tx,
                trackers,
                upstream,
            )
            .await?;
        } else {
            self.send(
                Expect::Query {
                    statements: rewrites,
                    expected,
                    on_error: OnError::Forward,
                    limits: None,
                    completed: completed_tx,
                    audit: trackers,
                },
                query.message(),
            );
        }
        if let Some(rx) = completed_rx {
            self.flush(upstream).await?;
            let completed = rx.await.unwrap_or(0);
            self.apply_prepared(&parsed, &treatments, completed);
        }
        Ok(())
    }

    /// Applies the PREPAREs and DEALLOCATEs among the first `completed` statements.
    fn apply_prepared(
        &mut self,
        parsed: &Arc<ParsedQuery>,
        treatments: &[Treatment],
        completed: usize,
    ) {
        let Ok(statements) = &parsed.result else {
            return;
        };
        for (index, s) in statements.iter().enumerate().take(completed) {
            match s.prepared_op() {
                Some(PreparedOp::Prepare(name)) => self.registry.prepare(
                    &name,
                    Prepared {
                        parsed: parsed.clone(),
                        index,
                        treatment: treatments.get(index).cloned().unwrap_or_default(),
                    },
                ),
                Some(PreparedOp::Deallocate(Some(name))) => self.registry.deallocate(&name),
                Some(PreparedOp::Deallocate(None)) => self.registry.deallocate_all(),
                Some(PreparedOp::Declare(name)) => self.registry.declare(
                    &name,
                    Prepared {
                        parsed: parsed.clone(),
                        index,
                        treatment: Treatment::default(),
                    },
                ),
                Some(PreparedOp::Close(name)) => self.registry.close_cursor(name.as_deref()),
                Some(PreparedOp::DiscardAll) => {
                    self.registry.deallocate_all();
                    self.registry.close_cursor(None);
                }
                _ => {}
            }
        }
    }

    /// Mirrors what a forwarded query does to the session's search path and whether the
    /// catalog just changed.
    fn track(&mut self, parsed: &Arc<ParsedQuery>) {
        let Ok(statements) = &parsed.result else {
            return;
        };
        for s in statements {
            self.track_facts(&s.facts);
        }
    }

    fn track_facts(&mut self, facts: &portcullis_sql::analysis::Facts) {
        for change in &facts.session {
            match change {
                SessionChange::SearchPath(Some(path)) if !path.is_empty() => {
                    self.search_path = path.clone()
                }
                SessionChange::SearchPath(_) => self.search_path = self.ctx.search_path.clone(),
                SessionChange::Setting(all) if all == "*" => {
                    self.search_path = self.ctx.search_path.clone()
                }
                _ => {}
            }
        }
        if facts.kind == Kind::Ddl {
            (self.ctx.catalog_changed)();
        }
    }

    /// Runs a query holding row-limited statements inside a transaction the gateway can
    /// undo: its own when the client is not in one, else the client's, failed on purpose.
    async fn limited_query<W: AsyncWrite + Unpin>(
        &mut self,
        query: Query,
        (rewrites, expected): (
            Vec<Option<Arc<dyn crate::decision::Rewrite>>>,
            Vec<Expected>,
        ),
        caps: Vec<Option<RowCap>>,
        completed: Option<oneshot::Sender<usize>>,
        audit: Vec<Option<Tracker>>,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let status = self.catch_up(upstream).await?.status;
        if status == TransactionStatus::Failed {
            // The server refuses everything but the end of the transaction anyway.
            self.send(
                Expect::Query {
                    statements: rewrites,
                    expected,
                    on_error: OnError::Forward,
                    limits: None,
                    completed,
                    audit,
                },
                query.message(),
            );
            return Ok(());
        }
        let began = status == TransactionStatus::Idle;
        if began {
            self.send(
                Expect::Internal {
                    forward_errors: false,
                    forward_ready: false,
                },
                Query::new(b"BEGIN").message(),
            );
        }
        let (tx, rx) = oneshot::channel();
        self.send(
            Expect::Query {
                statements: rewrites,
                expected,
                on_error: OnError::Forward,
                limits: Some(QueryLimits::new(caps, began, tx)),
                completed,
                audit,
            },
            query.message(),
        );
        self.flush(upstream).await?;
        let report = rx.await.map_err(|_| FrontendError::Ended)?;
        let follow_up: Option<(&[u8], bool)> = match (began, report) {
            (true, LimitReport::Within) => Some((b"COMMIT", true)),
            (true, _) => Some((b"ROLLBACK", false)),
            (false, LimitReport::Exceeded) => Some((REFUSED_SQL, false)),
            (false, _) => None,
        };
        if let Some((sql, forward_errors)) = follow_up {
            self.send(
                Expect::Internal {
                    forward_errors,
                    forward_ready: true,
                },
                Query::new(sql).message(),
            );
        }
        Ok(())
    }

    /// A Bind runs a prepared statement: it is decided again, so that policy changes and
    /// time-of-day rules reach statements prepared earlier.
    async fn on_bind<W: AsyncWrite + Unpin>(
        &mut self,
        bind: Bind,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        if bind.statement().is_empty() {
            self.settle_unnamed(upstream).await?;
        }
        if bind.portal().starts_with(RESERVED_PREFIX) {
            let e = reserved(bind.portal());
            let text = format!("/* Bind of portal \"{}\" */", bind.portal());
            self.record_refusal(
                "bind",
                &text,
                None,
                &Reasons::of(&Verdict::Refuse(e.clone())),
                &e,
            );
            self.send(
                Expect::Bind {
                    on_error: OnError::Replace(e),
                    audit: None,
                },
                Bind::new("", REFUSED).message(),
            );
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
            self.record_refusal(
                "bind",
                &text,
                None,
                &Reasons::of(&Verdict::Refuse(e.clone())),
                &e,
            );
            self.registry.close_portal(bind.portal());
            self.send(
                Expect::Bind {
                    on_error: OnError::Replace(e),
                    audit: None,
                },
                Bind::new(bind.portal(), REFUSED).message(),
            );
            return Ok(());
        };
        let Some(stmt) = prepared.statement() else {
            // An empty query string: nothing to decide.
            self.registry.bind(bind.portal(), bind.statement());
            self.send(
                Expect::Bind {
                    on_error: OnError::Forward,
                    audit: None,
                },
                bind.message(),
            );
            return Ok(());
        };
        let registered = self.referenced(stmt);
        let search_path = self.search_path.clone();
        let statement = Statement {
            origin: Origin::Bind {
                statement: bind.statement(),
            },
            text: Some(&stmt.text),
            parsed: Ok(stmt),
            prepared: registered.as_ref().and_then(|p| p.statement()),
            transaction: self.shared.transaction(),
            search_path: &search_path,
        };
        let (outcome, why) = self.decide(&statement, upstream).await?;
        let outcome = match outcome {
            Ok(mut treatment) => {
                treatment.expected =
                    Expected::of(stmt, registered.as_ref().and_then(|p| p.statement()));
                let seq = self.next_seq();
                let event = statement_event(
                    &self.ctx.info,
                    Described {
                        seq,
                        origin: "bind",
                        text: &stmt.text,
                        parameters: crate::audit::parameters(&bind, why.sensitive),
                        facts: Some(&stmt.facts),
                        reasons: &why,
                        refusal: None,
                        max_rows: treatment.cap.as_ref().map(|c| c.0),
                        search_path: &search_path,
                    },
                );
                let record = self.ctx.audit.recording(&why).is_some();
                treatment.audit = Some((seq, Arc::from(bind.result_formats()), record));
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
                self.registry.bind_treated(bind.portal(), treatment);
                self.send(
                    Expect::Bind {
                        on_error: OnError::Forward,
                        audit: Some(Tracker::new(seq, None, Arc::from(Vec::new()))),
                    },
                    bind.message(),
                );
            }
            Err(refusal) => {
                self.registry.close_portal(bind.portal());
                // Binding a statement that does not exist fails on the server, which then
                // skips to Sync as after any error.
                self.send(
                    Expect::Bind {
                        on_error: OnError::Replace(refusal),
                        audit: None,
                    },
                    Bind::new(bind.portal(), REFUSED).message(),
                );
            }
        }
        Ok(())
    }

    async fn on_execute<W: AsyncWrite + Unpin>(
        &mut self,
        execute: Execute,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        if !execute.portal().is_empty() && !self.registry.has_portal(execute.portal()) {
            return self.execute_cursor(execute, upstream).await;
        }
        let treatment = self.registry.portal(execute.portal());
        let limits = &self.ctx.audit.limits;
        let audit = treatment
            .audit
            .map(|(seq, formats, record)| Tracker::new(seq, record.then_some(limits), formats));
        let Some((max, policy)) = treatment.cap else {
            self.send(
                Expect::Execute {
                    rewrite: treatment.rewrite,
                    expected: treatment.expected,
                    limit: None,
                    audit,
                },
                execute.message(),
            );
            return Ok(());
        };
        // Nothing before the next Sync is committed: hold the client's further messages
        // until the row count is known, and undo the statement if it is over the limit.
        let (tx, rx) = oneshot::channel();
        self.send(
            Expect::Execute {
                rewrite: treatment.rewrite,
                expected: treatment.expected,
                limit: Some((RowCap { max, policy }, tx)),
                audit,
            },
            execute.message(),
        );
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
    /// the gateway saw, and audited; refused, a failing Bind stands in for it.
    async fn execute_cursor<W: AsyncWrite + Unpin>(
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
            self.record_refusal(
                "execute",
                &sql,
                None,
                &Reasons::of(&Verdict::Refuse(e.clone())),
                &e,
            );
            self.send(
                Expect::Bind {
                    on_error: OnError::Replace(e),
                    audit: None,
                },
                Bind::new("", REFUSED).message(),
            );
            return Ok(());
        };
        let cursor = self.registry.cursor(&name).cloned();
        let search_path = self.search_path.clone();
        let text = format!("/* Execute of cursor \"{name}\" */ {sql}");
        let statement = Statement {
            origin: Origin::Bind { statement: &name },
            text: Some(&text),
            parsed: Ok(stmt),
            prepared: cursor.as_ref().and_then(|c| c.statement()),
            transaction: self.shared.transaction(),
            search_path: &search_path,
        };
        let (outcome, why) = self.decide(&statement, upstream).await?;
        let outcome = match outcome {
            Ok(_) => {
                let seq = self.next_seq();
                let event = statement_event(
                    &self.ctx.info,
                    Described {
                        seq,
                        origin: "execute",
                        text: &text,
                        parameters: Vec::new(),
                        facts: Some(&stmt.facts),
                        reasons: &why,
                        refusal: None,
                        max_rows: None,
                        search_path: &search_path,
                    },
                );
                let record = self.ctx.audit.recording(&why).is_some();
                let limits = &self.ctx.audit.limits;
                let tracker = Tracker::new(seq, record.then_some(limits), Arc::from(Vec::new()));
                self.audit_durable(vec![event], upstream)
                    .await?
                    .map(|()| tracker)
            }
            Err(refusal) => {
                self.record_refusal("execute", &text, Some(&stmt.facts), &why, &refusal);
                Err(refusal)
            }
        };
        match outcome {
            Ok(tracker) => self.send(
                Expect::Execute {
                    rewrite: None,
                    expected: Expected::NoWrite,
                    limit: None,
                    audit: Some(tracker),
                },
                execute.message(),
            ),
            // Binding a statement that does not exist fails where the Execute would have.
            Err(refusal) => self.send(
                Expect::Bind {
                    on_error: OnError::Replace(refusal),
                    audit: None,
                },
                Bind::new("", REFUSED).message(),
            ),
        }
        Ok(())
    }

    async fn on_parse<W: AsyncWrite + Unpin>(
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
        let search_path = self.search_path.clone();
        let mut outcome: Result<Treatment, ErrorResponse> = Ok(Treatment::default());
        for (i, s) in statements.iter().enumerate() {
            let registered = self.referenced(s);
            let statement = Statement {
                origin: Origin::Parse { name: &name },
                text: Some(&s.text),
                parsed: Ok(s),
                prepared: registered.as_ref().and_then(|p| p.statement()),
                transaction,
                search_path: &search_path,
            };
            match self.decide(&statement, upstream).await? {
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
                if name.is_empty() {
                    // Tied to the new text at once; settled once a Sync has gone out.
                    let before = self.registry.take_unnamed();
                    self.registry.prepare(&name, prepared);
                    let (tx, rx) = oneshot::channel();
                    let creates = self.registry.statement("").cloned();
                    self.unnamed.parsed(before, rx, creates);
                    self.send(
                        Expect::Parse {
                            on_error: OnError::Forward,
                            on_success: None,
                            report: Some(tx),
                        },
                        parse.message(),
                    );
                } else {
                    // A named statement exists only if the server creates it (not, say,
                    // when the name is taken): wait for its answer.
                    let (tx, rx) = oneshot::channel();
                    self.send(
                        Expect::Parse {
                            on_error: OnError::Forward,
                            on_success: None,
                            report: Some(tx),
                        },
                        parse.message(),
                    );
                    self.push(&frontend::flush());
                    self.flush(upstream).await?;
                    if rx.await.unwrap_or(false) {
                        self.registry.prepare(&name, prepared);
                    }
                }
            }
            Err(refusal) => {
                let mut report = None;
                if name.is_empty() {
                    // The stand-in fails, dropping the old statement, unless it is skipped.
                    let before = self.registry.take_unnamed();
                    let (tx, rx) = oneshot::channel();
                    self.unnamed.parsed(before, rx, None);
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

    async fn on_function_call<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Message,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let call = frontend::FunctionCall::decode(msg.clone())?;
        let arguments = call.arguments();
        let search_path = self.search_path.clone();
        let statement = Statement {
            origin: Origin::FunctionCall {
                oid: call.oid(),
                arguments: &arguments,
            },
            text: None,
            parsed: Err("a fast-path function call has no SQL text"),
            prepared: None,
            transaction: self.shared.transaction(),
            search_path: &search_path,
        };
        let (outcome, why) = self.decide(&statement, upstream).await?;
        let text = why.text.as_deref().map_or_else(
            || format!("/* fast-path function call */ function oid {}", call.oid()),
            str::to_string,
        );
        let outcome = match outcome {
            Ok(_) => {
                // A fast-path set_config moves the search path as the SQL call would.
                if let Some(facts) = &why.facts {
                    self.track_facts(facts);
                }
                let seq = self.next_seq();
                let event = statement_event(
                    &self.ctx.info,
                    Described {
                        seq,
                        origin: "function_call",
                        text: &text,
                        parameters: Vec::new(),
                        facts: None,
                        reasons: &why,
                        refusal: None,
                        max_rows: None,
                        search_path: &search_path,
                    },
                );
                self.audit_durable(vec![event], upstream)
                    .await?
                    .map(|()| seq)
            }
            Err(refusal) => {
                self.record_refusal("function_call", &text, None, &why, &refusal);
                Err(refusal)
            }
        };
        match outcome {
            Ok(seq) => self.send(
                Expect::FunctionCall {
                    on_error: OnError::Forward,
                    audit: Some(Tracker::new(seq, None, Arc::from(Vec::new()))),
                },
                &msg,
            ),
            // A failing Query answers exactly like a failed FunctionCall: an error, then
            // ReadyForQuery.
            Err(refusal) => self.send(
                Expect::FunctionCall {
                    on_error: OnError::Replace(refusal),
                    audit: None,
                },
                Query::new(REFUSED_SQL).message(),
            ),
        }
        Ok(())
    }
}
