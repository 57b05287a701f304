//! The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) through the gateway.

use portcullis_tests::{Harness, stdout_ok};

const DRIVER: &str = "/usr/share/java/postgresql.jar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_driver_features() {
    assert!(
        std::path::Path::new(DRIVER).exists(),
        "{DRIVER} is missing: run scripts/install-deps (apt package libpostgresql-jdbc-java)"
    );
    let h = Harness::start().await;
    let classes = h.dir().join("java");
    std::fs::create_dir(&classes).unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/java/JdbcSuite.java");
    let out = tokio::process::Command::new("javac")
        .args(["-cp", DRIVER, "-d"])
        .arg(&classes)
        .arg(source)
        .output()
        .await
        .expect("run javac");
    stdout_ok(&out);
    for (name, params) in [
        (
            "plain",
            "sslmode=disable&prepareThreshold=3&binaryTransfer=true",
        ),
        (
            "tls",
            "sslmode=require&sslfactory=org.postgresql.ssl.NonValidatingFactory&prepareThreshold=1",
        ),
    ] {
        let url = format!("jdbc:postgresql://127.0.0.1:{}/app?{params}", h.port());
        let out = tokio::process::Command::new("java")
            .arg("-cp")
            .arg(format!("{DRIVER}:{}", classes.display()))
            .arg("JdbcSuite")
            .args([&url, "erin", &h.token("erin", &["engineering"])])
            .output()
            .await
            .expect("run java");
        let stdout = stdout_ok(&out);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines,
            vec![
                "simple gw_app 42",
                "prepared 10 3 9",
                "batch 1000",
                "fetch 1000 499500",
                "savepoint kept,name 2",
                "copy 2 2 5000,5001",
                "timeout 57014 true",
                "after alive",
            ],
            "{name}"
        );
        h.direct("app", "drop table jdbc_t");
    }
}
