//! A throwaway cluster starts, answers over TCP with SCRAM, and disappears when dropped.

use portcullis_sandbox::{PgCluster, PgOptions};

#[test]
fn starts_answers_and_cleans_up() {
    let cluster = PgCluster::start(PgOptions::default()).unwrap();
    assert_eq!(cluster.psql("postgres", "select 40 + 2").unwrap(), "42");
    let out = std::process::Command::new("psql")
        .arg(cluster.conninfo("postgres"))
        .args([
            "-X",
            "-A",
            "-t",
            "-c",
            "select current_setting('password_encryption')",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "scram-sha-256");
    let data = cluster.data_dir();
    assert!(data.exists());
    drop(cluster);
    assert!(!data.exists());
}
