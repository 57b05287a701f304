//! The session's prepared statements and portals as the gateway has seen them created, so
//! a Bind, Execute or SQL-level EXECUTE is tied to the text that was decided.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_sql::{ParsedQuery, ParsedStatement};

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

    pub fn bind(&mut self, portal: &str, statement: &str) {
        let treatment = self
            .statements
            .get(statement)
            .map(|p| p.treatment.clone())
            .unwrap_or_default();
        self.portals.insert(portal.to_string(), treatment);
    }

    /// A portal with a treatment decided at Bind.
    pub fn bind_treated(&mut self, portal: &str, treatment: Treatment) {
        self.portals.insert(portal.to_string(), treatment);
    }

    pub fn portal(&self, portal: &str) -> Treatment {
        self.portals.get(portal).cloned().unwrap_or_default()
    }

    pub fn close_portal(&mut self, portal: &str) {
        self.portals.remove(portal);
    }
}
