//! The device authorization grant (RFC 8628) of the development issuer: `portcullis login`
//! against the demo. The verification page lists the sample people; picking one approves
//! the code as that person. Tokens refresh with a refresh token.

use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{AppState, standard_claims, unavailable};

/// How long a code may wait for approval.
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Access tokens from this flow live this long (refresh keeps a session going).
const TOKEN_LIFETIME: u64 = 900;

/// A code waiting for its person.
pub(super) struct Pending {
    user_code: String,
    expires: Instant,
    approved: Option<String>,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn user_code() -> String {
    const LETTERS: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let pick = || LETTERS[rand::random::<usize>() % LETTERS.len()] as char;
    let half = |_| (0..4).map(|_| pick()).collect::<String>();
    let parts: Vec<String> = (0..2).map(half).collect();
    parts.join("-")
}

fn oauth_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct AuthorizeForm {
    client_id: Option<String>,
}

pub(super) async fn authorize(
    State(app): State<AppState>,
    Form(form): Form<AuthorizeForm>,
) -> Response {
    if !app.available() {
        return unavailable();
    }
    if form.client_id.as_deref().is_none_or(str::is_empty) {
        return oauth_error("invalid_request", "client_id is required");
    }
    let device_code = random_hex(24);
    let code = user_code();
    let Ok(mut state) = app.state.write() else {
        return unavailable();
    };
    state.devices.retain(|_, p| p.expires > Instant::now());
    state.devices.insert(
        device_code.clone(),
        Pending {
            user_code: code.clone(),
            expires: Instant::now() + CODE_LIFETIME,
            approved: None,
        },
    );
    axum::Json(json!({
        "device_code": device_code,
        "user_code": code,
        "verification_uri": format!("{}/device", app.url),
        "verification_uri_complete": format!("{}/device?user_code={code}", app.url),
        "expires_in": CODE_LIFETIME.as_secs(),
        "interval": 1,
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct PageQuery {
    user_code: Option<String>,
}

fn escape(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// The "browser" step: enter the code and pick who you are.
pub(super) async fn page(State(app): State<AppState>, Query(q): Query<PageQuery>) -> Response {
    let people: Vec<(String, Vec<String>)> = match app.state.read() {
        Ok(s) => {
            let mut p: Vec<_> = s
                .people
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            p.sort();
            p
        }
        Err(_) => return unavailable(),
    };
    let code = escape(q.user_code.as_deref().unwrap_or(""));
    let buttons: String = people
        .iter()
        .map(|(name, groups)| {
            format!(
                "<button name=\"person\" value=\"{name}\">{name} ({})</button> ",
                groups.join(", ")
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><title>Portcullis demo sign-in</title><h1>Portcullis demo sign-in</h1>\
         <form method=\"post\" action=\"/device\"><p>Code: <input name=\"user_code\" value=\"{code}\"></p>\
         <p>Sign in as: {buttons}</p></form>"
    ))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct ApproveForm {
    user_code: String,
    person: String,
}

pub(super) async fn approve(State(app): State<AppState>, Form(f): Form<ApproveForm>) -> Response {
    let Ok(mut state) = app.state.write() else {
        return unavailable();
    };
    if !state.people.contains_key(&f.person) {
        return (StatusCode::BAD_REQUEST, Html("unknown person".to_string())).into_response();
    }
    let wanted = f.user_code.trim().to_ascii_uppercase();
    let Some(pending) = state
        .devices
        .values_mut()
        .find(|p| p.user_code == wanted && p.expires > Instant::now())
    else {
        return (
            StatusCode::BAD_REQUEST,
            Html("that code is unknown or expired; start again with portcullis login".to_string()),
        )
            .into_response();
    };
    pending.approved = Some(f.person.clone());
    Html(format!(
        "<!doctype html><p>Signed in as {}. Return to your terminal.</p>",
        escape(&f.person)
    ))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct TokenForm {
    grant_type: String,
    device_code: Option<String>,
    refresh_token: Option<String>,
}

pub(super) async fn token(State(app): State<AppState>, Form(f): Form<TokenForm>) -> Response {
    if !app.available() {
        return unavailable();
    }
    let Ok(mut state) = app.state.write() else {
        return unavailable();
    };
    let person = match f.grant_type.as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" => {
            let code = f.device_code.unwrap_or_default();
            let Some(pending) = state.devices.get(&code) else {
                return oauth_error("invalid_grant", "unknown device code");
            };
            if pending.expires <= Instant::now() {
                state.devices.remove(&code);
                return oauth_error("expired_token", "the device code expired");
            }
            match pending.approved.clone() {
                None => return oauth_error("authorization_pending", "not approved yet"),
                Some(p) => {
                    state.devices.remove(&code);
                    p
                }
            }
        }
        "refresh_token" => {
            let t = f.refresh_token.unwrap_or_default();
            match state.refresh.remove(&t) {
                Some(p) => p,
                None => return oauth_error("invalid_grant", "unknown refresh token"),
            }
        }
        _ => return oauth_error("unsupported_grant_type", "device_code or refresh_token"),
    };
    let groups: Vec<String> = state.people.get(&person).cloned().unwrap_or_default();
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut claims = standard_claims(&app.url, &app.audience, &person, &groups, TOKEN_LIFETIME);
    // Every token is distinct, even two issued in the same second.
    claims["jti"] = json!(random_hex(12));
    let access = state.active.sign(&claims);
    // Refresh tokens rotate: each is good once.
    let refresh = random_hex(24);
    state.refresh.insert(refresh.clone(), person);
    axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "refresh_token": refresh,
    }))
    .into_response()
}
