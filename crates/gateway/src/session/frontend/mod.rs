//! Client → server: every message is framed, statements are decided, and what the server
//! owes in return is queued before the message is forwarded. This file holds the loop and
//! the dispatch by message; each family of messages has its own file:
//!
//! - `query.rs`: simple Query; `extended.rs`: Parse, Bind, Describe, Close; `execute.rs`:
//!   Execute;
//!   `function_call.rs`: fast-path FunctionCall; `hold.rs`: waiting out held statements;
//! - `decide.rs`: one statement decided and its audit records; `plan.rs`: decided
//!   statements → what the server is sent and what the queue expects (pure, tested in
//!   `tests.rs`); `lexer.rs`: the settings the server reads text with; `refusal.rs`:
//!   refusal by substitution and probes; `row_limit.rs`: statements run under a row limit.
//!
//! A refused statement is never forwarded. In its place the gateway sends text that fails
//! to parse, so the server itself raises an error at exactly that point in the pipeline:
//! the transaction becomes failed if one was open, the extended protocol skips to Sync,
//! and ReadyForQuery carries the server's own status. The backend swaps that error for the
//! refusal (see `queue`).

use portcullis_wire::backend::{ErrorResponse, Severity, TransactionStatus};
use portcullis_wire::frontend::{self, Bind, Close, Describe, Execute, Parse, Query};
use portcullis_wire::{Frame, FrameReader, Message, StreamError, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedSender;

use super::context::HoldWatch;
use super::outbox::Outbox;
use super::prepared::{Pending, Registry};
use super::queue::Expect;
use super::settled::Sent;
use super::{Context, Shared};

mod decide;
mod execute;
mod extended;
mod function_call;
mod hold;
mod lexer;
mod plan;
mod query;
mod refusal;
mod row_limit;
#[cfg(test)]
mod tests;

/// How long a cancel that finds the session idle waits for the statement it is for.
const CANCEL_REACH: std::time::Duration = std::time::Duration::from_millis(100);

/// While a statement is held the client's socket is read, up to this much, to notice a
/// disconnect; what it sends meanwhile is handled after the hold.
const HELD_READ_LIMIT: usize = 1 << 20;

/// Runs the handling of one message. While a statement of it is held the client's socket
/// is read too, so a disconnect ends the wait: the work is dropped (which withdraws the
/// hold) and `false` returned.
async fn watched<R: AsyncRead + Unpin>(
    work: impl std::future::Future<Output = Result<(), FrontendError>>,
    client: &mut FrameReader<R>,
    watch: &HoldWatch,
) -> Result<bool, FrontendError> {
    tokio::pin!(work);
    loop {
        let held = watch.is_held();
        if held && client.buffered() >= HELD_READ_LIMIT {
            // Unread, a disconnect would go unseen and the request could be approved for
            // a client that is gone: the wait ends instead.
            watch.overflow();
        }
        let held = held && client.buffered() < HELD_READ_LIMIT;
        tokio::select! {
            r = &mut work => return r.map(|()| true),
            () = watch.changed.notified() => {}
            more = client.fill(), if held => match more {
                Ok(true) => {}
                Ok(false) => {
                    watch.client_gone();
                    return Ok(false);
                }
                // A reset (the client closed with our notice unread) is a disconnect too.
                Err(e) => {
                    watch.client_gone();
                    return Err(e.into());
                }
            },
        }
    }
}

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
    /// Parses and Closes of statements the server may have refused or skipped.
    pending: Pending,
    /// Cancels counted when the client's bytes being handled now had arrived: one after
    /// that is for them too.
    cancels_seen: u64,
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
            pending: Pending::default(),
            // A cancel before anything was read is for the first statements.
            cancels_seen: 0,
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
                        let watch = &self.shared.held;
                        if !watched(self.on_message(msg, upstream), client, watch).await? {
                            return Ok(FrontendEnd::ClientClosed);
                        }
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
            if !self.fill(client).await? {
                return Ok(FrontendEnd::ClientClosed);
            }
        }
    }

    /// Waits for more of the client's bytes. A cancel that arrives meanwhile is for bytes
    /// on their way (the client sent a statement, then the cancel, and the statement is
    /// still in the socket, or not yet seen by the runtime), or for nothing (the statement
    /// it was for had ended): one that finds no bytes within `CANCEL_REACH` is ignored, as
    /// the server ignores a cancel that finds it idle.
    async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        client: &mut FrameReader<R>,
    ) -> Result<bool, FrontendError> {
        let cancels = &self.ctx.cancels;
        // Cancels so far were for what the server was sent; before anything was sent, only
        // for what is still to be read.
        let mut seen = if self.out.written == 0 {
            self.cancels_seen
        } else {
            cancels.count()
        };
        let filled = loop {
            tokio::select! {
                biased;
                r = client.fill() => break r?,
                () = cancels.after(seen) => {
                    // For what the server was running: not for what comes next.
                    if !cancels.last_found_idle() {
                        seen = cancels.count();
                        continue;
                    }
                    match tokio::time::timeout(CANCEL_REACH, client.fill()).await {
                        Ok(r) => break r?,
                        Err(_) => seen = cancels.count(),
                    }
                }
            }
        };
        // Cancels after `seen` are for these bytes, unless the last found the server busy
        // (it was for what the server ran).
        if !cancels.last_found_idle() {
            seen = cancels.count();
        }
        self.cancels_seen = seen;
        Ok(filled)
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
        self.ctx.cancels.sent(self.settled.readies());
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

    async fn on_message<W: AsyncWrite + Unpin>(
        &mut self,
        msg: Message,
        upstream: &mut W,
    ) -> Result<(), FrontendError> {
        if matches!(
            msg.tag(),
            frontend::QUERY
                | frontend::PARSE
                | frontend::BIND
                | frontend::DESCRIBE
                | frontend::CLOSE
        ) {
            self.settle_statements(upstream).await?;
        }
        match msg.tag() {
            frontend::QUERY => self.on_query(Query::decode(msg)?, upstream).await,
            frontend::PARSE => {
                let p = Parse::decode(msg)?;
                if self.names_as_sent(&[p.name()], upstream).await? {
                    self.on_parse(p, upstream).await?;
                }
                Ok(())
            }
            frontend::BIND => {
                let b = Bind::decode(msg)?;
                if self
                    .names_as_sent(&[b.portal(), b.statement()], upstream)
                    .await?
                {
                    self.on_bind(b, upstream).await?;
                }
                Ok(())
            }
            frontend::DESCRIBE => {
                let d = Describe::decode(msg)?;
                if self.names_as_sent(&[d.name()], upstream).await? {
                    self.on_describe(d)?;
                }
                Ok(())
            }
            frontend::EXECUTE => {
                let e = Execute::decode(msg)?;
                if self.names_as_sent(&[e.portal()], upstream).await? {
                    self.on_execute(e, upstream).await?;
                }
                Ok(())
            }
            frontend::CLOSE => {
                let c = Close::decode(msg)?;
                if self.names_as_sent(&[c.name()], upstream).await? {
                    self.on_close(c)?;
                }
                Ok(())
            }
            frontend::SYNC => {
                self.pending.synced();
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
}
