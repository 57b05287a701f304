//! `portcullis policy check` and `portcullis policy explain`: tools for policy authors.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use portcullis_policy::{
    Catalog, Check, Environment, Mode, NoCatalog, Outcome, PolicyStore, Requester, StatementInput,
};
use portcullis_sql::analysis::{Columns, Facts};
use portcullis_sql::{LexerOptions, parse};
use serde_json::json;

/// `policy check FILES…`: validates against the schema; prints every problem with its
/// file, line and column.
pub fn check(paths: &[PathBuf]) -> anyhow::Result<()> {
    if paths.is_empty() {
        bail!("name at least one policy file or directory");
    }
    match PolicyStore::load(paths, Mode::Enforce) {
        Ok(store) => {
            println!(
                "ok: {} policies in {} files ({})",
                store.len(),
                store.files().len(),
                store.files().join(", ")
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

/// `policy explain`'s arguments.
#[derive(clap::Args)]
pub struct ExplainArgs {
    /// The SQL to explain (several statements are explained one by one).
    pub sql: String,
    /// The caller's subject.
    #[arg(long, default_value = "someone")]
    pub user: String,
    /// The caller's groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub groups: Vec<String>,
    /// When, e.g. 2026-11-24T10:00 (in the policy time zone) or 2026-11-24T10:00:00Z.
    #[arg(long)]
    pub at: Option<String>,
    /// The target (database name clients use); defaults to the first configured.
    #[arg(long)]
    pub target: Option<String>,
    /// The upstream role, if not the one the target maps the groups to.
    #[arg(long)]
    pub role: Option<String>,
    /// Gateway configuration to take policies, time zone and catalog from; defaults to
    /// PORTCULLIS_CONFIG or the running demo's.
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Policy files or directories, instead of a configuration (no catalog).
    #[arg(long)]
    pub policies: Vec<PathBuf>,
    /// Time zone for --policies (default UTC) or to override the configuration's.
    #[arg(long)]
    pub timezone: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub client_address: IpAddr,
    #[arg(long, default_value = "")]
    pub application_name: String,
    /// The search path unqualified names resolve through when the catalog does not know them.
    #[arg(long, value_delimiter = ',', default_value = "$user,public")]
    pub search_path: Vec<String>,
    /// Do not connect to the target to read its catalog.
    #[arg(long)]
    pub no_catalog: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The configuration explain reads: `--config`, `PORTCULLIS_CONFIG`, or the running demo's.
fn find_config(given: Option<PathBuf>) -> Option<PathBuf> {
    given.or_else(|| {
        let demo = PathBuf::from(".demo/portcullis.toml");
        demo.exists().then_some(demo)
    })
}

fn parse_time(at: &str, tz: &jiff::tz::TimeZone) -> anyhow::Result<jiff::Timestamp> {
    if let Ok(ts) = at.parse::<jiff::Timestamp>() {
        return Ok(ts);
    }
    let civil: jiff::civil::DateTime = at.parse().with_context(|| {
        format!("--at '{at}' is not a time like 2026-11-24T10:00 or 2026-11-24T10:00:00Z")
    })?;
    Ok(civil.to_zoned_datetime(tz.clone())?.timestamp())
}

pub async fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let mut catalog: Option<std::sync::Arc<portcullis_gateway::catalog::Snapshot>> = None;
    let (store, timezone, target, role) = match find_config(args.config.clone())
        .filter(|_| args.policies.is_empty())
    {
        Some(path) => {
            let config = portcullis_gateway::Config::load(&path)?;
            let runtime = portcullis_gateway::Runtime::build(config, None)?;
            let target = args
                .target
                .clone()
                .or_else(|| runtime.config.targets.first().map(|t| t.name.clone()))
                .context("the configuration has no target")?;
            let t = runtime
                .targets
                .get(&target)
                .with_context(|| format!("target \"{target}\" is not in {}", path.display()))?;
            let role = args
                .role
                .clone()
                .or_else(|| t.role_for(&args.groups).map(|r| r.name.clone()))
                .unwrap_or_default();
            if !args.no_catalog {
                match portcullis_gateway::fetch_catalog(&runtime, &target, &args.groups).await {
                    Ok(c) => catalog = Some(c),
                    Err(e) => eprintln!(
                        "warning: no catalog ({e}); unqualified names match every schema on the search path"
                    ),
                }
            }
            let section = runtime.config.policy.clone();
            let tz = args.timezone.clone().unwrap_or(section.timezone);
            let store = PolicyStore::load(&section.paths, Mode::Enforce)?;
            (store, tz, target, role)
        }
        None => {
            if args.policies.is_empty() {
                bail!("give --config (or run the demo) or --policies");
            }
            let store = PolicyStore::load(&args.policies, Mode::Enforce)?;
            (
                store,
                args.timezone.clone().unwrap_or_else(|| "UTC".into()),
                args.target.clone().unwrap_or_else(|| "default".into()),
                args.role.clone().unwrap_or_default(),
            )
        }
    };
    let tz = jiff::tz::TimeZone::get(&timezone)
        .with_context(|| format!("'{timezone}' is not a time zone"))?;
    let now = match &args.at {
        Some(at) => parse_time(at, &tz)?,
        None => jiff::Timestamp::now(),
    };
    let env = Environment {
        target: &target,
        role: &role,
        client_addr: args.client_address,
        application_name: &args.application_name,
        now,
        timezone: &tz,
    };
    let cat: &dyn Catalog = match &catalog {
        Some(c) => c.as_ref(),
        None => &NoCatalog,
    };
    let parsed = parse(&args.sql, LexerOptions::default());
    let statements = match parsed.result {
        Ok(s) => s,
        Err(e) => bail!("the statement does not parse: {e}"),
    };
    let mut out = Vec::new();
    let mut refused = false;
    for s in &statements {
        let decision = store.decide(
            Requester {
                subject: &args.user,
                groups: &args.groups,
            },
            &env,
            StatementInput {
                facts: &s.facts,
                text: &s.text,
                search_path: &args.search_path,
            },
            cat,
        );
        refused |= !decision.outcome.is_allow();
        if args.json {
            out.push(json!({
                "statement": s.text.trim(),
                "facts": facts_json(&s.facts),
                "checks": decision.checks.iter().map(|c| check_json(&store, c)).collect::<Vec<_>>(),
                "decision": outcome_json(&decision.outcome),
                "observed": decision.observed.as_ref().map(outcome_json),
            }));
        } else {
            print_human(
                &store,
                &s.text,
                &s.facts,
                &decision.checks,
                &decision.outcome,
                decision.observed.as_ref(),
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "as {} in [{}] on target \"{}\" (role {}), at {} ({})",
            args.user,
            args.groups.join(", "),
            target,
            if role.is_empty() { "unknown" } else { &role },
            now.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M %A"),
            timezone
        );
    }
    if refused {
        std::process::exit(2);
    }
    Ok(())
}

fn columns(c: &Columns) -> String {
    match c {
        Columns::None => "-".into(),
        Columns::All => "*".into(),
        Columns::Some(set) => set.iter().cloned().collect::<Vec<_>>().join(", "),
    }
}

fn facts_json(f: &Facts) -> serde_json::Value {
    json!({
        "kind": f.kind.as_str(),
        "accesses": f.accesses.iter().map(|a| json!({
            "relation": a.relation.to_string(),
            "action": a.action.as_str(),
            "columns": columns(&a.columns),
        })).collect::<Vec<_>>(),
        "functions": f.functions.iter().map(|x| json!({
            "name": x.to_string(),
            "classes": x.classes.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "has_where": f.has_where,
        "copy": f.copy.as_ref().map(|c| json!({"from": c.from, "program": c.program, "file": c.file})),
        "session": f.session.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>(),
        "tags": f.tag_names(),
    })
}

fn check_json(store: &PolicyStore, c: &Check) -> serde_json::Value {
    let conditional: Vec<_> = c
        .conditional
        .iter()
        .map(|p| json!({"policy": p, "conditions": store.conditions(p)}))
        .collect();
    json!({"action": c.action, "resource": c.resource, "allowed": c.allowed, "policies": c.policies, "errors": c.errors, "condition_not_met": conditional})
}

fn outcome_json(o: &Outcome) -> serde_json::Value {
    match o {
        Outcome::Allow { max_rows } => {
            json!({"outcome": o.name(), "max_rows": max_rows.as_ref().map(|l| json!({"rows": l.max, "policy": l.policy}))})
        }
        Outcome::Deny { message, hint } => {
            json!({"outcome": o.name(), "message": message, "hint": hint})
        }
        Outcome::NeedsApproval {
            groups,
            policies,
            message,
            ..
        } => {
            json!({"outcome": o.name(), "groups": groups, "policies": policies, "message": message})
        }
        Outcome::Mask {
            column,
            strategy,
            policy,
            message,
        } => {
            json!({"outcome": o.name(), "column": column, "strategy": strategy, "policy": policy, "message": message})
        }
    }
}

fn print_human(
    store: &PolicyStore,
    text: &str,
    f: &Facts,
    checks: &[Check],
    outcome: &Outcome,
    observed: Option<&Outcome>,
) {
    println!("statement: {}", text.trim());
    println!("  kind:      {}", f.kind);
    for a in &f.accesses {
        println!(
            "  {:<10} {} (columns: {})",
            format!("{}:", a.action),
            a.relation,
            columns(&a.columns)
        );
    }
    for x in &f.functions {
        let classes: Vec<&str> = x.classes.iter().map(|c| c.as_str()).collect();
        if classes.is_empty() {
            println!("  function:  {x}");
        } else {
            println!("  function:  {x} [{}]", classes.join(", "));
        }
    }
    if let Some(w) = f.has_where {
        println!("  where:     {}", if w { "yes" } else { "NO" });
    }
    if let Some(c) = &f.copy {
        println!(
            "  copy:      {}{}{}",
            if c.from { "from" } else { "to" },
            c.program
                .as_deref()
                .map(|p| format!(" program '{p}'"))
                .unwrap_or_default(),
            c.file
                .as_deref()
                .map(|p| format!(" file '{p}'"))
                .unwrap_or_default()
        );
    }
    for s in &f.session {
        println!("  session:   {s:?}");
    }
    if !f.tags.is_empty() {
        println!("  tags:      {}", f.tag_names().join(", "));
    }
    println!("  checks:");
    for c in checks {
        let by = if c.policies.is_empty() {
            if c.allowed {
                String::new()
            } else {
                "no policy permits".into()
            }
        } else if c.allowed {
            format!("permitted by {}", c.policies.join(", "))
        } else {
            format!("forbidden by {}", c.policies.join(", "))
        };
        println!(
            "    {:<5} {:<14} {:<40} {by}",
            if c.allowed { "allow" } else { "DENY" },
            c.action,
            c.resource
        );
        for e in &c.errors {
            println!("          error: {e}");
        }
        for p in &c.conditional {
            let conditions = store.conditions(p).unwrap_or_default();
            println!(
                "          condition not met: {p}: {}",
                conditions.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
    println!("  decision:  {}", outcome.summary());
    if let Outcome::Deny { hint: Some(h), .. } = outcome {
        println!("  hint:      {h}");
    }
    if let Some(o) = observed {
        println!("  observe:   would be: {}", o.summary());
    }
    println!();
}
