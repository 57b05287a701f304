//! The session's prepared statements and portals as the gateway has seen them created, so
//! a Bind, Execute or SQL-level EXECUTE is tied to the text that was decided.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::oneshot;

use portcullis_sql::{ParsedQuery, ParsedStatement};

use super::portals::{Bound, Effect};
use super::tripwire::Expected;
use crate::rewrite::ResultRewriter;

/// What the decision attached to a statement: a rewrite of its rows, a row limit, what its
/// result may report.
#[derive(Clone, Default)]
pub struct Treatment {
    pub rewrite: Option<Arc<dyn ResultRewriter>>,
    pub cap: Option<portcullis_policy::RowLimit>,
    pub expected: Expected,
    /// For a portal: the audited statement's number, and whether its rows are recorded.
    pub audit: Option<(u64, bool)>,
    /// For a portal: its name and the frontend's number of the Bind that made it (see
    /// `portals`).
    pub portal: Option<Bound>,
    /// What the statement's completion does to the server's portals.
    pub effect: Effect,
    /// For a portal whose statement prepares, deallocates, declares or closes something
    /// (`PREPARE`, `DEALLOCATE`, `DECLARE`, `CLOSE`, `DISCARD ALL`): mirrored once the
    /// server completes it.
    pub mirrors: bool,
    /// For a portal: the statement bound, which SQL `FETCH` and `MOVE` read too.
    pub bound: Option<Arc<Prepared>>,
    /// For a portal: whether a Describe of it was sent since its Bind, so the description
    /// of its rows is known to the backend (see `queue::result`).
    pub described: bool,
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
        let bound: Bound = (Arc::from(portal), self.binds);
        treatment.portal = Some(bound.clone());
        treatment.described = false;
        self.portals.insert(portal.to_string(), treatment);
        bound
    }

    /// A Describe of the portal is sent: returns whether one was sent before (since its
    /// Bind).
    pub fn describe_portal(&mut self, portal: &str) -> bool {
        self.portals
            .get_mut(portal)
            .is_some_and(|t| std::mem::replace(&mut t.described, true))
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

    /// What `FETCH name` reads: the cursor declared under that name, or the statement a
    /// protocol portal of that name was bound to. When the gateway holds both (a cursor the
    /// server may have dropped at a transaction's end, a portal bound since), it cannot
    /// tell which the server has: the FETCH reads what either reads.
    pub fn cursor(&self, name: &str) -> Option<Arc<Prepared>> {
        let cursor = self.cursors.get(name);
        let portal = self.portals.get(name).and_then(|t| t.bound.as_ref());
        match (cursor, portal) {
            (Some(c), Some(p)) => {
                let (Some(cs), Some(ps)) = (c.statement(), p.statement()) else {
                    return Some(c.clone());
                };
                let mut facts = cs.facts.clone();
                facts.absorb(&ps.facts);
                let text = format!("{} /* or */ {}", cs.text, ps.text);
                let either = ParsedStatement::synthetic(text, facts);
                Some(Arc::new(Prepared {
                    parsed: Arc::new(ParsedQuery {
                        result: Ok(vec![either]),
                    }),
                    index: 0,
                    treatment: Treatment::default(),
                }))
            }
            (c, p) => c.or(p).cloned(),
        }
    }

    /// The portal a `FETCH name` reads when no cursor of that name was declared: one bound
    /// through the gateway, as the ledger knows it.
    pub fn bound_portal(&self, name: &str) -> Option<Bound> {
        if self.cursors.contains_key(name) {
            return None;
        }
        let t = self.portals.get(name)?;
        t.bound.as_ref()?;
        t.portal.clone()
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

/// Changes to prepared statements whose outcome is not known yet: Parses (named and
/// unnamed) and Closes. The registry takes each change at once (waiting for every answer
/// would cost a round trip per statement), which is right for everything sent before the
/// next Sync: if the server fails or skips the change, it skips everything after it too.
/// After a Sync it is not: a Parse the server refused (a name taken) or skipped left the
/// old statement in place. So the first message after a Sync that uses a statement waits
/// for the outcomes and settles on what the server holds.
#[derive(Default)]
pub struct Pending {
    /// In order: the statement's name, what it held before (for the first change of that
    /// name since the last settling), the outcome (success, failure; dropped unsent when
    /// skipped), and what success and failure leave.
    changes: Vec<Change>,
    /// A Sync was sent after the last change.
    synced: bool,
}

struct Change {
    name: String,
    before: Option<Option<Arc<Prepared>>>,
    outcome: oneshot::Receiver<bool>,
    success: Option<Arc<Prepared>>,
    /// `None`: a failure leaves the statement as it was.
    failure: Option<Option<Arc<Prepared>>>,
}

impl Pending {
    /// A change of statement `name` was sent. `before` is what the registry held, and so
    /// what the server holds when nothing is pending for that name. A Parse creates
    /// `success`; a failed Parse drops the unnamed statement and leaves a named one; a
    /// Close (`success` None) drops it.
    pub fn sent(
        &mut self,
        name: &str,
        before: Option<Arc<Prepared>>,
        outcome: oneshot::Receiver<bool>,
        success: Option<Arc<Prepared>>,
        failure: Option<Option<Arc<Prepared>>>,
    ) {
        let first = !self.changes.iter().any(|c| c.name == name);
        self.changes.push(Change {
            name: name.to_string(),
            before: first.then_some(before),
            outcome,
            success,
            failure,
        });
        self.synced = false;
    }

    pub fn synced(&mut self) {
        self.synced |= !self.changes.is_empty();
    }

    /// Whether the changes must be settled before a statement is used.
    pub fn must_settle(&self) -> bool {
        self.synced
    }

    /// What the server holds under each name changed, once every outcome is in.
    pub async fn settle(&mut self) -> Vec<(String, Option<Arc<Prepared>>)> {
        let mut holds: Vec<(String, Option<Arc<Prepared>>)> = Vec::new();
        for c in self.changes.drain(..) {
            if let Some(before) = c.before {
                holds.push((c.name.clone(), before));
            }
            let Some(entry) = holds.iter_mut().find(|(n, _)| *n == c.name) else {
                continue;
            };
            match c.outcome.await.ok() {
                Some(true) => entry.1 = c.success,
                Some(false) => {
                    if let Some(f) = c.failure {
                        entry.1 = f;
                    }
                }
                // Skipped: the server never saw it.
                None => {}
            }
        }
        self.synced = false;
        holds
    }
}

impl Registry {
    /// A statement's entry, taken out (a Parse of it is about to replace it).
    pub fn take(&mut self, name: &str) -> Option<Arc<Prepared>> {
        self.statements.remove(name)
    }

    /// Sets a statement to what the server holds.
    pub fn set(&mut self, name: &str, prepared: Option<Arc<Prepared>>) {
        match prepared {
            Some(p) => {
                self.statements.insert(name.to_string(), p);
            }
            None => {
                self.statements.remove(name);
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

    fn held(h: &[(String, Option<Arc<Prepared>>)], name: &str) -> Option<String> {
        h.iter().find(|(n, _)| n == name).and_then(|(_, p)| text(p))
    }

    #[tokio::test]
    async fn statements_settle_on_what_the_server_holds() {
        // The unnamed statement: created, failed (dropped), skipped.
        for (outcome, holds) in [
            (Some(true), Some("select 2")),
            (Some(false), None),
            (None, Some("select 1")),
        ] {
            let mut p = Pending::default();
            let (tx, rx) = oneshot::channel();
            p.sent(
                "",
                Some(prepared("select 1")),
                rx,
                Some(prepared("select 2")),
                Some(None),
            );
            assert!(
                !p.must_settle(),
                "a Bind before the next Sync is in the same segment"
            );
            p.synced();
            assert!(p.must_settle());
            match outcome {
                Some(v) => tx.send(v).unwrap(),
                None => drop(tx),
            }
            assert_eq!(held(&p.settle().await, "").as_deref(), holds);
        }
        // A named statement: a failed Parse (the name was taken) leaves the old one.
        let mut p = Pending::default();
        let (tx, rx) = oneshot::channel();
        p.sent(
            "s",
            Some(prepared("select 1")),
            rx,
            Some(prepared("select 2")),
            None,
        );
        p.synced();
        tx.send(false).unwrap();
        assert_eq!(held(&p.settle().await, "s").as_deref(), Some("select 1"));
        // Created, then closed, then a Close skipped after an error: created and closed.
        let mut p = Pending::default();
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        let (tx3, rx3) = oneshot::channel();
        p.sent("s", None, rx1, Some(prepared("select 1")), None);
        p.sent("s", Some(prepared("select 1")), rx2, None, None);
        p.sent("t", Some(prepared("select 3")), rx3, None, None);
        p.synced();
        tx1.send(true).unwrap();
        tx2.send(true).unwrap();
        drop(tx3);
        let h = p.settle().await;
        assert_eq!(held(&h, "s"), None);
        assert_eq!(held(&h, "t").as_deref(), Some("select 3"));
    }
}
