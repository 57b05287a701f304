//! SASL OAUTHBEARER (RFC 7628) as libpq 18 speaks it, by hand through the real protocol
//! (this machine's libpq is 15): discovery, a bearer token, a bad token, and the password
//! port left as it was.

use bytes::{BufMut, BytesMut};
use portcullis_tests::raw::RawClient;
use portcullis_tests::{Harness, Setup};
use portcullis_wire::Message;
use portcullis_wire::backend::{Authentication, ErrorResponse, READY_FOR_QUERY};
use portcullis_wire::startup::PROTOCOL_3_0;

fn initial_response(data: &[u8]) -> Message {
    let mut b = BytesMut::new();
    b.put_slice(b"OAUTHBEARER\0");
    b.put_i32(data.len() as i32);
    b.put_slice(data);
    Message::new(b'p', &b)
}

async fn start(h: &Harness) -> RawClient {
    let port = h
        .gateway
        .oauthbearer_addr()
        .expect("OAUTHBEARER listener")
        .port();
    let mut c = RawClient::connect(port).await;
    c.send_startup(PROTOCOL_3_0, &[("user", "alice"), ("database", "app")])
        .await;
    let offer = Authentication::decode(&c.recv().await.unwrap()).unwrap();
    assert_eq!(
        offer,
        Authentication::Sasl {
            mechanisms: vec!["OAUTHBEARER".into()]
        },
        "only OAUTHBEARER is offered on this port"
    );
    c
}

fn fatal(m: &Message) -> ErrorResponse {
    assert_eq!(m.tag(), b'E', "{m:?}");
    ErrorResponse::decode(m).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_discovery_token_and_refusal() {
    let h = Harness::with(Setup {
        listen_settings: "oauthbearer_address = \"127.0.0.1:0\"".into(),
        identity_settings: "oauth_scope = \"openid groups\"".into(),
        ..Setup::default()
    })
    .await;

    // Discovery: no token, so the client learns where to get one.
    let mut c = start(&h).await;
    c.send(&[initial_response(b"n,,\x01\x01")]).await;
    let Authentication::SaslContinue(json) =
        Authentication::decode(&c.recv().await.unwrap()).unwrap()
    else {
        panic!("expected the error challenge")
    };
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["status"], "invalid_token");
    assert_eq!(
        v["openid-configuration"],
        format!("{}/.well-known/openid-configuration", h.issuer.url())
    );
    assert_eq!(v["scope"], "openid groups");
    c.send(&[Message::new(b'p', b"\x01")]).await;
    let e = fatal(&c.recv().await.unwrap());
    assert_eq!(e.code(), "28000");
    assert!(c.recv().await.is_none(), "the connection closes");

    // A bearer token logs in like the password path's.
    let mut c = start(&h).await;
    let token = h.token("alice", &["data-science"]);
    c.send(&[initial_response(
        format!("n,,\x01auth=Bearer {token}\x01\x01").as_bytes(),
    )])
    .await;
    assert_eq!(
        Authentication::decode(&c.recv().await.unwrap()).unwrap(),
        Authentication::Ok
    );
    let welcome = c.until_ready().await;
    assert_eq!(welcome.last().unwrap().tag(), READY_FOR_QUERY);
    let mut q = BytesMut::new();
    q.put_slice(b"select current_user\0");
    c.send(&[Message::new(b'Q', &q)]).await;
    let rows = portcullis_tests::raw::rows(&c.until_ready().await);
    assert_eq!(rows, vec![vec![Some("gw_app".to_string())]]);

    // A forged token: the challenge, then the verifier's reason.
    let mut c = start(&h).await;
    // One character changed in the middle of the signature (still valid base64url).
    let at = token.len() - 10;
    let flipped = if &token[at..at + 1] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    c.send(&[initial_response(
        format!("n,,\x01auth=Bearer {forged}\x01\x01").as_bytes(),
    )])
    .await;
    assert!(matches!(
        Authentication::decode(&c.recv().await.unwrap()).unwrap(),
        Authentication::SaslContinue(_)
    ));
    c.send(&[Message::new(b'p', b"\x01")]).await;
    let e = fatal(&c.recv().await.unwrap());
    assert_eq!(e.code(), "28P01");
    assert!(e.message().contains("signature"), "{}", e.message());

    // Another mechanism is refused with a reason.
    let mut c = start(&h).await;
    let mut b = BytesMut::new();
    b.put_slice(b"SCRAM-SHA-256\0");
    b.put_i32(-1);
    c.send(&[Message::new(b'p', &b)]).await;
    let e = fatal(&c.recv().await.unwrap());
    assert!(e.message().contains("OAUTHBEARER"), "{}", e.message());

    // The password port is unchanged.
    let client = h.client().await;
    client.simple_query("select 1").await.unwrap();
}
