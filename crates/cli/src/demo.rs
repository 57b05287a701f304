//! `portcullis demo`: a throwaway PostgreSQL with sample data, a development identity
//! provider and the gateway, wired together; Ctrl-C removes everything.

use std::path::{Path, PathBuf};

use anyhow::Context;
use portcullis_sandbox::{DevIssuer, PgCluster, PgOptions, TestCa};

const SEED: &str = include_str!("demo/seed.sql");

/// The example policies shipped in the repository's `policies/` directory.
pub const EXAMPLE_POLICIES: &[(&str, &str)] = &[
    (
        "00-baseline.cedar",
        include_str!("../../../policies/00-baseline.cedar"),
    ),
    (
        "10-data-science.cedar",
        include_str!("../../../policies/10-data-science.cedar"),
    ),
    (
        "20-writes.cedar",
        include_str!("../../../policies/20-writes.cedar"),
    ),
    (
        "30-ddl.cedar",
        include_str!("../../../policies/30-ddl.cedar"),
    ),
    (
        "40-guardrails.cedar",
        include_str!("../../../policies/40-guardrails.cedar"),
    ),
];

/// The roles the demo's gateway logs in as and the groups that may use them.
const ROLES: &[(&str, &[&str])] = &[
    ("analyst", &["data-science"]),
    ("app_writer", &["engineering", "managers"]),
    ("dba", &["dba"]),
];

fn random_secret() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // An existing file keeps its mode through `open`.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

fn port_free(port: u16) -> bool {
    port == 0 || std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub async fn run(dir: PathBuf, port: u16, at: Option<jiff::Timestamp>) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("secrets"))?;
    let dir = dir.canonicalize()?;

    eprintln!("portcullis demo: starting PostgreSQL…");
    let cluster = PgCluster::start(PgOptions::default()).context("cannot start PostgreSQL")?;
    // The cluster starts with the sandbox's well-known superuser password; nobody needs it
    // (the demo talks to the server over its private socket), so make it unguessable.
    cluster.psql(
        "postgres",
        &format!(
            "ALTER ROLE {} PASSWORD '{}'",
            cluster.superuser(),
            random_secret()
        ),
    )?;
    cluster.psql("postgres", "CREATE DATABASE analytics")?;
    cluster
        .psql("analytics", SEED)
        .context("cannot load the sample data")?;
    let mut roles_toml = String::new();
    for (role, groups) in ROLES {
        let secret = random_secret();
        cluster.psql(
            "analytics",
            &format!("ALTER ROLE {role} PASSWORD '{secret}'"),
        )?;
        let file = dir.join("secrets").join(role);
        write_private(&file, &secret)?;
        let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
        roles_toml.push_str(&format!(
            "\n[[target.role]]\nname = \"{role}\"\nsecret = \"file:secrets/{role}\"\ngroups = [{}]\n",
            groups.join(", ")
        ));
    }

    eprintln!("portcullis demo: starting the development identity provider…");
    let issuer = DevIssuer::start("portcullis").await?;

    std::fs::create_dir_all(dir.join("policies"))?;
    for (name, text) in EXAMPLE_POLICIES {
        std::fs::write(dir.join("policies").join(name), text)?;
    }
    let timezone = jiff::tz::TimeZone::system()
        .iana_name()
        .map(str::to_string)
        .unwrap_or_else(|| "UTC".into());

    let ca = TestCa::new("Portcullis demo CA")?;
    let certs = ca.issue(&dir, "gateway")?;
    let pick = |p: u16| if port != 0 && port_free(p) { p } else { 0 };
    let (admin_port, oauth_port) = (pick(port.saturating_add(1)), pick(port.saturating_add(2)));
    let port = pick(port);
    let config = format!(
        r#"# Written by `portcullis demo`. TLS is offered but not required, so any client works.
[listen]
address = "127.0.0.1:{port}"
require_tls = false
# libpq 18 clients log in here with SASL OAUTHBEARER.
oauthbearer_address = "127.0.0.1:{oauth_port}"

[tls]
cert = "{cert}"
key = "{key}"

[identity]
issuer = "{issuer}"
audience = "portcullis"

[policy]
paths = ["policies"]
timezone = "{timezone}"

# The control port: dave (group dba) lists and ends sessions.
[admin]
address = "127.0.0.1:{admin_port}"
groups = ["dba"]

# Every session and statement, durable before it runs; results recorded for replay.
[audit]
store = "audit.db"
signing_key = "file:audit.key"
witness = "file:witness.json"
record_results = true

# Writes wait on their session for a manager's approval (carol), decided on the control port.
[approval]
store = "approvals.db"
deadline = "15m"

[[target]]
name = "analytics"
host = "127.0.0.1"
port = {pg_port}
database = "analytics"
tls = "disable"
{roles_toml}"#,
        cert = certs.cert.display(),
        key = certs.key.display(),
        issuer = issuer.url(),
        pg_port = cluster.port(),
    );
    let config_path = dir.join("portcullis.toml");
    std::fs::write(&config_path, config)?;
    let key_path = dir.join("audit.key");
    if !key_path.exists() {
        write_private(&key_path, &portcullis_audit::CheckpointKey::generate_pem())?;
    }

    let mut options = portcullis_gateway::GatewayOptions::default();
    if let Some(at) = at {
        options.clock = std::sync::Arc::new(portcullis_gateway::FixedClock::new(at));
    }
    let gateway = portcullis_gateway::Gateway::start(&config_path, options).await?;
    gateway.reload_on_sighup()?;
    let addr = gateway.local_addr();
    let admin_url = gateway
        .admin_addr()
        .map(|a| format!("https://{a}"))
        .unwrap_or_default();
    let env = format!(
        "export PGHOST=127.0.0.1\nexport PGPORT={}\nexport PGDATABASE=analytics\nexport PGSSLMODE=require\nexport PORTCULLIS_ISSUER={}\nexport PORTCULLIS_ADMIN={admin_url}\nexport PORTCULLIS_CA_FILE={ca}\n",
        addr.port(),
        issuer.url(),
        ca = certs.ca.display()
    );
    let env_path = dir.join("demo.env");
    std::fs::write(&env_path, &env)?;

    println!(
        r#"
Portcullis demo is running: gateway on {addr}, target "analytics".
Sample people: alice (data-science), bob (engineering), carol (managers), dave (dba).
Policies ({policies}): alice reads the revenue by country at any hour, and the daily
revenue on weekdays 09:00-18:00 ({timezone});
bob's and carol's writes wait for a manager's approval; only dave runs DDL; nobody drops
the database; e-mail addresses and card numbers are masked.

In another terminal:

  source {env}
  export PGUSER=alice PGPASSWORD=$({exe} dev-token alice --dir {dir})
  psql -c 'select * from reporting.revenue_by_country order by revenue desc'
  psql -c 'select * from reporting.daily_revenue order by day limit 5'    # a time rule

A refusal names the permit whose condition did not hold; `{exe} policy explain --at TIME`
shows any instant's decision.

A write waits for a manager: as bob, the statement is held (psql shows the request),

  PGUSER=bob PGPASSWORD=$({exe} dev-token bob --dir {dir}) \
    psql -c "update orders set status = 'refunded' where id = 7"

and carol approves it from a third terminal (or denies it with --reason):

  {exe} approvals list --token $({exe} dev-token carol --dir {dir})
  {exe} approvals approve ID --token $({exe} dev-token carol --dir {dir})

The gateway logs in as role "analyst" for alice; nobody ever sees that role's password.
Or log in the way people do (the device flow; the page lets you pick a sample person), and
let tools without a token use a local listener:

  {exe} login --issuer $PORTCULLIS_ISSUER --client-id portcullis-demo
  PGPASSWORD=$({exe} token) psql -c 'select current_user'
  {exe} connect analytics --gateway 127.0.0.1:{gw_port} --ca-file $PORTCULLIS_CA_FILE --port 5433

Every session and statement is audited (with result rows) in {audit}. From this directory:

  {exe} audit search --subject alice          # newest first; --table, --decision, --text …
  {exe} replay SESSION_ID                     # a session as it happened
  {exe} audit verify                          # proves nothing was edited or cut off

Operators (dave is in the admin group) see and end sessions on the control port {admin_url}:

  {exe} sessions list --token $({exe} dev-token dave --dir {dir})
  {exe} sessions kill --subject alice --block-for 10m --token $({exe} dev-token dave --dir {dir})

Configuration: {config}
Press Ctrl-C to stop; everything the demo created is removed.
"#,
        env = env_path.display(),
        config = config_path.display(),
        audit = dir.join("audit.db").display(),
        gw_port = addr.port(),
        policies = dir.join("policies").display(),
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "portcullis".into()),
        dir = dir.display(),
    );

    crate::wait_for_shutdown().await?;
    eprintln!("portcullis demo: stopping");
    drop(gateway);
    drop(issuer);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
