//! One set of policies asked every request of a statement, and the answers read as an
//! outcome through the deciding policies' annotations (`@approval`, `@mask`,
//! `@max_rows`); refusals name what refused, or the permit whose condition did not hold.

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, EntityUid, PolicyId, PolicySet,
    Request, Response,
};

use super::request::{Ask, uid};
use super::{Check, Outcome};
use crate::store::PolicyStore;

/// The answers so far, by what they come to.
#[derive(Default)]
struct Tally {
    /// The first denial of a table, function or column, which names what was refused
    /// more precisely than a denial of the statement on the whole target.
    deny: Option<Outcome>,
    deny_target: Option<Outcome>,
    mask: Option<Outcome>,
    approval_groups: Vec<String>,
    approval_policies: Vec<String>,
    approval_what: Option<String>,
    max_rows: Option<crate::RowLimit>,
}

impl Tally {
    /// The strictest: a denial, else a need for approval, else masking, else allowed.
    fn outcome(self) -> Outcome {
        if let Some(d) = self.deny.or(self.deny_target) {
            return d;
        }
        let then = self.mask.unwrap_or(Outcome::Allow {
            max_rows: self.max_rows,
        });
        if !self.approval_groups.is_empty() {
            let quoted: Vec<String> = self
                .approval_groups
                .iter()
                .map(|g| format!("\"{g}\""))
                .collect();
            return Outcome::NeedsApproval {
                message: format!(
                    "{} needs approval from group {} (policy \"{}\")",
                    self.approval_what.unwrap_or_default(),
                    quoted.join(" or "),
                    self.approval_policies.join("\", \""),
                ),
                groups: self.approval_groups,
                policies: self.approval_policies,
                then: Box::new(then),
            };
        }
        then
    }
}

/// One request's answer.
struct Answer {
    /// The permits that allowed it, or the forbids that refused it.
    policies: Vec<PolicyId>,
    errors: Vec<String>,
    /// When refused: the permits whose condition did not hold.
    conditional: Vec<String>,
}

impl PolicyStore {
    /// Asks `set` every request; `with_approval` reads `@approval` forbids as needing
    /// approval rather than refusing.
    pub(super) fn evaluate(
        &self,
        set: &PolicySet,
        user: &EntityUid,
        asks: &[Ask],
        context: &Context,
        entities: &Entities,
        with_approval: bool,
    ) -> (Outcome, Vec<Check>) {
        let mut checks = Vec::with_capacity(asks.len());
        let mut tally = Tally::default();
        for ask in asks {
            let response = match authorize(set, user, ask, context, entities) {
                Ok(r) => r,
                Err(e) => {
                    let message = format!("permission denied: invalid policy request: {e}");
                    return (
                        Outcome::Deny {
                            message,
                            hint: None,
                        },
                        checks,
                    );
                }
            };
            let (allowed, policies, errors) = self.read_response(&response);
            let conditional = if allowed || !errors.is_empty() {
                Vec::new()
            } else {
                self.conditional(user, ask, context, entities)
            };
            let answer = Answer {
                policies,
                errors,
                conditional,
            };
            checks.push(Check {
                action: ask.action.to_string(),
                resource: ask.describe.clone(),
                allowed,
                policies: answer.policies.iter().map(|p| self.name(p)).collect(),
                errors: answer.errors.clone(),
                conditional: answer.conditional.clone(),
            });
            if allowed {
                self.allowed(&mut tally, ask, &answer);
            } else {
                let approval_only =
                    with_approval && self.approval_only(&answer, user, ask, context, entities);
                self.refused(&mut tally, ask, &answer, approval_only);
            }
        }
        (tally.outcome(), checks)
    }

    /// An allowed write takes the smallest `@max_rows` of the permits that allowed it.
    fn allowed(&self, tally: &mut Tally, ask: &Ask, answer: &Answer) {
        if !matches!(ask.action, "update" | "delete" | "merge") {
            return;
        }
        for p in &answer.policies {
            if let Some(n) = self.meta(p).and_then(|m| m.max_rows)
                && tally.max_rows.as_ref().is_none_or(|l| n < l.max)
            {
                tally.max_rows = Some(crate::RowLimit {
                    max: n,
                    policy: self.name(p),
                });
            }
        }
    }

    /// Whether only `@approval` forbids refused it: without them it is allowed.
    fn approval_only(
        &self,
        answer: &Answer,
        user: &EntityUid,
        ask: &Ask,
        context: &Context,
        entities: &Entities,
    ) -> bool {
        !answer.policies.is_empty()
            && answer
                .policies
                .iter()
                .all(|p| self.meta(p).is_some_and(|m| m.approval.is_some()))
            && authorize(&self.without_approval, user, ask, context, entities)
                .is_ok_and(|r| r.decision() == CedarDecision::Allow)
    }

    /// A refused request: an evaluation error, a masked column, a need for approval or a
    /// denial.
    fn refused(&self, tally: &mut Tally, ask: &Ask, answer: &Answer, approval_only: bool) {
        let deny = if ask.resource.type_name().to_string() == "Target" {
            &mut tally.deny_target
        } else {
            &mut tally.deny
        };
        if !answer.errors.is_empty() {
            deny.get_or_insert(Outcome::Deny {
                message: format!(
                    "permission denied: policy evaluation failed for {}: {}",
                    ask.describe,
                    answer.errors.join("; ")
                ),
                hint: None,
            });
            return;
        }
        if ask.action == "read_unmasked" {
            let masking = answer.policies.iter().find_map(|p| {
                self.meta(p)
                    .and_then(|m| m.mask.clone())
                    .map(|s| (s, self.name(p)))
            });
            match masking {
                Some((strategy, policy)) => {
                    let column = AsRef::<str>::as_ref(ask.resource.id()).to_string();
                    tally.mask.get_or_insert(Outcome::Mask {
                        message: format!(
                            "permission denied: {} must be masked ({strategy}, policy \"{policy}\"), and this gateway does not mask results yet",
                            ask.describe
                        ),
                        column,
                        strategy,
                        policy,
                    });
                }
                None => {
                    deny.get_or_insert(self.denial(ask, &answer.policies, &answer.conditional));
                }
            }
            return;
        }
        if !approval_only {
            deny.get_or_insert(self.denial(ask, &answer.policies, &answer.conditional));
            return;
        }
        for p in &answer.policies {
            if let Some(g) = self.meta(p).and_then(|m| m.approval.clone())
                && !tally.approval_groups.contains(&g)
            {
                tally.approval_groups.push(g);
            }
            let name = self.name(p);
            if !tally.approval_policies.contains(&name) {
                tally.approval_policies.push(name);
            }
        }
        tally
            .approval_what
            .get_or_insert_with(|| format!("{} on {}", ask.action, ask.describe));
    }

    fn read_response(&self, response: &Response) -> (bool, Vec<PolicyId>, Vec<String>) {
        let allowed = response.decision() == CedarDecision::Allow;
        let policies: Vec<PolicyId> = response.diagnostics().reason().cloned().collect();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        (allowed, policies, errors)
    }

    fn name(&self, id: &PolicyId) -> String {
        self.meta(id)
            .map(|m| m.id.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The permits whose scope matches the request but whose condition does not hold
    /// (the request is refused).
    fn conditional(
        &self,
        user: &EntityUid,
        ask: &Ask,
        context: &Context,
        entities: &Entities,
    ) -> Vec<String> {
        let Ok(response) = authorize(&self.unconditioned, user, ask, context, entities) else {
            return Vec::new();
        };
        let mut names: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|p| self.name(p))
            .collect();
        names.sort();
        names
    }

    fn denial(&self, ask: &Ask, forbids: &[PolicyId], conditional: &[String]) -> Outcome {
        let what = if ask.action == "read_unmasked" {
            format!("reading {} unmasked", ask.describe)
        } else if ask.action == "invoke" {
            format!("calling {}", ask.describe)
        } else {
            format!("{} on {}", ask.action, ask.describe)
        };
        // Name a forbid that refuses outright before one that would only ask for approval.
        let blocking = forbids
            .iter()
            .find(|p| {
                self.meta(p)
                    .is_none_or(|m| m.approval.is_none() && m.mask.is_none())
            })
            .or(forbids.first());
        let message = match blocking {
            Some(p) => format!(
                "permission denied: policy \"{}\" forbids {what}",
                self.name(p)
            ),
            None => format!("permission denied: no policy permits {what}"),
        };
        let hint = match (blocking, conditional) {
            (Some(_), _) | (None, []) => None,
            (None, [one]) => Some(format!(
                "policy \"{one}\" permits this only when its condition holds, and it does not now"
            )),
            (None, many) => Some(format!(
                "policies \"{}\" permit this only when their conditions hold, and none does now",
                many.join("\", \"")
            )),
        };
        Outcome::Deny { message, hint }
    }
}

/// Asks `set` one request.
fn authorize(
    set: &PolicySet,
    user: &EntityUid,
    ask: &Ask,
    context: &Context,
    entities: &Entities,
) -> Result<Response, String> {
    let request = Request::new(
        user.clone(),
        uid("Action", ask.action),
        ask.resource.clone(),
        context.clone(),
        None,
    )
    .map_err(|e| e.to_string())?;
    Ok(Authorizer::new().is_authorized(&request, set, entities))
}
