//! The request's surroundings: who asks, from where, when, against which catalog.

use std::net::IpAddr;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Who asks: a verified caller's subject and groups, as the policies see them.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub subject: &'a str,
    pub groups: &'a [String],
}

/// Where and when the statement runs.
#[derive(Debug, Clone)]
pub struct Environment<'a> {
    pub target: &'a str,
    pub role: &'a str,
    pub client_addr: IpAddr,
    pub application_name: &'a str,
    pub now: Timestamp,
    /// The time zone `hour`, `minute`, `weekday` and `date` are computed in.
    pub timezone: &'a TimeZone,
}

/// What the target's catalog knows, for resolving unqualified names and `*`.
pub trait Catalog {
    /// Schemas that hold a relation called `relation`; `None` when the catalog is not
    /// available.
    fn schemas_with(&self, relation: &str) -> Option<Vec<String>>;
    /// The columns of `schema.relation`, in order; `None` when unknown.
    fn columns(&self, schema: &str, relation: &str) -> Option<Vec<String>>;
    /// Every relation, as `(schema, name)`; `None` when the catalog is not available.
    fn relations(&self) -> Option<Vec<(String, String)>> {
        None
    }
    /// The functions called `name`: each one's schema and whether the catalog marks it
    /// volatile. `None` when the catalog is not available: functions are then classified
    /// by name only.
    fn functions_named(&self, _name: &str) -> Option<Vec<(String, bool)>> {
        None
    }
    /// The argument positions (from 0) at which some function called `name` takes a
    /// `regclass`: a string passed there names a relation.
    fn regclass_parameters(&self, _name: &str) -> Vec<usize> {
        Vec::new()
    }
    /// The functions that implement the operators called `op`: each one's schema, name and
    /// whether the catalog marks it volatile.
    fn operator_functions(&self, _op: &str) -> Vec<(String, String, bool)> {
        Vec::new()
    }
    /// The volatile functions a cast to the type called `ty` may run (a cast's function,
    /// a domain's check), each with its schema.
    fn cast_functions(&self, _ty: &str) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// No catalog: unqualified names resolve to every schema on the search path.
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn schemas_with(&self, _relation: &str) -> Option<Vec<String>> {
        None
    }

    fn columns(&self, _schema: &str, _relation: &str) -> Option<Vec<String>> {
        None
    }
}
