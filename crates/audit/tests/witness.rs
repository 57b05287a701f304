//! Witnesses against both stores: the writer publishes each checkpoint once the store holds
//! it; the store is checked against it: holding, ahead, truncated, rewritten, pruned, forged;
//! and gateways sharing one PostgreSQL store each witness the shared chain.

use std::path::Path;

use portcullis_audit::event::*;
use portcullis_audit::{
    AuditLog, CheckpointKey, FileWitness, LogOptions, Store, Witness, WitnessCheck, WitnessRef,
    check_witness, verify,
};
use portcullis_sandbox::{PgCluster, PgOptions};

struct Fixture {
    location: String,
    password: Option<String>,
    dir: tempfile::TempDir,
    _pg: Option<PgCluster>,
}

async fn fixture(postgres: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    if !postgres {
        return Fixture {
            location: format!("sqlite:{}", dir.path().join("audit.db").display()),
            password: None,
            dir,
            _pg: None,
        };
    }
    let pg = PgCluster::start(PgOptions::default()).unwrap();
    Fixture {
        location: format!(
            "postgresql://{}@127.0.0.1:{}/postgres",
            pg.superuser(),
            pg.port()
        ),
        password: Some(pg.password().to_string()),
        dir,
        _pg: Some(pg),
    }
}

impl Fixture {
    async fn store(&self) -> Store {
        Store::open(&self.location, self.password.as_deref())
            .await
            .unwrap()
    }

    fn log(&self, key: &str, witness: &Path) -> AuditLog {
        AuditLog::start(
            &self.location,
            self.password.clone(),
            CheckpointKey::from_pem(key).unwrap(),
            LogOptions {
                witness: Some(WitnessRef::File(witness.to_path_buf())),
                ..LogOptions::default()
            },
        )
        .unwrap()
    }
}

async fn exec(store: &mut Store, sql: &str) {
    match store {
        Store::Sqlite(s) => s.connection().execute_batch(sql).unwrap(),
        Store::Postgres(s) => s.raw().await.unwrap().batch_execute(sql).await.unwrap(),
    }
}

fn admin(detail: String) -> Event {
    Event::Admin(AdminEvent {
        action: "test".into(),
        detail,
        policy_hash: None,
        actor: None,
    })
}

/// Appends `n` events through `log` and flushes: a checkpoint, then the witness.
async fn work(log: &AuditLog, n: usize) {
    for i in 0..n {
        log.durable(admin(format!("event {i}"))).await.unwrap();
    }
    log.flush().await;
}

fn read(path: &Path) -> portcullis_audit::Checkpoint {
    FileWitness::new(path).read().unwrap().expect("a witness")
}

async fn truncation_and_rewrites_are_caught(postgres: bool) {
    let f = fixture(postgres).await;
    let pem = CheckpointKey::generate_pem();
    let public = CheckpointKey::from_pem(&pem).unwrap().public();
    let path = f.dir.path().join("head.json");
    assert!(FileWitness::new(&path).read().unwrap().is_none());
    let log = f.log(&pem, &path);
    // The witness exists before the first event: the signed empty chain.
    let empty = read(&path);
    assert_eq!(empty.seq, 0);
    let mut store = f.store().await;
    assert_eq!(
        check_witness(&mut store, &public, &empty).await.unwrap(),
        WitnessCheck::Holds { seq: 0 }
    );
    drop(store);
    work(&log, 4).await;
    let early = read(&path);
    assert_eq!(early.seq, 4);
    work(&log, 6).await;
    let head = read(&path);
    assert_eq!(head.seq, 10);
    drop(log);

    let mut store = f.store().await;
    assert_eq!(
        check_witness(&mut store, &public, &head).await.unwrap(),
        WitnessCheck::Holds { seq: 10 }
    );
    // The store ahead of an older witness holds.
    assert_eq!(
        check_witness(&mut store, &public, &early).await.unwrap(),
        WitnessCheck::Holds { seq: 4 }
    );
    // Forged: another key, or an edited head.
    let other = CheckpointKey::from_pem(&CheckpointKey::generate_pem()).unwrap();
    let mut moved = head.clone();
    moved.seq = 11;
    for forged in [other.sign(head.seq, head.hash, head.time_us), moved] {
        let c = check_witness(&mut store, &public, &forged).await.unwrap();
        assert!(matches!(c, WitnessCheck::Forged { .. }), "{c:?}");
        assert!(!c.holds());
    }

    // Cut back to the early checkpoint: the chain verifies, the witness does not.
    exec(
        &mut store,
        "DELETE FROM audit_events WHERE seq > 4; DELETE FROM audit_checkpoints WHERE seq > 4;",
    )
    .await;
    let mut store = f.store().await;
    let v = verify(&mut store, &public, |_, _| {}).await.unwrap();
    assert!(v.is_intact() && v.unsigned == 0, "{v:?}");
    let c = check_witness(&mut store, &public, &head).await.unwrap();
    assert_eq!(
        c,
        WitnessCheck::Truncated {
            witnessed: 10,
            last: 4
        }
    );
    assert!(
        c.describe().starts_with("events after #4 are missing"),
        "{}",
        c.describe()
    );
    // …and re-filled with other events up to and past the witnessed seq: rewritten. (The
    // PostgreSQL store keeps its head in a row of its own, which the forger moves too.)
    if postgres {
        exec(
            &mut store,
            "UPDATE audit_head SET (seq, hash) = (SELECT seq, hash FROM audit_events WHERE seq = 4) WHERE id = 1;",
        )
        .await;
    }
    let events: Vec<_> = (0..8)
        .map(|i| portcullis_audit::store::Pending {
            time_us: 1_800_000_000_000_000 + i,
            event: admin(format!("forged {i}")),
        })
        .collect();
    store.append(&events).await.unwrap();
    let v = verify(&mut store, &public, |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "an unsigned tail alone passes: {v:?}");
    assert_eq!(
        check_witness(&mut store, &public, &head).await.unwrap(),
        WitnessCheck::Diverged { seq: 10 }
    );
    // Emptied: every event is missing.
    exec(&mut store, "DELETE FROM audit_events;").await;
    let mut store = f.store().await;
    assert_eq!(
        check_witness(&mut store, &public, &early).await.unwrap(),
        WitnessCheck::Truncated {
            witnessed: 4,
            last: 0
        }
    );
}

async fn retention_keeps_an_old_witness_valid(postgres: bool) {
    let f = fixture(postgres).await;
    let pem = CheckpointKey::generate_pem();
    let public = CheckpointKey::from_pem(&pem).unwrap().public();
    let path = f.dir.path().join("head.json");
    let log = f.log(&pem, &path);
    work(&log, 3).await;
    let first = read(&path);
    work(&log, 3).await;
    let second = read(&path);
    work(&log, 3).await;
    drop(log);
    let mut store = f.store().await;
    // Prune up to the second checkpoint: the first witness's event is gone, the second's
    // is the checkpoint the chain now starts from.
    let cut = second.time_us + 1;
    assert_eq!(store.prune(cut).await.unwrap(), 6);
    assert_eq!(
        check_witness(&mut store, &public, &second).await.unwrap(),
        WitnessCheck::Holds { seq: 6 }
    );
    let c = check_witness(&mut store, &public, &first).await.unwrap();
    assert_eq!(c, WitnessCheck::Pruned { seq: 3, first: 7 });
    assert!(c.holds());
}

async fn a_running_writer_keeps_the_evidence(postgres: bool) {
    let f = fixture(postgres).await;
    let pem = CheckpointKey::generate_pem();
    let public = CheckpointKey::from_pem(&pem).unwrap().public();
    let path = f.dir.path().join("head.json");
    let log = f.log(&pem, &path);
    work(&log, 4).await;
    work(&log, 6).await;
    let head = read(&path);
    assert_eq!(head.seq, 10);
    // Cut back while the gateway runs (the PostgreSQL head row too), and let it go on
    // writing well past the witnessed seq: its checkpoints never replace the witness.
    let mut store = f.store().await;
    exec(
        &mut store,
        "DELETE FROM audit_events WHERE seq > 4; DELETE FROM audit_checkpoints WHERE seq > 4;",
    )
    .await;
    if postgres {
        exec(
            &mut store,
            "UPDATE audit_head SET (seq, hash) = (SELECT seq, hash FROM audit_events WHERE seq = 4) WHERE id = 1;",
        )
        .await;
    }
    work(&log, 3).await;
    assert_eq!(read(&path), head, "the witness did not move back to seq 7");
    work(&log, 10).await;
    assert_eq!(read(&path), head, "nor on to a chain without its event");
    let mut store = f.store().await;
    assert_eq!(
        check_witness(&mut store, &public, &head).await.unwrap(),
        WitnessCheck::Diverged { seq: 10 }
    );
    drop(log);
    // A fresh start does not overwrite it either.
    let log = f.log(&pem, &path);
    work(&log, 1).await;
    assert_eq!(read(&path), head);
}

#[tokio::test]
async fn sqlite_a_running_writer_keeps_the_evidence() {
    a_running_writer_keeps_the_evidence(false).await
}

#[tokio::test]
async fn postgres_a_running_writer_keeps_the_evidence() {
    a_running_writer_keeps_the_evidence(true).await
}

#[tokio::test]
async fn sqlite_truncation_and_rewrites_are_caught() {
    truncation_and_rewrites_are_caught(false).await
}

#[tokio::test]
async fn postgres_truncation_and_rewrites_are_caught() {
    truncation_and_rewrites_are_caught(true).await
}

#[tokio::test]
async fn sqlite_retention_keeps_an_old_witness_valid() {
    retention_keeps_an_old_witness_valid(false).await
}

#[tokio::test]
async fn postgres_retention_keeps_an_old_witness_valid() {
    retention_keeps_an_old_witness_valid(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_a_postgres_store_each_witness_the_shared_chain() {
    let f = fixture(true).await;
    let pem = CheckpointKey::generate_pem();
    let public = CheckpointKey::from_pem(&pem).unwrap().public();
    let (a_path, b_path) = (f.dir.path().join("a.json"), f.dir.path().join("b.json"));
    let a = f.log(&pem, &a_path);
    let b = f.log(&pem, &b_path);
    work(&a, 5).await;
    work(&b, 5).await;
    work(&a, 2).await;
    let (wa, wb) = (read(&a_path), read(&b_path));
    // Each signed the shared head as it was: b after a's first five and its own five.
    assert_eq!((wb.seq, wa.seq), (10, 12));
    let mut store = f.store().await;
    for w in [&wa, &wb] {
        let c = check_witness(&mut store, &public, w).await.unwrap();
        assert!(c.holds(), "{c:?}");
    }
    let v = verify(&mut store, &public, |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
    // Cut back before b's head: both witnesses notice.
    exec(
        &mut store,
        "DELETE FROM audit_events WHERE seq > 5; DELETE FROM audit_checkpoints WHERE seq > 5;",
    )
    .await;
    for w in [&wa, &wb] {
        let c = check_witness(&mut store, &public, w).await.unwrap();
        assert!(
            matches!(c, WitnessCheck::Truncated { last: 5, .. }),
            "{c:?}"
        );
    }
}
