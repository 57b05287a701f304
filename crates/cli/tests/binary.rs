//! The `portcullis` binary: serve with SIGHUP reload, refusing a bad configuration, and the
//! demo from start to Ctrl-C.

use std::process::Stdio;

use portcullis_tests::{Harness, stdout_ok};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Reads lines from `reader` until one contains `needle`; returns it.
async fn line_with<R: tokio::io::AsyncRead + Unpin>(
    lines: &mut tokio::io::Lines<BufReader<R>>,
    needle: &str,
) -> String {
    while let Some(line) = lines.next_line().await.expect("read output") {
        if line.contains(needle) {
            return line;
        }
    }
    panic!("output ended before a line containing {needle:?}");
}

fn signal(child: &Child, sig: i32) {
    let pid = child.id().expect("running") as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reloads_secrets_on_sighup() {
    let h = Harness::start().await;
    // Same cluster and issuer, but the binary's own listener and no file watching: only
    // SIGHUP may reload.
    let config = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace("watch_interval = \"200ms\"", "watch_interval = \"0s\"");
    let path = h.dir().join("serve.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .args(["--log", "info", "serve", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = line_with(&mut lines, "portcullis: listening on").await;
    let port: u16 = listening
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    let connect = |port: u16| {
        let conninfo = format!(
            "host=127.0.0.1 port={port} user=erin dbname=app sslmode=disable password={}",
            h.token("erin", &["engineering"])
        );
        async move {
            let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(c)
        }
    };
    let live = connect(port).await.unwrap();
    h.rotate_secret("gw_app", "rotated-by-sighup");
    // Not reloaded yet: the gateway still presents the old secret and the server refuses.
    let Err(err) = connect(port).await else {
        panic!("the old secret was accepted before the reload");
    };
    assert_eq!(err.as_db_error().unwrap().code().code(), "08006");
    signal(&child, libc::SIGHUP);
    line_with(&mut lines, "configuration reloaded").await;
    let fresh = connect(port).await.unwrap();
    assert_eq!(
        fresh
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    assert_eq!(
        live.query_one("select 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );

    signal(&child, libc::SIGTERM);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[listen]\nrequire_tls = false\n\n[identity]\nissuer = 42\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("line 5"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_and_cleans_up() {
    let work = tempfile::tempdir().unwrap();
    // Where the auditor's commands look without flags, from the working directory.
    let dir = work.path().join(".demo");
    let mut child = Command::new(BIN)
        // Saturday 03:00, outside the analysts' hours: the first query of the README works
        // at any hour, whenever the test runs.
        .args([
            "demo",
            "--port",
            "0",
            "--at",
            "2026-11-28T03:00:00Z",
            "--dir",
        ])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    line_with(&mut lines, "Portcullis demo is running").await;
    line_with(&mut lines, "Press Ctrl-C").await;
    // Private keys are their owner's alone.
    for key in ["audit.key", "gateway.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }

    let token = Command::new(BIN)
        .args(["dev-token", "alice", "--dir"])
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let token = stdout_ok(&token).trim().to_string();
    let env = std::fs::read_to_string(dir.join("demo.env")).unwrap();
    let mut psql = Command::new("psql");
    for line in env.lines() {
        let (k, v) = line.trim_start_matches("export ").split_once('=').unwrap();
        psql.env(k, v);
    }
    let out = psql
        .env("PGUSER", "alice")
        .env("PGPASSWORD", &token)
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "select current_user, count(*) > 0 from reporting.revenue_by_country",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(stdout_ok(&out).trim(), "analyst|t");
    // Unknown people need explicit groups.
    let out = Command::new(BIN)
        .args(["dev-token", "mallory", "--dir"])
        .arg(&dir)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown person"));

    // The demo's policies are in force: alice may not read customers, bob's writes need a
    // manager, nobody drops the database.
    let refused = |user: &'static str, sql: &'static str| {
        let env = env.clone();
        let dir = dir.clone();
        async move {
            let token = Command::new(BIN)
                .args(["dev-token", user, "--dir"])
                .arg(&dir)
                .output()
                .await
                .unwrap();
            let mut psql = Command::new("psql");
            for line in env.lines() {
                let (k, v) = line.trim_start_matches("export ").split_once('=').unwrap();
                psql.env(k, v);
            }
            let out = psql
                .env("PGUSER", user)
                .env("PGPASSWORD", stdout_ok(&token).trim())
                .args(["-X", "-c", sql])
                .output()
                .await
                .unwrap();
            assert!(!out.status.success(), "{user}: {sql} was allowed");
            String::from_utf8_lossy(&out.stderr).into_owned()
        }
    };
    assert!(
        refused("alice", "select * from customers")
            .await
            .contains("no policy permits select on table public.customers")
    );
    // The time rule, on purpose: the daily figures are the analysts' in business hours,
    // and the refusal says which permit's condition did not hold.
    let after_hours = refused("alice", "select * from reporting.daily_revenue").await;
    assert!(
        after_hours.contains(
            "HINT:  policy \"analysts-read-reporting-in-business-hours\" permits this only when its condition holds, and it does not now"
        ),
        "{after_hours}"
    );
    assert!(
        refused("dave", "drop database analytics")
            .await
            .contains("no-drop-database")
    );

    // policy explain works against the demo out of the box (it finds .demo/ in the current
    // directory; here the demo runs elsewhere, so name its configuration).
    let out = Command::new(BIN)
        .args([
            "policy",
            "explain",
            "--user",
            "alice",
            "--groups",
            "data-science",
            "--at",
            "2026-11-24T10:00",
            "--config",
        ])
        .arg(dir.join("portcullis.toml"))
        .arg("select * from daily_revenue")
        .output()
        .await
        .unwrap();
    let text = stdout_ok(&out);
    // The catalog resolves the unqualified name to the reporting schema.
    assert!(text.contains("table reporting.daily_revenue"), "{text}");
    assert!(text.contains("decision:  allow"), "{text}");

    // The audit trail: found, searched, replayed and verified with no flags at all.
    let auditor = |args: &'static [&'static str]| {
        let work = work.path().to_path_buf();
        async move {
            let out = Command::new(BIN)
                .args(args)
                .current_dir(work)
                .env_remove("PORTCULLIS_CONFIG")
                .output()
                .await
                .unwrap();
            stdout_ok(&out)
        }
    };
    let found = auditor(&["audit", "search", "--subject", "alice", "--json"]).await;
    let hits: Vec<serde_json::Value> = found
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let texts: Vec<&str> = hits
        .iter()
        .map(|h| h["event"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec![
            "select * from reporting.daily_revenue",
            "select * from customers",
            "select current_user, count(*) > 0 from reporting.revenue_by_country"
        ]
    );
    assert_eq!(hits[0]["event"]["decision"], "deny");
    let session = hits[2]["event"]["session"].as_str().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["replay", &session])
        .current_dir(work.path())
        .output()
        .await
        .unwrap();
    let replay = stdout_ok(&out);
    assert!(replay.contains(" current_user | ?column?"), "{replay}");
    assert!(replay.contains(" analyst      | t"), "{replay}");
    let verified = auditor(&["audit", "verify"]).await;
    assert!(verified.starts_with("ok: "), "{verified}");

    // The control port, for dave.
    let admin = env
        .lines()
        .find_map(|l| l.strip_prefix("export PORTCULLIS_ADMIN="))
        .expect("the control port in demo.env")
        .to_string();
    let dave = Command::new(BIN)
        .args(["dev-token", "dave", "--dir"])
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let ca = env
        .lines()
        .find_map(|l| l.strip_prefix("export PORTCULLIS_CA_FILE="))
        .expect("the demo's CA in demo.env");
    assert!(admin.starts_with("https://"), "{admin}");
    let listed = Command::new(BIN)
        .args([
            "sessions",
            "list",
            "--admin",
            &admin,
            "--ca-file",
            ca,
            "--token",
            stdout_ok(&dave).trim(),
        ])
        .output()
        .await
        .unwrap();
    stdout_ok(&listed);

    // The demo's approval flow, as it prints it: bob's write waits on his session, carol
    // approves it with the CLI, the row changes.
    let token_of = |who: &'static str| {
        let dir = dir.clone();
        async move {
            let out = Command::new(BIN)
                .args(["dev-token", who, "--dir"])
                .arg(&dir)
                .output()
                .await
                .unwrap();
            stdout_ok(&out).trim().to_string()
        }
    };
    let mut psql = Command::new("psql");
    for line in env.lines() {
        let (k, v) = line.trim_start_matches("export ").split_once('=').unwrap();
        psql.env(k, v);
    }
    psql.env("PGUSER", "bob")
        .env("PGPASSWORD", token_of("bob").await)
        .args([
            "-X",
            "-c",
            "update orders set status = 'refunded' where id = 7",
        ]);
    let held = tokio::spawn(async move { psql.output().await.unwrap() });
    let carol = token_of("carol").await;
    let approvals = |args: Vec<String>| {
        let (admin, ca, carol) = (admin.clone(), ca.to_string(), carol.clone());
        async move {
            Command::new(BIN)
                .arg("approvals")
                .args(args)
                .args(["--admin", &admin, "--ca-file", &ca, "--token", &carol])
                .output()
                .await
                .unwrap()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        let listed = approvals(vec!["list".into(), "--json".into()]).await;
        let list: serde_json::Value = serde_json::from_str(&stdout_ok(&listed)).unwrap();
        if let Some(id) = list[0]["id"].as_str() {
            assert_eq!(list[0]["subject"], "bob");
            break id.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "bob's write never waited for approval"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let approved = approvals(vec!["approve".into(), id.clone()]).await;
    assert!(
        stdout_ok(&approved).starts_with(&format!("approved {id}: update orders")),
        "{approved:?}"
    );
    let out = held.await.unwrap();
    assert_eq!(stdout_ok(&out).trim(), "UPDATE 1");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("statement held for approval"),
        "{out:?}"
    );

    signal(&child, libc::SIGINT);
    assert!(child.wait().await.unwrap().success());
    assert!(!dir.exists(), "the demo left its directory behind");
}

fn repo_policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_reports_file_line_and_column() {
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(repo_policies())
        .output()
        .await
        .unwrap();
    assert!(stdout_ok(&out).starts_with("ok: "), "{out:?}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit(principal, action, resource);\n\npermit(principal action, resource);\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}:3:18:", bad.display())),
        "{stderr}"
    );
    std::fs::write(
        &bad,
        "permit(principal, action == Action::\"selekt\", resource);\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(":1:") && stderr.contains("selekt"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_explain_shows_facts_checks_and_decision() {
    let explain = |sql: &'static str, extra: &'static [&'static str]| async move {
        Command::new(BIN)
            .args(["policy", "explain", "--policies"])
            .arg(repo_policies())
            .args([
                "--user",
                "alice",
                "--groups",
                "data-science",
                "--at",
                "2026-11-24T10:00",
            ])
            .args(extra)
            .arg(sql)
            .output()
            .await
            .unwrap()
    };
    let out = explain("select email from customers", &[]).await;
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    // The answer alone: no log lines ("policies loaded …") around it.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("INFO") && !text.contains("INFO"),
        "{stderr}{text}"
    );
    assert!(
        text.contains("select:    customers (columns: email)"),
        "{text}"
    );
    assert!(text.contains("forbidden by mask-customer-email"), "{text}");
    assert!(
        text.contains(
            "decision:  permission denied: no policy permits select on table public.customers"
        ),
        "{text}"
    );

    let out = explain("select * from reporting.daily_revenue", &["--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["decision"]["outcome"], "allow");
    assert_eq!(json[0]["facts"]["kind"], "select");
    let checks = json[0]["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["policies"][0] == "analysts-read-reporting-in-business-hours")
    );

    // Outside business hours the same statement is refused.
    let out = Command::new(BIN)
        .args(["policy", "explain", "--policies"])
        .arg(repo_policies())
        .args([
            "--user",
            "alice",
            "--groups",
            "data-science",
            "--at",
            "2026-11-28T10:00",
            "select 1 from reporting.daily_revenue",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // It says which permit's condition did not hold, and what the condition is.
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "condition not met: analysts-read-reporting-in-business-hours: when { context.weekday != \"saturday\""
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "hint:      policy \"analysts-read-reporting-in-business-hours\" permits this only when its condition holds"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_policies_that_do_not_validate() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/bad.cedar"),
        "permit(principal, action, resource)\nwhen { context.hour == \"nine\" };\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("secret"), "x").unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        "[listen]\naddress = \"127.0.0.1:0\"\nrequire_tls = false\n\n[identity]\nissuer = \"https://idp.example.com\"\n\n\
         [policy]\npaths = [\"policies\"]\n\n[audit]\nstore = \"audit.db\"\nsigning_key = \"file:audit.key\"\n\n[[target]]\nname = \"t\"\nhost = \"127.0.0.1\"\ndatabase = \"t\"\ntls = \"disable\"\n\
         [[target.role]]\nname = \"r\"\nsecret = \"file:secret\"\ngroups = [\"g\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.cedar:2:"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_killed_from_the_command_line() {
    let h = Harness::with(portcullis_tests::Setup {
        extra_toml: "[admin]\naddress = \"127.0.0.1:0\"\ngroups = [\"security\"]\n".into(),
        ..Default::default()
    })
    .await;
    let admin = h.admin_url();
    let alice = h
        .connect_as("alice", &["data-science"], "app")
        .await
        .unwrap();
    alice.simple_query("select 1").await.unwrap();
    let ca = h.certs.ca.clone();
    let run = |args: Vec<String>, token: String| {
        let ca = ca.clone();
        async move {
            Command::new(BIN)
                .arg("sessions")
                .args(args)
                .env("PORTCULLIS_TOKEN", token)
                .env("PORTCULLIS_CA_FILE", ca)
                .output()
                .await
                .unwrap()
        }
    };
    let sam = h.token("sam", &["security"]);
    let listed = run(
        vec!["list".into(), "--admin".into(), admin.clone()],
        sam.clone(),
    )
    .await;
    let text = stdout_ok(&listed);
    assert!(
        text.contains("alice (data-science)") && text.contains("to app as gw_app"),
        "{text}"
    );
    let refused = run(
        vec!["list".into(), "--admin".into(), admin.clone()],
        h.token("bob", &["engineering"]),
    )
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not in an admin group"));
    let killed = run(
        vec![
            "kill".into(),
            "--admin".into(),
            admin.clone(),
            "--subject".into(),
            "alice".into(),
            "--block-for".into(),
            "10m".into(),
        ],
        sam,
    )
    .await;
    assert_eq!(stdout_ok(&killed).trim(), "ended 1 sessions of alice");
    portcullis_tests::wait_until("alice's session to end", || async { alice.is_closed() }).await;
}
