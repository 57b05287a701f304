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

use crate::{LexerOptions, ParsedQuery, parse};

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
}

impl ParseCache {
    /// A cache holding at most `capacity` query strings.
    pub fn new(capacity: usize) -> Self {
        ParseCache {
            cache: Cache::new(capacity.max(1)),
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
