//! Client → server: every message is framed, statements are decided, and what the server
//! owes in return is queued before the message is forwarded.
//!
//! A refused statement is never forwarded. In its place the gateway sends text that fails
//! to parse, so the server itself raises an error at exactly that point in the pipeline:
//! the transaction becomes failed if one was open, the extended protocol skips to Sync,
//! and ReadyForQuery carries the server's own status. The backend swaps that error for the
//! refusal (see `queue`).

use std::borrow::Cow;
use std::sync::Arc;

use portcullis_sql::{ParsedQuery, PreparedOp};
use portcullis_wire::backend::{ErrorResponse, Severity};
use portcullis_wire::frontend::{self, Bind, Close, Describe, Execute, Parse, Query, Target};
use portcullis_wire::{Frame, FrameReader, Message, StreamError, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;

use super::outbox::Outbox;
use super::prepared::{Prepared, Registry};
use super::queue::Expect;
use super::{Context, Shared};
use crate::decision::{Origin, Rewrite, Statement, Verdict};

/// Text the server is certain to reject at parse time, with no side effects; stands in
/// for a refused statement.
const REFUSED_SQL: &[u8] = b"/* portcullis: statement refused */ PORTCULLIS_REFUSED";

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
}

pub struct Frontend<'s> {
    pub ctx: &'s Context,
    pub shared: &'s Shared,
    pub queue: UnboundedSender<Expect>,
    pub registry: Registry,
    out: Outbox,
}

fn canceled() -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "57014",
        "canceling statement due to user request",
    )
}

impl<'s> Frontend<'s> {
    pub fn new(ctx: &'s Context, shared: &'s Shared, queue: UnboundedSender<Expect>) -> Self {
        Frontend {
            ctx,
            shared,
            queue,
            registry: Registry::default(),
            out: Outbox::new(),
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
                            self.out.push(&msg);
                            self.flush(upstream).await?;
                            return Ok(FrontendEnd::Terminated);
                        }
                        self.on_message(msg, upstream).await?;
                    }
                    Frame::Stream { header, remaining } => self
                        .out
                        .stream(client, header, remaining, upstream)
                        .await
                        .map_err(|e| match e {
                            StreamError::Read(e) => FrontendError::Client(e),
                            StreamError::Write(e) => FrontendError::Upstream(e),
                        })?,
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

    async fn flush<W: AsyncWrite + Unpin>(
        &mut self,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        self.out
            .flush(upstream)
            .await
            .map_err(FrontendError::Upstream)
    }

    fn expect(&self, e: Expect) {
        // The backend owns the receiver for the session's lifetime; a send can only fail
        // when the session is already ending.
        let _ = self.queue.send(e);
    }

    fn forward(&mut self, msg: &Message) {
        self.out.push(msg);
    }

    async fn on_message<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Message,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        match msg.tag() {
            frontend::QUERY => self.on_query(Query::decode(msg)?, upstream).await,
            frontend::PARSE => self.on_parse(Parse::decode(msg)?, upstream).await,
            frontend::BIND => {
                let bind = Bind::decode(msg)?;
                self.registry.bind(bind.portal(), bind.statement());
                self.expect(Expect::Bind);
                self.forward(bind.message());
                Ok(())
            }
            frontend::DESCRIBE => {
                let d = Describe::decode(msg)?;
                let rewrite = match d.target() {
                    Target::Statement => self
                        .registry
                        .statement(d.name())
                        .and_then(|p| p.rewrite.clone()),
                    Target::Portal => self.registry.portal_rewrite(d.name()),
                };
                self.expect(Expect::Describe { rewrite });
                self.forward(d.message());
                Ok(())
            }
            frontend::EXECUTE => {
                let e = Execute::decode(msg)?;
                self.expect(Expect::Execute {
                    rewrite: self.registry.portal_rewrite(e.portal()),
                });
                self.forward(e.message());
                Ok(())
            }
            frontend::CLOSE => {
                let c = Close::decode(msg)?;
                match c.target() {
                    Target::Statement => self.registry.deallocate(c.name()),
                    Target::Portal => self.registry.close_portal(c.name()),
                }
                self.expect(Expect::Close);
                self.forward(c.message());
                Ok(())
            }
            frontend::SYNC => {
                self.expect(Expect::Sync);
                self.forward(&msg);
                Ok(())
            }
            frontend::FLUSH | frontend::COPY_DATA => {
                self.forward(&msg);
                Ok(())
            }
            frontend::COPY_DONE | frontend::COPY_FAIL => {
                self.expect(Expect::CopyEnd);
                self.forward(&msg);
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
    ) -> Result<Result<Option<Arc<dyn Rewrite>>, ErrorResponse>, FrontendError> {
        let mut verdict = self.ctx.decider.decide(&self.ctx.info, statement);
        loop {
            match verdict {
                Verdict::Forward(rewrite) => return Ok(Ok(rewrite)),
                Verdict::Refuse(error) => return Ok(Err(error)),
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
    fn analyse<'b>(&self, bytes: &'b [u8]) -> (Option<Cow<'b, str>>, Arc<ParsedQuery>) {
        let encoding = self.shared.encoding();
        match encoding.decode(bytes) {
            Some(text) => {
                let parsed = self.ctx.cache.get(&text, self.shared.lexer());
                (Some(text), parsed)
            }
            None => (
                None,
                Arc::new(ParsedQuery {
                    result: Err("statement text is not valid in the client encoding".into()),
                }),
            ),
        }
    }

    async fn on_query<W: AsyncWrite + Unpin>(
        &mut self,
        query: Query,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let (text, parsed) = self.analyse(query.sql());
        let transaction = self.shared.transaction();
        let mut rewrites = Vec::new();
        let mut refusal = None;
        match &parsed.result {
            Ok(statements) => {
                let count = statements.len();
                // Statements prepared earlier in this same query are visible to later
                // EXECUTEs in it, as they will be on the server.
                let mut local: Vec<(String, usize)> = Vec::new();
                for (index, s) in statements.iter().enumerate() {
                    let mut earlier = None;
                    let mut registered: Option<Arc<Prepared>> = None;
                    match s.prepared_op() {
                        Some(PreparedOp::Execute(name)) => {
                            match local.iter().rev().find(|(n, _)| *n == name) {
                                Some((_, i)) => earlier = statements.get(*i),
                                None => registered = self.registry.statement(&name).cloned(),
                            }
                        }
                        Some(PreparedOp::Prepare(name)) => local.push((name, index)),
                        _ => {}
                    }
                    let prepared =
                        earlier.or_else(|| registered.as_ref().and_then(|p| p.statement()));
                    let statement = Statement {
                        origin: Origin::Query { index, count },
                        text: Some(&s.text),
                        parsed: Ok(s),
                        prepared,
                        transaction,
                    };
                    match self.decide(&statement, upstream).await? {
                        Ok(r) => rewrites.push(r),
                        Err(e) => {
                            refusal = Some(e);
                            break;
                        }
                    }
                }
            }
            Err(message) => {
                let statement = Statement {
                    origin: Origin::Query { index: 0, count: 1 },
                    text: text.as_deref(),
                    parsed: Err(message),
                    prepared: None,
                    transaction,
                };
                match self.decide(&statement, upstream).await? {
                    Ok(r) => rewrites.push(r),
                    Err(e) => refusal = Some(e),
                }
            }
        }

        if let Some(refusal) = refusal {
            self.expect(Expect::Query {
                statements: Vec::new(),
                refusal: Some(refusal),
            });
            self.forward(Query::new(REFUSED_SQL).message());
            return Ok(());
        }
        if let Ok(statements) = &parsed.result {
            for (index, s) in statements.iter().enumerate() {
                match s.prepared_op() {
                    Some(PreparedOp::Prepare(name)) => self.registry.prepare(
                        &name,
                        Prepared {
                            parsed: parsed.clone(),
                            index,
                            rewrite: rewrites.get(index).cloned().flatten(),
                        },
                    ),
                    Some(PreparedOp::Deallocate(Some(name))) => self.registry.deallocate(&name),
                    Some(PreparedOp::Deallocate(None)) => self.registry.deallocate_all(),
                    _ => {}
                }
            }
        }
        self.expect(Expect::Query {
            statements: rewrites,
            refusal: None,
        });
        self.forward(query.message());
        Ok(())
    }

    async fn on_parse<W: AsyncWrite + Unpin>(
        &mut self,
        parse: Parse,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let (text, parsed) = self.analyse(parse.sql());
        let transaction = self.shared.transaction();
        let name = parse.name().to_string();
        let mut outcome: Result<Option<Arc<dyn Rewrite>>, ErrorResponse> = Ok(None);
        match &parsed.result {
            Ok(statements) => {
                for (i, s) in statements.iter().enumerate() {
                    let statement = Statement {
                        origin: Origin::Parse { name: &name },
                        text: Some(&s.text),
                        parsed: Ok(s),
                        prepared: None,
                        transaction,
                    };
                    match self.decide(&statement, upstream).await? {
                        Ok(r) if i == 0 => outcome = Ok(r),
                        Ok(_) => {}
                        Err(e) => {
                            outcome = Err(e);
                            break;
                        }
                    }
                }
            }
            Err(message) => {
                let statement = Statement {
                    origin: Origin::Parse { name: &name },
                    text: text.as_deref(),
                    parsed: Err(message),
                    prepared: None,
                    transaction,
                };
                outcome = self.decide(&statement, upstream).await?;
            }
        }
        match outcome {
            Ok(rewrite) => {
                self.registry.prepare(
                    &name,
                    Prepared {
                        parsed,
                        index: 0,
                        rewrite,
                    },
                );
                self.expect(Expect::Parse { refusal: None });
                self.forward(parse.message());
            }
            Err(refusal) => {
                self.expect(Expect::Parse {
                    refusal: Some(refusal),
                });
                self.forward(Parse::new(&name, REFUSED_SQL, &[]).message());
            }
        }
        Ok(())
    }

    async fn on_function_call<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Message,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        let oid = portcullis_wire::Reader::new(msg.body(), "FunctionCall").u32()?;
        let statement = Statement {
            origin: Origin::FunctionCall { oid },
            text: None,
            parsed: Err("a fast-path function call has no SQL text"),
            prepared: None,
            transaction: self.shared.transaction(),
        };
        match self.decide(&statement, upstream).await? {
            Ok(_) => {
                self.expect(Expect::FunctionCall { refusal: None });
                self.forward(&msg);
            }
            Err(refusal) => {
                // A failing Query answers exactly like a failed FunctionCall: an error,
                // then ReadyForQuery.
                self.expect(Expect::FunctionCall {
                    refusal: Some(refusal),
                });
                self.forward(Query::new(REFUSED_SQL).message());
            }
        }
        Ok(())
    }
}
