//! The shared analysis cache, as a property: for statements from the corpora (the
//! project's bypasses, PostgreSQL's regression SQL files when `scripts/pg-regress-build`
//! has fetched them, the differential oracle's cases), replacing constants with other
//! values never changes the facts of a statement served from the cache. Whenever a variant
//! is served an analysis shared with another text, that analysis must equal the variant's
//! own.

use std::path::{Path, PathBuf};

use portcullis_sql::{LexerOptions, ParseCache, parse};

/// Replacement values per constant kind: values that name things, switch options, look
/// like booleans, escapes and numbers of every width.
const STRINGS: &[&str] = &[
    "''",
    "'on'",
    "'off'",
    "'0'",
    "'1'",
    "'true'",
    "'false'",
    "'role'",
    "'search_path'",
    "'standard_conforming_strings'",
    "'customers'",
    "'public.customers'",
    "'/etc/passwd'",
    "'!'",
    "'#'",
    "'\\'",
    "E'\\\\'",
    "$$x$$",
    "'analyze'",
    "'text'",
    "'csv'",
];
const INTEGERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "10",
    "-1",
    "2147483647",
    "9223372036854775807",
];
const FLOATS: &[&str] = &["0.0", "1.5", "1e10", "2147483648"];
const BITS: &[&str] = &["B'0'", "B'1'", "X'ff'"];

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

/// The constant tokens of `sql`: (start, end, replacements).
fn constants(sql: &str) -> Vec<(usize, usize, &'static [&'static str])> {
    use pg_query::protobuf::Token;
    let Ok(scan) = pg_query::scan(sql) else {
        return Vec::new();
    };
    scan.tokens
        .iter()
        .filter_map(|t| {
            let values: &'static [&'static str] = match Token::try_from(t.token).ok()? {
                Token::Sconst | Token::Usconst => STRINGS,
                Token::Iconst => INTEGERS,
                Token::Fconst => FLOATS,
                Token::Bconst | Token::Xconst => BITS,
                _ => return None,
            };
            Some((t.start as usize, t.end as usize, values))
        })
        .collect()
}

fn corpus_files() -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![here.join("tests/corpus/bypasses.sql")];
    let oracle = here.join("../../tests/oracle/cases.sql");
    if oracle.exists() {
        files.push(oracle);
    }
    let regress = std::env::var("PG_REGRESS_DIR")
        .unwrap_or_else(|_| "/var/tmp/portcullis/pg-regress-15".into());
    let sql_dir = Path::new(&regress).join("regress/sql");
    match std::fs::read_dir(&sql_dir) {
        Ok(entries) => {
            let mut sql: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect();
            sql.sort();
            files.extend(sql);
        }
        Err(_) => eprintln!(
            "note: {} not found (run scripts/pg-regress-build): only the project's corpus is used",
            sql_dir.display()
        ),
    }
    files
}

/// The statements of a SQL file, psql meta-commands dropped.
fn statements(path: &Path) -> Vec<String> {
    let text = String::from_utf8_lossy(&std::fs::read(path).expect("corpus file")).into_owned();
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('\\'))
        .map(|l| format!("{l}\n"))
        .collect();
    pg_query::split_with_scanner(&text)
        .map(|parts| parts.into_iter().map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn constants_never_change_the_facts_of_a_shared_analysis() {
    let mut rng = Rng(0x5EED_CAFE);
    let options = LexerOptions::default();
    let (mut statements_seen, mut variants, mut shared) = (0usize, 0usize, 0usize);
    for file in corpus_files() {
        for sql in statements(&file) {
            if sql.is_empty() || sql.len() > 4096 {
                continue;
            }
            let consts = constants(&sql);
            if consts.is_empty() || parse(&sql, options).result.is_err() {
                continue;
            }
            statements_seen += 1;
            // A cache per statement, so that its own analysis is what variants may share.
            let cache = ParseCache::new(64);
            cache.get_query(&sql, options);
            for round in 0..4 {
                // Round 0 replaces every constant, the others one constant each.
                let mut variant = String::with_capacity(sql.len());
                let mut at = 0;
                let one = (rng.next() % consts.len() as u64) as usize;
                for (i, (start, end, values)) in consts.iter().enumerate() {
                    variant.push_str(&sql[at..*start]);
                    if round == 0 || i == one {
                        variant.push_str(rng.pick(values));
                    } else {
                        variant.push_str(&sql[*start..*end]);
                    }
                    at = *end;
                }
                variant.push_str(&sql[at..]);
                variants += 1;
                let lookup = cache.get_query(&variant, options);
                if !lookup.shared {
                    continue;
                }
                shared += 1;
                let own = parse(&variant, options);
                let served = lookup
                    .parsed
                    .result
                    .as_ref()
                    .expect("a shared analysis parsed");
                let own = own.result.unwrap_or_else(|e| {
                    panic!("{variant}\nwas served an analysis but does not parse: {e}")
                });
                assert_eq!(served.len(), own.len(), "{variant}");
                for (s, o) in served.iter().zip(&own) {
                    assert_eq!(
                        s.facts, o.facts,
                        "{variant}\nwas served the analysis of\n{sql}\nwith other facts"
                    );
                }
            }
        }
    }
    println!(
        "{statements_seen} statements with constants, {variants} variants, {shared} served a shared analysis"
    );
    assert!(
        statements_seen > 40,
        "the corpus is too small: {statements_seen}"
    );
    assert!(
        shared > 0,
        "nothing was shared: the property was never exercised"
    );
}
