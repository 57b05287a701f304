//! Policies in Cedar over the facts of each statement.
//!
//! A statement becomes a set of Cedar requests (see `schema.cedarschema`): one for its kind
//! on the target, one per table access, one per function, one per column read. Cedar
//! answers permit or forbid; annotations on the policies that decided map that to the
//! gateway's outcomes:
//!
//! - no permit, or a forbid → **deny**, naming the policy and the table or function;
//! - forbidden only by policies annotated `@approval("group")` → **needs approval**;
//! - `read_unmasked` forbidden by a policy annotated `@mask("strategy")` → **mask**;
//! - permitted by policies annotated `@max_rows("N")` → allowed with a **row limit**.
//!
//! Policies annotated `@observe` (or a whole set in observe mode) are evaluated but not
//! enforced: their would-be refusals are reported beside the decision.

mod clock;
mod decide;
mod environment;
mod kind;
mod row_calls;
mod store;

pub use clock::{Clock, FixedClock, SystemClock};
pub use decide::{Check, Decision, Outcome, StatementInput};
pub use environment::{Catalog, Environment, NoCatalog, Requester};
pub use kind::{DecisionKind, RowLimit};
pub use store::{
    LoadError, MASK_STRATEGIES, Mode, PolicyStore, Sensitivity, SourceError, policy_files,
};

/// The Cedar schema policies are validated against (documented in the file itself).
pub const SCHEMA: &str = include_str!("schema.cedarschema");
