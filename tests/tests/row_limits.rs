//! Blast-radius limits: a policy caps the rows UPDATE, DELETE and MERGE may change; a
//! statement over the cap changes nothing and says why, in both protocols, with and
//! without the client's own transaction.

use portcullis_tests::raw::{RawClient, bare, bind, errors, execute, status, tags};
use portcullis_tests::{Harness, PERMIT_ALL, Setup, stdout_ok};
use portcullis_wire::frontend::{Parse, Query};

const CAP: &str = r#"
@id("engineers-change-at-most-3-rows")
@max_rows("3")
permit(principal in Group::"engineering", action in [Action::"update", Action::"delete", Action::"merge"], resource);
"#;

async fn harness() -> Harness {
    let h = Harness::with(Setup {
        policies: vec![
            ("permit.cedar".into(), PERMIT_ALL.into()),
            ("cap.cedar".into(), CAP.into()),
        ],
        ..Setup::default()
    })
    .await;
    h.direct(
        "app",
        "create table t (id int primary key, v int); insert into t select g, 0 from generate_series(1, 10) g; alter table t owner to gw_app",
    );
    h
}

fn sum(h: &Harness) -> String {
    h.direct("app", "select sum(v) from t")
}

fn limit_error(e: &tokio_postgres::Error) -> String {
    let db = e.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "54000", "{}", db.message());
    db.message().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_protocol_outside_and_inside_transactions() {
    let h = harness().await;
    let c = h.client().await;
    let err = c
        .batch_execute("update t set v = v + 1 where id <= 5")
        .await
        .unwrap_err();
    assert_eq!(
        limit_error(&err),
        "statement would change 5 rows, more than the 3 allowed by policy \"engineers-change-at-most-3-rows\"; nothing was changed"
    );
    assert_eq!(sum(&h), "0");
    // Within the limit it runs and commits as usual.
    let n = c.execute("update t set v = v + 1 where id <= 3", &[]).await;
    assert_eq!(n.unwrap(), 3);
    let rows = c.simple_query("delete from t where id = 10").await.unwrap();
    assert!(matches!(
        &rows[0],
        tokio_postgres::SimpleQueryMessage::CommandComplete(1)
    ));
    assert_eq!(sum(&h), "3");

    // Inside the client's transaction: the statement over the limit fails the transaction,
    // so COMMIT cannot keep anything from it.
    c.batch_execute("begin").await.unwrap();
    c.batch_execute("update t set v = 100 where id = 1")
        .await
        .unwrap();
    let err = c
        .batch_execute("delete from t where id > 1")
        .await
        .unwrap_err();
    limit_error(&err);
    assert_eq!(
        c.batch_execute("select 1")
            .await
            .unwrap_err()
            .as_db_error()
            .unwrap()
            .code()
            .code(),
        "25P02"
    );
    c.batch_execute("commit").await.unwrap();
    assert_eq!(sum(&h), "3");
    assert_eq!(h.direct("app", "select count(*) from t"), "9");
    // A limited statement cannot share a query string with transaction control.
    let err = c
        .batch_execute("begin; update t set v = 7 where id in (1, 2); commit")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "0A000");
    // Within the limit inside a transaction, the client's COMMIT decides.
    c.batch_execute("begin").await.unwrap();
    c.batch_execute("update t set v = 7 where id in (1, 2)")
        .await
        .unwrap();
    c.batch_execute("commit").await.unwrap();
    assert_eq!(h.direct("app", "select v from t where id = 1"), "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_with_parameters() {
    let h = harness().await;
    let c = h.client().await;
    let update = c
        .prepare("update t set v = $1 where id <= $2")
        .await
        .unwrap();
    let err = c.execute(&update, &[&9i32, &4i32]).await.unwrap_err();
    limit_error(&err);
    assert_eq!(sum(&h), "0");
    assert_eq!(c.execute(&update, &[&9i32, &2i32]).await.unwrap(), 2);
    assert_eq!(sum(&h), "18");
    // The session goes on normally after a refusal.
    assert_eq!(
        c.query_one("select count(*) from t", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        10
    );

    // In a transaction, over the limit: the transaction fails and rolls back.
    let mut c = c;
    let tx = c.transaction().await.unwrap();
    tx.execute("update t set v = 0 where id = 1", &[])
        .await
        .unwrap();
    let err = tx
        .execute("delete from t where id > $1", &[&0i32])
        .await
        .unwrap_err();
    limit_error(&err);
    // COMMIT of a failed transaction rolls it back, the earlier update included.
    tx.commit().await.unwrap();
    assert_eq!(sum(&h), "18");
    assert_eq!(h.direct("app", "select count(*) from t"), "10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_after_a_refused_execute_skips_to_sync() {
    let h = harness().await;
    let mut c = RawClient::connect(h.port()).await;
    c.login("app", &h.token("erin", &["engineering"]))
        .await
        .unwrap();
    c.send(&[
        Parse::new("", b"update t set v = 5 where id <= 6", &[]).into_message(),
        bind("", "", &[]),
        execute("", 0),
        Parse::new("", b"insert into t values (99, 99)", &[]).into_message(),
        bind("", "", &[]),
        execute("", 0),
        bare(b'S'),
    ])
    .await;
    let msgs = c.until_ready().await;
    assert_eq!(tags(&msgs), "12EZ");
    assert_eq!(errors(&msgs)[0].code(), "54000");
    assert_eq!(status(&msgs), 'I');
    assert_eq!(sum(&h), "0");
    assert_eq!(h.direct("app", "select count(*) from t where id = 99"), "0");
    // A capped statement mixed with transaction control in one query string is refused.
    c.send(&[Query::new(b"begin; update t set v = 1 where id = 1; commit").into_message()])
        .await;
    let msgs = c.until_ready().await;
    assert_eq!(errors(&msgs)[0].code(), "0A000");
    assert_eq!(status(&msgs), 'I');
    assert_eq!(sum(&h), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sees_the_limit_too() {
    let h = harness().await;
    let out = h.psql(&["-c", "delete from t where id > 2"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("statement would change 8 rows"));
    let out = stdout_ok(&h.psql(&["-c", "delete from t where id > 8"]).await);
    assert!(out.contains("DELETE 2"), "{out}");
    assert_eq!(h.direct("app", "select count(*) from t"), "8");
}
