//! The expected-response queue: what the server owes for each message sent to it, so
//! every server message is attributed to the statement it answers.
//!
//! The frontend pushes an [`Expect`] before it forwards a message; the backend pops as the
//! server answers. The server's own rules are mirrored: after an error in the extended
//! protocol it skips everything up to Sync; during COPY FROM STDIN it ignores Sync and Flush
//! until the copy ends; asynchronous messages (notices, notifications, parameter changes)
//! belong to nobody. Entries also say what to do with an answer: forward it, replace it (a
//! refusal standing in for the server's error), or swallow it (messages the gateway sent
//! on its own).

mod answers;
mod attribution;
mod limits;
mod result;
mod rows;

use std::sync::Arc;

use portcullis_wire::Message;
use portcullis_wire::backend::ErrorResponse;
use tokio::sync::oneshot;

use super::portals::{Bound, Effect};
use super::tripwire::Expected;
use crate::audit::Tracker;
use crate::rewrite::ResultRewriter;

pub use attribution::{Attribution, Stop};
pub use limits::{LimitError, LimitReport, QueryLimits, RowLimit};

/// What to do with an ErrorResponse answering an entry.
pub enum OnError {
    Forward,
    /// Send this instead: the error was provoked to stand in for a refusal.
    Replace(ErrorResponse),
    /// The gateway's own message failed on purpose; the client never sent it.
    Swallow,
}

/// What the server owes for one message.
pub enum Expect {
    /// A simple Query: one result per statement, then ReadyForQuery.
    Query {
        /// Per statement, what its completion does to the server's portals (empty when
        /// nothing).
        effects: Vec<Effect>,
        statements: Vec<Option<Arc<dyn ResultRewriter>>>,
        /// Per statement, what its result may report (the tripwire).
        expected: Vec<Expected>,
        on_error: OnError,
        limits: Option<QueryLimits>,
        /// Told, at ReadyForQuery, how many statements completed.
        completed: Option<oneshot::Sender<usize>>,
        /// Per statement, followed for the audit trail.
        audit: Vec<Option<Tracker>>,
    },
    /// ParseComplete or an error. `on_success` replaces ParseComplete with an error: a
    /// probe of text the gateway could not parse, which the server could. `report` is
    /// told whether the statement was created (true) or the Parse failed (false); it is
    /// dropped unsent when the Parse is skipped.
    Parse {
        on_error: OnError,
        on_success: Option<ErrorResponse>,
        report: Option<oneshot::Sender<bool>>,
    },
    /// BindComplete, or the refusal standing in for the server's error. A server error
    /// ends the statement `audit` follows.
    Bind {
        /// The portal a BindComplete creates (`None` for the gateway's stand-ins).
        portal: Option<Bound>,
        on_error: OnError,
        audit: Option<Tracker>,
    },
    /// ParameterDescription (statements), then RowDescription or NoData.
    Describe {
        /// What is described: `(true, name)` for a portal, `(false, name)` for a statement.
        of: (bool, Arc<str>),
        /// For a portal whose rows are rewritten: the rewriter, bound to the description.
        rewrite: Option<Arc<dyn ResultRewriter>>,
        /// The gateway's own Describe of a portal, for the Execute that follows: its answer
        /// is kept, not forwarded.
        swallow: bool,
    },
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        /// The portal executed, and whether the gateway bound it. One it bound must still
        /// be the one bound (see `portals`), and its run may span several Executes (a
        /// driver's fetch size): one result in the trail and one binding of its rewriter
        /// for the whole run. Otherwise it is a cursor SQL `DECLARE` made.
        portal: Bound,
        bound: bool,
        /// Whether its first answer has arrived (the portal checked, its run resumed).
        started: bool,
        /// What its completion does to the server's portals.
        effect: Effect,
        /// Told when it completes (dropped when it fails or is skipped).
        completed: Option<oneshot::Sender<()>>,
        /// The Execute's row count (0: all).
        fetch: u64,
        /// The rewriter its rows must go through, bound when the portal was described.
        rewrite: Option<Arc<dyn ResultRewriter>>,
        expected: Expected,
        limit: Option<(RowLimit, oneshot::Sender<LimitReport>)>,
        audit: Option<Tracker>,
    },
    Close {
        /// A portal's Close.
        portal: Option<Arc<str>>,
        swallow: bool,
        report: Option<oneshot::Sender<bool>>,
    },
    Sync,
    /// FunctionCallResponse then ReadyForQuery.
    FunctionCall {
        on_error: OnError,
        audit: Option<Tracker>,
    },
    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail).
    CopyEnd,
    /// A simple Query the gateway sent on its own (BEGIN, COMMIT, ROLLBACK, a failure).
    Internal {
        forward_errors: bool,
        forward_ready: bool,
    },
    /// Answered once every earlier entry has been: the server has caught up. The reply
    /// says whether it is discarding messages until Sync (an error came first).
    Barrier(Option<oneshot::Sender<bool>>),
    /// A Parse, Bind or Close the gateway sent on its own: its answer is swallowed, an
    /// error is forwarded (the client's pipeline has failed).
    Quiet,
    /// The Execute of the gateway's own query of the server's lexer settings
    /// (`client_encoding`, `standard_conforming_strings`): its row goes to `reply`, every
    /// answer is swallowed, an error is forwarded and `reply` dropped.
    Settings {
        row: Option<(String, String)>,
        reply: Option<oneshot::Sender<(String, String)>>,
    },
    /// Once every earlier entry is answered, the session ends with this FATAL error (an
    /// expired token): the client receives every answer it was owed first.
    End(ErrorResponse),
    /// Not an entry: a message of the gateway's own for the client, sent between two of
    /// the server's as soon as the backend sees it (a NoticeResponse: asynchronous).
    Notice(Message),
}

/// What the backend does with a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    Replace(Message),
    /// Send this, then the message itself.
    Prepend(Message),
    Swallow,
}

impl Expect {
    /// Whether the server answers this entry with a ReadyForQuery.
    pub fn ends_with_ready(&self) -> bool {
        matches!(
            self,
            Expect::Query { .. }
                | Expect::Sync
                | Expect::FunctionCall { .. }
                | Expect::Internal { .. }
        )
    }
}

#[cfg(test)]
mod tests;
