//! pgbench in every protocol mode and 200 concurrent sessions through one gateway.

use std::collections::HashSet;

use portcullis_tests::{Harness, activity_count, stdout_ok};

async fn pgbench(h: &Harness, args: &[&str]) -> String {
    let out = tokio::process::Command::new("pgbench")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", h.port().to_string())
        .env("PGUSER", "erin")
        .env("PGPASSWORD", h.token("erin", &["engineering"]))
        .env("PGSSLMODE", "prefer")
        .args(args)
        .arg("app")
        .output()
        .await
        .expect("run pgbench");
    let mut text = stdout_ok(&out);
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_initialises_and_runs_in_all_protocol_modes() {
    let h = Harness::start().await;
    let init = pgbench(&h, &["-i", "-s", "1", "-q"]).await;
    assert!(init.contains("done"), "{init}");
    assert_eq!(
        h.direct("app", "select count(*) from pgbench_accounts"),
        "100000"
    );
    for mode in ["simple", "extended", "prepared"] {
        let out = pgbench(&h, &["-M", mode, "-c", "4", "-j", "2", "-t", "100"]).await;
        assert!(
            out.contains("number of transactions actually processed: 400/400"),
            "{mode}: {out}"
        );
        assert!(
            out.contains("number of failed transactions: 0"),
            "{mode}: {out}"
        );
        let out = pgbench(&h, &["-M", mode, "-S", "-c", "4", "-j", "2", "-t", "200"]).await;
        assert!(
            out.contains("actually processed: 800/800"),
            "{mode} -S: {out}"
        );
    }
    // The TPC-B runs changed the balances consistently: every transaction updated an
    // account, a teller and a branch by the same delta.
    assert_eq!(
        h.direct(
            "app",
            "select (select sum(abalance) from pgbench_accounts) = (select sum(bbalance) from pgbench_branches)"
        ),
        "t"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_sessions() {
    let h = Harness::start().await;
    let h = &h;
    let sessions = futures_util::future::join_all((0..200).map(|i| async move {
        let c = h
            .connect_as(&format!("user{i}"), &["engineering"], "app")
            .await
            .expect("connect");
        let pid: i32 = c
            .query_one("select pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let v: i32 = c
            .query_one("select $1::int * 2", &[&i])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, i * 2);
        (c, pid)
    }))
    .await;
    let pids: HashSet<i32> = sessions.iter().map(|(_, p)| *p).collect();
    assert_eq!(pids.len(), 200, "each session has its own upstream backend");
    let direct = h.direct_client("app").await;
    assert_eq!(
        activity_count(
            &direct,
            "usename = 'gw_app' and backend_type = 'client backend'"
        )
        .await,
        200
    );
    assert_eq!(h.gateway.active_sessions(), 200);
    // All still usable at once.
    let sums = futures_util::future::join_all(sessions.iter().map(|(c, _)| async move {
        c.query_one("select count(*) from generate_series(1, 1000)", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    }))
    .await;
    assert!(sums.iter().all(|&n| n == 1000));
}
