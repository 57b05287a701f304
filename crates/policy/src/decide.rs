//! Deciding one statement: resolve names, build the entities and requests, ask Cedar, and
//! map the answers to an outcome through the deciding policies' annotations.

use std::collections::{BTreeSet, HashMap, HashSet};

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, Response,
};
use portcullis_sql::analysis::{
    Access, Columns, Facts, FunctionClass, FunctionRef, Kind, RelationName, SessionChange, Tag,
    harmless_volatile, regclass_relation,
};
use serde_json::json;

use crate::environment::{Catalog, Environment, Principal};
use crate::store::{Mode, PolicyStore};

/// A statement put before the policies.
#[derive(Debug, Clone, Copy)]
pub struct StatementInput<'a> {
    pub facts: &'a Facts,
    pub text: &'a str,
    /// The session's search path, for unqualified names the catalog does not know.
    pub search_path: &'a [String],
}

/// What the policies say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Run it; write statements may be capped at a number of rows by a policy.
    Allow { max_rows: Option<crate::RowLimit> },
    Deny {
        message: String,
        /// What would allow it: the permits whose scope matched but whose condition did
        /// not hold.
        hint: Option<String>,
    },
    NeedsApproval {
        groups: Vec<String>,
        policies: Vec<String>,
        message: String,
    },
    Mask {
        column: String,
        strategy: String,
        policy: String,
        message: String,
    },
}

impl Outcome {
    pub fn is_allow(&self) -> bool {
        matches!(self, Outcome::Allow { .. })
    }

    /// A one-line description for logs and explain output.
    pub fn summary(&self) -> String {
        match self {
            Outcome::Allow { max_rows: None } => "allow".into(),
            Outcome::Allow {
                max_rows: Some(crate::RowLimit { max, policy }),
            } => format!("allow, at most {max} rows (policy \"{policy}\")"),
            Outcome::Deny { message, .. }
            | Outcome::NeedsApproval { message, .. }
            | Outcome::Mask { message, .. } => message.clone(),
        }
    }

    fn severity(&self) -> u8 {
        match self {
            Outcome::Allow { .. } => 0,
            Outcome::Mask { .. } => 1,
            Outcome::NeedsApproval { .. } => 2,
            Outcome::Deny { .. } => 3,
        }
    }
}

/// One Cedar request and its answer, for `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub action: String,
    pub resource: String,
    pub allowed: bool,
    /// The policies that decided: permits when allowed, forbids when denied.
    pub policies: Vec<String>,
    /// Evaluation errors (which deny).
    pub errors: Vec<String>,
    /// When refused: the permits whose scope matched but whose condition did not hold.
    pub conditional: Vec<String>,
}

/// The decision on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// What observe-only policies (or observe mode) would have decided, when stricter.
    pub observed: Option<Outcome>,
    pub checks: Vec<Check>,
    /// A permit that allowed it is annotated `@record`: record its result rows.
    pub record: bool,
    /// A permit that allowed it is annotated `@sensitive`: mask its parameters in the trail.
    pub sensitive: bool,
}

impl Decision {
    /// The policies that decided: the permits of an allowed statement, the forbids of a
    /// refused one (none when nothing permitted it), sorted and without repeats.
    pub fn deciding_policies(&self) -> Vec<String> {
        let allowed = self.outcome.is_allow();
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter(|c| c.allowed == allowed)
            .flat_map(|c| c.policies.iter().cloned())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Outcome {
    /// What the outcome comes to.
    pub fn kind(&self) -> crate::DecisionKind {
        match self {
            Outcome::Allow { .. } => crate::DecisionKind::Allow,
            Outcome::Deny { .. } => crate::DecisionKind::Deny,
            Outcome::NeedsApproval { .. } => crate::DecisionKind::NeedsApproval,
            Outcome::Mask { .. } => crate::DecisionKind::Mask,
        }
    }

    /// The outcome's name in the audit trail.
    pub fn name(&self) -> &'static str {
        self.kind().as_str()
    }
}

fn uid(ty: &str, id: &str) -> EntityUid {
    // Type names are the schema's own identifiers, so they always parse.
    let ty: EntityTypeName = ty.parse().unwrap_or_else(|_| unreachable_type(ty));
    EntityUid::from_type_name_and_id(ty, EntityId::new(id))
}

#[cold]
fn unreachable_type(ty: &str) -> EntityTypeName {
    panic!("entity type {ty} is not a valid Cedar identifier")
}

/// One request to make, and how to describe its resource in messages.
struct Ask {
    action: &'static str,
    resource: EntityUid,
    describe: String,
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

impl EntitySet {
    /// A `read_unmasked` request for each of `columns` of `table` (`schema.name`), `why`
    /// saying how the statement reads them when not directly.
    fn column_asks(
        &mut self,
        asks: &mut Vec<Ask>,
        table: &EntityUid,
        full: &str,
        columns: impl IntoIterator<Item = String>,
        why: &str,
    ) {
        for c in columns {
            let col = uid("Column", &format!("{full}.{c}"));
            self.add(col.clone(), [table.clone()]);
            asks.push(Ask {
                action: "read_unmasked",
                resource: col,
                describe: format!("column {full}.{c}{why}"),
            });
        }
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

fn action_name(kind: Kind) -> &'static str {
    kind.as_str()
}

impl PolicyStore {
    /// Decides `statement` for `principal` in `env`.
    pub fn decide(
        &self,
        principal: Principal<'_>,
        env: &Environment<'_>,
        statement: StatementInput<'_>,
        catalog: &dyn Catalog,
    ) -> Decision {
        let facts = statement.facts;
        let mut entities = EntitySet::default();
        let user = uid("User", principal.subject);
        let groups: Vec<EntityUid> = principal.groups.iter().map(|g| uid("Group", g)).collect();
        for g in &groups {
            entities.add(g.clone(), []);
        }
        entities.add(user.clone(), groups);
        let target = uid("Target", env.target);
        entities.add(target.clone(), []);

        let mut asks = vec![Ask {
            action: action_name(facts.kind),
            resource: target.clone(),
            describe: format!("target {}", env.target),
        }];
        let mut tables: BTreeSet<String> = BTreeSet::new();
        let mut reads: BTreeSet<String> = BTreeSet::new();
        let mut writes: BTreeSet<String> = BTreeSet::new();
        // Strings passed where a function takes a regclass name relations too.
        let named: Vec<Access> = facts
            .name_arguments
            .iter()
            .filter(|n| {
                catalog
                    .regclass_parameters(&n.function)
                    .contains(&n.position)
            })
            .filter_map(|n| regclass_relation(&n.value))
            .map(|relation| Access {
                relation,
                action: Kind::Select,
                columns: Columns::None,
            })
            .collect();
        let mut resolved: HashMap<&RelationName, Vec<String>> = HashMap::new();
        for access in facts.accesses.iter().chain(&named) {
            let schemas = resolve(
                &access.relation.schema,
                &access.relation.name,
                statement.search_path,
                env.role,
                catalog,
            );
            resolved
                .entry(&access.relation)
                .or_default()
                .extend(schemas.iter().cloned());
            for schema in schemas {
                let full = format!("{schema}.{}", access.relation.name);
                let schema_uid = uid("Schema", &schema);
                entities.add(schema_uid.clone(), [target.clone()]);
                let table = uid("Table", &full);
                entities.add(table.clone(), [schema_uid]);
                tables.insert(full.clone());
                let is_read = matches!(access.action, Kind::Select | Kind::CopyOut | Kind::Explain);
                if is_read {
                    reads.insert(full.clone());
                } else {
                    writes.insert(full.clone());
                }
                asks.push(Ask {
                    action: action_name(access.action),
                    resource: table.clone(),
                    describe: format!("table {full}"),
                });
                // A plan reads no values, but its row estimates come from the statistics of
                // the columns its predicates name: EXPLAIN reads them too.
                if matches!(access.action, Kind::Select | Kind::CopyOut | Kind::Explain) {
                    let columns: Vec<String> = match &access.columns {
                        Columns::None => Vec::new(),
                        Columns::Some(set) => set.iter().cloned().collect(),
                        Columns::All => self.every_column(catalog, &schema, &access.relation.name),
                    };
                    entities.column_asks(&mut asks, &table, &full, columns, "");
                }
            }
        }
        if facts.tags.contains(&Tag::CatalogValues) {
            // Planner statistics hold samples of every column of every table: reading
            // them reads those columns.
            let Some(relations) = catalog.relations() else {
                return refusal(
                    "the statement reads planner statistics, which hold values of every column, and the gateway has no catalog to tell which"
                        .into(),
                );
            };
            // The statistics of system catalogs are covered by the `credentials` tag the
            // analysis adds beside `catalog_values`.
            let system = |s: &str| {
                matches!(s, "pg_catalog" | "information_schema") || s.starts_with("pg_toast")
            };
            for (schema, name) in relations.into_iter().filter(|(s, _)| !system(s)) {
                let full = format!("{schema}.{name}");
                let schema_uid = uid("Schema", &schema);
                entities.add(schema_uid.clone(), [target.clone()]);
                let table = uid("Table", &full);
                entities.add(table.clone(), [schema_uid]);
                asks.push(Ask {
                    action: "select",
                    resource: table.clone(),
                    describe: format!("table {full} (through its statistics)"),
                });
                let columns = catalog.columns(&schema, &name).unwrap_or_default();
                entities.column_asks(
                    &mut asks,
                    &table,
                    &full,
                    columns,
                    " (through its statistics)",
                );
            }
        }
        // `t.f` meaning `f(t)`: a call, which reads t's whole row.
        let row_calls = crate::row_calls::calls(facts, &resolved, catalog);
        for call in &row_calls {
            for (schema, name) in &call.rows_of {
                let full = format!("{schema}.{name}");
                let table = uid("Table", &full);
                let columns = self.every_column(catalog, schema, name);
                entities.column_asks(&mut asks, &table, &full, columns, "");
            }
        }
        // An operator is a call of the function that implements it, and a cast may call
        // one (or a domain's check); one that may write is decided like that function.
        let operator_calls: Vec<FunctionRef> = facts
            .operators
            .iter()
            .flat_map(|op| catalog.operator_functions(op))
            .filter(|(schema, name, volatile)| {
                *volatile && !(schema == "pg_catalog" && harmless_volatile(name))
            })
            .map(|(schema, name, _)| (schema, name))
            .chain(facts.casts.iter().flat_map(|t| catalog.cast_functions(t)))
            .filter(|(schema, name)| !(schema == "pg_catalog" && harmless_volatile(name)))
            .map(|(schema, name)| FunctionRef {
                classes: std::iter::once(FunctionClass::Writes).collect(),
                schema: Some(schema),
                name,
            })
            .collect();
        let mut function_names = BTreeSet::new();
        let mut function_classes = BTreeSet::new();
        for f in facts
            .functions
            .iter()
            .chain(row_calls.iter().map(|c| &c.function))
            .chain(&operator_calls)
        {
            let mut f_classes = f.classes.clone();
            if writes_by_catalog(f, catalog) {
                f_classes.insert(FunctionClass::Writes);
            }
            let classes: Vec<EntityUid> = f_classes
                .iter()
                .map(|c| uid("FunctionClass", c.as_str()))
                .collect();
            for c in &classes {
                entities.add(c.clone(), []);
            }
            for c in &f_classes {
                function_classes.insert(c.as_str().to_string());
            }
            function_names.insert(f.name.clone());
            let fu = uid("Function", &f.name);
            entities.add(fu.clone(), classes);
            asks.push(Ask {
                action: "invoke",
                resource: fu,
                describe: format!("function {}", f.name),
            });
        }

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
        let context = json!({
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
                "text": statement.text,
                "tables": tables,
                "reads": reads,
                "writes": writes,
                "functions": function_names,
                "function_classes": function_classes,
                "has_where": facts.has_where.unwrap_or(true),
                "copy_program": facts.copy.as_ref().is_some_and(|c| c.program.is_some()),
                "copy_file": facts.copy.as_ref().is_some_and(|c| c.file.is_some()),
                "session": session,
                "tags": facts.tag_names(),
            },
        });

        let entities = match entities.build() {
            Ok(e) => e,
            Err(e) => return refusal(format!("cannot build the policy request: {e}")),
        };
        let context = match Context::from_json_value(context, None) {
            Ok(c) => c,
            Err(e) => return refusal(format!("cannot build the policy context: {e}")),
        };

        let enforce = self.mode == Mode::Enforce;
        let (outcome, checks) = if enforce {
            self.evaluate(&self.enforced, &user, &asks, &context, &entities, true)
        } else {
            (Outcome::Allow { max_rows: None }, Vec::new())
        };
        let observed = self.shadow.as_ref().and_then(|shadow| {
            let (o, _) = self.evaluate(shadow, &user, &asks, &context, &entities, false);
            (o.severity() > outcome.severity()).then_some(o)
        });
        let checks = if enforce {
            checks
        } else {
            self.shadow
                .as_ref()
                .map(|s| self.evaluate(s, &user, &asks, &context, &entities, false).1)
                .unwrap_or_default()
        };
        let allowed_by = |flag: &dyn Fn(&str) -> bool| {
            outcome.is_allow()
                && checks
                    .iter()
                    .filter(|c| c.allowed)
                    .flat_map(|c| &c.policies)
                    .any(|name| flag(name))
        };
        let record = allowed_by(&|n| self.records(n));
        let sensitive = allowed_by(&|n| self.is_sensitive(n));
        Decision {
            outcome,
            observed,
            checks,
            record,
            sensitive,
        }
    }

    fn evaluate(
        &self,
        set: &PolicySet,
        user: &EntityUid,
        asks: &[Ask],
        context: &Context,
        entities: &Entities,
        with_approval: bool,
    ) -> (Outcome, Vec<Check>) {
        let authorizer = Authorizer::new();
        let mut checks = Vec::with_capacity(asks.len());
        // The first denial of a table, function or column, which names what was refused
        // more precisely than a denial of the statement on the whole target.
        let mut deny: Option<Outcome> = None;
        let mut deny_target: Option<Outcome> = None;
        let mut mask: Option<Outcome> = None;
        let mut approval_groups: Vec<String> = Vec::new();
        let mut approval_policies: Vec<String> = Vec::new();
        let mut approval_what: Option<String> = None;
        let mut max_rows: Option<crate::RowLimit> = None;
        for ask in asks {
            let action = uid("Action", ask.action);
            let response = match Request::new(
                user.clone(),
                action,
                ask.resource.clone(),
                context.clone(),
                None,
            ) {
                Ok(r) => authorizer.is_authorized(&r, set, entities),
                Err(e) => {
                    return (
                        Outcome::Deny {
                            message: format!("permission denied: invalid policy request: {e}"),
                            hint: None,
                        },
                        checks,
                    );
                }
            };
            let (allowed, policies, errors) = self.read_response(&response);
            let conditional = if allowed || !errors.is_empty() {
                Vec::new()
            } else {
                self.conditional(user, ask, context, entities)
            };
            checks.push(Check {
                action: ask.action.to_string(),
                resource: ask.describe.clone(),
                allowed,
                policies: policies.iter().map(|p| self.name(p)).collect(),
                errors: errors.clone(),
                conditional: conditional.clone(),
            });
            if allowed {
                if matches!(ask.action, "update" | "delete" | "merge") {
                    for p in &policies {
                        if let Some(n) = self.meta(p).and_then(|m| m.max_rows)
                            && max_rows.as_ref().is_none_or(|l| n < l.max)
                        {
                            max_rows = Some(crate::RowLimit {
                                max: n,
                                policy: self.name(p),
                            });
                        }
                    }
                }
                continue;
            }
            let deny = if ask.resource.type_name().to_string() == "Target" {
                &mut deny_target
            } else {
                &mut deny
            };
            if !errors.is_empty() {
                deny.get_or_insert(Outcome::Deny {
                    message: format!(
                        "permission denied: policy evaluation failed for {}: {}",
                        ask.describe,
                        errors.join("; ")
                    ),
                    hint: None,
                });
                continue;
            }
            if ask.action == "read_unmasked" {
                let masking = policies.iter().find_map(|p| {
                    self.meta(p)
                        .and_then(|m| m.mask.clone())
                        .map(|s| (s, self.name(p)))
                });
                match masking {
                    Some((strategy, policy)) => {
                        let column = AsRef::<str>::as_ref(ask.resource.id()).to_string();
                        mask.get_or_insert(Outcome::Mask {
                            message: format!(
                                "permission denied: {} must be masked ({strategy}, policy \"{policy}\"), and this gateway does not mask results yet",
                                ask.describe
                            ),
                            column,
                            strategy,
                            policy,
                        });
                    }
                    None => {
                        deny.get_or_insert(self.denial(ask, &policies, &conditional));
                    }
                }
                continue;
            }
            let approval_only = with_approval
                && !policies.is_empty()
                && policies
                    .iter()
                    .all(|p| self.meta(p).is_some_and(|m| m.approval.is_some()))
                && {
                    let r = Request::new(
                        user.clone(),
                        uid("Action", ask.action),
                        ask.resource.clone(),
                        context.clone(),
                        None,
                    );
                    r.is_ok_and(|r| {
                        authorizer
                            .is_authorized(&r, &self.without_approval, entities)
                            .decision()
                            == CedarDecision::Allow
                    })
                };
            if approval_only {
                for p in &policies {
                    if let Some(g) = self.meta(p).and_then(|m| m.approval.clone())
                        && !approval_groups.contains(&g)
                    {
                        approval_groups.push(g);
                    }
                    let name = self.name(p);
                    if !approval_policies.contains(&name) {
                        approval_policies.push(name);
                    }
                }
                approval_what.get_or_insert_with(|| format!("{} on {}", ask.action, ask.describe));
            } else {
                deny.get_or_insert(self.denial(ask, &policies, &conditional));
            }
        }
        let outcome = if let Some(d) = deny.or(deny_target) {
            d
        } else if !approval_groups.is_empty() {
            let quoted: Vec<String> = approval_groups.iter().map(|g| format!("\"{g}\"")).collect();
            Outcome::NeedsApproval {
                message: format!(
                    "{} needs approval from group {} (policy \"{}\"), and approvals are not available yet",
                    approval_what.unwrap_or_default(),
                    quoted.join(" or "),
                    approval_policies.join("\", \""),
                ),
                groups: approval_groups,
                policies: approval_policies,
            }
        } else if let Some(m) = mask {
            m
        } else {
            Outcome::Allow { max_rows }
        };
        (outcome, checks)
    }

    fn read_response(&self, response: &Response) -> (bool, Vec<PolicyId>, Vec<String>) {
        let allowed = response.decision() == CedarDecision::Allow;
        let policies: Vec<PolicyId> = response.diagnostics().reason().cloned().collect();
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|e| e.to_string())
            .collect();
        (allowed, policies, errors)
    }

    fn name(&self, id: &PolicyId) -> String {
        self.meta(id)
            .map(|m| m.id.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The permits whose scope matches the request but whose condition does not hold
    /// (the request is refused).
    fn conditional(
        &self,
        user: &EntityUid,
        ask: &Ask,
        context: &Context,
        entities: &Entities,
    ) -> Vec<String> {
        let Ok(r) = Request::new(
            user.clone(),
            uid("Action", ask.action),
            ask.resource.clone(),
            context.clone(),
            None,
        ) else {
            return Vec::new();
        };
        let response = Authorizer::new().is_authorized(&r, &self.unconditioned, entities);
        let mut names: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|p| self.name(p))
            .collect();
        names.sort();
        names
    }

    fn denial(&self, ask: &Ask, forbids: &[PolicyId], conditional: &[String]) -> Outcome {
        let what = if ask.action == "read_unmasked" {
            format!("reading {} unmasked", ask.describe)
        } else if ask.action == "invoke" {
            format!("calling {}", ask.describe)
        } else {
            format!("{} on {}", ask.action, ask.describe)
        };
        // Name a forbid that refuses outright before one that would only ask for approval.
        let blocking = forbids
            .iter()
            .find(|p| {
                self.meta(p)
                    .is_none_or(|m| m.approval.is_none() && m.mask.is_none())
            })
            .or(forbids.first());
        let message = match blocking {
            Some(p) => format!(
                "permission denied: policy \"{}\" forbids {what}",
                self.name(p)
            ),
            None => format!("permission denied: no policy permits {what}"),
        };
        let hint = match (blocking, conditional) {
            (Some(_), _) | (None, []) => None,
            (None, [one]) => Some(format!(
                "policy \"{one}\" permits this only when its condition holds, and it does not now"
            )),
            (None, many) => Some(format!(
                "policies \"{}\" permit this only when their conditions hold, and none does now",
                many.join("\", \"")
            )),
        };
        Outcome::Deny { message, hint }
    }
}

fn refusal(message: String) -> Decision {
    Decision {
        outcome: Outcome::Deny {
            message: format!("permission denied: {message}"),
            hint: None,
        },
        observed: None,
        checks: Vec::new(),
        record: false,
        sensitive: false,
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
