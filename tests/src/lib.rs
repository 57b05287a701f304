//! The shared end-to-end harness: a throwaway PostgreSQL cluster, the development OIDC
//! issuer serving discovery and JWKS over HTTP, and the gateway on a free port, wired
//! together the way a deployment is. Everything is removed when the harness is dropped,
//! also when a test panics.
//!
//! Databases and roles in the cluster:
//! - `app`, owned by role `gw_app`; target `app` (roles `gw_app` for engineering and
//!   data-science, `gw_admin` for dba); targets `postgres` and `regression` (the bootstrap
//!   superuser `postgres` for dba);
//! - `gw_admin` is a superuser. Their passwords exist only in the harness's secret files.

pub mod oracle;
pub mod raw;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use portcullis_gateway::{Decider, Gateway, GatewayOptions};
use portcullis_sandbox::certs::CertFiles;
use portcullis_sandbox::{DevIssuer, PgCluster, PgOptions, TestCa};

pub use portcullis_sandbox;
pub use tokio_postgres;

/// How the upstream leg is secured in a harness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamTls {
    Disable,
    Require,
    VerifyFull,
}

/// Choices for a harness; `Setup::default()` is a plain relay with TLS offered but not
/// required, and a plain upstream leg.
pub struct Setup {
    pub require_tls: bool,
    pub upstream_tls: UpstreamTls,
    pub decider: Option<Arc<dyn Decider>>,
    pub max_connections: usize,
    pub startup_timeout: Duration,
    /// Extra pg_hba.conf lines for the cluster.
    pub hba: Vec<String>,
    /// Extra TOML appended to the gateway configuration; `{pg_port}` is replaced by the
    /// cluster's port.
    pub extra_toml: String,
    /// Files written into the harness directory before the gateway starts.
    pub files: Vec<(String, String)>,
    /// Cedar policy files `(name, text)` in the gateway's policy directory; by default
    /// one that permits everything.
    pub policies: Vec<(String, String)>,
    /// The clock policies read (a fixed one for time-of-day tests).
    pub clock: Option<Arc<dyn portcullis_gateway::Clock>>,
    /// The clock live sessions check token expiry against.
    pub session_clock: Option<Arc<dyn portcullis_gateway::Clock>>,
    /// Extra settings for the `[policy]` section, e.g. `mode = "observe"`.
    pub policy_settings: String,
    /// Where audit events go; by default a SQLite file in the harness directory.
    pub audit_store: Option<String>,
    /// Extra settings for the `[audit]` section, e.g. `record_results = true`.
    pub audit_settings: String,
    /// Extra settings for the `[identity]` section, e.g. `expiry_grace = "1m"`.
    pub identity_settings: String,
    /// Trust this issuer instead of the harness's development issuer (a real OpenID
    /// Provider started by the test).
    pub issuer_url: Option<String>,
    /// Extra settings for the `[listen]` section.
    pub listen_settings: String,
}

/// The example policies shipped in the repository's `policies/` directory.
pub fn example_policies() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("policies/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("policy file"),
            )
        })
        .collect()
}

/// The demo's tables in the `app` database, owned by `gw_app` so that the database itself
/// would allow everything: whatever is refused, the gateway refused.
pub const SAMPLE_SCHEMA: &str = "
create schema reporting authorization gw_app;
create table public.customers (id int primary key, name text, email text, card_number text, country text);
insert into public.customers select g, 'name ' || g, 'c' || g || '@example.com', '41110000000000' || lpad(g::text, 2, '0'), 'DE' from generate_series(1, 20) g;
create table public.orders (id int primary key, customer_id int, amount numeric, status text);
insert into public.orders select g, 1 + g % 20, g * 10, 'paid' from generate_series(1, 50) g;
create table reporting.daily_revenue (day date primary key, orders int, revenue numeric);
insert into reporting.daily_revenue select date '2025-06-01' + g, g, g * 100 from generate_series(0, 29) g;
alter table public.customers owner to gw_app;
alter table public.orders owner to gw_app;
alter table reporting.daily_revenue owner to gw_app;
create table reporting.revenue_by_country (country text primary key, orders int, revenue numeric);
insert into reporting.revenue_by_country values ('DE', 50, 12750);
alter table reporting.revenue_by_country owner to gw_app;
";

/// A checksum of every sample table's contents, to prove refused statements changed nothing.
pub const SAMPLE_CHECKSUM: &str = "select md5(string_agg(t, '|' order by t)) from (
  select 'c' || c::text as t from public.customers c
  union all select 'o' || o::text from public.orders o
  union all select 'd' || d::text from reporting.daily_revenue d) x";

/// A policy that permits every statement: the relay with authentication as its only gate.
pub const PERMIT_ALL: &str = "permit(principal, action, resource);\n";

impl Default for Setup {
    fn default() -> Self {
        Setup {
            require_tls: false,
            upstream_tls: UpstreamTls::Disable,
            decider: None,
            max_connections: 500,
            startup_timeout: Duration::from_secs(10),
            hba: Vec::new(),
            extra_toml: String::new(),
            files: Vec::new(),
            policies: vec![("permit-all.cedar".into(), PERMIT_ALL.into())],
            clock: None,
            session_clock: None,
            policy_settings: String::new(),
            audit_store: None,
            audit_settings: String::new(),
            identity_settings: String::new(),
            issuer_url: None,
            listen_settings: String::new(),
        }
    }
}

/// A running cluster, issuer and gateway.
pub struct Harness {
    pub gateway: Gateway,
    pub issuer: DevIssuer,
    pub pg: PgCluster,
    pub certs: CertFiles,
    pub config_path: PathBuf,
    dir: tempfile::TempDir,
}

/// Installs the ring crypto provider and test logging once per process.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// The password of a role created by the harness.
fn role_secret(role: &str) -> String {
    format!("{role}-secret-{}", std::process::id())
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::with(Setup::default()).await
    }

    pub async fn with(setup: Setup) -> Harness {
        init();
        let dir = tempfile::Builder::new()
            .prefix("portcullis-test-")
            .tempdir()
            .expect("temp dir");
        let ca = TestCa::new("Portcullis test CA").expect("CA");
        let certs = ca
            .issue(dir.path(), "gateway")
            .expect("gateway certificate");
        let pg_certs = ca
            .issue(dir.path(), "postgres")
            .expect("server certificate");
        let mut hba = setup.hba.clone();
        if setup.upstream_tls != UpstreamTls::Disable {
            // Only TLS connections are accepted over TCP, so a plaintext fallback would fail.
            hba.push("hostnossl all all 0.0.0.0/0 reject".into());
        }
        let pg = PgCluster::start(PgOptions {
            tls: Some(pg_certs),
            hba,
            ..PgOptions::default()
        })
        .expect("PostgreSQL");
        pg.psql(
            "postgres",
            &format!(
                "CREATE ROLE gw_admin SUPERUSER LOGIN PASSWORD '{}';
                 CREATE ROLE gw_app LOGIN CREATEDB PASSWORD '{}';",
                role_secret("gw_admin"),
                role_secret("gw_app")
            ),
        )
        .expect("roles");
        pg.psql("postgres", "CREATE DATABASE app OWNER gw_app")
            .expect("database");

        let secrets = dir.path().join("secrets");
        std::fs::create_dir(&secrets).expect("secrets dir");
        for role in ["gw_admin", "gw_app"] {
            write_private(&secrets.join(role), &role_secret(role));
        }
        write_private(&secrets.join("postgres"), pg.password());
        let issuer = DevIssuer::start("portcullis").await.expect("issuer");
        let upstream_tls = match setup.upstream_tls {
            UpstreamTls::Disable => "tls = \"disable\"".to_string(),
            UpstreamTls::Require => "tls = \"require\"".to_string(),
            UpstreamTls::VerifyFull => format!(
                "tls = \"verify-full\"\nca_file = \"{}\"",
                certs.ca.display()
            ),
        };
        let target = |name: &str, db: &str, roles: &str| {
            format!(
                "\n[[target]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\n{upstream_tls}\n{roles}",
                pg.port()
            )
        };
        let admin = "\n[[target.role]]\nname = \"gw_admin\"\nsecret = \"file:secrets/gw_admin\"\ngroups = [\"dba\"]\n";
        // The bootstrap superuser, which owns the catalogs: the regression suite's expected
        // output assumes it.
        let bootstrap = "\n[[target.role]]\nname = \"postgres\"\nsecret = \"file:secrets/postgres\"\ngroups = [\"dba\"]\n";
        let app = "\n[[target.role]]\nname = \"gw_app\"\nsecret = \"file:secrets/gw_app\"\ngroups = [\"engineering\", \"data-science\", \"managers\"]\n";
        let config = format!(
            r#"[listen]
address = "127.0.0.1:0"
require_tls = {require_tls}
max_connections = {max}
startup_timeout = "{timeout}ms"
{listen_settings}

[tls]
cert = "{cert}"
key = "{key}"

[identity]
issuer = "{issuer}"
audience = "portcullis"
refresh_min_interval = "0s"
{identity_settings}

[reload]
watch_interval = "200ms"

[policy]
paths = ["policies"]
timezone = "UTC"
{policy_settings}

[audit]
store = "{audit_store}"
signing_key = "file:audit.key"
{audit_settings}
{app_target}{postgres_target}{regression_target}
{extra}"#,
            policy_settings = setup.policy_settings,
            audit_store = setup.audit_store.as_deref().unwrap_or("sqlite:audit.db"),
            audit_settings = setup.audit_settings,
            identity_settings = setup.identity_settings,
            listen_settings = setup.listen_settings,
            require_tls = setup.require_tls,
            max = setup.max_connections,
            timeout = setup.startup_timeout.as_millis(),
            cert = certs.cert.display(),
            key = certs.key.display(),
            issuer = setup
                .issuer_url
                .clone()
                .unwrap_or_else(|| issuer.url().to_string()),
            app_target = target("app", "app", &format!("{app}{admin}")),
            postgres_target = target("postgres", "postgres", bootstrap),
            regression_target = target("regression", "regression", bootstrap),
            extra = setup
                .extra_toml
                .replace("{pg_port}", &pg.port().to_string()),
        );
        for (name, contents) in &setup.files {
            std::fs::write(dir.path().join(name), contents).expect("harness file");
        }
        write_private(
            &dir.path().join("audit.key"),
            &portcullis_audit::CheckpointKey::generate_pem(),
        );
        std::fs::create_dir(dir.path().join("policies")).expect("policy dir");
        for (name, contents) in &setup.policies {
            std::fs::write(dir.path().join("policies").join(name), contents).expect("policy file");
        }
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, config).expect("config");
        let mut options = GatewayOptions {
            decider: setup.decider,
            ..GatewayOptions::default()
        };
        if let Some(clock) = setup.session_clock {
            options.session_clock = clock;
        }
        if let Some(clock) = setup.clock {
            options.clock = clock;
        }
        let gateway = Gateway::start(&config_path, options)
            .await
            .expect("gateway");
        Harness {
            gateway,
            issuer,
            pg,
            certs,
            config_path,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until every audit event so far is written, then opens the default store.
    pub async fn audit(&self) -> portcullis_audit::Store {
        self.gateway.flush_audit().await;
        let location = format!("sqlite:{}", self.dir.path().join("audit.db").display());
        portcullis_audit::Store::open(&location, None)
            .await
            .expect("audit store")
    }

    /// The control port's base URL (HTTPS: the harness always configures TLS).
    pub fn admin_url(&self) -> String {
        let addr = self.gateway.admin_addr().expect("an [admin] section");
        format!("https://{addr}")
    }

    /// An HTTP client that trusts the harness's CA, for the control port.
    pub fn admin_client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.certs.ca).expect("CA certificate");
        let certs = reqwest::Certificate::from_pem_bundle(&pem).expect("CA certificate");
        reqwest::Client::builder()
            .tls_certs_merge(certs)
            .build()
            .expect("HTTP client")
    }

    /// An operator's request to end `subject`'s sessions (`body` adds `block_for` and
    /// the like) on the control port, with `token`; the answer's status and JSON body.
    pub async fn kill_sessions(
        &self,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let answer = self
            .admin_client()
            .post(format!("{}/v1/sessions/kill", self.admin_url()))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("the control port answers");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or_default())
    }

    /// The `[admin]` section that lets group `security` use the control port.
    pub const ADMIN_FOR_SECURITY: &'static str =
        "[admin]\naddress = \"127.0.0.1:0\"\ngroups = [\"security\"]\n";

    /// Every audited event of one kind (`session_start`, `admin`, …), newest first.
    pub async fn audit_events(&self, kind: &str) -> Vec<portcullis_audit::Event> {
        self.audit()
            .await
            .search(&portcullis_audit::Filter {
                event: Some(kind.into()),
                limit: Some(u32::MAX),
                ..Default::default()
            })
            .await
            .expect("audit search")
            .into_iter()
            .map(|hit| hit.event)
            .collect()
    }

    /// The key that verifies the audit trail's checkpoints.
    pub fn audit_key(&self) -> portcullis_audit::PublicKey {
        let pem = std::fs::read_to_string(self.dir.path().join("audit.key")).expect("audit key");
        portcullis_audit::CheckpointKey::from_pem(&pem)
            .expect("audit key")
            .public()
    }

    pub fn port(&self) -> u16 {
        self.gateway.local_addr().port()
    }

    /// A valid token for `user` in `groups`.
    pub fn token(&self, user: &str, groups: &[&str]) -> String {
        self.issuer.token(user, groups)
    }

    /// A libpq connection string to `db` through the gateway (no password: pass the
    /// token as PGPASSWORD or with `password=`).
    pub fn conninfo(&self, user: &str, db: &str, sslmode: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname={db} sslmode={sslmode}",
            self.port()
        )
    }

    /// Connects with tokio-postgres as `user` in `groups` to `db`, with `sslmode` and a TLS
    /// connector; the connection is driven on its own task.
    pub async fn connect_with<T>(
        &self,
        user: &str,
        groups: &[&str],
        db: &str,
        sslmode: &str,
        tls: T,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>,
        T::Stream: Send + 'static,
    {
        let conninfo = format!(
            "{} password={}",
            self.conninfo(user, db, sslmode),
            self.token(user, groups)
        );
        let (client, connection) = tokio_postgres::connect(&conninfo, tls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Connects with tokio-postgres over plain TCP as `user` in `groups` to `db`.
    pub async fn connect_as(
        &self,
        user: &str,
        groups: &[&str],
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_with(user, groups, db, "disable", tokio_postgres::NoTls)
            .await
    }

    /// The error of a tokio-postgres login that must be refused.
    pub async fn refused(&self, user: &str, groups: &[&str], db: &str) -> tokio_postgres::Error {
        match self.connect_as(user, groups, db).await {
            Ok(_) => panic!("{user} in {groups:?} logged in to {db} but should have been refused"),
            Err(e) => e,
        }
    }

    /// A tokio-postgres client to `app` as an engineer.
    pub async fn client(&self) -> tokio_postgres::Client {
        self.connect_as("erin", &["engineering"], "app")
            .await
            .expect("connect through the gateway")
    }

    /// A tokio-postgres client to `app` as the superuser role (group dba).
    pub async fn admin(&self) -> tokio_postgres::Client {
        self.connect_as("dave", &["dba"], "app")
            .await
            .expect("connect through the gateway")
    }

    /// Connects with tokio-postgres over TLS, trusting the test CA.
    pub async fn connect_tls(
        &self,
        user: &str,
        groups: &[&str],
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.client_tls_config());
        self.connect_with(user, groups, db, "require", tls).await
    }

    /// A rustls client configuration trusting the test CA.
    pub fn client_tls_config(&self) -> rustls::ClientConfig {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.certs.ca).expect("CA file") {
            roots.add(cert.expect("CA cert")).expect("add CA");
        }
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    /// A psql command to `db` through the gateway as `user` in `groups`.
    pub fn psql_command(&self, user: &str, groups: &[&str], db: &str) -> tokio::process::Command {
        self.psql_command_of(Path::new("psql"), user, groups, db)
    }

    /// [`Harness::psql_command`] with another psql binary (PostgreSQL 18's, see
    /// [`pg18`]).
    pub fn psql_command_of(
        &self,
        psql: &Path,
        user: &str,
        groups: &[&str],
        db: &str,
    ) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(psql);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port().to_string())
            .env("PGUSER", user)
            .env("PGDATABASE", db)
            .env("PGPASSWORD", self.token(user, groups))
            .env("PGSSLMODE", "prefer")
            .env("PGSSLROOTCERT", &self.certs.ca)
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-v", "ON_ERROR_STOP=1"]);
        c
    }

    /// Runs psql as an engineer against `app` with extra arguments.
    pub async fn psql(&self, args: &[&str]) -> Output {
        self.psql_command("erin", &["engineering"], "app")
            .args(args)
            .output()
            .await
            .expect("run psql")
    }

    /// Runs SQL directly on the cluster (not through the gateway) as its superuser.
    pub fn direct(&self, db: &str, sql: &str) -> String {
        self.pg.psql(db, sql).expect("direct psql")
    }

    /// A tokio-postgres client connected directly to the cluster, for cross-checks.
    pub async fn direct_client(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) =
            tokio_postgres::connect(&self.pg.conninfo(db), tokio_postgres::NoTls)
                .await
                .expect("direct connection");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Replaces the secret of `role` in both the cluster and the gateway's secret file.
    pub fn rotate_secret(&self, role: &str, new_secret: &str) {
        self.direct(
            "postgres",
            &format!("ALTER ROLE {role} PASSWORD '{new_secret}'"),
        );
        std::fs::write(self.dir().join("secrets").join(role), new_secret).expect("write secret");
    }
}

/// stdout of a successful command; panics with stderr otherwise.
/// PostgreSQL 18's binaries and libpq (the newest client), which `scripts/install-deps`
/// unpacks under `target/`.
pub fn pg18() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/postgresql-18.6.0");
    assert!(
        dir.join("bin/psql").exists(),
        "{} is missing: run scripts/install-deps",
        dir.display()
    );
    dir
}

/// Debian's PostgreSQL JDBC driver (libpostgresql-jdbc-java).
pub const JDBC_DRIVER: &str = "/usr/share/java/postgresql.jar";

/// Compiles `tests/java/{class}.java` and runs it against the gateway as an engineer with
/// the JDBC URL parameters `params`; returns its standard output (it must succeed).
pub async fn java(h: &Harness, class: &str, params: &str) -> String {
    assert!(
        Path::new(JDBC_DRIVER).exists(),
        "{JDBC_DRIVER} is missing: run scripts/install-deps (apt package libpostgresql-jdbc-java)"
    );
    let classes = h.dir().join(format!("java-{class}"));
    std::fs::create_dir_all(&classes).expect("create the class directory");
    let source = format!("{}/java/{class}.java", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("javac")
        .args(["-cp", JDBC_DRIVER, "-d"])
        .arg(&classes)
        .arg(source)
        .output()
        .await
        .expect("run javac");
    stdout_ok(&out);
    let url = format!("jdbc:postgresql://127.0.0.1:{}/app?{params}", h.port());
    let out = tokio::process::Command::new("java")
        .arg("-cp")
        .arg(format!("{JDBC_DRIVER}:{}", classes.display()))
        .arg(class)
        .args([&url, "erin", &h.token("erin", &["engineering"])])
        .output()
        .await
        .expect("run java");
    stdout_ok(&out)
}

pub fn stdout_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\nstdout: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SQLSTATE and message of a tokio-postgres error that came from a server or the gateway.
pub fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => panic!("not a database error: {e:?}"),
    }
}

/// Polls `condition` until it holds; panics after 60 s naming `what`. For waiting on state
/// another process changes (a backend reaching a lock, a session ending), never on time.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Number of server sessions matching a `pg_stat_activity` condition.
pub async fn activity_count(direct: &tokio_postgres::Client, condition: &str) -> i64 {
    direct
        .query_one(
            &format!("select count(*) from pg_stat_activity where {condition}"),
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

/// Writes a secret or a key as a deployment should: readable by its owner alone.
fn write_private(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).expect("private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("mode 0600");
}
