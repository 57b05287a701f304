//! Live sessions: listed, and ended by subject (a revocation, audited with its actor).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Control;
use super::auth::Operator;

/// `GET /v1/sessions`: the live sessions.
pub(super) async fn list(State(control): State<Arc<Control>>, _: Operator) -> Response {
    Json(json!({ "sessions": control.sessions.list() })).into_response()
}

#[derive(Deserialize)]
pub(super) struct Kill {
    subject: String,
    /// Refuse the subject's new logins for this long, e.g. "1h" (default: none).
    #[serde(default, with = "humantime_serde")]
    block_for: Option<std::time::Duration>,
}

/// `POST /v1/sessions/kill`: ends a subject's sessions, and may refuse its new logins.
pub(super) async fn kill(
    State(control): State<Arc<Control>>,
    Operator { subject: actor }: Operator,
    Json(req): Json<Kill>,
) -> Response {
    let block_for = req.block_for.unwrap_or_default();
    let ended = control.sessions.revoke(&req.subject, block_for);
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
    control.audit.record(crate::audit::admin_event(
        "revocation",
        detail,
        &control.runtime.load(),
        Some(actor),
    ));
    Json(json!({ "ended": ended, "subject": req.subject })).into_response()
}
