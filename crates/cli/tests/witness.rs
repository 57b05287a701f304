//! `audit verify` against a witness: a trail cut back to an older checkpoint (the newest
//! events deleted together with the checkpoints that signed them) is reported as truncated;
//! an untouched trail, or one ahead of an older witness, passes; a forged witness fails.

use portcullis_audit::Store;
use portcullis_tests::{Harness, Setup, stdout_ok, wait_until};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

async fn verify(h: &Harness, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "verify", "--config"])
        .arg(&h.config_path)
        .args(extra)
        .output()
        .await
        .expect("run portcullis")
}

/// Runs `n` statements in a session and waits until everything, the session's end too,
/// is written and signed (and so witnessed); `ended` sessions have ended before.
async fn work(h: &Harness, n: usize, ended: usize) {
    let client = h.client().await;
    for i in 0..n {
        client.simple_query(&format!("select {i}")).await.unwrap();
    }
    drop(client);
    wait_until("the session's end to be written", || async {
        h.audit_events("session_end").await.len() > ended
    })
    .await;
    h.gateway.flush_audit().await;
}

/// One number from the harness's SQLite store.
async fn scalar(h: &Harness, sql: &str) -> u64 {
    match h.audit().await {
        Store::Sqlite(s) => s.connection().query_row(sql, [], |r| r.get(0)).unwrap(),
        Store::Postgres(_) => unreachable!("the harness's store is SQLite"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_cut_back_to_an_older_checkpoint_fails_verify() {
    let h = Harness::with(Setup {
        audit_settings: "witness = \"file:head.json\"".into(),
        ..Setup::default()
    })
    .await;
    let witness = h.dir().join("head.json");
    work(&h, 3, 0).await;
    let early = scalar(&h, "select max(seq) from audit_checkpoints").await;
    let early_witness = h.dir().join("early.json");
    std::fs::copy(&witness, &early_witness).unwrap();
    work(&h, 5, 1).await;
    let head = scalar(&h, "select max(seq) from audit_events").await;
    assert!(head > early + 5, "{early} {head}");

    // Untouched: the chain holds and the witnessed head is in the store.
    let said = stdout_ok(&verify(&h, &[]).await);
    assert!(said.starts_with("ok: "), "{said}");
    assert!(
        said.contains(&format!(
            "the witnessed head, event #{head}, is in the store"
        )),
        "{said}"
    );
    // A store ahead of an older witness (another gateway's, or a copy) is fine.
    let said = stdout_ok(&verify(&h, &["--witness", early_witness.to_str().unwrap()]).await);
    assert!(
        said.contains(&format!("event #{early}, is in the store")),
        "{said}"
    );

    // A forged witness: the head moved on by someone without the key.
    let forged = h.dir().join("forged.json");
    let text = std::fs::read_to_string(&witness).unwrap();
    std::fs::write(
        &forged,
        text.replace(
            &format!("\"seq\": {head}"),
            &format!("\"seq\": {}", head + 1),
        ),
    )
    .unwrap();
    let out = verify(&h, &["--witness", forged.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("is not signed by key"), "{said}");

    // The reproduction: delete the newest events and their checkpoints, back to the early
    // checkpoint. The chain alone still verifies…
    let Store::Sqlite(store) = h.audit().await else {
        unreachable!("the harness's store is SQLite")
    };
    store
        .connection()
        .execute_batch(&format!(
            "delete from audit_events where seq > {early};
             delete from audit_checkpoints where seq > {early};"
        ))
        .unwrap();
    let mut reopened = h.audit().await;
    let chain = portcullis_audit::verify(&mut reopened, &h.audit_key(), |_, _| {})
        .await
        .unwrap();
    assert!(chain.is_intact() && chain.unsigned == 0, "{chain:?}");
    // …but not against the witness.
    let out = verify(&h, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with(&format!(
            "TRUNCATED: events after #{early} are missing: the witness signed the chain up to event #{head}, so {} newest events were deleted",
            head - early
        )),
        "{said}"
    );
    // Deleting the witness too does not help.
    std::fs::remove_file(&witness).unwrap();
    let out = verify(&h, &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("the witness was deleted"), "{said}");
}
