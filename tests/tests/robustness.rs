//! Bad input gets a clear error and loses nothing: garbage, oversized and malformed
//! messages, silent clients, too many clients, and targets that are down or refuse.

use std::time::Duration;

use portcullis_tests::raw::{RawClient, frame_header};
use portcullis_tests::{Harness, Setup, wait_until};
use tokio::io::AsyncReadExt;

/// Reads what the gateway sends until it closes; returns the FATAL error if one came.
async fn fatal_then_close(c: &mut RawClient) -> Option<portcullis_wire::backend::ErrorResponse> {
    let mut error = None;
    while let Some(m) = c.recv().await {
        if m.tag() == b'E' {
            error = Some(portcullis_wire::backend::ErrorResponse::decode(&m).unwrap());
        }
    }
    error
}

async fn still_serving(h: &Harness) {
    let c = h.client().await;
    assert_eq!(
        c.query_one("select 'ok'", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_startup_packets() {
    let h = Harness::start().await;
    let bystander = h.client().await;

    let mut c = RawClient::connect(h.port()).await;
    c.send_raw(&[0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x05])
        .await
        .unwrap();
    let e = fatal_then_close(&mut c).await.expect("an error");
    assert_eq!(e.code(), "08P01");

    let mut c = RawClient::connect(h.port()).await;
    c.send_raw(&1_000_000i32.to_be_bytes()).await.unwrap();
    let e = fatal_then_close(&mut c).await.expect("an error");
    assert_eq!(e.code(), "08P01");
    assert!(e.message().contains("exceeds the limit"), "{}", e.message());

    // A startup message with a parameter name that never ends.
    let mut packet = Vec::new();
    packet.extend_from_slice(&20i32.to_be_bytes());
    packet.extend_from_slice(&196608i32.to_be_bytes());
    packet.extend_from_slice(b"useruseruser");
    let mut c = RawClient::connect(h.port()).await;
    c.send_raw(&packet).await.unwrap();
    assert_eq!(
        fatal_then_close(&mut c).await.expect("an error").code(),
        "08P01"
    );

    assert_eq!(
        bystander
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_after_login() {
    let h = Harness::with(Setup {
        extra_toml: "[limits]\nmax_message_bytes = 1048576\n".into(),
        ..Setup::default()
    })
    .await;
    let bystander = h.client().await;
    let token = h.token("erin", &["engineering"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("oversized", frame_header(b'Q', i32::MAX).to_vec()),
        ("negative length", frame_header(b'Q', -5).to_vec()),
        ("unknown type", {
            let mut v = frame_header(b'z', 4).to_vec();
            v.extend_from_slice(&[]);
            v
        }),
        ("Query without terminator", {
            let mut v = frame_header(b'Q', 7).to_vec();
            v.extend_from_slice(b"sel");
            v
        }),
        ("Bind with a runaway value", {
            let body = b"\0\0\0\0\0\x01\0\0\x7f\xff";
            let mut v = frame_header(b'B', 4 + body.len() as i32).to_vec();
            v.extend_from_slice(body);
            v
        }),
    ];
    for (name, bytes) in cases {
        let mut c = RawClient::connect(h.port()).await;
        c.login("app", &token).await.unwrap();
        c.send_raw(&bytes).await.unwrap();
        let e = fatal_then_close(&mut c)
            .await
            .unwrap_or_else(|| panic!("{name}: no error"));
        assert_eq!(e.code(), "08P01", "{name}: {}", e.message());
        assert!(
            e.message().starts_with("invalid message from client"),
            "{name}: {}",
            e.message()
        );
    }
    assert_eq!(
        bystander
            .query_one("select 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped() {
    let h = Harness::with(Setup {
        startup_timeout: Duration::from_millis(300),
        ..Setup::default()
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", h.port()))
        .await
        .unwrap();
    let mut buf = [0u8; 8];
    // The gateway closes the connection without a word once the timeout passes.
    assert_eq!(tcp.read(&mut buf).await.unwrap(), 0);
    // Also when the client stops after the startup packet, before sending its token.
    let mut c = RawClient::connect(h.port()).await;
    c.send_startup(
        portcullis_wire::startup::PROTOCOL_3_0,
        &[("user", "x"), ("database", "app")],
    )
    .await;
    let auth = c.recv().await.expect("password request");
    assert_eq!(auth.tag(), b'R');
    assert!(c.recv().await.is_none());
    still_serving(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_refused() {
    let h = Harness::with(Setup {
        max_connections: 2,
        ..Setup::default()
    })
    .await;
    let a = h.client().await;
    let b = h.client().await;
    let err = h.refused("erin", &["engineering"], "app").await;
    let (code, msg) = portcullis_tests::db_error(&err);
    assert_eq!(code, "53300");
    assert!(msg.contains("too many clients"), "{msg}");
    // Cancel requests still get through at the limit.
    let token = a.cancel_token();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    drop(b);
    wait_until("a slot to free up", || async {
        h.gateway.active_sessions() < 2
    })
    .await;
    let c = h.client().await;
    assert_eq!(
        c.query_one("select 3", &[]).await.unwrap().get::<_, i32>(0),
        3
    );
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_are_down_or_refuse() {
    let closed_port = portcullis_sandbox::free_port().unwrap();
    let mut h = Harness::with(Setup {
        extra_toml: format!(
            r#"
[[target]]
name = "down"
host = "127.0.0.1"
port = {closed_port}
database = "app"
tls = "disable"
[[target.role]]
name = "gw_app"
secret = "file:secrets/gw_app"
groups = ["engineering"]

[[target]]
name = "wrongsecret"
host = "127.0.0.1"
port = {{pg_port}}
database = "app"
tls = "disable"
[[target.role]]
name = "gw_app"
secret = "file:wrong-secret"
groups = ["engineering"]
"#
        ),
        files: vec![("wrong-secret".into(), "not-the-password".into())],
        ..Setup::default()
    })
    .await;
    let token = h.token("erin", &["engineering"]);

    let mut c = RawClient::connect(h.port()).await;
    let e = c.login("down", &token).await.unwrap_err();
    assert_eq!(e.code(), "08001");
    assert!(
        e.message()
            .starts_with("cannot reach target \"down\" at 127.0.0.1:"),
        "{}",
        e.message()
    );

    let mut c = RawClient::connect(h.port()).await;
    let e = c.login("wrongsecret", &token).await.unwrap_err();
    assert_eq!(e.code(), "08006");
    assert_eq!(
        e.message(),
        "target \"wrongsecret\" refused the gateway's login as role \"gw_app\": password authentication failed for user \"gw_app\""
    );
    assert!(!e.message().contains("not-the-password"));
    still_serving(&h).await;

    // The server goes away under a live session, and new logins fail promptly.
    let live = h.client().await;
    h.pg.stop().unwrap();
    let err = live.query_one("select 1", &[]).await.unwrap_err();
    assert!(
        err.is_closed()
            || err
                .as_db_error()
                .is_some_and(|d| d.code().code() == "57P01" || d.code().code() == "08006"),
        "{err:?}"
    );
    let mut c = RawClient::connect(h.port()).await;
    let e = c.login("app", &token).await.unwrap_err();
    assert_eq!(e.code(), "08001");
    h.pg.restart().unwrap();
    still_serving(&h).await;
}

/// Parse and Bind counts are unsigned 16-bit numbers, as PostgreSQL reads them: a statement
/// with 32,768 or 65,535 parameters (ORMs and bulk loaders reach them) runs through the
/// gateway as it does directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_with_up_to_65535_parameters_run() {
    use portcullis_tests::raw::{errors, execute, rows};
    use portcullis_wire::Message;
    use portcullis_wire::frontend::{BIND, Parse};
    let h = Harness::start().await;
    let mut raw = RawClient::connect(h.port()).await;
    raw.login("app", &h.token("erin", &["engineering"]))
        .await
        .expect("login");
    for n in [32_767usize, 32_768, 65_535] {
        let values: Vec<String> = (1..=n).map(|i| format!("(${i})")).collect();
        let sql = format!(
            "select count(*), sum(v) from (values {}) t(v)",
            values.join(",")
        );
        let parse = Parse::new("", sql.as_bytes(), &vec![23; n]);
        let bind = Message::build(BIND, |b| {
            use bytes::BufMut;
            b.put_slice(b"\0\0");
            b.put_u16(0);
            b.put_u16(n as u16);
            for _ in 0..n {
                b.put_i32(1);
                b.put_u8(b'1');
            }
            b.put_u16(0);
        });
        raw.send(&[
            parse.message().clone(),
            bind,
            execute("", 0),
            portcullis_wire::frontend::sync(),
        ])
        .await;
        let answers = raw.until_ready().await;
        assert!(errors(&answers).is_empty(), "{n}: {:?}", errors(&answers));
        let n = n.to_string();
        assert_eq!(
            rows(&answers),
            vec![vec![Some(n.clone()), Some(n.clone())]],
            "{n} parameters"
        );
    }
}

/// A Query followed at once by Terminate, or by the client closing its writing side: the
/// server answers the Query, then closes, and so does the gateway (psycopg's
/// `test_socket_closed` lost the answer 3 runs in 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_client_sends_last_still_gets_its_answer() {
    use portcullis_tests::raw::rows;
    use portcullis_wire::frontend::Query;
    let h = Harness::with(Setup::default()).await;
    for half_close in [false, true] {
        let mut c = RawClient::connect(h.port()).await;
        c.login("app", &h.token("dave", &["dba"]))
            .await
            .expect("login");
        let q = Query::new(b"SELECT pg_sleep(0.2), 42").into_message();
        if half_close {
            c.send(&[q]).await;
            c.shutdown_write().await;
        } else {
            c.send(&[q, portcullis_wire::frontend::terminate()]).await;
        }
        let answers = c.until_closed().await;
        assert_eq!(
            rows(&answers),
            vec![vec![Some(String::new()), Some("42".into())]],
            "half close: {half_close}: {answers:?}"
        );
        assert_eq!(
            answers.last().map(|m| m.tag()),
            Some(portcullis_wire::backend::READY_FOR_QUERY)
        );
    }
    still_serving(&h).await;
}

/// A cancel applies to what the client has sent, wherever it is in the gateway: a
/// statement still waiting for its audit event is not forwarded (the server, idle, would
/// ignore the cancel and run it to the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_never_overtakes_its_statement() {
    use portcullis_wire::frontend::Query;
    let h = Harness::with(Setup::default()).await;
    let token = h.token("dave", &["dba"]);
    for _ in 0..8 {
        let mut c = RawClient::connect(h.port()).await;
        let login = c.login("app", &token).await.expect("login");
        let key = cancel_key(&login);
        let started = std::time::Instant::now();
        c.send(&[Query::new(b"SELECT pg_sleep(60)").into_message()])
            .await;
        let mut cancel = RawClient::connect(h.port()).await;
        cancel
            .send_raw(&portcullis_wire::startup::cancel_request(&key))
            .await
            .unwrap();
        let answers = c.until_ready().await;
        let errors = portcullis_tests::raw::errors(&answers);
        assert_eq!(
            errors.first().map(|e| e.code()),
            Some("57014"),
            "{answers:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ran to its end"
        );
    }
    still_serving(&h).await;
}

/// A cancel that reaches a statement the server is running cancels that one alone: the
/// statement the client sends once it has the error runs (JDBC's query timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_a_running_statement_spares_the_next() {
    use portcullis_tests::raw::{errors, rows};
    use portcullis_wire::frontend::Query;
    let h = Harness::with(Setup::default()).await;
    let mut c = RawClient::connect(h.port()).await;
    let login = c
        .login("app", &h.token("dave", &["dba"]))
        .await
        .expect("login");
    let key = cancel_key(&login);
    c.send(&[Query::new(b"SELECT pg_sleep(60) AS running").into_message()])
        .await;
    // Running on the server, as the server itself says.
    let direct = h.direct_client("app").await;
    portcullis_tests::wait_until("the statement to run on the server", || async {
        portcullis_tests::activity_count(
            &direct,
            "query like '%AS running%' and state = 'active' and pid <> pg_backend_pid()",
        )
        .await
            == 1
    })
    .await;
    let mut cancel = RawClient::connect(h.port()).await;
    cancel
        .send_raw(&portcullis_wire::startup::cancel_request(&key))
        .await
        .unwrap();
    let answers = c.until_ready().await;
    assert_eq!(errors(&answers)[0].code(), "57014", "{answers:?}");
    for _ in 0..3 {
        c.send(&[Query::new(b"SELECT 'next'").into_message()]).await;
        let answers = c.until_ready().await;
        assert_eq!(
            rows(&answers),
            vec![vec![Some("next".into())]],
            "{answers:?}"
        );
    }
}

/// The key a client cancels its session's statement with, as the gateway issued it.
fn cancel_key(login: &portcullis_tests::raw::Login) -> portcullis_wire::startup::CancelKey {
    portcullis_wire::startup::CancelKey {
        pid: login.key.pid,
        secret: login.key.secret.clone(),
    }
}
