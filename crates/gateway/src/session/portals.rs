//! The server's portals as its own answers show them, kept by the backend.
//!
//! The frontend ties a portal name to the treatment decided at its Bind. That tie holds
//! only while the server's portal of that name is the one bound: a transaction's end, a
//! rollback to a savepoint made before it, `CLOSE`, `CLOSE ALL` or `DISCARD ALL` drop it,
//! and afterwards `DECLARE` can reuse the name for another query. The frontend cannot see
//! when those happen (they depend on answers still in flight), so the backend keeps this
//! ledger from the answers themselves, in order, and an Execute that reaches a portal the
//! ledger no longer holds trips the tripwire before any of its rows leave.

use std::collections::HashMap;
use std::sync::Arc;

use pg_query::NodeEnum;
use portcullis_sql::ParsedStatement;

/// What a statement does to the server's portals, read from its parse tree; applied when
/// the server reports it complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Effect {
    #[default]
    None,
    /// COMMIT, ROLLBACK, PREPARE TRANSACTION: every portal goes.
    EndsTransaction,
    Savepoint(Arc<str>),
    /// `RELEASE name`: savepoints go, portals stay.
    Release(Arc<str>),
    /// `ROLLBACK TO name`: portals made since the savepoint go.
    RollbackTo(Arc<str>),
    /// `DECLARE name` or `CLOSE name`: a portal of that name is no longer the one bound.
    Replaces(Arc<str>),
    /// `CLOSE ALL`, `DISCARD ALL`.
    ClosesAll,
    /// SQL `FETCH` or `MOVE` of a portal bound through the gateway: it must still be the
    /// one bound when the statement's first answer arrives.
    Reads(Bound),
}

impl Effect {
    pub fn of(statement: &ParsedStatement) -> Effect {
        use pg_query::protobuf::TransactionStmtKind as T;
        let name = |s: &str| Arc::<str>::from(s);
        match statement.root() {
            Some(NodeEnum::TransactionStmt(t)) => {
                let kind = T::try_from(t.kind).unwrap_or(T::Undefined);
                match kind {
                    T::TransStmtCommit | T::TransStmtRollback | T::TransStmtPrepare => {
                        Effect::EndsTransaction
                    }
                    T::TransStmtSavepoint => Effect::Savepoint(name(&t.savepoint_name)),
                    T::TransStmtRelease => Effect::Release(name(&t.savepoint_name)),
                    T::TransStmtRollbackTo => Effect::RollbackTo(name(&t.savepoint_name)),
                    _ => Effect::None,
                }
            }
            Some(NodeEnum::DeclareCursorStmt(d)) => Effect::Replaces(name(&d.portalname)),
            Some(NodeEnum::ClosePortalStmt(c)) if c.portalname.is_empty() => Effect::ClosesAll,
            Some(NodeEnum::ClosePortalStmt(c)) => Effect::Replaces(name(&c.portalname)),
            Some(NodeEnum::DiscardStmt(d))
                if d.target == pg_query::protobuf::DiscardMode::DiscardAll as i32 =>
            {
                Effect::ClosesAll
            }
            _ => Effect::None,
        }
    }
}

/// A portal as one Bind through the gateway made it: its name and the frontend's number
/// for that Bind.
pub type Bound = (Arc<str>, u64);

/// Portals bound through the gateway that the server still holds.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Ticks at every Bind and savepoint, so a rollback knows what came after.
    clock: u64,
    /// By name: the Bind that made the portal, and when.
    portals: HashMap<Arc<str>, (u64, u64)>,
    savepoints: Vec<(Arc<str>, u64)>,
}

impl Ledger {
    /// BindComplete: the portal holds what that Bind bound (an unnamed one is replaced).
    pub fn bound(&mut self, (portal, bind): &Bound) {
        self.clock += 1;
        self.portals.insert(portal.clone(), (*bind, self.clock));
    }

    /// CloseComplete for a portal.
    pub fn closed(&mut self, portal: &str) {
        self.portals.remove(portal);
    }

    /// A statement completed.
    pub fn completed(&mut self, effect: &Effect) {
        match effect {
            Effect::None => {}
            Effect::EndsTransaction => self.transaction_ended(),
            Effect::Savepoint(name) => {
                self.clock += 1;
                self.savepoints.push((name.clone(), self.clock));
            }
            Effect::Release(name) => {
                if let Some(i) = self.savepoints.iter().rposition(|(n, _)| n == name) {
                    self.savepoints.truncate(i);
                }
            }
            Effect::RollbackTo(name) => {
                match self.savepoints.iter().rposition(|(n, _)| n == name) {
                    Some(i) => {
                        let since = self.savepoints[i].1;
                        self.savepoints.truncate(i + 1);
                        self.portals.retain(|_, (_, made)| *made < since);
                    }
                    // Not a savepoint the gateway saw made: anything may have gone.
                    None => self.portals.clear(),
                }
            }
            Effect::Replaces(name) => {
                self.portals.remove(name.as_ref());
            }
            Effect::ClosesAll => self.portals.clear(),
            Effect::Reads(_) => {}
        }
    }

    /// ReadyForQuery outside a transaction block: no portal outlives its transaction.
    pub fn transaction_ended(&mut self) {
        self.portals.clear();
        self.savepoints.clear();
    }

    /// Whether the server's portal of this name is the one that Bind made.
    pub fn holds(&self, (portal, bind): &Bound) -> bool {
        self.portals.get(portal).is_some_and(|(b, _)| b == bind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_sql::{LexerOptions, parse};

    fn effect(sql: &str) -> Effect {
        Effect::of(&parse(sql, LexerOptions::default()).result.unwrap()[0])
    }

    #[test]
    fn effects_come_from_the_parse_tree() {
        assert_eq!(effect("commit"), Effect::EndsTransaction);
        assert_eq!(effect("end"), Effect::EndsTransaction);
        assert_eq!(effect("abort"), Effect::EndsTransaction);
        assert_eq!(effect("prepare transaction 'x'"), Effect::EndsTransaction);
        assert_eq!(effect("savepoint a"), Effect::Savepoint("a".into()));
        assert_eq!(effect("rollback to a"), Effect::RollbackTo("a".into()));
        assert_eq!(effect("release a"), Effect::Release("a".into()));
        assert_eq!(
            effect("declare c cursor for select 1"),
            Effect::Replaces("c".into())
        );
        assert_eq!(effect("close c"), Effect::Replaces("c".into()));
        assert_eq!(effect("close all"), Effect::ClosesAll);
        assert_eq!(effect("discard all"), Effect::ClosesAll);
        assert_eq!(effect("select 1"), Effect::None);
    }

    #[test]
    fn portals_last_as_long_as_the_server_keeps_them() {
        let p = |n| (Arc::<str>::from("p"), n);
        let q = |n| (Arc::<str>::from("q"), n);
        let mut l = Ledger::default();
        l.bound(&p(1));
        assert!(l.holds(&p(1)));
        assert!(!l.holds(&p(2)), "a Bind the server did not complete");
        l.completed(&effect("savepoint a"));
        l.bound(&q(2));
        l.completed(&effect("rollback to a"));
        assert!(
            l.holds(&p(1)) && !l.holds(&q(2)),
            "made before the savepoint"
        );
        l.bound(&q(3));
        l.completed(&effect("release a"));
        assert!(l.holds(&q(3)));
        l.completed(&effect("declare p cursor for select 1"));
        assert!(!l.holds(&p(1)), "the name is a cursor's now");
        l.completed(&effect("rollback to nowhere"));
        assert!(!l.holds(&q(3)));
        l.bound(&p(4));
        l.completed(&effect("commit"));
        assert!(!l.holds(&p(4)));
        l.bound(&p(5));
        l.transaction_ended();
        assert!(!l.holds(&p(5)));
    }
}
