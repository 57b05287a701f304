//! The audit trail through real clients: every event kind is written and reads back,
//! statements carry their decision and parameters, results and recorded rows follow,
//! a store that cannot write refuses statements until it recovers, and the chain verifies.

use portcullis_audit::replay::Session;
use portcullis_audit::{Event, Filter, StatementEvent, Store, verify};
use portcullis_sandbox::{PgCluster, PgOptions};
use portcullis_tests::{Harness, PERMIT_ALL, SAMPLE_SCHEMA, Setup, db_error, wait_until};

const FORBID_CUSTOMERS: &str = r#"@id("no-customers-for-engineers")
forbid(principal in Group::"engineering", action, resource == Table::"public.customers");
"#;

async fn harness(audit_settings: &str) -> Harness {
    let h = Harness::with(Setup {
        policies: vec![
            ("permit-all.cedar".into(), PERMIT_ALL.into()),
            ("customers.cedar".into(), FORBID_CUSTOMERS.into()),
        ],
        audit_settings: audit_settings.into(),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    h
}

fn statements(events: &[Event]) -> Vec<&StatementEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Statement(s) => Some(s),
            _ => None,
        })
        .collect()
}

async fn all_events(store: &mut Store) -> Vec<Event> {
    store
        .records(1, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| serde_json::from_str(&s.record.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_event_is_written_and_reads_back() {
    let h = harness("").await;
    let client = h.client().await;
    client
        .batch_execute("select 1; select count(*) from orders")
        .await
        .unwrap();
    let rows = client
        .query("select id, amount from orders where id = $1", &[&7i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let refused = client
        .simple_query("select email from customers")
        .await
        .unwrap_err();
    assert_eq!(db_error(&refused).0, "42501");
    let failing = client.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(db_error(&failing).0, "22012");
    drop(client);
    let bad = h.refused("mallory", &["nobody"], "app").await;
    assert_eq!(db_error(&bad).0, "28000");
    h.gateway.reload().unwrap();
    wait_until("the session's end to be audited", || async {
        let mut store = h.audit().await;
        all_events(&mut store)
            .await
            .iter()
            .any(|e| matches!(e, Event::SessionEnd(_)))
    })
    .await;

    let mut store = h.audit().await;
    let events = all_events(&mut store).await;
    let kinds: std::collections::BTreeSet<&str> = events.iter().map(Event::kind).collect();
    for kind in [
        "admin",
        "session_start",
        "statement",
        "result",
        "session_end",
        "auth_failure",
    ] {
        assert!(kinds.contains(kind), "no {kind} event in {kinds:?}");
    }
    let start = events
        .iter()
        .find_map(|e| match e {
            Event::SessionStart(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(start.subject, "erin");
    assert_eq!(start.groups, vec!["engineering"]);
    assert_eq!(start.target, "app");
    assert_eq!(start.upstream_role, "gw_app");
    assert!(start.issuer.starts_with("http://127.0.0.1"));
    assert!(start.token_expires.is_some());

    let st = statements(&events);
    let texts: Vec<&str> = st.iter().map(|s| s.text.as_str()).collect();
    assert!(texts.contains(&"select 1"), "{texts:?}");
    assert!(texts.contains(&"select count(*) from orders"), "{texts:?}");
    let bound = st
        .iter()
        .find(|s| s.origin == "bind")
        .expect("the prepared query's execution");
    assert_eq!(bound.text, "select id, amount from orders where id = $1");
    // tokio-postgres sends parameters in binary.
    assert_eq!(bound.parameters, vec![Some("\\x00000007".to_string())]);
    assert_eq!(bound.tables, vec!["orders"]);
    assert_eq!(bound.search_path, vec!["$user", "public"]);
    assert_eq!(bound.decision, "allow");
    assert_eq!(bound.policies, vec!["permit-all#0".to_string()]);
    let denied = st.iter().find(|s| s.decision == "deny").unwrap();
    assert_eq!(denied.text, "select email from customers");
    assert_eq!(denied.sqlstate.as_deref(), Some("42501"));
    assert_eq!(denied.policies, vec!["no-customers-for-engineers"]);
    // Numbers are the session's own, in order.
    let seqs: Vec<u64> = st
        .iter()
        .filter(|s| s.subject == "erin")
        .map(|s| s.seq)
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    let results: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Result(r) => Some(r),
            _ => None,
        })
        .collect();
    let of = |text: &str| {
        let seq = st.iter().find(|s| s.text == text).unwrap().seq;
        results.iter().find(|r| r.seq == seq).copied()
    };
    assert_eq!(of("select count(*) from orders").unwrap().rows, Some(1));
    assert_eq!(
        of("select 1/0").unwrap().sqlstate.as_deref(),
        Some("22012"),
        "the server's error is the statement's result"
    );
    assert!(
        of("select email from customers").is_none(),
        "refused: never ran"
    );
    let bound_result = results.iter().find(|r| r.seq == bound.seq).unwrap();
    assert_eq!(bound_result.command.as_deref(), Some("SELECT 1"));

    let end = events
        .iter()
        .find_map(|e| match e {
            Event::SessionEnd(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(end.statements, seqs.len() as u64);
    assert!(end.bytes_from_client > 0 && end.bytes_to_client > 0);
    let failure = events
        .iter()
        .find_map(|e| match e {
            Event::AuthFailure(f) => Some(f),
            _ => None,
        })
        .unwrap();
    assert_eq!(failure.subject.as_deref(), Some("mallory"));
    assert_eq!(failure.sqlstate, "28000");
    assert!(!failure.reason.contains("eyJ"), "never the token");
    let admin: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Admin(a) => Some(a.action.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(admin, vec!["gateway_start", "config_reload"]);

    let v = verify(&mut store, &h.audit_key(), |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.unsigned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_sessions_replay_as_they_happened() {
    let h = harness("record_results = true\nrecord_statement_bytes = 200").await;
    let out = h
        .psql(&[
            "-c",
            "select id, amount from orders where id <= 2 order by id",
            "-c",
            "update orders set status = 'shipped' where id = 3",
            "-c",
            "select repeat('x', 50) as filler from generate_series(1, 10)",
            "-c",
            "select id, name, email from customers order by id",
        ])
        .await;
    assert!(!out.status.success(), "the customers query is refused");
    let mut store = h.audit().await;
    let hits = store
        .search(&Filter {
            subject: Some("erin".into()),
            ..Filter::default()
        })
        .await
        .unwrap();
    let session = match &hits[0].event {
        Event::Statement(s) => s.session.clone(),
        other => panic!("{other:?}"),
    };
    let records: Vec<_> = store
        .session(&session)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record)
        .collect();
    let replay = Session::from_records(&session, &records).render();
    assert!(
        replay.contains("   id | amount\n  ----+--------\n   1  | 10\n   2  | 20\n  (2 rows)\n"),
        "{replay}"
    );
    assert!(replay.contains("  SELECT 2 ("), "{replay}");
    assert!(
        replay.contains("decision: deny (policies: no-customers-for-engineers)"),
        "{replay}"
    );
    assert!(replay.contains("  UPDATE 1 ("), "{replay}");
    assert!(
        replay.contains("recording truncated at the size cap"),
        "{replay}"
    );
    assert!(
        replay.contains("  (4 rows) — recording truncated"),
        "200 bytes hold four 50-byte values: {replay}"
    );
    assert!(replay.contains("erin (engineering)"), "{replay}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_store_refuses_statements_until_it_recovers() {
    let mut control = PgCluster::start(PgOptions::default()).unwrap();
    let password_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password_file.path(), control.password()).unwrap();
    let h = Harness::with(Setup {
        audit_store: Some(format!(
            "postgresql://{}@127.0.0.1:{}/postgres",
            control.superuser(),
            control.port()
        )),
        audit_settings: format!("password = \"file:{}\"", password_file.path().display()),
        ..Setup::default()
    })
    .await;
    let client = h.client().await;
    client.simple_query("select 1").await.unwrap();

    control.stop().unwrap();
    let e = client.simple_query("select 2").await.unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "58030", "{message}");
    assert!(message.contains("audit store"), "{message}");
    // Nobody new gets in either.
    let login = h.refused("erin", &["engineering"], "app").await;
    assert_eq!(db_error(&login).0, "58030");
    // The session itself is fine: a later statement works once the store is back.
    control.restart().unwrap();
    wait_until("the audit store to take writes again", || async {
        client.simple_query("select 3").await.is_ok()
    })
    .await;
    assert!(h.gateway.audit_healthy());
    let rows = client.simple_query("select 4").await.unwrap();
    let values: Vec<_> = rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec!["4"]);

    h.gateway.flush_audit().await;
    let location = format!(
        "postgresql://{}@127.0.0.1:{}/postgres",
        control.superuser(),
        control.port()
    );
    let mut store = Store::open(&location, Some(control.password()))
        .await
        .unwrap();
    let events = all_events(&mut store).await;
    let texts: Vec<&str> = statements(&events)
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    assert!(
        texts.contains(&"select 1") && texts.contains(&"select 4"),
        "{texts:?}"
    );
    // A statement refused because its event could not be written is recorded, as refused,
    // once the store takes writes again.
    let refused: Vec<_> = statements(&events)
        .into_iter()
        .filter(|s| s.text == "select 2")
        .collect();
    assert_eq!(refused.len(), 1, "{texts:?}");
    assert_eq!(refused[0].sqlstate.as_deref(), Some("58030"));
    assert!(
        refused[0]
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("not run")),
        "{:?}",
        refused[0]
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Result(r)
            if r.session == refused[0].session && r.seq == refused[0].seq)),
        "a statement whose event failed never ran"
    );
    let v = verify(&mut store, &h.audit_key(), |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_policy_records_the_rows_of_what_it_allows() {
    let h = Harness::with(Setup {
        policies: vec![
            ("permit-all.cedar".into(), PERMIT_ALL.into()),
            (
                "record.cedar".into(),
                "@id(\"record-orders\")\n@record\npermit(principal, action, resource == Table::\"public.orders\");\n".into(),
            ),
        ],
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let client = h.client().await;
    client
        .simple_query("select id, status from orders where id = 1")
        .await
        .unwrap();
    client
        .simple_query("select id from customers where id = 1")
        .await
        .unwrap();
    // The extended protocol: names come from the Describe, values in binary as asked.
    client
        .query("select id, status from orders where id = $1", &[&2i32])
        .await
        .unwrap();
    drop(client);
    let mut store = h.audit().await;
    let events = all_events(&mut store).await;
    let st = statements(&events);
    let recording = |text: &str| {
        let seq = st.iter().find(|s| s.text == text).unwrap().seq;
        events
            .iter()
            .find_map(|e| match e {
                Event::Result(r) if r.seq == seq => Some(r.recording.clone()),
                _ => None,
            })
            .unwrap()
    };
    let simple = recording("select id, status from orders where id = 1").unwrap();
    assert_eq!(simple.columns, vec!["id", "status"]);
    assert_eq!(
        simple.rows,
        vec![vec![Some("1".to_string()), Some("paid".to_string())]]
    );
    assert_eq!(recording("select id from customers where id = 1"), None);
    let extended = recording("select id, status from orders where id = $1").unwrap();
    assert_eq!(extended.columns, vec!["id", "status"]);
    assert_eq!(
        extended.rows,
        vec![vec![
            Some("\\x00000002".to_string()),
            Some("\\x70616964".to_string())
        ]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_records_what_would_have_been_refused() {
    let h = Harness::with(Setup {
        policies: vec![
            ("permit-all.cedar".into(), PERMIT_ALL.into()),
            ("customers.cedar".into(), FORBID_CUSTOMERS.into()),
        ],
        policy_settings: "mode = \"observe\"".into(),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let client = h.client().await;
    client
        .simple_query("select email from customers where id = 1")
        .await
        .expect("observe mode refuses nothing");
    drop(client);
    let mut store = h.audit().await;
    let events = all_events(&mut store).await;
    let st = statements(&events);
    let s = st
        .iter()
        .find(|s| s.text == "select email from customers where id = 1")
        .unwrap();
    assert_eq!(s.decision, "allow");
    let observed = s.observed.as_deref().expect("the would-be refusal");
    assert!(
        observed.contains("no-customers-for-engineers"),
        "{observed}"
    );
}

/// A tmpfs of `size` mounted at a new directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the gateway's writer may still hold the file while it shuts down.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_statements_until_there_is_room() {
    let disk = SmallDisk::mount("4m");
    let db = disk.dir.path().join("audit.db");
    let h = Harness::with(Setup {
        audit_store: Some(format!("sqlite:{}", db.display())),
        ..Setup::default()
    })
    .await;
    let client = h.client().await;
    client.simple_query("select 'before'").await.unwrap();
    // Fill the disk to the last byte.
    let filler = disk.dir.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = None;
    for i in 0..200 {
        // The WAL may have room for a few more frames; soon nothing fits.
        match client.simple_query(&format!("select 'during {i}'")).await {
            Ok(_) => continue,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("a full disk refuses statements");
    let (code, message) = db_error(&e);
    assert_eq!(code, "58030", "{message}");
    std::fs::remove_file(&filler).unwrap();
    wait_until("the audit store to take writes again", || async {
        client.simple_query("select 'after'").await.is_ok()
    })
    .await;
    h.gateway.flush_audit().await;
    let mut store = Store::open(&format!("sqlite:{}", db.display()), None)
        .await
        .unwrap();
    let events = all_events(&mut store).await;
    let texts: Vec<&str> = statements(&events)
        .iter()
        .map(|s| s.text.as_str())
        .collect();
    assert!(texts.contains(&"select 'before'") && texts.contains(&"select 'after'"));
    let v = verify(&mut store, &h.audit_key(), |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_policy_masks_the_parameters_of_what_it_allows() {
    let h = Harness::with(Setup {
        policies: vec![
            ("permit-all.cedar".into(), PERMIT_ALL.into()),
            (
                "cards.cedar".into(),
                "@id(\"card-lookups\")\n@sensitive\npermit(principal, action, resource == Table::\"public.customers\");\n".into(),
            ),
        ],
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let client = h.client().await;
    let card = "41110000000000 07";
    client
        .query(
            "select name from customers where card_number = $1",
            &[&card.replace(' ', "")],
        )
        .await
        .unwrap();
    client
        .query("select amount from orders where id = $1", &[&3i32])
        .await
        .unwrap();
    drop(client);
    let mut store = h.audit().await;
    let events = all_events(&mut store).await;
    let st = statements(&events);
    let cards = st.iter().find(|s| s.text.contains("card_number")).unwrap();
    assert_eq!(cards.parameters, vec![Some("***".to_string())]);
    let orders = st.iter().find(|s| s.text.contains("orders")).unwrap();
    assert_eq!(orders.parameters, vec![Some("\\x00000003".to_string())]);
    // The value appears nowhere in the store.
    let everything = store.records(1, 100_000).await.unwrap();
    assert!(
        everything
            .iter()
            .all(|s| !s.record.body.contains("4111000000000007")),
        "the card number leaked into the trail"
    );
}
