//! A fast-path FunctionCall has the facts of the SQL call of the same function with the
//! same arguments: the call is written out as that SQL (`SELECT schema.name('role', 'x',
//! false)`) and analysed like any statement, so `set_config('role', …)` by OID is the same
//! role switch as in SQL.
//!
//! Arguments become literals where their value is known: text-format arguments that are
//! UTF-8, and binary arguments of the types whose binary form is plain (text types,
//! booleans, integers, OIDs). Any other argument, and any longer than
//! [`MAX_LITERAL`], becomes a parameter (`$n`), which the analysis treats as a value it
//! cannot know: a `set_config` whose name is a parameter is a computed setting name.

use portcullis_sql::analysis::{Facts, Kind, large_object_function_by_oid};
use portcullis_sql::{LexerOptions, parse};
use portcullis_wire::frontend::Argument;

use crate::catalog::Snapshot;

/// Arguments longer than this are not written into the SQL (large-object data, say).
pub const MAX_LITERAL: usize = 1024;

/// Type OIDs whose binary form the gateway reads.
const BOOL: u32 = 16;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const NAME: u32 = 19;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const UNKNOWN: u32 = 705;

/// The SQL call a FunctionCall of `oid` with `arguments` stands for, and its facts. A
/// function neither the catalog nor the fixed list of large-object functions knows is
/// `unknown`.
pub fn facts(oid: u32, arguments: &[Argument<'_>], snapshot: Option<&Snapshot>) -> (Facts, String) {
    let known = snapshot.and_then(|s| s.function(oid));
    let (schema, name, types): (&str, &str, &[u32]) = match known {
        Some(f) => (&f.schema, &f.name, &f.arguments),
        None => match large_object_function_by_oid(oid) {
            Some(name) => ("pg_catalog", name, &[]),
            None => {
                return (
                    Facts::new(Kind::Unknown, "FunctionCall"),
                    format!("/* fast-path call of function {oid}, unknown to the catalog */"),
                );
            }
        },
    };
    let args: Vec<String> = arguments
        .iter()
        .enumerate()
        .map(|(i, (binary, value))| literal(*binary, *value, types.get(i).copied(), i + 1))
        .collect();
    let sql = format!(
        "SELECT {}.{}({})",
        quote_ident(schema),
        quote_ident(name),
        args.join(", ")
    );
    let mut facts = match parse(&sql, LexerOptions::default()).result {
        Ok(mut statements) if statements.len() == 1 => statements.remove(0).facts,
        _ => Facts::new(Kind::Unknown, "FunctionCall"),
    };
    facts.node = "FunctionCall".into();
    (facts, format!("/* fast-path function call */ {sql}"))
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// One argument as SQL: a literal when its value is known, else the parameter `$n`.
fn literal(binary: bool, value: Option<&[u8]>, ty: Option<u32>, n: usize) -> String {
    let param = format!("${n}");
    let Some(bytes) = value else {
        return "NULL".into();
    };
    if bytes.len() > MAX_LITERAL {
        return param;
    }
    let text = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) if !s.contains('\0') => quote_literal(s),
        _ => param.clone(),
    };
    if !binary {
        return text(bytes);
    }
    let int = |b: &[u8]| -> Option<i64> {
        Some(match b.len() {
            2 => i16::from_be_bytes(b.try_into().ok()?).into(),
            4 => i32::from_be_bytes(b.try_into().ok()?).into(),
            8 => i64::from_be_bytes(b.try_into().ok()?),
            _ => return None,
        })
    };
    match ty {
        Some(TEXT | VARCHAR | NAME | BPCHAR | UNKNOWN) => text(bytes),
        Some(BOOL) => match bytes {
            [0] => "false".into(),
            [1] => "true".into(),
            _ => param,
        },
        Some(INT2 | INT4 | INT8) => int(bytes).map_or(param, |v| v.to_string()),
        Some(OID) => match <[u8; 4]>::try_from(bytes) {
            Ok(b) => u32::from_be_bytes(b).to_string(),
            Err(_) => param,
        },
        _ => param,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sql::analysis::SessionChange;

    #[test]
    fn arguments_become_literals_where_their_value_is_known() {
        assert_eq!(literal(false, Some(b"it's"), Some(TEXT), 1), "'it''s'");
        assert_eq!(literal(true, Some(b"role"), Some(TEXT), 1), "'role'");
        assert_eq!(literal(true, Some(&[1]), Some(BOOL), 3), "true");
        assert_eq!(literal(true, Some(&[0, 0, 0, 7]), Some(INT4), 1), "7");
        assert_eq!(literal(true, Some(&[0xff, 0xff]), Some(INT2), 1), "-1");
        assert_eq!(literal(true, Some(b"\x01\x02"), Some(17), 2), "$2");
        assert_eq!(literal(false, None, Some(TEXT), 1), "NULL");
        assert_eq!(literal(false, Some(b"\xff"), Some(TEXT), 4), "$4");
        assert_eq!(literal(false, Some(&[b'a'; 2000]), Some(TEXT), 1), "$1");
    }

    #[test]
    fn a_large_object_call_without_a_catalog_is_named_by_its_oid() {
        let (f, sql) = facts(957, &[(true, Some(&[0, 0, 0, 0]))], None);
        assert_eq!(f.functions[0].name, "lo_creat");
        assert!(
            sql.ends_with(r#"SELECT "pg_catalog"."lo_creat"($1)"#),
            "{sql}"
        );
        let (f, _) = facts(2078, &[], None);
        assert_eq!(f.kind, Kind::Unknown);
    }

    #[test]
    fn set_config_by_oid_changes_what_sql_would() {
        // Without argument types (no catalog), text arguments are still read.
        let sql = format!(
            "SELECT {}.{}({}, {}, {})",
            quote_ident("pg_catalog"),
            quote_ident("set_config"),
            literal(false, Some(b"role"), None, 1),
            literal(false, Some(b"postgres"), None, 2),
            literal(false, Some(b"f"), None, 3)
        );
        let f = parse(&sql, LexerOptions::default()).result.unwrap()[0]
            .facts
            .clone();
        assert!(
            f.session
                .contains(&SessionChange::Role(Some("postgres".into()))),
            "{f:?}"
        );
    }
}
