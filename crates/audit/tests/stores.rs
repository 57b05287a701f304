//! The same tests against both stores: SQLite in a temporary directory and PostgreSQL in a
//! throwaway cluster.

use portcullis_audit::event::*;
use portcullis_audit::store::Pending;
use portcullis_audit::{CheckpointKey, Filter, Store, verify};
use portcullis_sandbox::{PgCluster, PgOptions};

struct Fixture {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgCluster>,
    location: String,
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let location = format!("sqlite:{}", dir.path().join("audit.db").display());
    Fixture {
        store: Store::open(&location, None).await.unwrap(),
        _dir: Some(dir),
        _pg: None,
        location,
    }
}

async fn postgres() -> Fixture {
    let pg = PgCluster::start(PgOptions::default()).unwrap();
    let location = format!(
        "postgresql://{}@127.0.0.1:{}/postgres",
        pg.superuser(),
        pg.port()
    );
    let store = Store::open(&location, Some(pg.password())).await.unwrap();
    Fixture {
        store,
        _dir: None,
        _pg: Some(pg),
        location,
    }
}

async fn exec(store: &mut Store, sql: &str) {
    match store {
        Store::Sqlite(s) => {
            s.connection().execute_batch(sql).unwrap();
        }
        Store::Postgres(s) => s.raw().await.unwrap().batch_execute(sql).await.unwrap(),
    }
}

fn statement(session: &str, seq: u64, subject: &str, text: &str, decision: &str) -> Event {
    Event::Statement(StatementEvent {
        session: session.into(),
        seq,
        subject: subject.into(),
        groups: vec![format!("{subject}-group"), "everyone".into()],
        target: "analytics".into(),
        upstream_role: "reader".into(),
        origin: "query".into(),
        text: text.into(),
        text_bytes: None,
        text_sha256: None,
        parameters: vec![Some("42".into()), None],
        parameter_digests: vec![],
        truncated: vec![],
        statement_kind: if text.starts_with("UPDATE") {
            "update"
        } else {
            "select"
        }
        .into(),
        tables: vec!["public.orders".into()],
        functions: vec![],
        decision: decision.into(),
        policies: vec!["reporting-hours".into()],
        sqlstate: (decision == "deny").then(|| "42501".into()),
        message: (decision == "deny").then(|| "denied by policy".into()),
        observed: None,
        max_rows: None,
        search_path: vec![],
        approval: None,
    })
}

fn every_kind() -> Vec<Event> {
    vec![
        Event::SessionStart(SessionStart {
            session: "s1".into(),
            subject: "alice".into(),
            groups: vec!["data-science".into()],
            client_addr: "127.0.0.1:5555".into(),
            tls: true,
            application_name: Some("psql".into()),
            target: "analytics".into(),
            upstream_role: "reader".into(),
            issuer: "http://127.0.0.1/issuer".into(),
            token_expires: Some("2026-11-24T15:00:00Z".into()),
        }),
        statement(
            "s1",
            1,
            "alice",
            "SELECT total FROM orders WHERE id = $1",
            "allow",
        ),
        Event::Result(ResultEvent {
            session: "s1".into(),
            seq: 1,
            command: Some("SELECT 1".into()),
            rows: Some(1),
            sqlstate: None,
            message: None,
            duration_us: 1200,
            recording: Some(Recording {
                columns: vec!["total".into()],
                rows: vec![vec![Some("9.99".into())]],
                truncated: false,
            }),
        }),
        statement("s1", 2, "alice", "UPDATE orders SET total = 0", "deny"),
        Event::SessionEnd(SessionEnd {
            session: "s1".into(),
            subject: "alice".into(),
            target: "analytics".into(),
            reason: "terminated".into(),
            duration_ms: 900,
            bytes_from_client: 100,
            bytes_to_client: 200,
            statements: 2,
        }),
        Event::AuthFailure(AuthFailure {
            client_addr: "10.0.0.9:4000".into(),
            target: Some("analytics".into()),
            subject: None,
            sqlstate: "28000".into(),
            reason: "token expired 4m ago".into(),
        }),
        Event::Admin(AdminEvent {
            action: "config_reload".into(),
            detail: "generation 2".into(),
            policy_hash: Some("ab".repeat(32)),
            actor: None,
        }),
    ]
}

async fn append_all(store: &mut Store, events: Vec<Event>, start_us: i64) {
    let batch: Vec<Pending> = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Pending {
            time_us: start_us + i as i64 * 1_000_000,
            event,
        })
        .collect();
    let records = store.append(&batch).await.unwrap();
    assert_eq!(records.len(), batch.len());
}

async fn round_trip(f: &mut Fixture) {
    let events = every_kind();
    append_all(&mut f.store, events.clone(), 1_700_000_000_000_000).await;
    let stored = f.store.records(1, 100).await.unwrap();
    let read: Vec<Event> = stored
        .iter()
        .map(|s| serde_json::from_str(&s.record.body).unwrap())
        .collect();
    assert_eq!(read, events);
    assert_eq!(stored[1].columns.subject.as_deref(), Some("alice"));
    assert_eq!(stored[3].columns.sqlstate.as_deref(), Some("42501"));
    let session = f.store.session("s1").await.unwrap();
    assert_eq!(session.len(), 5, "start, two statements, a result, the end");
    // A second batch continues the chain.
    append_all(
        &mut f.store,
        vec![statement("s2", 1, "bob", "SELECT 1", "allow")],
        1_800_000_000_000_000,
    )
    .await;
    let (n, first, last) = f.store.extent().await.unwrap();
    assert_eq!((n, first, last), (8, 1, 8));
    let all = f.store.records(1, 100).await.unwrap();
    assert_eq!(all[7].record.prev_hash, all[6].record.hash);
}

async fn search(f: &mut Fixture) {
    let base = 1_700_000_000_000_000;
    let mut events = every_kind();
    let mut customers = statement(
        "s3",
        1,
        "bob",
        "SELECT email FROM public.customers",
        "allow",
    );
    if let Event::Statement(s) = &mut customers {
        s.tables = vec!["public.customers".into()];
    }
    events.push(customers);
    append_all(&mut f.store, events, base).await;
    let ids =
        |hits: Vec<portcullis_audit::Hit>| -> Vec<u64> { hits.iter().map(|h| h.seq).collect() };
    let all = f.store.search(&Filter::default()).await.unwrap();
    assert_eq!(ids(all.clone()), vec![8, 4, 2], "statements, newest first");
    let first = all.iter().find(|h| h.seq == 2).unwrap();
    assert_eq!(
        first.result.as_ref().and_then(|r| r.rows),
        Some(1),
        "joined with its result"
    );
    let q = |f: Filter| f;
    for (filter, expected) in [
        (
            q(Filter {
                subject: Some("bob".into()),
                ..Default::default()
            }),
            vec![8],
        ),
        (
            q(Filter {
                group: Some("alice-group".into()),
                ..Default::default()
            }),
            vec![4, 2],
        ),
        (
            q(Filter {
                table: Some("orders".into()),
                ..Default::default()
            }),
            vec![4, 2],
        ),
        (
            q(Filter {
                table: Some("public.orders".into()),
                ..Default::default()
            }),
            vec![4, 2],
        ),
        (
            q(Filter {
                table: Some("ders".into()),
                ..Default::default()
            }),
            vec![],
        ),
        (
            q(Filter {
                decision: Some("deny".into()),
                ..Default::default()
            }),
            vec![4],
        ),
        (
            q(Filter {
                statement_kind: Some("update".into()),
                ..Default::default()
            }),
            vec![4],
        ),
        (
            q(Filter {
                sqlstate: Some("42501".into()),
                ..Default::default()
            }),
            vec![4],
        ),
        (
            q(Filter {
                target: Some("elsewhere".into()),
                ..Default::default()
            }),
            vec![],
        ),
        (
            q(Filter {
                since_us: Some(base + 3_000_000),
                ..Default::default()
            }),
            vec![8, 4],
        ),
        (
            q(Filter {
                until_us: Some(base + 3_000_000),
                ..Default::default()
            }),
            vec![2],
        ),
        (
            q(Filter {
                text: Some("EMAIL customers".into()),
                ..Default::default()
            }),
            vec![8],
        ),
        (
            q(Filter {
                text: Some("total orders".into()),
                ..Default::default()
            }),
            vec![4, 2],
        ),
        (
            q(Filter {
                text: Some("tot".into()),
                ..Default::default()
            }),
            vec![],
        ),
        (
            q(Filter {
                event: Some("auth_failure".into()),
                ..Default::default()
            }),
            vec![6],
        ),
        (
            q(Filter {
                limit: Some(1),
                ..Default::default()
            }),
            vec![8],
        ),
    ] {
        let got = ids(f.store.search(&filter).await.unwrap());
        assert_eq!(got, expected, "{filter:?}");
    }
}

fn key() -> CheckpointKey {
    CheckpointKey::from_pem(&CheckpointKey::generate_pem()).unwrap()
}

async fn signed_store(f: &mut Fixture, key: &CheckpointKey) {
    let mut events = Vec::new();
    for i in 1..=20 {
        events.push(statement("s1", i, "alice", &format!("SELECT {i}"), "allow"));
    }
    append_all(&mut f.store, events, 1_700_000_000_000_000).await;
    let head = f.store.head().await.unwrap().unwrap();
    // A checkpoint in the middle and one at the head.
    let mid = f.store.records(10, 1).await.unwrap().remove(0).record;
    f.store
        .add_checkpoint(&key.sign(mid.seq, mid.hash, mid.time_us))
        .await
        .unwrap();
    f.store
        .add_checkpoint(&key.sign(head.0, head.1, mid.time_us + 1))
        .await
        .unwrap();
}

async fn tampering(mut f: Fixture, edit: &str, broken_at: u64) {
    let key = key();
    signed_store(&mut f, &key).await;
    let clean = verify(&mut f.store, &key.public(), |_, _| {})
        .await
        .unwrap();
    assert!(clean.is_intact(), "{clean:?}");
    assert_eq!(
        (clean.events, clean.checkpoints, clean.unsigned),
        (20, 2, 0)
    );
    exec(&mut f.store, edit).await;
    let found = verify(&mut f.store, &key.public(), |_, _| {})
        .await
        .unwrap();
    let broken = found
        .broken
        .unwrap_or_else(|| panic!("{edit}: not detected"));
    assert_eq!(broken.seq, broken_at, "{edit}: {}", broken.reason);
}

const EDITS: &[(&str, u64)] = &[
    (
        "UPDATE audit_events SET body = replace(body, 'alice', 'mallory') WHERE seq = 7",
        7,
    ),
    (
        "UPDATE audit_events SET subject = 'mallory' WHERE seq = 5",
        5,
    ),
    ("DELETE FROM audit_events WHERE seq = 12", 12),
    ("DELETE FROM audit_events WHERE seq >= 19", 19),
    ("DELETE FROM audit_events WHERE seq <= 3", 4),
    (
        "UPDATE audit_events SET time_us = time_us + 1 WHERE seq = 2",
        2,
    ),
    ("UPDATE audit_checkpoints SET seq = 11 WHERE seq = 10", 11),
];

async fn foreign_key(mut f: Fixture) {
    signed_store(&mut f, &key()).await;
    let other = key();
    let found = verify(&mut f.store, &other.public(), |_, _| {})
        .await
        .unwrap();
    assert!(found.broken.unwrap().reason.contains("not signed by key"));
}

async fn retention(mut f: Fixture) {
    let key = key();
    signed_store(&mut f, &key).await;
    // The checkpoint at 10 is older than the cutoff, the one at the head is not.
    let cut = f.store.records(10, 1).await.unwrap()[0].record.time_us + 1;
    let deleted = f.store.prune(cut).await.unwrap();
    assert_eq!(deleted, 10);
    let v = verify(&mut f.store, &key.public(), |_, _| {})
        .await
        .unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.events, 10);
    append_all(
        &mut f.store,
        vec![statement("s9", 1, "x", "SELECT 1", "allow")],
        1_900_000_000_000_000,
    )
    .await;
    assert_eq!(f.store.head().await.unwrap().unwrap().0, 21);
}

async fn writer(f: Fixture) {
    let password = f._pg.as_ref().map(|p| p.password().to_string());
    let key = key();
    let public = key.public();
    let log = portcullis_audit::AuditLog::start(
        &f.location,
        password,
        key,
        portcullis_audit::LogOptions::default(),
    )
    .unwrap();
    let mut waits = Vec::new();
    for i in 0..64 {
        waits.push(log.durable(statement(&format!("w{i}"), 1, "alice", "SELECT 1", "allow")));
    }
    log.record(Event::Admin(AdminEvent {
        action: "gateway_start".into(),
        detail: String::new(),
        policy_hash: None,
        actor: None,
    }));
    let mut seqs: Vec<u64> = Vec::new();
    for w in waits {
        seqs.push(w.await.unwrap());
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 64);
    log.flush().await;
    let mut store = Store::open(&f.location, f._pg.as_ref().map(|p| p.password()))
        .await
        .unwrap();
    let v = verify(&mut store, &public, |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!((v.events, v.unsigned), (65, 0), "flush signs a checkpoint");
    let mut out = Vec::new();
    let n = portcullis_audit::export::export(&mut store, None, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 65);
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 65);
    assert_eq!(lines[64]["event"]["kind"], "admin");
}

#[derive(Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
}

async fn fixture(kind: Kind) -> Fixture {
    match kind {
        Kind::Sqlite => sqlite().await,
        Kind::Postgres => postgres().await,
    }
}

macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() {
                ($body)(Kind::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                ($body)(Kind::Postgres).await
            }
        }
    };
}

both!(every_event_kind_round_trips, |k| async move {
    round_trip(&mut fixture(k).await).await
});
both!(search_filters, |k| async move {
    search(&mut fixture(k).await).await
});
both!(tampering_is_detected, |k| async move {
    for (edit, at) in EDITS {
        tampering(fixture(k).await, edit, *at).await;
    }
});
both!(foreign_keys_are_refused, |k| async move {
    foreign_key(fixture(k).await).await
});
both!(retention_keeps_the_chain_verifiable, |k| async move {
    retention(fixture(k).await).await
});
both!(group_commit_and_export, |k| async move {
    writer(fixture(k).await).await
});

#[tokio::test]
async fn the_postgres_store_verifies_the_servers_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = portcullis_sandbox::TestCa::new("audit test CA").unwrap();
    let certs = ca.issue(dir.path(), "control").unwrap();
    let pg = PgCluster::start(PgOptions {
        tls: Some(certs.clone()),
        hba: vec!["hostnossl all all 127.0.0.1/32 reject".into()],
        ..PgOptions::default()
    })
    .unwrap();
    let url = |mode: &str| {
        format!(
            "postgresql://{}@localhost:{}/postgres?sslmode={mode}",
            pg.superuser(),
            pg.port()
        )
    };
    // Trusting the CA: TLS, and the store works.
    let mut store = Store::open_with(&url("require"), Some(pg.password()), Some(&certs.ca))
        .await
        .unwrap();
    append_all(&mut store, every_kind(), 1_700_000_000_000_000).await;
    assert_eq!(store.extent().await.unwrap().0, 7);
    // Not trusting it: refused, never sent in the clear.
    let untrusted = Store::open(&url("require"), Some(pg.password())).await;
    assert!(untrusted.is_err());
    let plain = Store::open(&url("disable"), Some(pg.password())).await;
    assert!(plain.is_err(), "the server accepts only TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_a_postgres_store_keep_one_chain() {
    let f = postgres().await;
    let pg = f._pg.as_ref().unwrap();
    let mut tasks = Vec::new();
    for g in 0..4 {
        let location = f.location.clone();
        let password = pg.password().to_string();
        tasks.push(tokio::spawn(async move {
            let mut store = Store::open(&location, Some(&password)).await.unwrap();
            for i in 0..25u64 {
                let batch: Vec<Pending> = (0..3)
                    .map(|k| Pending {
                        time_us: 1_700_000_000_000_000 + i as i64,
                        event: statement(
                            &format!("g{g}"),
                            i * 3 + k + 1,
                            "alice",
                            "SELECT 1",
                            "allow",
                        ),
                    })
                    .collect();
                store.append(&batch).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut store = Store::open(&f.location, Some(pg.password())).await.unwrap();
    let key = key();
    let head = store.head().await.unwrap().unwrap();
    assert_eq!(head.0, 300);
    store
        .add_checkpoint(&key.sign(head.0, head.1, 1))
        .await
        .unwrap();
    let v = verify(&mut store, &key.public(), |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    assert_eq!(v.events, 300);
}

#[tokio::test]
async fn an_idle_log_signs_its_head_by_itself() {
    let f = sqlite().await;
    let key = key();
    let public = key.public();
    let log =
        portcullis_audit::AuditLog::start(&f.location, None, key, Default::default()).unwrap();
    for i in 1..=3 {
        log.durable(statement("s1", i, "alice", "SELECT 1", "allow"))
            .await
            .unwrap();
    }
    // No flush: the writer signs once the load stops (the interval is a minute).
    let mut store = Store::open(&f.location, None).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let signed = store.checkpoints().await.unwrap().last().map(|c| c.seq);
        if signed == Some(3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never signed: {signed:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let v = verify(&mut store, &public, |_, _| {}).await.unwrap();
    assert_eq!((v.events, v.unsigned), (3, 0));
}
