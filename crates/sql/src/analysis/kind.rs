//! The kind of a statement, from its root node type (an unknown type is `Unknown`, which
//! every policy must allow explicitly).

use super::facts::Kind;
use serde_json::Value;

use super::tree::{Obj, has};

/// The statement-level kind for a root node type.
pub(super) fn kind_of(node: &str, body: &Obj) -> Kind {
    match node {
        "SelectStmt" => {
            if has(body, "into_clause") {
                Kind::Ddl
            } else {
                Kind::Select
            }
        }
        "InsertStmt" => Kind::Insert,
        "UpdateStmt" => Kind::Update,
        "DeleteStmt" => Kind::Delete,
        "MergeStmt" => Kind::Merge,
        "CopyStmt" => {
            if body
                .get("is_from")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                Kind::CopyIn
            } else {
                Kind::CopyOut
            }
        }
        "ExplainStmt" => Kind::Explain,
        "VariableSetStmt" => {
            let name = body.get("name").and_then(Value::as_str).unwrap_or("");
            if name.eq_ignore_ascii_case("transaction")
                || name.eq_ignore_ascii_case("session characteristics")
            {
                Kind::Transaction
            } else {
                Kind::SetSession
            }
        }
        "DiscardStmt" => Kind::SetSession,
        "TransactionStmt" | "ConstraintsSetStmt" => Kind::Transaction,
        "TruncateStmt" => Kind::Truncate,
        "DoStmt" => Kind::Do,
        "CallStmt" => Kind::Call,
        "GrantStmt"
        | "GrantRoleStmt"
        | "CreateRoleStmt"
        | "AlterRoleStmt"
        | "AlterRoleSetStmt"
        | "DropRoleStmt"
        | "AlterDefaultPrivilegesStmt"
        | "ReassignOwnedStmt"
        | "DropOwnedStmt" => Kind::Dcl,
        "VariableShowStmt" | "LockStmt" | "VacuumStmt" | "ClusterStmt" | "ReindexStmt"
        | "CheckPointStmt" | "LoadStmt" | "ListenStmt" | "UnlistenStmt" | "NotifyStmt"
        | "DeallocateStmt" | "ClosePortalStmt" => Kind::Utility,
        "FetchStmt" => Kind::Select,
        "IndexStmt"
        | "ViewStmt"
        | "RuleStmt"
        | "CommentStmt"
        | "RenameStmt"
        | "DefineStmt"
        | "CompositeTypeStmt"
        | "RefreshMatViewStmt"
        | "SecLabelStmt"
        | "ImportForeignSchemaStmt"
        | "CreateTableAsStmt"
        | "AlterSystemStmt"
        | "CreatedbStmt"
        | "DropdbStmt" => Kind::Ddl,
        n if n.starts_with("Create") || n.starts_with("Alter") || n.starts_with("Drop") => {
            Kind::Ddl
        }
        _ => Kind::Unknown,
    }
}
