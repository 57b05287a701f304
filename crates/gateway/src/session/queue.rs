//! The expected-response queue: what the server owes for each message the client sent, so
//! every server message is attributed to the statement it answers.
//!
//! The frontend pushes an [`Expect`] before it forwards a message; the backend pops as the
//! server answers. The server's own rules are mirrored: after an error in the extended
//! protocol it skips everything up to Sync; during COPY FROM STDIN it ignores Sync and Flush
//! until the copy ends; asynchronous messages (notices, notifications, parameter changes)
//! belong to nobody.

use std::collections::VecDeque;
use std::sync::Arc;

use portcullis_wire::Message;
use portcullis_wire::backend::{self, ErrorResponse, Severity};

use crate::decision::Rewrite;

/// What the server owes for one client message.
pub enum Expect {
    /// A simple Query: one result per statement, then ReadyForQuery.
    Query {
        statements: Vec<Option<Arc<dyn Rewrite>>>,
        refusal: Option<ErrorResponse>,
    },
    /// ParseComplete, or the refusal standing in for the server's error.
    Parse {
        refusal: Option<ErrorResponse>,
    },
    Bind,
    /// ParameterDescription (statements), then RowDescription or NoData.
    Describe {
        rewrite: Option<Arc<dyn Rewrite>>,
    },
    /// Rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        rewrite: Option<Arc<dyn Rewrite>>,
    },
    Close,
    Sync,
    /// FunctionCallResponse then ReadyForQuery.
    FunctionCall {
        refusal: Option<ErrorResponse>,
    },
    /// The client ended a COPY FROM STDIN (CopyDone or CopyFail).
    CopyEnd,
}

/// What the backend does with a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    Replace(Message),
}

/// Attribution state on the backend side.
#[derive(Default)]
pub struct Attribution {
    pending: VecDeque<Expect>,
    /// The server is discarding messages until Sync after an extended-protocol error.
    skipping: bool,
    /// The server is in COPY FROM STDIN and ignores Sync and Flush.
    copy_in: bool,
    /// Index of the current statement within the Query at the front.
    statement: usize,
    /// Set after a FATAL error: the server will close.
    pub fatal: bool,
}

impl Attribution {
    pub fn push(&mut self, e: Expect) {
        self.pending.push_back(e);
        self.settle();
    }

    #[cfg(test)]
    fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Drops what the server will never answer: entries skipped after an error, and COPY
    /// end markers outside a copy.
    fn settle(&mut self) {
        loop {
            match self.pending.front() {
                Some(Expect::Sync) | None => return,
                Some(Expect::CopyEnd) if !self.copy_in => {}
                Some(_) if self.skipping => {}
                Some(_) => return,
            }
            self.pending.pop_front();
        }
    }

    /// The rewrite for rows arriving now, if any.
    pub fn current_rewrite(&self) -> Option<&Arc<dyn Rewrite>> {
        match self.pending.front()? {
            Expect::Query { statements, .. } => statements.get(self.statement)?.as_ref(),
            Expect::Execute { rewrite } | Expect::Describe { rewrite } => rewrite.as_ref(),
            _ => None,
        }
    }

    fn pop(&mut self) {
        self.pending.pop_front();
        self.statement = 0;
        self.settle();
    }

    /// The copy ended: Syncs the client sent during it were swallowed by the server.
    fn end_copy_in(&mut self, keep_front: bool) {
        self.copy_in = false;
        let at = usize::from(keep_front);
        while let Some(Expect::Sync) = self.pending.get(at) {
            self.pending.remove(at);
        }
        if let Some(Expect::CopyEnd) = self.pending.get(at) {
            self.pending.remove(at);
        }
        self.settle();
    }

    /// Attributes one server message.
    pub fn on_message(&mut self, msg: &Message) -> Action {
        match msg.tag() {
            backend::ERROR_RESPONSE => self.on_error(msg),
            backend::READY_FOR_QUERY => {
                while let Some(e) = self.pending.pop_front() {
                    if matches!(
                        e,
                        Expect::Sync | Expect::Query { .. } | Expect::FunctionCall { .. }
                    ) {
                        break;
                    }
                }
                self.skipping = false;
                self.copy_in = false;
                self.statement = 0;
                self.settle();
                Action::Forward
            }
            backend::PARSE_COMPLETE
            | backend::BIND_COMPLETE
            | backend::CLOSE_COMPLETE
            | backend::NO_DATA => {
                self.pop();
                Action::Forward
            }
            backend::ROW_DESCRIPTION => {
                let replacement = self.rewrite_with(msg, |r, m| {
                    let d = backend::RowDescription::decode(m.clone()).ok()?;
                    r.row_description(&d)
                });
                if matches!(self.pending.front(), Some(Expect::Describe { .. })) {
                    self.pop();
                }
                replacement
            }
            backend::DATA_ROW => self.rewrite_with(msg, |r, m| {
                let row = backend::DataRow::decode(m.clone()).ok()?;
                r.data_row(&row)
            }),
            backend::COMMAND_COMPLETE
            | backend::EMPTY_QUERY_RESPONSE
            | backend::PORTAL_SUSPENDED => {
                let replacement = if msg.tag() == backend::COMMAND_COMPLETE {
                    self.rewrite_with(msg, |r, m| {
                        let c = backend::CommandComplete::decode(m.clone()).ok()?;
                        r.command_complete(&c)
                    })
                } else {
                    Action::Forward
                };
                match self.pending.front() {
                    Some(Expect::Query { .. }) => {
                        self.statement += 1;
                        if self.copy_in {
                            self.end_copy_in(true);
                        }
                    }
                    Some(Expect::Execute { .. }) => {
                        self.pop();
                        if self.copy_in {
                            self.end_copy_in(false);
                        }
                    }
                    _ => {}
                }
                replacement
            }
            backend::COPY_IN_RESPONSE => {
                self.copy_in = true;
                Action::Forward
            }
            _ => Action::Forward,
        }
    }

    fn rewrite_with(
        &self,
        msg: &Message,
        f: impl FnOnce(&Arc<dyn Rewrite>, &Message) -> Option<Message>,
    ) -> Action {
        match self.current_rewrite().and_then(|r| f(r, msg)) {
            Some(m) => Action::Replace(m),
            None => Action::Forward,
        }
    }

    fn on_error(&mut self, msg: &Message) -> Action {
        let error = ErrorResponse::decode(msg).ok();
        if error
            .as_ref()
            .and_then(|e| e.severity())
            .is_some_and(|s| matches!(s, Severity::Fatal | Severity::Panic))
        {
            self.fatal = true;
            return Action::Forward;
        }
        let replace = |refusal: &mut Option<ErrorResponse>| match refusal.take() {
            Some(r) => Action::Replace(r.to_message()),
            None => Action::Forward,
        };
        match self.pending.front_mut() {
            Some(Expect::Query { refusal, .. }) => {
                let action = replace(refusal);
                if self.copy_in {
                    self.end_copy_in(true);
                }
                action
            }
            Some(Expect::FunctionCall { refusal }) => replace(refusal),
            Some(Expect::Parse { refusal }) => {
                let action = replace(refusal);
                self.skipping = true;
                self.pop();
                action
            }
            Some(
                Expect::Bind | Expect::Describe { .. } | Expect::Execute { .. } | Expect::Close,
            ) => {
                self.skipping = true;
                let copy = self.copy_in;
                self.pop();
                if copy {
                    self.end_copy_in(false);
                }
                Action::Forward
            }
            // An error at Sync (a deferred constraint at commit): ReadyForQuery follows.
            Some(Expect::Sync) | Some(Expect::CopyEnd) | None => Action::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_wire::backend::{CommandComplete, ReadyForQuery, TransactionStatus};

    fn msg(tag: u8) -> Message {
        Message::new(tag, b"")
    }

    fn error(code: &str) -> Message {
        ErrorResponse::new(Severity::Error, code, "boom").to_message()
    }

    fn rfq() -> Message {
        ReadyForQuery {
            status: TransactionStatus::Idle,
        }
        .to_message()
    }

    fn refusal() -> ErrorResponse {
        ErrorResponse::new(Severity::Error, "42501", "refused")
    }

    #[test]
    fn refused_parse_replaces_the_error_and_skips_to_sync() {
        let mut a = Attribution::default();
        a.push(Expect::Parse {
            refusal: Some(refusal()),
        });
        a.push(Expect::Bind);
        a.push(Expect::Execute { rewrite: None });
        a.push(Expect::Sync);
        let Action::Replace(m) = a.on_message(&error("42601")) else {
            panic!("not replaced")
        };
        assert_eq!(ErrorResponse::decode(&m).unwrap().code(), "42501");
        // Bind and Execute were skipped: the next answer is ReadyForQuery for the Sync.
        assert!(matches!(a.pending.front(), Some(Expect::Sync)));
        assert_eq!(a.on_message(&rfq()), Action::Forward);
        assert!(a.is_idle());
        assert!(!a.skipping);
    }

    #[test]
    fn skipping_drops_entries_that_arrive_later() {
        let mut a = Attribution::default();
        a.push(Expect::Execute { rewrite: None });
        a.on_message(&error("22012"));
        // Pipelined messages the client sent after the failing one.
        a.push(Expect::Parse { refusal: None });
        a.push(Expect::Query {
            statements: vec![],
            refusal: None,
        });
        assert!(a.is_idle());
        a.push(Expect::Sync);
        a.on_message(&rfq());
        a.push(Expect::Parse { refusal: None });
        assert!(matches!(a.pending.front(), Some(Expect::Parse { .. })));
    }

    #[test]
    fn simple_query_counts_statements() {
        let mut a = Attribution::default();
        a.push(Expect::Query {
            statements: vec![None, None],
            refusal: None,
        });
        a.on_message(&msg(backend::ROW_DESCRIPTION));
        a.on_message(CommandComplete::new("SELECT 1").message());
        assert_eq!(a.statement, 1);
        a.on_message(CommandComplete::new("SELECT 1").message());
        a.on_message(&rfq());
        assert!(a.is_idle());
    }

    #[test]
    fn extended_copy_in_swallows_the_early_sync() {
        let mut a = Attribution::default();
        a.push(Expect::Execute { rewrite: None });
        a.push(Expect::Sync); // sent with Execute; the server ignores it during COPY
        a.on_message(&msg(backend::COPY_IN_RESPONSE));
        a.push(Expect::CopyEnd);
        a.push(Expect::Sync);
        a.on_message(CommandComplete::new("COPY 3").message());
        assert_eq!(a.pending.len(), 1);
        a.on_message(&rfq());
        assert!(a.is_idle());
    }

    #[test]
    fn extended_copy_in_error_waits_for_the_last_sync() {
        let mut a = Attribution::default();
        a.push(Expect::Execute { rewrite: None });
        a.push(Expect::Sync);
        a.on_message(&msg(backend::COPY_IN_RESPONSE));
        a.on_message(&error("22P02"));
        assert!(a.is_idle());
        a.push(Expect::CopyEnd);
        a.push(Expect::Sync);
        assert_eq!(a.pending.len(), 1);
        a.on_message(&rfq());
        assert!(a.is_idle());
    }

    #[test]
    fn simple_copy_in_and_error_in_query() {
        let mut a = Attribution::default();
        a.push(Expect::Query {
            statements: vec![None],
            refusal: None,
        });
        a.on_message(&msg(backend::COPY_IN_RESPONSE));
        a.push(Expect::CopyEnd);
        a.on_message(CommandComplete::new("COPY 1").message());
        a.on_message(&rfq());
        assert!(a.is_idle());
    }

    #[test]
    fn fatal_is_noted() {
        let mut a = Attribution::default();
        let fatal = ErrorResponse::new(Severity::Fatal, "57P01", "terminating").to_message();
        assert_eq!(a.on_message(&fatal), Action::Forward);
        assert!(a.fatal);
    }
}
