//! Live sessions, so an operator can list them and end those of a subject, and subjects
//! whose new logins are refused for a while. Touched at login, logout and by the admin
//! plane only, never per statement.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use portcullis_identity::SubjectMatch;
use serde::Serialize;
use tokio::sync::Notify;

use crate::decision::SessionId;

/// What the admin plane shows of a session.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub id: String,
    pub subject: String,
    pub groups: Vec<String>,
    pub target: String,
    pub upstream_role: String,
    pub client_addr: String,
    /// Seconds since the Unix epoch.
    pub started: u64,
    pub token_expires: u64,
}

struct Live {
    summary: SessionSummary,
    end: Arc<Notify>,
}

#[derive(Default)]
struct State {
    live: HashMap<SessionId, Live>,
    /// Subject → until when new logins are refused.
    blocked: HashMap<String, Instant>,
}

/// The registry; one per gateway.
#[derive(Default)]
pub struct Sessions {
    state: Mutex<State>,
}

/// Removes a session from the registry when dropped.
pub struct LiveGuard {
    sessions: Arc<Sessions>,
    id: SessionId,
    /// Notified when an operator ends the session.
    pub end: Arc<Notify>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.sessions.lock().live.remove(&self.id);
    }
}

fn epoch_seconds(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Who a session is, for [`Sessions::register`].
pub struct Who<'a> {
    pub id: SessionId,
    pub subject: &'a str,
    pub groups: &'a [String],
    pub target: &'a str,
    pub upstream_role: &'a str,
    pub client_addr: SocketAddr,
    pub token_expires: SystemTime,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(self: &Arc<Self>, who: Who<'_>) -> LiveGuard {
        let end = Arc::new(Notify::new());
        self.lock().live.insert(
            who.id,
            Live {
                summary: SessionSummary {
                    id: who.id.to_string(),
                    subject: who.subject.to_string(),
                    groups: who.groups.to_vec(),
                    target: who.target.to_string(),
                    upstream_role: who.upstream_role.to_string(),
                    client_addr: who.client_addr.to_string(),
                    started: epoch_seconds(SystemTime::now()),
                    token_expires: epoch_seconds(who.token_expires),
                },
                end: end.clone(),
            },
        );
        LiveGuard {
            sessions: self.clone(),
            id: who.id,
            end,
        }
    }

    /// Every live session, oldest first.
    pub fn list(&self) -> Vec<SessionSummary> {
        let mut out: Vec<SessionSummary> = self
            .lock()
            .live
            .values()
            .map(|l| l.summary.clone())
            .collect();
        out.sort_by(|a, b| (a.started, &a.id).cmp(&(b.started, &b.id)));
        out
    }

    /// Ends every session of `subject` and refuses its new logins for `block_for`.
    /// Returns how many sessions were told to end.
    pub fn revoke(&self, subject: &str, block_for: Duration) -> usize {
        let mut state = self.lock();
        if !block_for.is_zero() {
            state
                .blocked
                .insert(subject.to_string(), Instant::now() + block_for);
        }
        let mut n = 0;
        for live in state.live.values().filter(|l| l.summary.subject == subject) {
            // A stored permit: the session ends even if it is not waiting yet.
            live.end.notify_one();
            n += 1;
        }
        n
    }

    /// How much longer `subject`'s logins are refused, if they are; blocked names are
    /// compared with `subject` as `how` says (like the configured deny list).
    pub fn blocked(&self, subject: &str, how: SubjectMatch) -> Option<Duration> {
        let mut state = self.lock();
        let now = Instant::now();
        state.blocked.retain(|_, until| *until > now);
        let until = state
            .blocked
            .iter()
            .filter(|(name, _)| how.matches(name, subject))
            .map(|(_, until)| *until)
            .max()?;
        Some(until - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(id: u64, subject: &str) -> Who<'_> {
        Who {
            id: SessionId(id),
            subject,
            groups: &[],
            target: "t",
            upstream_role: "r",
            client_addr: "127.0.0.1:1".parse().unwrap(),
            token_expires: SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn revoking_ends_sessions_and_blocks_logins() {
        let s = Arc::new(Sessions::default());
        let a = s.register(who(1, "alice"));
        let b = s.register(who(2, "bob"));
        assert_eq!(s.list().len(), 2);
        assert_eq!(s.revoke("alice", Duration::from_secs(60)), 1);
        // The permit is stored: the session sees it when it next waits.
        a.end.notified().await;
        assert!(s.blocked("alice", SubjectMatch::Normalized).is_some());
        assert!(s.blocked(" Alice", SubjectMatch::Normalized).is_some());
        assert!(s.blocked("Alice", SubjectMatch::Exact).is_none());
        assert!(s.blocked("bob", SubjectMatch::Normalized).is_none());
        drop(a);
        assert_eq!(s.list().len(), 1);
        assert_eq!(s.revoke("alice", Duration::ZERO), 0);
        drop(b);
        assert!(s.list().is_empty());
    }
}
