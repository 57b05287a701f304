//! Approvals: a statement a policy marks `@approval("group")` is held on its session
//! (through the hold seam, `crate::hold`) until a member of that group approves or denies
//! it on the control port, or the wait ends otherwise.
//!
//! The request is in the control store (`store.rs`) before the client is told about it;
//! deciding it writes the store first and then wakes the held statement, so what the
//! store says is what happened. A request is decided once: by someone other than its
//! requester, who is in one of its approving groups, while it is pending. When the wait
//! ends any other way (deadline, cancel, disconnect, the session's end) the request is
//! settled as expired or withdrawn, and a later approval runs nothing.

mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_policy::Clock;
use portcullis_wire::backend::{ErrorResponse, Severity};
use tokio::sync::oneshot;

pub use store::Request;
use store::Store;

use crate::decision::{SessionInfo, Verdict};
use crate::hold::{Hold, HoldRequest, RequestId, Resolution};

/// What an approver is shown of a held statement: what will run.
#[derive(Debug, Clone)]
pub struct Shown {
    pub text: String,
    /// For EXECUTE or FETCH: the statement prepared, or the cursor's query, it runs.
    pub runs: Option<String>,
    pub parameters: Vec<Option<String>>,
}

/// A decision, as it reaches the held statement.
enum Decided {
    Approved(String),
    Denied(String, String),
}

/// How approvals are run (`[approval]`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a held statement waits for a decision.
    pub deadline: Duration,
    /// How subjects are compared (`identity.deny_subjects_match`).
    pub same: portcullis_identity::SubjectMatch,
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("there is no approval request {0}")]
    Unknown(String),
    #[error("approval request {id} is {state}, not pending: it cannot be decided any more")]
    NotPending { id: String, state: String },
    #[error("{0} cannot decide their own request")]
    OwnRequest(String),
    #[error("{who} is not in a group that may decide this request ({groups})")]
    NotEligible { who: String, groups: String },
    #[error("a denial needs a reason")]
    NoReason,
    #[error("{0}")]
    Store(#[from] store::StoreError),
}

/// The approvals of one gateway.
pub struct Approvals {
    store: Mutex<Store>,
    /// Held statements by request id: woken with the decision.
    waiting: Mutex<HashMap<String, oneshot::Sender<Decided>>>,
    settings: Settings,
    clock: Arc<dyn Clock>,
    /// The control port's URL, once it listens: named in the approver's command.
    admin_url: std::sync::OnceLock<String>,
    /// How subjects are compared: nobody approves their own request under another
    /// spelling of their name.
    same: portcullis_identity::SubjectMatch,
}

/// The most an approver is shown of one statement (text, what it runs, parameters): a
/// longer one is refused rather than approved unread.
const MAX_SHOWN: usize = 64 * 1024;

/// Requests one subject may have pending at once.
const MAX_PENDING: usize = 16;

/// Refusal of a statement that needs approval when the store cannot take the request.
fn unavailable(e: &store::StoreError) -> ErrorResponse {
    ErrorResponse::new(
        Severity::Error,
        "58030",
        format!(
            "this statement needs approval, and the approval store cannot record the request ({e})"
        ),
    )
    .hint("nothing was run; retry once the approval store is back")
}

impl Approvals {
    /// Opens the store at `path`; requests left pending by an earlier run are withdrawn.
    pub fn open(
        path: &std::path::Path,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Approvals, String> {
        let store = Store::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let same = settings.same;
        Ok(Approvals {
            store: Mutex::new(store),
            waiting: Mutex::new(HashMap::new()),
            settings,
            clock,
            admin_url: std::sync::OnceLock::new(),
            same,
        })
    }

    /// Where approvers decide: the control port's URL.
    pub fn set_admin_url(&self, url: String) {
        let _ = self.admin_url.set(url);
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a statement: records its request and returns the hold the session waits on,
    /// or the refusal when the request cannot be recorded (fail closed). `approved` is
    /// what the statement comes to once approved (the approval lifts only the `@approval`
    /// forbids).
    pub fn hold(
        self: &Arc<Self>,
        session: &SessionInfo,
        shown: Shown,
        approved: Verdict,
        approvers: Vec<String>,
        policies: Vec<String>,
    ) -> Verdict {
        let size = shown.text.len()
            + shown.runs.as_ref().map_or(0, String::len)
            + shown
                .parameters
                .iter()
                .flatten()
                .map(String::len)
                .sum::<usize>();
        if size > MAX_SHOWN {
            return Verdict::Refuse(ErrorResponse::new(
                Severity::Error,
                "54000",
                format!(
                    "this statement needs approval and is too long to show an approver ({size} bytes with its parameters; at most {MAX_SHOWN})"
                ),
            ));
        }
        match self.store().pending() {
            Ok(p)
                if p.iter()
                    .filter(|r| self.same.matches(&r.subject, &session.subject))
                    .count()
                    >= MAX_PENDING =>
            {
                return Verdict::Refuse(ErrorResponse::new(
                    Severity::Error,
                    "53400",
                    format!(
                        "{} already has {MAX_PENDING} statements waiting for approval",
                        session.subject
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) => return Verdict::Refuse(unavailable(&e)),
        }
        let id = format!("a{:016x}", rand::random::<u64>());
        let now = self.clock.now();
        let deadline = now + self.settings.deadline;
        let request = Request {
            id: id.clone(),
            session: session.id.to_string(),
            subject: session.subject.clone(),
            groups: session.groups.clone(),
            client: session.client_addr.to_string(),
            target: session.target.clone(),
            upstream_role: session.upstream_role.clone(),
            text: shown.text,
            runs: shown.runs,
            parameters: shown.parameters,
            approvers: approvers.clone(),
            policies,
            created: now.to_string(),
            deadline: deadline.to_string(),
            state: "pending".into(),
            decided_by: None,
            reason: None,
        };
        // The waiter first: a decision can come as soon as the request is visible.
        let (tx, rx) = oneshot::channel();
        self.lock_waiting().insert(id.clone(), tx);
        if let Err(e) = self.store().insert(&request) {
            self.lock_waiting().remove(&id);
            tracing::error!(error = %e, "cannot record an approval request");
            return Verdict::Refuse(unavailable(&e));
        }
        let approve_at = match self.admin_url.get() {
            Some(url) => format!("`portcullis approvals approve {id} --admin {url}`"),
            None => format!("`portcullis approvals approve {id}`"),
        };
        let pending = Pending {
            approvals: self.clone(),
            id: id.clone(),
            deadline: tokio::time::Instant::now() + self.settings.deadline,
            decided: false,
        };
        Verdict::Hold(Hold {
            request: HoldRequest {
                id: RequestId(id),
                approvers,
                wait: self.settings.deadline,
                approve_at,
            },
            decision: Box::pin(async move {
                // The whole guard moves in, not only the field written below.
                let mut pending = pending;
                match rx.await {
                    Ok(decided) => {
                        pending.decided = true;
                        match decided {
                            Decided::Approved(by) => Resolution::Approved {
                                by,
                                verdict: approved,
                            },
                            Decided::Denied(by, reason) => Resolution::Denied { by, reason },
                        }
                    }
                    // The sender goes only with a decision; until then, wait.
                    Err(_) => std::future::pending().await,
                }
            }),
        })
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Decided>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pending requests `viewer` may see: those they may decide, and their own.
    pub fn visible(
        &self,
        viewer: &portcullis_identity::Principal,
    ) -> Result<Vec<Request>, DecideError> {
        Ok(self
            .store()
            .pending()?
            .into_iter()
            .filter(|r| self.same.matches(&r.subject, &viewer.subject) || eligible(r, viewer))
            .collect())
    }

    /// One request, if `viewer` may see it (decided ones too).
    pub fn get(
        &self,
        id: &str,
        viewer: &portcullis_identity::Principal,
    ) -> Result<Request, DecideError> {
        self.store()
            .get(id)?
            .filter(|r| self.same.matches(&r.subject, &viewer.subject) || eligible(r, viewer))
            .ok_or_else(|| DecideError::Unknown(id.to_string()))
    }

    /// Approves or denies a pending request as `approver`, then wakes its statement.
    pub fn decide(
        &self,
        id: &str,
        approver: &portcullis_identity::Principal,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Request, DecideError> {
        let store = self.store();
        let request = store
            .get(id)?
            .ok_or_else(|| DecideError::Unknown(id.to_string()))?;
        if request.state != "pending" {
            return Err(DecideError::NotPending {
                id: id.to_string(),
                state: request.state,
            });
        }
        let own = self.same.matches(&request.subject, &approver.subject);
        // A request the caller may not see does not exist for them.
        if !own && !eligible(&request, approver) {
            if request.subject == approver.subject {
                return Err(DecideError::OwnRequest(approver.subject.clone()));
            }
            return Err(DecideError::Unknown(id.to_string()));
        }
        if own {
            return Err(DecideError::OwnRequest(approver.subject.clone()));
        }
        let reason = reason.filter(|r| !r.trim().is_empty());
        if !approve && reason.is_none() {
            return Err(DecideError::NoReason);
        }
        let state = if approve { "approved" } else { "denied" };
        if !store.settle(id, state, Some(&approver.subject), reason.as_deref())? {
            return Err(DecideError::NotPending {
                id: id.to_string(),
                state: "no longer pending".into(),
            });
        }
        let decided = store.get(id)?.unwrap_or(request);
        drop(store);
        let decided_now = if approve {
            Decided::Approved(approver.subject.clone())
        } else {
            Decided::Denied(approver.subject.clone(), reason.unwrap_or_default())
        };
        if let Some(tx) = self.lock_waiting().remove(id) {
            let _ = tx.send(decided_now);
        }
        Ok(decided)
    }

    /// The wait for `id` ended without a decision: at its deadline, or before.
    fn ended(&self, id: &str, expired: bool) {
        self.lock_waiting().remove(id);
        let store = self.store();
        let (state, why) = if expired {
            ("expired", "nobody decided before the deadline")
        } else {
            (
                "withdrawn",
                "the statement's wait ended (a cancel, a disconnect or the session's end)",
            )
        };
        if let Err(e) = store.settle(id, state, None, Some(why)) {
            tracing::error!(request = id, error = %e, "cannot settle an approval request");
        }
    }
}

/// Whether `who` is in a group that may decide `r`.
fn eligible(r: &Request, who: &portcullis_identity::Principal) -> bool {
    who.groups.iter().any(|g| r.approvers.contains(g))
}

/// A held statement's request until it is decided; dropped undecided, the request is
/// settled as expired or withdrawn.
struct Pending {
    approvals: Arc<Approvals>,
    id: String,
    /// When the session stops waiting (it waits the same time from a moment later).
    deadline: tokio::time::Instant,
    decided: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.decided {
            let expired = tokio::time::Instant::now() >= self.deadline;
            self.approvals.ended(&self.id, expired);
        }
    }
}
