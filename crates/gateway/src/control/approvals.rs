//! Approval requests on the control port: listed and shown to those who may decide them
//! (and to their requesters), approved or denied by an eligible member of an approving
//! group, each decision audited with its actor.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::{Control, problem};
use crate::approvals::DecideError;

fn not_configured() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "this gateway holds no statements for approval (no [approval] section)",
    )
}

fn refused(e: DecideError) -> Response {
    let status = match &e {
        DecideError::Unknown(_) => StatusCode::NOT_FOUND,
        DecideError::NotPending { .. } => StatusCode::CONFLICT,
        DecideError::OwnRequest(_) | DecideError::NotEligible { .. } => StatusCode::FORBIDDEN,
        DecideError::NoReason => StatusCode::BAD_REQUEST,
        DecideError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    problem(status, e.to_string())
}

/// `GET /v1/approvals`: the pending requests the caller may decide, and their own.
pub(super) async fn list(State(control): State<Arc<Control>>, Caller(who): Caller) -> Response {
    let Some(a) = control.approvals.as_ref() else {
        return not_configured();
    };
    match a.visible(&who) {
        Ok(list) => Json(json!({ "approvals": list })).into_response(),
        Err(e) => refused(e),
    }
}

/// `GET /v1/approvals/{id}`.
pub(super) async fn show(
    State(control): State<Arc<Control>>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Response {
    let Some(a) = control.approvals.as_ref() else {
        return not_configured();
    };
    match a.get(&id, &who) {
        Ok(r) => Json(r).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Deserialize, Default)]
pub(super) struct Decision {
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/approvals/{id}/approve`, with an optional `reason`.
pub(super) async fn approve(
    State(control): State<Arc<Control>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Response {
    decide(
        &control,
        caller,
        &id,
        true,
        body.map(|b| b.0).unwrap_or_default(),
    )
}

/// `POST /v1/approvals/{id}/deny`, with the `reason` the requester is told.
pub(super) async fn deny(
    State(control): State<Arc<Control>>,
    caller: Caller,
    Path(id): Path<String>,
    body: Option<Json<Decision>>,
) -> Response {
    decide(
        &control,
        caller,
        &id,
        false,
        body.map(|b| b.0).unwrap_or_default(),
    )
}

fn decide(
    control: &Control,
    Caller(who): Caller,
    id: &str,
    approve: bool,
    d: Decision,
) -> Response {
    let Some(a) = control.approvals.as_ref() else {
        return not_configured();
    };
    match a.decide(id, &who, approve, d.reason) {
        Ok(r) => {
            let verb = if approve { "approved" } else { "denied" };
            tracing::info!(request = id, approver = %who.subject, requester = %r.subject, "approval request {verb}");
            control.audit.record(crate::audit::admin_event(
                if approve { "approval" } else { "denial" },
                format!(
                    "{verb} request {id} of {} on {}{}: {}",
                    r.subject,
                    r.target,
                    r.reason
                        .as_deref()
                        .map(|x| format!(" ({x})"))
                        .unwrap_or_default(),
                    r.text
                ),
                &control.runtime.load(),
                Some(who.subject.clone()),
            ));
            Json(r).into_response()
        }
        Err(e) => refused(e),
    }
}
