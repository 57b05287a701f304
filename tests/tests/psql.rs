//! psql through the gateway: -c, -f, multi-statement, \copy both ways, errors, notices.

use portcullis_tests::{Harness, stdout_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_files_and_multi_statement_queries() {
    let h = Harness::start().await;
    let out = stdout_ok(
        &h.psql(&["-A", "-t", "-c", "select current_user, current_database()"])
            .await,
    );
    assert_eq!(out.trim(), "gw_app|app");

    // One Query message with three statements: each result comes back.
    let out = stdout_ok(
        &h.psql(&["-A", "-t", "-c", "select 1; select 'two'; select 3"])
            .await,
    );
    assert_eq!(out.trim(), "1\ntwo\n3");

    let script = h.dir().join("script.sql");
    std::fs::write(
        &script,
        "create table t (id int primary key, note text);\n\
         insert into t select g, 'n' || g from generate_series(1, 100) g;\n\
         begin;\nupdate t set note = 'x' where id <= 10;\ncommit;\n\
         select count(*) from t where note = 'x';\n",
    )
    .unwrap();
    let out = stdout_ok(&h.psql(&["-A", "-t", "-f", script.to_str().unwrap()]).await);
    assert!(out.trim_end().ends_with("10"), "{out}");
    assert_eq!(h.direct("app", "select count(*) from t"), "100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_with_psql() {
    let h = Harness::start().await;
    stdout_ok(
        &h.psql(&["-c", "create table c (id int, name text, at timestamptz)"])
            .await,
    );
    let input = h.dir().join("in.csv");
    let mut csv = String::new();
    for i in 0..5000 {
        csv.push_str(&format!("{i},name {i},2026-01-01 00:00:{:02}+00\n", i % 60));
    }
    std::fs::write(&input, &csv).unwrap();
    let copy_in = format!("\\copy c from '{}' with (format csv)", input.display());
    let out = stdout_ok(&h.psql(&["-c", &copy_in]).await);
    assert!(out.contains("COPY 5000"), "{out}");
    assert_eq!(
        h.direct("app", "select count(*), sum(id) from c"),
        "5000|12497500"
    );

    let output = h.dir().join("out.csv");
    let copy_out = format!(
        "\\copy (select * from c order by id) to '{}' with (format csv)",
        output.display()
    );
    stdout_ok(&h.psql(&["-c", &copy_out]).await);
    let written = std::fs::read_to_string(&output).unwrap();
    assert_eq!(written.lines().count(), 5000);
    assert!(
        written.starts_with("0,name 0,2026-01-01 00:00:00+00"),
        "{}",
        &written[..60]
    );

    // A COPY that fails mid-stream reports the server's error and loses nothing else.
    std::fs::write(&input, "1,a,2026-01-01\nnot-a-number,b,2026-01-01\n").unwrap();
    let out = h.psql(&["-c", &copy_in]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid input syntax for type integer"));
    assert_eq!(h.direct("app", "select count(*) from c"), "5000");
    let out = stdout_ok(&h.psql(&["-A", "-t", "-c", "select 'still fine'"]).await);
    assert_eq!(out.trim(), "still fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_notices_and_transactions() {
    let h = Harness::start().await;
    let out = h
        .psql(&[
            "-c",
            "do $$ begin raise notice 'hello from %', 'plpgsql'; end $$",
            "-c",
            "select 1/0",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("NOTICE:  hello from plpgsql"), "{stderr}");
    assert!(stderr.contains("ERROR:  division by zero"), "{stderr}");

    // An error inside a transaction block fails it; the rest of that query is skipped and
    // the COMMIT that follows rolls back.
    let out = h
        .psql(&[
            "-v",
            "ON_ERROR_STOP=0",
            "-c",
            "create table tx (v int)",
            "-c",
            "begin; insert into tx values (1); select 1/0; commit;",
            "-c",
            "commit",
            "-c",
            "begin; insert into tx values (2); commit;",
        ])
        .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("division by zero"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ROLLBACK"));
    assert_eq!(
        h.direct("app", "select string_agg(v::text, ',') from tx"),
        "2"
    );
}
