//! Every way a login is refused, with the SQLSTATE and the sentence the client sees.

use portcullis_sandbox::KeyKind;
use portcullis_sandbox::issuer::{SigningKey, hmac_token, unsigned_token};
use portcullis_tests::raw::RawClient;
use portcullis_tests::{Harness, Setup, db_error};
use portcullis_wire::startup::ProtocolVersion;
use serde_json::json;

async fn refusal(h: &Harness, db: &str, token: &str) -> (String, String) {
    let mut c = RawClient::connect(h.port()).await;
    let e = c
        .login(db, token)
        .await
        .expect_err("login should be refused");
    assert_eq!(
        e.severity(),
        Some(portcullis_wire::backend::Severity::Fatal)
    );
    (e.code().to_string(), e.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_reasons() {
    let h = Harness::start().await;
    let now = h.issuer.claims("x", &[])["iat"].as_u64().unwrap();

    let mut c = h.issuer.claims("alice", &["engineering"]);
    c["exp"] = json!(now - 240);
    assert_eq!(
        refusal(&h, "app", &h.issuer.sign(&c)).await,
        ("28000".into(), "token expired 4m ago".into())
    );

    let mut c = h.issuer.claims("alice", &["engineering"]);
    c["nbf"] = json!(now + 3600);
    let (code, msg) = refusal(&h, "app", &h.issuer.sign(&c)).await;
    assert_eq!(code, "28000");
    assert!(msg.starts_with("token is not valid yet"), "{msg}");

    let mut c = h.issuer.claims("alice", &["engineering"]);
    c["aud"] = json!("x");
    assert_eq!(
        refusal(&h, "app", &h.issuer.sign(&c)).await,
        (
            "28000".into(),
            "token audience 'x' is not 'portcullis'".into()
        )
    );

    let mut c = h.issuer.claims("alice", &["engineering"]);
    c["iss"] = json!("https://evil.example");
    let (code, msg) = refusal(&h, "app", &h.issuer.sign(&c)).await;
    assert_eq!(code, "28000");
    assert!(
        msg.contains("token issuer 'https://evil.example' is not"),
        "{msg}"
    );

    let claims = h.issuer.claims("alice", &["dba"]);
    let mut forged = SigningKey::generate(KeyKind::Rsa);
    forged.kid = h.issuer.active_key().kid.clone();
    assert_eq!(
        refusal(&h, "app", &forged.sign(&claims)).await,
        ("28P01".into(), "token signature is invalid".into())
    );

    let none = unsigned_token(&json!({"alg": "none", "typ": "JWT"}), &claims, b"");
    assert_eq!(
        refusal(&h, "app", &none).await,
        (
            "28P01".into(),
            "token algorithm 'none' is not allowed".into()
        )
    );

    let active = h.issuer.active_key();
    let hs = hmac_token(&active.kid, &claims, active.public_pem.as_bytes());
    assert_eq!(
        refusal(&h, "app", &hs).await,
        (
            "28P01".into(),
            "token algorithm 'HS256' is not allowed".into()
        )
    );

    let stranger = SigningKey::generate(KeyKind::Ec);
    let (code, msg) = refusal(&h, "app", &stranger.sign(&claims)).await;
    assert_eq!(code, "28P01");
    assert_eq!(
        msg,
        format!(
            "token key id '{}' is not published by the issuer",
            stranger.kid
        )
    );

    let (code, msg) = refusal(&h, "app", "").await;
    assert_eq!(code, "28P01");
    assert!(msg.starts_with("no access token was given"), "{msg}");

    let (code, msg) = refusal(&h, "app", "hunter2").await;
    assert_eq!(code, "28P01");
    assert!(msg.contains("not an access token"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_targets_and_unmapped_groups() {
    let h = Harness::start().await;
    let token = h.token("alice", &["engineering"]);
    assert_eq!(
        refusal(&h, "nosuchdb", &token).await,
        ("3D000".into(), "target \"nosuchdb\" does not exist".into())
    );
    let outsider = h.token("mallory", &["marketing", "sales"]);
    assert_eq!(
        refusal(&h, "app", &outsider).await,
        (
            "28000".into(),
            "none of your groups (marketing, sales) may use target \"app\"".into()
        )
    );
    // Role choice follows the file: the first role whose groups match wins.
    let both = h
        .connect_as("zoe", &["dba", "engineering"], "app")
        .await
        .unwrap();
    let row = both
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "gw_app");
    let dba = h.connect_as("dave", &["dba"], "app").await.unwrap();
    let row = dba
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "gw_admin");
    // tokio-postgres sees the same errors a driver reports.
    let err = h.refused("mallory", &["sales"], "app").await;
    assert_eq!(db_error(&err).0, "28000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_when_tls_is_required() {
    let h = Harness::with(Setup {
        require_tls: true,
        ..Setup::default()
    })
    .await;
    let (code, msg) = refusal(&h, "app", &h.token("alice", &["engineering"])).await;
    assert_eq!(code, "28000");
    assert!(msg.contains("requires TLS"), "{msg}");
    // Over TLS the same login works.
    let c = h
        .connect_tls("alice", &["engineering"], "app")
        .await
        .unwrap();
    let row = c
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    // The upstream leg is plain in this harness; the client leg is what TLS covers here.
    assert!(!row.get::<_, bool>(0));
    // psql with sslmode=verify-full against the gateway's certificate.
    let out = h
        .psql_command("alice", &["engineering"], "app")
        .env("PGSSLMODE", "verify-full")
        .env("PGHOST", "localhost")
        .args(["-A", "-t", "-c", "select 'over tls'"])
        .output()
        .await
        .unwrap();
    assert_eq!(portcullis_tests::stdout_ok(&out).trim(), "over tls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_negotiation_and_replication_refusal() {
    let h = Harness::start().await;
    let token = h.token("alice", &["engineering"]);
    // A 3.2 client with an unknown protocol option is told to use 3.0 and which option was
    // ignored, then logs in normally.
    let mut c = RawClient::connect(h.port()).await;
    let login = c
        .login_with(
            ProtocolVersion { major: 3, minor: 2 },
            &[
                ("user", "alice"),
                ("database", "app"),
                ("_pq_.future_option", "1"),
                ("application_name", "raw-test"),
            ],
            &token,
        )
        .await
        .unwrap();
    let npv = &login.before_auth[0];
    assert_eq!(npv.tag(), b'v');
    assert_eq!(&npv.body()[..8], &[0, 3, 0, 0, 0, 0, 0, 1]);
    assert!(npv.body().ends_with(b"_pq_.future_option\0"));
    // Startup parameters reach the server verbatim.
    assert!(
        login
            .parameters
            .contains(&("application_name".into(), "raw-test".into()))
    );

    let mut c = RawClient::connect(h.port()).await;
    let e = c
        .login_with(
            portcullis_wire::startup::PROTOCOL_3_0,
            &[
                ("user", "alice"),
                ("database", "app"),
                ("replication", "database"),
            ],
            &token,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "0A000");

    let mut c = RawClient::connect(h.port()).await;
    let e = c
        .login_with(
            ProtocolVersion { major: 2, minor: 0 },
            &[("user", "alice")],
            &token,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "0A000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_parameters_are_forwarded() {
    let h = Harness::start().await;
    let conninfo = format!(
        "{} password={} application_name=forwarded-app options='-c search_path=pg_catalog,public -c work_mem=7MB'",
        h.conninfo("alice", "app", "disable"),
        h.token("alice", &["engineering"])
    );
    let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = c
        .query_one(
            "select current_setting('application_name'), current_setting('search_path'), current_setting('work_mem')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "forwarded-app");
    assert_eq!(row.get::<_, String>(1), "pg_catalog,public");
    assert_eq!(row.get::<_, String>(2), "7MB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminate_before_the_startup_packet_closes_silently() {
    let h = Harness::start().await;
    // node-postgres's `connect(); end()`: a Terminate where the startup packet belongs. The
    // client keeps its end open: the gateway is the one that closes.
    let mut c = RawClient::connect(h.port()).await;
    c.send_raw(b"X\0\0\0\x04").await.unwrap();
    assert!(
        c.recv().await.is_none(),
        "the gateway closes without a word, as PostgreSQL does"
    );
    // Other garbage still gets its FATAL, and nothing of this is an authentication failure.
    let mut c = RawClient::connect(h.port()).await;
    c.send_raw(b"Y\0\0\0\x04").await.unwrap();
    let e = c.recv().await.expect("a FATAL for garbage");
    assert_eq!(e.tag(), b'E');
    assert!(h.audit_events("auth_failure").await.is_empty());
    h.client().await.simple_query("select 1").await.unwrap();
}
