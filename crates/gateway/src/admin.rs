//! The control port: an HTTP API for operators, authenticated with the same OIDC tokens
//! as database logins (the caller must be in one of `admin.groups`). For now it lists
//! sessions and ends a subject's sessions; a later version grows it into the full admin
//! API and console. It speaks HTTPS with the gateway's certificate whenever `[tls]` is
//! configured, since bearer tokens travel in it.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;

use crate::runtime::Runtime;
use crate::services::Services;

struct Admin {
    runtime: Arc<ArcSwap<Runtime>>,
    services: Arc<Services>,
}

/// Starts the control port; returns the address it listens on.
pub async fn start(
    address: &str,
    runtime: Arc<ArcSwap<Runtime>>,
    services: Arc<Services>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let addr = listener.local_addr()?;
    let tls = runtime.load().acceptor.is_some();
    let state = Arc::new(Admin {
        runtime: runtime.clone(),
        services,
    });
    let app = Router::new()
        .route("/healthz", get(health))
        .route("/v1/sessions", get(list))
        .route("/v1/sessions/kill", post(kill))
        .with_state(state);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        let served = if tls {
            let listener = TlsListener::start(listener, runtime);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        } else {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "the control port stopped");
        }
    });
    tracing::info!(%addr, tls, "control port listening");
    Ok(addr)
}

/// Accepts TCP connections and completes their TLS handshakes concurrently (a slow client
/// holds up nobody), with the current configuration's certificate.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    fn start(listener: tokio::net::TcpListener, runtime: Arc<ArcSwap<Runtime>>) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "control port accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(acceptor) = runtime.load().acceptor.clone() else {
                    continue;
                };
                if tx.is_closed() {
                    break;
                }
                let tx = tx.clone();
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    )
                    .await;
                    if let Ok(Ok(stream)) = handshake {
                        let _ = tx.send((stream, peer)).await;
                    }
                });
            }
        });
        TlsListener { ready, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop ended: nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The caller, if their bearer token is valid and names an admin group.
async fn authorize(admin: &Admin, headers: &HeaderMap) -> Result<String, Response> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            problem(
                StatusCode::UNAUTHORIZED,
                "send an access token: Authorization: Bearer <token>",
            )
        })?;
    let runtime = admin.runtime.load_full();
    let principal = runtime
        .verifier
        .verify(token)
        .await
        .map_err(|e| problem(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let allowed = runtime
        .config
        .admin
        .as_ref()
        .is_some_and(|a| principal.groups.iter().any(|g| a.groups.contains(g)));
    if !allowed {
        return Err(problem(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not in an admin group of this gateway",
                principal.subject
            ),
        ));
    }
    Ok(principal.subject)
}

async fn health(State(admin): State<Arc<Admin>>) -> Response {
    let audit = admin.services.audit.is_healthy();
    let status = if audit {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "audit_store_writable": audit }))).into_response()
}

async fn list(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&admin, &headers).await {
        return r;
    }
    Json(json!({ "sessions": admin.services.sessions.list() })).into_response()
}

#[derive(Deserialize)]
struct Kill {
    subject: String,
    /// Refuse the subject's new logins for this long, e.g. "1h" (default: none).
    #[serde(default, with = "humantime_serde")]
    block_for: Option<std::time::Duration>,
}

async fn kill(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Json(req): Json<Kill>,
) -> Response {
    let actor = match authorize(&admin, &headers).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let block_for = req.block_for.unwrap_or_default();
    let ended = admin.services.sessions.revoke(&req.subject, block_for);
    let detail = format!(
        "ended {ended} sessions of {}{}",
        req.subject,
        if block_for.is_zero() {
            String::new()
        } else {
            format!(
                "; new logins refused for {}",
                humantime_serde::re::humantime::format_duration(block_for)
            )
        }
    );
    tracing::warn!(%actor, subject = %req.subject, ended, "sessions revoked");
    admin.services.audit.record(crate::audit::admin_event(
        "revocation",
        detail,
        &admin.runtime.load(),
        Some(actor),
    ));
    Json(json!({ "ended": ended, "subject": req.subject })).into_response()
}
