//! System catalogs and functions that show more than the catalog: stored values (planner
//! statistics hold samples of every column), other sessions' statement texts, credentials
//! and large object contents. Reading them is tagged, so that policies govern them as what
//! they expose; `catalog_values` is also expanded by the policy layer into reads of every
//! column of every table, so that a masked column's statistics are a read of the masked
//! column. Statistics describe the system catalogs too (`pg_authid.rolpassword` among
//! them), so reading them is also tagged `credentials`.
//!
//! Names match in any schema (`pg_stat_statements` lives wherever its extension was
//! installed; a table of the same name elsewhere is tagged too: the safe direction).

use super::Tag;
use super::facts::{Columns, Facts, Kind};

/// What reading a catalog exposes, as the tag it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Samples of column values (`pg_stats` and friends).
    CatalogValues,
    /// Other sessions' statement texts, with the literals in them.
    StatementTexts,
    /// Password hashes and connection strings with passwords.
    Credentials,
    /// The contents of large objects.
    LargeObjectData,
}

impl Exposure {
    pub fn tag(self) -> Tag {
        match self {
            Exposure::CatalogValues => Tag::CatalogValues,
            Exposure::StatementTexts => Tag::StatementTexts,
            Exposure::Credentials => Tag::Credentials,
            Exposure::LargeObjectData => Tag::LargeObjectData,
        }
    }
}

/// Relations, and the column that exposes (`None`: every column does).
const RELATIONS: &[(&str, Option<&str>, Exposure)] = &[
    ("pg_statistic", None, Exposure::CatalogValues),
    ("pg_stats", None, Exposure::CatalogValues),
    ("pg_statistic_ext_data", None, Exposure::CatalogValues),
    ("pg_stats_ext", None, Exposure::CatalogValues),
    ("pg_stats_ext_exprs", None, Exposure::CatalogValues),
    ("pg_stat_activity", Some("query"), Exposure::StatementTexts),
    (
        "pg_stat_statements",
        Some("query"),
        Exposure::StatementTexts,
    ),
    (
        "pg_prepared_statements",
        Some("statement"),
        Exposure::StatementTexts,
    ),
    ("pg_cursors", Some("statement"), Exposure::StatementTexts),
    ("pg_authid", Some("rolpassword"), Exposure::Credentials),
    ("pg_shadow", Some("passwd"), Exposure::Credentials),
    ("pg_user_mapping", Some("umoptions"), Exposure::Credentials),
    ("pg_user_mappings", Some("umoptions"), Exposure::Credentials),
    (
        "pg_subscription",
        Some("subconninfo"),
        Exposure::Credentials,
    ),
    ("pg_largeobject", Some("data"), Exposure::LargeObjectData),
];

/// Functions that return what those relations show.
const FUNCTIONS: &[(&str, Exposure)] = &[
    ("pg_stat_get_activity", Exposure::StatementTexts),
    ("pg_stat_get_backend_activity", Exposure::StatementTexts),
    ("pg_stat_statements", Exposure::StatementTexts),
    ("pg_prepared_statement", Exposure::StatementTexts),
    ("pg_cursor", Exposure::StatementTexts),
    ("pg_mcv_list_items", Exposure::CatalogValues),
    // The server lets a role read large objects it was granted SELECT on, whatever
    // pg_largeobject's own privileges: these are the way to their contents.
    ("lo_get", Exposure::LargeObjectData),
    ("loread", Exposure::LargeObjectData),
];

/// Tags what the statement's reads of exposing catalogs and calls of exposing functions
/// reveal.
pub(super) fn tag(facts: &mut Facts) {
    let mut found = Vec::new();
    for a in &facts.accesses {
        if matches!(a.action, Kind::Explain) {
            continue;
        }
        for (name, column, exposure) in RELATIONS {
            if a.relation.name != *name {
                continue;
            }
            let reads = match (column, &a.columns) {
                (None, _) | (Some(_), Columns::All) => true,
                (Some(c), Columns::Some(set)) => set.contains(*c),
                (Some(_), Columns::None) => false,
            };
            if reads {
                found.push(*exposure);
            }
        }
    }
    for f in &facts.functions {
        for (name, exposure) in FUNCTIONS {
            if f.name == *name {
                found.push(*exposure);
            }
        }
    }
    for e in found {
        facts.tag(e.tag());
        if e == Exposure::CatalogValues {
            // Statistics cover the system catalogs too: password hashes among them.
            facts.tag(Exposure::Credentials.tag());
        }
    }
}
