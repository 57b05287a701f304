//! The Cedar requests for one statement: the entities (the caller and their groups, the
//! target, schemas, tables, columns, functions and their classes), one request per thing
//! the statement touches, and the context policies read. Built in named steps.

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid};
use portcullis_sql::analysis::{
    Access, Columns, FunctionClass, FunctionRef, Kind, RelationName, SessionChange, Tag,
    harmless_volatile, regclass_relation,
};
use serde_json::json;

use super::StatementInput;
use crate::environment::{Catalog, Environment, Requester};
use crate::store::PolicyStore;

pub(super) fn uid(ty: &str, id: &str) -> EntityUid {
    // Type names are the schema's own identifiers, so they always parse.
    let ty: EntityTypeName = ty.parse().unwrap_or_else(|_| unreachable_type(ty));
    EntityUid::from_type_name_and_id(ty, EntityId::new(id))
}

#[cold]
fn unreachable_type(ty: &str) -> EntityTypeName {
    panic!("entity type {ty} is not a valid Cedar identifier")
}

/// One request to make, and how to describe its resource in messages.
pub(super) struct Ask {
    pub action: &'static str,
    pub resource: EntityUid,
    pub describe: String,
}

/// Everything Cedar is asked about one statement.
pub(super) struct Requests {
    pub user: EntityUid,
    pub asks: Vec<Ask>,
    pub entities: Entities,
    pub context: Context,
}

/// Entities for one statement.
#[derive(Default)]
struct EntitySet {
    parents: HashMap<EntityUid, HashSet<EntityUid>>,
}

impl EntitySet {
    fn add(&mut self, e: EntityUid, parents: impl IntoIterator<Item = EntityUid>) {
        let entry = self.parents.entry(e).or_default();
        entry.extend(parents);
    }

    fn build(self) -> Result<Entities, String> {
        let entities: Result<Vec<Entity>, _> = self
            .parents
            .into_iter()
            .map(|(uid, parents)| Entity::new_no_attrs(uid, parents))
            .map(Ok::<_, String>)
            .collect();
        Entities::from_entities(entities?, None).map_err(|e| e.to_string())
    }
}

/// The requests as they are built.
struct Builder<'a> {
    store: &'a PolicyStore,
    env: &'a Environment<'a>,
    statement: StatementInput<'a>,
    catalog: &'a dyn Catalog,
    entities: EntitySet,
    target: EntityUid,
    asks: Vec<Ask>,
    /// Every table touched, read and written (`schema.name`), for the context.
    tables: BTreeSet<String>,
    reads: BTreeSet<String>,
    writes: BTreeSet<String>,
    function_names: BTreeSet<String>,
    function_classes: BTreeSet<String>,
}

impl Requests {
    /// The requests for `statement` by `principal` in `env`, or why they cannot be made
    /// (which refuses the statement).
    pub(super) fn build(
        store: &PolicyStore,
        principal: Requester<'_>,
        env: &Environment<'_>,
        statement: StatementInput<'_>,
        catalog: &dyn Catalog,
    ) -> Result<Requests, String> {
        let mut entities = EntitySet::default();
        let user = uid("User", principal.subject);
        let groups: Vec<EntityUid> = principal.groups.iter().map(|g| uid("Group", g)).collect();
        for g in &groups {
            entities.add(g.clone(), []);
        }
        entities.add(user.clone(), groups);
        let target = uid("Target", env.target);
        entities.add(target.clone(), []);
        let mut b = Builder {
            store,
            env,
            statement,
            catalog,
            entities,
            asks: vec![Ask {
                action: statement.facts.kind.as_str(),
                resource: target.clone(),
                describe: format!("target {}", env.target),
            }],
            target,
            tables: BTreeSet::new(),
            reads: BTreeSet::new(),
            writes: BTreeSet::new(),
            function_names: BTreeSet::new(),
            function_classes: BTreeSet::new(),
        };
        let named = b.named_relations();
        let resolved = b.relations(&named);
        b.statistics()?;
        let row_calls = crate::row_calls::calls(statement.facts, &resolved, catalog);
        for call in &row_calls {
            for (schema, name) in &call.rows_of {
                b.whole_row(schema, name);
            }
        }
        let operator_calls = b.operator_calls();
        let functions: Vec<&FunctionRef> = statement
            .facts
            .functions
            .iter()
            .chain(row_calls.iter().map(|c| &c.function))
            .chain(&operator_calls)
            .collect();
        for f in functions {
            b.function(f);
        }
        let context = b.context();
        let entities = b
            .entities
            .build()
            .map_err(|e| format!("cannot build the policy request: {e}"))?;
        let context = Context::from_json_value(context, None)
            .map_err(|e| format!("cannot build the policy context: {e}"))?;
        Ok(Requests {
            user,
            asks: b.asks,
            entities,
            context,
        })
    }
}

impl<'a> Builder<'a> {
    /// Strings passed where a function takes a regclass name relations too.
    fn named_relations(&self) -> Vec<Access> {
        self.statement
            .facts
            .name_arguments
            .iter()
            .filter(|n| {
                self.catalog
                    .regclass_parameters(&n.function)
                    .contains(&n.position)
            })
            .filter_map(|n| regclass_relation(&n.value))
            .map(|relation| Access {
                relation,
                action: Kind::Select,
                columns: Columns::None,
            })
            .collect()
    }

    /// A table entity under its schema and the target.
    fn table(&mut self, schema: &str, full: &str) -> EntityUid {
        let schema_uid = uid("Schema", schema);
        self.entities.add(schema_uid.clone(), [self.target.clone()]);
        let table = uid("Table", full);
        self.entities.add(table.clone(), [schema_uid]);
        table
    }

    /// A request for each relation accessed, in every schema its name may mean, and for
    /// the columns a read names; returns the schemas each relation resolved to.
    fn relations<'n>(&mut self, named: &'n [Access]) -> HashMap<&'n RelationName, Vec<String>>
    where
        'a: 'n,
    {
        let facts = self.statement.facts;
        let mut resolved: HashMap<&RelationName, Vec<String>> = HashMap::new();
        for access in facts.accesses.iter().chain(named) {
            let schemas = resolve(
                &access.relation.schema,
                &access.relation.name,
                self.statement.search_path,
                self.env.role,
                self.catalog,
            );
            resolved
                .entry(&access.relation)
                .or_default()
                .extend(schemas.iter().cloned());
            for schema in schemas {
                let full = format!("{schema}.{}", access.relation.name);
                let table = self.table(&schema, &full);
                self.tables.insert(full.clone());
                let is_read = matches!(access.action, Kind::Select | Kind::CopyOut | Kind::Explain);
                if is_read {
                    self.reads.insert(full.clone());
                } else {
                    self.writes.insert(full.clone());
                }
                self.asks.push(Ask {
                    action: access.action.as_str(),
                    resource: table.clone(),
                    describe: format!("table {full}"),
                });
                // A plan reads no values, but its row estimates come from the statistics
                // of the columns its predicates name: EXPLAIN reads them too.
                if is_read {
                    let columns: Vec<String> = match &access.columns {
                        Columns::None => Vec::new(),
                        Columns::Some(set) => set.iter().cloned().collect(),
                        Columns::All => {
                            self.store
                                .every_column(self.catalog, &schema, &access.relation.name)
                        }
                    };
                    self.columns(&table, &full, columns, "");
                }
            }
        }
        resolved
    }

    /// Planner statistics hold samples of every column of every table: reading them reads
    /// those columns.
    fn statistics(&mut self) -> Result<(), String> {
        if !self.statement.facts.tags.contains(&Tag::CatalogValues) {
            return Ok(());
        }
        let Some(relations) = self.catalog.relations() else {
            return Err(
                "the statement reads planner statistics, which hold values of every column, and the gateway has no catalog to tell which"
                    .into(),
            );
        };
        // The statistics of system catalogs are covered by the `credentials` tag the
        // analysis adds beside `catalog_values`.
        let system =
            |s: &str| matches!(s, "pg_catalog" | "information_schema") || s.starts_with("pg_toast");
        for (schema, name) in relations.into_iter().filter(|(s, _)| !system(s)) {
            let full = format!("{schema}.{name}");
            let table = self.table(&schema, &full);
            self.asks.push(Ask {
                action: "select",
                resource: table.clone(),
                describe: format!("table {full} (through its statistics)"),
            });
            let columns = self.catalog.columns(&schema, &name).unwrap_or_default();
            self.columns(&table, &full, columns, " (through its statistics)");
        }
        Ok(())
    }

    /// `t.f` meaning `f(t)`: a call, which reads t's whole row.
    fn whole_row(&mut self, schema: &str, name: &str) {
        let full = format!("{schema}.{name}");
        let table = uid("Table", &full);
        let columns = self.store.every_column(self.catalog, schema, name);
        self.columns(&table, &full, columns, "");
    }

    /// An operator is a call of the function that implements it, and a cast may call one
    /// (or a domain's check); one that may write is decided like that function.
    fn operator_calls(&self) -> Vec<FunctionRef> {
        let facts = self.statement.facts;
        facts
            .operators
            .iter()
            .flat_map(|op| self.catalog.operator_functions(op))
            .filter(|(schema, name, volatile)| {
                *volatile && !(schema == "pg_catalog" && harmless_volatile(name))
            })
            .map(|(schema, name, _)| (schema, name))
            .chain(
                facts
                    .casts
                    .iter()
                    .flat_map(|t| self.catalog.cast_functions(t)),
            )
            .filter(|(schema, name)| !(schema == "pg_catalog" && harmless_volatile(name)))
            .map(|(schema, name)| FunctionRef {
                classes: std::iter::once(FunctionClass::Writes).collect(),
                schema: Some(schema),
                name,
            })
            .collect()
    }

    /// A request to invoke `f`, a member of its classes (and of `writes` when the
    /// catalog says it may).
    fn function(&mut self, f: &FunctionRef) {
        let mut f_classes = f.classes.clone();
        if writes_by_catalog(f, self.catalog) {
            f_classes.insert(FunctionClass::Writes);
        }
        let classes: Vec<EntityUid> = f_classes
            .iter()
            .map(|c| uid("FunctionClass", c.as_str()))
            .collect();
        for c in &classes {
            self.entities.add(c.clone(), []);
        }
        for c in &f_classes {
            self.function_classes.insert(c.as_str().to_string());
        }
        self.function_names.insert(f.name.clone());
        let fu = uid("Function", &f.name);
        self.entities.add(fu.clone(), classes);
        self.asks.push(Ask {
            action: "invoke",
            resource: fu,
            describe: format!("function {}", f.name),
        });
    }

    /// A `read_unmasked` request for each of `columns` of `table` (`schema.name`), `why`
    /// saying how the statement reads them when not directly.
    fn columns(
        &mut self,
        table: &EntityUid,
        full: &str,
        columns: impl IntoIterator<Item = String>,
        why: &str,
    ) {
        for c in columns {
            let col = uid("Column", &format!("{full}.{c}"));
            self.entities.add(col.clone(), [table.clone()]);
            self.asks.push(Ask {
                action: "read_unmasked",
                resource: col,
                describe: format!("column {full}.{c}{why}"),
            });
        }
    }

    /// What policies read as `context`: the time, the client, and the statement.
    fn context(&self) -> serde_json::Value {
        let (facts, env) = (self.statement.facts, self.env);
        let session: BTreeSet<String> = facts
            .session
            .iter()
            .map(|s| match s {
                SessionChange::Role(_) => "role".to_string(),
                SessionChange::SessionAuthorization(_) => "session_authorization".to_string(),
                SessionChange::SearchPath(_) => "search_path".to_string(),
                SessionChange::Setting(name) => format!("setting:{name}"),
            })
            .collect();
        let local = env.now.to_zoned_datetime(env.timezone.clone());
        json!({
            "hour": local.hour(),
            "minute": local.minute(),
            "weekday": weekday(local.weekday()),
            "date": local.date().to_string(),
            "client_address": {"__extn": {"fn": "ip", "arg": env.client_addr.to_string()}},
            "application_name": env.application_name,
            "target": env.target,
            "role": env.role,
            "statement": {
                "kind": facts.kind.as_str(),
                "text": self.statement.text,
                "tables": self.tables,
                "reads": self.reads,
                "writes": self.writes,
                "functions": self.function_names,
                "function_classes": self.function_classes,
                "has_where": facts.has_where.unwrap_or(true),
                "copy_program": facts.copy.as_ref().is_some_and(|c| c.program.is_some()),
                "copy_file": facts.copy.as_ref().is_some_and(|c| c.file.is_some()),
                "session": session,
                "tags": facts.tag_names(),
            },
        })
    }
}

impl PolicyStore {
    /// The columns a read of a whole row reads. Where the catalog cannot list them (a
    /// table newer than its last load, no catalog), every column a policy names is read,
    /// and `*` stands for the rest.
    fn every_column(&self, catalog: &dyn Catalog, schema: &str, name: &str) -> Vec<String> {
        catalog.columns(schema, name).unwrap_or_else(|| {
            let mut c = self.named_columns_of(&format!("{schema}.{name}"));
            c.push("*".to_string());
            c
        })
    }
}

fn weekday(w: jiff::civil::Weekday) -> &'static str {
    use jiff::civil::Weekday::*;
    match w {
        Monday => "monday",
        Tuesday => "tuesday",
        Wednesday => "wednesday",
        Thursday => "thursday",
        Friday => "friday",
        Saturday => "saturday",
        Sunday => "sunday",
    }
}

/// Whether the catalog says a call of `f` may write: some function of that name (in its
/// schema, if the call names one) is volatile and is not a built-in known to be harmless.
/// A name the catalog does not know at all (created since, or a typo) may write too.
/// The built-ins of a known class (`set_config`, `pg_read_file`, …) are governed by it; a
/// function of the same name elsewhere is not.
fn writes_by_catalog(f: &FunctionRef, catalog: &dyn Catalog) -> bool {
    let Some(found) = catalog.functions_named(&f.name) else {
        return false;
    };
    let candidates: Vec<&(String, bool)> = found
        .iter()
        .filter(|(schema, _)| f.schema.as_ref().is_none_or(|s| s == schema))
        .collect();
    let governed = harmless_volatile(&f.name) || !f.classes.is_empty();
    candidates.is_empty()
        || candidates
            .iter()
            .any(|(schema, volatile)| *volatile && !(schema == "pg_catalog" && governed))
}

/// The schemas an access may refer to. A qualified name is itself; an unqualified one is
/// every schema the catalog has it in, and when the catalog does not know it (a table
/// about to be created, a temporary table, no catalog), every schema on the search path.
/// Never none: an unresolvable name matches more, not less.
fn resolve(
    schema: &Option<String>,
    name: &str,
    search_path: &[String],
    role: &str,
    catalog: &dyn Catalog,
) -> Vec<String> {
    if let Some(s) = schema {
        return vec![s.clone()];
    }
    if let Some(found) = catalog.schemas_with(name)
        && !found.is_empty()
    {
        return found;
    }
    let mut path: Vec<String> = search_path
        .iter()
        .map(|s| {
            if s == "$user" {
                role.to_string()
            } else {
                s.clone()
            }
        })
        .filter(|s| !s.is_empty())
        .collect();
    if path.is_empty() {
        path.push("public".into());
    }
    path
}
