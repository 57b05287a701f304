//! tokio-postgres through the gateway: prepared and pipelined queries, binary COPY both
//! ways, LISTEN/NOTIFY, cancel, transactions, and a 100 MB value.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt};
use portcullis_tests::raw::{RawClient, errors, rows};
use portcullis_tests::{Harness, activity_count, db_error, wait_until};
use portcullis_wire::frontend::Query;
use portcullis_wire::startup::{self, CancelKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::AsyncMessage;
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::Type;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_and_pipelined_queries() {
    let h = Harness::start().await;
    let c = h.client().await;
    c.batch_execute("create table kv (k int primary key, v text)")
        .await
        .unwrap();
    let insert = c.prepare("insert into kv values ($1, $2)").await.unwrap();
    for i in 0..50 {
        c.execute(&insert, &[&i, &format!("v{i}")]).await.unwrap();
    }
    // Pipelined: many queries in flight at once on one connection.
    let select = c
        .prepare_typed("select v from kv where k = $1", &[Type::INT4])
        .await
        .unwrap();
    let futures: Vec<_> = (0..50)
        .map(|i: i32| {
            let c = &c;
            let select = &select;
            async move {
                c.query_one(select, &[&i])
                    .await
                    .map(|r| r.get::<_, String>(0))
            }
        })
        .collect();
    let results = futures_util::future::join_all(futures).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), format!("v{i}"));
    }
    // An error in the middle of a pipeline affects only its own query.
    let (a, b, c2) = tokio::join!(
        c.query_one("select 1::int", &[]),
        c.query_one("select 1/0", &[]),
        c.query_one("select 3::int", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(db_error(&b.unwrap_err()).0, "22012");
    assert_eq!(c2.unwrap().get::<_, i32>(0), 3);
    // Unnamed portals with row limits (portal suspension) via query_raw on a portal.
    let rows: Vec<i32> = c
        .query("select k from kv order by k", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_savepoints_and_rollback() {
    let h = Harness::start().await;
    let mut c = h.client().await;
    c.batch_execute("create table acct (id int primary key, balance int)")
        .await
        .unwrap();
    c.batch_execute("insert into acct values (1, 100), (2, 100)")
        .await
        .unwrap();
    {
        let mut tx = c.transaction().await.unwrap();
        tx.execute("update acct set balance = balance - 50 where id = 1", &[])
            .await
            .unwrap();
        let sp = tx.savepoint("sp").await.unwrap();
        sp.execute("update acct set balance = 0", &[])
            .await
            .unwrap();
        sp.rollback().await.unwrap();
        let row = tx
            .query_one("select sum(balance)::int from acct", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), 150);
        tx.rollback().await.unwrap();
    }
    assert_eq!(h.direct("app", "select sum(balance) from acct"), "200");
    {
        let tx = c.transaction().await.unwrap();
        tx.execute("update acct set balance = balance + 1", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(h.direct("app", "select sum(balance) from acct"), "202");
    // A connection dropped in the middle of a transaction leaves nothing behind.
    let c2 = h.client().await;
    c2.batch_execute("begin; update acct set balance = 0;")
        .await
        .unwrap();
    drop(c2);
    let direct = h.direct_client("app").await;
    // Wait for the server to end the dropped session, then check nothing was committed.
    wait_until("the dropped session to end", || async {
        activity_count(
            &direct,
            "usename = 'gw_app' and state like 'idle in transaction%'",
        )
        .await
            == 0
    })
    .await;
    assert_eq!(h.direct("app", "select sum(balance) from acct"), "202");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_in_and_out() {
    let h = Harness::start().await;
    let c = h.client().await;
    c.batch_execute("create table bc (id int, payload bytea, note text)")
        .await
        .unwrap();
    let sink = c
        .copy_in("copy bc (id, payload, note) from stdin (format binary)")
        .await
        .unwrap();
    let writer = BinaryCopyInWriter::new(sink, &[Type::INT4, Type::BYTEA, Type::TEXT]);
    futures_util::pin_mut!(writer);
    for i in 0..10_000i32 {
        let payload = vec![(i % 256) as u8; (i % 50) as usize];
        let note = if i % 7 == 0 {
            None
        } else {
            Some(format!("note {i}"))
        };
        writer.as_mut().write(&[&i, &payload, &note]).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 10_000);
    assert_eq!(
        h.direct(
            "app",
            "select count(*), count(note), sum(length(payload)) from bc"
        ),
        "10000|8571|245000"
    );

    let stream = c
        .copy_out("copy (select id, payload, note from bc order by id) to stdout (format binary)")
        .await
        .unwrap();
    let rows = BinaryCopyOutStream::new(stream, &[Type::INT4, Type::BYTEA, Type::TEXT]);
    let rows: Vec<_> = rows.try_collect().await.unwrap();
    assert_eq!(rows.len(), 10_000);
    assert_eq!(rows[9999].get::<i32>(0), 9999);
    assert_eq!(rows[9999].get::<&[u8]>(1).len(), 9999 % 50);
    assert_eq!(rows[7].get::<Option<&str>>(2), None);

    // Text COPY in through the extended protocol path tokio-postgres uses, and a failing one.
    let mut sink = Box::pin(c.copy_in("copy bc (id, note) from stdin").await.unwrap());
    sink.send(Bytes::from_static(b"1\tfirst\n2\tsecond\n"))
        .await
        .unwrap();
    assert_eq!(sink.as_mut().finish().await.unwrap(), 2);
    let mut sink = Box::pin(c.copy_in("copy bc (id, note) from stdin").await.unwrap());
    sink.send(Bytes::from_static(b"x\tbad\n")).await.unwrap();
    let err = sink.as_mut().finish().await.unwrap_err();
    assert_eq!(db_error(&err).0, "22P02");
    // The session is still usable.
    let n: i64 = c
        .query_one("select count(*) from bc", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10_002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_reports_the_real_backend_pid() {
    let h = Harness::start().await;
    let conninfo = format!(
        "{} password={}",
        h.conninfo("erin", "app", "disable"),
        h.token("erin", &["engineering"])
    );
    let (listener, mut conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            if let AsyncMessage::Notification(n) = m {
                let _ = tx.send(n);
            }
        }
    });
    listener.batch_execute("listen events").await.unwrap();
    let notifier = h.client().await;
    let notifier_pid: i32 = notifier
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    notifier
        .batch_execute("notify events, 'hello'")
        .await
        .unwrap();
    notifier
        .execute("select pg_notify('events', $1)", &[&"second"])
        .await
        .unwrap();
    let n = rx.recv().await.unwrap();
    assert_eq!((n.channel(), n.payload()), ("events", "hello"));
    // The PID in the notification is the upstream backend's, the one the client was told.
    assert_eq!(n.process_id(), notifier_pid);
    assert_eq!(rx.recv().await.unwrap().payload(), "second");
    // And it is a real server process.
    let direct = h.direct_client("app").await;
    let row = direct
        .query_one(
            "select count(*) from pg_stat_activity where pid = $1",
            &[&notifier_pid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_right_backend() {
    let h = Harness::start().await;
    let c = h.client().await;
    let token = c.cancel_token();
    let other = h.client().await;
    let started = Instant::now();
    let sleeper = tokio::spawn(async move { c.query("select pg_sleep(30)", &[]).await });
    // Wait until the statement is running upstream before cancelling it.
    let direct = h.direct_client("app").await;
    wait_until("pg_sleep to start", || async {
        activity_count(
            &direct,
            "query = 'select pg_sleep(30)' and state = 'active'",
        )
        .await
            == 1
    })
    .await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let err = sleeper.await.unwrap().unwrap_err();
    assert_eq!(db_error(&err).0, "57014");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
    // The other session was not affected.
    let v: i32 = other.query_one("select 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
}

/// Sends a CancelRequest and waits until the gateway has dealt with it (it closes the
/// connection when done).
async fn send_cancel(port: u16, key: &CancelKey) {
    let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    c.write_all(&startup::cancel_request(key)).await.unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        c.read(&mut buf).await.unwrap(),
        0,
        "the gateway answered a cancel request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cancel_key_cancels_nothing() {
    let h = Harness::start().await;
    let direct = h.direct_client("app").await;
    direct
        .query("select pg_advisory_lock(42)", &[])
        .await
        .unwrap();
    let mut raw = RawClient::connect(h.port()).await;
    let login = raw
        .login("app", &h.token("erin", &["engineering"]))
        .await
        .unwrap();
    let waiting = "query like '%pg_advisory_xact_lock(42)%' and wait_event_type = 'Lock'";
    raw.send(&[Query::new(b"select pg_advisory_xact_lock(42), 'done'").into_message()])
        .await;
    wait_until("the query to wait for the lock", || async {
        activity_count(&direct, waiting).await == 1
    })
    .await;

    // Same PID, wrong secret: ignored.
    let mut secret = login.key.secret.to_vec();
    secret[0] ^= 0xff;
    send_cancel(
        h.port(),
        &CancelKey {
            pid: login.key.pid,
            secret: secret.into(),
        },
    )
    .await;
    direct
        .query("select pg_advisory_unlock(42)", &[])
        .await
        .unwrap();
    let msgs = raw.until_ready().await;
    assert!(
        errors(&msgs).is_empty(),
        "the query was cancelled: {:?}",
        errors(&msgs)
    );
    assert_eq!(rows(&msgs)[0][1].as_deref(), Some("done"));

    // The key the gateway issued cancels.
    direct
        .query("select pg_advisory_lock(42)", &[])
        .await
        .unwrap();
    raw.send(&[Query::new(b"select pg_advisory_xact_lock(42), 'again'").into_message()])
        .await;
    wait_until("the query to wait for the lock", || async {
        activity_count(&direct, waiting).await == 1
    })
    .await;
    send_cancel(
        h.port(),
        &CancelKey {
            pid: login.key.pid,
            secret: login.key.secret.clone(),
        },
    )
    .await;
    let msgs = raw.until_ready().await;
    assert_eq!(errors(&msgs)[0].code(), "57014");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_megabyte_value_round_trips() {
    let h = Harness::start().await;
    let c = h.client().await;
    c.batch_execute("create table big (id int, data bytea)")
        .await
        .unwrap();
    let data: Vec<u8> = (0..100 * 1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    c.execute("insert into big values (1, $1)", &[&data])
        .await
        .unwrap();
    let row = c
        .query_one("select data from big where id = 1", &[])
        .await
        .unwrap();
    let back: &[u8] = row.get(0);
    assert_eq!(back.len(), data.len());
    assert!(back == &data[..], "value changed in transit");
    let md5_direct = h.direct("app", "select md5(data) from big");
    let row = c.query_one("select md5(data) from big", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), md5_direct);
}
