//! A throwaway PostgreSQL cluster from the machine's own binaries, removed when dropped.
//!
//! `initdb` runs once per superuser/password pair into a cached template directory; each
//! cluster is a copy of it, so starting one costs a file copy and a server start. When the
//! process runs as root the server runs as the `postgres` OS user, as PostgreSQL requires.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::certs::CertFiles;

/// Why a cluster could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server binaries not found; install postgresql-15 or set PORTCULLIS_PG_BINDIR"
    )]
    NoBinaries,
    #[error("{command} failed: {output}")]
    Command { command: String, output: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How to set up a cluster.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub superuser: String,
    pub password: String,
    pub max_connections: u32,
    /// Serve TLS with this certificate.
    pub tls: Option<CertFiles>,
    /// pg_hba.conf lines placed before the defaults (which are scram-sha-256 over TCP).
    pub hba: Vec<String>,
    /// Extra postgresql.conf settings.
    pub settings: Vec<(String, String)>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            superuser: "postgres".into(),
            password: "sandbox-superuser-secret".into(),
            max_connections: 300,
            tls: None,
            hba: Vec::new(),
            settings: Vec::new(),
        }
    }
}

/// A running cluster. Dropping it stops the server and deletes its directory, also when a
/// test panics.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    as_postgres: bool,
    options: PgOptions,
    running: bool,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
pub fn bindir() -> Result<PathBuf, PgError> {
    if let Some(dir) = std::env::var_os("PORTCULLIS_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("postgres").exists() && p.join("initdb").exists());
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().ok_or(PgError::NoBinaries)
}

fn run(mut cmd: Command) -> Result<Output, PgError> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(PgError::Command {
            command: format!("{cmd:?}"),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(out)
}

impl PgCluster {
    /// Creates and starts a cluster on a free port.
    pub fn start(options: PgOptions) -> Result<Self, PgError> {
        let bindir = bindir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("portcullis-pg-")
            .tempdir()?;
        set_mode(dir.path(), 0o755)?;
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        std::fs::create_dir(&sock)?;
        let template = ensure_template(&bindir, &options, as_postgres)?;
        run({
            let mut c = Command::new("cp");
            c.arg("-a").arg(&template).arg(&data);
            c
        })?;

        let port = crate::free_port()?;
        let mut conf = format!(
            "\n# portcullis sandbox\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nmax_connections = {}\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n\
             max_prepared_transactions = 10\nlog_min_messages = warning\n",
            sock.display(),
            options.max_connections
        );
        if let Some(tls) = &options.tls {
            std::fs::copy(&tls.cert, data.join("server.crt"))?;
            std::fs::copy(&tls.key, data.join("server.key"))?;
            set_mode(&data.join("server.key"), 0o600)?;
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        for (k, v) in &options.settings {
            conf.push_str(&format!("{k} = '{}'\n", v.replace('\'', "''")));
        }
        append(&data.join("postgresql.conf"), &conf)?;
        let mut hba = options.hba.join("\n");
        hba.push_str(
            "\nlocal all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n",
        );
        std::fs::write(data.join("pg_hba.conf"), hba)?;
        if as_postgres {
            chown_postgres(dir.path())?;
        }

        let mut cluster = PgCluster {
            dir,
            bindir,
            port,
            as_postgres,
            options,
            running: false,
        };
        let log = cluster.dir.path().join("server.log");
        cluster.pg_ctl(&["start", "-w", "-t", "60", "-l", &log.to_string_lossy()])?;
        cluster.running = true;
        Ok(cluster)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, PgError> {
        let mut c = self.command("pg_ctl");
        c.arg("-D").arg(self.data_dir()).args(args);
        run(c).map_err(|e| match e {
            PgError::Command { command, output } => PgError::Command {
                command,
                output: format!("{output}\nserver log:\n{}", self.server_log()),
            },
            other => other,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn superuser(&self) -> &str {
        &self.options.superuser
    }

    pub fn password(&self) -> &str {
        &self.options.password
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// A libpq connection string to `db` over TCP as the superuser.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={} password={} dbname={db} sslmode=disable",
            self.port, self.options.superuser, self.options.password
        )
    }

    /// Runs SQL through psql over the Unix socket as the superuser; returns unaligned,
    /// tuples-only output. Stops at the first error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, PgError> {
        let mut c = Command::new("psql");
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                &self.options.superuser,
                "-d",
                db,
                "-c",
                sql,
            ]);
        let out = run(c)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    /// Applies changed configuration files (pg_hba.conf, settings) without a restart.
    pub fn reload(&self) -> Result<(), PgError> {
        self.pg_ctl(&["reload"]).map(|_| ())
    }

    /// Stops the server (fast shutdown); the directory stays until drop.
    pub fn stop(&mut self) -> Result<(), PgError> {
        if self.running {
            self.running = false;
            self.pg_ctl(&["stop", "-m", "fast", "-w"])?;
        }
        Ok(())
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&mut self) -> Result<(), PgError> {
        if !self.running {
            let log = self.dir.path().join("server.log");
            self.pg_ctl(&["start", "-w", "-t", "60", "-l", &log.to_string_lossy()])?;
            self.running = true;
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

fn chown_postgres(path: &Path) -> Result<(), PgError> {
    let mut c = Command::new("chown");
    c.args(["-R", "postgres:postgres"]).arg(path);
    run(c).map(|_| ())
}

/// The initdb'd template for these options, created on first use. Concurrent creators
/// race benignly: each initdb's into a private directory and the first rename wins.
fn ensure_template(
    bindir: &Path,
    options: &PgOptions,
    as_postgres: bool,
) -> Result<PathBuf, PgError> {
    let version = bindir
        .parent()
        .and_then(|p| p.file_name())
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pg".into());
    let root = std::env::var_os("PORTCULLIS_PG_TEMPLATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("portcullis-pg-templates"));
    std::fs::create_dir_all(&root)?;
    set_mode(&root, 0o755)?;
    let key = format!(
        "{version}-{}-{:016x}",
        options.superuser,
        fnv(options.password.as_bytes())
    );
    let template = root.join(&key);
    if template.join("PG_VERSION").exists() {
        return Ok(template);
    }
    let work = tempfile::Builder::new()
        .prefix(&format!("{key}."))
        .tempdir_in(&root)?;
    set_mode(work.path(), 0o755)?;
    let pwfile = work.path().join("pw");
    std::fs::write(&pwfile, &options.password)?;
    let data = work.path().join("data");
    if as_postgres {
        chown_postgres(work.path())?;
    }
    let mut c = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bindir.join("initdb"));
        c
    } else {
        Command::new(bindir.join("initdb"))
    };
    c.arg("-D")
        .arg(&data)
        .args([
            "-U",
            &options.superuser,
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .arg("--no-sync");
    run(c)?;
    match std::fs::rename(&data, &template) {
        Ok(()) => {}
        Err(_) if template.join("PG_VERSION").exists() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(template)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}
