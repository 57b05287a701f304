//! `portcullis login` and `portcullis token`: the OAuth 2.0 device authorization grant
//! (RFC 8628) against the company's identity provider, and a token cache that refreshes
//! itself, so nobody handles a database password.
//!
//! Tokens are kept in `$XDG_CONFIG_HOME/portcullis/tokens.json` (else
//! `~/.config/portcullis/tokens.json`), readable only by the user (mode 0600), one entry
//! per issuer.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One issuer's tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cached {
    pub issuer: String,
    pub client_id: String,
    pub token_endpoint: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Store {
    issuers: BTreeMap<String, Cached>,
}

fn store_path() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep tokens")?;
    Ok(base.join("portcullis").join("tokens.json"))
}

fn load() -> anyhow::Result<Store> {
    let path = store_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a token cache", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save(store: &Store) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let path = store_path()?;
    let dir = path.parent().context("token cache path has no directory")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // Written beside, then renamed: a reader never sees half a file.
    let tmp = dir.join(".tokens.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(serde_json::to_string_pretty(store)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn http() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?)
}

#[derive(Deserialize)]
struct Discovery {
    device_authorization_endpoint: Option<String>,
    token_endpoint: String,
}

async fn discover(http: &reqwest::Client, issuer: &str) -> anyhow::Result<Discovery> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let resp = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the identity provider at {url}"))?;
    if !resp.status().is_success() {
        bail!("{url} answered {}", resp.status());
    }
    resp.json()
        .await
        .with_context(|| format!("{url} is not an OpenID configuration"))
}

#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: String,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default = "default_interval")]
    interval: u64,
}

fn default_interval() -> u64 {
    5
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    error_description: Option<String>,
}

/// What a token endpoint said.
enum Answer {
    Token(TokenResponse),
    Error(TokenError),
}

async fn token_request(
    http: &reqwest::Client,
    endpoint: &str,
    form: &[(&str, &str)],
) -> anyhow::Result<Answer> {
    let resp = http
        .post(endpoint)
        .form(form)
        .send()
        .await
        .with_context(|| format!("cannot reach the token endpoint {endpoint}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    if status.is_success() {
        return Ok(Answer::Token(serde_json::from_str(&body).with_context(
            || format!("the token endpoint's answer has no access_token: {body}"),
        )?));
    }
    match serde_json::from_str::<TokenError>(&body) {
        Ok(e) => Ok(Answer::Error(e)),
        Err(_) => bail!("the token endpoint answered {status}: {body}"),
    }
}

fn cached(
    issuer: &str,
    client_id: &str,
    token_endpoint: &str,
    t: TokenResponse,
    old_refresh: Option<String>,
) -> Cached {
    Cached {
        issuer: issuer.to_string(),
        client_id: client_id.to_string(),
        token_endpoint: token_endpoint.to_string(),
        access_token: t.access_token,
        refresh_token: t.refresh_token.or(old_refresh),
        expires_at: now() + t.expires_in.unwrap_or(300),
    }
}

/// `portcullis login`: the device flow, then the tokens are cached.
pub async fn login(
    issuer: &str,
    client_id: &str,
    scope: &str,
    print_env: bool,
) -> anyhow::Result<()> {
    let http = http()?;
    let d = discover(&http, issuer).await?;
    let device_endpoint = d.device_authorization_endpoint.with_context(|| {
        format!("{issuer} does not offer the device authorization grant (no device_authorization_endpoint)")
    })?;
    let resp = http
        .post(&device_endpoint)
        .form(&[("client_id", client_id), ("scope", scope)])
        .send()
        .await
        .with_context(|| format!("cannot reach {device_endpoint}"))?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        bail!("the identity provider refused to start a login ({status}): {body}");
    }
    let auth: DeviceAuthorization = serde_json::from_str(&body)
        .with_context(|| format!("not a device authorization answer: {body}"))?;
    eprintln!(
        "To log in, open {} and enter the code {}",
        auth.verification_uri, auth.user_code
    );
    if let Some(complete) = &auth.verification_uri_complete {
        eprintln!("(or open {complete})");
    }
    eprintln!("Waiting for you to approve the login…");
    let deadline = std::time::Instant::now() + Duration::from_secs(auth.expires_in);
    let mut interval = auth.interval.max(1);
    let token = loop {
        // RFC 8628 §3.5: poll no faster than the interval the server asked for.
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if std::time::Instant::now() > deadline {
            bail!("the code expired before the login was approved; run `portcullis login` again");
        }
        let answer = token_request(
            &http,
            &d.token_endpoint,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &auth.device_code),
                ("client_id", client_id),
            ],
        )
        .await?;
        match answer {
            Answer::Token(t) => break t,
            Answer::Error(e) => match e.error.as_str() {
                "authorization_pending" => continue,
                "slow_down" => interval += 5,
                "expired_token" => bail!(
                    "the code expired before the login was approved; run `portcullis login` again"
                ),
                "access_denied" => bail!("the login was denied"),
                other => bail!(
                    "the identity provider refused the login: {other}{}",
                    e.error_description
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                ),
            },
        }
    };
    let entry = cached(issuer, client_id, &d.token_endpoint, token, None);
    let mut store = load()?;
    store.issuers.insert(issuer.to_string(), entry.clone());
    save(&store)?;
    eprintln!(
        "Logged in; tokens saved in {} (refreshed by `portcullis token` as they expire)",
        store_path()?.display()
    );
    if print_env {
        print_environment(&entry);
    }
    Ok(())
}

fn print_environment(entry: &Cached) {
    println!("export PGPASSWORD='{}'", entry.access_token);
    println!("export PGSSLMODE=require");
}

/// The cached entry for `issuer` (or the only one cached).
fn entry_for(store: &Store, issuer: Option<&str>) -> anyhow::Result<Cached> {
    match issuer {
        Some(i) => store.issuers.get(i).cloned().with_context(|| {
            format!("not logged in to {i}; run `portcullis login --issuer {i} --client-id …`")
        }),
        None => {
            let mut all = store.issuers.values();
            match (all.next(), all.next()) {
                (Some(only), None) => Ok(only.clone()),
                (None, _) => {
                    bail!("not logged in; run `portcullis login --issuer … --client-id …`")
                }
                _ => bail!("logged in to several issuers; say which with --issuer"),
            }
        }
    }
}

/// An access token valid for at least `min_valid`, refreshed (and cached) if needed.
pub async fn fresh_token(issuer: Option<&str>, min_valid: Duration) -> anyhow::Result<String> {
    let mut store = load()?;
    let entry = entry_for(&store, issuer)?;
    if entry.expires_at - now() > min_valid.as_secs() as i64 {
        return Ok(entry.access_token);
    }
    let Some(refresh) = entry.refresh_token.clone() else {
        bail!(
            "the access token expires soon and there is no refresh token; run `portcullis login` again"
        );
    };
    let http = http()?;
    let answer = token_request(
        &http,
        &entry.token_endpoint,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &entry.client_id),
        ],
    )
    .await?;
    match answer {
        Answer::Token(t) => {
            let updated = cached(
                &entry.issuer,
                &entry.client_id,
                &entry.token_endpoint,
                t,
                Some(refresh),
            );
            store.issuers.insert(entry.issuer.clone(), updated.clone());
            save(&store)?;
            Ok(updated.access_token)
        }
        Answer::Error(e) => bail!(
            "the identity provider refused to refresh the token ({}); run `portcullis login` again",
            e.error
        ),
    }
}

/// `portcullis token`: prints a fresh access token.
pub async fn token(
    issuer: Option<&str>,
    min_valid: Duration,
    print_env: bool,
) -> anyhow::Result<()> {
    let t = fresh_token(issuer, min_valid).await?;
    if print_env {
        println!("export PGPASSWORD='{t}'");
        println!("export PGSSLMODE=require");
    } else {
        println!("{t}");
    }
    Ok(())
}
