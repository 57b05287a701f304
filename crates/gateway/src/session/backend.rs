//! Server → client: every message is attributed to the statement it answers, rewritten when
//! that statement asked for it, and forwarded in batches. Rows nobody rewrites and COPY
//! data are streamed without being buffered whole.

use portcullis_wire::backend::{self, ErrorResponse, ParameterStatus, ReadyForQuery, Severity};
use portcullis_wire::{Frame, FrameReader, StreamError, WireError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc::UnboundedReceiver;

use super::outbox::Outbox;
use super::queue::{Action, Attribution, Expect, Stop};
use super::{Context, Shared};

/// How the server side ended.
#[derive(Debug)]
pub enum BackendEnd {
    /// The server closed the connection after a FATAL error it sent (already forwarded).
    ClosedAfterFatal,
    /// The server closed the connection without saying why.
    Closed,
    /// The gateway ended the session (an expired token, an operator's revocation) after
    /// sending the client everything it was owed and a FATAL error saying why.
    Ended(String),
}

/// Why the server side failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{0}")]
    Upstream(#[from] WireError),
    #[error("client write failed: {0}")]
    Client(std::io::Error),
}

pub struct Backend<'s> {
    ctx: &'s Context,
    shared: &'s Shared,
    queue: UnboundedReceiver<Expect>,
    attribution: Attribution,
    pub out: Outbox,
}

impl<'s> Backend<'s> {
    pub fn new(ctx: &'s Context, shared: &'s Shared, queue: UnboundedReceiver<Expect>) -> Self {
        Backend {
            ctx,
            shared,
            queue,
            attribution: Attribution::default(),
            out: Outbox::new(),
        }
    }

    /// Moves what the frontend queued into the attribution state. Entries are queued
    /// before their message is forwarded, so every answer finds its entry here.
    fn absorb(&mut self) {
        while let Ok(e) = self.queue.try_recv() {
            self.take(e);
        }
    }

    fn take(&mut self, e: Expect) {
        match e {
            Expect::Notice(m) => self.out.push(&m),
            e => self.attribution.push(e),
        }
    }

    /// The pump. Long on purpose: one loop with its one `select!`, whose branches (the
    /// server's bytes, the frontend's entries, a revocation) share the batching and the
    /// end checks; split, the order of those checks would hide across functions.
    pub async fn run<R, W>(
        &mut self,
        server: &mut FrameReader<R>,
        client: &mut W,
    ) -> Result<BackendEnd, BackendError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            loop {
                self.absorb();
                let stream_rows = self.attribution.may_stream();
                let frame = server.try_next(|tag| {
                    (tag == backend::COPY_DATA || tag == backend::DATA_ROW) && stream_rows
                })?;
                let Some(frame) = frame else { break };
                match frame {
                    Frame::Stream { header, remaining } => self
                        .out
                        .stream(server, header, remaining, client)
                        .await
                        .map_err(|e| match e {
                            StreamError::Read(e) => BackendError::Upstream(e),
                            StreamError::Write(e) => BackendError::Client(e),
                        })?,
                    Frame::Message(msg) => {
                        match msg.tag() {
                            backend::PARAMETER_STATUS => {
                                if let Ok(p) = ParameterStatus::decode(&msg) {
                                    self.shared.parameter(&p.name, &p.value);
                                }
                            }
                            backend::READY_FOR_QUERY => {
                                if let Ok(r) = ReadyForQuery::decode(&msg) {
                                    self.shared.set_transaction(r.status);
                                }
                            }
                            _ => {}
                        }
                        match self.attribution.on_message(&msg) {
                            Action::Forward => self.out.push(&msg),
                            Action::Replace(m) => self.out.push(&m),
                            Action::Prepend(m) => {
                                self.out.push(&m);
                                self.out.push(&msg);
                            }
                            Action::Swallow => {}
                        }
                        self.shared.readies.publish(self.attribution.readies);
                        self.ctx.cancels.answered(self.attribution.readies);
                        if let Some((stop, seq)) = self.attribution.tripped.take() {
                            return self.stop(stop, seq, client).await;
                        }
                        for f in self.attribution.finished.drain(..) {
                            self.ctx.audit.log.record(f.into_event(&self.ctx.info));
                        }
                    }
                }
                if self.out.is_full() {
                    self.flush(client).await?;
                }
                if let Some(end) = self.end_if_due(client).await? {
                    return Ok(end);
                }
            }
            self.flush(client).await?;
            if let Some(end) = self.end_if_due(client).await? {
                return Ok(end);
            }
            // Wait for the server, or for the frontend: a barrier queued while the server
            // has nothing to say must still be answered.
            tokio::select! {
                more = server.fill() => {
                    if !more? {
                        return Ok(if self.attribution.fatal {
                            BackendEnd::ClosedAfterFatal
                        } else {
                            BackendEnd::Closed
                        });
                    }
                }
                Some(expect) = self.queue.recv(), if !self.queue.is_closed() => self.take(expect),
                _ = self.ctx.revoked.notified() => {
                    // Between messages: what the client has is whole.
                    let e = portcullis_wire::backend::ErrorResponse::new(
                        portcullis_wire::backend::Severity::Fatal,
                        "57P01",
                        format!(
                            "terminating connection: an administrator revoked access for {}",
                            self.ctx.info.subject
                        ),
                    );
                    return self.end_with(&e, client).await;
                }
            }
        }
    }

    /// Ends the session when the queue says so and everything before the end is answered.
    async fn end_if_due<W: AsyncWrite + Unpin>(
        &mut self,
        client: &mut W,
    ) -> Result<Option<BackendEnd>, BackendError> {
        self.absorb();
        match self.attribution.ending().cloned() {
            Some(e) => self.end_with(&e, client).await.map(Some),
            None => Ok(None),
        }
    }

    /// The server's answer contradicts the gateway's decision: log it loudly, record a
    /// security event, and end the session (what is not committed yet is rolled back when
    /// the upstream connection closes).
    async fn stop<W: AsyncWrite + Unpin>(
        &mut self,
        stop: Stop,
        seq: Option<u64>,
        client: &mut W,
    ) -> Result<BackendEnd, BackendError> {
        let why = match stop {
            Stop::Tripped(why) => why,
            Stop::Unrewritable(e) => {
                tracing::error!(
                    session = %self.ctx.info.id,
                    subject = %self.ctx.info.subject,
                    statement = ?seq,
                    why = %e.message(),
                    "a result policy rewrites could not be rewritten; ending the session"
                );
                self.ctx.audit.log.record(crate::audit::security_event(
                    &self.ctx.info,
                    seq,
                    "rewrite",
                    e.message(),
                ));
                let fatal = ErrorResponse::new(
                    Severity::Fatal,
                    e.code(),
                    format!("terminating connection: {}", e.message()),
                );
                return self.end_with(&fatal, client).await;
            }
        };
        let why = why.as_str();
        tracing::error!(
            session = %self.ctx.info.id,
            subject = %self.ctx.info.subject,
            statement = ?seq,
            %why,
            "tripwire: the server's answer contradicts what the gateway decided"
        );
        self.ctx.audit.log.record(crate::audit::security_event(
            &self.ctx.info,
            seq,
            "tripwire",
            why,
        ));
        self.end_with(&super::tripwire::fatal(why), client).await
    }

    async fn end_with<W: AsyncWrite + Unpin>(
        &mut self,
        error: &portcullis_wire::backend::ErrorResponse,
        client: &mut W,
    ) -> Result<BackendEnd, BackendError> {
        self.out.push(&error.to_message());
        self.flush(client).await?;
        Ok(BackendEnd::Ended(error.message().to_string()))
    }

    async fn flush<W: AsyncWrite + Unpin>(&mut self, client: &mut W) -> Result<(), BackendError> {
        self.out.flush(client).await.map_err(BackendError::Client)
    }
}
