//! `portcullis`: serve the gateway, run the demo, mint development tokens, and read the
//! audit trail.

mod approvals_cmd;
mod audit_cmd;
mod audit_verify;
mod connect;
mod demo;
mod dev_token;
mod logging;
mod login;
mod policy_cmd;
mod policy_test;
mod sessions_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A statement-aware gateway in front of PostgreSQL"
)]
struct Cli {
    /// Log filter, e.g. `info` or `portcullis_gateway=debug` (overrides RUST_LOG).
    #[arg(long, global = true)]
    log: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a configuration file.
    Serve {
        #[arg(long, short, env = "PORTCULLIS_CONFIG")]
        config: PathBuf,
    },
    /// Start a throwaway PostgreSQL with sample data, a development identity provider and
    /// the gateway; Ctrl-C removes everything.
    Demo {
        /// Working directory for the demo's files.
        #[arg(long, default_value = ".demo")]
        dir: PathBuf,
        /// Port for the gateway (0 picks a free one).
        #[arg(long, default_value_t = 6432)]
        port: u16,
        /// Decide as if it were this moment, e.g. 2026-11-24T20:00:00Z, to try the time
        /// rules (token expiry still follows the real clock).
        #[arg(long)]
        at: Option<jiff::Timestamp>,
    },
    /// Tools for policy authors.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit trail: verify it, search it, export it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print a recorded session as it happened: statements, decisions, results, timing.
    Replay {
        /// The session id (`audit search` shows it).
        session: String,
        #[command(flatten)]
        store: audit_cmd::StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Log in to the identity provider (OAuth device flow) and keep the tokens for
    /// `portcullis token` and `portcullis connect`.
    Login {
        /// The issuer URL.
        #[arg(long, env = "PORTCULLIS_ISSUER")]
        issuer: String,
        /// The IdP client registered for the CLI.
        #[arg(long, env = "PORTCULLIS_CLIENT_ID")]
        client_id: String,
        #[arg(long, default_value = "openid offline_access")]
        scope: String,
        /// Also print `export PGPASSWORD=…` lines for a shell.
        #[arg(long)]
        print_env: bool,
    },
    /// Print a fresh access token (refreshed when near expiry), for PGPASSWORD.
    Token {
        #[arg(long, env = "PORTCULLIS_ISSUER")]
        issuer: Option<String>,
        /// Refresh when the token is valid for less than this.
        #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
        min_valid: std::time::Duration,
        /// Print `export PGPASSWORD=…` lines instead of the bare token.
        #[arg(long)]
        print_env: bool,
    },
    /// A local listener for tools that cannot send a token: they connect to it without a
    /// password, and it logs in to the gateway with yours.
    Connect(Box<connect::ConnectArgs>),
    /// Decide statements held for approval, through the gateway's control port.
    Approvals {
        #[command(subcommand)]
        command: approvals_cmd::ApprovalsCommand,
    },
    /// List or end live sessions through the gateway's control port.
    Sessions {
        #[command(subcommand)]
        command: sessions_cmd::SessionsCommand,
    },
    /// Print an access token from the demo's development issuer.
    DevToken {
        /// The person: alice, bob, carol or dave (or anyone with --groups).
        user: String,
        /// Comma-separated groups instead of the person's defaults.
        #[arg(long)]
        groups: Option<String>,
        /// Token lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Issuer URL; defaults to PORTCULLIS_ISSUER or the running demo's.
        #[arg(long, env = "PORTCULLIS_ISSUER")]
        issuer: Option<String>,
        /// The demo's directory, to find its issuer.
        #[arg(long, default_value = ".demo")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files against the gateway's schema; errors carry file, line and column.
    Check {
        /// Policy files or directories of *.cedar files.
        paths: Vec<PathBuf>,
    },
    /// Show a statement's facts, the decision, and which policies permitted or forbade it.
    /// Exits 2 when the statement would be refused.
    Explain(Box<policy_cmd::ExplainArgs>),
    /// Re-decide recorded statements under new policies and report what would change.
    Test(Box<policy_test::TestArgs>),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check every link and checkpoint signature, and the store against its witnesses;
    /// exits 1 naming the first broken event or the events missing.
    Verify(Box<audit_verify::VerifyArgs>),
    /// Find statements (or other events), newest first.
    Search(Box<audit_cmd::SearchArgs>),
    /// Write events as JSON Lines, for a SIEM.
    Export {
        #[command(flatten)]
        store: audit_cmd::StoreArgs,
        /// From: an age (7d) or a time.
        #[arg(long)]
        since: Option<String>,
        /// File to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Create a checkpoint signing key (Ed25519, PKCS#8 PEM, mode 0600).
    Keygen { path: PathBuf },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Serve { .. } | Command::Demo { .. } => "info",
        _ => "warn",
    };
    logging::init(cli.log.as_deref(), cli.log_format, default);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Demo { dir, port, at } => demo::run(dir, port, at).await,
            Command::Policy {
                command: PolicyCommand::Check { paths },
            } => policy_cmd::check(&paths),
            Command::Policy {
                command: PolicyCommand::Explain(args),
            } => policy_cmd::explain(*args).await,
            Command::Policy {
                command: PolicyCommand::Test(args),
            } => policy_test::run(*args).await,
            Command::Audit { command } => match command {
                AuditCommand::Verify(args) => audit_verify::verify(*args).await,
                AuditCommand::Search(args) => audit_cmd::search(*args).await,
                AuditCommand::Export {
                    store,
                    since,
                    output,
                } => audit_cmd::export(store, since, output).await,
                AuditCommand::Keygen { path } => audit_cmd::keygen(path),
            },
            Command::Replay {
                session,
                store,
                json,
            } => audit_cmd::replay(store, session, json).await,
            Command::Login {
                issuer,
                client_id,
                scope,
                print_env,
            } => login::login(&issuer, &client_id, &scope, print_env).await,
            Command::Token {
                issuer,
                min_valid,
                print_env,
            } => login::token(issuer.as_deref(), min_valid, print_env).await,
            Command::Connect(args) => connect::run(*args).await,
            Command::Sessions { command } => sessions_cmd::run(command).await,
            Command::Approvals { command } => approvals_cmd::run(command).await,
            Command::DevToken {
                user,
                groups,
                ttl,
                issuer,
                dir,
            } => dev_token::run(&user, groups.as_deref(), ttl, issuer, &dir).await,
        }
    })
}

async fn serve(config: PathBuf) -> anyhow::Result<()> {
    let gateway = portcullis_gateway::Gateway::start(&config, Default::default()).await?;
    gateway.reload_on_sighup()?;
    eprintln!("portcullis: listening on {}", gateway.local_addr());
    wait_for_shutdown().await?;
    eprintln!("portcullis: shutting down");
    // Everything recorded is written and the chain's head signed before exit.
    gateway.flush_audit().await;
    Ok(())
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn wait_for_shutdown() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
