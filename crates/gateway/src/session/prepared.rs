//! The session's prepared statements and portals as the gateway has seen them created, so
//! a Bind, Execute or SQL-level EXECUTE is tied to the text that was decided.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_sql::{ParsedQuery, ParsedStatement};

use crate::decision::Rewrite;

/// A statement prepared by Parse or by SQL `PREPARE`.
pub struct Prepared {
    pub parsed: Arc<ParsedQuery>,
    /// Which statement of `parsed` was prepared.
    pub index: usize,
    pub rewrite: Option<Arc<dyn Rewrite>>,
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
    portals: HashMap<String, Option<Arc<dyn Rewrite>>>,
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
        let rewrite = self
            .statements
            .get(statement)
            .and_then(|p| p.rewrite.clone());
        self.portals.insert(portal.to_string(), rewrite);
    }

    pub fn portal_rewrite(&self, portal: &str) -> Option<Arc<dyn Rewrite>> {
        self.portals.get(portal).cloned().flatten()
    }

    pub fn close_portal(&mut self, portal: &str) {
        self.portals.remove(portal);
    }
}
