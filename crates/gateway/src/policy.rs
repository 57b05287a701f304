//! The policy decider: every statement is decided by the current Cedar policies against
//! its facts, the caller, the time and the target's catalog.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_policy::{Catalog, Clock, Environment, Outcome, Requester, StatementInput};
use portcullis_sql::analysis::{Facts, Kind};
use portcullis_wire::backend::{ErrorResponse, Severity};

use crate::catalog::{Catalogs, Unloaded};
use crate::decision::{Decider, Origin, Reasons, SessionInfo, Statement, Verdict};
use crate::runtime::Runtime;

/// Decides with the policies of the current configuration generation, so a reload takes
/// effect for live sessions at their next statement.
///
/// Decisions are cached. The key holds everything the decision depends on: the policy
/// generation, the catalog snapshot, the caller and session, the statement's facts and
/// search path, and, only when some policy reads them, its text, the minute of the clock,
/// the client's address and application. Keys are two independently keyed SipHash values,
/// so no statement can be crafted to collide with another's.
pub struct PolicyDecider {
    runtime: Arc<ArcSwap<Runtime>>,
    /// Where statements that need approval are held; without it they are refused.
    approvals: Option<Arc<crate::approvals::Approvals>>,
    catalogs: Arc<Catalogs>,
    clock: Arc<dyn Clock>,
    cache: quick_cache::sync::Cache<(u64, u64), Decided>,
    hashers: (RandomState, RandomState),
}

/// A decision and why.
type Decided = (Cached, Why);

/// The cached part of [`Reasons`].
#[derive(Clone)]
struct Why {
    decision: portcullis_policy::DecisionKind,
    policies: Arc<[String]>,
    observed: Option<Arc<str>>,
    record: bool,
    sensitive: bool,
}

/// A cached decision.
#[derive(Clone)]
enum Cached {
    Allow,
    Limited(portcullis_policy::RowLimit),
    Refuse(ErrorResponse),
    /// Held until a member of one of `groups` approves; `refusal` where approvals are
    /// not configured.
    Approval {
        groups: Vec<String>,
        policies: Vec<String>,
        refusal: ErrorResponse,
        /// What the statement comes to once approved (a row limit still applies).
        then: Box<Cached>,
    },
}

impl Cached {
    /// `prepares`: the statement only prepares what runs later (a Parse, SQL `PREPARE`),
    /// which is held where it runs (the Bind, `EXECUTE`), not here.
    /// `shown` is what an approver is shown, made only for a statement that is held.
    fn verdict(
        self,
        approvals: Option<&Arc<crate::approvals::Approvals>>,
        session: &SessionInfo,
        shown: impl FnOnce() -> crate::approvals::Shown,
        prepares: bool,
    ) -> Verdict {
        match self {
            Cached::Allow => Verdict::allow(),
            Cached::Limited(limit) => Verdict::ForwardLimited {
                rewrite: None,
                limit,
            },
            Cached::Refuse(e) => Verdict::Refuse(e),
            Cached::Approval {
                groups,
                policies,
                refusal,
                then,
            } => match approvals {
                Some(_) if prepares => Verdict::allow(),
                Some(a) => a.hold(session, shown(), then.approved(), groups, policies),
                None => Verdict::Refuse(refusal),
            },
        }
    }
}

impl Cached {
    /// What an approved statement comes to (`then` of an approval: never itself a hold,
    /// by construction in `cached`; one would be refused).
    fn approved(self) -> Verdict {
        match self {
            Cached::Allow => Verdict::allow(),
            Cached::Limited(limit) => Verdict::ForwardLimited {
                rewrite: None,
                limit,
            },
            Cached::Refuse(e) | Cached::Approval { refusal: e, .. } => Verdict::Refuse(e),
        }
    }
}

/// What a decision depends on, for the cache key.
struct KeyParts<'a> {
    generation: usize,
    catalog: usize,
    session: &'a SessionInfo,
    facts: &'a Facts,
    text: &'a str,
    search_path: &'a [String],
    minute: i64,
    sensitivity: portcullis_policy::Sensitivity,
}

impl PolicyDecider {
    pub fn new(
        runtime: Arc<ArcSwap<Runtime>>,
        catalogs: Arc<Catalogs>,
        clock: Arc<dyn Clock>,
        approvals: Option<Arc<crate::approvals::Approvals>>,
    ) -> Self {
        PolicyDecider {
            runtime,
            approvals,
            catalogs,
            clock,
            cache: quick_cache::sync::Cache::new(16_384),
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    fn key(&self, k: &KeyParts<'_>) -> (u64, u64) {
        let hash = |state: &RandomState| {
            let mut h = state.build_hasher();
            (k.generation, k.catalog).hash(&mut h);
            let s = k.session;
            (&s.subject, &s.groups, &s.target, &s.upstream_role).hash(&mut h);
            k.facts.hash(&mut h);
            k.search_path.hash(&mut h);
            if k.sensitivity.text {
                k.text.hash(&mut h);
            }
            if k.sensitivity.time {
                k.minute.hash(&mut h);
            }
            if k.sensitivity.client {
                (s.client_addr.ip(), &s.application_name).hash(&mut h);
            }
            h.finish()
        };
        (hash(&self.hashers.0), hash(&self.hashers.1))
    }
}

fn refuse(code: &str, message: impl Into<String>) -> (Verdict, Reasons) {
    let v = Verdict::Refuse(ErrorResponse::new(Severity::Error, code, message));
    let r = Reasons::of(&v);
    (v, r)
}

impl Decider for PolicyDecider {
    fn decide(&self, session: &SessionInfo, statement: &Statement<'_>) -> Verdict {
        self.decide_with_reasons(session, statement).0
    }

    fn decide_with_reasons(
        &self,
        session: &SessionInfo,
        statement: &Statement<'_>,
    ) -> (Verdict, Reasons) {
        let runtime = self.runtime.load();
        let snapshot = self.catalogs.snapshot(&session.target);
        let catalog: &dyn Catalog = match &snapshot {
            Some(s) => s.as_ref(),
            None => &Unloaded,
        };
        let owned: Arc<Facts>;
        let mut own_facts: Option<&Arc<Facts>> = None;
        let mut own_text: Option<Arc<str>> = None;
        let (facts, text): (&Facts, &str) = match (statement.origin, statement.parsed) {
            (Origin::FunctionCall { oid, arguments }, _) => {
                let (f, sql) = crate::fastpath::facts(oid, arguments, snapshot.as_deref());
                owned = Arc::new(f);
                own_facts = Some(&owned);
                own_text = Some(Arc::from(sql));
                (&owned, own_text.as_deref().unwrap_or(""))
            }
            (_, Ok(parsed))
                if parsed
                    .facts
                    .tags
                    .contains(&portcullis_sql::analysis::Tag::Execute) =>
            {
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
                owned = Arc::new(f);
                own_facts = Some(&owned);
                (&owned, statement.text.unwrap_or(&parsed.text))
            }
            // FETCH reads what the cursor's query reads (a cursor the gateway did not see
            // declared, opened by a function, is decided on the FETCH alone).
            (_, Ok(parsed))
                if parsed
                    .facts
                    .tags
                    .contains(&portcullis_sql::analysis::Tag::Fetch)
                    && let Some(cursor) = statement.prepared =>
            {
                let mut f = parsed.facts.clone();
                f.absorb(&cursor.facts);
                owned = Arc::new(f);
                own_facts = Some(&owned);
                (&owned, statement.text.unwrap_or(&parsed.text))
            }
            (_, Ok(parsed)) => (&parsed.facts, statement.text.unwrap_or(&parsed.text)),
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
        let now = self.clock.now();
        let generation = Arc::as_ptr(policies) as usize;
        let catalog_id = snapshot.as_ref().map_or(0, |s| Arc::as_ptr(s) as usize);
        let key = self.key(&KeyParts {
            generation,
            catalog: catalog_id,
            session,
            facts,
            text,
            search_path: statement.search_path,
            minute: now.as_second().div_euclid(60),
            sensitivity: policies.store.sensitivity(),
        });
        let (verdict, why) = match self.cache.get(&key) {
            Some(hit) => hit,
            None => {
                let decided =
                    self.evaluate(session, facts, text, statement, policies, catalog, now);
                self.cache.insert(key, decided.clone());
                decided
            }
        };
        if let Some(would) = &why.observed {
            tracing::warn!(
                session = %session.id,
                subject = %session.subject,
                kind = %facts.kind,
                %would,
                "observe: a policy would have refused this statement"
            );
        }
        let reasons = Reasons {
            decision: why.decision,
            policies: why.policies,
            observed: why.observed,
            facts: own_facts.cloned(),
            text: own_text.clone(),
            record: why.record,
            sensitive: why.sensitive,
            approval: None,
        };
        // Judged on the statement's own root, never on facts absorbed from what an
        // EXECUTE runs (which carry the PREPARE's tag).
        let prepares = matches!(statement.origin, Origin::Parse { .. })
            || statement
                .parsed
                .is_ok_and(|p| p.facts.node == "PrepareStmt");
        // What the approver is shown is what will run: the text, what an EXECUTE or FETCH
        // runs, and the parameters.
        let shown = || crate::approvals::Shown {
            text: text.to_string(),
            runs: statement.prepared.map(|p| p.text.clone()),
            parameters: crate::audit::shown_parameters(statement.parameters, reasons.sensitive),
        };
        let verdict = verdict.verdict(self.approvals.as_ref(), session, shown, prepares);
        (verdict, reasons)
    }
}

impl PolicyDecider {
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        session: &SessionInfo,
        facts: &Facts,
        text: &str,
        statement: &Statement<'_>,
        policies: &crate::runtime::Policies,
        catalog: &dyn Catalog,
        now: jiff::Timestamp,
    ) -> Decided {
        let env = Environment {
            target: &session.target,
            role: &session.upstream_role,
            client_addr: session.client_addr.ip(),
            application_name: session.application_name.as_deref().unwrap_or(""),
            now,
            timezone: &policies.timezone,
        };
        let decision = policies.store.decide(
            Requester {
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
        let observed = decision.observed.as_ref().map(|o| Arc::from(o.summary()));
        let why = Why {
            decision: decision.outcome.kind(),
            policies: Arc::from(decision.deciding_policies()),
            observed,
            record: decision.record,
            sensitive: decision.sensitive,
        };
        let verdict = cached(decision.outcome, facts.kind, policies.condition_hints);
        if let Cached::Refuse(e) = &verdict {
            tracing::info!(session = %session.id, subject = %session.subject, kind = %facts.kind, message = %e.message(), "statement refused");
        }
        if let Cached::Approval { .. } = &verdict {
            tracing::info!(session = %session.id, subject = %session.subject, kind = %facts.kind, "statement needs approval");
        }
        (verdict, why)
    }
}

/// What an outcome comes to for the relay.
fn cached(outcome: Outcome, kind: Kind, condition_hints: bool) -> Cached {
    match outcome {
        Outcome::Allow {
            max_rows: Some(limit),
        } if matches!(kind, Kind::Update | Kind::Delete | Kind::Merge) => Cached::Limited(limit),
        Outcome::Allow { .. } => Cached::Allow,
        Outcome::Deny { message, hint } => {
            let e = ErrorResponse::new(Severity::Error, "42501", message);
            Cached::Refuse(match hint {
                Some(h) if condition_hints => e.hint(h),
                _ => e,
            })
        }
        Outcome::Mask { message, .. } => {
            Cached::Refuse(ErrorResponse::new(Severity::Error, "42501", message))
        }
        Outcome::NeedsApproval {
            message,
            groups,
            policies,
            then,
        } => match cached(*then, kind, condition_hints) {
            // Approved, it would still be refused (a masked column, while masking is not
            // available): nobody is asked.
            Cached::Refuse(e) => Cached::Refuse(e),
            then => {
                let refusal = ErrorResponse::new(
                    Severity::Error,
                    "42501",
                    format!("{message}, and this gateway has no [approval] section"),
                )
                .hint(format!(
                    "a member of {} must approve it; configure [approval] to hold such statements",
                    groups.join(" or ")
                ));
                Cached::Approval {
                    groups,
                    policies,
                    refusal,
                    then: Box::new(then),
                }
            }
        },
    }
}
