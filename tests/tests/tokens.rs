//! Validly signed tokens whose claims are hostile or malformed, and tokens too large to
//! read, through tokio-postgres: each gets a FATAL with the README's SQLSTATE and a
//! sentence, and an authentication-failure event; none reaches a session or crashes one.

use portcullis_audit::Event;
use portcullis_tests::{Harness, db_error};
use serde_json::{Value, json};

/// Logs in with `token` and returns the refusal's SQLSTATE and message.
async fn refused_with(h: &Harness, user: &str, token: &str) -> (String, String) {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(h.port())
        .user(user)
        .dbname("app")
        .password(token);
    match config.connect(tokio_postgres::NoTls).await {
        Ok(_) => panic!("{user} logged in with a token that should be refused"),
        Err(e) => db_error(&e),
    }
}

/// The authentication failures recorded so far, oldest first, as (SQLSTATE, reason).
async fn auth_failures(h: &Harness) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = h
        .audit_events("auth_failure")
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::AuthFailure(f) => Some((f.sqlstate, f.reason)),
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

fn claims_with(h: &Harness, claim: &str, value: Value) -> Value {
    let mut c = h.issuer.claims("erin", &["engineering"]);
    c[claim] = value;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_no_clock_can_hold_are_refused_not_a_crash() {
    let h = Harness::start().await;
    let cases = [
        (
            "exp",
            json!(1e300),
            "token claim 'exp' is out of range: 1e+300 is after the year 9999",
        ),
        (
            "exp",
            json!(-1),
            "token claim 'exp' is out of range: -1 is before 1970",
        ),
        (
            "exp",
            json!(4_000_000_000.5),
            "token claim 'exp' must be a whole number of seconds since 1970, not 4000000000.5",
        ),
        (
            "exp",
            json!("tomorrow"),
            "token claim 'exp' must be a number of seconds since 1970, not a string",
        ),
        (
            "nbf",
            json!(1e300),
            "token claim 'nbf' is out of range: 1e+300 is after the year 9999",
        ),
        (
            "nbf",
            json!(-1e300),
            "token claim 'nbf' is out of range: -1e+300 is before 1970",
        ),
        (
            "iat",
            json!(1e300),
            "token claim 'iat' is out of range: 1e+300 is after the year 9999",
        ),
    ];
    for (claim, value, says) in &cases {
        let token = h.issuer.sign(&claims_with(&h, claim, value.clone()));
        assert_eq!(
            refused_with(&h, "erin", &token).await,
            ("28000".to_string(), says.to_string()),
            "{claim} = {value}"
        );
    }
    // The gateway is unharmed, and every refusal is in the trail.
    h.client().await.simple_query("select 1").await.unwrap();
    let failures = auth_failures(&h).await;
    let expected: Vec<(String, String)> = cases
        .iter()
        .map(|(_, _, says)| ("28000".to_string(), says.to_string()))
        .collect();
    assert_eq!(failures, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_claims_of_the_wrong_type_refuse_the_token() {
    let h = Harness::with(portcullis_tests::Setup {
        extra_toml: "[[service_account]]\nclient_id = \"devin-ci\"\ngroups = [\"engineering\"]\n"
            .into(),
        ..portcullis_tests::Setup::default()
    })
    .await;
    let mut service = h.issuer.claims("unused", &[]);
    service.as_object_mut().unwrap().remove("sub");
    service["client_id"] = json!(["devin-ci"]);
    let cases = [
        (
            claims_with(&h, "sub", json!(1234)),
            "token claim 'sub' must be a string, not a number",
        ),
        (
            claims_with(&h, "groups", json!("engineering")),
            "token claim 'groups' must be an array of group names (a JSON list of strings), not a string",
        ),
        (
            claims_with(&h, "groups", json!(["engineering", 7])),
            "token claim 'groups' must be an array of group names as strings, but it holds a number",
        ),
        (
            claims_with(&h, "iss", json!({"url": h.issuer.url()})),
            "token claim 'iss' must be a string, not an object",
        ),
        (
            claims_with(&h, "aud", json!(["portcullis", 1])),
            "token claim 'aud' must be a string or an array of strings, not a number",
        ),
        (
            service,
            "token claim 'client_id' must be a string, not an array",
        ),
    ];
    for (claims, says) in &cases {
        assert_eq!(
            refused_with(&h, "erin", &h.issuer.sign(claims)).await,
            ("28000".to_string(), says.to_string()),
            "{claims}"
        );
    }
    let failures = auth_failures(&h).await;
    assert_eq!(failures.len(), cases.len(), "{failures:?}");
    // The right shapes still log in.
    h.client().await.simple_query("select 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_too_large_to_read_is_a_bad_credential() {
    let h = Harness::start().await;
    let huge = "A".repeat(1 << 20);
    let (code, message) = refused_with(&h, "erin", &huge).await;
    assert_eq!(code, "28P01", "{message}");
    assert!(message.starts_with("token too large: "), "{message}");
    assert!(message.contains("at most 65535 bytes"), "{message}");
    // Just over the limit, the same; at the limit, the token is read (and is no JWT).
    let (code, message) = refused_with(&h, "erin", &"A".repeat(65_536)).await;
    assert_eq!(code, "28P01");
    assert!(message.starts_with("token too large"), "{message}");
    let (code, message) = refused_with(&h, "erin", &"A".repeat(65_535)).await;
    assert_eq!(code, "28P01");
    assert!(message.contains("not an access token"), "{message}");

    let failures = auth_failures(&h).await;
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures[0].1.starts_with("token too large"), "{failures:?}");
    assert!(
        failures.iter().all(|(_, reason)| reason.len() < 200),
        "the trail holds the sentence, never the token: {failures:?}"
    );
    h.client().await.simple_query("select 1").await.unwrap();
}
