//! A development OpenID issuer: real discovery and JWKS over HTTP, real signed JWTs.
//!
//! It signs with RSA, P-256 or Ed25519 keys it can generate, publish, retire and rotate at
//! run time, and it can play dead, so tests exercise every path of token verification. The
//! demo uses it as its identity provider; `/dev/token` hands out tokens for sample people
//! and is loopback-only like the whole server. It also runs the device authorization grant
//! (`device.rs`), so `portcullis login` works against the demo: the "browser" step is a
//! page where you pick a sample person.

mod device;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// The kind of signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    Ec,
    Ed25519,
}

/// A private signing key with its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub kind: KeyKind,
    encoding: EncodingKey,
    /// The public key as PEM, which an attacker would use as an HMAC secret.
    pub public_pem: String,
    pub jwk: Value,
}

impl SigningKey {
    /// Generates a fresh key with a random key id.
    pub fn generate(kind: KeyKind) -> Self {
        use rand::rngs::OsRng;
        let kid = format!("{}-{:08x}", kind_name(kind), rand::random::<u32>());
        match kind {
            KeyKind::Rsa => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::{EncodePublicKey, LineEnding};
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).expect("RSA key generation");
                let pem = key.to_pkcs1_pem(LineEnding::LF).expect("RSA PEM");
                let public = key.to_public_key();
                SigningKey {
                    encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("RSA encoding key"),
                    public_pem: public
                        .to_public_key_pem(LineEnding::LF)
                        .expect("RSA public PEM"),
                    jwk: json!({
                        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
                        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
                    }),
                    kid,
                    kind,
                }
            }
            KeyKind::Ec => {
                use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
                let key = p256::SecretKey::random(&mut OsRng);
                let pem = key.to_pkcs8_pem(LineEnding::LF).expect("EC PEM");
                let mut jwk: Value =
                    serde_json::from_str(&key.public_key().to_jwk_string()).expect("EC JWK");
                jwk["kid"] = json!(kid);
                jwk["alg"] = json!("ES256");
                jwk["use"] = json!("sig");
                SigningKey {
                    encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("EC encoding key"),
                    public_pem: key
                        .public_key()
                        .to_public_key_pem(LineEnding::LF)
                        .expect("EC public PEM"),
                    jwk,
                    kid,
                    kind,
                }
            }
            KeyKind::Ed25519 => {
                use ed25519_dalek::pkcs8::{
                    EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding,
                };
                let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
                let pem = key.to_pkcs8_pem(LineEnding::LF).expect("Ed25519 PEM");
                SigningKey {
                    encoding: EncodingKey::from_ed_pem(pem.as_bytes())
                        .expect("Ed25519 encoding key"),
                    public_pem: key
                        .verifying_key()
                        .to_public_key_pem(LineEnding::LF)
                        .expect("Ed25519 public PEM"),
                    jwk: json!({
                        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
                    }),
                    kid,
                    kind,
                }
            }
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.kind {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::Ec => Algorithm::ES256,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// Signs `claims` with this key, naming it in the `kid` header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }
}

fn kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Rsa => "rsa",
        KeyKind::Ec => "ec",
        KeyKind::Ed25519 => "ed",
    }
}

struct IssuerState {
    published: Vec<Arc<SigningKey>>,
    active: Arc<SigningKey>,
    available: bool,
    people: HashMap<String, Vec<String>>,
    /// Device authorizations by device code.
    devices: HashMap<String, device::Pending>,
    /// Refresh tokens → the person they were issued to.
    refresh: HashMap<String, String>,
}

/// A running development issuer. Dropping it stops the HTTP server.
pub struct DevIssuer {
    url: String,
    audience: String,
    state: Arc<RwLock<IssuerState>>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// The demo's sample people and their default groups.
pub fn sample_people() -> HashMap<String, Vec<String>> {
    [
        ("alice", "data-science"),
        ("bob", "engineering"),
        ("carol", "managers"),
        ("dave", "dba"),
    ]
    .into_iter()
    .map(|(p, g)| (p.to_string(), vec![g.to_string()]))
    .collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl DevIssuer {
    /// Starts on a free loopback port with one RSA and one EC key published (RSA active).
    pub async fn start(audience: &str) -> std::io::Result<Self> {
        Self::start_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), audience).await
    }

    /// Starts on `addr`, which must be a loopback address.
    pub async fn start_on(addr: std::net::SocketAddr, audience: &str) -> std::io::Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::other(
                "the development issuer only listens on loopback",
            ));
        }
        let rsa = Arc::new(SigningKey::generate(KeyKind::Rsa));
        let ec = Arc::new(SigningKey::generate(KeyKind::Ec));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(RwLock::new(IssuerState {
            published: vec![rsa.clone(), ec],
            active: rsa,
            available: true,
            people: sample_people(),
            devices: HashMap::new(),
            refresh: HashMap::new(),
        }));
        let app_state = AppState {
            url: url.clone(),
            audience: audience.to_string(),
            state: state.clone(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/dev/token", get(dev_token))
            .route("/device/auth", axum::routing::post(device::authorize))
            .route("/device", get(device::page).post(device::approve))
            .route("/token", axum::routing::post(device::token))
            .with_state(app_state);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(DevIssuer {
            url,
            audience: audience.to_string(),
            state,
            shutdown: Some(tx),
        })
    }

    /// The issuer URL (the `iss` claim).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Standard claims for `sub` and `groups`, valid for an hour.
    pub fn claims(&self, sub: &str, groups: &[&str]) -> Value {
        standard_claims(&self.url, &self.audience, sub, groups, 3600)
    }

    /// A valid token for `sub` in `groups`, signed with the active key.
    pub fn token(&self, sub: &str, groups: &[&str]) -> String {
        self.sign(&self.claims(sub, groups))
    }

    /// Signs arbitrary claims with the active key.
    pub fn sign(&self, claims: &Value) -> String {
        self.read().active.sign(claims)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, IssuerState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, IssuerState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The key currently used for signing.
    pub fn active_key(&self) -> Arc<SigningKey> {
        self.read().active.clone()
    }

    /// Publishes `key` in the JWKS.
    pub fn publish(&self, key: Arc<SigningKey>) {
        self.write().published.push(key);
    }

    /// Makes `key` the signing key (publishing it if needed).
    pub fn activate(&self, key: Arc<SigningKey>) {
        let mut s = self.write();
        if !s.published.iter().any(|k| k.kid == key.kid) {
            s.published.push(key.clone());
        }
        s.active = key;
    }

    /// Generates, publishes and activates a new key; returns it.
    pub fn rotate(&self, kind: KeyKind) -> Arc<SigningKey> {
        let key = Arc::new(SigningKey::generate(kind));
        self.activate(key.clone());
        key
    }

    /// Removes a key from the JWKS.
    pub fn unpublish(&self, kid: &str) {
        self.write().published.retain(|k| k.kid != kid);
    }

    /// When unavailable, discovery and JWKS answer 503, as an issuer in an outage would.
    pub fn set_available(&self, available: bool) {
        self.write().available = available;
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Claims as a typical IdP issues them for an access token.
pub fn standard_claims(iss: &str, aud: &str, sub: &str, groups: &[&str], ttl: u64) -> Value {
    let now = now();
    json!({
        "iss": iss,
        "aud": aud,
        "sub": sub,
        "groups": groups,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    })
}

/// A token with an arbitrary header and payload and the given signature bytes, for tests
/// of forged and `alg: none` tokens.
pub fn unsigned_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// An HS256 token whose HMAC secret is `secret` (the classic public-key-as-secret attack).
pub fn hmac_token(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("HMAC signing")
}

#[derive(Clone)]
struct AppState {
    url: String,
    audience: String,
    state: Arc<RwLock<IssuerState>>,
}

impl AppState {
    fn available(&self) -> bool {
        self.state.read().map(|s| s.available).unwrap_or(false)
    }
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "issuer is down").into_response()
}

async fn discovery(State(app): State<AppState>) -> Response {
    if !app.available() {
        return unavailable();
    }
    Json(json!({
        "issuer": app.url,
        "jwks_uri": format!("{}/jwks", app.url),
        "token_endpoint": format!("{}/token", app.url),
        "device_authorization_endpoint": format!("{}/device/auth", app.url),
        "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State(app): State<AppState>) -> Response {
    if !app.available() {
        return unavailable();
    }
    let keys: Vec<Value> = match app.state.read() {
        Ok(s) => s.published.iter().map(|k| k.jwk.clone()).collect(),
        Err(_) => return unavailable(),
    };
    Json(json!({ "keys": keys })).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    sub: String,
    groups: Option<String>,
    ttl: Option<u64>,
}

async fn dev_token(State(app): State<AppState>, Query(req): Query<TokenRequest>) -> Response {
    let Ok(state) = app.state.read() else {
        return unavailable();
    };
    let groups: Vec<String> = match req.groups {
        Some(g) => g
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => match state.people.get(&req.sub) {
            Some(g) => g.clone(),
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("unknown person '{}'; pass groups explicitly", req.sub),
                )
                    .into_response();
            }
        },
    };
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let claims = standard_claims(
        &app.url,
        &app.audience,
        &req.sub,
        &groups,
        req.ttl.unwrap_or(3600),
    );
    let token = state.active.sign(&claims);
    Json(json!({ "access_token": token, "token_type": "Bearer", "groups": groups })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_publish_jwks() {
        for kind in [KeyKind::Rsa, KeyKind::Ec, KeyKind::Ed25519] {
            let k = SigningKey::generate(kind);
            let t = k.sign(&json!({"sub": "x"}));
            assert_eq!(t.split('.').count(), 3);
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(k.jwk.clone()).unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let mut v = jsonwebtoken::Validation::new(k.algorithm());
            v.required_spec_claims.clear();
            v.validate_exp = false;
            jsonwebtoken::decode::<Value>(&t, &key, &v).unwrap();
        }
    }
}
