//! The differential oracle: what the PostgreSQL server itself says a statement touches,
//! compared with the analyser's facts (`portcullis_sql::analysis::Facts`).
//!
//! **Reads and writes (DML).** For a statement S the server is asked, on a direct
//! connection to the harness's cluster and inside a transaction that is rolled back (a
//! savepoint when the session is already in one), to create `pg_temp.portcullis_oracle()`
//! as `LANGUAGE sql BEGIN ATOMIC S; END`. A `BEGIN ATOMIC` body is parse-analysed at
//! creation, so the server resolves every name in S exactly as it would to run it, before
//! rewriting (views are not expanded, rules and triggers do not run: nothing S does not
//! itself name is counted). Two records of that analysis are read back
//! (`portcullis_oracle.deps()`, created by [`DDL_SETUP`]):
//! - `pg_depend` rows of the function: one per column a Var references (join alias Vars
//!   resolved to the join's inputs), a relation-level row (`refobjsubid = 0`) for a
//!   relation referenced with no column (`count(*)`, a DELETE target, a whole-row
//!   reference), the target columns of INSERT and UPDATE. PostgreSQL records no
//!   dependency on pinned objects (the bootstrap catalogs and built-in functions), so:
//! - the stored tree itself (`pg_proc.prosqlbody`): every range-table entry of a plain
//!   relation (`:rtekind 0 :relid N`, pinned catalogs included), every `regclass`,
//!   `regproc` and `regprocedure` constant, and every function the tree calls
//!   (`FUNCEXPR` with its `funcformat`, `AGGREF`, `WINDOWFUNC`, a TABLESAMPLE method).
//!   Column references to pinned catalogs are not recorded anywhere, so for those only
//!   the relation is checked.
//!
//! Statements a body refuses (utility statements), statements with `$n` parameters,
//! statements the server rejects and statements that name nothing (no relation, column,
//! function or `reg*` cast: [`names_nothing`]) are skipped, by reason. Wrappers are
//! unwrapped: EXPLAIN, DECLARE CURSOR, PREPARE (without parameter types), CREATE TABLE
//! AS, SELECT INTO, CREATE [MATERIALIZED] VIEW and COPY (query) are checked with their
//! query, deparsed, against the facts of the whole statement.
//!
//! **A miss** is a relation the server references (a range-table entry, a `regclass`
//! constant, a `pg_depend` row) that no access in the facts names (unqualified names
//! match any schema, `pg_temp` matches the session's temporary schema; a string passed
//! to a function counts when `facts.name_arguments` holds it, which the policy layer
//! resolves through the catalog's `regclass` parameters), a column of a relation in a
//! range table that no access to it lists (`Columns::All` lists every column; a
//! relation-level reference needs only the relation), or a function the tree calls that
//! neither `facts.functions` names (by name, any schema) nor `facts.row_calls` (a `t.f`
//! that the policy layer decides as the call `f(t)` when t has no column f). Not required,
//! and
//! counted apart, with the reason each can't be named from the statement's text:
//! - cast functions (`funcformat` 1 and 2: `::`, `CAST`, implicit coercions): chosen by
//!   type resolution, which needs the catalog;
//! - functions called for a default argument (found in `proargdefaults` of a function the
//!   statement calls): the function's definition names them, not the statement;
//! - `regproc`/`regprocedure` constants: they name a function without calling it;
//! - a relation's row type (a column of a function's `SETOF customers` result, of a
//!   composite column, of `NULL::t`), which `pg_depend` records as the type relation's
//!   columns though no range table reads it, and composite types (`relkind = 'c'`), which
//!   have no rows; when a statement both reads a relation and uses its row type, the
//!   relation's column rows are ambiguous and not required (the relation is);
//! - the columns of an `INSERT … ON CONFLICT DO UPDATE` target: the EXCLUDED row's
//!   target list records every column of the target whether the statement reads it or not.
//!
//! **DDL.** Event triggers installed by [`DDL_SETUP`] log every relation a DDL command
//! created or altered (`ddl_command_end`, with triggers, constraints, rules, policies,
//! defaults and extended statistics mapped to their table) and every relation it dropped
//! (`sql_drop`), when the statement really runs (the regression replay) or runs in a
//! transaction that is rolled back (the project's cases). Each must be named by the
//! facts, or by a name the statement gives it (`RENAME TO`, `SET SCHEMA`). Implicit
//! objects count as named when what they belong to is named: an index by its table, a
//! sequence owned by a column by its table, a TOAST table by its table. Not required,
//! and counted: objects dropped only because they depended on a dropped object; commands
//! a function, procedure or DO block ran (seen in `PG_CONTEXT`); changes that recursed to
//! inheritance children and partitions of a named table; tables of a type `ALTER TYPE …
//! CASCADE` changed; statistics objects named by their own name; and what DROP OWNED,
//! REASSIGN OWNED and ALTER TABLE ALL IN TABLESPACE reach through a role or tablespace.
//!
//! `pg_stat_xact_user_tables` is not used: it counts the tables that views, rules and
//! triggers reach, which the statement does not name, while parse analysis records
//! exactly what the statement itself resolved.

pub mod generate;
pub mod script;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use portcullis_sql::analysis::{Columns, Facts};
use portcullis_sql::{LexerOptions, ParsedStatement};
use tokio_postgres::{Client, SimpleQueryMessage};

/// How the analysed statement refers to a relation, from its stored parse tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// A range-table entry: the statement reads or writes the relation.
    RangeTable,
    /// A `regclass` (or `regproc`/`regprocedure`) constant: a name in a literal.
    Constant,
    /// Neither: the relation's row type, through a function's result, a composite
    /// column or a cast.
    RowType,
    /// A function called for a default argument of a function the statement calls.
    DefaultArgument,
    /// A column of a relation whose row type the statement also uses (a function's
    /// `SETOF t` result, a whole-row value): the column may be the row type's, not read.
    RowTypeToo,
}

/// A relation (or one of its columns) the server references.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelRef {
    pub schema: String,
    pub name: String,
    /// `0` for the relation itself; negative for system columns.
    pub attnum: i32,
    pub attname: String,
    pub relkind: String,
    pub via: Via,
}

/// A function the server resolved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FuncRef {
    pub schema: String,
    pub name: String,
    /// The function implements a cast (`pg_cast.castfunc`).
    pub cast: bool,
    /// Called (`RangeTable`), or only named by a `regproc`/`regprocedure` constant.
    pub via: Via,
}

/// What the server says one statement references.
#[derive(Debug, Clone, Default)]
pub struct ServerRefs {
    pub relations: Vec<RelRef>,
    pub functions: Vec<FuncRef>,
}

/// A relation a DDL statement created, altered or dropped, from the event triggers.
#[derive(Debug, Clone)]
pub struct DdlRef {
    /// `command` (ddl_command_end) or `drop` (sql_drop); `error` when the trigger failed.
    pub source: String,
    pub tag: String,
    pub schema: String,
    pub name: String,
    /// `relkind` for commands, the object type for drops.
    pub kind: String,
    /// What an implicit object belongs to (an index's table, an owned sequence's table).
    pub owner: Option<(String, String)>,
    /// For drops: named by the statement rather than dropped by dependency.
    pub original: bool,
    /// Run by a function, procedure or DO block, not by the statement itself.
    pub nested: bool,
    /// The tables the relation inherits from or is a partition of.
    pub ancestors: Vec<String>,
    /// The catalog of the object the command reported (`pg_class`, `pg_trigger`, …).
    pub via: String,
}

/// Why a statement was not checked.
pub type Skip = String;

/// What the facts lack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Misses {
    pub relations: Vec<String>,
    pub columns: Vec<String>,
    pub functions: Vec<String>,
    /// References the facts need not name, by reason (see the module documentation).
    pub not_required: BTreeMap<&'static str, usize>,
}

impl Misses {
    pub fn is_empty(&self) -> bool {
        self.relations.is_empty() && self.columns.is_empty() && self.functions.is_empty()
    }

    /// One line: what the server touched that the facts lack.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if !self.relations.is_empty() {
            let _ = write!(s, "relations {:?} ", self.relations);
        }
        if !self.columns.is_empty() {
            let _ = write!(s, "columns {:?} ", self.columns);
        }
        if !self.functions.is_empty() {
            let _ = write!(s, "functions {:?}", self.functions);
        }
        s.trim_end().to_string()
    }
}

/// Does the facts' relation name stand for the server's `schema.name`?
pub fn same_relation(
    facts_schema: Option<&str>,
    facts_name: &str,
    schema: &str,
    name: &str,
) -> bool {
    if facts_name != name {
        return false;
    }
    match facts_schema {
        None => true,
        Some(s) => {
            s == schema
                || (s == "pg_temp" && (schema == "pg_temp" || schema.starts_with("pg_temp_")))
                || (schema == "pg_temp" && s.starts_with("pg_temp_"))
        }
    }
}

fn accesses_to<'a>(
    facts: &'a Facts,
    schema: &'a str,
    name: &'a str,
) -> impl Iterator<Item = &'a portcullis_sql::analysis::Access> + 'a {
    facts.accesses.iter().filter(move |a| {
        same_relation(a.relation.schema.as_deref(), &a.relation.name, schema, name)
    })
}

/// Whether the facts name the relation `schema.name` at all.
pub fn names_relation(facts: &Facts, schema: &str, name: &str) -> bool {
    accesses_to(facts, schema, name).next().is_some()
}

/// Why a reference the facts lack is not a miss: row types are used as types, not read
/// (a function returning `SETOF customers` reads what its body reads, and the statement
/// names the function); a composite type (`relkind = 'c'`) has no rows; a
/// `regproc`/`regprocedure` constant names a function without calling it; cast functions
/// are chosen by type resolution, which the statement's text does not name.
pub const ROW_TYPE: &str = "row types";
pub const COMPOSITE_TYPE: &str = "composite types";
pub const REGPROC_CONSTANT: &str = "regproc constants";
pub const CAST_FUNCTION: &str = "cast functions";
pub const DEFAULT_ARGUMENT: &str = "default arguments";
pub const ROW_TYPE_TOO: &str = "columns of a row type also used as such";
/// `INSERT … ON CONFLICT DO UPDATE` records a dependency on every column of the target:
/// the EXCLUDED row's target list lists them all, whether the statement reads them or
/// not, so the target's columns are not required (the relation is).
pub const CONFLICT_TARGET: &str = "ON CONFLICT DO UPDATE target columns";

/// The targets of `INSERT … ON CONFLICT DO UPDATE` anywhere in the statement.
fn conflict_update_targets(statement: &ParsedStatement) -> Vec<(Option<String>, String)> {
    use pg_query::NodeRef as R;
    use pg_query::protobuf::OnConflictAction;
    let Some(root) = statement.root() else {
        return Vec::new();
    };
    root.nodes()
        .into_iter()
        .filter_map(|(node, ..)| match node {
            R::InsertStmt(i)
                if i.on_conflict_clause
                    .as_ref()
                    .is_some_and(|c| c.action == OnConflictAction::OnconflictUpdate as i32) =>
            {
                i.relation.as_ref().map(|rv| {
                    (
                        (!rv.schemaname.is_empty()).then(|| rv.schemaname.clone()),
                        rv.relname.clone(),
                    )
                })
            }
            _ => None,
        })
        .collect()
}

/// The server's references that the facts of `statement` lack.
pub fn compare(statement: &ParsedStatement, refs: &ServerRefs) -> Misses {
    let facts = &statement.facts;
    let conflict_targets = conflict_update_targets(statement);
    let mut m = Misses::default();
    for r in &refs.relations {
        // The session's temporary schema is numbered by its backend slot: print it as
        // pg_temp, so that the listing is the same in every run.
        let schema = if r.schema.starts_with("pg_temp_") {
            "pg_temp"
        } else {
            r.schema.as_str()
        };
        let qualified = format!("{schema}.{}", r.name);
        let mut any = false;
        let mut has_column = false;
        for a in accesses_to(facts, &r.schema, &r.name) {
            any = true;
            has_column |= match &a.columns {
                Columns::All => true,
                Columns::Some(set) => set.contains(&r.attname),
                Columns::None => false,
            };
        }
        let reason = if r.relkind == "c" {
            Some(COMPOSITE_TYPE)
        } else if r.via == Via::RowType {
            Some(ROW_TYPE)
        } else if r.via == Via::RowTypeToo {
            Some(ROW_TYPE_TOO)
        } else if conflict_targets
            .iter()
            .any(|(s, n)| same_relation(s.as_deref(), n, &r.schema, &r.name))
        {
            Some(CONFLICT_TARGET)
        } else {
            None
        };
        // A string passed to a function names this relation where the function takes a
        // regclass: the policy layer resolves it with the catalog's argument types.
        if !any
            && r.via == Via::Constant
            && facts.name_arguments.iter().any(|n| {
                portcullis_sql::analysis::regclass_relation(&n.value).is_some_and(|rel| {
                    same_relation(rel.schema.as_deref(), &rel.name, &r.schema, &r.name)
                })
            })
        {
            continue;
        }
        if !any {
            if let Some(reason) = reason {
                *m.not_required.entry(reason).or_default() += 1;
                continue;
            }
            let what = match r.via {
                Via::Constant => format!("{qualified} (regclass constant)"),
                _ => qualified,
            };
            if !m.relations.contains(&what) {
                m.relations.push(what);
            }
        } else if r.attnum != 0 && !has_column {
            if let Some(reason) = reason {
                *m.not_required.entry(reason).or_default() += 1;
                continue;
            }
            m.columns.push(format!("{qualified}.{}", r.attname));
        }
    }
    for f in &refs.functions {
        // A `t.f` the facts record may be the call f(t) (functional notation), which the
        // policy layer decides as a call when the catalog says t has no column f.
        if facts.functions.iter().any(|g| g.name == f.name)
            || facts.row_calls.iter().any(|r| r.name == f.name)
        {
            continue;
        }
        if f.cast {
            *m.not_required.entry(CAST_FUNCTION).or_default() += 1;
            continue;
        }
        if f.via == Via::Constant {
            *m.not_required.entry(REGPROC_CONSTANT).or_default() += 1;
            continue;
        }
        if f.via == Via::DefaultArgument {
            *m.not_required.entry(DEFAULT_ARGUMENT).or_default() += 1;
            continue;
        }
        let q = format!("{}.{}", f.schema, f.name);
        if !m.functions.contains(&q) {
            m.functions.push(q);
        }
    }
    m
}

/// DDL objects the facts need not name: objects dropped because they depended on what
/// the statement dropped (CASCADE, or a table's own indexes and sequences), and the
/// relations a statement reaches through a role or tablespace it names (DROP OWNED,
/// REASSIGN OWNED, ALTER TABLE ALL IN TABLESPACE), which no parse tree can list.
pub const CASCADED_DROP: &str = "cascaded drops";
pub const THROUGH_ROLE_OR_TABLESPACE: &str = "relations of a role or tablespace";
/// Commands a function, procedure or DO block ran (the event trigger fires for those too):
/// the statement names the routine, not what its body does.
pub const NESTED_COMMAND: &str = "commands run by routines";
/// A column or constraint change that recursed from a named table to the tables that
/// inherit from it or are its partitions.
pub const INHERITANCE: &str = "inheritance children";
/// Extended statistics are objects of their own (`ALTER STATISTICS s`), named by their
/// own name; the table they are on is not named.
pub const STATISTICS_OBJECT: &str = "statistics objects";
/// `ALTER TYPE … CASCADE` changes the tables typed with or using the named type.
pub const TYPED_TABLE: &str = "tables of an altered type";

/// Names a statement gives a relation it renames or moves, as `(schema, name)`.
fn new_names(statement: &ParsedStatement) -> Vec<(Option<String>, String)> {
    use pg_query::NodeEnum as N;
    use pg_query::protobuf::ObjectType as O;
    let relation_like = |t: i32| {
        [
            O::ObjectTable,
            O::ObjectIndex,
            O::ObjectSequence,
            O::ObjectView,
            O::ObjectMatview,
            O::ObjectForeignTable,
        ]
        .iter()
        .any(|o| *o as i32 == t)
    };
    let schema = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match statement.root() {
        Some(N::RenameStmt(r)) if relation_like(r.rename_type) => r
            .relation
            .as_ref()
            .map(|rv| vec![(schema(&rv.schemaname), r.newname.clone())])
            .unwrap_or_default(),
        Some(N::AlterObjectSchemaStmt(a)) if relation_like(a.object_type) => a
            .relation
            .as_ref()
            .map(|rv| vec![(Some(a.newschema.clone()), rv.relname.clone())])
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// The DDL references that the facts of `statements` (one psql statement) lack, and
/// those not required by reason.
pub fn compare_ddl(
    statements: &[ParsedStatement],
    refs: &[DdlRef],
) -> (Vec<String>, BTreeMap<&'static str, usize>) {
    use pg_query::NodeEnum as N;
    let mut missing = Vec::new();
    let mut not_required = BTreeMap::new();
    let renamed: Vec<(Option<String>, String)> = statements.iter().flat_map(new_names).collect();
    let through_owner = statements.iter().any(|s| {
        matches!(
            s.root(),
            Some(N::DropOwnedStmt(_) | N::ReassignOwnedStmt(_) | N::AlterTableMoveAllStmt(_))
        )
    });
    let named = |schema: &str, name: &str| {
        statements
            .iter()
            .any(|s| names_relation(&s.facts, schema, name))
            || renamed
                .iter()
                .any(|(s, n)| same_relation(s.as_deref(), n, schema, name))
    };
    for r in refs {
        if r.source == "error" {
            missing.push(format!("event trigger failed: {}", r.tag));
            continue;
        }
        if r.nested {
            *not_required.entry(NESTED_COMMAND).or_default() += 1;
            continue;
        }
        if r.source == "drop" && !r.original {
            *not_required.entry(CASCADED_DROP).or_default() += 1;
            continue;
        }
        if named(&r.schema, &r.name) {
            continue;
        }
        if let Some((s, n)) = &r.owner
            && named(s, n)
        {
            continue;
        }
        if r.ancestors
            .iter()
            .any(|a| a.split_once('.').is_some_and(|(s, n)| named(s, n)))
        {
            *not_required.entry(INHERITANCE).or_default() += 1;
            continue;
        }
        if r.via == "pg_statistic_ext" {
            *not_required.entry(STATISTICS_OBJECT).or_default() += 1;
            continue;
        }
        if r.tag == "ALTER TYPE" && r.kind != "c" {
            *not_required.entry(TYPED_TABLE).or_default() += 1;
            continue;
        }
        if through_owner {
            *not_required.entry(THROUGH_ROLE_OR_TABLESPACE).or_default() += 1;
            continue;
        }
        let schema = if r.schema.starts_with("pg_temp_") {
            "pg_temp"
        } else {
            r.schema.as_str()
        };
        let what = format!("{} {} {schema}.{}", r.tag, r.kind, r.name);
        if !missing.contains(&what) {
            missing.push(what);
        }
    }
    (missing, not_required)
}

/// The query reading the oracle function's dependencies.
/// The query reading the oracle function's dependencies, in a PL/pgSQL function so that
/// each session plans it once ([`DDL_SETUP`] creates it).
const DEPS_SQL: &str = "SELECT * FROM portcullis_oracle.deps()";

/// Event triggers logging the relations DDL commands touch, in schema `portcullis_oracle`;
/// [`take_ddl`] reads and clears the log.
pub const DDL_SETUP: &str = r#"
CREATE SCHEMA portcullis_oracle;
CREATE TABLE portcullis_oracle.log (
  seq bigserial, pid int DEFAULT pg_catalog.pg_backend_pid(), source text, tag text,
  schema_name text, object_name text, kind text, owner_schema text, owner_name text,
  original bool, nested bool, ancestors text, via text);
-- Whether the event trigger fires for a command run by a function, procedure or DO block
-- (or by the server itself) rather than for the statement the client sent.
CREATE FUNCTION portcullis_oracle.nested(context text) RETURNS bool
LANGUAGE sql IMMUTABLE AS $f$
  SELECT pg_catalog.array_length(pg_catalog.string_to_array(context, E'\n'), 1) > 1
$f$;
-- The tables a relation inherits from or is a partition of, one per line.
CREATE FUNCTION portcullis_oracle.ancestors(rel oid) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $f$
  WITH RECURSIVE up(oid) AS (
    SELECT inhparent FROM pg_inherits WHERE inhrelid = rel
    UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.oid)
  SELECT string_agg(n.nspname || '.' || c.relname, E'\n')
    FROM up JOIN pg_class c ON c.oid = up.oid JOIN pg_namespace n ON n.oid = c.relnamespace
$f$;
CREATE FUNCTION portcullis_oracle.on_command_end() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $f$
DECLARE r record; rel oid; context text;
BEGIN
  -- The oracle's own probe function creates no relation.
  IF tg_tag = 'CREATE FUNCTION' THEN RETURN; END IF;
  GET DIAGNOSTICS context = PG_CONTEXT;
  FOR r IN SELECT * FROM pg_event_trigger_ddl_commands() LOOP
    rel := CASE r.classid
      WHEN 'pg_class'::regclass THEN r.objid
      WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = r.objid)
      WHEN 'pg_constraint'::regclass THEN (SELECT nullif(conrelid, 0) FROM pg_constraint WHERE oid = r.objid)
      WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = r.objid)
      WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = r.objid)
      WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = r.objid)
      WHEN 'pg_statistic_ext'::regclass THEN (SELECT stxrelid FROM pg_statistic_ext WHERE oid = r.objid)
    END;
    CONTINUE WHEN rel IS NULL;
    INSERT INTO portcullis_oracle.log (source, tag, schema_name, object_name, kind, owner_schema,
                                       owner_name, original, nested, ancestors, via)
    SELECT 'command', r.command_tag, n.nspname, c.relname, c.relkind::text, owner_n.nspname,
           owner_c.relname, true, portcullis_oracle.nested(context),
           portcullis_oracle.ancestors(c.oid), r.classid::regclass::text
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_class owner_c ON owner_c.oid = CASE
           WHEN c.relkind IN ('i', 'I') THEN (SELECT indrelid FROM pg_index WHERE indexrelid = c.oid)
           WHEN c.relkind = 'S' THEN (SELECT refobjid FROM pg_depend WHERE classid = 'pg_class'::regclass
                AND objid = c.oid AND refclassid = 'pg_class'::regclass AND deptype IN ('a', 'i') LIMIT 1)
           WHEN c.relkind = 't' THEN (SELECT oid FROM pg_class WHERE reltoastrelid = c.oid LIMIT 1)
           END
      LEFT JOIN pg_namespace owner_n ON owner_n.oid = owner_c.relnamespace
     WHERE c.oid = rel;
  END LOOP;
EXCEPTION WHEN OTHERS THEN
  INSERT INTO portcullis_oracle.log (source, tag) VALUES ('error', SQLERRM);
END $f$;
CREATE FUNCTION portcullis_oracle.on_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $f$
DECLARE context text;
BEGIN
  GET DIAGNOSTICS context = PG_CONTEXT;
  INSERT INTO portcullis_oracle.log (source, tag, schema_name, object_name, kind, original,
                                     nested, ancestors, via)
  SELECT 'drop', tg_tag, d.address_names[1], d.address_names[2], d.object_type, d.original,
         portcullis_oracle.nested(context),
         portcullis_oracle.ancestors(to_regclass(quote_ident(d.address_names[1]) || '.'
                                                 || quote_ident(d.address_names[2]))),
         'pg_class'
    FROM pg_event_trigger_dropped_objects() d
   WHERE d.classid = 'pg_class'::regclass AND d.object_type <> 'toast table';
EXCEPTION WHEN OTHERS THEN
  INSERT INTO portcullis_oracle.log (source, tag) VALUES ('error', SQLERRM);
END $f$;
CREATE FUNCTION portcullis_oracle.take() RETURNS SETOF portcullis_oracle.log
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $f$
  DELETE FROM portcullis_oracle.log WHERE pid = pg_backend_pid() RETURNING *
$f$;
CREATE FUNCTION portcullis_oracle.deps()
RETURNS TABLE (oracle_1 text, oracle_2 text, oracle_3 text, oracle_4 text, oracle_5 text, oracle_6 text, oracle_7 text, oracle_8 text)
LANGUAGE plpgsql STABLE SET jit = off SET search_path = pg_catalog, pg_temp AS $f$
BEGIN
  RETURN QUERY
  WITH f AS MATERIALIZED (
    SELECT p.oid, p.prosqlbody::text AS body FROM pg_proc p
     WHERE p.proname = 'portcullis_oracle' AND p.pronamespace = pg_my_temp_schema()),
  d AS MATERIALIZED (
    SELECT d.refclassid, d.refobjid, d.refobjsubid FROM f, pg_depend d
     WHERE d.classid = 'pg_proc'::regclass AND d.objid = f.oid),
  -- Range-table entries of plain relations, at any level of the stored tree.
  rt AS MATERIALIZED (
    SELECT DISTINCT m[1]::oid AS relid FROM f,
           regexp_matches(f.body, ':rtekind 0 :relid ([0-9]+)', 'g') m),
  -- regproc (24), regprocedure (2202) and regclass (2205) constants.
  k AS MATERIALIZED (
    SELECT DISTINCT m[1]::oid AS typ,
           -- outDatum prints the bytes as signed chars, little-endian here.
           ((m[2]::int8 + 256) % 256 + (m[3]::int8 + 256) % 256 * 256
            + (m[4]::int8 + 256) % 256 * 65536 + (m[5]::int8 + 256) % 256 * 16777216)::oid AS val
      FROM f, regexp_matches(f.body, ':consttype (24|2202|2205) :consttypmod -?[0-9]+ :constcollid [0-9]+ :constlen 4 :constbyval true :constisnull false :location -?[0-9]+ :constvalue 4 [[] (-?[0-9]+) (-?[0-9]+) (-?[0-9]+) (-?[0-9]+)', 'g') m),
  -- Functions the tree calls, with how (CoercionForm: 0 call, 1 explicit cast,
  -- 2 implicit cast, 3 SQL syntax); aggregates, window functions and TABLESAMPLE
  -- methods are called by name.
  x AS MATERIALIZED (
    SELECT m[1]::oid AS oid, min(m[2]) AS format FROM f,
           regexp_matches(f.body, '[{]FUNCEXPR :funcid ([0-9]+) :funcresulttype [0-9]+ :funcretset [a-z]+ :funcvariadic [a-z]+ :funcformat ([0-9])', 'g') m
     GROUP BY 1
    UNION
    SELECT m[1]::oid, '0' FROM f, regexp_matches(f.body, '[{](?:AGGREF :aggfnoid|WINDOWFUNC :winfnoid|TABLESAMPLECLAUSE :tsmhandler) ([0-9]+)', 'g') m),
  defaults AS (
    SELECT coalesce(string_agg(q.proargdefaults::text, ' '), '') AS t
      FROM pg_proc q WHERE q.oid IN (SELECT oid FROM x) AND q.proargdefaults IS NOT NULL)
  -- The eighth column says whether the tree also uses the relation's row type (a
  -- function's result, a whole-row or composite value): then its column rows may come
  -- from that use rather than from a range table.
  SELECT 'r', n.nspname::text, c.relname::text, d.refobjsubid::text, coalesce(a.attname::text, ''),
         c.oid::text, c.relkind::text,
         (position(':funcresulttype ' || c.reltype || ' ' IN f.body) > 0
          OR position(':vartype ' || c.reltype || ' ' IN f.body) > 0
          OR position(':consttype ' || c.reltype || ' ' IN f.body) > 0
          OR position(':resulttype ' || c.reltype || ' ' IN f.body) > 0)::text
    FROM f, d
    JOIN pg_class c ON c.oid = d.refobjid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid AND d.refobjsubid <> 0
   WHERE d.refclassid = 'pg_class'::regclass
  UNION ALL
  SELECT 't', n.nspname::text, c.relname::text, '', '', c.oid::text, c.relkind::text, ''
    FROM rt JOIN pg_class c ON c.oid = rt.relid JOIN pg_namespace n ON n.oid = c.relnamespace
  UNION ALL
  SELECT 'c', n.nspname::text, c.relname::text, '', '', c.oid::text, c.relkind::text, ''
    FROM k JOIN pg_class c ON c.oid = k.val JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE k.typ = 2205
  UNION ALL
  SELECT 'p', n.nspname::text, p.proname::text, '', '', p.oid::text, '', ''
    FROM k JOIN pg_proc p ON p.oid = k.val JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE k.typ IN (24, 2202)
  UNION ALL
  SELECT 'f', n.nspname::text, p.proname::text, '', '', p.oid::text, '', ''
    FROM d JOIN pg_proc p ON p.oid = d.refobjid JOIN pg_namespace n ON n.oid = p.pronamespace
   WHERE d.refclassid = 'pg_proc'::regclass
  UNION ALL
  SELECT 'x', n.nspname::text, p.proname::text, x.format,
         (position(':funcid ' || p.oid || ' ' IN defaults.t) > 0)::text, p.oid::text,
         (EXISTS (SELECT FROM pg_cast c WHERE c.castfunc = p.oid))::text, ''
    FROM x JOIN pg_proc p ON p.oid = x.oid JOIN pg_namespace n ON n.oid = p.pronamespace, defaults;
END $f$;
GRANT USAGE ON SCHEMA portcullis_oracle TO PUBLIC;
CREATE EVENT TRIGGER portcullis_oracle_command_end ON ddl_command_end
  EXECUTE FUNCTION portcullis_oracle.on_command_end();
CREATE EVENT TRIGGER portcullis_oracle_drop ON sql_drop
  EXECUTE FUNCTION portcullis_oracle.on_drop();
"#;

/// The SQLSTATE of a server error, or a description of another failure.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.code().code().to_string(),
        None => format!("client: {e}"),
    }
}

fn rows(messages: Vec<SimpleQueryMessage>) -> Vec<Vec<String>> {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Whether the session is in a transaction block: `Ok(true)` with a savepoint
/// `portcullis_oracle` set, `Ok(false)` outside one, `Err` when the block has failed.
async fn savepoint(client: &Client) -> Result<bool, Skip> {
    match client.simple_query("SAVEPOINT portcullis_oracle").await {
        Ok(_) => Ok(true),
        Err(e) => match sqlstate(&e).as_str() {
            "25P01" => Ok(false),
            "25P02" => Err("transaction already failed".into()),
            other => Err(format!("savepoint: {other}")),
        },
    }
}

/// Runs `sql` where it is undone afterwards: in a transaction rolled back, or under a
/// savepoint rolled back when the session is already in a transaction block.
async fn undone(client: &Client, sql: &str) -> Result<Vec<Vec<String>>, Skip> {
    let in_block = savepoint(client).await?;
    if in_block {
        let result = client.simple_query(sql).await;
        client
            .batch_execute(
                "ROLLBACK TO SAVEPOINT portcullis_oracle; RELEASE SAVEPOINT portcullis_oracle",
            )
            .await
            .map_err(|e| format!("rollback to savepoint: {}", sqlstate(&e)))?;
        result.map(rows).map_err(|e| sqlstate(&e))
    } else {
        let result = client
            .simple_query(&format!("BEGIN;\n{sql};\nROLLBACK"))
            .await;
        if result.is_err() {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| format!("rollback: {}", sqlstate(&e)))?;
        }
        result.map(rows).map_err(|e| sqlstate(&e))
    }
}

/// The server's references for `body`, a statement a `BEGIN ATOMIC` body accepts.
pub async fn server_refs(client: &Client, body: &str) -> Result<ServerRefs, Skip> {
    let sql = format!(
        "CREATE FUNCTION pg_temp.portcullis_oracle() RETURNS void LANGUAGE sql BEGIN ATOMIC\n{body}\n;\nEND;\n{DEPS_SQL}"
    );
    let rows = undone(client, &sql)
        .await
        .map_err(|state| format!("server error {state}"))?;
    let rows: Vec<Vec<String>> = rows.into_iter().filter(|r| r.len() == 8).collect();
    let oids = |tag: &str| -> Vec<String> {
        rows.iter()
            .filter(|r| r[0] == tag)
            .map(|r| r[5].clone())
            .collect()
    };
    let range_table = oids("t");
    let regclass = oids("c");
    let regproc = oids("p");
    let called = oids("x");
    let mut refs = ServerRefs::default();
    for r in &rows {
        let rel = |attnum: i32, attname: &str, via: Via| RelRef {
            schema: r[1].clone(),
            name: r[2].clone(),
            attnum,
            attname: attname.to_string(),
            relkind: r[6].clone(),
            via,
        };
        let func = |cast: bool, via: Via| FuncRef {
            schema: r[1].clone(),
            name: r[2].clone(),
            cast,
            via,
        };
        match r[0].as_str() {
            // pg_depend: columns and relations of the body (not pinned catalogs).
            "r" => refs.relations.push(rel(
                r[3].parse().unwrap_or(0),
                &r[4],
                if r[3] != "0" && r[7] == "true" {
                    Via::RowTypeToo
                } else if range_table.contains(&r[5]) {
                    Via::RangeTable
                } else if regclass.contains(&r[5]) {
                    Via::Constant
                } else {
                    Via::RowType
                },
            )),
            // Every relation in a range table, pinned catalogs included.
            "t" => refs.relations.push(rel(0, "", Via::RangeTable)),
            "c" => refs.relations.push(rel(0, "", Via::Constant)),
            "p" if !called.contains(&r[5]) => refs.functions.push(func(false, Via::Constant)),
            // pg_depend names a function the tree does not call: by a route this oracle
            // does not know, so it is required.
            "f" if !called.contains(&r[5]) && !regproc.contains(&r[5]) => {
                refs.functions.push(func(false, Via::RangeTable))
            }
            "x" => {
                let via = if r[4] == "true" {
                    Via::DefaultArgument
                } else {
                    Via::RangeTable
                };
                // CoercionForm 1 and 2: an explicit or implicit cast.
                let cast = matches!(r[3].as_str(), "1" | "2");
                refs.functions.push(func(cast, via));
            }
            _ => {}
        }
    }
    refs.relations.sort();
    refs.functions.sort();
    Ok(refs)
}

/// The query reading and clearing this session's DDL log.
const TAKE_SQL: &str = "SELECT 'portcullis_ddl', source, coalesce(tag, ''), \
    coalesce(schema_name, ''), coalesce(object_name, ''), coalesce(kind, ''), \
    coalesce(owner_schema, ''), coalesce(owner_name, ''), coalesce(original, true)::text, \
    coalesce(nested, false)::text, coalesce(ancestors, ''), coalesce(via, '') \
    FROM portcullis_oracle.take() ORDER BY seq";

fn ddl_refs(rows: Vec<Vec<String>>) -> Vec<DdlRef> {
    rows.into_iter()
        .filter(|r| r.len() == 12 && r[0] == "portcullis_ddl")
        .map(|r| DdlRef {
            source: r[1].clone(),
            tag: r[2].clone(),
            schema: r[3].clone(),
            name: r[4].clone(),
            kind: r[5].clone(),
            owner: (!r[7].is_empty()).then(|| (r[6].clone(), r[7].clone())),
            original: r[8] == "true",
            nested: r[9] == "true",
            ancestors: r[10].lines().map(str::to_string).collect(),
            via: r[11].clone(),
        })
        .collect()
}

/// Reads and clears the DDL log of the event triggers.
pub async fn take_ddl(client: &Client) -> Result<Vec<DdlRef>, Skip> {
    let messages = client
        .simple_query(TAKE_SQL)
        .await
        .map_err(|e| sqlstate(&e))?;
    Ok(ddl_refs(rows(messages)))
}

/// The text to check for a statement with `BEGIN ATOMIC`, or why it cannot be checked.
pub fn dml_body(statement: &ParsedStatement) -> Result<String, Skip> {
    use pg_query::NodeEnum as N;
    let root = statement.root().ok_or_else(|| "empty".to_string())?;
    let inner = |node: Option<&pg_query::protobuf::Node>| -> Result<String, Skip> {
        let node = node
            .and_then(|n| n.node.as_ref())
            .ok_or_else(|| "no query".to_string())?;
        match node {
            N::SelectStmt(s) if s.into_clause.is_some() => {
                let mut s = s.clone();
                s.into_clause = None;
                deparse(&N::SelectStmt(s))
            }
            N::SelectStmt(_)
            | N::InsertStmt(_)
            | N::UpdateStmt(_)
            | N::DeleteStmt(_)
            | N::MergeStmt(_) => deparse(node),
            other => Err(format!("utility {}", node_name(other))),
        }
    };
    let text = match root {
        N::SelectStmt(s) if s.into_clause.is_some() => inner(statement.node.as_ref())?,
        N::SelectStmt(_)
        | N::InsertStmt(_)
        | N::UpdateStmt(_)
        | N::DeleteStmt(_)
        | N::MergeStmt(_) => statement.text.clone(),
        N::ExplainStmt(e) => inner(e.query.as_deref())?,
        N::DeclareCursorStmt(d) => inner(d.query.as_deref())?,
        N::CreateTableAsStmt(c) => inner(c.query.as_deref())?,
        N::ViewStmt(v) => inner(v.query.as_deref())?,
        N::CopyStmt(c) if c.query.is_some() => inner(c.query.as_deref())?,
        N::PrepareStmt(p) if p.argtypes.is_empty() => inner(p.query.as_deref())?,
        N::PrepareStmt(_) => return Err("parameters".into()),
        other => return Err(format!("utility {}", node_name(other))),
    };
    if has_parameters(&text) {
        return Err("parameters".into());
    }
    Ok(text)
}

fn deparse(node: &pg_query::NodeEnum) -> Result<String, Skip> {
    node.deparse(Default::default())
        .map_err(|e| format!("deparse failed: {e}"))
}

/// The parse-tree node name, e.g. `VacuumStmt`.
pub fn node_name(node: &pg_query::NodeEnum) -> String {
    let s = format!("{node:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("").to_string()
}

fn has_parameters(sql: &str) -> bool {
    pg_query::scan_tokens(sql).is_ok_and(|tokens| {
        tokens
            .iter()
            .any(|t| t.token == pg_query::protobuf::Token::Param as i32)
    })
}

/// Counts for one corpus.
#[derive(Debug, Default)]
pub struct Tally {
    pub statements: usize,
    pub checked: usize,
    pub ddl_checked: usize,
    pub skipped: BTreeMap<String, usize>,
    pub relation_misses: usize,
    pub column_misses: usize,
    pub function_misses: usize,
    pub ddl_misses: usize,
    /// References the facts lack that are not misses, by reason.
    pub not_required: BTreeMap<&'static str, usize>,
    /// `(statement, what the server touched that the facts lack)`.
    pub misses: Vec<(String, String)>,
    /// Time spent asking the server and running statements.
    pub check_time: std::time::Duration,
    pub run_time: std::time::Duration,
}

impl Tally {
    pub fn skip(&mut self, reason: impl Into<String>) {
        *self.skipped.entry(reason.into()).or_default() += 1;
    }

    /// Records the outcome of one statement's DML check.
    pub fn record(&mut self, sql: &str, misses: &Misses) {
        self.checked += 1;
        for (k, v) in &misses.not_required {
            *self.not_required.entry(k).or_default() += v;
        }
        self.relation_misses += usize::from(!misses.relations.is_empty());
        self.column_misses += usize::from(!misses.columns.is_empty());
        self.function_misses += usize::from(!misses.functions.is_empty());
        if !misses.is_empty() {
            self.misses.push((sql.to_string(), misses.describe()));
        }
    }

    /// Records the outcome of one statement's DDL check.
    pub fn record_ddl(
        &mut self,
        sql: &str,
        missing: Vec<String>,
        not_required: BTreeMap<&'static str, usize>,
    ) {
        self.ddl_checked += 1;
        for (k, v) in not_required {
            *self.not_required.entry(k).or_default() += v;
        }
        if !missing.is_empty() {
            self.ddl_misses += 1;
            self.misses
                .push((sql.to_string(), format!("DDL touched {missing:?}")));
        }
    }

    /// Adds `other`'s counts and misses to these.
    pub fn merge(&mut self, other: Tally) {
        self.statements += other.statements;
        self.checked += other.checked;
        self.ddl_checked += other.ddl_checked;
        for (k, v) in other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        self.relation_misses += other.relation_misses;
        self.column_misses += other.column_misses;
        self.function_misses += other.function_misses;
        self.ddl_misses += other.ddl_misses;
        for (k, v) in other.not_required {
            *self.not_required.entry(k).or_default() += v;
        }
        self.misses.extend(other.misses);
        self.check_time += other.check_time;
        self.run_time += other.run_time;
    }

    pub fn summary(&self, name: &str) -> String {
        // Utility statements are counted together: the DDL check covers them.
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for (k, v) in &self.skipped {
            let k = if k.starts_with("utility ") {
                "utility statement (no DML to check)"
            } else {
                k.as_str()
            };
            *reasons.entry(k).or_default() += v;
        }
        let mut skipped: Vec<_> = reasons.into_iter().collect();
        skipped.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let skipped: Vec<String> = skipped.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let not_required: Vec<String> = self
            .not_required
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!(
            "{name}: {} statements, {} checked (DML), {} checked (DDL); statements with misses: {} relation, {} column, {} function, {} DDL\n  not required: {}\n  skipped: {}",
            self.statements,
            self.checked,
            self.ddl_checked,
            self.relation_misses,
            self.column_misses,
            self.function_misses,
            self.ddl_misses,
            if not_required.is_empty() {
                "none".into()
            } else {
                not_required.join(", ")
            },
            skipped.join(", ")
        )
    }
}

/// Statement kinds whose execution may fire DDL event triggers.
pub fn may_run_ddl(facts: &Facts) -> bool {
    use portcullis_sql::analysis::Kind;
    !matches!(
        facts.kind,
        Kind::Select
            | Kind::Insert
            | Kind::Update
            | Kind::Delete
            | Kind::Merge
            | Kind::Transaction
            | Kind::SetSession
            | Kind::CopyIn
            | Kind::CopyOut
    ) || facts
        .tags
        .contains(&portcullis_sql::analysis::Tag::SelectInto)
}

/// Parses `sql` into statements as the gateway does.
pub fn parse(sql: &str) -> Result<Vec<ParsedStatement>, String> {
    portcullis_sql::parse(sql, LexerOptions::default()).result
}

/// Whether a statement names nothing the server could resolve to a relation or a
/// function the facts must name: no relation, column, function call, function in FROM,
/// table function or `reg*` cast. Such a statement (`SELECT '1'::int4 + 2`) can reference
/// only types, operators and casts, which the oracle does not require, so asking the
/// server about it would only cost time.
pub fn names_nothing(statement: &ParsedStatement) -> bool {
    let Some(node) = &statement.node else {
        return true;
    };
    let Ok(json) = serde_json::to_string(node) else {
        return false;
    };
    ![
        "\"relname\"",
        "\"funcname\"",
        "\"ColumnRef\"",
        "\"RangeFunction\"",
        "\"RangeTableFunc\"",
        "\"RangeTableSample\"",
        "\"JsonTable\"",
        "\"reg",
    ]
    .iter()
    .any(|k| json.contains(k))
}

/// Checks one statement's DML with the oracle and records the outcome.
pub async fn check_dml(client: &Client, statement: &ParsedStatement, tally: &mut Tally) {
    let body = match dml_body(statement) {
        Ok(b) => b,
        Err(reason) => return tally.skip(reason),
    };
    if names_nothing(statement) {
        return tally.skip("names nothing to resolve (literals, operators, casts)");
    }
    match server_refs(client, &body).await {
        Ok(refs) => {
            let misses = compare(statement, &refs);
            tally.record(&statement.text, &misses);
        }
        Err(reason) => tally.skip(reason),
    }
}

/// Runs a DDL statement in a transaction that is rolled back and checks what it touched.
pub async fn check_ddl_undone(client: &Client, statement: &ParsedStatement, tally: &mut Tally) {
    let sql = format!("{};\n{TAKE_SQL}", statement.text);
    match undone(client, &sql).await {
        Ok(rows) => {
            let refs = ddl_refs(rows);
            let (missing, not_required) = compare_ddl(std::slice::from_ref(statement), &refs);
            tally.record_ddl(&statement.text, missing, not_required);
        }
        Err(reason) => tally.skip(format!("DDL: server error {reason}")),
    }
}
