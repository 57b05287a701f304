//! `portcullis`: serve the gateway, run the demo, mint development tokens.

mod demo;
mod dev_token;
mod logging;
mod policy_cmd;

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
    },
    /// Tools for policy authors.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
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
    Explain {
        /// The SQL to explain (several statements are explained one by one).
        sql: String,
        /// The caller's subject.
        #[arg(long, default_value = "someone")]
        user: String,
        /// The caller's groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// When, e.g. 2026-11-24T10:00 (in the policy time zone) or 2026-11-24T10:00:00Z.
        #[arg(long)]
        at: Option<String>,
        /// The target (database name clients use); defaults to the first configured.
        #[arg(long)]
        target: Option<String>,
        /// The upstream role, if not the one the target maps the groups to.
        #[arg(long)]
        role: Option<String>,
        /// Gateway configuration to take policies, time zone and catalog from; defaults to
        /// PORTCULLIS_CONFIG or the running demo's.
        #[arg(long, env = "PORTCULLIS_CONFIG")]
        config: Option<PathBuf>,
        /// Policy files or directories, instead of a configuration (no catalog).
        #[arg(long)]
        policies: Vec<PathBuf>,
        /// Time zone for --policies (default UTC) or to override the configuration's.
        #[arg(long)]
        timezone: Option<String>,
        #[arg(long, default_value = "127.0.0.1")]
        client_address: std::net::IpAddr,
        #[arg(long, default_value = "")]
        application_name: String,
        /// The search path unqualified names resolve through when the catalog does not know them.
        #[arg(long, value_delimiter = ',', default_value = "$user,public")]
        search_path: Vec<String>,
        /// Do not connect to the target to read its catalog.
        #[arg(long)]
        no_catalog: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(cli.log.as_deref(), cli.log_format);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve { config } => serve(config).await,
            Command::Demo { dir, port } => demo::run(dir, port).await,
            Command::Policy {
                command: PolicyCommand::Check { paths },
            } => policy_cmd::check(&paths),
            Command::Policy {
                command:
                    PolicyCommand::Explain {
                        sql,
                        user,
                        groups,
                        at,
                        target,
                        role,
                        config,
                        policies,
                        timezone,
                        client_address,
                        application_name,
                        search_path,
                        no_catalog,
                        json,
                    },
            } => {
                policy_cmd::explain(policy_cmd::ExplainArgs {
                    config,
                    policies,
                    timezone,
                    user,
                    groups,
                    at,
                    target,
                    role,
                    client_address,
                    application_name,
                    search_path,
                    no_catalog,
                    json,
                    sql,
                })
                .await
            }
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
