//! When access ends: a token expiring during a session, an operator revoking a subject
//! through the control port, a configured deny list; and programs logging in as service
//! accounts with client-credentials tokens.

use std::sync::Arc;

use portcullis_audit::Event;
use portcullis_gateway::FixedClock;
use portcullis_tests::{Harness, Setup, db_error};
use serde_json::json;

/// Connects as `user` with `token`, keeping the connection's own result: an unsolicited
/// FATAL ends the connection task with that error.
async fn connect(
    h: &Harness,
    user: &str,
    token: &str,
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let conninfo = format!("{} password={token}", h.conninfo(user, "app", "disable"));
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .expect("connect");
    (client, tokio::spawn(connection))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_ends_the_session_after_its_transaction() {
    let now = jiff::Timestamp::now();
    let clock = Arc::new(FixedClock::new(now));
    let h = Harness::with(Setup {
        session_clock: Some(clock.clone()),
        ..Setup::default()
    })
    .await;
    h.direct(
        "app",
        "create table ledger (id int); alter table ledger owner to gw_app;",
    );
    let (client, _conn) = connect(&h, "erin", &h.token("erin", &["engineering"])).await;
    client
        .batch_execute("begin; insert into ledger values (1)")
        .await
        .unwrap();
    // The token (valid for an hour) runs out in the middle of the transaction.
    clock.set(now + jiff::SignedDuration::from_hours(2));
    client
        .batch_execute("insert into ledger values (2)")
        .await
        .expect("a transaction in progress may finish");
    client.batch_execute("commit").await.unwrap();
    let e = client.simple_query("select 1").await.unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "28000");
    assert!(
        message.contains("token expired, run `portcullis login`"),
        "{message}"
    );
    assert!(client.is_closed() || client.simple_query("select 1").await.is_err());
    assert_eq!(h.direct("app", "select count(*) from ledger").trim(), "2");

    let ends: Vec<String> = h
        .audit_events("session_end")
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::SessionEnd(e) => Some(e.reason),
            _ => None,
        })
        .collect();
    assert!(ends.iter().any(|r| r.contains("token expired")), "{ends:?}");
}

/// A token of `sub` that expires at `exp` by the fixed clock, issued an hour before.
fn token_expiring(h: &Harness, sub: &str, exp: jiff::Timestamp) -> String {
    let mut c = h.issuer.claims(sub, &["engineering"]);
    let exp = exp.as_second();
    c["exp"] = json!(exp);
    c["iat"] = json!(exp - 3600);
    c["nbf"] = json!(exp - 3600);
    h.issuer.sign(&c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_session_agree_on_when_a_token_ends() {
    // Every instant below is the fixed clock's: logins and sessions both read it.
    let t0: jiff::Timestamp = "2031-03-04T05:06:07Z".parse().unwrap();
    let clock = Arc::new(FixedClock::new(t0));
    let h = Harness::with(Setup {
        session_clock: Some(clock.clone()),
        ..Setup::default()
    })
    .await;
    let seconds = jiff::SignedDuration::from_secs;
    // Expired 5 s ago, inside the 30 s leeway: the login is accepted, and so is the session
    // for as long as the leeway lasts, not cut at its first statement.
    let exp = t0 - seconds(5);
    let token = token_expiring(&h, "erin", exp);
    let (client, _conn) = connect(&h, "erin", &token).await;
    client
        .simple_query("select 1")
        .await
        .expect("within the leeway");
    clock.set(exp + seconds(30));
    client
        .simple_query("select 2")
        .await
        .expect("the leeway's last second");
    // A second later, the login would be refused, and the session ends.
    clock.set(exp + seconds(31));
    let e = client.simple_query("select 3").await.unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "28000");
    assert!(message.contains("token expired"), "{message}");
    let refused = connect_refused(&h, "erin", &token).await;
    assert_eq!(refused, ("28000".into(), "token expired 31s ago".into()));

    // With a grace period, the session outlives the token by exactly that long after the
    // leeway: one instant, exp + leeway + grace.
    let graced = Harness::with(Setup {
        session_clock: Some(clock.clone()),
        identity_settings: "expiry_grace = \"10m\"".into(),
        ..Setup::default()
    })
    .await;
    clock.set(t0);
    let (client, _conn) = connect(&graced, "erin", &token_expiring(&graced, "erin", exp)).await;
    clock.set(exp + seconds(30 + 600));
    client
        .simple_query("select 1")
        .await
        .expect("within the grace period");
    clock.set(exp + seconds(30 + 601));
    let e = client.simple_query("select 2").await.unwrap_err();
    assert_eq!(db_error(&e).0, "28000");
}

/// The SQLSTATE and message of a refused login with `token`.
async fn connect_refused(h: &Harness, user: &str, token: &str) -> (String, String) {
    let conninfo = format!("{} password={token}", h.conninfo(user, "app", "disable"));
    match tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await {
        Ok(_) => panic!("{user} logged in but should have been refused"),
        Err(e) => db_error(&e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_blocked_subjects_match_as_the_identity_provider_compares_names() {
    let h = Harness::with(Setup {
        extra_toml: ADMIN.into(),
        identity_settings: "deny_subjects = [\"mallory\"]".into(),
        ..Setup::default()
    })
    .await;
    for sub in ["mallory", "Mallory", "mallory ", " MALLORY"] {
        let (code, message) = connect_refused(&h, "m", &h.token(sub, &["engineering"])).await;
        assert_eq!(code, "28000", "{sub:?}");
        assert!(
            message.contains("revoked by the gateway's configuration"),
            "{sub:?}: {message}"
        );
    }
    let (client, _conn) = connect(&h, "m", &h.token("mallory2", &["engineering"])).await;
    client.simple_query("select 1").await.unwrap();

    // An operator's block compares names the same way.
    let (status, _) = h
        .kill_sessions(
            &h.token("sam", &["security"]),
            json!({"subject": "Erin", "block_for": "1h"}),
        )
        .await;
    assert_eq!(status, 200);
    let (code, message) = connect_refused(&h, "erin", &h.token("erin", &["engineering"])).await;
    assert_eq!(code, "28000");
    assert!(message.contains("refused for another"), "{message}");

    // Where the IdP's subjects are case-sensitive ids, matching can be exact.
    let exact = Harness::with(Setup {
        identity_settings: "deny_subjects = [\"mallory\"]\ndeny_subjects_match = \"exact\"".into(),
        ..Setup::default()
    })
    .await;
    let (client, _conn) = connect(&exact, "m", &exact.token("Mallory", &["engineering"])).await;
    client.simple_query("select 1").await.unwrap();
    let (code, _) = connect_refused(&exact, "m", &exact.token("mallory", &["engineering"])).await;
    assert_eq!(code, "28000");
}

const ADMIN: &str = Harness::ADMIN_FOR_SECURITY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_ends_a_subjects_sessions_and_refuses_new_ones() {
    let h = Harness::with(Setup {
        extra_toml: ADMIN.into(),
        identity_settings: "deny_subjects = [\"mallory\"]".into(),
        ..Setup::default()
    })
    .await;
    let admin = h.admin_url();
    let (alice, alice_conn) = connect(&h, "alice", &h.token("alice", &["data-science"])).await;
    let (bob, _bob_conn) = connect(&h, "bob", &h.token("bob", &["engineering"])).await;
    alice.simple_query("select 1").await.unwrap();
    let http = h.admin_client();

    // Only members of an admin group may use the control port.
    let anonymous = http
        .post(format!("{admin}/v1/sessions/kill"))
        .json(&json!({"subject": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let outsider = http
        .post(format!("{admin}/v1/sessions/kill"))
        .bearer_auth(h.token("bob", &["engineering"]))
        .json(&json!({"subject": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(outsider.status(), 403);
    let listed: serde_json::Value = http
        .get(format!("{admin}/v1/sessions"))
        .bearer_auth(h.token("sam", &["security"]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let subjects: Vec<&str> = listed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, vec!["alice", "bob"]);

    let (_, killed) = h
        .kill_sessions(
            &h.token("sam", &["security"]),
            json!({"subject": "alice", "block_for": "1h"}),
        )
        .await;
    assert_eq!(killed["ended"], 1);
    // alice's idle session receives FATAL 57P01 at once; bob's carries on.
    let ended = alice_conn.await.unwrap().unwrap_err();
    let (code, message) = db_error(&ended);
    assert_eq!(code, "57P01");
    assert!(message.contains("revoked access for alice"), "{message}");
    assert!(alice.simple_query("select 1").await.is_err());
    bob.simple_query("select 1").await.unwrap();
    let again = h.refused("alice", &["data-science"], "app").await;
    let (code, message) = db_error(&again);
    assert_eq!(code, "28000");
    assert!(message.contains("refused for another"), "{message}");
    let denied = h.refused("mallory", &["engineering"], "app").await;
    assert!(
        db_error(&denied)
            .1
            .contains("revoked by the gateway's configuration")
    );

    let revocations: Vec<_> = h
        .audit_events("admin")
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::Admin(a) if a.action == "revocation" => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].actor.as_deref(), Some("sam"));
    assert!(revocations[0].detail.contains("ended 1 sessions of alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_log_in_with_client_credentials_tokens() {
    let h = Harness::with(Setup {
        extra_toml: "[[service_account]]\nclient_id = \"devin-ci\"\ngroups = [\"engineering\"]\n"
            .into(),
        ..Setup::default()
    })
    .await;
    let mut claims = h.issuer.claims("unused", &[]);
    claims.as_object_mut().unwrap().remove("sub");
    claims["client_id"] = json!("devin-ci");
    let (client, _conn) = connect(&h, "devin-ci", &h.issuer.sign(&claims)).await;
    let row = client.query_one("select current_user", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "gw_app");
    drop(client);
    match &h.audit_events("session_start").await[0] {
        Event::SessionStart(s) => {
            assert_eq!(s.subject, "devin-ci");
            assert_eq!(s.groups, vec!["engineering"]);
        }
        other => panic!("{other:?}"),
    }
}
