//! The tripwire: when the server's answer contradicts what the gateway decided, the session
//! ends with a FATAL error, the trail records a security event, and the gateway logs at
//! error level.
//!
//! The one disagreement left to provoke is the operator's: a configuration reload that
//! changes `standard_conforming_strings` takes effect in a session before the next
//! command is read, but the server reports it only at the ReadyForQuery after that
//! command. The gateway decides that command with the setting last reported.

use portcullis_tests::raw::RawClient;
use portcullis_tests::{Harness, SAMPLE_SCHEMA, Setup};
use portcullis_wire::backend;
use portcullis_wire::frontend::Query;

/// One SELECT with the setting on; with it off, a SELECT, a DELETE and a SELECT.
const TWO_READINGS: &[u8] = br"SELECT '\' , $$' ; DELETE FROM orders WHERE id < 0; SELECT 1 -- $$";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_the_gateway_did_not_decide_ends_the_session() {
    let h = Harness::with(Setup::default()).await;
    h.direct("app", SAMPLE_SCHEMA);
    let mut raw = RawClient::connect(h.port()).await;
    raw.login("app", &h.token("dave", &["dba"]))
        .await
        .expect("login");
    h.direct(
        "postgres",
        "ALTER SYSTEM SET standard_conforming_strings = off",
    );
    h.direct("postgres", "SELECT pg_reload_conf()");
    // The session applies the reload between two commands, at a moment the test cannot
    // see: the first command read after it is decided with the old setting.
    let mut fatal = None;
    for _ in 0..50 {
        raw.send(&[Query::new(TWO_READINGS).into_message()]).await;
        let answers = raw.until_ready().await;
        if let Some(e) = answers
            .iter()
            .filter(|m| m.tag() == backend::ERROR_RESPONSE)
            .filter_map(|m| backend::ErrorResponse::decode(m).ok())
            .find(|e| e.code() == "XX000")
        {
            fatal = Some(e);
            break;
        }
        assert!(
            answers
                .last()
                .is_some_and(|m| m.tag() == backend::READY_FOR_QUERY),
            "the session ended without the tripwire's error"
        );
    }
    let fatal = fatal.expect("the tripwire never fired");
    assert_eq!(fatal.severity(), Some(backend::Severity::Fatal));
    assert!(
        fatal.message().contains("beyond the 1 statements"),
        "{fatal:?}"
    );
    assert!(raw.recv().await.is_none(), "the session was not ended");

    let events = h.audit_events("security").await;
    assert_eq!(events.len(), 1, "{events:?}");
    let portcullis_audit::Event::Security(e) = &events[0] else {
        panic!("{events:?}");
    };
    assert_eq!((e.what.as_str(), e.subject.as_str()), ("tripwire", "dave"));
    assert!(e.detail.contains("DELETE 0"), "{e:?}");
    assert!(e.seq.is_some());
}
