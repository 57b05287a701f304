//! The auditor's commands against a real gateway's trail: verify (and tampering caught),
//! search filters, replay, export, policy test over history, and no lost event after
//! `kill -9` of a gateway under load.

use std::collections::BTreeSet;
use std::process::Stdio;

use portcullis_tests::{Harness, PERMIT_ALL, SAMPLE_SCHEMA, Setup, stdout_ok};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const FORBID_CUSTOMERS: &str = r#"@id("no-customers-for-engineers")
forbid(principal in Group::"engineering", action, resource == Table::"public.customers");
"#;

async fn harness() -> Harness {
    let h = Harness::with(Setup {
        policies: vec![
            ("permit-all.cedar".into(), PERMIT_ALL.into()),
            ("customers.cedar".into(), FORBID_CUSTOMERS.into()),
        ],
        audit_settings: "record_results = true".into(),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    h
}

async fn portcullis(h: &Harness, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&h.config_path)
        .output()
        .await
        .expect("run portcullis")
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    stdout_ok(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn texts(hits: &[serde_json::Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["event"]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_verify_search_replay_export_and_test_policies() {
    let h = harness().await;
    let erin = h
        .psql_command("erin", &["engineering"], "app")
        .args([
            "-c",
            "select id, amount from orders where id = 1",
            "-c",
            "update orders set status = 'refunded' where id = 2",
        ])
        .output()
        .await
        .unwrap();
    stdout_ok(&erin);
    let refused = h
        .psql_command("erin", &["engineering"], "app")
        .args(["-c", "select email from customers where id = 3"])
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let alice = h
        .psql_command("alice", &["data-science"], "app")
        .args(["-c", "select count(*) from customers"])
        .output()
        .await
        .unwrap();
    stdout_ok(&alice);
    h.gateway.flush_audit().await;

    // Verify: intact.
    let ok = portcullis(&h, &["audit", "verify"]).await;
    let said = stdout_ok(&ok);
    assert!(
        said.starts_with("ok: ") && said.contains("every link holds"),
        "{said}"
    );

    // Search: each filter narrows to what it names; newest first.
    let all = json_lines(&portcullis(&h, &["audit", "search", "--json"]).await);
    assert_eq!(
        texts(&all),
        vec![
            "select count(*) from customers",
            "select email from customers where id = 3",
            "update orders set status = 'refunded' where id = 2",
            "select id, amount from orders where id = 1",
        ]
    );
    for (args, expected) in [
        (
            vec!["--subject", "alice"],
            vec!["select count(*) from customers"],
        ),
        (
            vec!["--table", "public.customers", "--decision", "deny"],
            vec!["select email from customers where id = 3"],
        ),
        (
            vec!["--kind", "update"],
            vec!["update orders set status = 'refunded' where id = 2"],
        ),
        (
            vec!["--text", "amount orders"],
            vec!["select id, amount from orders where id = 1"],
        ),
        (
            vec!["--sqlstate", "42501"],
            vec!["select email from customers where id = 3"],
        ),
        (
            vec!["--group", "data-science"],
            vec!["select count(*) from customers"],
        ),
        (vec!["--since", "1h", "--target", "nowhere"], vec![]),
        (vec!["--until", "2020-01-01"], vec![]),
    ] {
        let mut a = vec!["audit", "search", "--json"];
        a.extend(&args);
        let hits = json_lines(&portcullis(&h, &a).await);
        assert_eq!(texts(&hits), expected, "{args:?}");
    }
    let table = stdout_ok(&portcullis(&h, &["audit", "search", "--subject", "erin"]).await);
    assert!(
        table.contains("deny  refused 42501  select email from customers where id = 3"),
        "{table}"
    );
    assert!(table.contains("allow  UPDATE 1  update orders"), "{table}");

    // Replay the session with the update: its result table and its count.
    let update = &all[2];
    let session = update["event"]["session"].as_str().unwrap();
    let replay = stdout_ok(&portcullis(&h, &["replay", session]).await);
    assert!(replay.contains("erin (engineering)"), "{replay}");
    assert!(
        replay.contains("   id | amount\n  ----+--------\n   1  | 10\n  (1 row)\n"),
        "{replay}"
    );
    assert!(replay.contains("  UPDATE 1 ("), "{replay}");
    let as_json: serde_json::Value = serde_json::from_str(&stdout_ok(
        &portcullis(&h, &["replay", session, "--json"]).await,
    ))
    .unwrap();
    assert_eq!(as_json["steps"].as_array().unwrap().len(), 2);

    // Export: one line per event, each with its hash.
    let file = h.dir().join("export.jsonl");
    let out = portcullis(&h, &["audit", "export", "--output", file.to_str().unwrap()]).await;
    stdout_ok(&out);
    let exported = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut store = h.audit().await;
    let (events, _, _) = store.extent().await.unwrap();
    assert_eq!(lines.len() as u64, events);
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));
    let recent = portcullis(&h, &["audit", "export", "--since", "1h"]).await;
    assert_eq!(stdout_ok(&recent).lines().count() as u64, events);
    let future = portcullis(&h, &["audit", "export", "--since", "2099-01-01"]).await;
    assert_eq!(stdout_ok(&future).lines().count(), 0);

    // Policy test: a new set that forbids engineers the orders table and drops the
    // customers rule.
    let new = h.dir().join("new-policies");
    std::fs::create_dir(&new).unwrap();
    std::fs::write(new.join("permit-all.cedar"), PERMIT_ALL).unwrap();
    std::fs::write(
        new.join("orders.cedar"),
        "@id(\"no-orders-for-engineers\")\nforbid(principal in Group::\"engineering\", action, resource == Table::\"public.orders\");\n",
    )
    .unwrap();
    let tested = portcullis(
        &h,
        &[
            "policy",
            "test",
            "--policies",
            new.to_str().unwrap(),
            "--since",
            "1d",
            "--json",
        ],
    )
    .await;
    let report: serde_json::Value = serde_json::from_str(&stdout_ok(&tested)).unwrap();
    assert_eq!(report["decided"], 4);
    let changes: BTreeSet<(String, String, String)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["text"].as_str().unwrap().to_string(),
                c["to"].as_str().unwrap().to_string(),
                c["policies"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        BTreeSet::from([
            (
                "select id, amount from orders where id = 1".to_string(),
                "deny".to_string(),
                "[\"no-orders-for-engineers\"]".to_string()
            ),
            (
                "update orders set status = 'refunded' where id = 2".to_string(),
                "deny".to_string(),
                "[\"no-orders-for-engineers\"]".to_string()
            ),
            (
                "select email from customers where id = 3".to_string(),
                "allow".to_string(),
                "[\"permit-all#0\"]".to_string()
            ),
        ])
    );
    let human = portcullis(
        &h,
        &[
            "policy",
            "test",
            "--policies",
            new.to_str().unwrap(),
            "--check",
        ],
    )
    .await;
    assert_eq!(human.status.code(), Some(2), "--check fails on changes");
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("newly denied: 2 statements"), "{text}");
    assert!(
        text.contains("by no-orders-for-engineers:\n    erin: 2"),
        "{text}"
    );
    assert!(text.contains("newly allowed: 1 statement"), "{text}");

    // Tampering: rewrite what erin ran; verify names that event.
    let location = format!("sqlite:{}", h.dir().join("audit.db").display());
    let tampered_seq: i64 = {
        let portcullis_audit::Store::Sqlite(s) = portcullis_audit::Store::open(&location, None)
            .await
            .unwrap()
        else {
            unreachable!()
        };
        let seq = s
            .connection()
            .query_row(
                "select seq from audit_events where body like '%update orders%' and kind = 'statement'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        s.connection()
            .execute(
                "update audit_events set body = replace(body, 'refunded', 'shipped') where seq = ?1",
                [seq],
            )
            .unwrap();
        seq
    };
    let broken = portcullis(&h, &["audit", "verify"]).await;
    assert_eq!(broken.status.code(), Some(1));
    let said = String::from_utf8_lossy(&broken.stdout);
    assert!(
        said.contains(&format!(
            "BROKEN at event {tampered_seq}: event {tampered_seq} was changed"
        )),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_event_of_a_statement_that_ran() {
    let h = Harness::start().await;
    h.direct(
        "app",
        "create table landed (id int primary key); alter table landed owner to gw_app;",
    );
    let config = std::fs::read_to_string(&h.config_path)
        .unwrap()
        .replace("sqlite:audit.db", "sqlite:killed.db")
        .replace("watch_interval = \"200ms\"", "watch_interval = \"0s\"");
    let path = h.dir().join("killed.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines.next_line().await.unwrap().expect("serve output");
        if let Some(addr) = line.strip_prefix("portcullis: listening on ") {
            break addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Sixteen clients insert distinct ids as fast as they can.
    let mut tasks = Vec::new();
    for c in 0..16 {
        let conninfo = format!(
            "host=127.0.0.1 port={port} user=erin dbname=app sslmode=disable password={}",
            h.token("erin", &["engineering"])
        );
        tasks.push(tokio::spawn(async move {
            let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            for i in 0.. {
                let id = c * 1_000_000 + i;
                if client
                    .simple_query(&format!("insert into landed values ({id})"))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }));
    }
    let direct = h.direct_client("app").await;
    portcullis_tests::wait_until("some inserts to land", || async {
        direct
            .query_one("select count(*) from landed", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
            >= 300
    })
    .await;
    let pid = child.id().unwrap() as i32;
    // SAFETY: killing our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    child.wait().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }

    let landed: BTreeSet<i32> = direct
        .query("select id from landed", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let location = format!("sqlite:{}", h.dir().join("killed.db").display());
    let mut store = portcullis_audit::Store::open(&location, None)
        .await
        .unwrap();
    let audited: BTreeSet<i32> = store
        .search(&portcullis_audit::Filter {
            text: Some("insert landed".into()),
            limit: Some(u32::MAX),
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter_map(|hit| match &hit.event {
            portcullis_audit::Event::Statement(s) => s
                .text
                .trim_start_matches("insert into landed values (")
                .trim_end_matches(')')
                .parse()
                .ok(),
            _ => None,
        })
        .collect();
    assert!(landed.len() >= 300);
    let missing: Vec<_> = landed.difference(&audited).collect();
    assert!(
        missing.is_empty(),
        "{} of {} statements that reached PostgreSQL have no event: {missing:?}",
        missing.len(),
        landed.len()
    );
    // The chain itself survived the crash.
    let key = h.audit_key();
    let v = portcullis_audit::verify(&mut store, &key, |_, _| {})
        .await
        .unwrap();
    assert!(v.is_intact(), "{v:?}");
}
