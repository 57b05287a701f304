//! The bypasses an attacker found in the decision path, each through a real client against
//! the shipped example policies: bob (engineering) may read the application tables, but
//! every write needs a manager's approval and e-mails and card numbers are masked; alice
//! (data-science) reads only the reporting schema. Each test failed on `f936ed0`.

use std::sync::Arc;

use portcullis_gateway::FixedClock;
use portcullis_tests::raw::{RawClient, bind, errors, execute, rows};
use portcullis_tests::{
    Harness, SAMPLE_CHECKSUM, SAMPLE_SCHEMA, Setup, db_error, example_policies,
};
use portcullis_wire::Message;
use portcullis_wire::frontend::{Parse, Query};

const BOB: (&str, &[&str]) = ("bob", &["engineering"]);
const ALICE: (&str, &[&str]) = ("alice", &["data-science"]);

/// The example policies at Tuesday 10:00 UTC (business hours), with the sample tables.
async fn harness() -> Harness {
    let h = Harness::with(Setup {
        policies: example_policies(),
        clock: Some(Arc::new(FixedClock::new(
            "2026-11-24T10:00:00Z".parse().unwrap(),
        ))),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    h
}

fn orders(h: &Harness) -> String {
    h.direct("app", "select count(*) from orders")
}

async fn raw_as(h: &Harness, who: (&str, &[&str])) -> RawClient {
    let mut raw = RawClient::connect(h.port()).await;
    raw.login("app", &h.token(who.0, who.1))
        .await
        .expect("login");
    raw
}

fn query(sql: &[u8]) -> Message {
    Query::new(sql).into_message()
}

fn parse(sql: &[u8]) -> Message {
    Parse::new("", sql, &[]).message().clone()
}

/// Reads answers until `n` ReadyForQuery messages have arrived.
async fn readies(raw: &mut RawClient, n: usize) -> Vec<Message> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.extend(raw.until_ready().await);
    }
    all
}

/// Item 1: a cached analysis of `EXPLAIN (ANALYZE 0)` was reused for `ANALYZE 1`, which
/// runs: bob deleted every order without approval, past the WHERE guardrail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_options_never_share_a_cached_analysis() {
    let h = harness().await;
    let before = h.direct("app", SAMPLE_CHECKSUM);
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    // Plan only: allowed; the second text differs only in its constants.
    bob.simple_query("explain (analyze 0) delete from orders")
        .await
        .expect("a plan is not a write");
    bob.simple_query("explain (analyze 'off') update orders set amount = 0")
        .await
        .expect("a plan is not a write");
    for sql in [
        "explain (analyze 1) delete from orders",
        "explain (analyze 'on') update orders set amount = 0",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        assert_eq!(db_error(&e).0, "42501", "{sql}: {e}");
    }
    // Also from another session and another user.
    let carol = h.connect_as("carol", &["managers"], "app").await.unwrap();
    let e = carol
        .simple_query("explain (analyze 1) delete from orders")
        .await
        .expect_err("carol's writes need approval too");
    assert_eq!(db_error(&e).0, "42501");
    assert_eq!(h.direct("app", SAMPLE_CHECKSUM), before);
}

/// Statement texts that read as a harmless SELECT with `standard_conforming_strings` on
/// and as a data-modifying CTE with it off (`ON_HARMLESS`), and the other way round
/// (`OFF_HARMLESS`); both are one statement under either reading.
const ON_HARMLESS: &[u8] = br"WITH a AS (SELECT '\'), b AS (SELECT '), d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d WHERE length(') SELECT 1 --')";
const OFF_HARMLESS: &[u8] = br"WITH a AS (SELECT '\'), d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d WHERE length('') --') SELECT 1";
/// The same trick reading every card number and e-mail address.
const ON_HARMLESS_READ: &[u8] = br"WITH a AS (SELECT '\'), b AS (SELECT '), d AS (SELECT string_agg(card_number || email, ',') FROM customers) SELECT * FROM d WHERE length(') SELECT 1 --')";

/// Item 2: a setting changed in the same pipeline made the gateway and the server read one
/// text differently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_setting_changes_are_read_as_the_server_reads_them() {
    let h = harness().await;
    let before = orders(&h);
    // Each: what is sent in one write before the statement, and how many ReadyForQuery
    // messages answer it all.
    let cases: Vec<(&str, Vec<Message>, &[u8], usize)> = vec![
        (
            "SET",
            vec![query(b"SET standard_conforming_strings = off")],
            ON_HARMLESS,
            2,
        ),
        (
            "set_config",
            vec![query(
                b"SELECT set_config('standard_conforming_strings', 'off', false)",
            )],
            ON_HARMLESS,
            2,
        ),
        (
            "SET LOCAL in a pipelined transaction",
            vec![
                query(b"BEGIN"),
                query(b"SET LOCAL standard_conforming_strings = off"),
            ],
            ON_HARMLESS,
            3,
        ),
    ];
    for (what, first, evil, n) in cases {
        let mut raw = raw_as(&h, BOB).await;
        let mut msgs = first;
        msgs.push(query(evil));
        raw.send(&msgs).await;
        let answers = readies(&mut raw, n).await;
        let errs = errors(&answers);
        assert!(
            errs.iter().any(|e| e.code() == "42501"),
            "{what}: the delete was not refused: {errs:?}"
        );
        assert_eq!(orders(&h), before, "{what}: orders were deleted");
    }

    // The extended protocol, one Sync for everything.
    let mut raw = raw_as(&h, BOB).await;
    raw.send(&[
        parse(b"SET standard_conforming_strings = off"),
        bind("", "", &[]),
        execute("", 0),
        parse(ON_HARMLESS),
        bind("", "", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    let answers = raw.until_ready().await;
    assert!(
        errors(&answers).iter().any(|e| e.code() == "42501"),
        "extended: {:?}",
        errors(&answers)
    );
    assert_eq!(orders(&h), before, "extended: orders were deleted");

    // The other direction: the setting is off (and the gateway knows it), and a pipelined
    // RESET ALL turns it back on.
    let mut raw = raw_as(&h, BOB).await;
    raw.send(&[query(b"SET standard_conforming_strings = off")])
        .await;
    assert!(errors(&raw.until_ready().await).is_empty());
    raw.send(&[query(b"RESET ALL"), query(OFF_HARMLESS)]).await;
    let answers = readies(&mut raw, 2).await;
    assert!(
        errors(&answers).iter().any(|e| e.code() == "42501"),
        "RESET ALL: {:?}",
        errors(&answers)
    );
    assert_eq!(orders(&h), before, "RESET ALL: orders were deleted");

    // Alice may run SELECT 1, and may not read customers at all.
    let mut raw = raw_as(&h, ALICE).await;
    raw.send(&[
        query(b"SET standard_conforming_strings = off"),
        query(ON_HARMLESS_READ),
    ])
    .await;
    let answers = readies(&mut raw, 2).await;
    let leaked = rows(&answers)
        .iter()
        .flatten()
        .flatten()
        .any(|v| v.contains("@example.com"));
    assert!(!leaked, "alice read e-mail addresses");
    assert!(
        errors(&answers).iter().any(|e| e.code() == "42501"),
        "alice: {:?}",
        errors(&answers)
    );
}

/// Item 2, the encoding: a pipelined `SET client_encoding` changes which bytes are
/// characters. In UTF-8 `C4 95 5C` is `ĕ\`, an escape inside `E'…'`; in Shift JIS `95 5C`
/// is one character and the string ends at the next quote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_client_encoding_change_is_read_as_the_server_reads_it() {
    let h = harness().await;
    let before = orders(&h);
    // Harmless in UTF-8 (the string runs to the end), a DELETE in Shift JIS.
    let evil: &[u8] = b"WITH a AS (SELECT E'\xC4\x95\x5C'), d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d WHERE length('') --') SELECT 1";
    for extended in [false, true] {
        let mut raw = raw_as(&h, BOB).await;
        let answers = if extended {
            raw.send(&[
                parse(b"SET client_encoding = 'SJIS'"),
                bind("", "", &[]),
                execute("", 0),
                parse(evil),
                bind("", "", &[]),
                execute("", 0),
                portcullis_wire::frontend::sync(),
            ])
            .await;
            raw.until_ready().await
        } else {
            raw.send(&[query(b"SET client_encoding = 'SJIS'"), query(evil)])
                .await;
            readies(&mut raw, 2).await
        };
        assert!(
            errors(&answers).iter().any(|e| e.code() == "42501"),
            "extended: {extended}: {:?}",
            errors(&answers)
        );
        assert_eq!(orders(&h), before, "extended: {extended}");
    }
}

/// Items 3 and 4: column alias lists and join aliases hid masked columns (both protocols,
/// and COPY of a query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_do_not_hide_masked_columns() {
    let h = harness().await;
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    let join = "(customers JOIN orders ON customers.id = orders.customer_id) AS j";
    for sql in [
        "SELECT e, k FROM customers AS c(i, n, e, k)".to_string(),
        format!("SELECT j.card_number FROM {join}"),
        "SELECT b.id FROM customers a JOIN customers b USING (card_number) AS j".to_string(),
        "SELECT j.card_number FROM customers a JOIN customers b USING (card_number) AS j"
            .to_string(),
        format!("SELECT j::text FROM {join}"),
        format!("SELECT row_to_json(j) FROM {join}"),
        "SELECT x.a FROM (customers NATURAL JOIN orders) AS x(a, b, c)".to_string(),
    ] {
        let e = bob.simple_query(&sql).await.expect_err(&sql);
        let (code, message) = db_error(&e);
        assert_eq!(code, "42501", "{sql}: {message}");
        assert!(message.contains("masked"), "{sql}: {message}");
        let e = bob.query(&sql, &[]).await.expect_err(&sql);
        assert_eq!(db_error(&e).0, "42501", "extended: {sql}");
    }
    let out = h
        .psql_command(BOB.0, BOB.1, "app")
        .args([
            "-c",
            "COPY (SELECT e, k FROM customers AS c(i, n, e, k)) TO STDOUT",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && !stdout.contains("@example.com"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("masked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The columns bob may read are still his.
    bob.simple_query("SELECT i, n FROM customers AS c(i, n) WHERE i = 1")
        .await
        .expect_err("an alias list reads every column: refused, not guessed");
    bob.simple_query("SELECT j.amount FROM (orders JOIN reporting.daily_revenue ON true) AS j")
        .await
        .expect("a join alias over tables without masked columns");
}
