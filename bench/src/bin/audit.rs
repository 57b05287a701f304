//! What the audit trail costs.
//!
//! 1. Durable events per second through the group-committing writer with 1, 16 and 64
//!    concurrent writers, on the embedded SQLite store and on a PostgreSQL store, against a
//!    baseline measured in the same run on the same disk: one `fdatasync` of a small write.
//!    "events/fsync" shows how many events share each flush.
//! 2. The latency the audit adds per statement: `pgbench -S -M prepared` through two
//!    gateways that differ only in where the trail is kept — on disk (every statement waits
//!    for a flush) and in memory (`/dev/shm`, where a flush costs nothing) — alternating.
//!
//! Environment: `BENCH_SECONDS` (default 5) per measurement.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portcullis_audit::{AuditLog, CheckpointKey, Event, LogOptions, StatementEvent};
use portcullis_bench::{Endpoint, env_u64, latency_ms, pgbench, start_gateway};
use portcullis_sandbox::{DevIssuer, PgCluster, PgOptions};

fn event(i: u64) -> Event {
    Event::Statement(StatementEvent {
        session: format!("bench{}", i % 64),
        seq: i,
        subject: "bench".into(),
        groups: vec!["bench".into()],
        target: "bench".into(),
        upstream_role: "bench".into(),
        origin: "bind".into(),
        text: "SELECT abalance FROM pgbench_accounts WHERE aid = $1".into(),
        text_bytes: None,
        text_sha256: None,
        parameters: vec![Some(i.to_string())],
        parameter_digests: vec![],
        truncated: vec![],
        statement_kind: "select".into(),
        tables: vec!["pgbench_accounts".into()],
        functions: vec![],
        decision: "allow".into(),
        policies: vec!["bench#0".into()],
        sqlstate: None,
        message: None,
        observed: None,
        max_rows: None,
        search_path: vec![],
        approval: None,
    })
}

/// Mean latency of a small write plus `fdatasync` in `dir`, in microseconds.
fn fsync_us(dir: &std::path::Path, seconds: u64) -> anyhow::Result<f64> {
    let mut f = std::fs::File::create(dir.join("fsync-baseline"))?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    let start = Instant::now();
    while Instant::now() < end {
        f.write_all(&[0u8; 256])?;
        f.sync_data()?;
        n += 1;
    }
    Ok(start.elapsed().as_micros() as f64 / n as f64)
}

/// Events per second and median latency (µs) with `writers` concurrent appenders.
async fn throughput(log: &AuditLog, writers: u64, seconds: u64) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for w in 0..writers {
        let log = log.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if log.durable(event(i)).await.is_err() {
                    break;
                }
                latencies.push(t.elapsed().as_micros() as f64);
                i += writers;
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let median = all.get(all.len() / 2).copied().unwrap_or(f64::NAN);
    (all.len() as f64 / elapsed, median)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds = env_u64("BENCH_SECONDS", 5);
    let dir = tempfile::Builder::new()
        .prefix("portcullis-bench-audit-")
        .tempdir_in(std::env::var_os("BENCH_DIR").unwrap_or_else(|| "/var/tmp".into()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    let cluster = PgCluster::start(PgOptions::default())?;
    cluster.psql("postgres", "create database bench")?;
    cluster.psql("postgres", "create database control")?;

    let baseline = fsync_us(dir.path(), seconds)?;
    println!(
        "baseline: write + fdatasync in {} = {baseline:.0} µs",
        dir.path().display()
    );
    println!(
        "\n{:<10} {:>8} {:>12} {:>14} {:>12} {:>16}",
        "store", "writers", "events/s", "median µs", "events/fsync", "median/fsync"
    );
    let stores = [
        (
            "sqlite",
            format!("sqlite:{}", dir.path().join("events.db").display()),
            None,
        ),
        (
            "postgres",
            format!(
                "postgresql://{}@127.0.0.1:{}/control",
                cluster.superuser(),
                cluster.port()
            ),
            Some(cluster.password().to_string()),
        ),
    ];
    for (name, location, password) in stores {
        let key = CheckpointKey::from_pem(&CheckpointKey::generate_pem())?;
        let log = AuditLog::start(&location, password, key, LogOptions::default())?;
        for writers in [1u64, 16, 64] {
            let (rate, median) = throughput(&log, writers, seconds).await;
            println!(
                "{name:<10} {writers:>8} {rate:>12.0} {median:>14.0} {:>12.1} {:>16.2}",
                rate * baseline / 1e6,
                median / baseline
            );
        }
        log.flush().await;
    }

    // Per-statement latency: the same gateway with the trail on disk and in memory.
    let direct = Endpoint {
        name: "direct",
        port: cluster.port(),
        user: cluster.superuser().into(),
        password: cluster.password().into(),
    };
    pgbench(&direct, &["-i", "-q", "-s", "1"])?;
    let issuer = DevIssuer::start("portcullis").await?;
    let shm = tempfile::Builder::new()
        .prefix("portcullis-bench-audit-")
        .tempdir_in("/dev/shm")?;
    let on_disk = start_gateway(dir.path(), &cluster, &issuer, "disk.db").await?;
    let in_memory = start_gateway(
        dir.path(),
        &cluster,
        &issuer,
        &format!("sqlite:{}", shm.path().join("memory.db").display()),
    )
    .await?;
    let token = issuer.token("bench", &["bench"]);
    let endpoint = |name, port| Endpoint {
        name,
        port,
        user: "bench".into(),
        password: token.clone(),
    };
    let endpoints = [
        endpoint("trail on disk", on_disk.local_addr().port()),
        endpoint("trail in memory", in_memory.local_addr().port()),
    ];
    let secs = seconds.to_string();
    println!(
        "\npgbench -S -M prepared, {seconds}s per run\n{:<8} {:>16} {:>18} {:>14} {:>14}",
        "clients", "disk latency ms", "memory latency ms", "added µs", "added/fsync"
    );
    for clients in [1u32, 16] {
        let c = clients.to_string();
        let jobs = clients.min(2).to_string();
        let mut latency = [0f64; 2];
        for round in 0..2 {
            let i = (round + clients as usize) % 2;
            let out = tokio::task::block_in_place(|| {
                pgbench(
                    &endpoints[i],
                    &[
                        "-S", "-n", "-M", "prepared", "-c", &c, "-j", &jobs, "-T", &secs,
                    ],
                )
            })?;
            latency[i] = latency_ms(&out)?;
        }
        let added_us = (latency[0] - latency[1]) * 1000.0;
        println!(
            "{clients:<8} {:>16.3} {:>18.3} {added_us:>14.0} {:>14.2}",
            latency[0],
            latency[1],
            added_us / baseline
        );
    }
    drop((on_disk, in_memory));
    Ok(())
}
