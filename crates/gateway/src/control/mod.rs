//! The control port: an HTTP API for operators, authenticated with the same OIDC tokens
//! as database logins (the caller must be in one of `admin.groups`). For now it lists
//! sessions and ends a subject's sessions; a later version grows it into the full admin
//! API and console. It speaks HTTPS with the gateway's certificate whenever `[tls]` is
//! configured, since bearer tokens travel in it.
//!
//! `auth.rs` holds who may call it (extractors), `sessions.rs` the session endpoints,
//! `approvals.rs` the approval requests, `listener.rs` the TLS listener.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::runtime::Runtime;
use crate::services::Services;

mod approvals;
mod auth;
mod listener;
mod sessions;

/// What the control port's handlers share: the configuration in force, the audit log and
/// the live sessions. Not the relay's services: the control port decides no statement.
pub struct Control {
    runtime: Arc<ArcSwap<Runtime>>,
    audit: portcullis_audit::AuditLog,
    sessions: Arc<crate::sessions::Sessions>,
    approvals: Option<Arc<crate::approvals::Approvals>>,
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
    let tls = runtime.load().control_acceptor.is_some();
    let state = Arc::new(Control {
        runtime: runtime.clone(),
        audit: services.audit.clone(),
        sessions: services.sessions.clone(),
        approvals: services.approvals.clone(),
    });
    let app = Router::new()
        .route("/healthz", get(health))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/kill", post(sessions::kill))
        .route("/v1/approvals", get(approvals::list))
        .route("/v1/approvals/{id}", get(approvals::show))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/deny", post(approvals::deny))
        .with_state(state);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        let served = if tls {
            let listener = listener::TlsListener::start(listener, runtime);
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

fn problem(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `GET /healthz`: whether the audit store takes writes (no token needed).
async fn health(State(control): State<Arc<Control>>) -> Response {
    let audit = control.audit.is_healthy();
    let status = if audit {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "audit_store_writable": audit }))).into_response()
}
