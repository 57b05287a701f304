//! People and programs against a real OpenID Provider (the certified `oidc-provider`, run
//! by tests/oidc/op.js): `portcullis login` through the device flow with the user's steps
//! driven over HTTP, `portcullis token` and its refresh, `portcullis connect` for tools
//! without a token, a service account's client-credentials token, and the issuer going
//! away.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use portcullis_tests::{Harness, Setup, stdout_ok};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// The OpenID Provider, stopped when dropped.
struct Provider {
    child: Child,
    url: String,
}

async fn provider() -> Provider {
    let mut child = Command::new("node")
        .arg(oidc_dir().join("op.js"))
        .arg("0")
        .env("OP_DEVICE_INTERVAL", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node (scripts/install-deps installs the provider)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("op.js output");
    let url = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("op.js said {line:?}"))
        .to_string();
    Provider { child, url }
}

/// A `portcullis` command with its own token cache.
fn cli(config_home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("XDG_CONFIG_HOME", config_home)
        .env_remove("PORTCULLIS_ISSUER")
        .env_remove("PORTCULLIS_CONFIG");
    c
}

fn psql(port: u16, user: &str, password: Option<&str>, sslmode: &str) -> Command {
    let mut c = Command::new("psql");
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", port.to_string())
        .env("PGUSER", user)
        .env("PGDATABASE", "app")
        .env("PGSSLMODE", sslmode)
        .env("PGCONNECT_TIMEOUT", "10")
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "select current_user",
        ]);
    if let Some(p) = password {
        c.env("PGPASSWORD", p);
    }
    c
}

/// `portcullis login`, with the person's browser steps done by tests/oidc/device-user.js.
async fn login(op: &Provider, home: &Path, who: &str) {
    let mut child = cli(home)
        .args([
            "login",
            "--issuer",
            &op.url,
            "--client-id",
            "portcullis-cli",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (uri, code) = loop {
        let line = lines.next_line().await.unwrap().expect("login output");
        if let Some(rest) = line.strip_prefix("To log in, open ") {
            let (uri, code) = rest.split_once(" and enter the code ").unwrap();
            break (uri.to_string(), code.to_string());
        }
    };
    let user = Command::new("node")
        .arg(oidc_dir().join("device-user.js"))
        .args([&uri, &code, who])
        .output()
        .await
        .unwrap();
    stdout_ok(&user);
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(child.wait().await.unwrap().success(), "login failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_log_in_with_the_device_flow_and_programs_with_client_credentials() {
    let mut op = provider().await;
    let h = Harness::with(Setup {
        issuer_url: Some(op.url.clone()),
        extra_toml: "[[service_account]]\nclient_id = \"devin-ci\"\ngroups = [\"engineering\"]\n"
            .into(),
        ..Setup::default()
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    login(&op, home.path(), "alice").await;
    let cache = home.path().join("portcullis/tokens.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the token cache is the user's alone");
    }

    // `portcullis token` for scripts; psql with it as the password.
    let token = stdout_ok(&cli(home.path()).arg("token").output().await.unwrap())
        .trim()
        .to_string();
    let out = psql(h.port(), "alice", Some(&token), "require")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");

    // Refreshed when it would not last long enough.
    let refreshed = stdout_ok(
        &cli(home.path())
            .args(["token", "--min-valid", "1h"])
            .output()
            .await
            .unwrap(),
    )
    .trim()
    .to_string();
    assert_ne!(
        refreshed, token,
        "a new access token from the refresh token"
    );
    let out = psql(h.port(), "alice", Some(&refreshed), "require")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");
    let env = stdout_ok(
        &cli(home.path())
            .args(["token", "--print-env"])
            .output()
            .await
            .unwrap(),
    );
    assert!(
        env.contains(&format!("export PGPASSWORD='{refreshed}'")),
        "{env}"
    );

    // `portcullis connect`: a tool with no token and no password.
    let local_port = portcullis_sandbox::free_port().unwrap();
    let mut connect = cli(home.path())
        .args([
            "connect",
            "app",
            "--port",
            &local_port.to_string(),
            "--gateway",
        ])
        .arg(format!("127.0.0.1:{}", h.port()))
        .arg("--ca-file")
        .arg(&h.certs.ca)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(connect.stderr.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("connect output");
    assert!(line.contains("listening on 127.0.0.1:"), "{line}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let out = psql(local_port, "alice", None, "disable")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");
    // Libpq's own TLS request is declined locally; the gateway leg is TLS regardless.
    let out = psql(local_port, "alice", None, "prefer")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");

    // A program: its client-credentials token, its client id as the subject.
    let http = reqwest::Client::new();
    let cc: serde_json::Value = http
        .post(format!("{}/token", op.url))
        .basic_auth("devin-ci", Some("devin-ci-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ci_token = cc["access_token"].as_str().unwrap().to_string();
    let out = psql(h.port(), "devin-ci", Some(&ci_token), "require")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");
    let starts = h.audit_events("session_start").await;
    let ci = starts.iter().find_map(|e| match e {
        portcullis_audit::Event::SessionStart(s) if s.subject == "devin-ci" => Some(s),
        _ => None,
    });
    match ci {
        Some(s) => assert!(
            s.groups.contains(&"engineering".to_string()),
            "{:?}",
            s.groups
        ),
        None => panic!("no session of devin-ci in {starts:?}"),
    }

    // The issuer goes away: tokens signed with keys the gateway has cached still work
    // until they expire; a new login says clearly what is wrong.
    op.child.kill().await.unwrap();
    let out = psql(h.port(), "alice", Some(&refreshed), "require")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");
    let failed = cli(home.path())
        .args([
            "login",
            "--issuer",
            &op.url,
            "--client-id",
            "portcullis-cli",
        ])
        .output()
        .await
        .unwrap();
    assert!(!failed.status.success());
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(
        said.contains("cannot reach the identity provider"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_issuer_runs_the_device_flow_too() {
    let h = Harness::start().await;
    let home = tempfile::tempdir().unwrap();
    let mut child = cli(home.path())
        .args([
            "login",
            "--issuer",
            h.issuer.url(),
            "--client-id",
            "portcullis-demo",
            "--print-env",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (uri, code) = loop {
        let line = lines.next_line().await.unwrap().expect("login output");
        if let Some(rest) = line.strip_prefix("To log in, open ") {
            let (uri, code) = rest.split_once(" and enter the code ").unwrap();
            break (uri.to_string(), code.to_string());
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The page offers the sample people; picking bob approves the code as bob.
    let http = reqwest::Client::new();
    let page = http
        .get(format!("{uri}?user_code={code}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("bob (engineering)"), "{page}");
    let approved = http
        .post(&uri)
        .form(&[("user_code", code.as_str()), ("person", "bob")])
        .send()
        .await
        .unwrap();
    assert!(approved.status().is_success());
    assert!(child.wait().await.unwrap().success(), "login failed");
    let mut printed = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut printed)
        .await
        .unwrap();
    let token = stdout_ok(&cli(home.path()).arg("token").output().await.unwrap())
        .trim()
        .to_string();
    assert!(
        printed.contains(&format!("export PGPASSWORD='{token}'")),
        "{printed}"
    );
    let out = psql(h.port(), "bob", Some(&token), "require")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");
    let refreshed = stdout_ok(
        &cli(home.path())
            .args(["token", "--min-valid", "1h"])
            .output()
            .await
            .unwrap(),
    )
    .trim()
    .to_string();
    assert_ne!(refreshed, token);
    let out = psql(h.port(), "bob", Some(&refreshed), "require")
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "gw_app");
    // A used code is gone.
    let again = http
        .post(&uri)
        .form(&[("user_code", code.as_str()), ("person", "bob")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
}
