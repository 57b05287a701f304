//! A bounded, shared cache of parse results.
//!
//! Keys are the exact text plus the lexer options; values are immutable and shared, so a hit
//! costs a hash and a reference count. `quick_cache` shards its locks, so sessions on
//! different cores rarely contend. Two sessions missing on the same text at once may both
//! parse it; the second insert wins, which is harmless because results are identical.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use quick_cache::Equivalent;
use quick_cache::sync::Cache;

use crate::{LexerOptions, ParsedQuery, ParsedStatement, parse};

/// Texts longer than this are parsed every time: caching them would evict many small
/// statements to keep one that rarely repeats.
const MAX_CACHED_TEXT: usize = 64 * 1024;

/// An owned cache key.
#[derive(PartialEq, Eq)]
struct Key {
    options: LexerOptions,
    text: Box<str>,
}

/// A borrowed key: lookups hash and compare the text in place, so a hit allocates nothing.
struct KeyRef<'a> {
    options: LexerOptions,
    text: &'a str,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.options.hash(h);
        self.text.hash(h);
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.options.hash(h);
        self.text.hash(h);
    }
}

impl Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.options == key.options && self.text == &*key.text
    }
}

/// Shared parse cache.
pub struct ParseCache {
    cache: Cache<Key, Arc<ParsedQuery>>,
    /// Single statements by their token sequence with constants blanked out: simple-protocol
    /// queries that differ only in literals share one analysis.
    normalized: Cache<Box<[u8]>, Arc<ParsedQuery>>,
}

/// A parse found for a query string.
pub struct Lookup {
    pub parsed: Arc<ParsedQuery>,
    /// The parse belongs to a text that differs from this one in constants only: its
    /// facts hold, but its statement text is the other one's.
    pub shared: bool,
}

/// The statement's tokens (PostgreSQL's own lexer) with constants reduced to their kind
/// and comments dropped. Two texts with the same key parse to the same tree but for the
/// constants' values. `None` when the text does not lex.
pub fn normalized_key(sql: &str) -> Option<Vec<u8>> {
    normalize(sql).map(|n| n.key)
}

/// A text's normalised key and where its constants are.
struct Normalized {
    key: Vec<u8>,
    /// Each constant token's offset, and the offset of a `-` right before it (the parser
    /// folds `-1` into one constant that starts at the sign).
    constants: Vec<(i32, Option<i32>)>,
}

impl Normalized {
    /// Whether every constant of the text is a value of `statement`: only then can a
    /// text with other constants share its analysis.
    fn constants_are_values(&self, statement: &ParsedStatement) -> bool {
        let values = &statement.value_constants;
        self.constants.iter().all(|(at, minus)| {
            values.binary_search(at).is_ok()
                || minus.is_some_and(|m| values.binary_search(&m).is_ok())
        })
    }
}

fn normalize(sql: &str) -> Option<Normalized> {
    use pg_query::protobuf::Token;
    let scan = pg_query::scan(sql).ok()?;
    let mut key = Vec::with_capacity(sql.len());
    let mut constants = Vec::new();
    let mut minus = None;
    for t in scan.tokens {
        let kind = Token::try_from(t.token).unwrap_or(Token::Nul);
        match kind {
            Token::SqlComment | Token::CComment => continue,
            _ => {}
        }
        key.extend_from_slice(&t.token.to_le_bytes());
        let constant = matches!(
            kind,
            Token::Sconst
                | Token::Usconst
                | Token::Bconst
                | Token::Xconst
                | Token::Iconst
                | Token::Fconst
        );
        if constant {
            constants.push((t.start, minus));
        } else {
            let text = sql.get(t.start.max(0) as usize..t.end.max(0) as usize)?;
            key.extend_from_slice(&(text.len() as u32).to_le_bytes());
            key.extend_from_slice(text.as_bytes());
        }
        minus = (kind == Token::Ascii45).then_some(t.start);
    }
    Some(Normalized { key, constants })
}

impl ParseCache {
    /// A cache holding at most `capacity` query strings.
    pub fn new(capacity: usize) -> Self {
        ParseCache {
            cache: Cache::new(capacity.max(1)),
            normalized: Cache::new(capacity.max(1)),
        }
    }

    /// The parse of a simple-protocol query string: by exact text, else by normalised text
    /// (PostgreSQL's lexer, constants blanked), else parsed afresh. Only single
    /// statements whose every constant is a mere value (`analysis::values`: an allowlist
    /// of positions) are shared, and only under `standard_conforming_strings`, the lexer
    /// setting the scanner uses.
    pub fn get_query(&self, sql: &str, options: LexerOptions) -> Lookup {
        if let Some(hit) = self.cache.get(&KeyRef { options, text: sql }) {
            return Lookup {
                parsed: hit,
                shared: false,
            };
        }
        let normalized = if options.standard_conforming_strings && sql.len() <= MAX_CACHED_TEXT {
            normalize(sql)
        } else {
            None
        };
        if let Some(n) = &normalized
            && let Some(hit) = self.normalized.get(n.key.as_slice())
        {
            return Lookup {
                parsed: hit,
                shared: true,
            };
        }
        let parsed = Arc::new(parse(sql, options));
        let shareable = |n: &Normalized| {
            matches!(&parsed.result, Ok(s) if s.len() == 1
                && !s[0].facts.literal_sensitive
                && n.constants_are_values(&s[0]))
        };
        match normalized {
            Some(n) if shareable(&n) => self
                .normalized
                .insert(n.key.into_boxed_slice(), parsed.clone()),
            _ => {
                if sql.len() <= MAX_CACHED_TEXT {
                    self.cache.insert(
                        Key {
                            options,
                            text: sql.into(),
                        },
                        parsed.clone(),
                    );
                }
            }
        }
        Lookup {
            parsed,
            shared: false,
        }
    }

    /// The parse of `sql`, from the cache when possible.
    pub fn get(&self, sql: &str, options: LexerOptions) -> Arc<ParsedQuery> {
        if sql.len() > MAX_CACHED_TEXT {
            return Arc::new(parse(sql, options));
        }
        if let Some(hit) = self.cache.get(&KeyRef { options, text: sql }) {
            return hit;
        }
        let parsed = Arc::new(parse(sql, options));
        let key = Key {
            options,
            text: sql.into(),
        };
        self.cache.insert(key, parsed.clone());
        parsed
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_differing_in_constants_share_an_analysis() {
        let c = ParseCache::new(10);
        let a = c.get_query(
            "select * from t where id = 1 and name = 'x'",
            LexerOptions::default(),
        );
        assert!(!a.shared);
        let b = c.get_query(
            "SELECT * from t /* hi */ where id = 42 and name = 'yy'",
            LexerOptions::default(),
        );
        // Keywords keep their spelling in the key, so a different case is a different key.
        assert!(!b.shared);
        let b = c.get_query(
            "select * from t where id = 42 and name = $$yy$$",
            LexerOptions::default(),
        );
        assert!(b.shared && Arc::ptr_eq(&a.parsed, &b.parsed));
        // A different constant kind, identifier or structure is a different key.
        for other in [
            "select * from t where id = 1.5 and name = 'x'",
            "select * from u where id = 1 and name = 'x'",
            "select * from t where id = 1 or name = 'x'",
            "select * from t where id = 1 and name = 'x'; select 1",
        ] {
            assert!(
                !c.get_query(other, LexerOptions::default()).shared,
                "{other}"
            );
        }
        // Literal-sensitive statements are never shared.
        c.get_query(
            "select pg_read_file('/etc/hostname')",
            LexerOptions::default(),
        );
        assert!(
            !c.get_query(
                "select pg_read_file('/etc/passwd')",
                LexerOptions::default()
            )
            .shared
        );
        assert_eq!(
            normalized_key("select 1 -- c"),
            normalized_key("select 2 /* d */")
        );
        assert_ne!(normalized_key("select 1"), normalized_key("select '1'"));
    }

    /// Pairs of texts with the same normalised key whose constants change what they do:
    /// the second must never be served the first's analysis.
    #[test]
    fn constants_that_change_meaning_never_share() {
        let pairs = [
            // An EXPLAIN option decides whether the statement runs.
            (
                "explain (analyze 0) delete from orders",
                "explain (analyze 1) delete from orders",
            ),
            (
                "explain (analyze 'off') update orders set amount = 0",
                "explain (analyze 'on') update orders set amount = 0",
            ),
            // An ordinal names an output column.
            (
                "select id, email from customers order by 1",
                "select id, email from customers order by 2",
            ),
            (
                "select id, email from customers group by 1, 2",
                "select id, email from customers group by 2, 1",
            ),
            // UESCAPE decides which identifier a Unicode name spells.
            (
                r#"select email from U&"customer!0073" UESCAPE '#'"#,
                r#"select email from U&"customer!0073" UESCAPE '!'"#,
            ),
            // The precision of float(p) picks the type.
            ("select '1'::float(10)", "select '1'::float(30)"),
            // A reg* cast names an object.
            ("select 'orders'::regclass", "select 'customers'::regclass"),
            // Sequences and settings are named by constants.
            ("select nextval('a')", "select nextval('b')"),
            ("select current_setting('a')", "select current_setting('b')"),
            // A string passed to a function may be a regclass naming a relation.
            (
                "select pg_relation_size('orders')",
                "select pg_relation_size('customers')",
            ),
            // Utility statements never share.
            ("set work_mem = 1", "set work_mem = 2"),
            ("fetch 1 from c", "fetch 2 from c"),
            (
                "copy t to stdout (format 'text')",
                "copy t to stdout (format 'csv')",
            ),
        ];
        for (first, second) in pairs {
            assert_eq!(normalized_key(first), normalized_key(second), "{first}");
            let c = ParseCache::new(10);
            c.get_query(first, LexerOptions::default());
            let l = c.get_query(second, LexerOptions::default());
            assert!(!l.shared, "{second} shared the analysis of {first}");
        }
    }

    #[test]
    fn values_share() {
        for (first, second) in [
            (
                "select * from t where a = -1 and b in (1, 2) limit 5",
                "select * from t where a = -7 and b in (3, 4) limit 50",
            ),
            (
                "insert into t (a, b) values (1, 'x'), (2, 'y')",
                "insert into t (a, b) values (3, 'z'), (4, '')",
            ),
            (
                "update t set a = 'x', b = 2 where id = 3",
                "update t set a = 'y', b = 9 where id = 1",
            ),
            (
                "select round(1.5), '2025-01-01'::date, 1.5::numeric(10, 2), 'a' || 'b'",
                "select round(2.5), '2026-01-01'::date, 2.5::numeric(12, 4), 'c' || ''",
            ),
        ] {
            let c = ParseCache::new(10);
            c.get_query(first, LexerOptions::default());
            assert!(
                c.get_query(second, LexerOptions::default()).shared,
                "{second}"
            );
        }
    }

    #[test]
    fn hits_share_results_and_options_separate_entries() {
        let c = ParseCache::new(10);
        let a = c.get("select 1", LexerOptions::default());
        let b = c.get("select 1", LexerOptions::default());
        assert!(Arc::ptr_eq(&a, &b));
        let off = LexerOptions {
            standard_conforming_strings: false,
        };
        let d = c.get("select 1", off);
        assert!(!Arc::ptr_eq(&a, &d));
        assert_eq!(c.len(), 2);
    }
}
