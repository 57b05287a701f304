//! Large results stream through the gateway with bounded memory: hundreds of megabytes of
//! rows and COPY data pass while the gateway's peak memory barely moves. This file holds a
//! single test so that the process's peak RSS belongs to the gateway and nothing else; the
//! clients are separate psql processes.

use portcullis_tests::{Harness, stdout_ok};

/// Peak resident memory of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in /proc/self/status");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream_with_bounded_memory() {
    let h = Harness::start().await;
    // Warm up: one session, one query, so allocator pools exist before measuring.
    stdout_ok(&h.psql(&["-c", "select 1"]).await);
    let before = peak_rss();

    // 300 MB of rows (simple protocol) and 300 MB of COPY data, discarded by psql.
    let rows = "select g, repeat('x', 1000) from generate_series(1, 300000) g";
    let out = h
        .psql(&[
            "-A",
            "-t",
            "-o",
            "/dev/null",
            "-c",
            rows,
            "-c",
            "select 'rows done'",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = format!("\\copy ({rows}) to '/dev/null'");
    let out = h.psql(&["-c", &copy]).await;
    assert!(String::from_utf8_lossy(&stdout_ok(&out).into_bytes()).contains("COPY 300000"));

    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < 64 * 1024 * 1024,
        "the gateway's peak memory grew by {} MB while relaying 600 MB",
        grew / (1024 * 1024)
    );
}
