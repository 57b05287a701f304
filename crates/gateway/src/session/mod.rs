//! A client session from accept to close: startup, login, then the relay's two pumps.
//!
//! The pumps run concurrently on the session's task, one per direction, so neither side
//! can deadlock the other while both are writing. They share only the expected-response
//! queue (a channel) and a few session settings the server reports (atomics).

mod backend;
mod frontend;
mod outbox;
mod prepared;
mod queue;
mod settled;
mod tripwire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use portcullis_sql::{ClientEncoding, LexerOptions, ParseCache};
use portcullis_wire::backend::{
    Authentication, BackendKeyData, ErrorResponse, Severity, TransactionStatus,
};
use portcullis_wire::{FrameReader, Limits};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::cancel::{CancelEntry, CancelRegistry};
use crate::catalog::Catalogs;
use crate::decision::{Decider, SessionId, SessionInfo};
use crate::error::StartupError;
use crate::runtime::Runtime;
use crate::{startup, upstream};

pub use backend::{BackendEnd, BackendError};
pub use frontend::{FrontendEnd, FrontendError};

/// What a session needs from the gateway.
pub struct Services {
    pub decider: Arc<dyn Decider>,
    pub audit: portcullis_audit::AuditLog,
    pub cache: Arc<ParseCache>,
    pub cancels: Arc<CancelRegistry>,
    pub active: Arc<std::sync::atomic::AtomicUsize>,
    pub catalogs: Arc<Catalogs>,
    pub sessions: Arc<crate::sessions::Sessions>,
    /// The clock live sessions check their token's expiry against.
    pub clock: Arc<dyn portcullis_policy::Clock>,
}

/// Per-session context shared by both pumps.
pub struct Context {
    pub info: SessionInfo,
    pub decider: Arc<dyn Decider>,
    pub cache: Arc<ParseCache>,
    pub hold: Arc<Notify>,
    /// The search path the session started with.
    pub search_path: Vec<String>,
    /// Called when a statement that changes the catalog is forwarded.
    pub catalog_changed: Box<dyn Fn() + Send + Sync>,
    pub audit: crate::audit::SessionAudit,
    /// Notified when an operator revokes the session.
    pub revoked: Arc<Notify>,
    /// When the caller's token expires, and how long the session may outlive it, by
    /// `clock`.
    pub expires_at: jiff::Timestamp,
    pub expiry_grace: std::time::Duration,
    pub clock: Arc<dyn portcullis_policy::Clock>,
}

/// Session settings the server reports and the frontend needs.
pub struct Shared {
    transaction: AtomicU8,
    standard_conforming_strings: AtomicBool,
    encoding: ArcSwap<ClientEncoding>,
    /// How far the server has answered, for `settled::Sent::known`.
    pub readies: settled::Readies,
}

impl Shared {
    fn new(parameters: &std::collections::HashMap<String, String>) -> Self {
        let s = Shared {
            transaction: AtomicU8::new(TransactionStatus::Idle.byte()),
            standard_conforming_strings: AtomicBool::new(true),
            encoding: ArcSwap::from_pointee(ClientEncoding::Utf8),
            readies: settled::Readies::default(),
        };
        for (k, v) in parameters {
            s.parameter(k, v);
        }
        s
    }

    fn parameter(&self, name: &str, value: &str) {
        match name {
            "client_encoding" => self
                .encoding
                .store(Arc::new(ClientEncoding::from_name(value))),
            "standard_conforming_strings" => self
                .standard_conforming_strings
                .store(value.eq_ignore_ascii_case("on"), Ordering::Relaxed),
            _ => {}
        }
    }

    fn set_transaction(&self, status: TransactionStatus) {
        self.transaction.store(status.byte(), Ordering::Relaxed);
    }

    pub fn transaction(&self) -> TransactionStatus {
        TransactionStatus::from_byte(self.transaction.load(Ordering::Relaxed))
            .unwrap_or(TransactionStatus::Idle)
    }

    pub fn encoding(&self) -> ClientEncoding {
        **self.encoding.load()
    }

    pub fn lexer(&self) -> LexerOptions {
        LexerOptions {
            standard_conforming_strings: self.standard_conforming_strings.load(Ordering::Relaxed),
        }
    }
}

/// Counts a session against `max_connections` until dropped.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

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
                audit.record(portcullis_audit::Event::SessionEnd(
                    portcullis_audit::SessionEnd {
                        session: info.id.to_string(),
                        subject: info.subject,
                        target: info.target,
                        reason: ended.reason,
                        duration_ms,
                        bytes_from_client: ended.bytes_from_client,
                        bytes_to_client: ended.bytes_to_client,
                        statements: ended.statements,
                    },
                ));
            }
            Err(e) => {
                tracing::info!(code = e.sqlstate(), error = %e, "connection refused");
                if e.is_audited() {
                    services.audit.record(portcullis_audit::Event::AuthFailure(
                        portcullis_audit::AuthFailure {
                            client_addr: peer.to_string(),
                            target: greeted.startup.get("database").map(str::to_owned),
                            subject: who.subject.take(),
                            sqlstate: e.sqlstate().to_string(),
                            reason: e.to_string(),
                        },
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

/// A logged-in session, ready to relay; dropping it releases its connection slot and
/// cancel key.
struct LoggedIn {
    upstream: upstream::Upstream,
    ctx: Context,
    shared: Shared,
    limits: Limits,
    _slot: Slot,
    _registration: crate::cancel::Registration,
    _live: crate::sessions::Registration,
}

/// Who is connecting, as far as is known.
struct Caller {
    id: SessionId,
    peer: SocketAddr,
    method: startup::AuthMethod,
    /// Set once the token is verified, so refusals after that name the subject.
    subject: Option<String>,
}

/// Verifies the caller, logs in upstream and welcomes the client.
async fn login(
    greeted: &mut startup::Greeted,
    runtime: &Runtime,
    services: &Arc<Services>,
    who: &mut Caller,
) -> Result<LoggedIn, StartupError> {
    let (id, peer) = (who.id, who.peer);
    let max = runtime.config.listen.max_connections;
    if services.active.fetch_add(1, Ordering::AcqRel) >= max {
        services.active.fetch_sub(1, Ordering::AcqRel);
        return Err(StartupError::TooManyConnections(max));
    }
    let slot = Slot(services.active.clone());

    let target = startup::choose_target(greeted, runtime)?;
    // Verified against the clock sessions read, so login and session expiry are one rule.
    let now = std::time::SystemTime::try_from(services.clock.now())
        .unwrap_or_else(|_| std::time::SystemTime::now());
    let principal = startup::authenticate(greeted, runtime, who.method, now).await?;
    who.subject = Some(principal.subject.clone());
    let identity = &runtime.config.identity;
    let how = identity.deny_subjects_match;
    if identity
        .deny_subjects
        .iter()
        .any(|denied| how.matches(denied, &principal.subject))
    {
        return Err(StartupError::Revoked(format!(
            "access for {} is revoked by the gateway's configuration",
            principal.subject
        )));
    }
    if let Some(left) = services.sessions.blocked(&principal.subject, how) {
        return Err(StartupError::Revoked(format!(
            "access for {} was revoked by an administrator; new logins are refused for another {}",
            principal.subject,
            portcullis_identity::human_duration(left)
        )));
    }
    let span = tracing::Span::current();
    span.record("subject", principal.subject.as_str());
    span.record("target", target.name.as_str());
    let role = target
        .role_for(&principal.groups)
        .ok_or_else(|| StartupError::NoRole {
            target: target.name.clone(),
            groups: if principal.groups.is_empty() {
                "none".into()
            } else {
                principal.groups.join(", ")
            },
        })?;
    let settings = startup_settings(&greeted.startup);
    let search_path = settings
        .iter()
        .rev()
        .find(|(k, _)| k == "search_path")
        .map(|(_, v)| split_search_path(v))
        .unwrap_or_else(|| vec!["$user".into(), "public".into()]);
    let limits = Limits {
        max_message: runtime.config.limits.max_message_bytes,
        ..Limits::default()
    };
    let hold = Arc::new(Notify::new());
    let mut info = SessionInfo {
        id,
        subject: principal.subject.clone(),
        groups: principal.groups.clone(),
        target: target.name.clone(),
        upstream_role: role.name.clone(),
        upstream_auth: "",
        client_addr: peer,
        application_name: greeted.startup.get("application_name").map(str::to_owned),
        tls: greeted.tls,
    };
    check_startup_identity(&settings, &info, services.decider.as_ref(), &search_path)?;
    let mut upstream = upstream::connect(&target, role, &greeted.startup, limits).await?;
    info.upstream_auth = upstream.auth;
    let catalog = services.catalogs.get(&target.name);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        catalog.refresh(&target.name, &mut upstream.reader),
    )
    .await;

    let (client_key, registration) = services.cancels.register(CancelEntry {
        target: target.clone(),
        upstream: portcullis_wire::startup::CancelKey {
            pid: upstream.key.pid,
            secret: upstream.key.secret.clone(),
        },
        hold: hold.clone(),
    });
    // The session exists only once the trail says so.
    let start = portcullis_audit::Event::SessionStart(portcullis_audit::SessionStart {
        session: info.id.to_string(),
        subject: info.subject.clone(),
        groups: info.groups.clone(),
        client_addr: peer.to_string(),
        tls: info.tls,
        application_name: info.application_name.clone(),
        target: info.target.clone(),
        upstream_role: info.upstream_role.clone(),
        issuer: principal.issuer.clone(),
        token_expires: jiff::Timestamp::try_from(principal.expires_at)
            .ok()
            .map(|t| t.to_string()),
    });
    services
        .audit
        .durable(start)
        .await
        .map_err(|e| StartupError::Audit(e.to_string()))?;
    // The configuration always has an [audit] section (it does not load without one).
    let (record_default, statement_bytes, session_bytes) = match &runtime.config.audit {
        Some(a) => (
            a.record_results,
            a.record_statement_bytes,
            a.record_session_bytes,
        ),
        None => (false, 0, 0),
    };
    let record_all = runtime
        .config
        .targets
        .iter()
        .find(|t| t.name == target.name)
        .and_then(|t| t.record_results)
        .unwrap_or(record_default);
    let record_limits = crate::audit::RecordLimits {
        statement_bytes,
        session_left: Arc::new(std::sync::atomic::AtomicI64::new(session_bytes as i64)),
    };
    tracing::info!(
        role = %role.name,
        groups = ?principal.groups,
        tls = greeted.tls,
        upstream_auth = upstream.auth,
        "session started"
    );

    // Welcome: AuthenticationOk, the server's parameters and notices, our cancel key.
    let mut welcome = Vec::with_capacity(1024);
    welcome.extend_from_slice(Authentication::Ok.to_message().as_bytes());
    for m in &upstream.startup_messages {
        welcome.extend_from_slice(m.as_bytes());
    }
    welcome.extend_from_slice(
        BackendKeyData {
            pid: client_key.pid,
            secret: client_key.secret.clone(),
        }
        .to_message()
        .as_bytes(),
    );
    welcome.extend_from_slice(upstream.ready.as_bytes());
    let client_stream = greeted.reader.get_mut();
    client_stream
        .write_all(&welcome)
        .await
        .map_err(|_| StartupError::Closed)?;
    client_stream
        .flush()
        .await
        .map_err(|_| StartupError::Closed)?;

    let shared = Shared::new(&upstream.parameters);
    let live = services.sessions.register(crate::sessions::Who {
        id,
        subject: &info.subject,
        groups: &info.groups,
        target: &info.target,
        upstream_role: &info.upstream_role,
        client_addr: peer,
        token_expires: principal.expires_at,
    });
    let ctx = Context {
        info,
        decider: services.decider.clone(),
        cache: services.cache.clone(),
        hold,
        search_path,
        catalog_changed: Box::new(move || catalog.changed()),
        audit: crate::audit::SessionAudit {
            log: services.audit.clone(),
            record_all,
            limits: record_limits,
        },
        revoked: live.end.clone(),
        // The instant the login check used (exp plus leeway); the frontend adds the grace.
        // The verifier caps it at the year 9999, which every timestamp type holds.
        expires_at: jiff::Timestamp::try_from(principal.valid_until)
            .unwrap_or(jiff::Timestamp::MIN),
        expiry_grace: runtime.config.identity.expiry_grace,
        clock: services.clock.clone(),
    };
    Ok(LoggedIn {
        upstream,
        ctx,
        shared,
        limits,
        _slot: slot,
        _registration: registration,
        _live: live,
    })
}

/// How a relayed session ended, for its audit record.
struct Ended {
    reason: String,
    statements: u64,
    bytes_from_client: u64,
    bytes_to_client: u64,
}

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

/// Run-time settings a startup packet asks for: its parameters (other than the protocol's
/// own) and the `-c name=value` / `--name=value` switches in `options`, in order.
fn startup_settings(startup: &portcullis_wire::startup::StartupMessage) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in &startup.params {
        let value = String::from_utf8_lossy(value).into_owned();
        match name.as_str() {
            "user" | "database" | "replication" => {}
            "options" => out.extend(parse_options(&value)),
            n if n.starts_with("_pq_.") => {}
            n => out.push((n.to_ascii_lowercase(), value)),
        }
    }
    out
}

/// Splits `options` the way the server does: on whitespace, with backslash escapes.
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let setting = if w == "-c" {
            i += 1;
            words.get(i).cloned()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("--").map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((
                name.replace('-', "_").to_ascii_lowercase(),
                value.to_string(),
            ));
        }
        i += 1;
    }
    out
}

fn split_search_path(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A startup packet may set `role` or `session_authorization` and so change who the
/// session acts as before any statement is seen: decide that like `SET ROLE`.
fn check_startup_identity(
    settings: &[(String, String)],
    info: &SessionInfo,
    decider: &dyn Decider,
    search_path: &[String],
) -> Result<(), StartupError> {
    use portcullis_sql::analysis::{Facts, Kind, SessionChange};
    let mut facts = Facts::new(Kind::SetSession, "StartupMessage");
    for (name, value) in settings {
        match name.as_str() {
            "role" => facts.session.push(SessionChange::Role(Some(value.clone()))),
            "session_authorization" => facts
                .session
                .push(SessionChange::SessionAuthorization(Some(value.clone()))),
            _ => {}
        }
    }
    if facts.session.is_empty() {
        return Ok(());
    }
    let text = settings
        .iter()
        .filter(|(n, _)| n == "role" || n == "session_authorization")
        .map(|(n, v)| format!("SET {n} = '{v}' (startup parameter)"))
        .collect::<Vec<_>>()
        .join("; ");
    let statement = portcullis_sql::ParsedStatement::synthetic(text.clone(), facts);
    let verdict = decider.decide(
        info,
        &crate::decision::Statement {
            origin: crate::decision::Origin::Startup,
            text: Some(&text),
            parsed: Ok(&statement),
            prepared: None,
            transaction: TransactionStatus::Idle,
            search_path,
        },
    );
    match verdict {
        crate::decision::Verdict::Refuse(e) => Err(StartupError::Refused(e.message().to_string())),
        crate::decision::Verdict::Hold(_) => Err(StartupError::Refused(
            "a startup parameter that changes the session's identity needs approval, which cannot wait at login".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_like_the_server_does() {
        assert_eq!(
            parse_options(r"-c role=admin --search-path=a,b -csession_authorization=x -c a\ b=c"),
            vec![
                ("role".to_string(), "admin".to_string()),
                ("search_path".to_string(), "a,b".to_string()),
                ("session_authorization".to_string(), "x".to_string()),
                ("a b".to_string(), "c".to_string()),
            ]
        );
        assert_eq!(
            split_search_path("\"$user\", public"),
            vec!["$user", "public"]
        );
    }
}
