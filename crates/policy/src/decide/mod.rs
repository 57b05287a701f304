//! Deciding one statement: the requests are built (`request.rs`: resolve names, build the
//! entities and the context), the enforced policies answer them (`evaluate.rs`), observe-
//! only policies are asked what they would have said, and the outcome (`outcome.rs`)
//! carries the deciding policies' annotations.

mod evaluate;
mod outcome;
mod request;

pub use outcome::{Check, Decision, Outcome};

use portcullis_sql::analysis::Facts;

use crate::environment::{Catalog, Environment, Requester};
use crate::store::{Mode, PolicyStore};
use request::Requests;

/// A statement put before the policies.
#[derive(Debug, Clone, Copy)]
pub struct StatementInput<'a> {
    pub facts: &'a Facts,
    pub text: &'a str,
    /// The session's search path, for unqualified names the catalog does not know.
    pub search_path: &'a [String],
}

impl PolicyStore {
    /// Decides `statement` for `principal` in `env`.
    pub fn decide(
        &self,
        principal: Requester<'_>,
        env: &Environment<'_>,
        statement: StatementInput<'_>,
        catalog: &dyn Catalog,
    ) -> Decision {
        let r = match Requests::build(self, principal, env, statement, catalog) {
            Ok(r) => r,
            Err(why) => return refusal(why),
        };
        let ask = |set| self.evaluate(set, &r.user, &r.asks, &r.context, &r.entities, false);
        let enforce = self.mode == Mode::Enforce;
        let (outcome, checks) = if enforce {
            self.evaluate(
                &self.enforced,
                &r.user,
                &r.asks,
                &r.context,
                &r.entities,
                true,
            )
        } else {
            (Outcome::Allow { max_rows: None }, Vec::new())
        };
        let shadow = self.shadow.as_ref().map(ask);
        // Observe mode explains with what the policies would have decided.
        let checks = match (&shadow, enforce) {
            (Some((_, c)), false) => c.clone(),
            _ => checks,
        };
        let observed = shadow
            .map(|(o, _)| o)
            .filter(|o| o.severity() > outcome.severity());
        let allowed_by = |flag: &dyn Fn(&str) -> bool| {
            outcome.is_allow()
                && checks
                    .iter()
                    .filter(|c| c.allowed)
                    .flat_map(|c| &c.policies)
                    .any(|name| flag(name))
        };
        let record = allowed_by(&|n| self.records(n));
        let sensitive = allowed_by(&|n| self.is_sensitive(n));
        Decision {
            outcome,
            observed,
            checks,
            record,
            sensitive,
        }
    }
}

fn refusal(message: String) -> Decision {
    Decision {
        outcome: Outcome::Deny {
            message: format!("permission denied: {message}"),
            hint: None,
        },
        observed: None,
        checks: Vec::new(),
        record: false,
        sensitive: false,
    }
}
