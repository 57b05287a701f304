//! Statements held for a manager's approval, with the shipped example policies (every
//! write needs a member of `managers`) and an `[approval]` store: the client's statement
//! waits on its live session, an approver decides on the control port, and the statement
//! runs (or is refused) exactly as sent.

use std::sync::Arc;

use portcullis_audit::Event;
use portcullis_gateway::FixedClock;
use portcullis_tests::{Harness, SAMPLE_SCHEMA, Setup, db_error, example_policies, wait_until};
use serde_json::{Value, json};

const BOB: (&str, &[&str]) = ("bob", &["engineering"]);
const CAROL: (&str, &[&str]) = ("carol", &["managers"]);
const MIA: (&str, &[&str]) = ("mia", &["managers"]);

async fn harness() -> Harness {
    let h = Harness::with(Setup {
        policies: example_policies(),
        clock: Some(Arc::new(FixedClock::new(
            "2026-11-24T10:00:00Z".parse().unwrap(),
        ))),
        extra_toml: format!(
            "{}\n[approval]\nstore = \"approvals.db\"\ndeadline = \"60s\"\n",
            Harness::ADMIN_FOR_SECURITY
        ),
        ..Setup::default()
    })
    .await;
    h.direct("app", SAMPLE_SCHEMA);
    h
}

/// A control-port call as `who`: status and JSON body.
async fn call(
    h: &Harness,
    who: (&str, &[&str]),
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", h.admin_url());
    let client = h.admin_client();
    let req = match method {
        "GET" => client.get(url),
        _ => client.post(url),
    }
    .bearer_auth(h.token(who.0, who.1));
    let req = match body {
        Some(b) => req.json(&b),
        None => req,
    };
    let answer = req.send().await.expect("the control port answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or_default())
}

/// Waits until `who` sees a pending request, and returns it.
async fn pending(h: &Harness, who: (&str, &[&str])) -> Value {
    let found = std::sync::Mutex::new(None);
    wait_until("a pending approval request", || async {
        let (_, body) = call(h, who, "GET", "/v1/approvals", None).await;
        let first = body["approvals"]
            .as_array()
            .and_then(|a| a.first().cloned());
        let seen = first.is_some();
        *found.lock().unwrap() = first;
        seen
    })
    .await;
    found.into_inner().unwrap().unwrap_or_default()
}

/// `who` approves request `id`, without a reason.
async fn approve(h: &Harness, who: (&str, &[&str]), id: &str) -> (u16, Value) {
    call(h, who, "POST", &format!("/v1/approvals/{id}/approve"), None).await
}

fn status_of(h: &Harness, id: i32) -> String {
    h.direct("app", &format!("select status from orders where id = {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_update_runs_once_a_manager_approves_it() {
    let h = harness().await;
    let mut psql = h.psql_command(BOB.0, BOB.1, "app");
    psql.args(["-c", "update orders set status = 'refunded' where id = 7"]);
    let task = tokio::spawn(async move { psql.output().await.unwrap() });
    let request = pending(&h, CAROL).await;
    let id = request["id"].as_str().unwrap().to_string();
    assert_eq!(request["subject"], "bob");
    assert_eq!(
        request["text"],
        "update orders set status = 'refunded' where id = 7"
    );
    assert_eq!(request["approvers"], json!(["managers"]));
    assert_eq!(request["policies"], json!(["writes-need-manager-approval"]));
    // Nothing has run while it waits.
    assert_eq!(status_of(&h, 7), "paid");
    // Only an eligible person other than the requester decides.
    let (status, body) = approve(&h, BOB, &id).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot decide their own request")
            || body["error"]
                .as_str()
                .unwrap()
                .contains("not in a group that may decide"),
        "{body}"
    );
    let alice = ("alice", &["data-science"][..]);
    let (status, body) = approve(&h, alice, &id).await;
    // To someone who may not decide it, the request does not exist.
    assert_eq!(status, 404, "{body}");
    let (status, decided) = call(
        &h,
        CAROL,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        Some(json!({"reason": "INC-123"})),
    )
    .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["state"], "approved");
    assert_eq!(decided["decided_by"], "carol");
    let out = task.await.unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "UPDATE 1");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!(
            "NOTICE:  statement held for approval: request {id} waits for a member of managers"
        )),
        "{out:?}"
    );
    assert_eq!(status_of(&h, 7), "refunded");
    // Decided once.
    let (status, _) = approve(&h, MIA, &id).await;
    assert_eq!(status, 409);
    // The trail: the statement names its approval, the decision names its approver.
    let approval = h
        .audit_events("statement")
        .await
        .into_iter()
        .find_map(|e| match e {
            Event::Statement(s) if s.text.contains("refunded") && s.approval.is_some() => {
                s.approval
            }
            _ => None,
        })
        .expect("the statement's event carries its approval");
    assert_eq!(
        (
            approval.request.as_str(),
            approval.approver.as_deref(),
            approval.outcome.as_str()
        ),
        (id.as_str(), Some("carol"), "approved")
    );
    assert!(h.audit_events("admin").await.iter().any(|e| matches!(
        e,
        Event::Admin(a) if a.action == "approval" && a.actor.as_deref() == Some("carol")
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_or_withdrawn_requests_run_nothing() {
    let h = harness().await;
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    let held = tokio::spawn(async move {
        let r = bob
            .execute(
                "update orders set status = $1 where id = $2",
                &[&"lost", &8i32],
            )
            .await;
        (bob, r)
    });
    let request = pending(&h, CAROL).await;
    let id = request["id"].as_str().unwrap();
    // The approver sees what will run: the text and its parameters.
    assert_eq!(
        request["text"],
        "update orders set status = $1 where id = $2"
    );
    // tokio-postgres sends every parameter in binary: shown as hex, never guessed.
    assert_eq!(request["parameters"], json!(["\\x6c6f7374", "\\x00000008"]));
    // A denial needs a reason, which the requester is told.
    let (status, _) = call(&h, CAROL, "POST", &format!("/v1/approvals/{id}/deny"), None).await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &h,
        CAROL,
        "POST",
        &format!("/v1/approvals/{id}/deny"),
        Some(json!({"reason": "not during the freeze"})),
    )
    .await;
    assert_eq!(status, 200);
    let (bob, r) = held.await.unwrap();
    assert_eq!(
        db_error(&r.unwrap_err()),
        (
            "42501".into(),
            "statement denied by carol: not during the freeze".into()
        )
    );
    assert_eq!(status_of(&h, 8), "paid");

    // A cancel withdraws the request; approving it afterwards runs nothing.
    let token = bob.cancel_token();
    let held = tokio::spawn(async move {
        bob.execute("update orders set status = 'gone' where id = 9", &[])
            .await
    });
    let request = pending(&h, CAROL).await;
    let id = request["id"].as_str().unwrap().to_string();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    assert_eq!(db_error(&held.await.unwrap().unwrap_err()).0, "57014");
    let (status, shown) = call(&h, BOB, "GET", &format!("/v1/approvals/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(shown["state"], "withdrawn");
    let (status, body) = approve(&h, CAROL, &id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(status_of(&h, 9), "paid");
    // Nothing left pending.
    let (_, list) = call(&h, CAROL, "GET", "/v1/approvals", None).await;
    assert_eq!(list["approvals"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_cannot_approve_their_own_write() {
    let h = harness().await;
    let carol = h.connect_as(CAROL.0, CAROL.1, "app").await.unwrap();
    let held =
        tokio::spawn(async move { carol.execute("delete from orders where id = 10", &[]).await });
    let request = pending(&h, MIA).await;
    let id = request["id"].as_str().unwrap();
    let (status, body) = approve(&h, CAROL, id).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "carol cannot decide their own request");
    // Not under another spelling of the name either (subjects compare as logins do).
    let (status, body) = call(
        &h,
        (" Carol", &["managers"]),
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // An approver whose access was revoked decides nothing.
    let (status, _) = h
        .kill_sessions(
            &h.token("sam", &["security"]),
            json!({"subject": "rita", "block_for": "1h"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &h,
        ("rita", &["managers"]),
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "access for rita is revoked");
    let (status, _) = approve(&h, MIA, id).await;
    assert_eq!(status, 200);
    assert_eq!(held.await.unwrap().unwrap(), 1);
    assert_eq!(
        h.direct("app", "select count(*) from orders where id = 10"),
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_write_is_held_where_it_runs() {
    let h = harness().await;
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    // Preparing runs nothing: not held.
    bob.batch_execute("prepare p as update orders set status = 'held' where id = 11")
        .await
        .unwrap();
    let held = tokio::spawn(async move { bob.batch_execute("execute p").await });
    let request = pending(&h, CAROL).await;
    assert_eq!(request["text"], "execute p");
    // The approver is shown what EXECUTE runs.
    assert_eq!(
        request["runs"],
        "prepare p as update orders set status = 'held' where id = 11"
    );
    assert_eq!(status_of(&h, 11), "paid");
    let id = request["id"].as_str().unwrap();
    let (status, _) = approve(&h, CAROL, id).await;
    assert_eq!(status, 200);
    held.await.unwrap().unwrap();
    assert_eq!(status_of(&h, 11), "held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_lifts_only_the_approval() {
    let h = harness().await;
    let bob = h.connect_as(BOB.0, BOB.1, "app").await.unwrap();
    // Row locks need approval, masked columns are refused: approved, the statement would
    // still be refused, so nobody is asked.
    let e = bob
        .simple_query("select id, email from customers where id = 1 for update")
        .await
        .unwrap_err();
    let (code, message) = db_error(&e);
    assert_eq!(code, "42501");
    assert!(message.contains("must be masked"), "{message}");
    let (_, list) = call(&h, CAROL, "GET", "/v1/approvals", None).await;
    assert_eq!(list["approvals"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_too_much_while_held_is_not_kept_waiting() {
    let h = harness().await;
    let mut raw = portcullis_tests::raw::RawClient::connect(h.port()).await;
    raw.login("app", &h.token(BOB.0, BOB.1)).await.unwrap();
    let big = format!("select 1 -- {}", "x".repeat(2 << 20));
    raw.send(&[
        portcullis_wire::frontend::Query::new(b"update orders set status = 'ghost' where id = 12")
            .into_message(),
        portcullis_wire::frontend::Query::new(big.as_bytes()).into_message(),
    ])
    .await;
    let answers = raw.until_ready().await;
    let errors = portcullis_tests::raw::errors(&answers);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code(), "54000", "{errors:?}");
    assert_eq!(status_of(&h, 12), "paid");
    // Its request is withdrawn: approving it runs nothing.
    let (_, list) = call(&h, CAROL, "GET", "/v1/approvals", None).await;
    assert_eq!(list["approvals"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jdbc_write_waits_for_approval_and_runs() {
    let h = harness().await;
    // The JDBC suite logs in as erin (engineering): her writes need a manager.
    let client = portcullis_tests::java(&h, "JdbcApproval", "sslmode=disable");
    let approver = async {
        let request = pending(&h, CAROL).await;
        assert_eq!(request["subject"], "erin");
        assert_eq!(
            request["text"],
            "update orders set status = $1 where id = $2"
        );
        let id = request["id"].as_str().unwrap().to_string();
        let (status, _) = approve(&h, CAROL, &id).await;
        assert_eq!(status, 200);
    };
    let (out, ()) = tokio::join!(client, approver);
    assert_eq!(out.trim(), "updated 1");
    assert_eq!(status_of(&h, 13), "approved-jdbc");
}
