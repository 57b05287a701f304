//! Statements decided from the real parse tree under the shipped example policies,
//! through a real client against a real server: ordinary statements pass, and attempts to
//! get around the policies (comments, case, quoting, U& escapes, schema qualification,
//! search_path, multi-statement queries, data-modifying CTEs, PREPARE/EXECUTE, cursors,
//! SELECT INTO, CREATE TABLE AS, EXPLAIN ANALYZE, DO, functions, COPY, rules, views,
//! transactions) are refused without anything running.

use std::sync::Arc;

use portcullis_gateway::FixedClock;
use portcullis_tests::{Harness, SAMPLE_CHECKSUM, SAMPLE_SCHEMA, Setup, example_policies};

/// Tuesday 2026-11-24, 10:00 UTC: business hours.
fn business_hours() -> jiff::Timestamp {
    "2026-11-24T10:00:00Z".parse().unwrap()
}

async fn harness(clock: Arc<FixedClock>) -> Harness {
    let h = Harness::with(Setup {
        policies: example_policies(),
        clock: Some(clock),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    h
}

enum Expect {
    Ok,
    /// Refused with this SQLSTATE and a message containing this text.
    Refused(&'static str, &'static str),
}
use Expect::*;

/// Who runs a statement.
const ALICE: (&str, &[&str]) = ("alice", &["data-science"]);
const BOB: (&str, &[&str]) = ("bob", &["engineering"]);
const CAROL: (&str, &[&str]) = ("carol", &["managers"]);
const DAVE: (&str, &[&str]) = ("dave", &["dba"]);
const GLASS: (&str, &[&str]) = ("erin", &["dba", "break-glass"]);

type Case = (
    (&'static str, &'static [&'static str]),
    &'static str,
    Expect,
);

const NO_PERMIT_CUSTOMERS: &str = "no policy permits select on table public.customers";

fn cases() -> Vec<Case> {
    vec![
        // Ordinary work is allowed.
        (ALICE, "select * from reporting.daily_revenue", Ok),
        (
            ALICE,
            "select day, revenue from reporting.daily_revenue where day > '2025-06-10'",
            Ok,
        ),
        (ALICE, r#"SELECT * FROM "reporting"."daily_revenue""#, Ok),
        (
            ALICE,
            "set search_path = reporting; select count(*) from daily_revenue",
            Ok,
        ),
        (
            ALICE,
            "begin; select count(*) from reporting.daily_revenue; commit",
            Ok,
        ),
        (ALICE, "select 1", Ok),
        (ALICE, "select now(), lower('X')", Ok),
        (ALICE, "select relname from pg_catalog.pg_class limit 1", Ok),
        (ALICE, "explain select * from reporting.daily_revenue", Ok),
        (
            ALICE,
            "with r as (select * from reporting.daily_revenue) select count(*) from r",
            Ok,
        ),
        (
            ALICE,
            "prepare q as select * from reporting.daily_revenue; execute q; deallocate q",
            Ok,
        ),
        (
            ALICE,
            "begin; declare c cursor for select * from reporting.daily_revenue; fetch 2 from c; close c; commit",
            Ok,
        ),
        (ALICE, "show search_path", Ok),
        (ALICE, "values (1), (2)", Ok),
        // A string that looks like SQL is only a string.
        (ALICE, "select $$ select * from customers $$", Ok),
        (ALICE, "select 'delete from reporting.daily_revenue'", Ok),
        // Reads of tables alice may not read, however they are written.
        (
            ALICE,
            "select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from public.customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "SeLeCt * FrOm PuBlIc.CuStOmErS",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from/**/customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select/*reporting.daily_revenue*/*from--x\ncustomers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            r#"select * from "public"."customers""#,
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            r#"select * from U&"\0063ustomers""#,
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            r#"select * from public.U&"cust\006fmers""#,
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "/* reporting.daily_revenue */ select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from reporting.daily_revenue where exists (select 1 from customers)",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from reporting.daily_revenue limit (select count(*) from customers)",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select (select email from customers limit 1)",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from reporting.daily_revenue, customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select day::text from reporting.daily_revenue union all select email from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "with c as (select * from customers) select * from c",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "with reporting as (select 1) select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from (with customers as (select 1) select * from customers) x, customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from customers c join orders o on o.customer_id = c.id",
            Refused("42501", "no policy permits select"),
        ),
        (
            ALICE,
            "select 'reporting.daily_revenue' from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select row_to_json(c) from customers c",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "table customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        // The search path does not hide a table.
        (
            ALICE,
            "set search_path = public; select * from orders",
            Refused("42501", "no policy permits select on table public.orders"),
        ),
        (
            ALICE,
            "select set_config('search_path', 'public', false); select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        // One refused statement refuses the whole query.
        (
            ALICE,
            "select 1; select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "select * from reporting.daily_revenue; select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        // Prepared statements and cursors are decided on what they run.
        (
            ALICE,
            "prepare p as select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "prepare p2(int) as select * from customers where id = $1; execute p2(1)",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "begin; declare c cursor for select * from customers; fetch 1 from c; commit",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        // Copying, materialising, explaining.
        (
            ALICE,
            "select * into reporting.leak from customers",
            Refused("42501", "no policy permits"),
        ),
        (
            ALICE,
            "create table reporting.leak as select * from customers",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "create temp table leak as select * from customers",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "create view reporting.v as select * from customers",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "copy customers to stdout",
            Refused(
                "42501",
                "no policy permits copy_out on table public.customers",
            ),
        ),
        (
            ALICE,
            "copy (select * from customers) to stdout",
            Refused(
                "42501",
                "no policy permits copy_out on table public.customers",
            ),
        ),
        (
            ALICE,
            "explain analyze select * from customers",
            Refused("42501", NO_PERMIT_CUSTOMERS),
        ),
        (
            ALICE,
            "explain select * from customers",
            Refused(
                "42501",
                "no policy permits explain on table public.customers",
            ),
        ),
        // Writes.
        (
            ALICE,
            "update reporting.daily_revenue set revenue = 0 where day = '2025-06-01'",
            Refused("42501", "update"),
        ),
        (
            ALICE,
            "delete from reporting.daily_revenue where true",
            Refused("42501", "delete"),
        ),
        (
            ALICE,
            "insert into reporting.daily_revenue values ('2030-01-01', 1, 1)",
            Refused("42501", "insert"),
        ),
        (
            ALICE,
            "with d as (delete from reporting.daily_revenue where true returning *) select * from d",
            Refused("42501", "delete"),
        ),
        (
            ALICE,
            "explain analyze delete from reporting.daily_revenue where true",
            Refused("42501", "delete"),
        ),
        (
            ALICE,
            "merge into reporting.daily_revenue d using (select 1) s on false when not matched then insert values ('2031-01-01', 1, 1)",
            Refused("42501", "merge"),
        ),
        (
            ALICE,
            "truncate reporting.daily_revenue",
            Refused("42501", "no-truncate"),
        ),
        (
            ALICE,
            "prepare w as delete from reporting.daily_revenue where true; execute w",
            Refused("42501", "delete"),
        ),
        // Schema changes and code.
        (
            ALICE,
            "drop table reporting.daily_revenue",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "alter table reporting.daily_revenue add column x int",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "create table t (x int)",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "do $$ begin delete from reporting.daily_revenue; end $$",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "create function f() returns bigint language sql as 'select count(*) from customers'",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "create rule r as on select to reporting.daily_revenue do instead select * from customers",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "grant select on customers to public",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "create role mallory superuser",
            Refused("42501", "only-dbas-run-ddl"),
        ),
        (
            ALICE,
            "lock table customers",
            Refused(
                "42501",
                "no policy permits utility on table public.customers",
            ),
        ),
        (
            ALICE,
            "vacuum customers",
            Refused(
                "42501",
                "no policy permits utility on table public.customers",
            ),
        ),
        // Identity and server access, refused even for DBAs.
        (
            DAVE,
            "set role postgres",
            Refused("42501", "no-role-switching"),
        ),
        (
            DAVE,
            "set session authorization postgres",
            Refused("42501", "no-role-switching"),
        ),
        (
            DAVE,
            "select set_config('role', 'postgres', false)",
            Refused("42501", "no-role-switching"),
        ),
        (
            DAVE,
            "select pg_read_file('PG_VERSION')",
            Refused("42501", "no-server-file-functions"),
        ),
        (
            DAVE,
            "select pg_catalog.pg_read_file('PG_VERSION')",
            Refused("42501", "no-server-file-functions"),
        ),
        (
            DAVE,
            "select lo_import('/etc/hostname')",
            Refused("42501", "no-server-file-functions"),
        ),
        (
            DAVE,
            "copy public.orders from program 'id'",
            Refused("42501", "no-copy-program"),
        ),
        (
            DAVE,
            "copy public.orders to '/tmp/portcullis-leak'",
            Refused("42501", "no-copy-to-or-from-server-files"),
        ),
        (
            DAVE,
            "alter system set work_mem = '1GB'",
            Refused("42501", "no-alter-system"),
        ),
        (DAVE, "load 'plpgsql'", Refused("42501", "no-alter-system")),
        (
            DAVE,
            "drop database app",
            Refused("42501", "no-drop-database"),
        ),
        (
            DAVE,
            "truncate public.orders",
            Refused("42501", "no-truncate"),
        ),
        (
            BOB,
            "select query_to_xml('select * from customers', true, true, '')",
            Refused("42501", "no-dynamic-sql-or-admin-functions"),
        ),
        (
            BOB,
            "select pg_terminate_backend(pg_backend_pid())",
            Refused("42501", "no-dynamic-sql-or-admin-functions"),
        ),
        // Engineers: reads of app tables except masked columns; writes need approval.
        (BOB, "select id, name from customers", Ok),
        (BOB, "select count(*), max(id) from customers", Ok),
        (
            BOB,
            "select email from customers",
            Refused("42501", "must be masked"),
        ),
        (
            BOB,
            "select * from customers",
            Refused("42501", "must be masked"),
        ),
        (
            BOB,
            "select c.* from customers c",
            Refused("42501", "must be masked"),
        ),
        // Filtering on a masked column would reveal its values one question at a time.
        (
            BOB,
            "select id, name from customers where email like '%@example.com'",
            Refused("42501", "must be masked"),
        ),
        (
            BOB,
            "update orders set status = 'shipped' where id = 1",
            Refused("42501", "needs approval from group \"managers\""),
        ),
        (
            BOB,
            "delete from orders where id = 1",
            Refused("42501", "needs approval from group \"managers\""),
        ),
        (
            BOB,
            "update orders set status = 'lost'",
            Refused("42501", "no-update-or-delete-without-where"),
        ),
        (
            BOB,
            "delete from orders",
            Refused("42501", "no-update-or-delete-without-where"),
        ),
        (CAROL, "select * from orders", Ok),
        (
            CAROL,
            "insert into orders values (100, 1, 1, 'new')",
            Refused("42501", "needs approval"),
        ),
        // DBAs change the schema; break-glass may do what nobody else may.
        (
            DAVE,
            "create table public.audit_note (id int); drop table public.audit_note",
            Ok,
        ),
        (DAVE, "select email from customers", Ok),
        (GLASS, "select length(pg_read_file('PG_VERSION')) > 0", Ok),
        (GLASS, "set role gw_app; reset role", Ok),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_decided_from_the_parse_tree() {
    let clock = Arc::new(FixedClock::new(business_hours()));
    let h = harness(clock).await;
    let before = h.direct("app", SAMPLE_CHECKSUM);
    let cases = cases();
    assert!(cases.len() >= 80, "{} cases", cases.len());
    let mut failures = Vec::new();
    for ((user, groups), sql, expect) in &cases {
        let client = h.connect_as(user, groups, "app").await.expect("login");
        let result = client.batch_execute(sql).await;
        let outcome = match (&result, expect) {
            (Result::Ok(()), Ok) => None,
            (Err(e), Refused(code, text)) => match e.as_db_error() {
                Some(db) if db.code().code() == *code && db.message().contains(text) => None,
                Some(db) => Some(format!("got {} {}", db.code().code(), db.message())),
                None => Some(format!("got {e}")),
            },
            (Result::Ok(()), Refused(..)) => Some("was allowed".into()),
            (Err(e), Ok) => Some(format!(
                "was refused: {}",
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or(e.to_string())
            )),
        };
        if let Some(problem) = outcome {
            failures.push(format!("{user}: {sql}\n    {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Nothing that was refused changed anything.
    assert_eq!(h.direct("app", SAMPLE_CHECKSUM), before);
    assert_eq!(
        h.direct(
            "app",
            "select count(*) from pg_tables where tablename in ('leak', 't', 'audit_note')"
        ),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extended_protocol_is_decided_at_parse() {
    let h = harness(Arc::new(FixedClock::new(business_hours()))).await;
    let alice = h
        .connect_as("alice", &["data-science"], "app")
        .await
        .unwrap();
    let err = alice
        .prepare("select * from customers where id = $1")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(
        (db.code().code(), db.message()),
        (
            "42501",
            "permission denied: no policy permits select on table public.customers"
        )
    );
    let rows = alice
        .query(
            "select day from reporting.daily_revenue where revenue > $1::int",
            &[&500i32],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 24);
    // Pipelined: the refused statement fails alone, the others run.
    let (a, b) = tokio::join!(
        alice.query_one("select count(*) from reporting.daily_revenue", &[]),
        alice.query_one("select count(*) from customers", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i64>(0), 30);
    assert_eq!(b.unwrap_err().as_db_error().unwrap().code().code(), "42501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_in_a_transaction_fails_it() {
    let h = harness(Arc::new(FixedClock::new(business_hours()))).await;
    let carol = h.connect_as("carol", &["managers"], "app").await.unwrap();
    // carol may read orders; her write needs approval and is refused inside her
    // transaction: the transaction fails, and COMMIT cannot keep what came before.
    carol
        .batch_execute("begin; select count(*) from orders")
        .await
        .unwrap();
    let err = carol
        .batch_execute("insert into orders values (200, 1, 1, 'x')")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    let err = carol.batch_execute("select 1").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25P02");
    carol.batch_execute("commit").await.unwrap();
    assert_eq!(
        h.direct("app", "select count(*) from orders where id = 200"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_of_day_rules_follow_the_clock() {
    let clock = Arc::new(FixedClock::new(business_hours()));
    let h = harness(clock.clone()).await;
    let alice = h
        .connect_as("alice", &["data-science"], "app")
        .await
        .unwrap();
    let q = "select count(*) from reporting.daily_revenue";
    alice.batch_execute(q).await.unwrap();
    alice
        .batch_execute("prepare later as select * from reporting.daily_revenue")
        .await
        .unwrap();
    // 18:30 on the same Tuesday: after hours, also for what was prepared in hours.
    clock.set("2026-11-24T18:30:00Z".parse().unwrap());
    let err = alice.batch_execute(q).await.unwrap_err();
    assert_eq!(
        err.as_db_error().unwrap().message(),
        "permission denied: no policy permits select on table reporting.daily_revenue"
    );
    // The refusal names the permit whose condition did not hold.
    assert_eq!(
        err.as_db_error().unwrap().hint(),
        Some(
            "policy \"analysts-read-reporting-in-business-hours\" permits this only when its condition holds, and it does not now"
        )
    );
    assert!(alice.batch_execute("execute later").await.is_err());
    // The revenue by country is the analysts' at any hour.
    alice
        .batch_execute("select * from reporting.revenue_by_country")
        .await
        .unwrap();
    // Saturday morning.
    clock.set("2026-11-28T10:00:00Z".parse().unwrap());
    assert!(alice.batch_execute(q).await.is_err());
    // Monday 09:00 sharp.
    clock.set("2026-11-30T09:00:00Z".parse().unwrap());
    alice.batch_execute(q).await.unwrap();
    alice.batch_execute("execute later").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_hints_can_be_turned_off() {
    let h = Harness::with(Setup {
        policies: example_policies(),
        clock: Some(Arc::new(FixedClock::new(
            "2026-11-24T18:30:00Z".parse().unwrap(),
        ))),
        policy_settings: "condition_hints = false".into(),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let mut psql = h.psql_command("alice", &["data-science"], "app");
    psql.args(["-c", "select * from reporting.daily_revenue"]);
    let out = psql.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "ERROR:  permission denied: no policy permits select on table reporting.daily_revenue"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("HINT"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_reports_but_does_not_refuse() {
    let h = Harness::with(Setup {
        policies: example_policies(),
        clock: Some(Arc::new(FixedClock::new(business_hours()))),
        policy_settings: "mode = \"observe\"".into(),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let alice = h
        .connect_as("alice", &["data-science"], "app")
        .await
        .unwrap();
    let rows = alice.query("select id from customers", &[]).await.unwrap();
    assert_eq!(rows.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observe_only_policy_does_not_refuse() {
    let mut policies = vec![(
        "permit.cedar".to_string(),
        portcullis_tests::PERMIT_ALL.to_string(),
    )];
    policies.push((
        "trial.cedar".into(),
        "@id(\"trial-no-orders\")\n@observe(\"\")\nforbid(principal, action, resource == Table::\"public.orders\");\n\
         @id(\"no-customers\")\nforbid(principal, action, resource == Table::\"public.customers\");\n"
            .into(),
    ));
    let h = Harness::with(Setup {
        policies,
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    let c = h.client().await;
    assert_eq!(
        c.query("select * from orders", &[]).await.unwrap().len(),
        50
    );
    let err = c.query("select * from customers", &[]).await.unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("no-customers")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_name_is_tied_to_what_the_server_holds() {
    let clock = Arc::new(FixedClock::new(business_hours()));
    let h = harness(clock.clone()).await;
    let alice = h
        .connect_as("alice", &["data-science"], "app")
        .await
        .unwrap();
    alice
        .batch_execute("prepare p as select * from reporting.daily_revenue")
        .await
        .unwrap();
    // The name is taken: the server refuses this PREPARE and keeps the first statement.
    let err = alice
        .batch_execute("prepare p as select 1")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42P05");
    // After hours, EXECUTE p is decided on the statement the server will actually run.
    clock.set("2026-11-24T20:00:00Z".parse().unwrap());
    let err = alice.batch_execute("execute p").await.unwrap_err();
    assert!(
        err.as_db_error()
            .unwrap()
            .message()
            .contains("reporting.daily_revenue")
    );
    // A DEALLOCATE that never ran (an earlier statement in its query failed) leaves the
    // statement in place, and the gateway knows it.
    clock.set(business_hours());
    assert!(
        alice
            .batch_execute("select 1/0; deallocate p")
            .await
            .is_err()
    );
    let err = alice
        .batch_execute("prepare p as select 1")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42P05");
    alice.batch_execute("execute p").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_prepared_statements_are_decided_again_when_bound() {
    let clock = Arc::new(FixedClock::new(business_hours()));
    let h = harness(clock.clone()).await;
    let alice = h
        .connect_as("alice", &["data-science"], "app")
        .await
        .unwrap();
    let stmt = alice
        .prepare("select count(*) from reporting.daily_revenue")
        .await
        .unwrap();
    assert_eq!(
        alice.query_one(&stmt, &[]).await.unwrap().get::<_, i64>(0),
        30
    );
    clock.set("2026-11-24T20:00:00Z".parse().unwrap());
    let err = alice.query_one(&stmt, &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    // The session is fine, and back in hours the statement runs again.
    clock.set(business_hours());
    assert_eq!(
        alice.query_one(&stmt, &[]).await.unwrap().get::<_, i64>(0),
        30
    );
}
