//! Fetching the issuer's signing keys: OIDC discovery, then the JWKS document.

use std::time::Instant;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use serde::Deserialize;
use serde_json::Value;

/// One usable verification key.
pub(crate) struct VerificationKey {
    pub kid: Option<String>,
    /// The JWK's `alg`, when it pins one.
    pub alg: Option<String>,
    pub key: DecodingKey,
}

/// The keys from one successful fetch.
pub(crate) struct KeySet {
    pub keys: Vec<VerificationKey>,
    pub fetched_at: Instant,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// Fetches discovery and JWKS. Errors are short sentences for logs.
pub(crate) async fn fetch(
    http: &reqwest::Client,
    issuer: &str,
    check_url: impl Fn(&str) -> Result<(), String>,
) -> Result<KeySet, String> {
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let doc: Discovery = get_json(http, &discovery_url).await?;
    if doc.issuer != issuer {
        return Err(format!(
            "discovery document names issuer '{}' instead of '{issuer}'",
            doc.issuer
        ));
    }
    check_url(&doc.jwks_uri)?;
    let jwks: Value = get_json(http, &doc.jwks_uri).await?;
    let keys = parse_jwks(&jwks)?;
    if keys.is_empty() {
        return Err(format!("{} publishes no usable signing keys", doc.jwks_uri));
    }
    Ok(KeySet {
        keys,
        fetched_at: Instant::now(),
    })
}

async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch {url}: {}", root_cause(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    resp.json()
        .await
        .map_err(|e| format!("{url} did not return the expected JSON: {e}"))
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Keeps the asymmetric signing keys of a JWKS; skips encryption keys, symmetric keys and
/// entries this library cannot use, so one odd key does not hide the others.
pub(crate) fn parse_jwks(doc: &Value) -> Result<Vec<VerificationKey>, String> {
    let entries = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("JWKS document has no 'keys' array")?;
    let mut out = Vec::new();
    for entry in entries {
        let kty = entry.get("kty").and_then(Value::as_str).unwrap_or("");
        if !matches!(kty, "RSA" | "EC" | "OKP") {
            continue;
        }
        if entry
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
            tracing::warn!(kty, "skipping a JWKS entry that cannot be decoded");
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            tracing::warn!(kty, "skipping a JWKS entry with unusable key material");
            continue;
        };
        out.push(VerificationKey {
            kid: jwk.common.key_id.clone(),
            alg: entry.get("alg").and_then(Value::as_str).map(str::to_owned),
            key,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn skips_unusable_entries() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "sig1", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "RSA", "kid": "broken", "n": 5}
        ]});
        let keys = parse_jwks(&doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("sig1"));
        assert_eq!(keys[0].alg.as_deref(), Some("ES256"));
        assert!(parse_jwks(&json!({"nokeys": []})).is_err());
    }
}
