//! Functional notation: `t.name` is the column `name` of `t`, or, when `t` has none, the
//! call `name(t)` with `t`'s whole row. The analysis records every such name
//! (`Facts::row_calls`); the catalog tells which are calls, and those are decided like
//! any function call, with the row they receive read in full.

use std::collections::{BTreeSet, HashMap};

use portcullis_sql::analysis::{Facts, FunctionRef, RelationName, classify_function};

use crate::environment::Catalog;

/// Columns every table has, which the catalog's column lists leave out.
const SYSTEM_COLUMNS: &[&str] = &["tableoid", "cmax", "xmax", "cmin", "xmin", "ctid"];

/// A functional-notation call: the function, and the relations `(schema, name)` whose
/// whole row it is given.
pub(crate) struct Call {
    pub function: FunctionRef,
    pub rows_of: Vec<(String, String)>,
}

/// The statement's `t.name` references that are calls. `resolved` holds the schemas each
/// relation of the statement may be in. Only a name the catalog has a function of can be
/// a call: through a subquery, CTE or composite value it is taken for one; through
/// relations, when none of them has such a column in every schema it may be in. Without a
/// catalog, every one may be.
pub(crate) fn calls(
    facts: &Facts,
    resolved: &HashMap<&RelationName, Vec<String>>,
    catalog: &dyn Catalog,
) -> Vec<Call> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for rc in &facts.row_calls {
        // No function of that name: a column (or an error the server reports). Without a
        // catalog, any name may be a function's.
        let loaded = catalog.relations().is_some();
        let functions = catalog.functions_named(&rc.name);
        if loaded && functions.as_ref().is_none_or(Vec::is_empty) {
            continue;
        }
        let is_column = |rel: &RelationName| {
            let schemas = resolved.get(rel).map(Vec::as_slice).unwrap_or_default();
            !schemas.is_empty()
                && schemas.iter().all(|s| match catalog.columns(s, &rel.name) {
                    Some(cols) => {
                        cols.contains(&rc.name) || SYSTEM_COLUMNS.contains(&rc.name.as_str())
                    }
                    // Columns unknown, and such a function exists: a call.
                    None => false,
                })
        };
        let call = rc.relations.is_empty() || !rc.relations.iter().any(is_column);
        if !call || !seen.insert((rc.name.clone(), rc.relations.clone())) {
            continue;
        }
        let rows_of = rc
            .relations
            .iter()
            .flat_map(|rel| {
                resolved
                    .get(rel)
                    .into_iter()
                    .flatten()
                    .map(|s| (s.clone(), rel.name.clone()))
            })
            .collect();
        out.push(Call {
            function: FunctionRef {
                schema: None,
                name: rc.name.clone(),
                classes: classify_function(&rc.name),
            },
            rows_of,
        });
    }
    out
}
