//! `portcullis sessions`: the control port's session list and revocation, for operators.

use anyhow::{Context, bail};
use serde_json::json;

#[derive(clap::Subcommand)]
pub enum SessionsCommand {
    /// Live sessions: who, where from, to which target, as which role.
    List(AdminArgs),
    /// End every session of a subject, and refuse their new logins for a while.
    Kill {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        subject: String,
        /// Refuse the subject's new logins for this long, e.g. 1h.
        #[arg(long)]
        block_for: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct AdminArgs {
    /// The gateway's control port, e.g. http://127.0.0.1:6433.
    #[arg(long, env = "PORTCULLIS_ADMIN")]
    pub(crate) admin: String,
    /// An access token of a member of the gateway's admin groups (default: your login's).
    #[arg(long, env = "PORTCULLIS_TOKEN")]
    token: Option<String>,
    /// CA certificates for the control port's TLS certificate, beside the system's.
    #[arg(long, env = "PORTCULLIS_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
}

impl AdminArgs {
    pub(crate) fn http(&self) -> anyhow::Result<reqwest::Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(15));
        if let Some(path) = &self.ca_file {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            b = b.tls_certs_merge(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        Ok(b.build()?)
    }

    pub(crate) async fn token(&self) -> anyhow::Result<String> {
        match &self.token {
            Some(t) => Ok(t.clone()),
            None => crate::login::fresh_token(None, std::time::Duration::from_secs(30)).await,
        }
    }
}

pub(crate) async fn answer(resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let body: serde_json::Value = resp
        .json()
        .await
        .context("the control port's answer is not JSON")?;
    if !status.is_success() {
        bail!(
            "{}",
            body["error"].as_str().unwrap_or("the control port refused")
        );
    }
    Ok(body)
}

pub async fn run(command: SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::List(admin) => {
            let http = admin.http()?;
            let body = answer(
                http.get(format!("{}/v1/sessions", admin.admin.trim_end_matches('/')))
                    .bearer_auth(admin.token().await?)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {}", admin.admin))?,
            )
            .await?;
            let sessions = body["sessions"].as_array().cloned().unwrap_or_default();
            if sessions.is_empty() {
                println!("no live sessions");
            }
            for s in sessions {
                println!(
                    "{}  {} ({})  from {}  to {} as {}",
                    s["id"].as_str().unwrap_or(""),
                    s["subject"].as_str().unwrap_or(""),
                    s["groups"]
                        .as_array()
                        .map(|g| g
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default(),
                    s["client_addr"].as_str().unwrap_or(""),
                    s["target"].as_str().unwrap_or(""),
                    s["upstream_role"].as_str().unwrap_or(""),
                );
            }
        }
        SessionsCommand::Kill {
            admin,
            subject,
            block_for,
        } => {
            let http = admin.http()?;
            let mut req = json!({ "subject": subject });
            if let Some(b) = block_for {
                req["block_for"] = json!(b);
            }
            let body = answer(
                http.post(format!(
                    "{}/v1/sessions/kill",
                    admin.admin.trim_end_matches('/')
                ))
                .bearer_auth(admin.token().await?)
                .json(&req)
                .send()
                .await
                .with_context(|| format!("cannot reach {}", admin.admin))?,
            )
            .await?;
            println!(
                "ended {} sessions of {subject}",
                body["ended"].as_u64().unwrap_or(0)
            );
        }
    }
    Ok(())
}
