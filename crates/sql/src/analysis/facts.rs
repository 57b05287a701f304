//! What a statement does, as facts a policy can decide on.

use std::collections::BTreeSet;

use super::Tag;

/// The statement kinds policies name as actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    CopyIn,
    CopyOut,
    Ddl,
    Dcl,
    Truncate,
    SetSession,
    Transaction,
    Call,
    Do,
    Explain,
    Utility,
    Unknown,
}

impl Kind {
    pub const ALL: [Kind; 17] = [
        Kind::Select,
        Kind::Insert,
        Kind::Update,
        Kind::Delete,
        Kind::Merge,
        Kind::CopyIn,
        Kind::CopyOut,
        Kind::Ddl,
        Kind::Dcl,
        Kind::Truncate,
        Kind::SetSession,
        Kind::Transaction,
        Kind::Call,
        Kind::Do,
        Kind::Explain,
        Kind::Utility,
        Kind::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Select => "select",
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Merge => "merge",
            Kind::CopyIn => "copy_in",
            Kind::CopyOut => "copy_out",
            Kind::Ddl => "ddl",
            Kind::Dcl => "dcl",
            Kind::Truncate => "truncate",
            Kind::SetSession => "set_session",
            Kind::Transaction => "transaction",
            Kind::Call => "call",
            Kind::Do => "do",
            Kind::Explain => "explain",
            Kind::Utility => "utility",
            Kind::Unknown => "unknown",
        }
    }

    /// Whether statements of this kind change table data.
    pub fn writes_rows(self) -> bool {
        matches!(
            self,
            Kind::Insert
                | Kind::Update
                | Kind::Delete
                | Kind::Merge
                | Kind::CopyIn
                | Kind::Truncate
        )
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A relation as written in the statement: the parser has already folded case and decoded
/// quoted and `U&` identifiers. `schema` is `None` when the name is unqualified and must be
/// resolved against the search path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelationName {
    pub schema: Option<String>,
    pub name: String,
}

impl std::fmt::Display for RelationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Which columns of a relation a statement touches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Columns {
    /// Named columns (possibly none).
    #[default]
    None,
    Some(BTreeSet<String>),
    /// Every column: `*`, a whole-row reference, or a column that could not be attributed.
    All,
}

impl Columns {
    pub fn add(&mut self, column: &str) {
        match self {
            Columns::All => {}
            Columns::None => *self = Columns::Some(BTreeSet::from([column.to_string()])),
            Columns::Some(set) => {
                set.insert(column.to_string());
            }
        }
    }

    pub fn merge(&mut self, other: &Columns) {
        match other {
            Columns::None => {}
            Columns::All => *self = Columns::All,
            Columns::Some(set) => {
                for c in set {
                    self.add(c);
                }
            }
        }
    }
}

/// One access to a relation: the action policies see (`select` for reads, the statement's
/// kind for its targets) and the columns involved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    pub relation: RelationName,
    pub action: Kind,
    pub columns: Columns,
}

/// What a function is known to do beyond computing a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FunctionClass {
    /// Reads or writes files on the database server.
    ServerFiles,
    /// Runs SQL given as text (or reads a table given by name), out of the analyser's sight.
    DynamicSql,
    /// Sends data out of the session (notifications, other servers).
    SendsData,
    /// Changes a session setting (`set_config`).
    SessionConfig,
    /// Administers the server (signals, reloads, WAL control).
    Admin,
    /// Reads or writes large objects.
    LargeObjects,
    /// Changes data or state beyond the statement's result: sequences, large objects,
    /// advisory locks, replication origins, statistics; and any function the catalog marks
    /// volatile that is not known to be harmless (see `functions::harmless_volatile`).
    Writes,
}

impl FunctionClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionClass::ServerFiles => "server_files",
            FunctionClass::DynamicSql => "dynamic_sql",
            FunctionClass::SendsData => "sends_data",
            FunctionClass::SessionConfig => "session_config",
            FunctionClass::Admin => "admin",
            FunctionClass::LargeObjects => "large_objects",
            FunctionClass::Writes => "writes",
        }
    }
}

/// A function called by the statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionRef {
    pub schema: Option<String>,
    pub name: String,
    pub classes: BTreeSet<FunctionClass>,
}

impl std::fmt::Display for FunctionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A name used as `t.name` (or `(t).name`): a column of `t`, or, when `t` has no column
/// of that name, a call of the function `name` with `t`'s whole row (PostgreSQL's
/// functional notation). Only the catalog can tell which; the policy layer decides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowCall {
    pub name: String,
    /// The base relations whose row `t` stands for (none for a subquery, a CTE, a
    /// function or a composite value).
    pub relations: Vec<RelationName>,
}

/// A string constant passed to a function: where the function takes a `regclass`, it names
/// a relation, which only the catalog's argument types can tell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameArgument {
    pub function: String,
    /// The argument's position, from 0.
    pub position: usize,
    pub value: String,
}

/// A change to the session's identity or settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionChange {
    /// `SET ROLE`, `SET role = …`, `set_config('role', …)`; `None` for RESET ROLE / NONE.
    Role(Option<String>),
    /// `SET SESSION AUTHORIZATION` (or its GUC).
    SessionAuthorization(Option<String>),
    /// `SET search_path` with the new schemas; `None` when they cannot be known (a
    /// non-constant `set_config`).
    SearchPath(Option<Vec<String>>),
    /// Any other setting (lowercased name); `*` for RESET ALL / DISCARD ALL, `?` for a
    /// `set_config` whose name is not a constant (it could be any setting, `role` included).
    Setting(String),
}

/// COPY details.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct CopyFacts {
    pub from: bool,
    /// `COPY … PROGRAM 'command'`.
    pub program: Option<String>,
    /// `COPY … FROM/TO 'file'` on the server.
    pub file: Option<String>,
}

/// Everything the analyser found out about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Facts {
    pub kind: Kind,
    /// The parse tree's root node type, e.g. `SelectStmt`.
    pub node: String,
    pub accesses: Vec<Access>,
    pub functions: Vec<FunctionRef>,
    /// Names that are columns or functional-notation calls (`t.name`).
    pub row_calls: Vec<RowCall>,
    /// String constants passed to functions, which may name relations.
    pub name_arguments: Vec<NameArgument>,
    /// Operators used, by name (schema dropped: every operator of the name counts). Each is
    /// a function call the catalog can name.
    pub operators: BTreeSet<String>,
    /// Types cast to, by name: a cast's function or a domain's check may run code.
    pub casts: BTreeSet<String>,
    /// For UPDATE and DELETE: whether there is a WHERE clause (`WHERE CURRENT OF` counts).
    pub has_where: Option<bool>,
    pub copy: Option<CopyFacts>,
    pub session: Vec<SessionChange>,
    /// Notable properties (see [`Tag`]), among them what a catalog it reads exposes
    /// (`exposures`).
    pub tags: BTreeSet<Tag>,
    /// For `PREPARE` / `EXECUTE`: the prepared statement's name; for `FETCH` / `MOVE`, the
    /// cursor's.
    pub prepared_name: Option<String>,
    /// Whether any decision-relevant fact came from a literal (a file name, a setting's
    /// value, a function's text argument): such statements must not share cached
    /// analyses with statements that differ only in literals.
    pub literal_sensitive: bool,
}

impl Facts {
    pub fn new(kind: Kind, node: &str) -> Self {
        Facts {
            kind,
            node: node.to_string(),
            accesses: Vec::new(),
            functions: Vec::new(),
            row_calls: Vec::new(),
            name_arguments: Vec::new(),
            operators: BTreeSet::new(),
            casts: BTreeSet::new(),
            has_where: None,
            copy: None,
            session: Vec::new(),
            tags: BTreeSet::new(),
            prepared_name: None,
            literal_sensitive: false,
        }
    }

    /// Records an access, merging with an earlier one to the same relation and action;
    /// returns its index in `accesses`.
    pub fn access(&mut self, relation: RelationName, action: Kind, columns: Columns) -> usize {
        if let Some(i) = self
            .accesses
            .iter()
            .position(|a| a.relation == relation && a.action == action)
        {
            self.accesses[i].columns.merge(&columns);
            i
        } else {
            self.accesses.push(Access {
                relation,
                action,
                columns,
            });
            self.accesses.len() - 1
        }
    }

    /// Records a possible functional-notation call, once.
    pub fn row_call(&mut self, call: RowCall) {
        if !self.row_calls.contains(&call) {
            self.row_calls.push(call);
        }
    }

    pub fn tag(&mut self, tag: Tag) {
        self.tags.insert(tag);
    }

    /// The tags' names, for policies and the trail.
    pub fn tag_names(&self) -> Vec<&'static str> {
        self.tags.iter().map(|t| t.as_str()).collect()
    }

    /// Relations read.
    pub fn reads(&self) -> impl Iterator<Item = &RelationName> {
        self.accesses
            .iter()
            .filter(|a| matches!(a.action, Kind::Select | Kind::CopyOut | Kind::Explain))
            .map(|a| &a.relation)
    }

    /// Relations written or defined.
    pub fn writes(&self) -> impl Iterator<Item = &RelationName> {
        self.accesses
            .iter()
            .filter(|a| !matches!(a.action, Kind::Select | Kind::CopyOut | Kind::Explain))
            .map(|a| &a.relation)
    }

    /// Folds in the facts of a statement this one runs (EXECUTE of a prepared statement).
    pub fn absorb(&mut self, inner: &Facts) {
        for a in &inner.accesses {
            self.access(a.relation.clone(), a.action, a.columns.clone());
        }
        for f in &inner.functions {
            if !self.functions.contains(f) {
                self.functions.push(f.clone());
            }
        }
        for r in &inner.row_calls {
            self.row_call(r.clone());
        }
        self.operators.extend(inner.operators.iter().cloned());
        self.casts.extend(inner.casts.iter().cloned());
        for n in &inner.name_arguments {
            if !self.name_arguments.contains(n) {
                self.name_arguments.push(n.clone());
            }
        }
        if inner.has_where.is_some() {
            self.has_where = inner.has_where;
        }
        if inner.copy.is_some() {
            self.copy.clone_from(&inner.copy);
        }
        self.session.extend(inner.session.iter().cloned());
        self.tags.extend(inner.tags.iter().copied());
        self.literal_sensitive |= inner.literal_sensitive;
    }
}
