//! What a decision comes to: the outcome, the Cedar requests made and their answers.

/// What the policies say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Run it; write statements may be capped at a number of rows by a policy.
    Allow { max_rows: Option<crate::RowLimit> },
    Deny {
        message: String,
        /// What would allow it: the permits whose scope matched but whose condition did
        /// not hold.
        hint: Option<String>,
    },
    NeedsApproval {
        groups: Vec<String>,
        policies: Vec<String>,
        message: String,
        /// What the statement comes to once approved: the approval lifts the `@approval`
        /// forbids only, not a mask or a row limit.
        then: Box<Outcome>,
    },
    Mask {
        column: String,
        strategy: String,
        policy: String,
        message: String,
    },
}

impl Outcome {
    pub fn is_allow(&self) -> bool {
        matches!(self, Outcome::Allow { .. })
    }

    /// A one-line description for logs and explain output.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Allow { max_rows: None } => "allow".into(),
            Outcome::Allow {
                max_rows: Some(crate::RowLimit { max, policy }),
            } => format!("allow, at most {max} rows (policy \"{policy}\")"),
            Outcome::Deny { message, .. }
            | Outcome::NeedsApproval { message, .. }
            | Outcome::Mask { message, .. } => message.clone(),
        }
    }

    pub(super) fn severity(&self) -> u8 {
        match self {
            Outcome::Allow { .. } => 0,
            Outcome::Mask { .. } => 1,
            Outcome::NeedsApproval { .. } => 2,
            Outcome::Deny { .. } => 3,
        }
    }
}

/// One Cedar request and its answer, for `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    pub allowed: bool,
    /// The policies that decided: permits when allowed, forbids when denied.
    pub policies: Vec<String>,
    /// Evaluation errors (which deny).
    pub errors: Vec<String>,
    /// When refused: the permits whose scope matched but whose condition did not hold.
    pub conditional: Vec<String>,
}

/// The decision on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// What observe-only policies (or observe mode) would have decided, when stricter.
    pub observed: Option<Outcome>,
    pub checks: Vec<Check>,
    /// A permit that allowed it is annotated `@record`: record its result rows.
    pub record: bool,
    /// A permit that allowed it is annotated `@sensitive`: mask its parameters in the trail.
    pub sensitive: bool,
}

impl Decision {
    /// The policies that decided: the permits of an allowed statement, the forbids of a
    /// refused one (none when nothing permitted it), sorted and without repeats.
    pub fn deciding_policies(&self) -> Vec<String> {
        let allowed = self.outcome.is_allow();
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.allowed == allowed)
            .flat_map(|c| c.policies.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Outcome {
    /// What the outcome comes to.
    pub fn kind(&self) -> crate::DecisionKind {
        match self {
            Outcome::Allow { .. } => crate::DecisionKind::Allow,
            Outcome::Deny { .. } => crate::DecisionKind::Deny,
            Outcome::NeedsApproval { .. } => crate::DecisionKind::NeedsApproval,
            Outcome::Mask { .. } => crate::DecisionKind::Mask,
        }
    }

    /// The outcome's name in the audit trail.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
}
