//! The differential oracle over four corpora: every statement's facts against what the
//! PostgreSQL server itself says the statement references (`portcullis_tests::oracle`
//! explains the checks and what counts as a miss).
//!
//! 1. **regress**: PostgreSQL's regression SQL files, replayed in `parallel_schedule`
//!    order, one file after the other and each on a connection of its own, directly
//!    against a `regression` database of the harness's cluster (not through the gateway),
//!    the way psql would send them (`oracle::script`). Each statement is checked in the
//!    state the files before it and its own earlier statements left, then run for real so
//!    that later statements find their objects; the DDL event triggers report what each
//!    DDL statement created, altered or dropped. Serial replay keeps it deterministic.
//! 2. **sqlsmith**: queries sqlsmith generates with a fixed seed (`--dry-run`) for the
//!    `app` database (pg_catalog, information_schema and the oracle's schema), before
//!    anything else runs there. Against the regression database the replay leaves,
//!    sqlsmith's queries differ from run to run: its catalogs' physical order does.
//! 3. **cases**: tests/oracle/cases.sql (the bypasses and the constructs around
//!    them), and the SQL string literals of tests/tests/policies.rs and
//!    crates/sql/src/analysis/tests.rs, in the `app` database with SAMPLE_SCHEMA and
//!    tests/oracle/schema.sql; DDL runs in a transaction that is rolled back.
//! 4. **generated**: `oracle::generate`'s random recombinations (fixed seed) and
//!    mutations of the cases and of some generated statements.
//!
//! The test prints counts per corpus and fails listing every miss; the full list is also
//! written to `$CARGO_TARGET_TMPDIR/oracle-misses.txt`. `PORTCULLIS_ORACLE_PROGRESS=1`
//! prints each regression file's progress and client-side errors to stderr.
//!
//! Run it alone with `cargo nextest run -p portcullis-tests --test oracle`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use portcullis_sql::analysis::{Kind, Tag};
use portcullis_tests::oracle::{self, Tally, generate, script};
use portcullis_tests::{Harness, SAMPLE_SCHEMA};
use tokio_postgres::Client;

const SQLSMITH_SEED: u64 = 20250601;
const SQLSMITH_QUERIES: usize = 1500;
const GENERATED: usize = 3000;
const GENERATOR_SEED: u64 = 0x05ee_d0f0_ac1e;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn connect(h: &Harness, db: &str, options: &str) -> Client {
    let conninfo = format!("{} options='{options}'", h.pg.conninfo(db));
    let (client, connection) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("direct connection to {db}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// The regression suite's tree, built by scripts/pg-regress-build.
fn regress_dir() -> PathBuf {
    let out = std::process::Command::new(repo().join("scripts/pg-regress-build"))
        .output()
        .expect("run scripts/pg-regress-build");
    assert!(
        out.status.success(),
        "pg-regress-build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = stdout
        .lines()
        .last()
        .expect("pg-regress-build prints its directory");
    PathBuf::from(dir.trim()).join("regress")
}

/// The groups of a pg_regress schedule, in order: the tests of one group may run at once.
fn schedule(regress: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(regress.join("parallel_schedule"))
        .expect("parallel_schedule")
        .lines()
        .filter_map(|l| l.strip_prefix("test:"))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Runs one psql statement for real (COPY FROM STDIN with its data, COPY TO STDOUT drained).
async fn execute(
    client: &Client,
    item: &script::Item,
    statements: &[portcullis_sql::ParsedStatement],
    script: &mut script::Script<'_>,
) -> bool {
    let copy = statements.first().and_then(|s| s.facts.copy.clone());
    let is_copy = copy
        .as_ref()
        .is_some_and(|c| c.file.is_none() && c.program.is_none());
    let result = match copy {
        Some(c) if c.file.is_none() && c.program.is_none() && c.from => {
            match client.copy_in::<_, bytes::Bytes>(item.sql.as_str()).await {
                Ok(sink) => {
                    let mut sink = Box::pin(sink);
                    // The server started the copy: the lines up to `\.` are its data.
                    let data = if item.copy_from_stdin {
                        script.copy_data()
                    } else {
                        String::new()
                    };
                    match sink.send(bytes::Bytes::from(data)).await {
                        Ok(()) => sink.as_mut().finish().await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            }
        }
        Some(c) if c.file.is_none() && c.program.is_none() => {
            match client.copy_out(item.sql.as_str()).await {
                Ok(stream) => {
                    let mut stream = Box::pin(stream);
                    let mut result = Ok(());
                    while let Some(next) = stream.next().await {
                        if let Err(e) = next {
                            result = Err(e);
                            break;
                        }
                    }
                    result
                }
                Err(e) => Err(e),
            }
        }
        _ => client.simple_query(&item.sql).await.map(|_| ()),
    };
    if let Err(e) = &result
        && e.as_db_error().is_none()
        && std::env::var_os("PORTCULLIS_ORACLE_PROGRESS").is_some()
    {
        eprintln!("oracle: client error at line {}: {e:?}", item.line);
    }
    // After a failed COPY FROM STDIN or TO STDOUT the client library may or may not
    // close the connection, depending on timing: the session is replaced either way, so
    // that every run continues the same.
    is_copy && result.is_err()
}

/// Files replayed at once. One: with two, the files of a group interleave differently
/// from run to run, and a few statements' outcomes (and so the counts) with them.
const REPLAY_WORKERS: usize = 1;

/// pg_regress's client settings, plus bounds on a statement that would wait.
const REPLAY_OPTIONS: &str = "-c timezone=PST8PDT -c datestyle=Postgres,MDY -c intervalstyle=postgres \
     -c statement_timeout=30s -c lock_timeout=10s";

/// Replays the schedule: its groups in order, the files of a group [`REPLAY_WORKERS`] at a
/// time, each file on a session of its own. Results are merged in schedule order.
async fn replay_regress(h: &Harness, regress: &Path, out_dir: &Path) -> Tally {
    let env: HashMap<String, String> = [
        ("PG_ABS_SRCDIR", regress.display().to_string()),
        ("PG_ABS_BUILDDIR", out_dir.display().to_string()),
        ("PG_LIBDIR", regress.display().to_string()),
        ("PG_DLSUFFIX", ".so".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut tally = Tally::default();
    for group in schedule(regress) {
        let results: Vec<Tally> = futures_util::stream::iter(group)
            .map(|test| replay_file(h, regress, test, &env))
            .buffered(REPLAY_WORKERS)
            .collect()
            .await;
        for t in results {
            tally.merge(t);
        }
    }
    tally
}

async fn replay_file(
    h: &Harness,
    regress: &Path,
    test: String,
    env: &HashMap<String, String>,
) -> Tally {
    let mut tally = Tally::default();
    let progress = std::env::var_os("PORTCULLIS_ORACLE_PROGRESS").is_some();
    let file_started = Instant::now();
    let path = regress.join("sql").join(format!("{test}.sql"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        tally.skip("schedule entry without a file");
        return tally;
    };
    let mut client = connect(h, "regression", REPLAY_OPTIONS).await;
    let mut script = script::Script::new(&text, env);
    let mut failed_copy = false;
    while let Some(item) = script.next() {
        let where_ = format!("{test}.sql:{}", item.line);
        if std::mem::take(&mut failed_copy) {
            tally.skip("session replaced after a failed COPY");
            client = connect(h, "regression", REPLAY_OPTIONS).await;
        } else if client.is_closed() {
            // The file ended its own session (a FATAL, pg_terminate_backend): go on in
            // a new one, as psql would after \c.
            if progress {
                eprintln!("oracle: {where_}: session ended, reconnecting");
            }
            tally.skip("session ended by the previous statement (reconnected)");
            client = connect(h, "regression", REPLAY_OPTIONS).await;
        }
        if item.unresolved_variable {
            tally.statements += 1;
            tally.skip("psql variable");
            continue;
        }
        let statements = match oracle::parse(&item.sql) {
            Ok(s) => s,
            Err(_) => {
                tally.statements += 1;
                tally.skip("analyser parse error");
                failed_copy = execute(&client, &item, &[], &mut script).await;
                continue;
            }
        };
        let t0 = Instant::now();
        for s in &statements {
            tally.statements += 1;
            let before = tally.misses.len();
            oracle::check_dml(&client, s, &mut tally).await;
            label(&mut tally, before, &where_);
        }
        let t1 = Instant::now();
        tally.check_time += t1 - t0;
        failed_copy = execute(&client, &item, &statements, &mut script).await;
        tally.run_time += t1.elapsed();
        if statements.iter().any(|s| oracle::may_run_ddl(&s.facts))
            && let Ok(refs) = oracle::take_ddl(&client).await
            && !refs.is_empty()
        {
            let (missing, not_required) = oracle::compare_ddl(&statements, &refs);
            let before = tally.misses.len();
            tally.record_ddl(&item.sql, missing, not_required);
            label(&mut tally, before, &where_);
        }
    }
    if progress {
        eprintln!(
            "oracle: {test}: {} checked in {:.2?}",
            tally.checked,
            file_started.elapsed()
        );
    }
    tally
}

/// Prefixes the statement of misses recorded since `before` with where it came from.
fn label(tally: &mut Tally, before: usize, where_: &str) {
    for m in &mut tally.misses[before..] {
        m.0 = format!("[{where_}] {}", m.0);
    }
}

/// sqlsmith's queries for the `app` database: generated before anything else runs there
/// (the schema it reads is then the same in every run; the regression database's
/// catalogs are laid out differently from run to run, and sqlsmith's choices with them).
async fn sqlsmith_queries(h: &Harness) -> String {
    let target = h.pg.conninfo("app");
    let out = tokio::process::Command::new("sqlsmith")
        .arg(format!("--target={target}"))
        .arg(format!("--seed={SQLSMITH_SEED}"))
        .arg(format!("--max-queries={SQLSMITH_QUERIES}"))
        .arg("--dry-run")
        .output()
        .await
        .expect("sqlsmith (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "sqlsmith failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn sqlsmith(h: &Harness, queries: &str) -> Tally {
    let client = connect(h, "app", "-c statement_timeout=30s").await;
    let mut tally = Tally::default();
    for item in script::read(queries, &HashMap::new()) {
        check_text(&client, &item.sql, &mut tally, false).await;
    }
    tally
}

/// Checks every statement of `sql`; with `ddl`, DDL runs in a rolled-back transaction.
async fn check_text(client: &Client, sql: &str, tally: &mut Tally, ddl: bool) {
    let statements = match oracle::parse(sql) {
        Ok(s) => s,
        Err(_) => {
            tally.statements += 1;
            return tally.skip("analyser parse error");
        }
    };
    for s in &statements {
        tally.statements += 1;
        oracle::check_dml(client, s, tally).await;
        let runnable = ddl
            && oracle::may_run_ddl(&s.facts)
            && !matches!(s.facts.kind, Kind::Do | Kind::Call | Kind::Unknown)
            && ![Tag::Load, Tag::AlterSystem, Tag::DropDatabase]
                .iter()
                .any(|t| s.facts.tags.contains(t));
        if runnable {
            oracle::check_ddl_undone(client, s, tally).await;
        }
    }
}

/// The string literals of a Rust source file (plain and raw), unescaped.
fn rust_string_literals(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' => {
                // A char literal ('"', '\''), or a lifetime: skip past it.
                if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') {
                    i += 4;
                } else {
                    i += 1;
                }
            }
            b'r' if matches!(b.get(i + 1), Some(b'#' | b'"'))
                && !(i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let start = j + 1;
                match src[start..].find(&close) {
                    Some(len) => {
                        out.push(src[start..start + len].to_string());
                        i = start + len + close.len();
                    }
                    None => break,
                }
            }
            b'"' => {
                let mut s = String::new();
                let mut j = i + 1;
                let chars: Vec<char> = src[j..].chars().take(20000).collect();
                let mut k = 0;
                while k < chars.len() {
                    let c = chars[k];
                    if c == '"' {
                        break;
                    }
                    if c == '\\' {
                        k += 1;
                        match chars.get(k) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('\\') => s.push('\\'),
                            Some('"') => s.push('"'),
                            Some('\'') => s.push('\''),
                            Some('0') => s.push('\0'),
                            Some('\n') => {
                                while chars.get(k + 1).is_some_and(|c| c.is_whitespace()) {
                                    k += 1;
                                }
                            }
                            Some(other) => {
                                s.push('\\');
                                s.push(*other);
                            }
                            None => {}
                        }
                    } else {
                        s.push(c);
                    }
                    k += 1;
                }
                j += chars[..k.min(chars.len())]
                    .iter()
                    .map(|c| c.len_utf8())
                    .sum::<usize>();
                out.push(s);
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out
}

async fn own_corpora(h: &Harness) -> (Tally, Tally) {
    let client = connect(h, "app", "-c statement_timeout=30s").await;
    let mut cases = Tally::default();
    let cases_text =
        std::fs::read_to_string(repo().join("tests/oracle/cases.sql")).expect("cases.sql");
    let case_items = script::read(&cases_text, &HashMap::new());
    for item in &case_items {
        check_text(&client, &item.sql, &mut cases, true).await;
    }
    for file in [
        "tests/tests/policies.rs",
        "crates/sql/src/analysis/tests.rs",
    ] {
        let src = std::fs::read_to_string(repo().join(file)).expect("project source");
        for lit in rust_string_literals(&src) {
            let parses = oracle::parse(&lit)
                .is_ok_and(|s| !s.is_empty() && s.iter().all(|s| s.facts.kind != Kind::Unknown));
            if parses {
                check_text(&client, &lit, &mut cases, true).await;
            }
        }
    }

    let mut generated = Tally::default();
    let mut g = generate::Generator::new(GENERATOR_SEED);
    let mut rng = generate::Rng::new(GENERATOR_SEED ^ 0xabcdef);
    let statements: Vec<String> = (0..GENERATED).map(|_| g.statement()).collect();
    for s in &statements {
        check_text(&client, s, &mut generated, false).await;
    }
    let mut bases: Vec<String> = case_items.iter().map(|i| i.sql.clone()).collect();
    bases.extend(statements.iter().step_by(10).cloned());
    for base in &bases {
        for m in generate::mutations(base, &mut rng) {
            check_text(&client, &m, &mut generated, false).await;
        }
    }
    (cases, generated)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_name_everything_the_server_references() {
    let started = Instant::now();
    let regress = regress_dir();
    let h = Harness::start().await;
    h.direct("app", SAMPLE_SCHEMA);
    h.direct(
        "app",
        &std::fs::read_to_string(repo().join("tests/oracle/schema.sql")).expect("schema.sql"),
    );
    h.direct("app", oracle::DDL_SETUP);
    // As pg_regress creates its database.
    h.direct("postgres", "CREATE DATABASE regression TEMPLATE template0");
    h.direct(
        "regression",
        "ALTER DATABASE regression SET lc_messages TO 'C';
         ALTER DATABASE regression SET lc_monetary TO 'C';
         ALTER DATABASE regression SET lc_numeric TO 'C';
         ALTER DATABASE regression SET lc_time TO 'C';
         ALTER DATABASE regression SET bytea_output TO 'hex';
         ALTER DATABASE regression SET timezone_abbreviations TO 'Default';",
    );
    h.direct("regression", oracle::DDL_SETUP);
    // The files write their output (COPY TO) under the build directory, as the server's
    // OS user.
    let out_dir = tempfile::Builder::new()
        .prefix("portcullis-oracle-")
        .tempdir()
        .expect("output dir");
    std::fs::create_dir(out_dir.path().join("results")).expect("results dir");
    for d in [out_dir.path().to_path_buf(), out_dir.path().join("results")] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }

    let server_side = async {
        let t = Instant::now();
        let replayed = replay_regress(&h, &regress, out_dir.path()).await;
        (replayed, t.elapsed())
    };
    let own = async {
        let t = Instant::now();
        let queries = sqlsmith_queries(&h).await;
        let (cases, generated) = own_corpora(&h).await;
        let own_time = t.elapsed();
        let t = Instant::now();
        let smith = sqlsmith(&h, &queries).await;
        (cases, generated, own_time, smith, t.elapsed())
    };
    let ((replayed, replay_time), (cases, generated, own_time, smith, smith_time)) =
        tokio::join!(server_side, own);

    let corpora = [
        ("regress", &replayed),
        ("sqlsmith", &smith),
        ("cases", &cases),
        ("generated", &generated),
    ];
    let mut report = String::new();
    for (name, t) in &corpora {
        report.push_str(&t.summary(name));
        report.push('\n');
    }
    let checked: usize = corpora.iter().map(|(_, t)| t.checked + t.ddl_checked).sum();
    let misses: usize = corpora.iter().map(|(_, t)| t.misses.len()).sum();
    report.push_str(&format!(
        "regress replay: checking {:.0?}, running {:.0?} (summed over sessions)\n",
        replayed.check_time, replayed.run_time
    ));
    report.push_str(&format!(
        "total: {checked} checks, {misses} statements with misses; regress replay {:.0?}, sqlsmith {:.0?}, own corpora {:.0?}, whole test {:.0?}\n",
        replay_time,
        smith_time,
        own_time,
        started.elapsed()
    ));
    println!("{report}");
    let mut listing = String::new();
    for (name, t) in &corpora {
        for (sql, what) in &t.misses {
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            listing.push_str(&format!(
                "{name}: {sql}\n    server touched, facts lack: {what}\n"
            ));
        }
    }
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oracle-misses.txt");
    std::fs::write(&file, format!("{report}\n{listing}")).expect("write the miss list");
    assert!(
        checked >= 5000,
        "only {checked} statements were checked; the oracle needs at least 5000\n{report}"
    );
    assert!(
        misses == 0,
        "{misses} statements touch what their facts lack (also in {}):\n{listing}\n{report}",
        file.display()
    );
}
