//! The policy decider: every statement is decided by the current Cedar policies against
//! its facts, the caller, the time and the target's catalog.

use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_policy::{
    Catalog, Clock, Environment, NoCatalog, Outcome, Principal, StatementInput,
};
use portcullis_sql::analysis::{
    Facts, FunctionRef, Kind, classify_function, large_object_function_by_oid,
};
use portcullis_wire::backend::{ErrorResponse, Severity};

use crate::catalog::{Catalogs, Snapshot};
use crate::decision::{Decider, Origin, SessionInfo, Statement, Verdict};
use crate::runtime::Runtime;

/// Decides with the policies of the current configuration generation, so a reload takes
/// effect for live sessions at their next statement.
pub struct PolicyDecider {
    runtime: Arc<ArcSwap<Runtime>>,
    catalogs: Arc<Catalogs>,
    clock: Arc<dyn Clock>,
}

impl PolicyDecider {
    pub fn new(
        runtime: Arc<ArcSwap<Runtime>>,
        catalogs: Arc<Catalogs>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        PolicyDecider {
            runtime,
            catalogs,
            clock,
        }
    }
}

fn refuse(code: &str, message: impl Into<String>) -> Verdict {
    Verdict::Refuse(ErrorResponse::new(Severity::Error, code, message))
}

/// Facts for a fast-path FunctionCall: the function the OID names in the catalog (or in
/// the fixed list of large-object functions drivers call this way), else unknown.
fn function_call_facts(oid: u32, snapshot: Option<&Snapshot>) -> Facts {
    let named = snapshot.and_then(|s| s.function(oid).cloned()).or_else(|| {
        large_object_function_by_oid(oid).map(|n| ("pg_catalog".to_string(), n.to_string()))
    });
    match named {
        Some((schema, name)) => {
            let mut f = Facts::new(Kind::Select, "FunctionCall");
            f.functions.push(FunctionRef {
                schema: Some(schema),
                classes: classify_function(&name),
                name,
            });
            f
        }
        None => Facts::new(Kind::Unknown, "FunctionCall"),
    }
}

impl Decider for PolicyDecider {
    fn decide(&self, session: &SessionInfo, statement: &Statement<'_>) -> Verdict {
        let runtime = self.runtime.load();
        let snapshot = self.catalogs.snapshot(&session.target);
        let catalog: &dyn Catalog = match &snapshot {
            Some(s) => s.as_ref(),
            None => &NoCatalog,
        };
        let owned;
        let (facts, text): (&Facts, &str) = match (statement.origin, statement.parsed) {
            (Origin::FunctionCall { oid }, _) => {
                owned = function_call_facts(oid, snapshot.as_deref());
                (&owned, "")
            }
            (_, Ok(parsed)) if parsed.facts.tags.contains("execute") => {
                let Some(prepared) = statement.prepared else {
                    let name = parsed.facts.prepared_name.clone().unwrap_or_default();
                    return refuse(
                        "26000",
                        format!("prepared statement \"{name}\" does not exist"),
                    );
                };
                // EXECUTE runs what was prepared: decide on that, plus the parameters.
                // (Under EXPLAIN or CREATE TABLE AS the outer statement keeps its kind.)
                let mut f = parsed.facts.clone();
                if f.node == "ExecuteStmt" {
                    f.kind = prepared.facts.kind;
                }
                f.absorb(&prepared.facts);
                owned = f;
                (&owned, &parsed.text)
            }
            (_, Ok(parsed)) => (&parsed.facts, &parsed.text),
            (_, Err(reason)) => {
                return refuse(
                    "42601",
                    format!(
                        "the gateway cannot analyse this statement, so it is refused: {reason}"
                    ),
                );
            }
        };
        let policies = &runtime.policies;
        let env = Environment {
            target: &session.target,
            role: &session.upstream_role,
            client_addr: session.client_addr.ip(),
            application_name: session.application_name.as_deref().unwrap_or(""),
            now: self.clock.now(),
            timezone: &policies.timezone,
        };
        let decision = policies.store.decide(
            Principal {
                subject: &session.subject,
                groups: &session.groups,
            },
            &env,
            StatementInput {
                facts,
                text,
                search_path: statement.search_path,
            },
            catalog,
        );
        if let Some(observed) = &decision.observed {
            tracing::warn!(
                session = %session.id,
                subject = %session.subject,
                kind = %facts.kind,
                would = %observed.summary(),
                "observe: a policy would have refused this statement"
            );
        }
        match decision.outcome {
            Outcome::Allow {
                max_rows: Some((max_rows, policy)),
            } if matches!(facts.kind, Kind::Update | Kind::Delete | Kind::Merge) => {
                Verdict::ForwardLimited {
                    rewrite: None,
                    max_rows,
                    policy,
                }
            }
            Outcome::Allow { .. } => Verdict::allow(),
            Outcome::Deny { message } => {
                tracing::info!(session = %session.id, subject = %session.subject, kind = %facts.kind, %message, "statement refused");
                refuse("42501", message)
            }
            Outcome::NeedsApproval {
                message, groups, ..
            } => {
                tracing::info!(session = %session.id, subject = %session.subject, kind = %facts.kind, %message, "statement needs approval");
                Verdict::Refuse(ErrorResponse::new(Severity::Error, "42501", message).hint(
                    format!("a member of {} must approve it", groups.join(" or ")),
                ))
            }
            Outcome::Mask { message, .. } => {
                tracing::info!(session = %session.id, subject = %session.subject, kind = %facts.kind, %message, "statement refused: masking needed");
                refuse("42501", message)
            }
        }
    }
}
