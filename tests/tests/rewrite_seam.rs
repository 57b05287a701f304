//! The result seam masking builds on, proven with a test-only rewriter through real
//! clients: psql (simple Query, COPY), tokio-postgres (binary results, a portal read in
//! parts, text COPY) and JDBC (a fetch size, so the portal is suspended between Executes).
//!
//! `/*bump*/` binds [`Bump`]: from each result's description it plans, per column, to
//! number the rows (a text column named `nth`: the rewriter's own count), upper-case text,
//! or add 1000 to an int4 in the format it arrives in. A right answer needs the actual
//! description and formats, and one binding for the whole result. `/*unbindable*/` binds
//! a rewriter that refuses every result, and `/*nocopy*/` one that cannot rewrite COPY:
//! nothing of those results may reach the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_gateway::decision::{Decider, SessionInfo, Statement, Verdict};
use portcullis_gateway::rewrite::{CopyRewriter, ResultRewriter, RowRewriter, copy_data};
use portcullis_tests::{Harness, Setup, stdout_ok};
use portcullis_wire::backend::{CopyOutResponse, DataRow, ErrorResponse, RowDescription, Severity};
use portcullis_wire::{Format, Message};

const TEXT: u32 = 25;
const INT4: u32 = 23;

#[derive(Clone, Copy)]
enum Plan {
    Nth,
    Upper,
    Plus(Format),
    Keep,
}

/// The rewriter the decider chooses; counts its bindings.
struct Bump {
    begins: Arc<AtomicUsize>,
}

struct BumpRows {
    plan: Vec<Plan>,
    rows: u64,
}

impl ResultRewriter for Bump {
    fn begin(&self, d: &RowDescription) -> Result<Box<dyn RowRewriter>, ErrorResponse> {
        self.begins.fetch_add(1, Ordering::SeqCst);
        let formats = d.formats();
        let plan = d
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match (f.type_oid, f.name.as_str()) {
                (TEXT, "nth") => Plan::Nth,
                (TEXT, _) => Plan::Upper,
                (INT4, _) => Plan::Plus(formats.of(i)),
                _ => Plan::Keep,
            })
            .collect();
        Ok(Box::new(BumpRows { plan, rows: 0 }))
    }

    fn begin_copy(&self, _: &CopyOutResponse) -> Result<Box<dyn CopyRewriter>, ErrorResponse> {
        self.begins.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(UpperCopy))
    }
}

impl RowRewriter for BumpRows {
    fn row(&mut self, row: DataRow) -> Result<Message, ErrorResponse> {
        self.rows += 1;
        let bad = || ErrorResponse::new(Severity::Error, "XX000", "not an int4");
        let mut values = Vec::new();
        for (v, plan) in row.values().zip(&self.plan) {
            values.push(match (v, plan) {
                (None, _) => None,
                (Some(_), Plan::Nth) => Some(self.rows.to_string().into_bytes()),
                (Some(b), Plan::Upper) => Some(b.to_ascii_uppercase()),
                (Some(b), Plan::Plus(Format::Text)) => {
                    let n: i32 = std::str::from_utf8(b)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(bad)?;
                    Some((n + 1000).to_string().into_bytes())
                }
                (Some(b), Plan::Plus(Format::Binary)) => {
                    let n = i32::from_be_bytes(b.try_into().map_err(|_| bad())?);
                    Some((n + 1000).to_be_bytes().to_vec())
                }
                (Some(b), Plan::Keep) => Some(b.to_vec()),
            });
        }
        Ok(DataRow::new(values.iter().map(|v| v.as_deref())).into_message())
    }
}

struct UpperCopy;

impl CopyRewriter for UpperCopy {
    fn data(&mut self, data: &[u8]) -> Result<Message, ErrorResponse> {
        Ok(copy_data(&data.to_ascii_uppercase()))
    }
}

/// Refuses every result it is bound to.
struct Unbindable;

impl ResultRewriter for Unbindable {
    fn begin(&self, _: &RowDescription) -> Result<Box<dyn RowRewriter>, ErrorResponse> {
        Err(ErrorResponse::new(
            Severity::Error,
            "0A000",
            "this result cannot be rewritten",
        ))
    }
}

/// Rewrites rows (upper-cased) but not COPY: the default `begin_copy` refuses.
struct NoCopy;

impl ResultRewriter for NoCopy {
    fn begin(&self, _: &RowDescription) -> Result<Box<dyn RowRewriter>, ErrorResponse> {
        Ok(Box::new(BumpRows {
            plan: vec![Plan::Upper; 64],
            rows: 0,
        }))
    }
}

struct Markers {
    begins: Arc<AtomicUsize>,
}

impl Decider for Markers {
    fn decide(&self, _: &SessionInfo, s: &Statement<'_>) -> Verdict {
        let text = s.text.unwrap_or("");
        let rewriter: Arc<dyn ResultRewriter> = if text.contains("/*bump*/") {
            Arc::new(Bump {
                begins: self.begins.clone(),
            })
        } else if text.contains("/*unbindable*/") {
            Arc::new(Unbindable)
        } else if text.contains("/*nocopy*/") {
            Arc::new(NoCopy)
        } else {
            return Verdict::allow();
        };
        Verdict::Forward(Some(rewriter))
    }
}

async fn harness() -> (Harness, Arc<AtomicUsize>) {
    let begins = Arc::new(AtomicUsize::new(0));
    let h = Harness::with(Setup {
        decider: Some(Arc::new(Markers {
            begins: begins.clone(),
        })),
        ..Setup::default()
    })
    .await;
    (h, begins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_results_and_copy_are_rewritten_per_result() {
    let (h, begins) = harness().await;
    let out = stdout_ok(
        &h.psql(&[
            "-A",
            "-t",
            "-c",
            "select 'abc'::text as v, 41 as n /*bump*/",
        ])
        .await,
    );
    assert_eq!(out.trim(), "ABC|1041");
    // Each statement of a Query is its own result, with its own count.
    let out = stdout_ok(
        &h.psql(&[
            "-A",
            "-t",
            "-c",
            "select g::text as nth from generate_series(5, 7) g /*bump*/; \
             select 'plain'; \
             select g::text as nth from generate_series(5, 6) g /*bump*/",
        ])
        .await,
    );
    assert_eq!(out.trim(), "1\n2\n3\nplain\n1\n2");
    let out = stdout_ok(
        &h.psql(&[
            "-c",
            "copy (select 'abc'::text union all select 'def') to stdout /*bump*/",
        ])
        .await,
    );
    assert_eq!(out.trim(), "ABC\nDEF");
    assert_eq!(begins.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_results_and_suspended_portals_keep_one_binding() {
    let (h, begins) = harness().await;
    let mut c = h.client().await;
    // tokio-postgres asks for every column in binary, and describes the statement, not
    // the portal: the gateway describes the portal itself.
    let rows = c
        .query(
            "select $1::text as v, g as n, g::text as nth from generate_series(1, 3) g /*bump*/",
            &[&"x"],
        )
        .await
        .unwrap();
    let got: Vec<(String, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("X".into(), 1001, "1".into()),
            ("X".into(), 1002, "2".into()),
            ("X".into(), 1003, "3".into()),
        ]
    );
    assert_eq!(begins.load(Ordering::SeqCst), 1);
    // A portal read two rows at a time: one result, one binding, one count.
    let tx = c.transaction().await.unwrap();
    let stmt = tx
        .prepare("select g as n, g::text as nth from generate_series(1, 5) g /*bump*/")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let part = tx.query_portal(&portal, 2).await.unwrap();
        if part.is_empty() {
            break;
        }
        seen.extend(
            part.iter()
                .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1))),
        );
    }
    tx.commit().await.unwrap();
    let expected: Vec<(i32, String)> = (1..=5).map(|i| (i + 1000, i.to_string())).collect();
    assert_eq!(seen, expected);
    assert_eq!(begins.load(Ordering::SeqCst), 2);
    // COPY TO STDOUT through the extended protocol.
    let copy = c
        .copy_out("copy (select 'abc'::text) to stdout /*bump*/")
        .await
        .unwrap();
    let data: Vec<bytes::Bytes> = futures_util::TryStreamExt::try_collect(copy).await.unwrap();
    assert_eq!(data.concat(), b"ABC\n");
    // Unrewritten statements stream as before.
    let plain: String = c.query_one("select 'abc'::text", &[]).await.unwrap().get(0);
    assert_eq!(plain, "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_fetch_size_and_copy_go_through_the_rewriter() {
    let (h, begins) = harness().await;
    let out = portcullis_tests::java(
        &h,
        "JdbcRewrite",
        "sslmode=disable&prepareThreshold=1&binaryTransfer=true",
    )
    .await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec!["fetch 25 ok", "fetch 25 ok", "copy ABC,DEF"]
    );
    assert_eq!(begins.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_rewritten_never_reaches_the_client() {
    let (h, _) = harness().await;
    for sql in [
        "select 'secret' /*unbindable*/",
        "copy (select 'secret') to stdout /*nocopy*/",
    ] {
        let out = h.psql(&["-A", "-t", "-c", sql]).await;
        assert!(!out.status.success(), "{sql}");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!stdout.contains("secret"), "{sql}: {stdout}");
        assert!(
            stderr.contains("FATAL:  terminating connection"),
            "{sql}: {stderr}"
        );
    }
    // Through the extended protocol too: the rows never leave, and the session ends.
    let c = h.client().await;
    let err = c
        .query("select 'secret'::text /*unbindable*/", &[])
        .await
        .unwrap_err();
    assert_eq!(
        portcullis_tests::db_error(&err).1,
        "terminating connection: this result cannot be rewritten"
    );
    assert!(
        c.simple_query("select 1").await.is_err(),
        "the session went on"
    );
    let events = h.audit_events("security").await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events.iter().all(|e| matches!(
        e,
        portcullis_audit::Event::Security(s) if s.what == "rewrite"
    )));
    // Everyone else goes on.
    let plain: String = h
        .client()
        .await
        .query_one("select 'fine'::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(plain, "fine");
}
