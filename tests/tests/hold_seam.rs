//! The hold seam approvals build on, proven with a test-only decider through real clients
//! (psql, tokio-postgres, a raw protocol client): `/*hold*/` holds the statement where it
//! runs (a simple Query, a Bind) until the test decides on its request; `/*hold-briefly*/`
//! does the same with a deadline of a fraction of a second. Every way a wait ends is
//! exercised: approval, denial, deadline, cancel, disconnect, revocation, token expiry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_audit::Event;
use portcullis_gateway::decision::{Decider, Origin, SessionInfo, Statement, Verdict};
use portcullis_gateway::hold::{Hold, HoldRequest, RequestId, Resolution};
use portcullis_tests::raw::{RawClient, rows};
use portcullis_tests::{Harness, Setup, activity_count, db_error, stdout_ok, wait_until};
use portcullis_wire::backend::{self, ErrorResponse};
use portcullis_wire::frontend::Query;
use serde_json::json;
use tokio::sync::oneshot;

/// The requests the decider made, as an approval desk would hold them.
#[derive(Default)]
struct Desk {
    made: AtomicU64,
    open: Mutex<HashMap<String, oneshot::Sender<Resolution>>>,
    /// Requests whose wait ended without a decision: the decider's future was dropped.
    withdrawn: Mutex<Vec<String>>,
}

impl Desk {
    /// Waits for the `n`th request and returns its id.
    async fn request(&self, n: u64) -> String {
        let id = format!("r{n}");
        wait_until(&format!("request {id}"), || async {
            self.open.lock().unwrap().contains_key(&id)
        })
        .await;
        id
    }

    fn decide(&self, id: &str, resolution: Resolution) {
        let tx = self
            .open
            .lock()
            .unwrap()
            .remove(id)
            .expect("an open request");
        assert!(tx.send(resolution).is_ok(), "the wait for {id} had ended");
    }

    async fn withdrawn(&self, id: &str) {
        wait_until(&format!("{id} withdrawn"), || async {
            self.withdrawn.lock().unwrap().iter().any(|w| w == id)
        })
        .await;
    }
}

/// Marks a request withdrawn when its future is dropped undecided.
struct Withdraw {
    desk: Arc<Desk>,
    id: String,
    decided: bool,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if !self.decided {
            self.desk.open.lock().unwrap().remove(&self.id);
            self.desk.withdrawn.lock().unwrap().push(self.id.clone());
        }
    }
}

struct Approvals {
    desk: Arc<Desk>,
}

impl Decider for Approvals {
    fn decide(&self, _: &SessionInfo, s: &Statement<'_>) -> Verdict {
        let text = s.text.unwrap_or("");
        let runs = matches!(s.origin, Origin::Query { .. } | Origin::Bind { .. });
        if !runs || !text.contains("/*hold") {
            return Verdict::allow();
        }
        let id = format!("r{}", self.desk.made.fetch_add(1, Ordering::SeqCst) + 1);
        let (tx, rx) = oneshot::channel();
        self.desk.open.lock().unwrap().insert(id.clone(), tx);
        let guard = Withdraw {
            desk: self.desk.clone(),
            id: id.clone(),
            decided: false,
        };
        let wait = if text.contains("/*hold-briefly*/") {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(600)
        };
        Verdict::Hold(Hold {
            request: HoldRequest {
                id: RequestId(id.clone()),
                approvers: vec!["managers".into()],
                wait,
                approve_at: format!("`portcullis approvals approve {id}`"),
            },
            decision: Box::pin(async move {
                // The whole guard moves in (not only the field written below).
                let mut guard = guard;
                match rx.await {
                    Ok(r) => {
                        guard.decided = true;
                        r
                    }
                    Err(_) => std::future::pending().await,
                }
            }),
        })
    }
}

async fn harness_with(setup: Setup) -> (Harness, Arc<Desk>) {
    let desk = Arc::new(Desk::default());
    let h = Harness::with(Setup {
        decider: Some(Arc::new(Approvals { desk: desk.clone() })),
        ..setup
    })
    .await;
    (h, desk)
}

async fn harness() -> (Harness, Arc<Desk>) {
    harness_with(Setup::default()).await
}

fn approve(by: &str) -> Resolution {
    Resolution::Approved {
        by: by.into(),
        verdict: Verdict::allow(),
    }
}

/// The hold events of the trail, oldest first, as `(request, state, detail)`.
async fn holds(h: &Harness) -> Vec<(String, String, String)> {
    h.audit_events("hold")
        .await
        .into_iter()
        .rev()
        .filter_map(|e| match e {
            Event::Hold(e) => Some((e.request, e.state, e.detail)),
            _ => None,
        })
        .collect()
}

async fn raw_session(h: &Harness) -> RawClient {
    let mut c = RawClient::connect(h.port()).await;
    c.login("app", &h.token("erin", &["engineering"]))
        .await
        .unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_statement_is_announced_waits_and_runs_once_approved() {
    let (h, desk) = harness().await;
    let mut c = raw_session(&h).await;
    c.send(&[Query::new(b"select 'approved' /*hold*/").into_message()])
        .await;
    // The notice comes at once, before anyone decides.
    let notice = c.recv().await.unwrap();
    assert_eq!(notice.tag(), backend::NOTICE_RESPONSE);
    let notice = ErrorResponse::decode(&notice).unwrap();
    assert_eq!(
        notice.message(),
        "statement held for approval: request r1 waits for a member of managers"
    );
    assert!(
        notice
            .field(b'H')
            .is_some_and(|h| h.contains("`portcullis approvals approve r1`")),
        "{notice:?}"
    );
    let id = desk.request(1).await;
    // Nothing reached the server, and other sessions are served meanwhile.
    let direct = h.direct_client("app").await;
    assert_eq!(
        activity_count(
            &direct,
            "query like '%approved%' and pid <> pg_backend_pid()"
        )
        .await,
        0
    );
    let other: i32 = h
        .client()
        .await
        .query_one("select 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(other, 7);
    desk.decide(&id, approve("mia"));
    assert_eq!(
        rows(&c.until_ready().await),
        vec![vec![Some("approved".into())]]
    );
    // Inside the client's transaction (simple protocol): the transaction stays open
    // while the statement waits, and the approved statement runs in it.
    c.send(&[Query::new(b"begin; create temp table held (v int)").into_message()])
        .await;
    c.until_ready().await;
    c.send(&[Query::new(b"insert into held values (1) /*hold*/").into_message()])
        .await;
    assert_eq!(c.recv().await.unwrap().tag(), backend::NOTICE_RESPONSE);
    let in_tx = desk.request(2).await;
    desk.decide(&in_tx, approve("mia"));
    let answer = c.until_ready().await;
    assert_eq!(
        answer.last().map(|m| m.body().to_vec()),
        Some(b"T".to_vec()),
        "still in the transaction"
    );
    c.send(&[Query::new(b"select count(*) from held; commit").into_message()])
        .await;
    assert_eq!(rows(&c.until_ready().await), vec![vec![Some("1".into())]]);

    // psql shows the notice and then the result.
    let mut psql = h.psql_command("erin", &["engineering"], "app");
    psql.args(["-A", "-t", "-c", "select 'from psql' /*hold*/"]);
    let task = tokio::spawn(async move { psql.output().await.unwrap() });
    let id = desk.request(3).await;
    desk.decide(&id, approve("mia"));
    let out = task.await.unwrap();
    assert_eq!(stdout_ok(&out).trim(), "from psql");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("NOTICE:  statement held for approval: request r3"),
        "{out:?}"
    );

    let expected: Vec<(String, String, String)> = ["r1", "r2", "r3"]
        .iter()
        .flat_map(|r| {
            [
                (
                    r.to_string(),
                    "held".into(),
                    format!("`portcullis approvals approve {r}`"),
                ),
                (r.to_string(), "approved".into(), "approved by mia".into()),
            ]
        })
        .collect();
    assert_eq!(holds(&h).await, expected);
    let approvals: Vec<_> = h
        .audit_events("statement")
        .await
        .into_iter()
        .rev()
        .filter_map(|e| match e {
            Event::Statement(s) => s.approval,
            _ => None,
        })
        .map(|a| (a.request, a.approver, a.outcome))
        .collect();
    assert_eq!(
        approvals,
        ["r1", "r2", "r3"].map(|r| (
            r.to_string(),
            Some("mia".to_string()),
            "approved".to_string()
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_pipelines_and_transactions() {
    let (h, desk) = harness().await;
    let c = h.client().await;
    // Pipelined: the held statement is in the middle, what follows it waits for it.
    let held = c.query_one("select $1::text /*hold*/", &[&"held"]);
    let after = c.query_one("select 'after'::text", &[]);
    let approve_later = async {
        let id = desk.request(1).await;
        desk.decide(&id, approve("mia"));
    };
    let (held, after, ()) = tokio::join!(held, after, approve_later);
    assert_eq!(held.unwrap().get::<_, String>(0), "held");
    assert_eq!(after.unwrap().get::<_, String>(0), "after");

    // Denied inside a transaction: the transaction fails as after any error, and stays
    // open (held, nothing of it is lost) until the client ends it.
    c.batch_execute("create temp table t (v int)")
        .await
        .unwrap();
    c.batch_execute("begin; insert into t values (1)")
        .await
        .unwrap();
    let denied = c.query_one("select $1::int /*hold*/", &[&5]);
    let deny = async {
        let id = desk.request(2).await;
        desk.decide(
            &id,
            Resolution::Denied {
                by: "mia".into(),
                reason: "not during the freeze".into(),
            },
        );
    };
    let (denied, ()) = tokio::join!(denied, deny);
    assert_eq!(
        db_error(&denied.unwrap_err()),
        (
            "42501".into(),
            "statement denied by mia: not during the freeze".into()
        )
    );
    let aborted = c.query_one("select 1", &[]).await.unwrap_err();
    assert_eq!(db_error(&aborted).0, "25P02");
    c.batch_execute("rollback").await.unwrap();
    // Approved inside a transaction: it runs in that transaction.
    c.batch_execute("begin; insert into t values (2)")
        .await
        .unwrap();
    let approved = c.query_one("select count(*)::int from t /*hold*/", &[]);
    let approve_it = async {
        let id = desk.request(3).await;
        desk.decide(&id, approve("mia"));
    };
    let (approved, ()) = tokio::join!(approved, approve_it);
    assert_eq!(approved.unwrap().get::<_, i32>(0), 1);
    c.batch_execute("commit").await.unwrap();
    let states: Vec<String> = holds(&h).await.into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(
        states,
        ["held", "approved", "held", "denied", "held", "approved"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_ends_at_the_deadline_on_cancel_and_on_disconnect() {
    let (h, desk) = harness().await;
    let c = h.client().await;
    // Nobody decides in time.
    let err = c
        .query_one("select 1 /*hold-briefly*/", &[])
        .await
        .unwrap_err();
    let (code, message) = db_error(&err);
    assert_eq!(code, "57014");
    assert!(message.contains("approval request r1 expired"), "{message}");
    desk.withdrawn("r1").await;

    // Ctrl-C: the cancel withdraws the request.
    let token = c.cancel_token();
    let task = tokio::spawn(async move {
        let r = c.query_one("select 2 /*hold*/", &[]).await;
        (c, r)
    });
    desk.request(2).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (c, r) = task.await.unwrap();
    assert_eq!(
        db_error(&r.unwrap_err()),
        (
            "57014".into(),
            "canceling statement due to user request".into()
        )
    );
    desk.withdrawn("r2").await;
    // The session goes on, and the cancel, spent on the held statement, never reaches
    // the server to cancel the next one (which takes long enough to be hit).
    assert_eq!(
        c.query_one("select 3 from pg_sleep(0.3)", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );

    // The client goes away while held.
    let mut raw = raw_session(&h).await;
    raw.send(&[Query::new(b"select 4 /*hold*/").into_message()])
        .await;
    desk.request(3).await;
    drop(raw);
    desk.withdrawn("r3").await;
    wait_until("the withdrawal in the trail", || async {
        holds(&h)
            .await
            .iter()
            .any(|(r, s, _)| r == "r3" && s == "withdrawn")
    })
    .await;
    assert!(
        holds(&h).await.contains(&(
            "r3".into(),
            "withdrawn".into(),
            "the client disconnected".into()
        )),
        "{:?}",
        holds(&h).await
    );
    let states: Vec<(String, String)> = holds(&h)
        .await
        .into_iter()
        .map(|(r, s, _)| (r, s))
        .collect();
    assert_eq!(
        states,
        [
            ("r1", "held"),
            ("r1", "expired"),
            ("r2", "held"),
            ("r2", "canceled"),
            ("r3", "held"),
            ("r3", "withdrawn"),
        ]
        .map(|(r, s)| (r.to_string(), s.to_string()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_token_expiry_end_the_wait() {
    let t0: jiff::Timestamp = "2031-03-04T05:06:07Z".parse().unwrap();
    let clock = Arc::new(portcullis_gateway::FixedClock::new(t0));
    let (h, desk) = harness_with(Setup {
        session_clock: Some(clock.clone()),
        extra_toml: Harness::ADMIN_FOR_SECURITY.into(),
        ..Setup::default()
    })
    .await;
    // An operator revokes the caller while a statement is held.
    let (c, conn) = {
        let token = token_expiring(&h, "erin", t0 + jiff::SignedDuration::from_hours(1));
        let conninfo = format!("{} password={token}", h.conninfo("erin", "app", "disable"));
        let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
            .await
            .unwrap();
        (c, tokio::spawn(conn))
    };
    let task = tokio::spawn(async move { c.query_one("select 1 /*hold*/", &[]).await });
    desk.request(1).await;
    let (_, killed) = h
        .kill_sessions(&h.token("sam", &["security"]), json!({"subject": "erin"}))
        .await;
    assert_eq!(killed["ended"], 1);
    let (code, message) = fatal(task.await.unwrap().unwrap_err(), conn).await;
    assert_eq!(code, "57P01");
    assert!(message.contains("revoked access for erin"), "{message}");
    desk.withdrawn("r1").await;

    // The token runs out while its statement waits: the session ends as at any expiry.
    // It expired 29 s ago by the fixed clock, inside the verifier's 30 s leeway: the
    // session has a second left.
    let token = token_expiring(&h, "dana", t0 - jiff::SignedDuration::from_secs(29));
    let conninfo = format!("{} password={token}", h.conninfo("dana", "app", "disable"));
    let (c, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let err = c.query_one("select 2 /*hold*/", &[]).await.unwrap_err();
    let (code, message) = fatal(err, conn).await;
    assert_eq!(code, "28000");
    assert!(message.contains("token expired"), "{message}");
    desk.withdrawn("r2").await;
    wait_until("both ends in the trail", || async {
        holds(&h).await.len() == 4
    })
    .await;
    let states: Vec<(String, String, String)> = holds(&h).await;
    assert_eq!(
        states
            .iter()
            .map(|(r, s, _)| (r.as_str(), s.as_str()))
            .collect::<Vec<_>>(),
        [
            ("r1", "held"),
            ("r1", "withdrawn"),
            ("r2", "held"),
            ("r2", "token_expired"),
        ]
    );
    assert_eq!(states[1].2, "the session ended");
}

/// The FATAL error that ended a session: tokio-postgres hands it to the query waiting,
/// or else to the connection.
async fn fatal(
    query: tokio_postgres::Error,
    conn: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) -> (String, String) {
    match query.as_db_error() {
        Some(_) => db_error(&query),
        None => db_error(&conn.await.unwrap().unwrap_err()),
    }
}

/// A token of `sub` in engineering that expires at `exp` by the fixed clock.
fn token_expiring(h: &Harness, sub: &str, exp: jiff::Timestamp) -> String {
    let mut c = h.issuer.claims(sub, &["engineering"]);
    c["exp"] = json!(exp.as_second());
    c["iat"] = json!(exp.as_second() - 3600);
    c["nbf"] = json!(exp.as_second() - 3600);
    h.issuer.sign(&c)
}
