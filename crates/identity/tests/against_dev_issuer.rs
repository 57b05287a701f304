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

#[tokio::test]
async fn service_accounts_nested_groups_and_prefixes() {
    let issuer = DevIssuer::start("portcullis").await.unwrap();
    let mut c = IdentityConfig::new(issuer.url(), "portcullis");
    c.service_accounts = vec![portcullis_identity::ServiceAccount {
        client_id: "devin-ci".into(),
        groups: vec!["ci".into()],
    }];
    let v = Verifier::new(c).unwrap();
    // A client-credentials token: no subject of its own, the client in client_id.
    let mut cc = issuer.claims("ignored", &[]);
    cc.as_object_mut().unwrap().remove("sub");
    cc["client_id"] = json!("devin-ci");
    let p = v.verify(&issuer.sign(&cc)).await.unwrap();
    assert_eq!(
        (p.subject.as_str(), p.groups.clone()),
        ("devin-ci", vec!["ci".to_string()])
    );
    // Some IdPs put the client in sub and azp.
    let mut cc = issuer.claims("devin-ci", &["extra"]);
    cc["azp"] = json!("devin-ci");
    let p = v.verify(&issuer.sign(&cc)).await.unwrap();
    assert_eq!(p.groups, vec!["extra", "ci"]);
    // A person's token issued through the same client stays the person's.
    let mut user = issuer.claims("alice", &["data-science"]);
    user["azp"] = json!("devin-ci");
    let p = v.verify(&issuer.sign(&user)).await.unwrap();
    assert_eq!(
        (p.subject.as_str(), p.groups.clone()),
        ("alice", vec!["data-science".to_string()])
    );
    // An unknown client without a subject is refused.
    let mut stranger = issuer.claims("x", &[]);
    stranger.as_object_mut().unwrap().remove("sub");
    stranger["client_id"] = json!("someone-else");
    assert_eq!(
        v.verify(&issuer.sign(&stranger)).await.unwrap_err(),
        AuthError::MissingClaim("sub".into())
    );

    // Keycloak's nested roles, with a prefix.
    let mut c = IdentityConfig::new(issuer.url(), "portcullis");
    c.groups_claim = "realm_access.roles".into();
    c.groups_prefix = Some("db-".into());
    let v = Verifier::new(c).unwrap();
    let mut kc = issuer.claims("dave", &[]);
    kc["realm_access"] = json!({"roles": ["db-dba", "offline_access", "db-ops"]});
    let p = v.verify(&issuer.sign(&kc)).await.unwrap();
    assert_eq!(p.groups, vec!["dba", "ops"]);

    // Entra ID group overage.
    let v = verifier(&issuer, Duration::ZERO);
    let mut entra = issuer.claims("erin", &[]);
    entra.as_object_mut().unwrap().remove("groups");
    entra["_claim_names"] = json!({"groups": "src1"});
    let e = v.verify(&issuer.sign(&entra)).await.unwrap_err();
    assert!(matches!(e, AuthError::GroupsOverage(_)), "{e}");
}
