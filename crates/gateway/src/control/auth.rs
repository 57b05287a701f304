//! Who is calling the control port: a bearer token verified like a database login's, and
//! the groups it must name. Handlers take the caller as an extractor, so no handler can
//! forget the check.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;

use super::{Control, problem};

/// Any verified caller (approvers: whether they may decide is the request's question).
pub struct Caller(pub portcullis_identity::Principal);

impl FromRequestParts<Arc<Control>> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        control: &Arc<Control>,
    ) -> Result<Self, Self::Rejection> {
        verified(parts, control).await.map(Caller)
    }
}

/// The caller's verified identity, from the bearer token.
async fn verified(
    parts: &Parts,
    control: &Arc<Control>,
) -> Result<portcullis_identity::Principal, Response> {
    let token = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            problem(
                StatusCode::UNAUTHORIZED,
                "send an access token: Authorization: Bearer <token>",
            )
        })?;
    let runtime = control.runtime.load_full();
    let principal = runtime
        .verifier
        .verify(token)
        .await
        .map_err(|e| problem(StatusCode::UNAUTHORIZED, e.to_string()))?;
    // Revoked for database logins is revoked here too.
    let identity = &runtime.config.identity;
    let how = identity.deny_subjects_match;
    let denied = identity
        .deny_subjects
        .iter()
        .any(|d| how.matches(d, &principal.subject));
    if denied || control.sessions.blocked(&principal.subject, how).is_some() {
        return Err(problem(
            StatusCode::FORBIDDEN,
            format!("access for {} is revoked", principal.subject),
        ));
    }
    Ok(principal)
}

/// An operator: a verified caller in one of `admin.groups`.
pub struct Operator {
    /// The token's subject, named in the audit trail as the actor.
    pub subject: String,
}

impl FromRequestParts<Arc<Control>> for Operator {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        control: &Arc<Control>,
    ) -> Result<Self, Self::Rejection> {
        let principal = verified(parts, control).await?;
        let runtime = control.runtime.load_full();
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
        Ok(Operator {
            subject: principal.subject,
        })
    }
}
