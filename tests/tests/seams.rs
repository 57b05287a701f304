//! The decision point and the expected-response queue, exercised by a test-only decider
//! driven by marker comments, through real clients and hand-built pipelines:
//! `/*refuse*/` refuses, `/*upper*/` upper-cases text values of the statement's rows,
//! `/*hold*/` waits for the test to release it, `/*refuse-exec*/` lets PREPARE through
//! but refuses EXECUTE of it, FunctionCall of int4mi is refused.

use std::sync::Arc;

use bytes::BufMut;
use portcullis_gateway::decision::{Decider, Origin, SessionInfo, Statement, Verdict};
use portcullis_gateway::hold::{Hold, HoldRequest, RequestId, Resolution};
use portcullis_gateway::rewrite::{ResultRewriter, RowRewriter};
use portcullis_tests::raw::{self, RawClient, bare, bind, errors, execute, rows, status, tags};
use portcullis_tests::{Harness, Setup, activity_count, db_error, stdout_ok, wait_until};
use portcullis_wire::Message;
use portcullis_wire::backend::{DataRow, ErrorResponse, RowDescription, Severity};
use portcullis_wire::frontend::{Parse, Query};
use tokio::sync::Notify;

/// Upper-cases every value of every row (the tests' rows are text).
struct Upper;

impl ResultRewriter for Upper {
    fn begin(&self, _: &RowDescription) -> Result<Box<dyn RowRewriter>, ErrorResponse> {
        Ok(Box::new(Upper))
    }
}

impl RowRewriter for Upper {
    fn row(&mut self, row: DataRow) -> Result<Message, ErrorResponse> {
        let values: Vec<Option<Vec<u8>>> = row
            .values()
            .map(|v| v.map(|b| b.to_ascii_uppercase()))
            .collect();
        Ok(DataRow::new(values.iter().map(|v| v.as_deref())).into_message())
    }
}

struct Markers {
    release: Arc<Notify>,
}

const INT4PL: u32 = 177;
const INT4MI: u32 = 181;

impl Decider for Markers {
    fn decide(&self, _session: &SessionInfo, s: &Statement<'_>) -> Verdict {
        if let Origin::FunctionCall { oid, .. } = s.origin {
            return if oid == INT4MI {
                Verdict::Refuse(ErrorResponse::new(
                    Severity::Error,
                    "42501",
                    "function call refused by marker",
                ))
            } else {
                Verdict::allow()
            };
        }
        let text = s.text.unwrap_or("");
        if let Some(p) = s.prepared
            && p.text.contains("/*refuse-exec*/")
        {
            return Verdict::Refuse(ErrorResponse::new(
                Severity::Error,
                "42501",
                "execute refused by marker",
            ));
        }
        if text.contains("/*refuse*/") {
            return Verdict::Refuse(ErrorResponse::new(
                Severity::Error,
                "42501",
                "statement refused by marker",
            ));
        }
        // Held once, when prepared; the re-decision at Bind goes through.
        if text.contains("/*hold*/") && !matches!(s.origin, Origin::Bind { .. }) {
            let release = self.release.clone();
            return Verdict::Hold(Hold {
                request: HoldRequest {
                    id: RequestId("marker".into()),
                    approvers: vec!["testers".into()],
                    wait: std::time::Duration::from_secs(600),
                    approve_at: "the test".into(),
                },
                decision: Box::pin(async move {
                    release.notified().await;
                    Resolution::Approved {
                        by: "the test".into(),
                        verdict: Verdict::allow(),
                    }
                }),
            });
        }
        if text.contains("/*upper*/") {
            return Verdict::Forward(Some(Arc::new(Upper)));
        }
        Verdict::allow()
    }
}

async fn harness() -> (Harness, Arc<Notify>) {
    let release = Arc::new(Notify::new());
    let h = Harness::with(Setup {
        decider: Some(Arc::new(Markers {
            release: release.clone(),
        })),
        ..Setup::default()
    })
    .await;
    h.direct(
        "app",
        "create table t (v text); alter table t owner to gw_app",
    );
    (h, release)
}

fn query(sql: &str) -> Message {
    Query::new(sql.as_bytes()).into_message()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_in_a_multi_statement_query_runs_nothing() {
    let (h, _) = harness().await;
    let out = h
        .psql(&[
            "-c",
            "insert into t values ('first'); select 1 /*refuse*/; insert into t values ('third')",
        ])
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ERROR:  statement refused by marker"));
    assert_eq!(h.direct("app", "select count(*) from t"), "0");
    // Comments hide nothing from the parser: the marker inside a string is not a comment,
    // but the decider sees the statement text and the refusal still applies per statement.
    let out = stdout_ok(&h.psql(&["-A", "-t", "-c", "select 'fine'"]).await);
    assert_eq!(out.trim(), "fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_inside_a_transaction_fails_it_upstream() {
    let (h, _) = harness().await;
    let mut c = RawClient::connect(h.port()).await;
    c.login("app", &h.token("erin", &["engineering"]))
        .await
        .unwrap();
    c.send(&[query("begin; insert into t values ('before')")])
        .await;
    assert_eq!(status(&c.until_ready().await), 'T');
    c.send(&[query("insert into t values ('refused') /*refuse*/")])
        .await;
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs)[0].code(), "42501");
    // The server itself now holds a failed transaction, as it would after its own error.
    assert_eq!(status(&msgs), 'E');
    c.send(&[query("select 1")]).await;
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs)[0].code(), "25P02");
    c.send(&[query("commit")]).await;
    let msgs = c.until_ready().await;
    assert!(
        msgs.iter()
            .any(|m| m.tag() == b'C' && m.body().starts_with(b"ROLLBACK"))
    );
    assert_eq!(status(&msgs), 'I');
    assert_eq!(h.direct("app", "select count(*) from t"), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_parse_in_a_pipeline_skips_to_sync() {
    let (h, _) = harness().await;
    let mut c = RawClient::connect(h.port()).await;
    c.login("app", &h.token("erin", &["engineering"]))
        .await
        .unwrap();
    c.send(&[
        Parse::new("", b"select $1::text as v", &[]).into_message(),
        bind("", "", &[Some("one")]),
        execute("", 0),
        Parse::new("s2", b"insert into t values ('x') /*refuse*/", &[]).into_message(),
        bind("", "s2", &[]),
        execute("", 0),
        bare(b'S'),
        Parse::new("", b"select 'after sync'", &[]).into_message(),
        bind("", "", &[]),
        execute("", 0),
        bare(b'S'),
    ])
    .await;
    let first = c.until_ready().await;
    assert_eq!(tags(&first), "12DCEZ");
    assert_eq!(rows(&first), vec![vec![Some("one".to_string())]]);
    assert_eq!(errors(&first)[0].message(), "statement refused by marker");
    assert_eq!(status(&first), 'I');
    let second = c.until_ready().await;
    assert_eq!(tags(&second), "12DCZ");
    assert_eq!(rows(&second)[0][0].as_deref(), Some("after sync"));
    assert_eq!(h.direct("app", "select count(*) from t"), "0");

    // Flush without Sync: the server answers what it has, and the queue stays in step.
    c.send(&[
        Parse::new("f", b"select 'flushed' /*upper*/", &[]).into_message(),
        bind("p", "f", &[]),
        execute("p", 0),
        bare(b'H'),
    ])
    .await;
    let mut got = Vec::new();
    while got.len() < 4 {
        got.push(c.recv().await.unwrap());
    }
    assert_eq!(tags(&got), "12DC");
    assert_eq!(rows(&got)[0][0].as_deref(), Some("FLUSHED"));
    c.send(&[bare(b'S')]).await;
    assert_eq!(tags(&c.until_ready().await), "Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_are_attributed_to_their_statement() {
    let (h, _) = harness().await;
    let out = stdout_ok(
        &h.psql(&[
            "-A",
            "-t",
            "-c",
            "select 'abc'; select 'def' /*upper*/; select 'ghi'",
        ])
        .await,
    );
    assert_eq!(out.trim(), "abc\nDEF\nghi");
    let c = h.client().await;
    let upper = c.prepare("select $1::text /*upper*/").await.unwrap();
    let plain = c.prepare("select $1::text").await.unwrap();
    // Interleaved in one pipeline, each execution keeps its own statement's rewrite.
    let (a, b, a2) = tokio::join!(
        c.query_one(&upper, &[&"xyz"]),
        c.query_one(&plain, &[&"xyz"]),
        c.query_one(&upper, &[&"q"])
    );
    assert_eq!(a.unwrap().get::<_, String>(0), "XYZ");
    assert_eq!(b.unwrap().get::<_, String>(0), "xyz");
    assert_eq!(a2.unwrap().get::<_, String>(0), "Q");
    // A statement that fails to prepare is refused by the decider, the session goes on.
    let err = c.prepare("select 1 /*refuse*/").await.unwrap_err();
    assert_eq!(
        db_error(&err),
        ("42501".into(), "statement refused by marker".into())
    );
    assert_eq!(
        c.query_one("select 5", &[]).await.unwrap().get::<_, i32>(0),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_level_execute_is_decided_on_what_was_prepared() {
    let (h, _) = harness().await;
    let mut c = RawClient::connect(h.port()).await;
    c.login("app", &h.token("erin", &["engineering"]))
        .await
        .unwrap();
    c.send(&[query("prepare p as select 'prepared' /*refuse-exec*/")])
        .await;
    assert!(errors(&c.until_ready().await).is_empty());
    c.send(&[query("execute p")]).await;
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs)[0].message(), "execute refused by marker");
    // Within one query string too, and after DEALLOCATE the name is free again.
    c.send(&[query("deallocate p; prepare p as select 'ok'; execute p")])
        .await;
    let msgs = c.until_ready().await;
    assert!(errors(&msgs).is_empty(), "{:?}", errors(&msgs));
    assert_eq!(rows(&msgs), vec![vec![Some("ok".to_string())]]);
    c.send(&[query("prepare q as select 'x' /*refuse-exec*/; execute q")])
        .await;
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs)[0].message(), "execute refused by marker");
    // Protocol-level names share the namespace: EXECUTE of a Parse'd statement.
    c.send(&[
        Parse::new("proto", b"select 'via parse' /*refuse-exec*/", &[]).into_message(),
        bare(b'S'),
    ])
    .await;
    assert_eq!(tags(&c.until_ready().await), "1Z");
    c.send(&[query("execute proto")]).await;
    assert_eq!(
        errors(&c.until_ready().await)[0].message(),
        "execute refused by marker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_statements_wait_and_can_be_cancelled() {
    let (h, release) = harness().await;
    let held = h.client().await;
    let held_task = tokio::spawn(async move {
        let r = held.query_one("select 'released' /*hold*/", &[]).await;
        (held, r)
    });
    // Others are served meanwhile.
    let other = h.client().await;
    assert_eq!(
        other
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    // The held statement has not reached the server.
    let direct = h.direct_client("app").await;
    assert_eq!(
        activity_count(
            &direct,
            "query like '%released%' and pid <> pg_backend_pid()"
        )
        .await,
        0
    );
    // A stored permit releases the hold whether or not it is already waiting.
    release.notify_one();
    let (held, r) = held_task.await.unwrap();
    assert_eq!(r.unwrap().get::<_, String>(0), "released");

    // A cancel request ends the wait with the usual error.
    let token = held.cancel_token();
    let task = tokio::spawn(async move { held.query_one("select 'never' /*hold*/", &[]).await });
    // A cancel wakes only a statement that is already waiting, so repeat it until the
    // held query has ended.
    wait_until("the cancel to end the hold", || {
        let token = token.clone();
        let finished = task.is_finished();
        async move {
            if !finished {
                let _ = token.cancel_query(tokio_postgres::NoTls).await;
            }
            finished
        }
    })
    .await;
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(db_error(&err).0, "57014");
}

fn function_call(oid: u32, args: &[i32]) -> Message {
    Message::build(b'F', |b| {
        b.put_u32(oid);
        b.put_i16(1);
        b.put_i16(1); // binary arguments
        b.put_i16(args.len() as i16);
        for a in args {
            b.put_i32(4);
            b.put_i32(*a);
        }
        b.put_i16(1); // binary result
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_function_calls_are_decided_too() {
    let (h, _) = harness().await;
    let mut c = RawClient::connect(h.port()).await;
    c.login("app", &h.token("erin", &["engineering"]))
        .await
        .unwrap();
    c.send(&[function_call(INT4PL, &[40, 2])]).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "VZ");
    assert_eq!(&msgs[0].body()[4..], &42i32.to_be_bytes());
    c.send(&[function_call(INT4MI, &[40, 2])]).await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "EZ");
    assert_eq!(
        raw::errors(&msgs)[0].message(),
        "function call refused by marker"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_decoded_from_the_client_encoding() {
    let (h, _) = harness().await;
    let mut c = RawClient::connect(h.port()).await;
    c.login_with(
        portcullis_wire::startup::PROTOCOL_3_0,
        &[
            ("user", "erin"),
            ("database", "app"),
            ("client_encoding", "LATIN1"),
        ],
        &h.token("erin", &["engineering"]),
    )
    .await
    .unwrap();
    // 0xE9 is é in LATIN1 and not valid UTF-8 on its own: the decider still sees the marker.
    c.send(&[Query::new(b"select 'caf\xe9' /*upper*/").into_message()])
        .await;
    let msgs = c.until_ready().await;
    let row = portcullis_wire::backend::DataRow::decode(
        msgs.iter().find(|m| m.tag() == b'D').unwrap().clone(),
    )
    .unwrap();
    assert_eq!(row.values().next().unwrap().unwrap(), b"CAF\xe9");
    c.send(&[Query::new(b"select 'caf\xe9' /*refuse*/").into_message()])
        .await;
    assert_eq!(errors(&c.until_ready().await)[0].code(), "42501");
    // The session switches to UTF8; the gateway follows the server's ParameterStatus.
    c.send(&[query("set client_encoding to 'UTF8'")]).await;
    c.until_ready().await;
    c.send(&[Query::new("select 'café' /*upper*/".as_bytes()).into_message()])
        .await;
    assert_eq!(rows(&c.until_ready().await)[0][0].as_deref(), Some("CAFé"));
}

/// A named Parse is answered when the client's Sync (or Flush) asks for answers, as direct:
/// the gateway neither flushes it early nor waits for it. A Parse the server refuses (the
/// name is taken) leaves the statement it had, and a Bind after the Sync runs, and is
/// decided and recorded as, that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_parses_cost_no_round_trip_and_settle_on_the_server() {
    let h = Harness::with(Setup::default()).await;
    let mut c = RawClient::connect(h.port()).await;
    c.login("app", &h.token("dave", &["dba"]))
        .await
        .expect("login");
    c.send(&[Parse::new("s", b"SELECT 1 AS first", &[]).message().clone()])
        .await;
    // Nothing is owed before a Sync or Flush. (A bounded wait can only miss an early
    // answer on a slow machine, never invent one.)
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), c.recv()).await;
    assert!(early.is_err(), "answered before the Sync: {early:?}");
    c.send(&[portcullis_wire::frontend::sync()]).await;
    assert!(errors(&c.until_ready().await).is_empty());
    c.send(&[
        Parse::new("s", b"SELECT 2 AS second", &[])
            .message()
            .clone(),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert_eq!(errors(&c.until_ready().await)[0].code(), "42P05");
    c.send(&[
        bind("", "s", &[]),
        execute("", 0),
        portcullis_wire::frontend::sync(),
    ])
    .await;
    assert_eq!(rows(&c.until_ready().await), vec![vec![Some("1".into())]]);
    let binds: Vec<String> = h
        .audit_events("statement")
        .await
        .iter()
        .filter_map(|e| match e {
            portcullis_audit::Event::Statement(s) if s.origin == "bind" => Some(s.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(binds, vec!["SELECT 1 AS first".to_string()]);
}
