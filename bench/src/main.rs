//! Runs `pgbench -S` in the simple, extended and prepared protocols at 1 and 16 clients,
//! alternating direct, through the gateway and through pgbouncer (session mode) in one
//! run, and prints TPS and the ratios gateway/direct and gateway/pgbouncer.
//!
//! Environment: `BENCH_SECONDS` (default 10) per pgbench run, `BENCH_SCALE` (default 10).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use portcullis_bench::{Endpoint, env_u64, pgbench, start_gateway, tps};
use portcullis_sandbox::{DevIssuer, PgCluster, PgOptions, free_port};

/// Stops pgbouncer when dropped, also when the benchmark fails half-way.
struct Bouncer(std::process::Child);

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts pgbouncer in session mode in front of the cluster, as the postgres OS user
/// (pgbouncer refuses to run as root).
fn start_pgbouncer(dir: &Path, cluster: &PgCluster) -> anyhow::Result<(Bouncer, u16)> {
    let port = free_port()?;
    let ini = dir.join("pgbouncer.ini");
    let users = dir.join("userlist.txt");
    std::fs::write(
        &users,
        format!("\"{}\" \"{}\"\n", cluster.superuser(), cluster.password()),
    )?;
    std::fs::write(
        &ini,
        format!(
            "[databases]\nbench = host=127.0.0.1 port={} dbname=bench\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = scram-sha-256\nauth_file = {}\npool_mode = session\nmax_client_conn = 200\n\
             default_pool_size = 50\nlogfile = {}\n",
            cluster.port(),
            users.display(),
            dir.join("pgbouncer.log").display()
        ),
    )?;
    let as_root = Command::new("id").arg("-u").output()?.stdout == b"0\n";
    let mut cmd = Command::new("pgbouncer");
    if as_root {
        use std::os::unix::process::CommandExt;
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()?;
        let id = |flag: &str| -> anyhow::Result<u32> {
            let out = Command::new("id").args([flag, "postgres"]).output()?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        // Run pgbouncer itself as postgres (not under runuser), so killing the child
        // stops it.
        cmd.uid(id("-u")?).gid(id("-g")?);
    }
    let child = Bouncer(
        cmd.arg(&ini)
            .spawn()
            .context("start pgbouncer (scripts/install-deps installs it)")?,
    );
    // Wait until it accepts connections.
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((child, port));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bail!(
        "pgbouncer did not start; see {}",
        dir.join("pgbouncer.log").display()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds = env_u64("BENCH_SECONDS", 10).to_string();
    let scale = env_u64("BENCH_SCALE", 10).to_string();
    let dir = tempfile::Builder::new()
        .prefix("portcullis-bench-")
        .tempdir()?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }

    let cluster = PgCluster::start(PgOptions::default())?;
    cluster.psql("postgres", "create database bench")?;
    let direct = Endpoint {
        name: "direct",
        port: cluster.port(),
        user: cluster.superuser().into(),
        password: cluster.password().into(),
    };
    eprintln!("bench: initialising pgbench at scale {scale}");
    pgbench(&direct, &["-i", "-q", "-s", &scale])?;

    let issuer = DevIssuer::start("portcullis").await?;
    let gateway = start_gateway(dir.path(), &cluster, &issuer, "audit.db").await?;
    let through_gateway = Endpoint {
        name: "gateway",
        port: gateway.local_addr().port(),
        user: "bench".into(),
        password: issuer.token("bench", &["bench"]),
    };
    let (_bouncer, bouncer_port) = start_pgbouncer(dir.path(), &cluster)?;
    let through_bouncer = Endpoint {
        name: "pgbouncer",
        port: bouncer_port,
        user: cluster.superuser().into(),
        password: cluster.password().into(),
    };
    let endpoints = [&direct, &through_gateway, &through_bouncer];

    let mut report = String::new();
    writeln!(report, "pgbench -S, {seconds}s per run, scale {scale}")?;
    writeln!(
        report,
        "{:<9} {:>7} {:>12} {:>12} {:>12} {:>15} {:>18}",
        "mode",
        "clients",
        "direct tps",
        "gateway tps",
        "bouncer tps",
        "gateway/direct",
        "gateway/pgbouncer"
    )?;
    let mut run = 0usize;
    for mode in ["simple", "extended", "prepared"] {
        for clients in [1u32, 16] {
            let mut results = [0f64; 3];
            let jobs = clients.min(2).to_string();
            let c = clients.to_string();
            // Rotate which endpoint goes first so warm-up and drift do not favour one.
            run += 1;
            for round in 0..3 {
                let i = (round + run) % 3;
                let e = endpoints[i];
                let out = tokio::task::block_in_place(|| {
                    pgbench(
                        e,
                        &[
                            "-S", "-n", "-M", mode, "-c", &c, "-j", &jobs, "-T", &seconds,
                        ],
                    )
                })?;
                results[i] = tps(&out)?;
                eprintln!("bench: {mode} c={clients} {} {:.0} tps", e.name, results[i]);
            }
            writeln!(
                report,
                "{:<9} {:>7} {:>12.0} {:>12.0} {:>12.0} {:>15.2} {:>18.2}",
                mode,
                clients,
                results[0],
                results[1],
                results[2],
                results[1] / results[0],
                results[1] / results[2]
            )?;
        }
    }
    print!("{report}");
    drop(gateway);
    Ok(())
}
