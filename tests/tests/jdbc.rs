//! The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) through the gateway.

use portcullis_tests::{Harness, java};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_driver_features() {
    let h = Harness::start().await;
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
        let stdout = java(&h, "JdbcSuite", params).await;
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
