//! Login, in named steps: admit the connection (a slot under `max_connections`), verify
//! the caller and check revocations, choose the upstream role, decide identity-changing
//! startup parameters, connect upstream, record the session's start, welcome the client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use portcullis_identity::Principal;
use portcullis_wire::Limits;
use portcullis_wire::backend::{Authentication, BackendKeyData};
use tokio::io::AsyncWriteExt;

use super::startup_settings::{check_startup_identity, split_search_path, startup_settings};
use super::{Context, Shared};
use crate::cancel::CancelEntry;
use crate::decision::{SessionId, SessionInfo};
use crate::error::StartupError;
use crate::runtime::{Role, Runtime, Target};
use crate::services::Services;
use crate::{startup, upstream};

/// Counts a session against `max_connections` until dropped.
pub(super) struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A logged-in session, ready to relay; dropping it releases its connection slot and
/// cancel key.
pub(super) struct LoggedIn {
    pub(super) upstream: upstream::Upstream,
    pub(super) ctx: Context,
    pub(super) shared: Shared,
    pub(super) limits: Limits,
    pub(super) _slot: Slot,
    pub(super) _registration: crate::cancel::CancelKeyGuard,
    pub(super) _live: crate::sessions::LiveGuard,
}

/// Who is connecting, as far as is known.
pub(super) struct Caller {
    pub(super) id: SessionId,
    pub(super) peer: SocketAddr,
    pub(super) method: startup::AuthMethod,
    /// Set once the token is verified, so refusals after that name the subject.
    pub(super) subject: Option<String>,
}

/// Verifies the caller, logs in upstream and welcomes the client. Long on purpose: it is
/// the table of contents of a login, one named step per line (admit, verify, choose the
/// role, read the startup settings, connect, record the start, welcome), and the order of
/// those steps is the point.
pub(super) async fn login(
    greeted: &mut startup::Greeted,
    runtime: &Runtime,
    services: &Arc<Services>,
    who: &mut Caller,
) -> Result<LoggedIn, StartupError> {
    let slot = admit(services, runtime.config.listen.max_connections)?;
    let target = startup::choose_target(greeted, runtime)?;
    let principal = verify(greeted, runtime, services, who).await?;
    let span = tracing::Span::current();
    span.record("subject", principal.subject.as_str());
    span.record("target", target.name.as_str());
    let role = role_for(&target, &principal)?;
    let settings = startup_settings(&greeted.startup)?;
    let search_path = settings
        .iter()
        .rev()
        .find(|(k, _)| k == "search_path")
        .map(|(_, v)| split_search_path(v))
        .unwrap_or_else(|| vec!["$user".into(), "public".into()]);
    let mut info = SessionInfo {
        id: who.id,
        subject: principal.subject.clone(),
        groups: principal.groups.clone(),
        target: target.name.clone(),
        upstream_role: role.name.clone(),
        upstream_auth: "",
        client_addr: who.peer,
        application_name: greeted.startup.get("application_name").map(str::to_owned),
        tls: greeted.tls,
    };
    check_startup_identity(&settings, &info, services.decider.as_ref(), &search_path)?;

    let limits = Limits {
        max_message: runtime.config.limits.max_message_bytes,
        ..Limits::default()
    };
    let mut upstream = upstream::connect(&target, role, &greeted.startup, limits).await?;
    info.upstream_auth = upstream.auth;
    let catalog = services.catalogs.get(&target.name);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        catalog.refresh(&target.name, &mut upstream.reader),
    )
    .await;
    let cancels = Arc::new(crate::cancel::Cancels::default());
    let (client_key, registration) = services.cancels.register(CancelEntry {
        target: target.clone(),
        upstream: portcullis_wire::startup::CancelKey {
            pid: upstream.key.pid,
            secret: upstream.key.secret.clone(),
        },
        cancels: cancels.clone(),
    });

    // The session exists only once the trail says so.
    services
        .audit
        .durable(crate::audit::session_start(&info, &principal))
        .await
        .map_err(|e| StartupError::Audit(e.to_string()))?;
    let audit = session_audit(runtime, services, &target.name);
    tracing::info!(
        role = %role.name,
        groups = ?principal.groups,
        tls = greeted.tls,
        upstream_auth = upstream.auth,
        "session started"
    );
    welcome(greeted, &upstream, &client_key).await?;

    let shared = Shared::new(&upstream.parameters);
    let live = services.sessions.register(crate::sessions::Who {
        id: who.id,
        subject: &info.subject,
        groups: &info.groups,
        target: &info.target,
        upstream_role: &info.upstream_role,
        client_addr: who.peer,
        token_expires: principal.expires_at,
    });
    let ctx = Context {
        info,
        decider: services.decider.clone(),
        cache: services.cache.clone(),
        cancels,
        search_path,
        catalog_changed: Box::new(move || catalog.changed()),
        audit,
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

/// A slot under `max_connections`, or the refusal.
fn admit(services: &Services, max: usize) -> Result<Slot, StartupError> {
    if services.active.fetch_add(1, Ordering::AcqRel) >= max {
        services.active.fetch_sub(1, Ordering::AcqRel);
        return Err(StartupError::TooManyConnections(max));
    }
    Ok(Slot(services.active.clone()))
}

/// The caller's verified identity, unless the configuration or an operator revoked it.
async fn verify(
    greeted: &mut startup::Greeted,
    runtime: &Runtime,
    services: &Services,
    who: &mut Caller,
) -> Result<Principal, StartupError> {
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
    Ok(principal)
}

/// The upstream role the caller's groups map to on the target.
fn role_for<'t>(target: &'t Target, principal: &Principal) -> Result<&'t Role, StartupError> {
    target
        .role_for(&principal.groups)
        .ok_or_else(|| StartupError::NoRole {
            target: target.name.clone(),
            groups: if principal.groups.is_empty() {
                "none".into()
            } else {
                principal.groups.join(", ")
            },
        })
}

/// What the session records of its statements' results, by the target's or the default
/// setting.
fn session_audit(
    runtime: &Runtime,
    services: &Services,
    target: &str,
) -> crate::audit::SessionAudit {
    let a = &runtime.config.audit;
    let (record_default, statement_bytes, session_bytes) = (
        a.record_results,
        a.record_statement_bytes,
        a.record_session_bytes,
    );
    let record_all = runtime
        .config
        .targets
        .iter()
        .find(|t| t.name == target)
        .and_then(|t| t.record_results)
        .unwrap_or(record_default);
    crate::audit::SessionAudit {
        log: services.audit.clone(),
        record_all,
        limits: crate::audit::RecordLimits {
            statement_bytes,
            session_left: Arc::new(std::sync::atomic::AtomicI64::new(session_bytes as i64)),
        },
    }
}

/// Welcomes the client: AuthenticationOk, the server's parameters and notices, the
/// gateway's own cancel key, ReadyForQuery.
async fn welcome(
    greeted: &mut startup::Greeted,
    upstream: &upstream::Upstream,
    client_key: &portcullis_wire::startup::CancelKey,
) -> Result<(), StartupError> {
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
        .map_err(|_| StartupError::Closed)
}
