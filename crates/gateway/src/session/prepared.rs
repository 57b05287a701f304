//! The session's prepared statements and portals as the gateway has seen them created, so
//! a Bind, Execute or SQL-level EXECUTE is tied to the text that was decided.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use portcullis_sql::{ParsedQuery, ParsedStatement};

use super::portals::{Bound, Effect};
use super::tripwire::Expected;
use crate::decision::Rewrite;

/// What the decision attached to a statement: a rewrite of its rows, a row limit, what its
/// result may report.
#[derive(Clone, Default)]
pub struct Treatment {
    pub rewrite: Option<Arc<dyn Rewrite>>,
    pub cap: Option<(u64, String)>,
    pub expected: Expected,
    /// For a portal: the audited statement's number, the result formats asked for, and
    /// whether its rows are recorded.
    pub audit: Option<(u64, Arc<[i16]>, bool)>,
    /// For a portal: the frontend's number of the Bind that made it (see `portals`).
    pub bind: u64,
    /// What the statement's completion does to the server's portals.
    pub effect: Effect,
    /// For a portal that runs `DECLARE`: the cursor it declares.
    pub declares: Option<(String, Arc<Prepared>)>,
    /// For a portal: the statement bound, which SQL `FETCH` and `MOVE` read too.
    pub bound: Option<Arc<Prepared>>,
    /// For a portal: its name and the statement's (a Describe of either names its rows).
    pub names: Option<(Arc<str>, Arc<str>)>,
}

/// A statement prepared by Parse or by SQL `PREPARE`.
pub struct Prepared {
    pub parsed: Arc<ParsedQuery>,
    /// Which statement of `parsed` was prepared.
    pub index: usize,
    pub treatment: Treatment,
}

impl Prepared {
    pub fn statement(&self) -> Option<&ParsedStatement> {
        self.parsed.result.as_ref().ok()?.get(self.index)
    }
}

/// Prepared statements (protocol and SQL level share one namespace, as in the server) and
/// portals.
#[derive(Default)]
pub struct Registry {
    statements: HashMap<String, Arc<Prepared>>,
    portals: HashMap<String, Treatment>,
    /// SQL cursors as declared: the DECLARE each FETCH is decided on.
    cursors: HashMap<String, Arc<Prepared>>,
    /// Binds so far.
    binds: u64,
}

impl Registry {
    pub fn prepare(&mut self, name: &str, prepared: Prepared) {
        self.statements.insert(name.to_string(), Arc::new(prepared));
    }

    pub fn statement(&self, name: &str) -> Option<&Arc<Prepared>> {
        self.statements.get(name)
    }

    pub fn deallocate(&mut self, name: &str) {
        self.statements.remove(name);
    }

    /// `DEALLOCATE ALL` / `DISCARD ALL`: every named statement goes; the unnamed one is
    /// protocol-level and stays.
    pub fn deallocate_all(&mut self) {
        self.statements.retain(|name, _| name.is_empty());
    }

    /// A portal of a statement with nothing to decide (an empty query string).
    pub fn bind(&mut self, portal: &str, statement: &str) -> Bound {
        let treatment = self
            .statements
            .get(statement)
            .map(|p| p.treatment.clone())
            .unwrap_or_default();
        self.bind_treated(portal, treatment)
    }

    /// A portal with a treatment decided at Bind; numbered, so the ledger can tell this
    /// Bind's portal from another of the same name.
    pub fn bind_treated(&mut self, portal: &str, mut treatment: Treatment) -> Bound {
        self.binds += 1;
        treatment.bind = self.binds;
        self.portals.insert(portal.to_string(), treatment);
        (Arc::from(portal), self.binds)
    }

    pub fn portal(&self, portal: &str) -> Treatment {
        self.portals.get(portal).cloned().unwrap_or_default()
    }

    /// Whether a Bind through the gateway created this portal.
    pub fn has_portal(&self, portal: &str) -> bool {
        self.portals.contains_key(portal)
    }

    /// A cursor declared: a portal of that name bound earlier is gone (the server would
    /// not have declared it otherwise).
    pub fn declare(&mut self, name: &str, cursor: Arc<Prepared>) {
        self.portals.remove(name);
        self.cursors.insert(name.to_string(), cursor);
    }

    /// What `FETCH name` reads: the cursor declared under that name, else the statement
    /// a protocol portal of that name was bound to.
    pub fn cursor(&self, name: &str) -> Option<&Arc<Prepared>> {
        self.cursors
            .get(name)
            .or_else(|| self.portals.get(name)?.bound.as_ref())
    }

    /// The portal a `FETCH name` reads when no cursor of that name was declared: one bound
    /// through the gateway, as the ledger knows it.
    pub fn bound_portal(&self, name: &str) -> Option<Bound> {
        if self.cursors.contains_key(name) {
            return None;
        }
        let t = self.portals.get(name)?;
        t.bound.as_ref()?;
        Some((Arc::from(name), t.bind))
    }

    /// `CLOSE name`, `CLOSE ALL` (`None`): protocol portals of the name go too.
    pub fn close_cursor(&mut self, name: Option<&str>) {
        match name {
            Some(n) => {
                self.cursors.remove(n);
                self.portals.remove(n);
            }
            None => {
                self.cursors.clear();
                self.portals.clear();
            }
        }
    }
}

/// Parses of the unnamed statement whose outcome is not known yet. The unnamed statement is
/// tied to its new text at once (waiting for every ParseComplete would cost a round trip
/// per statement), which is right for everything sent before the next Sync: if the server
/// skips the Parse after an earlier error, it skips the Binds after it too. After a Sync it
/// is not: a skipped Parse left the old statement in place. So a Bind of the unnamed
/// statement with a Sync between it and the last Parse waits for the outcomes and settles
/// on what the server holds.
#[derive(Default)]
pub struct UnnamedParses {
    /// What the unnamed statement was before the first pending Parse.
    base: Option<Arc<Prepared>>,
    /// In order: each Parse's outcome (created, failed; dropped unsent when skipped) and
    /// the statement it creates (`None` for the gateway's failing stand-in).
    pending: Vec<(oneshot::Receiver<bool>, Option<Arc<Prepared>>)>,
    /// A Sync was sent after the last pending Parse.
    synced: bool,
}

/// What a Parse of the unnamed statement did to it.
fn apply(holds: &mut Option<Arc<Prepared>>, outcome: Option<bool>, creates: Option<Arc<Prepared>>) {
    match outcome {
        Some(true) => *holds = creates,
        // A failed Parse of the unnamed statement drops the old one.
        Some(false) => *holds = None,
        // Skipped: the server never saw it.
        None => {}
    }
}

impl UnnamedParses {
    /// A Parse of the unnamed statement was sent; `before` is what the registry held (what
    /// the server holds when nothing is pending).
    pub fn parsed(
        &mut self,
        before: Option<Arc<Prepared>>,
        outcome: oneshot::Receiver<bool>,
        creates: Option<Arc<Prepared>>,
    ) {
        // With nothing pending, the registry's entry is what the server holds.
        if self.pending.is_empty() {
            self.base = before;
        }
        // Outcomes already in need no waiting for.
        while let Some((rx, _)) = self.pending.first_mut() {
            let got = match rx.try_recv() {
                Ok(v) => Some(v),
                Err(oneshot::error::TryRecvError::Closed) => None,
                Err(oneshot::error::TryRecvError::Empty) => break,
            };
            let (_, c) = self.pending.remove(0);
            apply(&mut self.base, got, c);
        }
        self.pending.push((outcome, creates));
        self.synced = false;
    }

    pub fn synced(&mut self) {
        self.synced |= !self.pending.is_empty();
    }

    /// Whether the unnamed statement must be settled before it is bound.
    pub fn must_settle(&self) -> bool {
        self.synced
    }

    /// What the server holds as the unnamed statement, once every pending outcome is in.
    pub async fn settle(&mut self) -> Option<Arc<Prepared>> {
        let mut holds = self.base.take();
        for (outcome, creates) in self.pending.drain(..) {
            apply(&mut holds, outcome.await.ok(), creates);
        }
        self.synced = false;
        holds
    }
}

impl Registry {
    /// The unnamed statement's entry, taken out (a Parse of it is about to replace it).
    pub fn take_unnamed(&mut self) -> Option<Arc<Prepared>> {
        self.statements.remove("")
    }

    /// Sets the unnamed statement to what the server holds.
    pub fn set_unnamed(&mut self, prepared: Option<Arc<Prepared>>) {
        match prepared {
            Some(p) => {
                self.statements.insert(String::new(), p);
            }
            None => {
                self.statements.remove("");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(sql: &str) -> Arc<Prepared> {
        Arc::new(Prepared {
            parsed: Arc::new(portcullis_sql::parse(sql, Default::default())),
            index: 0,
            treatment: Treatment::default(),
        })
    }

    fn text(p: &Option<Arc<Prepared>>) -> Option<String> {
        p.as_ref()
            .and_then(|p| p.statement())
            .map(|s| s.text.clone())
    }

    #[tokio::test]
    async fn the_unnamed_statement_settles_on_what_the_server_holds() {
        // created, failed, skipped
        for (outcome, holds) in [
            (Some(true), Some("select 2")),
            (Some(false), None),
            (None, Some("select 1")),
        ] {
            let mut u = UnnamedParses::default();
            let (tx, rx) = oneshot::channel();
            u.parsed(Some(prepared("select 1")), rx, Some(prepared("select 2")));
            assert!(
                !u.must_settle(),
                "a Bind before the next Sync is in the same segment"
            );
            u.synced();
            assert!(u.must_settle());
            match outcome {
                Some(v) => tx.send(v).unwrap(),
                None => drop(tx),
            }
            assert_eq!(text(&u.settle().await).as_deref(), holds);
        }
        // One created, then one skipped after an error: the first stands.
        let mut u = UnnamedParses::default();
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        u.parsed(None, rx1, Some(prepared("select 1")));
        u.parsed(Some(prepared("select 1")), rx2, Some(prepared("select 2")));
        u.synced();
        tx1.send(true).unwrap();
        drop(tx2);
        assert_eq!(text(&u.settle().await).as_deref(), Some("select 1"));
    }
}
