//! The hold seam: a statement that waits for someone's decision (approvals build on it).
//!
//! A decider that cannot decide alone returns [`Verdict::Hold`](crate::decision::Verdict)
//! with a [`Hold`]: the request (its id, who may decide, how long the statement may wait,
//! where to decide) and the future that resolves when someone decides. The session tells
//! the client at once, with a NoticeResponse naming the request, and waits without
//! forwarding anything of the statement. The wait ends when the future resolves, at the
//! deadline, on the client's CancelRequest, when the client disconnects, when the session
//! is ended (an operator's revocation) or when the caller's token expires; each end is
//! answered with its own error and recorded in the audit trail. When the wait ends any way
//! but a decision, the future is dropped: a decider withdraws its request on drop.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use portcullis_wire::backend::{ErrorResponse, Severity};

use crate::decision::Verdict;

/// Identifies a request for a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(pub String);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a held statement waits on.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub id: RequestId,
    /// The groups whose members may decide.
    pub approvers: Vec<String>,
    /// How long the statement may wait for a decision.
    pub wait: Duration,
    /// Where to decide, shown to the person waiting: a command, a URL.
    pub approve_at: String,
}

/// How someone decided.
pub enum Resolution {
    /// Approved by `by`: the statement is then treated as `verdict` says (forwarded,
    /// perhaps rewritten, or refused after all).
    Approved { by: String, verdict: Verdict },
    /// Denied by `by`, for `reason`.
    Denied { by: String, reason: String },
}

/// Resolves when someone decides.
pub type Decision = Pin<Box<dyn Future<Output = Resolution> + Send>>;

/// A statement held until someone decides.
pub struct Hold {
    pub request: HoldRequest,
    pub decision: Decision,
}

impl HoldRequest {
    /// The notice the client receives as the wait begins; `until` is the deadline as the
    /// person waiting reads it.
    pub fn notice(&self, until: jiff::Timestamp) -> ErrorResponse {
        ErrorResponse::new(
            Severity::Notice,
            "00000",
            format!(
                "statement held for approval: request {} waits for a member of {}",
                self.id,
                self.approvers.join(" or ")
            ),
        )
        .detail(format!(
            "nothing of it has reached the database; it runs once approved, and is refused if nobody decides by {}",
            until.strftime("%Y-%m-%d %H:%M:%S UTC")
        ))
        .hint(format!(
            "approve with {}; cancel the statement to withdraw the request",
            self.approve_at
        ))
    }

    /// The error for a request denied by `by` for `reason`.
    pub fn denied(&self, by: &str, reason: &str) -> ErrorResponse {
        ErrorResponse::new(
            Severity::Error,
            "42501",
            format!("statement denied by {by}: {reason}"),
        )
        .detail(format!("approval request {}", self.id))
    }

    /// The error for a request nobody decided in time.
    pub fn expired(&self) -> ErrorResponse {
        ErrorResponse::new(
            Severity::Error,
            "57014",
            format!(
                "canceling statement: approval request {} expired after {} s without a decision",
                self.id,
                self.wait.as_secs()
            ),
        )
        .hint("ask a member of the approving group, then run the statement again")
    }
}
