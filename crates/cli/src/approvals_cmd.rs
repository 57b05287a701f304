//! `portcullis approvals`: the requests of statements held for approval, for approvers:
//! listed, shown, approved and denied through the control port with the approver's own
//! token.

use anyhow::Context;
use serde_json::{Value, json};

use crate::sessions_cmd::{AdminArgs, answer};

#[derive(clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Pending requests you may decide (and your own).
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One request: who, from where, which target and role, the statement, the policy.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
    },
    /// Approve a request: its statement runs, exactly as sent.
    Approve {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a request; the requester is told your reason.
    Deny {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
        #[arg(long)]
        reason: String,
    },
}

/// Text from a request as a terminal must show it: control characters (escape sequences,
/// carriage returns) written out, never obeyed, so what the approver reads is what runs.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '\n' => vec!['\n', ' ', ' ', ' ', ' '],
            c if c.is_control() => c.escape_unicode().collect(),
            c => vec![c],
        })
        .collect()
}

fn describe(r: &Value) -> String {
    let s = |k: &str| printable(r[k].as_str().unwrap_or(""));
    let list = |k: &str| {
        let joined = r[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        printable(&joined)
    };
    let mut out = format!(
        "{}  {}  {} ({}) from {} on {} as {}\n  {}\n  needs: a member of {} (policy {}), until {}",
        s("id"),
        s("state"),
        s("subject"),
        list("groups"),
        s("client"),
        s("target"),
        s("upstream_role"),
        s("text"),
        list("approvers"),
        list("policies"),
        s("deadline"),
    );
    if let Some(p) = r["parameters"].as_array().filter(|p| !p.is_empty()) {
        let shown: Vec<String> = p
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let shown = v.as_str().map_or("NULL".into(), |s| {
                    format!("'{}'", printable(&s.replace('\'', "''")))
                });
                format!("${} = {shown}", i + 1)
            })
            .collect();
        out.push_str(&format!("\n  with {}", shown.join(", ")));
    }
    if let Some(runs) = r["runs"].as_str() {
        out.push_str(&format!("\n  which runs: {}", printable(runs)));
    }
    if let Some(by) = r["decided_by"].as_str() {
        out.push_str(&format!("\n  decided by {by}"));
    }
    if let Some(reason) = r["reason"].as_str() {
        out.push_str(&format!(": {}", printable(reason)));
    }
    out
}

pub async fn run(command: ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List { admin, json } => {
            let body = get(&admin, "/v1/approvals").await?;
            let list = body["approvals"].as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no pending approval requests");
            } else {
                for r in &list {
                    println!("{}", describe(r));
                }
            }
        }
        ApprovalsCommand::Show { admin, id } => {
            println!(
                "{}",
                describe(&get(&admin, &format!("/v1/approvals/{id}")).await?)
            );
        }
        ApprovalsCommand::Approve { admin, id, reason } => {
            let r = post(
                &admin,
                &format!("/v1/approvals/{id}/approve"),
                json!({ "reason": reason }),
            )
            .await?;
            println!(
                "approved {}: {}",
                id,
                printable(r["text"].as_str().unwrap_or(""))
            );
        }
        ApprovalsCommand::Deny { admin, id, reason } => {
            let r = post(
                &admin,
                &format!("/v1/approvals/{id}/deny"),
                json!({ "reason": reason }),
            )
            .await?;
            println!(
                "denied {}: {}",
                id,
                printable(r["text"].as_str().unwrap_or(""))
            );
        }
    }
    Ok(())
}

fn url(admin: &AdminArgs, path: &str) -> String {
    format!("{}{path}", admin.admin.trim_end_matches('/'))
}

async fn get(admin: &AdminArgs, path: &str) -> anyhow::Result<Value> {
    answer(
        admin
            .http()?
            .get(url(admin, path))
            .bearer_auth(admin.token().await?)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", admin.admin))?,
    )
    .await
}

async fn post(admin: &AdminArgs, path: &str, body: Value) -> anyhow::Result<Value> {
    answer(
        admin
            .http()?
            .post(url(admin, path))
            .bearer_auth(admin.token().await?)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", admin.admin))?,
    )
    .await
}
