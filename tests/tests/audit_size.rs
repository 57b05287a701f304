//! One client cannot fill the audit store: a big statement's event keeps the start of its
//! text with the whole text's length and SHA-256, bound parameters likewise, and a refused
//! big statement is recorded too, also when the store was down as it was refused.

use portcullis_audit::bound::sha256_hex;
use portcullis_audit::{Event, StatementEvent, Store, verify};
use portcullis_sandbox::{PgCluster, PgOptions};
use portcullis_tests::{Harness, PERMIT_ALL, SAMPLE_SCHEMA, Setup, db_error, wait_until};

const FORBID_CUSTOMERS: &str = r#"@id("no-customers-for-engineers")
forbid(principal in Group::"engineering", action, resource == Table::"public.customers");
"#;

/// The default cap on statement text in an event.
const CAP: usize = 64 * 1024;

async fn statements(store: &mut Store) -> Vec<(usize, StatementEvent)> {
    store
        .records(1, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|s| match serde_json::from_str(&s.record.body).unwrap() {
            Event::Statement(e) => Some((s.record.body.len(), e)),
            _ => None,
        })
        .collect()
}

/// Checks that `e` holds the start of `text`, its length and its hash, in a small event.
fn holds_digest_of(body_len: usize, e: &StatementEvent, text: &str) {
    assert!(e.text.len() <= CAP, "{} bytes of text kept", e.text.len());
    assert!(
        text.starts_with(&e.text),
        "the kept text is the statement's start"
    );
    assert_eq!(e.text_bytes, Some(text.len() as u64));
    assert_eq!(
        e.text_sha256.as_deref(),
        Some(&*sha256_hex(text.as_bytes()))
    );
    assert_eq!(e.truncated, vec!["text"]);
    assert!(
        body_len < 2 * CAP,
        "an event of {body_len} bytes for a statement of {}",
        text.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_statement_is_recorded_by_its_start_length_and_hash() {
    let h = Harness::start().await;
    let client = h.client().await;
    // 8 MiB of text, with a two-byte character across the cut: "select length('" is 15
    // bytes, so 'é' takes bytes CAP - 1 and CAP.
    let filler = format!("{}é{}", "x".repeat(CAP - 16), "y".repeat(8 << 20));
    let text = format!("select length('{filler}')");
    let rows = client.simple_query(&text).await.unwrap();
    let length = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(length, Some(filler.chars().count().to_string()));
    // A parameter of 1 MiB, sent by tokio-postgres in binary: shown as \x hex.
    let value = "p".repeat(1 << 20);
    let row = client
        .query_one("select length($1::text)", &[&value])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1 << 20);
    client.simple_query("select 'small'").await.unwrap();
    drop(client);

    let mut store = h.audit().await;
    let events = statements(&mut store).await;
    let (len, big) = events
        .iter()
        .find(|(_, e)| e.text.starts_with("select length('x"))
        .expect("the big statement's event");
    holds_digest_of(*len, big, &text);
    assert_eq!(
        big.text.len(),
        CAP - 1,
        "cut before the character, not through it"
    );
    assert_eq!(big.decision, "allow");

    let (len, bound) = events
        .iter()
        .find(|(_, e)| e.origin == "bind")
        .expect("the bound statement's event");
    assert!(*len < 3 * CAP, "{len} bytes");
    let shown = format!("\\x{}", "70".repeat(1 << 20));
    let kept = bound.parameters[0].as_deref().unwrap();
    assert!(kept.len() <= CAP && shown.starts_with(kept));
    assert_eq!(bound.parameter_digests.len(), 1);
    assert_eq!(bound.parameter_digests[0].index, 0);
    assert_eq!(bound.parameter_digests[0].bytes, shown.len() as u64);
    assert_eq!(
        bound.parameter_digests[0].sha256,
        sha256_hex(shown.as_bytes())
    );
    assert_eq!(bound.truncated, vec!["parameters"]);

    // Small statements are whole, and carry their digest too.
    let (_, small) = events
        .iter()
        .find(|(_, e)| e.text == "select 'small'")
        .unwrap();
    assert!(small.truncated.is_empty());
    assert_eq!(
        small.text_sha256.as_deref(),
        Some(&*sha256_hex(b"select 'small'"))
    );
    // Replay says what was cut and how to check the whole.
    let records: Vec<_> = store
        .session(&big.session)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.record)
        .collect();
    let replay = portcullis_audit::replay::Session::from_records(&big.session, &records).render();
    assert!(
        replay.contains(&format!(
            "truncated at the size cap: text (the whole text: {} bytes, SHA-256 {})",
            text.len(),
            sha256_hex(text.as_bytes())
        )),
        "{}",
        &replay[..replay.len().min(2000)]
    );
    let v = verify(&mut store, &h.audit_key(), |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_big_statement_is_recorded_also_when_the_store_was_down() {
    let mut control = PgCluster::start(PgOptions::default()).unwrap();
    let password_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(password_file.path(), control.password()).unwrap();
    let location = format!(
        "postgresql://{}@127.0.0.1:{}/postgres",
        control.superuser(),
        control.port()
    );
    let h = Harness::with(Setup {
        policies: vec![
            ("permit-all.cedar".into(), PERMIT_ALL.into()),
            ("customers.cedar".into(), FORBID_CUSTOMERS.into()),
        ],
        audit_store: Some(location.clone()),
        audit_settings: format!("password = \"file:{}\"", password_file.path().display()),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let client = h.client().await;
    let big = format!(
        "select name from customers where name = '{}'",
        "z".repeat(4 << 20)
    );
    // Refused while the store is up, and while it is down: neither waits for the store.
    let e = client.simple_query(&big).await.unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    control.stop().unwrap();
    let down = format!("{big} or id = 1");
    let e = client.simple_query(&down).await.unwrap_err();
    assert_eq!(db_error(&e).0, "42501");
    control.restart().unwrap();

    let mut store = Store::open(&location, Some(control.password()))
        .await
        .unwrap();
    let refused = |events: &[(usize, StatementEvent)]| {
        events
            .iter()
            .filter(|(_, e)| e.decision == "deny")
            .cloned()
            .collect::<Vec<_>>()
    };
    wait_until(
        "the refusal made while the store was down to be written",
        || async {
            h.gateway.flush_audit().await;
            match Store::open(&location, Some(control.password())).await {
                Ok(mut s) => refused(&statements(&mut s).await).len() == 2,
                Err(_) => false,
            }
        },
    )
    .await;
    let events = refused(&statements(&mut store).await);
    for ((len, e), text) in events.iter().zip([&big, &down]) {
        holds_digest_of(*len, e, text);
        assert_eq!(e.sqlstate.as_deref(), Some("42501"));
        assert_eq!(e.policies, vec!["no-customers-for-engineers"]);
    }
    let v = verify(&mut store, &h.audit_key(), |_, _| {}).await.unwrap();
    assert!(v.is_intact(), "{v:?}");
}
