//! The upstream leg: TLS (require and verify-full), SCRAM with channel binding, MD5,
//! cleartext and trust, and the same session semantics over each.

use std::sync::{Arc, Mutex};

use portcullis_gateway::decision::{Decider, SessionInfo, Statement, Verdict};
use portcullis_tests::{Harness, Setup, UpstreamTls, stdout_ok};

async fn ssl_and_user(h: &Harness, db: &str, groups: &[&str]) -> (bool, String) {
    let c = h.connect_tls("erin", groups, db).await.expect("connect");
    let row = c
        .query_one(
            "select ssl, current_user::text from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_legs() {
    for mode in [UpstreamTls::Require, UpstreamTls::VerifyFull] {
        let h = Harness::with(Setup {
            require_tls: true,
            upstream_tls: mode,
            ..Setup::default()
        })
        .await;
        // Client leg TLS (tokio-postgres with rustls) and upstream leg TLS.
        assert_eq!(
            ssl_and_user(&h, "app", &["engineering"]).await,
            (true, "gw_app".into())
        );
        // libpq (psql) over TLS too; pg_hba rejects plaintext TCP, so the upstream leg
        // can only be TLS.
        let out = h
            .psql_command("erin", &["engineering"], "app")
            .env("PGSSLMODE", "require")
            .args([
                "-A",
                "-t",
                "-c",
                "select count(*) from pg_stat_ssl where ssl",
            ])
            .output()
            .await
            .unwrap();
        assert!(stdout_ok(&out).trim().parse::<i32>().unwrap() >= 1);
    }
}

/// Records how each session logged in upstream.
#[derive(Default)]
struct RecordAuth(Mutex<Vec<&'static str>>);

impl Decider for RecordAuth {
    fn decide(&self, session: &SessionInfo, _s: &Statement<'_>) -> Verdict {
        self.0.lock().unwrap().push(session.upstream_auth);
        Verdict::allow()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_uses_channel_binding_over_tls() {
    for (mode, expected) in [
        (UpstreamTls::VerifyFull, "SCRAM-SHA-256-PLUS"),
        (UpstreamTls::Disable, "SCRAM-SHA-256"),
    ] {
        let record = Arc::new(RecordAuth::default());
        let h = Harness::with(Setup {
            upstream_tls: mode,
            decider: Some(record.clone()),
            ..Setup::default()
        })
        .await;
        let c = h.client().await;
        c.query_one("select 1", &[]).await.unwrap();
        assert_eq!(record.0.lock().unwrap().last().copied(), Some(expected));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_cleartext_and_trust_upstream_methods() {
    let h = Harness::with(Setup {
        hba: vec![
            "host all md5_user 127.0.0.1/32 md5".into(),
            "host all clear_user 127.0.0.1/32 password".into(),
            "host all trust_user 127.0.0.1/32 trust".into(),
        ],
        extra_toml: r#"
[[target]]
name = "methods"
host = "127.0.0.1"
port = {pg_port}
database = "app"
tls = "disable"
[[target.role]]
name = "md5_user"
secret = "file:secrets/md5_user"
groups = ["md5"]
[[target.role]]
name = "clear_user"
secret = "file:secrets/clear_user"
groups = ["clear"]
[[target.role]]
name = "trust_user"
secret = "file:secrets/trust_user"
groups = ["trust"]
"#
        .into(),
        files: vec![
            ("secrets/md5_user".into(), "md5-secret".into()),
            ("secrets/clear_user".into(), "clear-secret".into()),
            ("secrets/trust_user".into(), "unused".into()),
        ],
        ..Setup::default()
    })
    .await;
    h.direct(
        "postgres",
        "set password_encryption = 'md5';
         create role md5_user login password 'md5-secret';
         reset password_encryption;
         create role clear_user login password 'clear-secret';
         create role trust_user login;",
    );
    for (group, role) in [
        ("md5", "md5_user"),
        ("clear", "clear_user"),
        ("trust", "trust_user"),
    ] {
        let c = h
            .connect_as("erin", &[group], "methods")
            .await
            .unwrap_or_else(|e| panic!("{role}: {e:?}"));
        let row = c.query_one("select current_user::text", &[]).await.unwrap();
        assert_eq!(row.get::<_, String>(0), role);
    }
}
