//! PostgreSQL's own regression suite (parallel_schedule) through the gateway, as the
//! superuser role: every test must pass, as it does when run directly.

use portcullis_tests::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_regression_suite_passes_through_the_gateway() {
    let h = Harness::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pg-regress-run");
    let out = tokio::process::Command::new(script)
        .args(["--host", "127.0.0.1", "--port", &h.port().to_string()])
        .env("PGUSER", "dave")
        .env("PGPASSWORD", h.token("dave", &["dba"]))
        .env("PGSSLMODE", "require")
        .output()
        .await
        .expect("run scripts/pg-regress-run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "regression suite failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("All 217 tests passed."), "{stdout}");
}
