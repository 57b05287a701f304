//! The attribution's state and its bookkeeping: the entries pending, the current
//! statement, the trackers of the audit trail, the ledger of portals.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use portcullis_wire::backend::ErrorResponse;

use super::Expect;
use super::result::Results;
use crate::audit::{Finished, Tracker};
use crate::rewrite::ResultRewriter;
use crate::session::portals::{Bound, Ledger};

/// Why the backend ends a session in the middle of an answer.
#[derive(Debug)]
pub enum Stop {
    /// The server answered something the gateway did not decide (see `tripwire`).
    Tripped(String),
    /// A result that must be rewritten could not be: the rewriter's error.
    Unrewritable(ErrorResponse),
}

/// Attribution state on the backend side.
#[derive(Default)]
pub struct Attribution {
    pub(super) pending: VecDeque<Expect>,
    /// The server is discarding messages until Sync after an extended-protocol error.
    pub(super) skipping: bool,
    /// The server is in COPY FROM STDIN and ignores Sync and Flush.
    pub(super) copy_in: bool,
    /// Index of the current statement within the Query at the front.
    pub(super) statement: usize,
    /// A row limit was exceeded in the Query at the front: its remaining answers are
    /// swallowed until ReadyForQuery.
    pub(super) swallow_rest: bool,
    /// Set after a FATAL error: the server will close.
    pub fatal: bool,
    /// Statements that ended, for the audit trail; drained by the backend.
    pub finished: Vec<Finished>,
    /// The portals' descriptions and the rewriter sink of the result arriving now.
    pub(super) results: Results,
    /// Entries that end with a ReadyForQuery (Query, Sync, FunctionCall, Internal) and are
    /// done: answered, or a Sync the server swallowed during COPY (see `settled`).
    pub readies: u64,
    /// Why the session must end at once, and the statement's number in the trail when
    /// known. Taken by the backend, which ends the session.
    pub tripped: Option<(Stop, Option<u64>)>,
    /// The trail's number of the statement that ended last: the one whose text produced
    /// a result beyond those analysed.
    pub(super) last_seq: Option<u64>,
    /// The portals bound through the gateway that the server still holds.
    pub(super) ledger: Ledger,
    /// Runs of portals over several Executes: the tracker of one suspended, and those run
    /// to their end (a later Execute of them returns nothing new).
    pub(super) runs: HashMap<Bound, Option<Tracker>>,
    /// The run the Execute at the front continues.
    pub(super) current_run: Option<Bound>,
}

impl Attribution {
    pub fn push(&mut self, e: Expect) {
        // A notice is the backend's to send, never an entry (see `Backend::take`).
        if !matches!(e, Expect::Notice(_)) {
            self.pending.push_back(e);
            self.settle();
        }
    }

    #[cfg(test)]
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Answers barriers that reached the front and drops what the server will never
    /// answer: entries skipped after an error, and COPY end markers outside a copy.
    pub(super) fn settle(&mut self) {
        loop {
            match self.pending.front_mut() {
                Some(Expect::Barrier(reply)) => {
                    if let Some(tx) = reply.take() {
                        let _ = tx.send(self.skipping);
                    }
                }
                Some(Expect::Sync | Expect::End(_)) | None => return,
                Some(Expect::CopyEnd) if !self.copy_in => {}
                Some(_) if self.skipping => {}
                Some(_) => return,
            }
            self.pending.pop_front();
        }
    }

    /// The error to end the session with, once everything before it is answered.
    pub fn ending(&self) -> Option<&ErrorResponse> {
        match self.pending.front()? {
            Expect::End(e) => Some(e),
            _ => None,
        }
    }

    /// The rewriter the result arriving now must go through, if any.
    pub fn current_rewrite(&self) -> Option<&Arc<dyn ResultRewriter>> {
        match self.pending.front()? {
            Expect::Query { statements, .. } => statements.get(self.statement)?.as_ref(),
            Expect::Execute { rewrite, .. } => rewrite.as_ref(),
            _ => None,
        }
    }

    /// Stops the session: a result that must be rewritten could not be.
    pub(super) fn unrewritable(&mut self, e: ErrorResponse) -> super::Action {
        let seq = self.current_tracker().map(|t| t.seq);
        self.tripped = Some((Stop::Unrewritable(e), seq));
        super::Action::Swallow
    }

    /// The tracker of the statement whose answers arrive now, if any.
    pub(super) fn current_tracker(&mut self) -> Option<&mut Tracker> {
        let statement = self.statement;
        match self.pending.front_mut()? {
            Expect::Query { audit, .. } => audit.get_mut(statement)?.as_mut(),
            Expect::Execute { audit, .. } => audit.as_mut(),
            _ => None,
        }
    }

    /// Ends the current statement's tracker, if any.
    pub(super) fn finish_current(
        &mut self,
        command: Option<&str>,
        rows: Option<u64>,
        error: Option<&ErrorResponse>,
    ) {
        let statement = self.statement;
        let tracker = match self.pending.front_mut() {
            Some(Expect::Query { audit, .. }) => audit.get_mut(statement).and_then(Option::take),
            Some(
                Expect::Execute { audit, .. }
                | Expect::Bind { audit, .. }
                | Expect::FunctionCall { audit, .. },
            ) => audit.take(),
            _ => None,
        };
        if let Some(t) = tracker {
            self.last_seq = Some(t.seq);
            self.finished.push(t.finish(command, rows, error));
        }
    }

    /// Whether the message at hand may be streamed through unseen: not when it could be
    /// rewritten, recorded or must be swallowed.
    pub fn may_stream(&self) -> bool {
        let statement = self.statement;
        let recording = match self.pending.front() {
            Some(Expect::Query { audit, .. }) => audit
                .get(statement)
                .and_then(Option::as_ref)
                .is_some_and(Tracker::wants_rows),
            Some(Expect::Execute { audit, .. }) => audit.as_ref().is_some_and(Tracker::wants_rows),
            _ => false,
        };
        self.current_rewrite().is_none()
            && !recording
            && !self.swallow_rest
            && !matches!(self.pending.front(), Some(Expect::Internal { .. }))
    }

    pub(super) fn pop(&mut self) {
        self.pending.pop_front();
        self.statement = 0;
        self.settle();
    }

    /// The first answer of the Execute at the front: its run continues (the tracker of one
    /// suspended, or nothing for one that ran to its end already) and its result's sink
    /// takes the stage. Returns the portal, to be checked against the ledger.
    pub(super) fn start_execute(&mut self) -> Option<Bound> {
        let Some(Expect::Execute {
            portal,
            bound,
            started,
            audit,
            ..
        }) = self.pending.front_mut()
        else {
            return None;
        };
        if std::mem::replace(started, true) {
            return None;
        }
        let b = portal.clone();
        self.results.resume(&b.0);
        if !*bound {
            return None;
        }
        match self.runs.remove(&b) {
            Some(Some(suspended)) => *audit = Some(suspended),
            Some(None) => {
                *audit = None;
                self.runs.insert(b.clone(), None);
            }
            None => {}
        }
        if let Some(t) = audit.as_mut()
            && let Some(rec) = t.recorder.as_mut()
            && let Some(d) = self.results.description(&b.0)
        {
            rec.columns(d);
        }
        self.current_run = Some(b.clone());
        Some(b)
    }

    /// The Execute at the front was suspended: its tracker waits for the next Execute of
    /// the portal.
    pub(super) fn suspend_run(&mut self) {
        let tracker = match self.pending.front_mut() {
            Some(Expect::Execute { audit, fetch, .. }) => audit.take().map(|mut t| {
                t.rows_before += *fetch;
                t
            }),
            _ => None,
        };
        if let Some(b) = self.current_run.take() {
            self.runs.insert(b, tracker);
        }
    }

    /// The Execute at the front ran its portal to the end.
    pub(super) fn end_run(&mut self) {
        if let Some(b) = self.current_run.take() {
            self.runs.insert(b, None);
        }
    }

    /// The copy ended: Syncs the client sent during it were swallowed by the server.
    pub(super) fn end_copy_in(&mut self, keep_front: bool) {
        self.copy_in = false;
        let at = usize::from(keep_front);
        while let Some(Expect::Sync) = self.pending.get(at) {
            self.pending.remove(at);
            self.readies += 1;
        }
        if let Some(Expect::CopyEnd) = self.pending.get(at) {
            self.pending.remove(at);
        }
        self.settle();
    }
}
