//! The token verifier: header checks, key selection, signature, then claims.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::jwks::{self, KeySet};
use crate::{Algorithm, AuthError, ConfigError, IdentityConfig, claims};

/// Who is calling, as established by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub groups: Vec<String>,
    pub issuer: String,
    /// The token's `exp`.
    pub expires_at: SystemTime,
    /// `exp` plus the configured leeway: the login was accepted because the clock was not
    /// past this instant, and a live session's token counts as expired once it is (then
    /// any `expiry_grace` applies). One instant, so login and session never disagree.
    pub valid_until: SystemTime,
}

/// Verifies tokens for one issuer. Cheap to share: clone the `Arc`.
pub struct Verifier {
    config: IdentityConfig,
    http: reqwest::Client,
    keys: ArcSwapOption<KeySet>,
    /// Serialises fetches and remembers when the last one started, for rate limiting.
    last_fetch: Mutex<Option<Instant>>,
}

/// Whether `url` may be fetched: https anywhere, http only on loopback.
fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| format!("'{url}' is not a valid URL"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        _ => Err(format!(
            "'{url}' must use https (plain http is allowed only for loopback addresses)"
        )),
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl Verifier {
    pub fn new(config: IdentityConfig) -> Result<Arc<Self>, ConfigError> {
        if url::Url::parse(&config.issuer).is_err() {
            return Err(ConfigError::BadIssuer(config.issuer.clone()));
        }
        check_url(&config.issuer)
            .map_err(|_| ConfigError::InsecureIssuer(config.issuer.clone()))?;
        if config.algorithms.is_empty() {
            return Err(ConfigError::NoAlgorithms);
        }
        // reqwest is built without a bundled crypto provider; use ring like the rest of the
        // gateway. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &config.ca_file {
            let ca_error = |reason: String| ConfigError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ConfigError::Http(e.to_string()))?;
        Ok(Arc::new(Verifier {
            config,
            http,
            keys: ArcSwapOption::empty(),
            last_fetch: Mutex::new(None),
        }))
    }

    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Fetches the issuer's keys now, unless another fetch started less than
    /// `min_interval` ago. On failure the previously cached keys stay in use.
    pub async fn refresh(&self, min_interval: std::time::Duration) -> Result<(), String> {
        let mut last = self.last_fetch.lock().await;
        if let Some(t) = *last
            && t.elapsed() < min_interval
        {
            return Ok(());
        }
        *last = Some(Instant::now());
        match jwks::fetch(&self.http, &self.config.issuer, check_url).await {
            Ok(set) => {
                tracing::info!(issuer = %self.config.issuer, keys = set.keys.len(), "fetched issuer keys");
                self.keys.store(Some(Arc::new(set)));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "cannot refresh issuer keys; keeping cached keys");
                Err(e)
            }
        }
    }

    /// Verifies `token` and returns the caller.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, SystemTime::now()).await
    }

    /// Verifies `token` as of `now` (tests inject the clock).
    pub async fn verify_at(&self, token: &str, now: SystemTime) -> Result<Principal, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::NoToken);
        }
        if token.len() > crate::MAX_TOKEN_BYTES {
            return Err(AuthError::TokenTooLarge {
                len: token.len(),
                limit: crate::MAX_TOKEN_BYTES,
            });
        }
        let header = decode_header(token, &self.config.issuer)?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| AuthError::Malformed("header has no 'alg'".into()))?;
        let alg = Algorithm::parse(alg_name)
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or_else(|| AuthError::AlgorithmNotAllowed(claims::echo(alg_name)))?;
        let kid = header.get("kid").and_then(Value::as_str);

        let stale = match self.keys.load().as_ref() {
            None => true,
            Some(set) => set.fetched_at.elapsed() > self.config.keys_max_age,
        };
        if stale {
            let _ = self.refresh(self.config.refresh_min_interval).await;
        }
        let mut result = self.verify_with_cached(token, alg, kid);
        if matches!(result, Err(AuthError::UnknownKey(_))) {
            // The issuer may have rotated keys: refetch, rate limited.
            let _ = self.refresh(self.config.refresh_min_interval).await;
            result = self.verify_with_cached(token, alg, kid);
        }
        let claims = result?;
        let lifetime = claims::check_standard(&claims, &self.config, now)?;
        let prefix = self.config.groups_prefix.as_deref();
        let mut groups =
            claims::strip_prefix(claims::groups(&claims, &self.config.groups_claim)?, prefix);
        let subject = claims::subject(&claims, &self.config.subject_claim)?;
        // A client-credentials token names a client, not a person: no subject of its own,
        // or the client itself as the subject.
        let service = claims::client_id(&claims)?.and_then(|id| {
            let own = subject.as_deref().is_none_or(|s| s == id);
            self.config
                .service_accounts
                .iter()
                .find(|sa| own && sa.client_id == id)
        });
        let subject = match service {
            Some(sa) => {
                for g in &sa.groups {
                    if !groups.contains(g) {
                        groups.push(g.clone());
                    }
                }
                sa.client_id.clone()
            }
            None => {
                subject.ok_or_else(|| AuthError::MissingClaim(self.config.subject_claim.clone()))?
            }
        };
        Ok(Principal {
            subject,
            groups,
            issuer: self.config.issuer.clone(),
            expires_at: lifetime.expires_at,
            valid_until: lifetime.valid_until,
        })
    }

    fn verify_with_cached(
        &self,
        token: &str,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Value, AuthError> {
        let guard = self.keys.load();
        let set = guard.as_ref().ok_or(AuthError::IssuerUnreachable)?;
        let jwt_alg = alg.to_jwt();
        let candidates = set.keys.iter().filter(|k| {
            k.key.family() == jwt_alg.family()
                && k.alg
                    .as_deref()
                    .is_none_or(|a| Algorithm::parse(a) == Some(alg))
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        });
        let mut validation = jsonwebtoken::Validation::new(jwt_alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut any = false;
        for candidate in candidates {
            any = true;
            match jsonwebtoken::decode::<Value>(token, &candidate.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => continue,
                    jsonwebtoken::errors::ErrorKind::Json(_)
                    | jsonwebtoken::errors::ErrorKind::Base64(_)
                    | jsonwebtoken::errors::ErrorKind::Utf8(_) => {
                        return Err(AuthError::Malformed("claims are not valid JSON".into()));
                    }
                    _ => continue,
                },
            }
        }
        if !any {
            return Err(AuthError::UnknownKey(claims::echo(kid.unwrap_or("(none)"))));
        }
        Err(AuthError::BadSignature)
    }
}

/// Splits the token and decodes its header, with messages that explain what was sent.
fn decode_header(token: &str, issuer: &str) -> Result<Value, AuthError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err(AuthError::NotAToken {
            issuer: issuer.into(),
        });
    }
    let raw = URL_SAFE_NO_PAD
        .decode(parts[0].trim_end_matches('='))
        .map_err(|_| AuthError::NotAToken {
            issuer: issuer.into(),
        })?;
    let header: Value = serde_json::from_slice(&raw)
        .map_err(|_| AuthError::Malformed("header is not JSON".into()))?;
    if !header.is_object() {
        return Err(AuthError::Malformed("header is not a JSON object".into()));
    }
    if header.get("crit").is_some() {
        return Err(AuthError::Malformed(
            "critical header extensions are not supported".into(),
        ));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rules() {
        assert!(check_url("https://idp.example.com").is_ok());
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        assert!(check_url("http://localhost:1").is_ok());
        assert!(check_url("http://[::1]:1").is_ok());
        assert!(check_url("http://idp.example.com").is_err());
        assert!(check_url("ftp://127.0.0.1").is_err());
    }

    #[tokio::test]
    async fn header_refusals() {
        let v = Verifier::new(IdentityConfig::new("http://127.0.0.1:9", "portcullis")).unwrap();
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let none = format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(r#"{"sub":"x"}"#));
        assert_eq!(
            v.verify(&none).await,
            Err(AuthError::AlgorithmNotAllowed("none".into()))
        );
        let hs = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"sub":"x"}"#)
        );
        assert_eq!(
            v.verify(&hs).await,
            Err(AuthError::AlgorithmNotAllowed("HS256".into()))
        );
        assert!(matches!(
            v.verify("hunter2").await,
            Err(AuthError::NotAToken { .. })
        ));
        assert_eq!(v.verify("").await, Err(AuthError::NoToken));
        // Nothing listens on port 9: no keys can be had.
        let rs = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","kid":"k"}"#),
            b64(r#"{"sub":"x"}"#)
        );
        assert_eq!(v.verify(&rs).await, Err(AuthError::IssuerUnreachable));
    }

    #[test]
    fn refuses_insecure_issuers() {
        assert!(matches!(
            Verifier::new(IdentityConfig::new("http://idp.example.com", "p")),
            Err(ConfigError::InsecureIssuer(_))
        ));
        let mut c = IdentityConfig::new("https://idp.example.com", "p");
        c.algorithms.clear();
        assert!(matches!(Verifier::new(c), Err(ConfigError::NoAlgorithms)));
    }
}
