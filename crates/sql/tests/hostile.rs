//! Hostile SQL on stable Rust: fragments recombined and mutated go through the parser, the
//! fact walker and the normaliser. Nothing may panic, and whatever parses yields facts.
//! (`fuzz/fuzz_targets/analyse.rs` runs the same coverage-guided.)

use portcullis_sql::{LexerOptions, normalized_key, parse};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const FRAGMENTS: &[&str] = &[
    "select",
    "*",
    "from",
    "customers",
    "public.customers",
    "\"Customers\"",
    "U&\"\\0063ustomers\"",
    "where",
    "id = 1",
    "(",
    ")",
    ",",
    ";",
    "with x as (",
    "delete from t",
    "returning *",
    "update t set a = 1",
    "insert into t values (1)",
    "union all",
    "join",
    "on true",
    "lateral",
    "explain analyze",
    "prepare p as",
    "execute p",
    "copy t to stdout",
    "copy (select 1) to program 'id'",
    "create table t2 as",
    "into t3",
    "do $$ begin end $$",
    "$$ ; $$",
    "'it''s'",
    "E'\\''",
    "/* ; */",
    "-- x\n",
    "set role admin",
    "select set_config('role', 'x', false)",
    "pg_read_file('/x')",
    "limit (select 1)",
    "order by 1",
    "group by 1",
    "having count(*) > 1",
    "window w as ()",
    "over (partition by 1)",
    "values (1), (2)",
    "table t",
    "merge into t using s on true when matched then delete",
    "create rule r as on select to t do instead",
    "declare c cursor for",
    "fetch 1 from c",
    "vacuum",
    "lock table t",
    "grant select on t to u",
    "drop table t",
    "alter system set x = 1",
    "::regclass",
    "row_to_json(c)",
    "c.*",
    "exists (",
    "not in (select",
    "case when",
];

#[test]
fn random_statements_never_panic() {
    let mut rng = Rng(0xC0FFEE);
    let mut parsed = 0;
    for _ in 0..20_000 {
        let n = 1 + rng.next() % 12;
        let mut sql = String::new();
        for _ in 0..n {
            sql.push_str(rng.pick(FRAGMENTS));
            sql.push(' ');
        }
        // Mutate a byte now and then.
        if rng.next().is_multiple_of(4) && !sql.is_empty() {
            let mut bytes = sql.into_bytes();
            let i = (rng.next() % bytes.len() as u64) as usize;
            bytes[i] = (rng.next() % 128) as u8;
            sql = String::from_utf8_lossy(&bytes).into_owned();
        }
        let sql = sql.replace('\0', " ");
        for scs in [true, false] {
            let result = parse(
                &sql,
                LexerOptions {
                    standard_conforming_strings: scs,
                },
            );
            if let Ok(statements) = result.result {
                parsed += 1;
                for s in statements {
                    assert!(!s.facts.node.is_empty(), "{sql}");
                }
            }
        }
        let _ = normalized_key(&sql);
    }
    // The generator is not only producing garbage.
    assert!(parsed > 1000, "only {parsed} statements parsed");
}
