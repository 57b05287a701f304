//! The verifier against a real HTTP issuer: discovery, JWKS, rotation, outages and forgeries.

use std::sync::Arc;
use std::time::Duration;

use portcullis_identity::{AuthError, IdentityConfig, Verifier};
use portcullis_sandbox::issuer::{SigningKey, hmac_token, unsigned_token};
use portcullis_sandbox::{DevIssuer, KeyKind};
use serde_json::json;

fn verifier(issuer: &DevIssuer, min_refresh: Duration) -> Arc<Verifier> {
    let mut c = IdentityConfig::new(issuer.url(), "portcullis");
    c.refresh_min_interval = min_refresh;
    Verifier::new(c).unwrap()
}

#[tokio::test]
async fn accepts_each_key_kind_and_reads_groups() {
    let issuer = DevIssuer::start("portcullis").await.unwrap();
    let v = verifier(&issuer, Duration::ZERO);
    for kind in [KeyKind::Rsa, KeyKind::Ec, KeyKind::Ed25519] {
        issuer.rotate(kind);
        let p = v
            .verify(&issuer.token("alice", &["data-science", "x"]))
            .await
            .unwrap();
        assert_eq!(p.subject, "alice");
        assert_eq!(p.groups, vec!["data-science", "x"]);
        assert_eq!(p.issuer, issuer.url());
    }
}

#[tokio::test]
async fn refuses_forgeries() {
    let issuer = DevIssuer::start("portcullis").await.unwrap();
    let v = verifier(&issuer, Duration::ZERO);
    let claims = issuer.claims("mallory", &["dba"]);
    let active = issuer.active_key();

    // Same kid, signed by a key the issuer never published.
    let mut forged = SigningKey::generate(KeyKind::Rsa);
    forged.kid = active.kid.clone();
    assert_eq!(
        v.verify(&forged.sign(&claims)).await,
        Err(AuthError::BadSignature)
    );

    // Payload edited after signing.
    let good = issuer.token("mallory", &["readers"]);
    let parts: Vec<&str> = good.split('.').collect();
    let edited = unsigned_token(&json!({"alg": "RS256", "kid": active.kid}), &claims, b"");
    let spliced = format!(
        "{}.{}.{}",
        parts[0],
        edited.split('.').nth(1).unwrap(),
        parts[2]
    );
    assert_eq!(v.verify(&spliced).await, Err(AuthError::BadSignature));

    let none = unsigned_token(&json!({"alg": "none"}), &claims, b"");
    assert_eq!(
        v.verify(&none).await,
        Err(AuthError::AlgorithmNotAllowed("none".into()))
    );
    let hs = hmac_token(&active.kid, &claims, active.public_pem.as_bytes());
    assert_eq!(
        v.verify(&hs).await,
        Err(AuthError::AlgorithmNotAllowed("HS256".into()))
    );

    // A key the issuer does not publish, with its own kid.
    let stranger = SigningKey::generate(KeyKind::Ec);
    assert_eq!(
        v.verify(&stranger.sign(&claims)).await,
        Err(AuthError::UnknownKey(stranger.kid.clone()))
    );
}

#[tokio::test]
async fn refreshes_on_unknown_kid_and_survives_outages() {
    let issuer = DevIssuer::start("portcullis").await.unwrap();
    let v = verifier(&issuer, Duration::ZERO);
    v.verify(&issuer.token("alice", &[])).await.unwrap();

    // Rotation: the new kid is unknown to the cache and triggers a refetch.
    issuer.rotate(KeyKind::Ec);
    v.verify(&issuer.token("alice", &[])).await.unwrap();

    // Outage: cached keys keep working.
    issuer.set_available(false);
    v.verify(&issuer.token("alice", &[])).await.unwrap();
    // A new key cannot be fetched while the issuer is down.
    let rotated = issuer.rotate(KeyKind::Rsa);
    assert_eq!(
        v.verify(&issuer.token("alice", &[])).await,
        Err(AuthError::UnknownKey(rotated.kid.clone()))
    );
    issuer.set_available(true);
    v.verify(&issuer.token("alice", &[])).await.unwrap();
}

#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited() {
    let issuer = DevIssuer::start("portcullis").await.unwrap();
    let v = verifier(&issuer, Duration::from_secs(3600));
    v.verify(&issuer.token("alice", &[])).await.unwrap();
    let rotated = issuer.rotate(KeyKind::Ec);
    // The last fetch was moments ago, so the unknown kid does not trigger another.
    assert_eq!(
        v.verify(&issuer.token("alice", &[])).await,
        Err(AuthError::UnknownKey(rotated.kid.clone()))
    );
}

#[tokio::test]
async fn issuer_down_without_cached_keys() {
    let issuer = DevIssuer::start("portcullis").await.unwrap();
    issuer.set_available(false);
    let v = verifier(&issuer, Duration::ZERO);
    let err = v.verify(&issuer.token("alice", &[])).await.unwrap_err();
    assert_eq!(err.to_string(), "issuer unreachable and no cached keys");
    assert_eq!(err.sqlstate(), "28000");
}

#[tokio::test]
async fn claim_refusals() {
    let issuer = DevIssuer::start("portcullis").await.unwrap();
    let v = verifier(&issuer, Duration::ZERO);
    let mut c = issuer.claims("alice", &[]);
    c["exp"] = json!(c["iat"].as_u64().unwrap() - 240);
    assert_eq!(
        v.verify(&issuer.sign(&c)).await.unwrap_err().to_string(),
        "token expired 4m ago"
    );
    let mut c = issuer.claims("alice", &[]);
    c["nbf"] = json!(c["iat"].as_u64().unwrap() + 600);
    assert!(matches!(
        v.verify(&issuer.sign(&c)).await,
        Err(AuthError::NotYetValid(_))
    ));
    let mut c = issuer.claims("alice", &[]);
    c["aud"] = json!("x");
    assert_eq!(
        v.verify(&issuer.sign(&c)).await.unwrap_err().to_string(),
        "token audience 'x' is not 'portcullis'"
    );
    let mut c = issuer.claims("alice", &[]);
    c["iss"] = json!("https://elsewhere.example");
    assert!(matches!(
        v.verify(&issuer.sign(&c)).await,
        Err(AuthError::WrongIssuer { .. })
    ));
}
