//! Relations named by constants: `'customers'::regclass`, and a string passed where a
//! function takes a `regclass` (`nextval('orders_id_seq')`, `pg_relation_size('t')`). The
//! server resolves the text as a qualified name; so does this module, by the rules of its
//! `regclass` input (PostgreSQL's `SplitIdentifierString`): parts split on `.`, unquoted
//! parts trimmed and folded to lower case, quoted parts kept with `""` for `"`.

use super::facts::RelationName;

/// The relation `text` names as `regclass` input, or `None` when it is not a name (an OID,
/// or text the server would reject).
pub fn relation(text: &str) -> Option<RelationName> {
    let parts = split(text)?;
    match parts.as_slice() {
        [name] => Some(RelationName {
            schema: None,
            name: name.clone(),
        }),
        [schema, name] | [_, schema, name] => Some(RelationName {
            schema: Some(schema.clone()),
            name: name.clone(),
        }),
        _ => None,
    }
}

fn split(text: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
            if part.is_empty() {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c.is_whitespace() {
                    break;
                }
                if c == '"' {
                    return None;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            // An OID, or nothing at all: not a name.
            if part.is_empty() || part.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
        }
        parts.push(part);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: Option<&str>, n: &str) -> Option<RelationName> {
        Some(RelationName {
            schema: s.map(str::to_string),
            name: n.into(),
        })
    }

    #[test]
    fn names_as_regclass_input_reads_them() {
        assert_eq!(relation("customers"), rel(None, "customers"));
        assert_eq!(
            relation(" Public . Customers "),
            rel(Some("public"), "customers")
        );
        assert_eq!(relation(r#""Odd"".""Name""#), rel(None, r#"Odd"."Name"#));
        assert_eq!(relation(r#""unterminated"#), None);
        assert_eq!(relation(r#""Odd"."A""B""#), rel(Some("Odd"), "A\"B"));
        assert_eq!(relation("db.s.t"), rel(Some("s"), "t"));
        for not_a_name in ["12345", "", "a.", "a b", "a..b", r#""""#, "w.x.y.z"] {
            assert_eq!(relation(not_a_name), None, "{not_a_name:?}");
        }
    }
}
