//! PostgreSQL 17+ clients at the front door, with PostgreSQL 18's psql and libpq:
//! direct TLS negotiation (`sslnegotiation=direct`, ALPN `postgresql`) and the encrypted
//! cancel of `PQcancelCreate` (what psycopg sends on Ctrl-C), which waits for the TLS
//! connection to be closed properly.

use std::path::Path;

use portcullis_tests::{Harness, pg18, stdout_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_negotiation() {
    let h = Harness::start().await;
    let psql = pg18().join("bin/psql");
    for negotiation in ["direct", "postgres"] {
        let mut c = h.psql_command_of(&psql, "erin", &["engineering"], "app");
        c.env("PGSSLMODE", "verify-full")
            .env("PGHOST", "localhost")
            .env("PGSSLNEGOTIATION", negotiation)
            .args(["-A", "-t", "-c", "select 'over tls'"]);
        // verify-full: psql refuses anything but TLS with the harness's certificate.
        let out = stdout_ok(&c.output().await.unwrap());
        assert_eq!(out.trim(), "over tls", "{negotiation}");
    }
}

/// Builds tests/c/cancel.c against PostgreSQL 18's libpq.
async fn cancel_program(h: &Harness) -> std::path::PathBuf {
    let pg = pg18();
    let out = h.dir().join("cancel18");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/cancel.c");
    let built = tokio::process::Command::new("gcc")
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .arg(format!("-I{}", pg.join("include").display()))
        .arg(format!("-L{}", pg.join("lib").display()))
        .arg("-lpq")
        .arg(format!("-Wl,-rpath,{}", pg.join("lib").display()))
        .output()
        .await
        .expect("run gcc");
    stdout_ok(&built);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_cancel_reports_success() {
    let h = Harness::start().await;
    let program = cancel_program(&h).await;
    for (sslmode, negotiation, ssl) in [
        ("require", "postgres", "1"),
        ("require", "direct", "1"),
        ("disable", "postgres", "0"),
    ] {
        let conninfo = format!(
            "{} sslnegotiation={negotiation} password={}",
            h.conninfo("erin", "app", sslmode),
            h.token("erin", &["engineering"])
        );
        let out = tokio::process::Command::new(&program)
            .arg(conninfo)
            .output()
            .await
            .expect("run the cancel program");
        let stdout = stdout_ok(&out);
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            vec![
                format!("connected ssl={ssl}").as_str(),
                "cancel sent",
                "statement ended 57014"
            ],
            "{sslmode} {negotiation}"
        );
    }
}
