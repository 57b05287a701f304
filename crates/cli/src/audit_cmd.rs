//! `portcullis audit …` and `portcullis replay`: what auditors run against the trail.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use portcullis_audit::replay::{Session, format_time};
use portcullis_audit::{CheckpointKey, Event, Filter, Hit, PublicKey, Store};
use portcullis_gateway::config::SecretRef;

/// Which store to read and the key that verifies it.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Gateway configuration whose `[audit]` store to read; defaults to PORTCULLIS_CONFIG
    /// or the running demo's.
    #[arg(long, env = "PORTCULLIS_CONFIG")]
    pub config: Option<PathBuf>,
    /// The store itself (`sqlite:PATH` or `postgresql://…`), instead of a configuration.
    #[arg(long)]
    pub store: Option<String>,
    /// The PostgreSQL store's password as `env:NAME` or `file:PATH`, with --store.
    #[arg(long)]
    pub password: Option<String>,
}

/// An opened store and, from the configuration, the checkpoint key.
pub struct Opened {
    /// Where it is, for messages.
    pub location: String,
    pub store: Store,
    pub key: Option<PublicKey>,
    pub config: Option<portcullis_gateway::Config>,
}

fn resolve(secret: &str) -> anyhow::Result<String> {
    let s = SecretRef::parse(secret)
        .and_then(|r| r.resolve())
        .map_err(anyhow::Error::msg)?;
    Ok(s.expose().to_string())
}

impl StoreArgs {
    pub async fn open(&self) -> anyhow::Result<Opened> {
        if let Some(location) = &self.store {
            let password = self.password.as_deref().map(resolve).transpose()?;
            let store = Store::open(location, password.as_deref())
                .await
                .with_context(|| format!("cannot open {location}"))?;
            return Ok(Opened {
                location: location.clone(),
                store,
                key: None,
                config: None,
            });
        }
        let path = self
            .config
            .clone()
            .or_else(|| {
                let demo = PathBuf::from(".demo/portcullis.toml");
                demo.exists().then_some(demo)
            })
            .context("give --config (or run the demo in this directory) or --store")?;
        let config = portcullis_gateway::Config::load(&path)?;
        let audit = config.audit.clone();
        let password = audit
            .password
            .as_ref()
            .map(|p| {
                p.resolve()
                    .map(|s| s.expose().to_string())
                    .map_err(anyhow::Error::msg)
            })
            .transpose()?;
        let store = Store::open_with(&audit.store, password.as_deref(), audit.ca_file.as_deref())
            .await
            .with_context(|| format!("cannot open the audit store {}", audit.store))?;
        let key = match audit.signing_key.resolve() {
            Ok(pem) => Some(CheckpointKey::from_pem(pem.expose())?.public()),
            Err(_) => None,
        };
        Ok(Opened {
            location: audit.store.clone(),
            store,
            key,
            config: Some(config),
        })
    }
}

/// A point in time: RFC 3339, a date, or an age such as `7d`, `12h`, `30m`.
pub fn parse_since(text: &str) -> anyhow::Result<i64> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_microsecond());
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return Ok(date
            .at(0, 0, 0, 0)
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)?
            .timestamp()
            .as_microsecond());
    }
    let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let n: i64 = number.parse().with_context(|| {
        format!(
            "'{text}' is not a time (2026-11-24, 2026-11-24T10:00:00Z) or an age (7d, 12h, 30m)"
        )
    })?;
    let seconds = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => bail!("'{text}': use d, h, m or s for an age"),
    };
    Ok(jiff::Timestamp::now().as_microsecond() - n * seconds * 1_000_000)
}

pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} ({{eta}} left)"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// `audit search`'s filters.
#[derive(clap::Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[arg(long)]
    pub subject: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub target: Option<String>,
    /// A table read or written (`schema.table`, or a bare name in any schema).
    #[arg(long)]
    pub table: Option<String>,
    /// allow, deny, needs_approval or mask.
    #[arg(long)]
    pub decision: Option<String>,
    /// Statement kind: select, insert, update, delete, ddl, …
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub sqlstate: Option<String>,
    #[arg(long)]
    pub session: Option<String>,
    /// From: 2026-11-24, 2026-11-24T10:00:00Z, or an age such as 7d.
    #[arg(long)]
    pub since: Option<String>,
    /// Until (exclusive), in the same forms.
    #[arg(long)]
    pub until: Option<String>,
    /// Words that must all appear in the statement text.
    #[arg(long)]
    pub text: Option<String>,
    /// Event kind instead of statements: session_start, session_end, auth_failure, admin,
    /// security.
    #[arg(long)]
    pub event: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
}

pub async fn search(args: SearchArgs) -> anyhow::Result<()> {
    let filter = Filter {
        event: args.event.clone(),
        subject: args.subject.clone(),
        group: args.group.clone(),
        target: args.target.clone(),
        table: args.table.clone(),
        decision: args.decision.clone(),
        statement_kind: args.kind.clone(),
        sqlstate: args.sqlstate.clone(),
        session: args.session.clone(),
        since_us: args.since.as_deref().map(parse_since).transpose()?,
        until_us: args.until.as_deref().map(parse_since).transpose()?,
        text: args.text.clone(),
        limit: Some(args.limit),
    };
    let mut opened = args.store.open().await?;
    let hits = opened.store.search(&filter).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for h in &hits {
            let line = serde_json::json!({
                "seq": h.seq,
                "time": format_time(h.time_us),
                "event": h.event,
                "result": h.result,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if hits.is_empty() {
        writeln!(out, "no matching events")?;
        return Ok(());
    }
    for h in &hits {
        writeln!(out, "{}", summary(h))?;
    }
    Ok(())
}

fn clip(text: &str, n: usize) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > n {
        format!("{}…", one_line.chars().take(n).collect::<String>())
    } else {
        one_line
    }
}

/// One line per hit, for people.
fn summary(h: &Hit) -> String {
    let time = format_time(h.time_us);
    match &h.event {
        Event::Statement(s) => {
            let outcome = match &h.result {
                Some(r) => match (&r.sqlstate, &r.command) {
                    (Some(code), _) => format!("ERROR {code}"),
                    (None, Some(c)) => c.clone(),
                    _ => String::new(),
                },
                None => s
                    .sqlstate
                    .as_ref()
                    .map(|c| format!("refused {c}"))
                    .unwrap_or_default(),
            };
            format!(
                "{time}  {}#{}  {}  {}  {}  {}  {}",
                s.session,
                s.seq,
                s.subject,
                s.target,
                s.decision,
                outcome,
                clip(&s.text, 80)
            )
        }
        Event::SessionStart(s) => format!(
            "{time}  {}  session start  {} ({}) from {} to {} as {}",
            s.session,
            s.subject,
            s.groups.join(", "),
            s.client_addr,
            s.target,
            s.upstream_role
        ),
        Event::SessionEnd(s) => format!(
            "{time}  {}  session end  {}  {} after {} ms, {} statements",
            s.session, s.subject, s.reason, s.duration_ms, s.statements
        ),
        Event::AuthFailure(f) => format!(
            "{time}  auth failure  {} from {} to {}: {} {}",
            f.subject.as_deref().unwrap_or("?"),
            f.client_addr,
            f.target.as_deref().unwrap_or("?"),
            f.sqlstate,
            f.reason
        ),
        Event::Admin(a) => format!("{time}  admin  {}  {}", a.action, a.detail),
        Event::Security(e) => format!(
            "{time}  {}  SECURITY {}  {}  {}: {}",
            e.session, e.what, e.subject, e.target, e.detail
        ),
        Event::Result(r) => format!("{time}  result  {}#{}", r.session, r.seq),
        Event::Hold(e) => format!(
            "{time}  {}  hold {}  {}  request {} for {}: {}  {}",
            e.session,
            e.state,
            e.subject,
            e.request,
            e.approvers.join(","),
            e.detail,
            e.text
        ),
    }
}

/// `audit export`: JSON Lines to a file or stdout.
pub async fn export(
    args: StoreArgs,
    since: Option<String>,
    output: Option<PathBuf>,
) -> anyhow::Result<()> {
    let since = since.as_deref().map(parse_since).transpose()?;
    let mut opened = args.open().await?;
    let n = match output {
        Some(path) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(&path)
                    .with_context(|| format!("cannot write {}", path.display()))?,
            );
            let n = portcullis_audit::export::export(&mut opened.store, since, &mut f).await?;
            f.flush()?;
            n
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = portcullis_audit::export::export(&mut opened.store, since, &mut out).await?;
            out.flush()?;
            n
        }
    };
    eprintln!("exported {n} events");
    Ok(())
}

/// `audit keygen PATH`: a new checkpoint signing key, readable only by its owner.
pub fn keygen(path: PathBuf) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let pem = CheckpointKey::generate_pem();
    let key = CheckpointKey::from_pem(&pem)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(pem.as_bytes())?;
    println!(
        "wrote {}; public key (for `audit verify --public-key`): {}",
        path.display(),
        key.public().to_hex()
    );
    Ok(())
}

/// `replay SESSION`: the session as it happened.
pub async fn replay(args: StoreArgs, session: String, json: bool) -> anyhow::Result<()> {
    let mut opened = args.open().await?;
    let records: Vec<_> = opened
        .store
        .session(&session)
        .await?
        .into_iter()
        .map(|s| s.record)
        .collect();
    if records.is_empty() {
        bail!("no events for session {session} (find sessions with `portcullis audit search`)");
    }
    let s = Session::from_records(&session, &records);
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.render());
    }
    Ok(())
}
