//! The cost of deciding a statement, per statement: parsing and analysing it (a cache
//! miss), finding it in the parse cache (a hit), and evaluating the example policies on
//! its facts. Prints microseconds per statement and the ratio miss/hit.
//!
//! `ANALYSIS_ITERATIONS` (default 2000) repetitions per measurement.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

use portcullis_policy::{Environment, Mode, NoCatalog, PolicyStore, Requester, StatementInput};
use portcullis_sql::{LexerOptions, ParseCache, parse};

const STATEMENTS: &[(&str, &str)] = &[
    (
        "pgbench -S",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    ),
    (
        "point select",
        "select id, name, country from public.customers where id = 42",
    ),
    (
        "join + aggregate",
        "select c.country, count(*), sum(o.amount) from customers c join orders o on o.customer_id = c.id where o.status <> 'refunded' group by 1 order by 3 desc limit 10",
    ),
    (
        "cte + subquery",
        "with recent as (select * from orders where ordered_at > now() - interval '7 days') select c.name, (select count(*) from recent r where r.customer_id = c.id) from customers c",
    ),
    (
        "update",
        "update orders set status = 'shipped' where id = 17 and status = 'paid'",
    ),
    (
        "ddl",
        "create table reporting.daily (day date primary key, orders int not null, revenue numeric(12, 2))",
    ),
];

fn per_call(iterations: u32, mut f: impl FnMut()) -> f64 {
    // Warm up caches and branch predictors first.
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_secs_f64() * 1e6 / iterations as f64
}

fn main() {
    let iterations: u32 = std::env::var("ANALYSIS_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let store = PolicyStore::load(&[policies], Mode::Enforce).expect("example policies");
    let tz = jiff::tz::TimeZone::UTC;
    let env = Environment {
        target: "analytics",
        role: "analyst",
        client_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        application_name: "bench",
        now: "2026-11-24T10:00:00Z".parse().unwrap(),
        timezone: &tz,
    };
    let groups = vec!["engineering".to_string()];
    let search_path = vec!["$user".to_string(), "public".to_string()];
    let cache = ParseCache::new(1000);

    println!(
        "statement analysis and decision, {iterations} iterations each (microseconds per statement)"
    );
    println!(
        "{:<18} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "statement", "miss", "scan", "hit", "miss/hit", "decide"
    );
    for (name, sql) in STATEMENTS {
        let miss = per_call(iterations, || {
            black_box(parse(black_box(sql), LexerOptions::default()));
        });
        let scan = per_call(iterations, || {
            black_box(pg_query::scan(black_box(sql)).ok());
        });
        cache.get(sql, LexerOptions::default());
        let hit = per_call(iterations, || {
            black_box(cache.get(black_box(sql), LexerOptions::default()));
        });
        let parsed = parse(sql, LexerOptions::default());
        let statement = &parsed.result.as_ref().expect("parses")[0];
        let decide = per_call(iterations, || {
            black_box(store.decide(
                Requester {
                    subject: "bob",
                    groups: &groups,
                },
                &env,
                StatementInput {
                    facts: &statement.facts,
                    text: &statement.text,
                    search_path: &search_path,
                },
                &NoCatalog,
            ));
        });
        println!(
            "{name:<18} {miss:>10.1} {scan:>10.1} {hit:>10.2} {:>10.0} {decide:>10.1}",
            miss / hit
        );
    }
}
