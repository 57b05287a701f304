//! What a decision comes to, as one type: the gateway, the audit trail, `policy test` and
//! `policy explain` name and compare decisions with it.

/// The kind of a decision, ordered by severity: of several decisions about one statement,
/// the greatest is the one that stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DecisionKind {
    Allow,
    Mask,
    NeedsApproval,
    Deny,
}

impl DecisionKind {
    /// Its name in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Mask => "mask",
            DecisionKind::NeedsApproval => "needs_approval",
            DecisionKind::Deny => "deny",
        }
    }

    /// The kind a name in the audit trail stands for.
    pub fn parse(name: &str) -> Option<DecisionKind> {
        [
            DecisionKind::Allow,
            DecisionKind::Mask,
            DecisionKind::NeedsApproval,
            DecisionKind::Deny,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row limit a policy puts on a statement that changes rows: at most `max`, as policy
/// `policy` says. One type from the policy to the queue that enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowLimit {
    pub max: u64,
    pub policy: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_ordered_by_severity_and_named_once() {
        assert!(DecisionKind::Allow < DecisionKind::Mask);
        assert!(DecisionKind::Mask < DecisionKind::NeedsApproval);
        assert!(DecisionKind::NeedsApproval < DecisionKind::Deny);
        for k in [
            DecisionKind::Allow,
            DecisionKind::Mask,
            DecisionKind::NeedsApproval,
            DecisionKind::Deny,
        ] {
            assert_eq!(DecisionKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DecisionKind::parse("maybe"), None);
    }
}
