//! Reading pg_query's parse tree as JSON: node tags, names, aliases and constants, as the
//! walk (`walk.rs`) and the value finder (`values.rs`) read them.

use serde_json::{Map, Value};

use super::facts::RelationName;

pub(super) type Obj = Map<String, Value>;

pub(super) fn has(body: &Obj, field: &str) -> bool {
    body.get(field).is_some_and(|v| !v.is_null())
}

/// `{"node": {"Type": body}}` or `{"Type": body}` → (Type, body).
pub(super) fn tagged(map: &Obj) -> Option<(&str, &Obj)> {
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    if k == "node" {
        return tagged(v.as_object()?);
    }
    if k.starts_with(|c: char| c.is_ascii_uppercase()) {
        return Some((k.as_str(), v.as_object()?));
    }
    None
}

/// A RangeVar is recognised by its shape, because fields typed as RangeVar are serialised
/// without the node tag.
pub(super) fn is_range_var(map: &Obj) -> bool {
    map.contains_key("relname") && map.contains_key("schemaname") && map.contains_key("inh")
}

/// A SelectStmt held in a field typed as one (a set operation's `larg` and `rarg`), which is
/// serialised without the node tag.
pub(super) fn is_select_stmt(map: &Obj) -> bool {
    ["target_list", "from_clause", "larg", "rarg", "op"]
        .iter()
        .all(|k| map.contains_key(*k))
}

pub(super) fn is_func_call(map: &Obj) -> bool {
    map.contains_key("funcname") && map.contains_key("args") && map.contains_key("agg_star")
}

pub(super) fn relation_name(rv: &Obj) -> RelationName {
    let schema = rv.get("schemaname").and_then(Value::as_str).unwrap_or("");
    // CREATE TEMP TABLE puts an unqualified name in the session's temporary schema.
    let temporary = rv.get("relpersistence").and_then(Value::as_str) == Some("t");
    RelationName {
        schema: if !schema.is_empty() {
            Some(schema.to_string())
        } else if temporary {
            Some("pg_temp".to_string())
        } else {
            None
        },
        name: rv
            .get("relname")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    }
}

pub(super) fn alias_name(rv: &Obj) -> Option<String> {
    alias_name_in(rv.get("alias"))
}

pub(super) fn alias_name_in(alias: Option<&Value>) -> Option<String> {
    alias?
        .as_object()?
        .get("aliasname")?
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// The strings of a list of `String` nodes (qualified names).
pub(super) fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|i| {
                    let (t, b) = tagged(i.as_object()?)?;
                    (t == "String").then(|| b.get("sval")?.as_str().map(str::to_string))?
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A string constant: `{"AConst": {"val": {"Sval": {"sval": "…"}}}}`.
pub(super) fn string_const(v: &Value) -> Option<String> {
    let (t, body) = tagged(v.as_object()?)?;
    match t {
        "AConst" => body
            .get("val")?
            .get("Sval")?
            .get("sval")?
            .as_str()
            .map(str::to_string),
        "TypeCast" => string_const(body.get("arg")?),
        _ => None,
    }
}

/// The relation a qualified name list names (`[db,] [schema,] name`).
pub(super) fn qualified_name(names: &[String]) -> Option<RelationName> {
    match names {
        [name] => Some(RelationName {
            schema: None,
            name: name.clone(),
        }),
        [.., schema, name] => Some(RelationName {
            schema: Some(schema.clone()),
            name: name.clone(),
        }),
        [] => None,
    }
}

/// A string constant with no cast of its own: `'x'`, whose type the context decides.
pub(super) fn plain_string(v: &Value) -> Option<String> {
    let (t, body) = tagged(v.as_object()?)?;
    (t == "AConst")
        .then(|| {
            body.get("val")?
                .get("Sval")?
                .get("sval")?
                .as_str()
                .map(str::to_string)
        })
        .flatten()
}

/// Constant text of a SET argument (identifiers and strings).
pub(super) fn set_arg(v: &Value) -> Option<String> {
    let (t, body) = tagged(v.as_object()?)?;
    match t {
        "AConst" => {
            let val = body.get("val")?;
            if let Some(s) = val.get("Sval") {
                return s.get("sval")?.as_str().map(str::to_string);
            }
            val.as_object()?
                .values()
                .next()?
                .as_object()?
                .values()
                .next()
                .map(|x| x.to_string())
        }
        _ => None,
    }
}

/// Whether an alias renames columns (`AS c(i, n, e, k)`).
pub(super) fn renames_columns(alias: Option<&Value>) -> bool {
    alias
        .and_then(|a| a.get("colnames"))
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty())
}

pub(super) fn set_arg_value(v: &Value) -> Option<String> {
    let (t, body) = tagged(v.as_object()?)?;
    match t {
        "String" => body.get("sval")?.as_str().map(str::to_string),
        "Boolean" => Some(if body.get("boolval")?.as_bool()? {
            "true".into()
        } else {
            "false".into()
        }),
        "Integer" => Some(body.get("ival")?.to_string()),
        _ => set_arg(v),
    }
}

/// The root node of a statement's tree: its type and body.
pub(super) fn root(v: &Value) -> Option<(&str, &Obj)> {
    tagged(v.as_object()?)
}
