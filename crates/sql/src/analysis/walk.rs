//! The walk over a statement's parse tree.
//!
//! The tree is serialised to JSON first, so that the walk can visit **every** field of
//! every node, including node types this file has never heard of: a relation or a function
//! hidden in an unusual clause is still found. Statements, FROM items and the few nodes
//! whose meaning depends on where they sit (write targets, CTE names, aliases) get their
//! own handlers; everything else is searched generically.

use serde_json::Value;

use super::Tag;
use super::facts::{Columns, CopyFacts, Facts, FunctionRef, Kind, RelationName, SessionChange};
use super::functions;
use super::scope::{self, ScopeItem, Scopes};

use super::kind::kind_of;
use super::tree::{
    Obj, alias_name, alias_name_in, has, is_func_call, is_range_var, is_select_stmt, plain_string,
    qualified_name, relation_name, renames_columns, set_arg, set_arg_value, string_const,
    string_list, tagged,
};

#[derive(Clone, Copy)]
struct Ctx {
    /// The action for relations read in this part of the tree.
    read: Kind,
}

pub(super) struct Walker {
    pub facts: Facts,
    scopes: Scopes,
    /// CTE names visible at this point, innermost last.
    ctes: Vec<Vec<String>>,
    /// Under EXPLAIN without ANALYZE nothing runs: every access becomes `explain`.
    explain_only: bool,
    /// Update and delete statements seen, and how many had a WHERE clause.
    dml_where: (usize, usize),
    /// A locking clause (`FOR UPDATE`, `FOR SHARE`, …) was seen.
    locks: bool,
}

impl Walker {
    pub fn new(facts: Facts) -> Self {
        Walker {
            facts,
            scopes: Scopes::default(),
            ctes: Vec::new(),
            explain_only: false,
            dml_where: (0, 0),
            locks: false,
        }
    }

    pub fn finish(mut self) -> Facts {
        let (total, with_where) = self.dml_where;
        if total > 0 {
            self.facts.has_where = Some(total == with_where);
        }
        // A query whose CTEs change data is a write, whatever its top level says.
        if self.facts.kind == Kind::Select
            && let Some(a) = self.facts.accesses.iter().find(|a| {
                matches!(
                    a.action,
                    Kind::Insert | Kind::Update | Kind::Delete | Kind::Merge
                )
            })
        {
            self.facts.kind = a.action;
        }
        // Row locks write to the rows they lock, and the server asks UPDATE privilege for
        // them: an update of each table locked (after the above, so that a locking read
        // stays a read).
        // Every relation the statement reads is taken as locked (`FOR UPDATE OF a` names
        // FROM items of one level), which is never less than the server locks.
        if self.locks {
            let read: Vec<RelationName> = self
                .facts
                .accesses
                .iter()
                .filter(|a| matches!(a.action, Kind::Select | Kind::Explain))
                .map(|a| a.relation.clone())
                .collect();
            for relation in read {
                self.record(relation, Kind::Update, Columns::None);
            }
        }
        self.facts
    }

    fn record(&mut self, relation: RelationName, action: Kind, columns: Columns) -> usize {
        let action = if self.explain_only {
            Kind::Explain
        } else {
            action
        };
        self.facts.access(relation, action, columns)
    }

    fn is_cte(&self, rel: &RelationName) -> bool {
        rel.schema.is_none() && self.ctes.iter().any(|level| level.contains(&rel.name))
    }

    /// The statement at the root (or a nested statement: a CTE body, a rule action).
    fn statement(&mut self, node: &str, body: &Obj, ctx: Ctx) {
        match node {
            "SelectStmt" => self.select(body, ctx),
            "InsertStmt" => self.insert(body, ctx),
            "UpdateStmt" => self.update(body, ctx),
            "DeleteStmt" => self.delete(body, ctx),
            "MergeStmt" => self.merge(body, ctx),
            "CopyStmt" => self.copy(body),
            "ExplainStmt" => self.explain(body),
            "PrepareStmt" => {
                self.facts.tag(Tag::Prepare);
                self.facts.prepared_name =
                    body.get("name").and_then(Value::as_str).map(str::to_string);
                if let Some(q) = body
                    .get("query")
                    .and_then(Value::as_object)
                    .and_then(tagged)
                {
                    self.facts.kind = kind_of(q.0, q.1);
                    self.statement(q.0, q.1, ctx);
                }
                self.visit_except(body, &["query"], ctx);
            }
            "ExecuteStmt" => {
                self.facts.tag(Tag::Execute);
                self.facts.prepared_name =
                    body.get("name").and_then(Value::as_str).map(str::to_string);
                self.visit_except(body, &[], ctx);
            }
            "DeclareCursorStmt" => {
                self.facts.tag(Tag::Cursor);
                if let Some(q) = body
                    .get("query")
                    .and_then(Value::as_object)
                    .and_then(tagged)
                {
                    self.facts.kind = kind_of(q.0, q.1);
                    self.statement(q.0, q.1, ctx);
                }
                self.visit_except(body, &["query"], ctx);
            }
            "CreateTableAsStmt" => {
                if let Some(rel) = body
                    .get("into")
                    .and_then(|i| i.get("rel"))
                    .and_then(Value::as_object)
                {
                    self.record(relation_name(rel), Kind::Ddl, Columns::All);
                }
                if let Some(q) = body.get("query") {
                    self.visit(q, Ctx { read: Kind::Select });
                }
                self.visit_except(body, &["into", "query"], Ctx { read: Kind::Ddl });
            }
            "ViewStmt" => {
                if let Some(rel) = body.get("view").and_then(Value::as_object) {
                    self.record(relation_name(rel), Kind::Ddl, Columns::All);
                }
                if let Some(q) = body.get("query") {
                    self.visit(q, Ctx { read: Kind::Select });
                }
                self.visit_except(body, &["view", "query"], Ctx { read: Kind::Ddl });
            }
            "RuleStmt" => {
                self.facts.tag(Tag::Rule);
                if let Some(rel) = body.get("relation").and_then(Value::as_object) {
                    self.record(relation_name(rel), Kind::Ddl, Columns::All);
                }
                // Rule actions run later, as statements of their own: count their accesses.
                self.visit_except(body, &["relation"], Ctx { read: Kind::Select });
            }
            "VariableSetStmt" => self.variable_set(body),
            "DiscardStmt" => {
                self.facts.session.push(SessionChange::Setting("*".into()));
            }
            "TruncateStmt" => self.visit(
                &Value::Object(body.clone()),
                Ctx {
                    read: Kind::Truncate,
                },
            ),
            "DoStmt" => {
                self.facts.tag(Tag::AnonymousCode);
                self.visit_except(body, &[], ctx);
            }
            "AlterSystemStmt" => {
                self.facts.tag(Tag::AlterSystem);
                self.facts.literal_sensitive = true;
                self.visit_except(body, &[], Ctx { read: Kind::Ddl });
            }
            "DropdbStmt" => {
                self.facts.tag(Tag::DropDatabase);
                self.visit_except(body, &[], Ctx { read: Kind::Ddl });
            }
            "LoadStmt" => {
                self.facts.tag(Tag::Load);
                self.facts.literal_sensitive = true;
            }
            "NotifyStmt" => {
                self.facts.tag(Tag::Notify);
                self.visit_except(body, &[], ctx);
            }
            "TransactionStmt" => {
                // PREPARE TRANSACTION leaves a transaction (and its locks) behind the session;
                // COMMIT/ROLLBACK PREPARED end one, anyone's.
                use pg_query::protobuf::TransactionStmtKind as T;
                let kind = body.get("kind").and_then(Value::as_i64).unwrap_or(0) as i32;
                if [
                    T::TransStmtPrepare,
                    T::TransStmtCommitPrepared,
                    T::TransStmtRollbackPrepared,
                ]
                .iter()
                .any(|k| *k as i32 == kind)
                {
                    self.facts.tag(Tag::TwoPhase);
                }
            }
            "FetchStmt" => {
                // FETCH and MOVE read what the cursor's query reads: the gateway decides them
                // on the DECLARE it saw (`prepared_name` names the cursor).
                self.facts.tag(Tag::Fetch);
                self.facts.prepared_name = body
                    .get("portalname")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            "DropStmt" => self.drop(body),
            "CommentStmt" | "SecLabelStmt" => {
                self.commented(body);
                self.visit_except(body, &["object"], Ctx { read: Kind::Ddl });
            }
            _ => {
                // Relations named by utility and DDL statements carry the statement's kind.
                let read = kind_of(node, body);
                self.visit_except(body, &[], Ctx { read });
            }
        }
    }

    fn visit_except(&mut self, body: &Obj, skip: &[&str], ctx: Ctx) {
        for (k, v) in body {
            if !skip.contains(&k.as_str()) {
                self.visit(v, ctx);
            }
        }
    }

    fn visit(&mut self, v: &Value, ctx: Ctx) {
        match v {
            Value::Array(items) => {
                for i in items {
                    self.visit(i, ctx);
                }
            }
            Value::Object(map) => {
                if let Some((t, body)) = tagged(map) {
                    self.node(t, body, ctx);
                } else if is_select_stmt(map) {
                    self.select(map, ctx);
                } else if is_range_var(map) {
                    let rel = relation_name(map);
                    if !self.is_cte(&rel) {
                        self.record(rel, ctx.read, Columns::None);
                    }
                } else if is_func_call(map) {
                    self.func_call(map, ctx);
                } else {
                    for v in map.values() {
                        self.visit(v, ctx);
                    }
                }
            }
            _ => {}
        }
    }

    fn node(&mut self, t: &str, body: &Obj, ctx: Ctx) {
        match t {
            "SelectStmt" | "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                self.statement(t, body, ctx)
            }
            "RangeVar" => {
                let rel = relation_name(body);
                if !self.is_cte(&rel) {
                    self.record(rel, ctx.read, Columns::None);
                }
            }
            "FuncCall" => self.func_call(body, ctx),
            "ColumnRef" => self.column_ref(body),
            "SubLink" | "SortBy" => {
                for field in ["oper_name", "use_op"] {
                    self.operators(body.get(field));
                }
                self.visit_except(body, &[], ctx);
            }
            "AExpr" => {
                self.operators(body.get("name"));
                // `x::regclass IN ('a', 'b')`, `x::regclass = 'a'`: strings that meet a
                // regclass are coerced to one, and name relations.
                let is_regclass = |side: &str| {
                    body.get(side)
                        .and_then(|v| tagged(v.as_object()?))
                        .is_some_and(|(t, b)| {
                            t == "TypeCast"
                                && string_list(b.get("type_name").and_then(|t| t.get("names")))
                                    .last()
                                    .is_some_and(|n| n == "regclass")
                        })
                };
                for (cast, other) in [("lexpr", "rexpr"), ("rexpr", "lexpr")] {
                    if !is_regclass(cast) {
                        continue;
                    }
                    let constants: Vec<&Value> = match body.get(other) {
                        Some(v) => match v.as_object().and_then(tagged) {
                            Some(("List", l)) => l
                                .get("items")
                                .and_then(Value::as_array)
                                .map(|a| a.iter().collect())
                                .unwrap_or_default(),
                            _ => vec![v],
                        },
                        None => Vec::new(),
                    };
                    for c in constants {
                        if let Some(rel) =
                            plain_string(c).and_then(|v| super::regclass::relation(&v))
                        {
                            self.facts.literal_sensitive = true;
                            if !self.is_cte(&rel) {
                                self.record(rel, ctx.read, Columns::None);
                            }
                        }
                    }
                }
                self.visit_except(body, &[], ctx);
            }
            "TypeCast" => {
                // `'customers'::regclass` names a relation by a constant.
                let ty = string_list(body.get("type_name").and_then(|t| t.get("names")));
                if let Some(t) = ty.last() {
                    self.facts.casts.insert(t.clone());
                }
                if ty.last().is_some_and(|t| t == "regclass")
                    && let Some(rel) = body
                        .get("arg")
                        .and_then(plain_string)
                        .and_then(|v| super::regclass::relation(&v))
                {
                    self.facts.literal_sensitive = true;
                    if !self.is_cte(&rel) {
                        self.record(rel, ctx.read, Columns::None);
                    }
                }
                self.visit_except(body, &[], ctx);
            }
            "AIndirection" => {
                // `(x).f`: a field of x, or the function `f(x)`.
                for name in string_list(body.get("indirection")) {
                    self.facts.row_call(super::facts::RowCall {
                        name,
                        relations: Vec::new(),
                    });
                }
                self.visit_except(body, &[], ctx);
            }
            _ => self.visit_except(body, &[], ctx),
        }
    }

    /// Makes the CTE names of `with_clause` visible; returns whether a level was pushed.
    /// Non-recursive CTEs see only the ones before them; recursive ones see all.
    fn with_clause(&mut self, body: &Obj, ctx: Ctx) -> bool {
        let Some(with) = body.get("with_clause").and_then(Value::as_object) else {
            return false;
        };
        let recursive = with
            .get("recursive")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let ctes: Vec<(String, &Value)> = with
            .get("ctes")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| {
                        let (t, b) = tagged(i.as_object()?)?;
                        (t == "CommonTableExpr").then(|| {
                            (
                                b.get("ctename")
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                                b.get("ctequery").unwrap_or(&Value::Null),
                            )
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if recursive {
            self.ctes
                .push(ctes.iter().map(|(n, _)| n.clone()).collect());
            for (_, q) in &ctes {
                self.visit(q, ctx);
            }
        } else {
            self.ctes.push(Vec::new());
            for (name, q) in &ctes {
                self.visit(q, ctx);
                if let Some(level) = self.ctes.last_mut() {
                    level.push(name.clone());
                }
            }
        }
        true
    }

    /// Runs `f` in the statement's own scopes: its WITH clause's names, then a scope for
    /// the names its FROM (or target, USING, source) brings in.
    fn with_scope(&mut self, body: &Obj, ctx: Ctx, f: impl FnOnce(&mut Self)) {
        let pushed = self.with_clause(body, ctx);
        self.scopes.push();
        f(self);
        self.scopes.pop();
        if pushed {
            self.ctes.pop();
        }
    }

    fn select(&mut self, body: &Obj, ctx: Ctx) {
        self.with_scope(body, ctx, |w| {
            if let Some(from) = body.get("from_clause").and_then(Value::as_array) {
                for item in from {
                    w.range_item(item, ctx);
                }
            }
            if body
                .get("locking_clause")
                .and_then(Value::as_array)
                .is_some_and(|l| !l.is_empty())
            {
                w.facts.tag(Tag::RowLocks);
                w.locks = true;
            }
            if let Some(into) = body.get("into_clause").and_then(Value::as_object) {
                w.facts.tag(Tag::SelectInto);
                if let Some(rel) = into.get("rel").and_then(Value::as_object) {
                    w.record(relation_name(rel), Kind::Ddl, Columns::All);
                }
            }
            w.visit_except(body, &["with_clause", "from_clause", "into_clause"], ctx);
        });
    }

    /// A FROM item: records what it reads and the names it makes visible.
    fn range_item(&mut self, item: &Value, ctx: Ctx) {
        let Some((t, body)) = item.as_object().and_then(tagged) else {
            self.visit(item, ctx);
            return;
        };
        match t {
            "RangeVar" => {
                let rel = relation_name(body);
                let name = alias_name(body).unwrap_or_else(|| rel.name.clone());
                let accesses = if self.is_cte(&rel) {
                    Vec::new()
                } else {
                    vec![self.record(rel, ctx.read, Columns::None)]
                };
                self.scopes.add(ScopeItem {
                    name,
                    accesses,
                    every_column: renames_columns(body.get("alias")),
                });
            }
            "JoinExpr" => self.join(body, ctx),
            "RangeTableSample" => {
                if let Some(r) = body.get("relation") {
                    self.range_item(r, ctx);
                }
                // The sampling method is a function (`system`, `bernoulli`, an extension's).
                let method = string_list(body.get("method"));
                if let [.., name] = method.as_slice() {
                    let schema = method.len().checked_sub(2).map(|i| method[i].clone());
                    self.function(schema, name.clone());
                }
                self.visit_except(body, &["relation", "method"], ctx);
            }
            _ => {
                // Subqueries, functions, VALUES, XMLTABLE: their own analysis covers what
                // they read; the alias names something that is not a base relation.
                self.visit(item, ctx);
                if let Some(name) = alias_name(body) {
                    self.scopes.add(ScopeItem {
                        name,
                        accesses: Vec::new(),
                        every_column: false,
                    });
                }
            }
        }
    }

    /// A join: both sides' names stay visible; `USING` columns are read on both sides,
    /// `NATURAL` reads columns only the catalog knows (so every column); a join alias
    /// (and PostgreSQL 14's `USING (…) AS u`) names every relation inside it.
    fn join(&mut self, body: &Obj, ctx: Ctx) {
        let start = self.scopes.mark();
        for side in ["larg", "rarg"] {
            if let Some(s) = body.get(side) {
                self.range_item(s, ctx);
            }
        }
        let natural = body
            .get("is_natural")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        for column in string_list(body.get("using_clause")) {
            self.scopes.using(start, &column, &mut self.facts);
        }
        if natural {
            for item in self.scopes.since(start) {
                scope::every(item, &mut self.facts);
            }
        }
        for alias in ["alias", "join_using_alias"] {
            if let Some(name) = alias_name_in(body.get(alias)) {
                let renames = natural || renames_columns(body.get(alias));
                let item = self.scopes.join_item(start, name, renames);
                self.scopes.add(item);
            }
        }
        self.visit_except(body, &["larg", "rarg"], ctx);
    }

    /// The target of INSERT/UPDATE/DELETE/MERGE: recorded as a write and put in scope.
    fn target(&mut self, body: &Obj, action: Kind) -> Option<usize> {
        let rel_obj = body.get("relation").and_then(Value::as_object)?;
        let rel = relation_name(rel_obj);
        let name = alias_name(rel_obj).unwrap_or_else(|| rel.name.clone());
        let idx = self.record(rel, action, Columns::None);
        self.scopes.add(ScopeItem {
            name,
            accesses: vec![idx],
            every_column: false,
        });
        Some(idx)
    }

    fn returning(&mut self, body: &Obj, target: Option<usize>, ctx: Ctx) {
        let has_returning = body
            .get("returning_clause")
            .and_then(|r| r.get("exprs").or(Some(r)))
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if has_returning && let Some(idx) = target {
            self.facts.tag(Tag::Returning);
            let rel = self.facts.accesses[idx].relation.clone();
            self.record(rel, ctx.read, Columns::All);
        }
    }

    /// Names of columns assigned by a target list (INSERT columns, UPDATE SET).
    fn assigned_columns(&mut self, list: Option<&Value>, target: Option<usize>) {
        let (Some(items), Some(idx)) = (list.and_then(Value::as_array), target) else {
            return;
        };
        for item in items {
            if let Some(("ResTarget", rt)) = item.as_object().and_then(tagged)
                && let Some(name) = rt.get("name").and_then(Value::as_str)
                && !name.is_empty()
            {
                self.facts.accesses[idx].columns.add(name);
            }
        }
    }

    fn insert(&mut self, body: &Obj, ctx: Ctx) {
        self.with_scope(body, ctx, |w| {
            let target = w.target(body, Kind::Insert);
            match body.get("cols").and_then(Value::as_array) {
                Some(cols) if !cols.is_empty() => w.assigned_columns(body.get("cols"), target),
                _ => {
                    if let Some(idx) = target {
                        w.facts.accesses[idx].columns = Columns::All;
                    }
                }
            }
            if let Some(oc) = body.get("on_conflict_clause").and_then(Value::as_object)
                && !oc
                    .get("target_list")
                    .and_then(Value::as_array)
                    .is_none_or(|a| a.is_empty())
                && let Some(idx) = target
            {
                let rel = w.facts.accesses[idx].relation.clone();
                let upd = w.record(rel, Kind::Update, Columns::None);
                w.assigned_columns(oc.get("target_list"), Some(upd));
            }
            w.returning(body, target, ctx);
            w.visit_except(body, &["with_clause", "relation", "cols"], ctx);
        });
    }

    fn update(&mut self, body: &Obj, ctx: Ctx) {
        self.with_scope(body, ctx, |w| {
            let target = w.target(body, Kind::Update);
            if let Some(from) = body.get("from_clause").and_then(Value::as_array) {
                for item in from {
                    w.range_item(item, ctx);
                }
            }
            w.assigned_columns(body.get("target_list"), target);
            w.count_where(body);
            w.returning(body, target, ctx);
            w.visit_except(body, &["with_clause", "relation", "from_clause"], ctx);
        });
    }

    fn delete(&mut self, body: &Obj, ctx: Ctx) {
        self.with_scope(body, ctx, |w| {
            let target = w.target(body, Kind::Delete);
            if let Some(idx) = target {
                w.facts.accesses[idx].columns = Columns::All;
            }
            if let Some(using) = body.get("using_clause").and_then(Value::as_array) {
                for item in using {
                    w.range_item(item, ctx);
                }
            }
            w.count_where(body);
            w.returning(body, target, ctx);
            w.visit_except(body, &["with_clause", "relation", "using_clause"], ctx);
        });
    }

    fn merge(&mut self, body: &Obj, ctx: Ctx) {
        self.with_scope(body, ctx, |w| {
            let target = w.target(body, Kind::Merge);
            if let Some(idx) = target {
                w.facts.accesses[idx].columns = Columns::All;
            }
            if let Some(src) = body.get("source_relation") {
                w.range_item(src, ctx);
            }
            w.returning(body, target, ctx);
            w.visit_except(body, &["with_clause", "relation", "source_relation"], ctx);
        });
    }

    fn count_where(&mut self, body: &Obj) {
        self.dml_where.0 += 1;
        if has(body, "where_clause") {
            self.dml_where.1 += 1;
        }
    }

    fn copy(&mut self, body: &Obj) {
        let from = body
            .get("is_from")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let action = if from { Kind::CopyIn } else { Kind::CopyOut };
        let file = body
            .get("filename")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty())
            .map(str::to_string);
        let program = body
            .get("is_program")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.facts.literal_sensitive |= file.is_some();
        self.facts.copy = Some(CopyFacts {
            from,
            program: if program { file.clone() } else { None },
            file: if program { None } else { file },
        });
        if let Some(rel) = body.get("relation").and_then(Value::as_object) {
            let attlist = string_list(body.get("attlist"));
            let columns = if attlist.is_empty() {
                Columns::All
            } else {
                let mut c = Columns::None;
                for a in &attlist {
                    c.add(a);
                }
                c
            };
            self.record(relation_name(rel), action, columns);
        }
        let read = if from { Kind::Select } else { Kind::CopyOut };
        self.visit_except(body, &["relation"], Ctx { read });
    }

    fn explain(&mut self, body: &Obj) {
        let analyze = body
            .get("options")
            .and_then(Value::as_array)
            .map(|opts| {
                opts.iter().any(|o| {
                    let Some(("DefElem", d)) = o.as_object().and_then(tagged) else {
                        return false;
                    };
                    d.get("defname").and_then(Value::as_str) == Some("analyze")
                        && !matches!(
                            d.get("arg").and_then(set_arg_value).as_deref(),
                            Some("false" | "off" | "0")
                        )
                })
            })
            .unwrap_or(false);
        let was = self.explain_only;
        if analyze {
            self.facts.tag(Tag::ExplainAnalyze);
        } else {
            self.explain_only = true;
        }
        if let Some(q) = body
            .get("query")
            .and_then(Value::as_object)
            .and_then(tagged)
        {
            self.statement(q.0, q.1, Ctx { read: Kind::Select });
        }
        self.explain_only = was;
    }

    fn drop(&mut self, body: &Obj) {
        use pg_query::protobuf::ObjectType as O;
        let remove_type = body.get("remove_type").and_then(Value::as_i64).unwrap_or(0) as i32;
        let relation_like = [
            O::ObjectTable,
            O::ObjectView,
            O::ObjectMatview,
            O::ObjectIndex,
            O::ObjectSequence,
            O::ObjectForeignTable,
        ]
        .iter()
        .any(|t| *t as i32 == remove_type);
        if relation_like && let Some(objects) = body.get("objects").and_then(Value::as_array) {
            for o in objects {
                let names = match o.as_object().and_then(tagged) {
                    Some(("List", l)) => string_list(l.get("items")),
                    _ => Vec::new(),
                };
                if let Some(rel) = qualified_name(&names) {
                    self.record(rel, Kind::Ddl, Columns::All);
                }
            }
        }
        if remove_type == O::ObjectDatabase as i32 {
            self.facts.tag(Tag::DropDatabase);
        }
        self.visit_except(body, &["objects"], Ctx { read: Kind::Ddl });
    }

    /// `COMMENT ON` and `SECURITY LABEL ON` a relation, one of its columns, or something
    /// defined on it (a constraint, trigger, rule or policy): the relation is defined on.
    fn commented(&mut self, body: &Obj) {
        use pg_query::protobuf::ObjectType as O;
        let objtype = body.get("objtype").and_then(Value::as_i64).unwrap_or(0) as i32;
        let is = |types: &[O]| types.iter().any(|t| *t as i32 == objtype);
        let names = match body
            .get("object")
            .and_then(Value::as_object)
            .and_then(tagged)
        {
            Some(("List", l)) => string_list(l.get("items")),
            _ => return,
        };
        let relation = if is(&[
            O::ObjectTable,
            O::ObjectView,
            O::ObjectMatview,
            O::ObjectIndex,
            O::ObjectSequence,
            O::ObjectForeignTable,
        ]) {
            &names[..]
        } else if is(&[
            O::ObjectColumn,
            O::ObjectTabconstraint,
            O::ObjectTrigger,
            O::ObjectRule,
            O::ObjectPolicy,
        ]) {
            &names[..names.len().saturating_sub(1)]
        } else {
            return;
        };
        if let Some(rel) = qualified_name(relation) {
            self.record(rel, Kind::Ddl, Columns::All);
        }
    }

    fn variable_set(&mut self, body: &Obj) {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let args: Vec<String> = body
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(set_arg).collect())
            .unwrap_or_default();
        // VAR_SET_VALUE = 1; RESET and DEFAULT leave no value.
        let is_set_value = body.get("kind").and_then(Value::as_i64) == Some(1);
        let value = is_set_value.then(|| args.first().cloned()).flatten();
        self.facts.literal_sensitive = true;
        let change = match name.as_str() {
            "role" => SessionChange::Role(value.filter(|v| v != "none")),
            "session_authorization" => SessionChange::SessionAuthorization(value),
            "search_path" => {
                SessionChange::SearchPath(Some(if is_set_value { args } else { Vec::new() }))
            }
            "" => SessionChange::Setting("*".into()),
            other => SessionChange::Setting(other.to_string()),
        };
        self.facts.session.push(change);
    }

    fn func_call(&mut self, body: &Obj, ctx: Ctx) {
        let parts = string_list(body.get("funcname"));
        let (schema, name) = match parts.as_slice() {
            [] => (None, String::new()),
            [name] => (None, name.clone()),
            [.., schema, name] => (Some(schema.clone()), name.clone()),
        };
        let classes = functions::classify(&name);
        if !classes.is_empty() {
            self.facts.literal_sensitive = true;
        }
        if name == "set_config" {
            let args = body.get("args").and_then(Value::as_array);
            let setting = args
                .and_then(|a| a.first())
                .and_then(string_const)
                .map(|s| s.to_ascii_lowercase());
            let value = args.and_then(|a| a.get(1)).and_then(string_const);
            self.facts.session.push(match setting.as_deref() {
                Some("role") => SessionChange::Role(value),
                Some("session_authorization") => SessionChange::SessionAuthorization(value),
                Some("search_path") => SessionChange::SearchPath(value.map(|v| {
                    v.split(',')
                        .map(|s| s.trim().trim_matches('"').to_string())
                        .collect()
                })),
                Some(other) => SessionChange::Setting(other.to_string()),
                // A name computed at run time could be anything, including `role`.
                None => SessionChange::Setting("?".into()),
            });
        }
        if let Some(args) = body.get("args").and_then(Value::as_array) {
            for (position, arg) in args.iter().enumerate() {
                if let Some(value) = plain_string(arg) {
                    let n = super::facts::NameArgument {
                        function: name.clone(),
                        position,
                        value,
                    };
                    if !self.facts.name_arguments.contains(&n) {
                        self.facts.name_arguments.push(n);
                    }
                }
            }
        }
        self.function_with(schema, name, classes);
        self.visit_except(body, &["funcname"], ctx);
    }

    /// Records the operator a (possibly qualified) name list names.
    fn operators(&mut self, name: Option<&Value>) {
        if let Some(op) = string_list(name).pop() {
            self.facts.operators.insert(op);
        }
    }

    /// Records a call of a function the statement names without a FuncCall node.
    fn function(&mut self, schema: Option<String>, name: String) {
        let classes = functions::classify(&name);
        self.function_with(schema, name, classes);
    }

    fn function_with(
        &mut self,
        schema: Option<String>,
        name: String,
        classes: std::collections::BTreeSet<super::facts::FunctionClass>,
    ) {
        let f = FunctionRef {
            schema,
            name,
            classes,
        };
        if !self.facts.functions.contains(&f) {
            self.facts.functions.push(f);
        }
    }

    fn column_ref(&mut self, body: &Obj) {
        let fields: Vec<Option<String>> = body
            .get("fields")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|i| match i.as_object().and_then(tagged) {
                        Some(("String", s)) => {
                            s.get("sval").and_then(Value::as_str).map(str::to_string)
                        }
                        _ => None, // A_Star
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.scopes.column_ref(&fields, &mut self.facts);
    }
}

impl Walker {
    /// Walks the statement rooted at `node`.
    pub(super) fn run(&mut self, node: &str, body: &Obj) {
        self.statement(node, body, Ctx { read: Kind::Select });
    }
}
