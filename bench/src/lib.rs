//! What the benchmarks share: running pgbench against an endpoint, and a gateway in
//! front of a benchmark cluster.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use portcullis_sandbox::{DevIssuer, PgCluster};

/// Somewhere pgbench can connect.
pub struct Endpoint {
    pub name: &'static str,
    pub port: u16,
    pub user: String,
    pub password: String,
}

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn pgbench(endpoint: &Endpoint, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("pgbench")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", endpoint.port.to_string())
        .env("PGUSER", &endpoint.user)
        .env("PGPASSWORD", &endpoint.password)
        .env("PGSSLMODE", "disable")
        .args(args)
        .arg("bench")
        .output()
        .context("run pgbench")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("pgbench against {} failed:\n{text}", endpoint.name);
    }
    Ok(text)
}

pub fn tps(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no tps in pgbench output:\n{output}"))
}

/// The value of a pgbench output line such as `latency average = 0.123 ms`.
pub fn latency_ms(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|l| l.trim().strip_prefix("latency average = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no latency in pgbench output:\n{output}"))
}

/// Starts a gateway for database `bench` of `cluster` that permits everything (every
/// statement is still analysed, decided and audited), keeping its audit trail at
/// `audit_store` (relative to `dir`).
pub async fn start_gateway(
    dir: &Path,
    cluster: &PgCluster,
    issuer: &DevIssuer,
    audit_store: &str,
) -> anyhow::Result<portcullis_gateway::Gateway> {
    std::fs::write(dir.join("superuser"), cluster.password())?;
    std::fs::write(
        dir.join("bench.cedar"),
        "permit(principal, action, resource);\n",
    )?;
    let key = dir.join("audit.key");
    if !key.exists() {
        std::fs::write(&key, portcullis_audit::CheckpointKey::generate_pem())?;
    }
    let config = format!(
        "[listen]\naddress = \"127.0.0.1:0\"\nrequire_tls = false\n\n[identity]\nissuer = \"{}\"\n\n[policy]\npaths = [\"bench.cedar\"]\n\n\
         [audit]\nstore = \"{audit_store}\"\nsigning_key = \"file:audit.key\"\n\n\
         [[target]]\nname = \"bench\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"bench\"\ntls = \"disable\"\n\
         [[target.role]]\nname = \"{}\"\nsecret = \"file:superuser\"\ngroups = [\"bench\"]\n",
        issuer.url(),
        cluster.port(),
        cluster.superuser()
    );
    let name = format!(
        "portcullis-{}.toml",
        audit_store.replace(['/', ':', '.'], "_")
    );
    let config_path = dir.join(name);
    std::fs::write(&config_path, config)?;
    Ok(portcullis_gateway::Gateway::start(&config_path, Default::default()).await?)
}
