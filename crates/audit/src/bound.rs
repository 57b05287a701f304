//! Size caps on what one event holds, so no client can fill the store with one statement.
//!
//! A statement's text is kept up to a configured number of bytes (cut on a character
//! boundary); its whole length and SHA-256 are always recorded, so an auditor holding a
//! candidate text can prove it is the one that ran. Bound parameters share one budget of
//! the same size, with a digest for every value cut. Lists that grow with the text
//! (tables, functions, the search path a client set) are cut at the same size. Whatever
//! was cut is named in the event's `truncated`.

use sha2::{Digest, Sha256};

use crate::event::{Event, ParameterDigest, StatementEvent};

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Caps `event` at `limit` bytes per field (see the module documentation). Events other
/// than statements are bounded by construction (their fields come from the gateway or
/// the server, not from the client's text) and pass unchanged.
pub fn bound(event: &mut Event, limit: usize) {
    if let Event::Statement(s) = event {
        bound_statement(s, limit);
    }
}

fn bound_statement(s: &mut StatementEvent, limit: usize) {
    // Hashed once: an event bounded twice keeps the digest of the original text.
    if s.text_sha256.is_none() {
        s.text_bytes = Some(s.text.len() as u64);
        s.text_sha256 = Some(sha256_hex(s.text.as_bytes()));
    }
    if s.text.len() > limit {
        let end = boundary(&s.text, limit);
        s.text.truncate(end);
        s.text.shrink_to_fit();
        mark(&mut s.truncated, "text");
    }

    let mut left = limit;
    let mut digests = Vec::new();
    for (index, value) in s.parameters.iter_mut().enumerate() {
        let Some(v) = value else { continue };
        if v.len() <= left {
            left -= v.len();
            continue;
        }
        digests.push(ParameterDigest {
            index,
            bytes: v.len() as u64,
            sha256: sha256_hex(v.as_bytes()),
        });
        let end = boundary(v, left);
        v.truncate(end);
        v.shrink_to_fit();
        left = 0;
    }
    if !digests.is_empty() {
        s.parameter_digests.extend(digests);
        mark(&mut s.truncated, "parameters");
    }

    for (field, list) in [
        ("tables", &mut s.tables),
        ("functions", &mut s.functions),
        ("search_path", &mut s.search_path),
    ] {
        let mut used = 0usize;
        let keep = list
            .iter()
            .take_while(|item| {
                used = used.saturating_add(item.len());
                used <= limit
            })
            .count();
        if keep < list.len() {
            list.truncate(keep);
            mark(&mut s.truncated, field);
        }
    }
}

/// Names `field` among the truncated ones, once.
fn mark(truncated: &mut Vec<String>, field: &str) {
    if !truncated.iter().any(|f| f == field) {
        truncated.push(field.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(text: &str, parameters: Vec<Option<String>>) -> StatementEvent {
        StatementEvent {
            session: "s".into(),
            seq: 1,
            subject: "alice".into(),
            groups: vec![],
            target: "t".into(),
            upstream_role: "r".into(),
            origin: "query".into(),
            text: text.into(),
            text_bytes: None,
            text_sha256: None,
            parameters,
            parameter_digests: vec![],
            truncated: vec![],
            statement_kind: "select".into(),
            tables: vec![],
            functions: vec![],
            decision: "allow".into(),
            policies: vec![],
            sqlstate: None,
            message: None,
            observed: None,
            max_rows: None,
            search_path: vec![],
            approval: None,
        }
    }

    fn bounded(mut s: StatementEvent, limit: usize) -> StatementEvent {
        let mut e = Event::Statement(s.clone());
        bound(&mut e, limit);
        let Event::Statement(b) = e else {
            unreachable!()
        };
        s = b;
        s
    }

    #[test]
    fn short_statements_keep_their_text_and_gain_a_digest() {
        let s = bounded(statement("select 1", vec![Some("x".into())]), 64);
        assert_eq!(s.text, "select 1");
        assert_eq!(s.text_bytes, Some(8));
        assert_eq!(s.text_sha256.as_deref(), Some(&*sha256_hex(b"select 1")));
        assert!(s.truncated.is_empty() && s.parameter_digests.is_empty());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        // 'é' is two bytes: a cut at 5 bytes would split the third one.
        let text = "éééééé";
        let s = bounded(statement(text, vec![]), 5);
        assert_eq!(s.text, "éé");
        assert_eq!(s.text_bytes, Some(12));
        assert_eq!(s.text_sha256.unwrap(), sha256_hex(text.as_bytes()));
        assert_eq!(s.truncated, vec!["text"]);
        // Bounding again changes nothing: the digest is of the original.
        let again = bounded(bounded(statement(text, vec![]), 5), 5);
        assert_eq!(again.text_sha256.unwrap(), sha256_hex(text.as_bytes()));
        assert_eq!(again.truncated, vec!["text"]);
    }

    #[test]
    fn parameters_share_one_budget() {
        let big = "b".repeat(100);
        let s = bounded(
            statement(
                "call p()",
                vec![
                    Some("aaaa".into()),
                    None,
                    Some(big.clone()),
                    Some("cc".into()),
                ],
            ),
            10,
        );
        assert_eq!(
            s.parameters,
            vec![
                Some("aaaa".into()),
                None,
                Some("bbbbbb".into()),
                Some(String::new())
            ]
        );
        assert_eq!(
            s.parameter_digests,
            vec![
                ParameterDigest {
                    index: 2,
                    bytes: 100,
                    sha256: sha256_hex(big.as_bytes())
                },
                ParameterDigest {
                    index: 3,
                    bytes: 2,
                    sha256: sha256_hex(b"cc")
                },
            ]
        );
        assert_eq!(s.truncated, vec!["parameters"]);
    }

    #[test]
    fn lists_that_grow_with_the_text_are_cut() {
        let mut s = statement("select …", vec![]);
        s.tables = (0..100).map(|i| format!("public.t{i:03}")).collect();
        s.search_path = vec!["a".repeat(50), "b".into()];
        let s = bounded(s, 40);
        assert_eq!(s.tables.len(), 3);
        assert!(s.search_path.is_empty());
        assert_eq!(s.truncated, vec!["tables", "search_path"]);
    }
}
