//! `portcullis policy test`: re-decides recorded statements under a new policy set and
//! reports what would change, grouped by change, policy and subject.
//!
//! Each statement is decided as it was: its text re-analysed, the caller's subject and
//! groups, its target and role, the client's address and application from the session,
//! and the time it ran. The target's catalog is today's (read through the configuration
//! when reachable), so a table dropped since may resolve differently.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use portcullis_audit::{Event, Filter};
use portcullis_policy::{
    Catalog, Environment, Mode, NoCatalog, PolicyStore, Requester, StatementInput,
};
use portcullis_sql::{LexerOptions, parse};

use crate::audit_cmd::{StoreArgs, parse_since};

#[derive(clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The new policy files or directories.
    #[arg(long, required = true)]
    pub policies: Vec<PathBuf>,
    /// How far back: an age (7d, 12h) or a time.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Time zone of the new policies' time rules (default: the configuration's, or UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Do not read the targets' catalogs.
    #[arg(long)]
    pub no_catalog: bool,
    /// Exit 2 when any decision would change (for CI).
    #[arg(long)]
    pub check: bool,
    #[arg(long)]
    pub json: bool,
}

/// One statement whose decision would change.
#[derive(serde::Serialize)]
struct Change {
    session: String,
    seq: u64,
    time: String,
    subject: String,
    text: String,
    from: String,
    to: String,
    policies: Vec<String>,
}

fn category(to: &str) -> &'static str {
    use portcullis_policy::DecisionKind as K;
    match K::parse(to) {
        Some(K::Allow) => "newly allowed",
        Some(K::Deny) => "newly denied",
        Some(K::Mask) => "newly masked",
        _ => "newly needs approval",
    }
}

pub async fn run(args: TestArgs) -> anyhow::Result<()> {
    let store_policies = PolicyStore::load(&args.policies, Mode::Enforce)?;
    let mut opened = args.store.open().await?;
    let tz_name = args
        .timezone
        .clone()
        .or_else(|| opened.config.as_ref().map(|c| c.policy.timezone.clone()))
        .unwrap_or_else(|| "UTC".into());
    let tz = jiff::tz::TimeZone::get(&tz_name)
        .with_context(|| format!("'{tz_name}' is not a time zone"))?;
    let since = parse_since(&args.since)?;
    let hits = opened
        .store
        .search(&Filter {
            since_us: Some(since),
            limit: Some(u32::MAX),
            ..Filter::default()
        })
        .await?;
    let starts = opened
        .store
        .search(&Filter {
            event: Some("session_start".into()),
            limit: Some(u32::MAX),
            ..Filter::default()
        })
        .await?;
    let clients: HashMap<String, (IpAddr, String)> = starts
        .into_iter()
        .filter_map(|h| match h.event {
            Event::SessionStart(s) => {
                let ip = s
                    .client_addr
                    .parse::<std::net::SocketAddr>()
                    .map(|a| a.ip())
                    .ok()?;
                Some((s.session, (ip, s.application_name.unwrap_or_default())))
            }
            _ => None,
        })
        .collect();
    let mut catalogs: HashMap<
        String,
        Option<std::sync::Arc<portcullis_gateway::catalog::Snapshot>>,
    > = HashMap::new();
    let runtime = match (&opened.config, args.no_catalog) {
        (Some(c), false) => portcullis_gateway::Runtime::build(c.clone(), None).ok(),
        _ => None,
    };

    let bar = crate::audit_cmd::progress(hits.len() as u64, "re-deciding");
    let mut changes = Vec::new();
    let mut skipped = 0u64;
    let mut decided = 0u64;
    for hit in hits.iter().rev() {
        bar.inc(1);
        let Event::Statement(s) = &hit.event else {
            continue;
        };
        if !s.truncated.is_empty() {
            // Only the start of the text (or of its search path) is kept: deciding that
            // would decide another statement.
            skipped += 1;
            continue;
        }
        let Ok(statements) = parse(&s.text, LexerOptions::default()).result else {
            skipped += 1;
            continue;
        };
        if s.origin == "function_call"
            || statements.iter().any(|p| {
                p.facts
                    .tags
                    .contains(&portcullis_sql::analysis::Tag::Execute)
            })
        {
            // What ran is not in the text: a prepared statement or a function by OID.
            skipped += 1;
            continue;
        }
        if let Some(rt) = &runtime
            && !catalogs.contains_key(&s.target)
        {
            let c = portcullis_gateway::fetch_catalog(rt, &s.target, &s.groups)
                .await
                .ok();
            catalogs.insert(s.target.clone(), c);
        }
        let catalog: &dyn Catalog = match catalogs.get(&s.target) {
            Some(Some(c)) => c.as_ref(),
            _ => &NoCatalog,
        };
        let (ip, app) = clients
            .get(&s.session)
            .cloned()
            .unwrap_or((IpAddr::from([127, 0, 0, 1]), String::new()));
        let now = jiff::Timestamp::from_microsecond(hit.time_us)?;
        let env = Environment {
            target: &s.target,
            role: &s.upstream_role,
            client_addr: ip,
            application_name: &app,
            now,
            timezone: &tz,
        };
        let search_path = if s.search_path.is_empty() {
            vec!["$user".to_string(), "public".to_string()]
        } else {
            s.search_path.clone()
        };
        // The strictest decision over the text's statements, as the gateway refuses a
        // whole query for one refusal.
        let mut worst: Option<portcullis_policy::Decision> = None;
        for p in &statements {
            let d = store_policies.decide(
                Requester {
                    subject: &s.subject,
                    groups: &s.groups,
                },
                &env,
                StatementInput {
                    facts: &p.facts,
                    text: &p.text,
                    search_path: &search_path,
                },
                catalog,
            );
            if worst
                .as_ref()
                .is_none_or(|w| d.outcome.kind() > w.outcome.kind())
            {
                worst = Some(d);
            }
        }
        let Some(d) = worst else {
            skipped += 1;
            continue;
        };
        decided += 1;
        let to = d.outcome.name();
        if to != s.decision {
            changes.push(Change {
                session: s.session.clone(),
                seq: s.seq,
                time: portcullis_audit::replay::format_time(hit.time_us),
                subject: s.subject.clone(),
                text: s.text.clone(),
                from: s.decision.clone(),
                to: to.to_string(),
                policies: d.deciding_policies(),
            });
        }
    }
    bar.finish_and_clear();

    if args.json {
        let out = serde_json::json!({
            "decided": decided,
            "skipped": skipped,
            "changes": changes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_report(&changes, decided, skipped);
    }
    if args.check && !changes.is_empty() {
        std::process::exit(2);
    }
    Ok(())
}

fn print_report(changes: &[Change], decided: u64, skipped: u64) {
    println!(
        "re-decided {decided} statements ({skipped} skipped: EXECUTE of prepared statements, fast-path calls, text that does not parse or was cut at the size cap)"
    );
    if changes.is_empty() {
        println!("no decision would change");
        return;
    }
    // category → policy → subject → changes
    let mut groups: BTreeMap<&str, BTreeMap<String, BTreeMap<&str, Vec<&Change>>>> =
        BTreeMap::new();
    for c in changes {
        let policy = if c.policies.is_empty() {
            "(no policy permits it)".to_string()
        } else {
            c.policies.join(", ")
        };
        groups
            .entry(category(&c.to))
            .or_default()
            .entry(policy)
            .or_default()
            .entry(&c.subject)
            .or_default()
            .push(c);
    }
    for (cat, policies) in &groups {
        let n: usize = policies
            .values()
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum();
        println!("\n{cat}: {n} statement{}", if n == 1 { "" } else { "s" });
        for (policy, subjects) in policies {
            println!("  by {policy}:");
            for (subject, list) in subjects {
                println!("    {subject}: {}", list.len());
                for c in list.iter().take(3) {
                    println!(
                        "      {} {}#{} (was {}): {}",
                        c.time,
                        c.session,
                        c.seq,
                        c.from,
                        c.text.split_whitespace().collect::<Vec<_>>().join(" ")
                    );
                }
                if list.len() > 3 {
                    println!("      … and {} more", list.len() - 3);
                }
            }
        }
    }
}
