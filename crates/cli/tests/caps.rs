//! What the auditor's commands do with statements the trail keeps only the start of:
//! `policy test` skips them rather than decide a different, shorter statement.

use portcullis_tests::{Harness, PERMIT_ALL, Setup, stdout_ok};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_test_skips_statements_cut_at_the_size_cap() {
    let h = Harness::with(Setup {
        audit_settings: "statement_text_bytes = 40".into(),
        ..Setup::default()
    })
    .await;
    let long = format!("select 1 where '{}' <> ''", "q".repeat(100));
    let out = h
        .psql_command("erin", &["engineering"], "app")
        .args(["-c", "select 2", "-c", &long])
        .output()
        .await
        .unwrap();
    stdout_ok(&out);
    h.gateway.flush_audit().await;
    let policies = h.dir().join("same-policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("permit-all.cedar"), PERMIT_ALL).unwrap();
    let tested = Command::new(BIN)
        .args(["policy", "test", "--no-catalog", "--json", "--policies"])
        .arg(&policies)
        .arg("--config")
        .arg(&h.config_path)
        .output()
        .await
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&stdout_ok(&tested)).unwrap();
    assert_eq!(report["decided"], 1, "{report}");
    assert_eq!(report["skipped"], 1, "{report}");
}
