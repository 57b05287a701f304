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
use portcullis_wire::frontend::{Close, Parse, Query, Target};

const BOB: (&str, &[&str]) = ("bob", &["engineering"]);
const ALICE: (&str, &[&str]) = ("alice", &["data-science"]);

/// The example policies at Tuesday 10:00 UTC (business hours), with the sample tables.
async fn harness() -> Harness {
    harness_at(Arc::new(FixedClock::new(BUSINESS_HOURS.parse().unwrap()))).await
}

const BUSINESS_HOURS: &str = "2026-11-24T10:00:00Z";
const EVENING: &str = "2026-11-24T20:00:00Z";

async fn harness_at(clock: Arc<FixedClock>) -> Harness {
    let h = Harness::with(Setup {
        policies: example_policies(),
        clock: Some(clock),
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
const ON_HARMLESS: &[u8] = br"WITH a AS (SELECT '\'), b AS (SELECT '), d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d WHERE length(') SELECT 1 --') > 0";
const OFF_HARMLESS: &[u8] = br"WITH a AS (SELECT '\'), d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d WHERE length('') = 0 --') SELECT 1";
/// The same trick reading every card number and e-mail address.
const ON_HARMLESS_READ: &[u8] = br"WITH a AS (SELECT '\'), b AS (SELECT '), d AS (SELECT string_agg(card_number || email, ',') FROM customers) SELECT * FROM d WHERE length(') SELECT 1 --') > 0";

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
    let evil: &[u8] = b"WITH a AS (SELECT E'\xC4\x95\x5C'), d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d WHERE length('') = 0 --') SELECT 1";
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

/// Item 5: planner statistics hold the values of every column; other views show other
/// sessions' statements. Alice, who may not read customers at all, read 101 card numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogs_that_show_values_are_governed() {
    let h = harness().await;
    h.direct("app", "analyze");
    let alice = h.connect_as(ALICE.0, ALICE.1, "app").await.unwrap();
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    for sql in [
        "SELECT histogram_bounds, most_common_vals FROM pg_stats WHERE tablename = 'customers'",
        "SELECT * FROM pg_catalog.pg_stats",
        "SELECT s.most_common_vals FROM pg_stats s",
        "SELECT * FROM pg_stats_ext",
        "SELECT * FROM pg_stats_ext_exprs",
        "SELECT query FROM pg_stat_activity",
        "SELECT * FROM pg_stat_activity",
        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%4111%'",
        "SELECT statement FROM pg_prepared_statements",
        "SELECT * FROM pg_cursors",
        "SELECT pg_stat_get_backend_activity(1)",
    ] {
        for (who, client) in [("alice", &alice), ("bob", &bob)] {
            let e = client.simple_query(sql).await.expect_err(sql);
            assert_eq!(db_error(&e).0, "42501", "{who}: {sql}: {e}");
            let e = client.query(sql, &[]).await.expect_err(sql);
            assert_eq!(db_error(&e).0, "42501", "{who}, extended: {sql}");
        }
    }
    // Large objects' contents, through the functions that read them (a role granted
    // SELECT on one reads it whatever pg_largeobject's privileges say), also fast-path.
    let oid = h.direct(
        "app",
        "select lo_from_bytea(0, 'LO-SECRET 4000000000007919')::int",
    );
    h.direct(
        "app",
        &format!("grant select on large object {oid} to gw_app"),
    );
    for sql in [
        format!("SELECT convert_from(lo_get({oid}), 'UTF8')"),
        format!("SELECT lo_get({oid}, 0, 9)"),
        format!("SELECT loread(lo_open({oid}, 262144), 100)"),
    ] {
        for (who, client) in [("alice", &alice), ("bob", &bob)] {
            let e = client.simple_query(&sql).await.expect_err(&sql);
            assert_eq!(db_error(&e).0, "42501", "{who}: {sql}: {e}");
        }
    }
    let mut raw = raw_as(&h, BOB).await;
    let lo_get = 3458; // lo_get(oid)
    raw.send(&[function_call(lo_get, &[oid.as_bytes()])]).await;
    let answer = raw.until_ready().await;
    assert_eq!(errors(&answer)[0].code(), "42501", "fast-path lo_get");
    assert!(
        !answer
            .iter()
            .any(|m| String::from_utf8_lossy(m.body()).contains("LO-SECRET")),
        "{answer:?}"
    );
    // What every tool reads still works.
    alice
        .simple_query("SELECT pid, state FROM pg_stat_activity")
        .await
        .expect("activity without statement texts");
    alice
        .simple_query("SELECT relname FROM pg_class WHERE relname = 'customers'")
        .await
        .expect("the catalog");
    // A DBA reads statistics (and may read every column they describe).
    let dave = h.connect_as("dave", &["dba"], "app").await.unwrap();
    let rows = dave
        .simple_query("SELECT most_common_vals FROM pg_stats WHERE tablename = 'customers'")
        .await
        .expect("a DBA reads statistics");
    assert!(!rows.is_empty());
}

/// A fast-path FunctionCall of the function `oid`, every argument in text format.
fn function_call(oid: u32, args: &[&[u8]]) -> Message {
    Message::build(portcullis_wire::frontend::FUNCTION_CALL, |b| {
        use bytes::BufMut;
        b.put_u32(oid);
        b.put_i16(0);
        b.put_i16(args.len() as i16);
        for a in args {
            b.put_i32(a.len() as i32);
            b.put_slice(a);
        }
        b.put_i16(0);
    })
}

/// Item 6: a fast-path FunctionCall of set_config (OID 2078) switched roles although the
/// same call in SQL is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_path_call_has_the_facts_of_the_sql_call() {
    let h = harness().await;
    // A role the gateway's login role may become, as far as the database is concerned.
    h.direct("app", "create role auditor; grant auditor to gw_app;");
    let call = |args: &[&[u8]]| function_call(2078, args);
    let mut raw = raw_as(&h, BOB).await;
    raw.send(&[call(&[b"role", b"auditor", b"false"])]).await;
    let answers = raw.until_ready().await;
    let errs = errors(&answers);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].code(), "42501");
    assert!(errs[0].message().contains("no-role-switching"), "{errs:?}");
    raw.send(&[query(b"SELECT current_user")]).await;
    let answers = raw.until_ready().await;
    assert_eq!(rows(&answers)[0][0].as_deref(), Some("gw_app"));

    // A setting changed by a fast-path call is the server's for the next message.
    let before = orders(&h);
    raw.send(&[
        call(&[b"standard_conforming_strings", b"off", b"false"]),
        query(ON_HARMLESS),
    ])
    .await;
    let answers = readies(&mut raw, 2).await;
    assert!(
        errors(&answers).iter().any(|e| e.code() == "42501"),
        "{:?}",
        errors(&answers)
    );
    assert_eq!(orders(&h), before);

    // The trail shows the SQL call the fast-path call stands for.
    let events = h.audit_events("statement").await;
    assert!(
        events.iter().any(|e| format!("{e:?}").contains("set_config")
            && format!("{e:?}").contains("'role'")),
        "no statement event names the set_config call"
    );
}

/// Item 7: functions that write are writes: bob created a large object without approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_that_write_are_writes() {
    let h = harness().await;
    h.direct(
        "app",
        "create sequence public.order_ids;
         create function public.bump() returns int language sql volatile
             as 'update orders set amount = amount + 1 returning 1';
         create function public.double(int) returns int language sql immutable
             as 'select $1 * 2';
         create function public.bump_op(int, int) returns int language sql volatile
             as 'update orders set amount = amount + 1 returning 1';
         create operator public.=== (leftarg = int, rightarg = int, function = public.bump_op);
         create function public.bump_check(int) returns bool language sql volatile
             as 'update orders set amount = amount + 1 returning true';
         create domain public.checked as int check (public.bump_check(value));
         alter function public.bump() owner to gw_app;
         alter function public.double(int) owner to gw_app;
         alter sequence public.order_ids owner to gw_app;",
    );
    let objects = || h.direct("app", "select count(*) from pg_largeobject_metadata");
    let before = (objects(), h.direct("app", SAMPLE_CHECKSUM));
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    let alice = h.connect_as(ALICE.0, ALICE.1, "app").await.unwrap();
    for sql in [
        "SELECT lo_from_bytea(0, 'x')",
        "SELECT lo_creat(-1)",
        "SELECT nextval('order_ids')",
        "SELECT setval('order_ids', 100)",
        "SELECT pg_advisory_lock(1)",
        "SELECT bump()",
        "SELECT public.bump()",
        "SELECT * FROM reporting.daily_revenue WHERE bump() = 1",
        // An operator is its function.
        "SELECT 1 === 2",
        // A cast runs a domain's check.
        "SELECT 1::checked",
        "SELECT count(*) FROM reporting.daily_revenue WHERE orders OPERATOR(public.===) 1 > 0",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        let (code, message) = db_error(&e);
        assert_eq!(code, "42501", "bob: {sql}: {message}");
        assert!(message.contains("approval"), "bob: {sql}: {message}");
        let e = alice.simple_query(sql).await.expect_err(sql);
        assert_eq!(db_error(&e).0, "42501", "alice: {sql}");
    }
    assert_eq!((objects(), h.direct("app", SAMPLE_CHECKSUM)), before);
    // Functions that cannot write are ordinary.
    for sql in [
        "SELECT double(2), lower('X'), now(), random() < 2, currval IS NULL FROM (SELECT NULL::bigint AS currval) x",
        "SELECT count(*) FROM reporting.daily_revenue WHERE double(orders) > 2",
    ] {
        alice
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// A prepared statement made behind the gateway's back (a function's dynamic SQL) is never
/// bound: the gateway runs only what it decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_prepared_out_of_sight_are_not_run() {
    let h = harness().await;
    h.direct(
        "app",
        "create function public.prep() returns void language plpgsql volatile
             as $$ begin execute 'prepare hidden as delete from orders'; end $$;
         alter function public.prep() owner to gw_app;",
    );
    let before = orders(&h);
    // Break-glass may call the function; what it prepared was never decided.
    let mut raw = raw_as(&h, ("erin", &["dba", "break-glass"])).await;
    raw.send(&[query(b"SELECT prep()")]).await;
    assert!(errors(&raw.until_ready().await).is_empty());
    raw.send(&[
        bind("", "hidden", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    let answers = raw.until_ready().await;
    let errs = errors(&answers);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].code(), "26000");
    assert!(
        errs[0].message().contains("\"hidden\" does not exist"),
        "{errs:?}"
    );
    assert_eq!(orders(&h), before);
}

/// The attacker's findings against the demo: plans that estimate masked values, prepared
/// transactions, an unnamed statement the server kept while the gateway thought it gone,
/// the gateway's own statement names, and cursors read outside the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_estimates_and_prepared_transactions_are_governed() {
    let h = harness().await;
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    let alice = h.connect_as(ALICE.0, ALICE.1, "app").await.unwrap();
    // A plan's row estimates come from the statistics of the columns its predicates name.
    for sql in [
        "explain select id from customers where email < 'c5'",
        "explain select 1 from customers a, customers b where a.card_number < '4111'",
    ] {
        let e = bob.simple_query(sql).await.expect_err(sql);
        assert_eq!(db_error(&e).0, "42501", "{sql}");
    }
    bob.simple_query("explain select id from customers where id < 5")
        .await
        .expect("a plan over columns bob may read");
    // A prepared transaction outlives the session, holding its locks.
    for client in [&bob, &alice] {
        client.simple_query("begin").await.unwrap();
        let e = client
            .simple_query("prepare transaction 'px'")
            .await
            .expect_err("two-phase commit");
        assert!(db_error(&e).1.contains("no-two-phase-commit"), "{e}");
        client.simple_query("rollback").await.unwrap();
    }
    assert_eq!(
        h.direct("app", "select count(*) from pg_prepared_xacts"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statement_and_cursor_decided_are_the_ones_the_server_runs() {
    let clock = Arc::new(FixedClock::new(BUSINESS_HOURS.parse().unwrap()));
    let h = harness_at(clock.clone()).await;
    let s1: &[u8] = b"SELECT day, revenue FROM reporting.daily_revenue ORDER BY day LIMIT 2";
    let mut raw = raw_as(&h, ALICE).await;
    raw.send(&[parse(s1), portcullis_wire::frontend::sync()])
        .await;
    assert!(errors(&raw.until_ready().await).is_empty());
    // A refused Bind makes the server skip to Sync: the Parse after it never happens.
    raw.send(&[
        bind("", "nonexistent", &[]),
        parse(b"SELECT 'innocent text' AS x, 42 AS y"),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert_eq!(errors(&raw.until_ready().await).len(), 1);
    // After hours, binding the unnamed statement binds S1: decided as S1, refused.
    clock.set(EVENING.parse().unwrap());
    raw.send(&[
        bind("", "", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    let answers = raw.until_ready().await;
    assert!(rows(&answers).is_empty(), "{:?}", rows(&answers));
    assert_eq!(
        errors(&answers)[0].code(),
        "42501",
        "{:?}",
        errors(&answers)
    );
    // In hours the same Bind runs S1, and the trail says S1.
    clock.set(BUSINESS_HOURS.parse().unwrap());
    raw.send(&[
        bind("", "", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert_eq!(rows(&raw.until_ready().await).len(), 2);
    let events = h.audit_events("statement").await;
    let binds: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            portcullis_audit::Event::Statement(s) if s.origin == "bind" => Some(s.text.clone()),
            _ => None,
        })
        .collect();
    assert!(!binds.iter().any(|t| t.contains("innocent")), "{binds:?}");
    assert!(binds.iter().any(|t| t.as_bytes() == s1), "{binds:?}");

    // The gateway's own statement names are not the client's to take.
    raw.send(&[
        Parse::new(
            "portcullis_refused",
            b"SELECT day FROM reporting.daily_revenue",
            &[],
        )
        .message()
        .clone(),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    let errs = errors(&raw.until_ready().await);
    assert!(errs[0].message().contains("reserved"), "{errs:?}");
    raw.send(&[query(b"PREPARE portcullis_probe AS SELECT 1")])
        .await;
    assert!(
        errors(&raw.until_ready().await)[0]
            .message()
            .contains("reserved")
    );
    raw.send(&[
        bind("", "never_prepared", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    let answers = raw.until_ready().await;
    assert!(rows(&answers).is_empty() && errors(&answers)[0].code() == "26000");

    // A cursor is read under the rules of the time it is read, by FETCH or by Execute.
    raw.send(&[query(
        b"DECLARE cur CURSOR WITH HOLD FOR SELECT day FROM reporting.daily_revenue ORDER BY day",
    )])
    .await;
    assert!(errors(&raw.until_ready().await).is_empty());
    raw.send(&[execute("cur", 1), portcullis_wire::frontend::sync()])
        .await;
    assert_eq!(rows(&raw.until_ready().await).len(), 1);
    clock.set(EVENING.parse().unwrap());
    raw.send(&[query(b"FETCH 2 FROM cur")]).await;
    let answers = raw.until_ready().await;
    assert!(rows(&answers).is_empty() && errors(&answers)[0].code() == "42501");
    raw.send(&[execute("cur", 1), portcullis_wire::frontend::sync()])
        .await;
    let answers = raw.until_ready().await;
    assert!(rows(&answers).is_empty() && errors(&answers)[0].code() == "42501");
    let events = h.audit_events("statement").await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, portcullis_audit::Event::Statement(s)
            if s.origin == "execute" && s.text.contains("cur") && s.sqlstate.is_none())),
        "the Execute of the cursor was not audited"
    );
}

fn named_parse(name: &str, sql: &[u8]) -> Message {
    Parse::new(name, sql, &[]).message().clone()
}

fn statement_texts(events: &[portcullis_audit::Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            portcullis_audit::Event::Statement(s) => Some((s.origin.clone(), s.text.clone())),
            _ => None,
        })
        .collect()
}

/// The server reads protocol names in the client encoding; the gateway keys them as sent.
/// In LATIN1 the UTF-8 bytes of "é" name the statement "Ã©", which SQL can reach under
/// that name: a statement decided as one text ran as another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_and_portal_names_are_the_servers_names() {
    let h = harness().await;
    let mut raw = raw_as(&h, ALICE).await;
    // In UTF-8 a non-ASCII name is the same name on both sides.
    raw.send(&[
        named_parse("é", b"SELECT 1 AS x"),
        bind("é", "é", &[]),
        execute("é", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert_eq!(rows(&raw.until_ready().await), vec![vec![Some("1".into())]]);
    raw.send(&[query(b"SET client_encoding = 'LATIN1'")]).await;
    raw.until_ready().await;
    for msg in [
        named_parse("ü", b"SELECT 'innocent' AS x"),
        bind("", "é", &[]),
        bind("ü", "", &[]),
        execute("é", 0),
        portcullis_tests::raw::describe_portal("é"),
    ] {
        raw.send(&[msg, portcullis_wire::frontend::sync()]).await;
        let answers = raw.until_ready().await;
        let errs = errors(&answers);
        assert_eq!(errs.len(), 1, "{answers:?}");
        assert_eq!(errs[0].code(), "42602", "{errs:?}");
        assert!(rows(&answers).is_empty());
    }
    // The server keeps 63 bytes of a name: a longer one could be another's first 63.
    let long = "s".repeat(64);
    for msg in [
        named_parse(&long, b"SELECT 1"),
        bind(&long, "plain", &[]),
        bind("", &long, &[]),
        execute(&long, 0),
        portcullis_tests::raw::describe_portal(&long),
    ] {
        raw.send(&[msg, portcullis_wire::frontend::sync()]).await;
        let answers = raw.until_ready().await;
        assert_eq!(errors(&answers)[0].code(), "42622", "{answers:?}");
    }
    // The session goes on; an ASCII name is fine in any encoding.
    raw.send(&[
        named_parse("plain", b"SELECT 2 AS x"),
        bind("", "plain", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert_eq!(rows(&raw.until_ready().await), vec![vec![Some("2".into())]]);
}

/// A portal lasts as long as its transaction. Once the server has dropped it, the name can
/// hold a cursor, and an Execute of that name runs the cursor: decided and recorded as the
/// cursor, never under the treatment of the portal bound earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_name_reused_after_its_transaction_is_the_new_portal() {
    let h = harness().await;
    let revenue: &[u8] = b"SELECT day FROM reporting.daily_revenue ORDER BY day";
    let mut raw = raw_as(&h, ALICE).await;
    for declare_through_parse in [false, true] {
        raw.send(&[
            query(b"BEGIN"),
            named_parse("innocent", b"SELECT 'innocent' AS x"),
            bind("cur", "innocent", &[]),
            execute("cur", 0),
            Close::new(Target::Statement, "innocent").message().clone(),
            portcullis_wire::frontend::sync(),
            query(b"COMMIT"),
            query(b"BEGIN"),
        ])
        .await;
        let answers = readies(&mut raw, 4).await;
        assert!(errors(&answers).is_empty(), "{answers:?}");
        let declare = [b"DECLARE cur CURSOR FOR ".as_slice(), revenue].concat();
        if declare_through_parse {
            raw.send(&[
                parse(&declare),
                bind("", "", &[]),
                execute("", 0),
                portcullis_wire::frontend::sync(),
            ])
            .await;
        } else {
            raw.send(&[query(&declare)]).await;
        }
        assert!(errors(&raw.until_ready().await).is_empty());
        raw.send(&[execute("cur", 2), portcullis_wire::frontend::sync()])
            .await;
        let answers = raw.until_ready().await;
        assert_eq!(rows(&answers).len(), 2, "{answers:?}");
        raw.send(&[query(b"COMMIT")]).await;
        raw.until_ready().await;
        let texts = statement_texts(&h.audit_events("statement").await);
        // Newest first: the Execute is the cursor's.
        assert!(
            texts[1].0 == "execute" && texts[1].1.contains("Execute of cursor \"cur\""),
            "{texts:?}"
        );
        // Its rows are the cursor's, recorded under the cursor's statement: the innocent
        // statement's result is its own one row.
        let innocent: Vec<u64> = h
            .audit_events("statement")
            .await
            .iter()
            .filter_map(|e| match e {
                portcullis_audit::Event::Statement(s) if s.text.contains("innocent") => Some(s.seq),
                _ => None,
            })
            .collect();
        let results = h.audit_events("result").await;
        for e in &results {
            if let portcullis_audit::Event::Result(r) = e
                && innocent.contains(&r.seq)
            {
                assert_eq!(r.rows, Some(1), "{results:?}");
            }
        }
    }
}

/// A portal the server holds under a name the gateway bound, but which is not what it bound
/// (a function opened a cursor of that name after the transaction ended): nothing of its
/// answer leaves, and the session ends with the tripwire's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_that_is_not_the_one_bound_trips_the_wire() {
    // Policies that permit everything: the function's own reads are not the point.
    let h = Harness::with(Setup::default()).await;
    h.direct("app", SAMPLE_SCHEMA);
    h.direct(
        "app",
        "CREATE FUNCTION public.open_cur() RETURNS refcursor LANGUAGE plpgsql AS $$ \
         DECLARE c refcursor := 'cur'; BEGIN OPEN c FOR SELECT email FROM public.customers; RETURN c; END $$",
    );
    let mut raw = raw_as(&h, ("dave", &["dba"])).await;
    raw.send(&[
        query(b"BEGIN"),
        named_parse("innocent", b"SELECT 'innocent' AS x"),
        bind("cur", "innocent", &[]),
        execute("cur", 0),
        portcullis_wire::frontend::sync(),
        query(b"COMMIT"),
        query(b"BEGIN"),
        query(b"SELECT public.open_cur()"),
    ])
    .await;
    let answers = readies(&mut raw, 5).await;
    assert!(errors(&answers).is_empty(), "{answers:?}");
    raw.send(&[execute("cur", 0), portcullis_wire::frontend::sync()])
        .await;
    // Until the session ends, or (were the portal run) its ReadyForQuery.
    let mut answers = Vec::new();
    while let Some(m) = raw.recv().await {
        let ready = m.tag() == portcullis_wire::backend::READY_FOR_QUERY;
        answers.push(m);
        if ready {
            break;
        }
    }
    assert!(rows(&answers).is_empty(), "{answers:?}");
    let errs = errors(&answers);
    assert_eq!(errs.last().map(|e| e.code()), Some("XX000"), "{errs:?}");
    assert!(errs[0].message().contains("portal \"cur\""), "{errs:?}");
    let events = h.audit_events("security").await;
    assert_eq!(events.len(), 1, "{events:?}");
}

/// `options` is read with the server's getopt: `-ec role=x` is `-e -c role=x`, and sets
/// the role before any statement is seen, which the policy forbids like `SET ROLE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_options_are_read_as_the_server_reads_them() {
    let h = harness().await;
    let token = h.token(ALICE.0, ALICE.1);
    let v3 = portcullis_wire::startup::ProtocolVersion { major: 3, minor: 0 };
    for options in [
        "-c role=analyst",
        "-ec role=analyst",
        "-ecrole=analyst",
        "-e -crole=analyst",
    ] {
        let mut raw = RawClient::connect(h.port()).await;
        let refused = raw
            .login_with(
                v3,
                &[("user", "alice"), ("database", "app"), ("options", options)],
                &token,
            )
            .await
            .expect_err(options);
        assert!(
            refused.message().contains("no-role-switching"),
            "{options}: {refused:?}"
        );
    }
    // What the server would reject, the gateway refuses before it gets there.
    let mut raw = RawClient::connect(h.port()).await;
    let refused = raw
        .login_with(
            v3,
            &[("user", "alice"), ("database", "app"), ("options", "-q")],
            &token,
        )
        .await
        .expect_err("unknown switch");
    assert!(refused.message().contains("-q"), "{refused:?}");
    // Harmless switches log in.
    let mut raw = RawClient::connect(h.port()).await;
    raw.login_with(
        v3,
        &[
            ("user", "alice"),
            ("database", "app"),
            ("options", "-e -c search_path=reporting"),
        ],
        &token,
    )
    .await
    .expect("harmless options");
    raw.send(&[query(b"SHOW search_path")]).await;
    assert_eq!(
        rows(&raw.until_ready().await),
        vec![vec![Some("reporting".into())]]
    );
}

/// The catalog is shared by every session of a target and loaded over the first one's
/// connection: names are read the same whatever that session's client encoding, so a
/// mask on a column with a non-ASCII name holds for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_reads_names_whatever_the_session_encoding() {
    let mut policies = example_policies();
    policies.push((
        "50-kuendigung.cedar".into(),
        r#"@id("mask-kuendigungsgrund")
@mask("redact")
forbid(principal, action == Action::"read_unmasked", resource == Column::"public.kündigung.grund")
unless { principal in Group::"dba" };"#
            .into(),
    ));
    let h = Harness::with(Setup {
        policies,
        clock: Some(Arc::new(FixedClock::new(BUSINESS_HOURS.parse().unwrap()))),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    h.direct(
        "app",
        "CREATE TABLE public.\"kündigung\" (id int, grund text); \
         INSERT INTO public.\"kündigung\" VALUES (1, 'secret'); \
         GRANT SELECT ON public.\"kündigung\" TO PUBLIC",
    );
    // The first login, which loads the catalog, speaks LATIN1.
    let v3 = portcullis_wire::startup::ProtocolVersion { major: 3, minor: 0 };
    let mut first = RawClient::connect(h.port()).await;
    first
        .login_with(
            v3,
            &[
                ("user", "bob"),
                ("database", "app"),
                ("client_encoding", "LATIN1"),
            ],
            &h.token(BOB.0, BOB.1),
        )
        .await
        .expect("login");
    let mut raw = raw_as(&h, BOB).await;
    for sql in [
        "SELECT * FROM \"kündigung\"",
        "SELECT k FROM public.\"kündigung\" k",
    ] {
        raw.send(&[query(sql.as_bytes())]).await;
        let answers = raw.until_ready().await;
        assert!(rows(&answers).is_empty(), "{sql}: {answers:?}");
        assert!(
            errors(&answers)[0].message().contains("must be masked"),
            "{sql}: {:?}",
            errors(&answers)
        );
    }
    raw.send(&[query(b"SELECT id FROM \"k\xc3\xbcndigung\"")])
        .await;
    assert_eq!(rows(&raw.until_ready().await).len(), 1);
}

/// A cursor is read under the DECLARE the server ran: a DECLARE through the extended
/// protocol that the server refuses (the name is taken) leaves the cursor as it was, and a
/// SQL FETCH of a protocol portal is decided on what the portal was bound to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_are_decided_on_what_the_server_fetches_from() {
    let clock = Arc::new(FixedClock::new(BUSINESS_HOURS.parse().unwrap()));
    let h = harness_at(clock.clone()).await;
    let mut raw = raw_as(&h, ALICE).await;
    raw.send(&[query(
        b"DECLARE c CURSOR WITH HOLD FOR SELECT day FROM reporting.daily_revenue ORDER BY day",
    )])
    .await;
    assert!(errors(&raw.until_ready().await).is_empty());
    raw.send(&[
        parse(b"DECLARE c CURSOR WITH HOLD FOR SELECT 1 AS decided"),
        bind("", "", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert_eq!(errors(&raw.until_ready().await)[0].code(), "42P03");
    // A protocol portal in an open transaction.
    raw.send(&[
        query(b"BEGIN"),
        named_parse(
            "rev",
            b"SELECT day FROM reporting.daily_revenue ORDER BY day",
        ),
        bind("P1", "rev", &[]),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert!(errors(&readies(&mut raw, 2).await).is_empty());
    clock.set(EVENING.parse().unwrap());
    for fetch in [&b"FETCH 1 FROM c"[..], b"FETCH 1 FROM \"P1\""] {
        raw.send(&[query(fetch)]).await;
        let answers = raw.until_ready().await;
        assert!(rows(&answers).is_empty(), "{answers:?}");
        assert_eq!(errors(&answers)[0].code(), "42501", "{answers:?}");
        // The refusal failed the transaction, which took the portal with it: bind it again,
        // in hours (a Bind is decided too).
        clock.set(BUSINESS_HOURS.parse().unwrap());
        raw.send(&[
            query(b"ROLLBACK"),
            query(b"BEGIN"),
            bind("P1", "rev", &[]),
            portcullis_wire::frontend::sync(),
        ])
        .await;
        assert!(errors(&readies(&mut raw, 3).await).is_empty());
        clock.set(EVENING.parse().unwrap());
    }
    clock.set(BUSINESS_HOURS.parse().unwrap());
    raw.send(&[query(b"FETCH 2 FROM \"P1\"")]).await;
    let answers = raw.until_ready().await;
    assert_eq!(
        rows(&answers).len(),
        2,
        "{answers:?} {:?}",
        errors(&answers)
    );
}

/// Recorded rows are named by a Describe of their own portal or statement, never by the
/// last Describe of another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_rows_are_named_by_their_own_description() {
    let h = Harness::with(Setup {
        audit_settings: "record_results = true".into(),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let mut raw = raw_as(&h, ("dave", &["dba"])).await;
    raw.send(&[
        named_parse("label", b"SELECT 'x' AS harmless_label"),
        named_parse("orders", b"SELECT id FROM orders ORDER BY id LIMIT 1"),
        bind("P2", "label", &[]),
        bind("P3", "orders", &[]),
        portcullis_tests::raw::describe_portal("P2"),
        execute("P3", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert!(errors(&raw.until_ready().await).is_empty());
    drop(raw);
    let results = h.audit_events("result").await;
    let recorded: Vec<_> = results
        .iter()
        .filter_map(|e| match e {
            portcullis_audit::Event::Result(r) => r.recording.clone(),
            _ => None,
        })
        .collect();
    assert!(!recorded.is_empty(), "{results:?}");
    for r in &recorded {
        assert!(!r.columns.contains(&"harmless_label".to_string()), "{r:?}");
    }
}

/// A statement's name holds what the server holds under it, whichever way it was changed:
/// a protocol Parse settled after a simple Query that replaced it in the same segment,
/// `DEALLOCATE` and `PREPARE` through the extended protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_holds_what_the_server_prepared_under_it() {
    let clock = Arc::new(FixedClock::new(BUSINESS_HOURS.parse().unwrap()));
    let h = harness_at(clock.clone()).await;
    let mut raw = raw_as(&h, ALICE).await;
    let revenue = b"SELECT day FROM reporting.daily_revenue ORDER BY day LIMIT 3";
    // A simple Query in the middle of a segment.
    raw.send(&[
        named_parse("s1", b"SELECT 1 AS harmless"),
        query(&[b"DEALLOCATE s1; PREPARE s1 AS ".as_slice(), revenue].concat()),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert!(errors(&readies(&mut raw, 2).await).is_empty());
    // The extended protocol.
    raw.send(&[
        named_parse("s3", b"SELECT 1 AS harmless"),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    raw.until_ready().await;
    for sql in [
        b"DEALLOCATE s3".to_vec(),
        [b"PREPARE s3 AS ".as_slice(), revenue].concat(),
    ] {
        raw.send(&[
            parse(&sql),
            bind("", "", &[]),
            execute("", 0),
            portcullis_wire::frontend::sync(),
        ])
        .await;
        assert!(errors(&raw.until_ready().await).is_empty());
    }
    // After hours, both are decided as what they run: refused.
    clock.set(EVENING.parse().unwrap());
    for name in ["s1", "s3"] {
        raw.send(&[
            bind("", name, &[]),
            execute("", 0),
            portcullis_wire::frontend::sync(),
        ])
        .await;
        let answers = raw.until_ready().await;
        assert!(rows(&answers).is_empty(), "{name}: {answers:?}");
        assert_eq!(errors(&answers)[0].code(), "42501", "{name}: {answers:?}");
        raw.send(&[query(format!("EXECUTE {name}").as_bytes())])
            .await;
        assert_eq!(errors(&raw.until_ready().await)[0].code(), "42501");
    }
}

/// A cursor the server dropped at its transaction's end and a portal bound since under the
/// same name: the gateway cannot tell which a FETCH reads, so it decides on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_is_decided_on_every_object_its_name_may_hold() {
    let clock = Arc::new(FixedClock::new(BUSINESS_HOURS.parse().unwrap()));
    let h = harness_at(clock.clone()).await;
    let mut raw = raw_as(&h, ALICE).await;
    raw.send(&[
        query(b"BEGIN; DECLARE p CURSOR FOR SELECT 1 AS harmless; COMMIT"),
        query(b"BEGIN"),
        named_parse(
            "rev",
            b"SELECT day FROM reporting.daily_revenue ORDER BY day",
        ),
        bind("p", "rev", &[]),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert!(errors(&readies(&mut raw, 3).await).is_empty());
    clock.set(EVENING.parse().unwrap());
    raw.send(&[query(b"FETCH 2 FROM p")]).await;
    let answers = raw.until_ready().await;
    assert!(rows(&answers).is_empty(), "{answers:?}");
    assert_eq!(errors(&answers)[0].code(), "42501", "{answers:?}");
}

/// A search path set in a transaction that is rolled back is not the session's: names the
/// catalog cannot place (a table created behind the gateway since its last load) are
/// looked for in every schema the server may use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_search_path_does_not_place_names() {
    let h = harness().await;
    let mut raw = raw_as(&h, ALICE).await;
    h.direct(
        "app",
        "CREATE TABLE public.secret_new (v text); INSERT INTO public.secret_new VALUES ('secret'); \
         GRANT SELECT ON public.secret_new TO PUBLIC",
    );
    raw.send(&[query(b"BEGIN; SET search_path = reporting; ROLLBACK")])
        .await;
    raw.until_ready().await;
    raw.send(&[query(b"SELECT * FROM secret_new")]).await;
    let answers = raw.until_ready().await;
    assert!(rows(&answers).is_empty(), "{answers:?}");
    assert_eq!(errors(&answers)[0].code(), "42501", "{answers:?}");
}

/// A portal run over several Executes (a driver's fetch size) is one result in the trail:
/// every row that went out, and how the run ended; an Execute after the end adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_run_in_chunks_is_recorded_whole() {
    let h = Harness::with(Setup {
        audit_settings: "record_results = true".into(),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let mut raw = raw_as(&h, ("dave", &["dba"])).await;
    raw.send(&[
        query(b"BEGIN"),
        named_parse("four", b"SELECT id FROM orders ORDER BY id LIMIT 4"),
        bind("pc", "four", &[]),
        execute("pc", 2),
        portcullis_wire::frontend::sync(),
        execute("pc", 2),
        portcullis_wire::frontend::sync(),
        execute("pc", 2),
        execute("pc", 2),
        portcullis_wire::frontend::sync(),
        query(b"COMMIT"),
    ])
    .await;
    let answers = readies(&mut raw, 5).await;
    assert!(errors(&answers).is_empty(), "{answers:?}");
    assert_eq!(rows(&answers).len(), 4);
    drop(raw);
    let statements = h.audit_events("statement").await;
    let seq = statements
        .iter()
        .find_map(|e| match e {
            portcullis_audit::Event::Statement(s) if s.origin == "bind" => Some(s.seq),
            _ => None,
        })
        .expect("the bind");
    let results: Vec<_> = h
        .audit_events("result")
        .await
        .into_iter()
        .filter_map(|e| match e {
            portcullis_audit::Event::Result(r) if r.seq == seq => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    let r = &results[0];
    assert_eq!(r.rows, Some(4), "{r:?}");
    assert_eq!(
        r.recording.as_ref().map(|rec| rec.rows.len()),
        Some(4),
        "{r:?}"
    );
}
