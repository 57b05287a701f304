//! Where a statement's constants are mere values: the positions whose constants cannot
//! change what the statement does, so that texts differing only there may share one
//! analysis.
//!
//! This is an **allowlist**. A constant counts as a value only when it is an `A_Const`
//! node sitting directly in one of the slots listed in [`value_slot`]: an operand, a
//! select-list or `SET` value, a `VALUES` row, a `LIMIT`, an argument of a function whose
//! arguments the analysis never reads, the operand of a cast to an ordinary type. Anything
//! else (an option of `EXPLAIN` or `COPY`, an `ORDER BY 1` ordinal, the `UESCAPE` of a
//! Unicode identifier, the precision of `float(p)` that picks the type, a cast to
//! `regclass`, every constant of a utility statement) leaves no `A_Const` in a listed
//! slot, and a statement with any such constant is never shared.

use serde_json::{Map, Value};

use super::functions;
use super::tree::tagged;

/// Root node types whose statements may share an analysis. Utility statements never do:
/// their constants are options, names and settings.
pub(crate) const SHAREABLE_ROOTS: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
];

/// Byte offsets of the constants of `root` that are values (see the module doc), sorted.
/// Empty for a statement that may not share at all.
pub(crate) fn value_constants(root: &str, body: &Map<String, Value>) -> Vec<i32> {
    let mut out = Vec::new();
    if SHAREABLE_ROOTS.contains(&root) {
        children(root, body, &mut out);
    }
    out.sort_unstable();
    out
}

/// Whether a constant found directly in a slot is a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    No,
    Value,
    /// A value unless it is a string: a function argument, where a string may be a
    /// `regclass` naming a relation (`Facts::name_arguments`).
    NotString,
}

/// Visits the fields of node `ty`, each in its own slot.
fn children(ty: &str, body: &Map<String, Value>, out: &mut Vec<i32>) {
    for (field, child) in body {
        let slot = value_slot(ty, field, body);
        visit(child, slot, out);
    }
}

/// Visits a value in a slot.
fn visit(v: &Value, slot: Slot, out: &mut Vec<i32>) {
    match v {
        Value::Array(items) => {
            for i in items {
                visit(i, slot, out);
            }
        }
        Value::Object(map) => match tagged(map) {
            Some(("AConst", c)) => {
                let string = c.get("val").is_some_and(|v| v.get("Sval").is_some());
                let value = slot == Slot::Value || (slot == Slot::NotString && !string);
                if value && let Some(loc) = c.get("location").and_then(Value::as_i64) {
                    out.push(loc as i32);
                }
            }
            // A list is transparent: `VALUES (1, 2)` and `IN (1, 2)` hold their items in
            // lists that sit in the slot.
            Some(("List", l)) => {
                if let Some(items) = l.get("items") {
                    visit(items, slot, out);
                }
            }
            Some((ty, body)) => children(ty, body, out),
            None if is_type_name(map) => {
                // `numeric(10, 2)`: type modifiers are values (`float(p)`, whose precision
                // picks the type, leaves no constant here).
                if let Some(mods) = map.get("typmods") {
                    visit(mods, Slot::Value, out);
                }
            }
            // Untagged structs (aliases, range variables, clauses): nothing in them is a
            // listed slot.
            None => {
                for child in map.values() {
                    visit(child, Slot::No, out);
                }
            }
        },
        _ => {}
    }
}

fn is_type_name(map: &Map<String, Value>) -> bool {
    map.contains_key("names") && map.contains_key("typmods") && map.contains_key("array_bounds")
}

/// Whether a constant directly in field `field` of node `ty` is a value.
fn value_slot(ty: &str, field: &str, body: &Map<String, Value>) -> Slot {
    let value = |v: bool| if v { Slot::Value } else { Slot::No };
    match (ty, field) {
        ("AExpr", "lexpr" | "rexpr")
        | ("BoolExpr", "args")
        | ("NullTest", "arg")
        | ("BooleanTest", "arg")
        | ("ResTarget", "val")
        | ("SelectStmt", "values_lists" | "limit_count" | "limit_offset")
        | ("CaseExpr", "arg" | "defresult")
        | ("CaseWhen", "expr" | "result")
        | ("CoalesceExpr", "args")
        | ("MinMaxExpr", "args")
        | ("AArrayExpr", "elements")
        | ("RowExpr", "args")
        | ("AIndices", "lidx" | "uidx")
        | ("SubLink", "testexpr")
        | ("CollateClause", "arg")
        | ("AIndirection", "arg")
        | ("NamedArgExpr", "arg")
        | ("MultiAssignRef", "source")
        | ("WindowDef", "start_offset" | "end_offset") => Slot::Value,
        ("FuncCall", "args") => {
            let name = body
                .get("funcname")
                .and_then(Value::as_array)
                .and_then(|parts| parts.last())
                .and_then(|n| tagged(n.as_object()?))
                .and_then(|(_, s)| s.get("sval")?.as_str());
            if name.is_some_and(|n| !functions::reads_constant_arguments(n)) {
                Slot::NotString
            } else {
                Slot::No
            }
        }
        ("TypeCast", "arg") => {
            let name = body
                .get("type_name")
                .and_then(|t| t.get("names"))
                .and_then(Value::as_array)
                .and_then(|parts| parts.last())
                .and_then(|n| tagged(n.as_object()?))
                .and_then(|(_, s)| s.get("sval")?.as_str());
            // `'customers'::regclass` names an object; so does every other reg* type.
            value(name.is_some_and(|n| !n.starts_with("reg")))
        }
        _ => Slot::No,
    }
}
