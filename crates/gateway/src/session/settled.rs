//! Whether the session's lexer settings are known at the point where the server will parse
//! the next message the client sends.
//!
//! The server reads statement text with two settings: `client_encoding` (how bytes become
//! characters) and `standard_conforming_strings` (whether a backslash escapes inside
//! `'…'`). It reports both in ParameterStatus, but only just before ReadyForQuery; a
//! message that runs anything (a statement, a function, a trigger behind a write, a COPY
//! row) may change either, and a transaction's end may undo a change. So the reported
//! values hold for the next message only when every message that could have run code was
//! followed by one that produces ReadyForQuery, and that ReadyForQuery has been read.
//! Otherwise the frontend finds out before deciding text that depends on them (see
//! `Frontend::server_lexer`).
//!
//! Both halves count queue entries, not messages: the attribution knows which entry each
//! ReadyForQuery answers, and that a Sync sent during COPY FROM STDIN never gets one.

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_wire::frontend;

/// The frontend's half: what it has sent.
#[derive(Debug, Default)]
pub struct Sent {
    /// Entries queued that end with a ReadyForQuery (Query, Sync, FunctionCall).
    readies: u64,
    /// The ReadyForQuery (by count) after which the settings are the reported ones.
    needed: u64,
    /// A message that may run code was sent after the last one that produces a
    /// ReadyForQuery.
    dirty: bool,
}

/// The backend's half: entries that end with a ReadyForQuery and are done (answered, or
/// never to be), with every ParameterStatus before them applied.
#[derive(Debug, Default)]
pub struct Readies(AtomicU64);

impl Readies {
    /// Publishes the attribution's count, after the message that changed it was applied.
    pub fn publish(&self, count: u64) {
        self.0.store(count, Ordering::Release);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Messages that parse, describe or free something, and run nothing.
fn runs_nothing(tag: u8) -> bool {
    matches!(
        tag,
        frontend::PARSE | frontend::DESCRIBE | frontend::CLOSE | frontend::FLUSH
    )
}

impl Sent {
    /// Notes a message sent to the server; `ends_with_ready` when its queue entry is
    /// answered with a ReadyForQuery.
    pub fn sent(&mut self, tag: u8, ends_with_ready: bool) {
        if !runs_nothing(tag) {
            self.dirty = true;
        }
        if ends_with_ready {
            self.readies += 1;
            if self.dirty {
                self.needed = self.readies;
                self.dirty = false;
            }
        }
    }

    /// Messages sent so far that end with a ReadyForQuery.
    pub fn readies(&self) -> u64 {
        self.readies
    }

    /// Whether the settings last reported are the ones the server will parse the next
    /// message with.
    pub fn known(&self, readies: &Readies) -> bool {
        !self.dirty && readies.count() >= self.needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_only_after_the_ready_that_follows_code() {
        let readies = Readies::default();
        let mut s = Sent::default();
        assert!(s.known(&readies));
        // Parse and Describe run nothing.
        s.sent(frontend::PARSE, false);
        s.sent(frontend::DESCRIBE, false);
        assert!(s.known(&readies));
        // A Bind may run input functions, an Execute anything: unknown until the Sync's
        // ReadyForQuery has been read.
        s.sent(frontend::BIND, false);
        s.sent(frontend::EXECUTE, false);
        assert!(!s.known(&readies));
        s.sent(frontend::SYNC, true);
        assert!(!s.known(&readies));
        readies.publish(1);
        assert!(s.known(&readies));
        // Even a lone Sync may run code: deferred triggers fire at the commit it makes.
        s.sent(frontend::SYNC, true);
        assert!(!s.known(&readies));
        readies.publish(2);
        assert!(s.known(&readies));
        // Two pipelined queries: the second's text is parsed after the first ran.
        s.sent(frontend::QUERY, true);
        s.sent(frontend::QUERY, true);
        readies.publish(3);
        assert!(!s.known(&readies));
        readies.publish(4);
        assert!(s.known(&readies));
        // COPY data fires triggers.
        s.sent(frontend::COPY_DATA, false);
        assert!(!s.known(&readies));
    }
}
