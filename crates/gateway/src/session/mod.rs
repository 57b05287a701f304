//! A client session from accept to close: startup, login, then the relay's two pumps.
//!
//! The pumps run concurrently on the session's task, one per direction, so neither side
//! can deadlock the other while both are writing. They share only the expected-response
//! queue (a channel) and a few session settings the server reports (atomics).

mod backend;
mod context;
mod frontend;
mod login;
mod outbox;
mod portals;
mod prepared;
mod queue;
mod settled;
mod startup_settings;
mod tripwire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use portcullis_wire::FrameReader;
use portcullis_wire::backend::{ErrorResponse, Severity};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

use crate::audit::Ended;
use crate::decision::SessionId;
use crate::error::StartupError;
use crate::runtime::Runtime;
use crate::startup;

use crate::services::Services;
pub use backend::{BackendEnd, BackendError};
pub use context::{Context, Shared};
pub use frontend::{FrontendEnd, FrontendError};
use login::{Caller, LoggedIn, login};

/// Serves one client connection to the end.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    runtime: Arc<Runtime>,
    services: Arc<Services>,
    id: SessionId,
    method: startup::AuthMethod,
) {
    let span = tracing::info_span!(
        "session",
        id = %id,
        peer = %peer,
        subject = tracing::field::Empty,
        target = tracing::field::Empty
    );
    async move {
        let _ = tcp.set_nodelay(true);
        let greeted = match startup::greet(tcp, &runtime, &services.cancels, peer).await {
            Ok(Some(g)) => g,
            Ok(None) => return,
            Err(e) => {
                tracing::info!(error = %e, "startup failed");
                return;
            }
        };
        let mut greeted = greeted;
        let mut who = Caller {
            id,
            peer,
            method,
            subject: None,
        };
        match login(&mut greeted, &runtime, &services, &mut who).await {
            Ok(session) => {
                let started = Instant::now();
                let audit = session.ctx.audit.log.clone();
                let info = session.ctx.info.clone();
                let ended = relay(greeted, session).await;
                let duration_ms = started.elapsed().as_millis() as u64;
                tracing::info!(duration_ms, "session ended");
                audit.record(crate::audit::session_end(&info, ended, duration_ms));
            }
            Err(e) => {
                tracing::info!(code = e.sqlstate(), error = %e, "connection refused");
                if e.is_audited() {
                    services.audit.record(crate::audit::auth_failure(
                        peer,
                        greeted.startup.get("database").map(str::to_owned),
                        who.subject.take(),
                        &e,
                    ));
                }
                if e.can_reply() {
                    let stream = greeted.reader.get_mut();
                    let _ = stream
                        .write_all(e.to_response().to_message().as_bytes())
                        .await;
                    let _ = stream.flush().await;
                    let _ = stream.shutdown().await;
                    if matches!(
                        e,
                        StartupError::Auth(portcullis_identity::AuthError::TokenTooLarge { .. })
                    ) {
                        discard_input(stream, runtime.config.listen.startup_timeout).await;
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Reads and drops what a refused client is still sending (the rest of a token too large
/// to read), until it closes, for at most `timeout` and a few MiB. Closing with its bytes
/// unread would reset the connection, and the client could lose the refusal with it.
async fn discard_input(stream: &mut crate::stream::Stream, timeout: std::time::Duration) {
    use tokio::io::AsyncReadExt;
    const MAX_DISCARD: usize = 8 << 20;
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = MAX_DISCARD;
    let _ = tokio::time::timeout(timeout, async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Runs both pumps to the end and says how the session ended. Long on purpose: the
/// streams are split, the pumps built and raced, and each way they can end is answered
/// (a Terminate upstream, a FATAL to the client) in one place, in order.
async fn relay(greeted: startup::Greeted, session: LoggedIn) -> Ended {
    let LoggedIn {
        upstream,
        ctx,
        shared,
        limits,
        _slot,
        _registration,
        _live,
    } = session;
    let (ctx, shared) = (&ctx, &shared);
    let (client_stream, client_buf) = greeted.reader.into_parts();
    let (client_read, mut client_write) = tokio::io::split(client_stream);
    let mut client = FrameReader::with_buffer(client_read, limits, client_buf);

    let (server_stream, server_buf) = upstream.reader.into_parts();
    let (server_read, mut server_write) = tokio::io::split(server_stream);
    let mut server = FrameReader::with_buffer(server_read, limits, server_buf);

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut front = frontend::Frontend::new(ctx, shared, tx);
    let mut back = backend::Backend::new(ctx, shared, rx);

    enum End {
        Front(Result<FrontendEnd, FrontendError>),
        Back(Result<BackendEnd, BackendError>),
    }
    let end = tokio::select! {
        r = front.run(&mut client, &mut server_write) => End::Front(r),
        r = back.run(&mut server, &mut client_write) => End::Back(r),
    };
    // The client's last message was Terminate, or it closed its side: the server still
    // answers what it was sent before closing, as it would direct (a client that shut
    // down only its writing side still reads).
    if let End::Front(Ok(how)) = &end {
        if matches!(how, FrontendEnd::ClientClosed) {
            let _ = server_write
                .write_all(portcullis_wire::frontend::terminate().as_bytes())
                .await;
            let _ = server_write.flush().await;
        }
        let _ = back.run(&mut server, &mut client_write).await;
    }
    let fatal = |code: &str, message: String| {
        ErrorResponse::new(Severity::Fatal, code, message).to_message()
    };
    let reason = match &end {
        End::Front(Ok(FrontendEnd::Terminated)) => "terminated".to_string(),
        End::Front(Ok(FrontendEnd::ClientClosed)) => "client closed the connection".to_string(),
        End::Front(Err(e)) => e.to_string(),
        End::Back(Ok(BackendEnd::ClosedAfterFatal)) => "the server ended the session".to_string(),
        End::Back(Ok(BackendEnd::Closed)) => "lost the connection to the target".to_string(),
        End::Back(Ok(BackendEnd::Ended(why))) => why.clone(),
        End::Back(Err(e)) => e.to_string(),
    };
    match end {
        End::Front(Ok(reason)) => tracing::info!(?reason, "client left"),
        End::Front(Err(FrontendError::Client(portcullis_wire::WireError::Io(e)))) => {
            tracing::info!(error = %e, "client connection lost")
        }
        End::Front(Err(FrontendError::Client(portcullis_wire::WireError::UnexpectedEof))) => {
            tracing::info!("client connection lost in the middle of a message")
        }
        End::Front(Err(FrontendError::Client(e))) => {
            tracing::warn!(error = %e, "client broke the protocol");
            let _ = client_write
                .write_all(fatal("08P01", format!("invalid message from client: {e}")).as_bytes())
                .await;
        }
        End::Front(Err(FrontendError::Ended)) => {
            tracing::info!("session ended while a statement was held")
        }
        End::Front(Err(FrontendError::Upstream(e))) | End::Back(Err(BackendError::Client(e))) => {
            tracing::info!(error = %e, "connection lost")
        }
        End::Back(Ok(BackendEnd::ClosedAfterFatal)) => tracing::info!("server ended the session"),
        End::Back(Ok(BackendEnd::Ended(why))) => tracing::info!(%why, "gateway ended the session"),
        End::Back(Ok(BackendEnd::Closed)) | End::Back(Err(BackendError::Upstream(_))) => {
            tracing::warn!("lost the connection to the target");
            let _ = client_write
                .write_all(
                    fatal(
                        "08006",
                        format!("lost the connection to target \"{}\"", ctx.info.target),
                    )
                    .as_bytes(),
                )
                .await;
        }
    }
    // Tell the server we are gone so it rolls back at once rather than when TCP notices.
    let _ = server_write
        .write_all(portcullis_wire::frontend::terminate().as_bytes())
        .await;
    let _ = server_write.shutdown().await;
    let _ = client_write.flush().await;
    let _ = client_write.shutdown().await;
    Ended {
        reason,
        statements: front.seq,
        bytes_from_client: front.out.written,
        bytes_to_client: back.out.written,
    }
}
