//! Row limits: the cap on one statement, and the limits on the statements of a Query,
//! with what the backend reports back when the statement ends.

use portcullis_wire::backend::{ErrorResponse, Severity};
use tokio::sync::oneshot;

/// How a row-limited statement ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReport {
    Within,
    /// It changed more rows than allowed; the client got the limit error instead of its
    /// CommandComplete and the change must be undone.
    Exceeded,
    /// The server raised an error of its own.
    Failed,
}

pub use portcullis_policy::RowLimit;

/// The error a statement over its row limit gets instead of its CommandComplete.
pub trait LimitError {
    fn error(&self, rows: Option<u64>) -> ErrorResponse;
}

impl LimitError for RowLimit {
    fn error(&self, rows: Option<u64>) -> ErrorResponse {
        let what = match rows {
            Some(n) => format!("statement would change {n} rows"),
            None => "statement was fetched in parts".into(),
        };
        ErrorResponse::new(
            Severity::Error,
            "54000",
            format!(
                "{what}, more than the {} allowed by policy \"{}\"; nothing was changed",
                self.max, self.policy
            ),
        )
        .hint("narrow the WHERE clause, or ask for a larger limit")
    }
}

/// Row limits on the statements of one simple Query.
pub struct QueryLimits {
    /// Per statement, in order.
    pub caps: Vec<Option<RowLimit>>,
    /// The gateway opened a transaction block for this query (the client was idle): the
    /// query's ReadyForQuery is swallowed and the COMMIT or ROLLBACK's is forwarded.
    pub began: bool,
    pub report: Option<oneshot::Sender<LimitReport>>,
    pub(super) exceeded: bool,
    pub(super) failed: bool,
}

impl QueryLimits {
    pub fn new(
        caps: Vec<Option<RowLimit>>,
        began: bool,
        report: oneshot::Sender<LimitReport>,
    ) -> Self {
        QueryLimits {
            caps,
            began,
            report: Some(report),
            exceeded: false,
            failed: false,
        }
    }
}
