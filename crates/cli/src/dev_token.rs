//! `portcullis dev-token`: asks the demo's development issuer for a token.

use std::path::Path;

use anyhow::{Context, bail};

/// Finds the issuer URL in the demo's `demo.env`.
fn issuer_from_demo(dir: &Path) -> anyhow::Result<String> {
    let env = dir.join("demo.env");
    let text = std::fs::read_to_string(&env).with_context(|| {
        format!(
            "no --issuer given and cannot read {} (is `portcullis demo` running?)",
            env.display()
        )
    })?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("export PORTCULLIS_ISSUER=")
                .or_else(|| l.strip_prefix("PORTCULLIS_ISSUER="))
        })
        .map(|s| s.trim_matches('\'').trim_matches('"').to_string())
        .with_context(|| format!("{} does not name PORTCULLIS_ISSUER", env.display()))
}

pub async fn run(
    user: &str,
    groups: Option<&str>,
    ttl: u64,
    issuer: Option<String>,
    dir: &Path,
) -> anyhow::Result<()> {
    let issuer = match issuer {
        Some(i) => i,
        None => issuer_from_demo(dir)?,
    };
    let mut url = reqwest::Url::parse(&format!("{}/dev/token", issuer.trim_end_matches('/')))
        .with_context(|| format!("'{issuer}' is not a URL"))?;
    url.query_pairs_mut()
        .append_pair("sub", user)
        .append_pair("ttl", &ttl.to_string());
    if let Some(g) = groups {
        url.query_pairs_mut().append_pair("groups", g);
    }
    let resp = reqwest::Client::new()
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach the development issuer at {issuer}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        bail!("the development issuer refused: {body}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&body).context("the issuer's answer is not JSON")?;
    let token = json["access_token"]
        .as_str()
        .context("the issuer's answer has no access_token")?;
    println!("{token}");
    Ok(())
}
