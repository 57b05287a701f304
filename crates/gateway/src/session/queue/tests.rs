//! The queue against hand-written server answers.

use super::*;
use crate::session::tripwire::Expected;
use portcullis_wire::backend::{self, CommandComplete, ReadyForQuery, Severity, TransactionStatus};

fn msg(tag: u8) -> Message {
    Message::new(tag, b"")
}

fn error(code: &str) -> Message {
    ErrorResponse::new(Severity::Error, code, "boom").to_message()
}

fn rfq() -> Message {
    ReadyForQuery {
        status: TransactionStatus::Idle,
    }
    .to_message()
}

fn refusal() -> ErrorResponse {
    ErrorResponse::new(Severity::Error, "42501", "refused")
}

fn query(n: usize) -> Expect {
    Expect::Query {
        effects: Vec::new(),
        statements: (0..n).map(|_| None).collect(),
        expected: vec![Expected::Unchecked; n],
        on_error: OnError::Forward,
        limits: None,
        completed: None,
        audit: Vec::new(),
    }
}

fn parse() -> Expect {
    Expect::Parse {
        on_error: OnError::Forward,
        on_success: None,
        report: None,
    }
}

fn execute() -> Expect {
    execute_of(Expected::Unchecked, None)
}

/// An Execute of the unnamed portal, expected to report `expected`, under `limit`.
fn execute_of(
    expected: Expected,
    limit: Option<(RowLimit, oneshot::Sender<LimitReport>)>,
) -> Expect {
    Expect::Execute {
        fetch: 0,
        completed: None,
        portal: (Arc::from(""), 0),
        bound: false,
        started: false,
        effect: Effect::None,
        rewrite: None,
        expected,
        limit,
        audit: None,
    }
}

/// Why the attribution stopped the session.
fn tripped(a: &mut Attribution) -> String {
    match a.tripped.take() {
        Some((Stop::Tripped(why), _)) => why,
        other => panic!("expected a trip, got {other:?}"),
    }
}

fn code(action: Action) -> String {
    match action {
        Action::Replace(m) => ErrorResponse::decode(&m).unwrap().code().to_string(),
        other => panic!("not replaced: {other:?}"),
    }
}

#[test]
fn refused_parse_replaces_the_error_and_skips_to_sync() {
    let mut a = Attribution::default();
    a.push(Expect::Parse {
        on_error: OnError::Replace(refusal()),
        on_success: None,
        report: None,
    });
    a.push(Expect::Bind {
        portal: None,
        on_error: OnError::Forward,
        audit: None,
    });
    a.push(execute());
    a.push(Expect::Sync);
    assert_eq!(code(a.on_message(&error("42601"))), "42501");
    // Bind and Execute were skipped: the next answer is ReadyForQuery for the Sync.
    assert!(matches!(a.pending.front(), Some(Expect::Sync)));
    assert_eq!(a.on_message(&rfq()), Action::Forward);
    assert!(a.is_idle());
    assert!(!a.skipping);
}

#[test]
fn skipping_drops_entries_that_arrive_later() {
    let mut a = Attribution::default();
    a.push(execute());
    a.on_message(&error("22012"));
    // Pipelined messages the client sent after the failing one.
    a.push(parse());
    a.push(query(0));
    assert!(a.is_idle());
    a.push(Expect::Sync);
    a.on_message(&rfq());
    a.push(parse());
    assert!(matches!(a.pending.front(), Some(Expect::Parse { .. })));
}

#[test]
fn simple_query_counts_statements() {
    let mut a = Attribution::default();
    a.push(query(2));
    a.on_message(&msg(backend::ROW_DESCRIPTION));
    a.on_message(CommandComplete::new("SELECT 1").message());
    assert_eq!(a.statement, 1);
    a.on_message(CommandComplete::new("SELECT 1").message());
    a.on_message(&rfq());
    assert!(a.is_idle());
}

#[test]
fn extended_copy_in_swallows_the_early_sync() {
    let mut a = Attribution::default();
    a.push(execute());
    a.push(Expect::Sync); // sent with Execute; the server ignores it during COPY
    a.on_message(&msg(backend::COPY_IN_RESPONSE));
    a.push(Expect::CopyEnd);
    a.push(Expect::Sync);
    a.on_message(CommandComplete::new("COPY 3").message());
    assert_eq!(a.pending.len(), 1);
    a.on_message(&rfq());
    assert!(a.is_idle());
}

#[test]
fn extended_copy_in_error_waits_for_the_last_sync() {
    let mut a = Attribution::default();
    a.push(execute());
    a.push(Expect::Sync);
    a.on_message(&msg(backend::COPY_IN_RESPONSE));
    a.on_message(&error("22P02"));
    assert!(a.is_idle());
    a.push(Expect::CopyEnd);
    a.push(Expect::Sync);
    assert_eq!(a.pending.len(), 1);
    a.on_message(&rfq());
    assert!(a.is_idle());
}

#[test]
fn simple_copy_in() {
    let mut a = Attribution::default();
    a.push(query(1));
    a.on_message(&msg(backend::COPY_IN_RESPONSE));
    a.push(Expect::CopyEnd);
    a.on_message(CommandComplete::new("COPY 1").message());
    a.on_message(&rfq());
    assert!(a.is_idle());
}

#[test]
fn fatal_is_noted() {
    let mut a = Attribution::default();
    let fatal = ErrorResponse::new(Severity::Fatal, "57P01", "terminating").to_message();
    assert_eq!(a.on_message(&fatal), Action::Forward);
    assert!(a.fatal);
}

#[test]
fn a_probe_the_server_rejects_forwards_its_error() {
    let mut a = Attribution::default();
    a.push(Expect::Parse {
        on_error: OnError::Forward,
        on_success: Some(refusal()),
        report: None,
    });
    a.push(Expect::Close {
        portal: None,
        swallow: true,
        report: None,
    });
    a.push(Expect::Parse {
        on_error: OnError::Swallow,
        on_success: None,
        report: None,
    });
    a.push(Expect::Sync);
    assert_eq!(a.on_message(&error("42601")), Action::Forward);
    assert_eq!(a.on_message(&rfq()), Action::Forward);
    assert!(a.is_idle());
}

#[test]
fn a_probe_the_server_accepts_is_refused() {
    let mut a = Attribution::default();
    a.push(Expect::Parse {
        on_error: OnError::Forward,
        on_success: Some(refusal()),
        report: None,
    });
    a.push(Expect::Close {
        portal: None,
        swallow: true,
        report: None,
    });
    a.push(Expect::Parse {
        on_error: OnError::Swallow,
        on_success: None,
        report: None,
    });
    a.push(Expect::Sync);
    assert_eq!(code(a.on_message(&msg(backend::PARSE_COMPLETE))), "42501");
    assert_eq!(a.on_message(&msg(backend::CLOSE_COMPLETE)), Action::Swallow);
    assert_eq!(a.on_message(&error("42601")), Action::Swallow);
    assert_eq!(a.on_message(&rfq()), Action::Forward);
    assert!(a.is_idle());
}

fn cap(max: u64) -> RowLimit {
    RowLimit {
        max,
        policy: "cap".into(),
    }
}

#[test]
fn a_query_over_its_row_limit_is_refused_and_reported() {
    let mut a = Attribution::default();
    a.push(Expect::Internal {
        forward_errors: false,
        forward_ready: false,
    });
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Query {
        effects: Vec::new(),
        statements: vec![None],
        expected: vec![Expected::Write],
        on_error: OnError::Forward,
        limits: Some(QueryLimits::new(vec![Some(cap(10))], true, tx)),
        completed: None,
        audit: Vec::new(),
    });
    // BEGIN's answers are the gateway's.
    assert_eq!(
        a.on_message(CommandComplete::new("BEGIN").message()),
        Action::Swallow
    );
    assert_eq!(a.on_message(&rfq()), Action::Swallow);
    assert_eq!(
        code(a.on_message(CommandComplete::new("UPDATE 11").message())),
        "54000"
    );
    assert_eq!(a.on_message(&rfq()), Action::Swallow);
    assert_eq!(rx.try_recv().unwrap(), LimitReport::Exceeded);
    // The ROLLBACK the frontend sends next answers the client's ReadyForQuery.
    a.push(Expect::Internal {
        forward_errors: false,
        forward_ready: true,
    });
    assert_eq!(
        a.on_message(CommandComplete::new("ROLLBACK").message()),
        Action::Swallow
    );
    assert_eq!(a.on_message(&rfq()), Action::Forward);
    assert!(a.is_idle());
}

#[test]
fn a_query_within_its_row_limit_passes() {
    let mut a = Attribution::default();
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Query {
        effects: Vec::new(),
        statements: vec![None],
        expected: vec![Expected::Write],
        on_error: OnError::Forward,
        limits: Some(QueryLimits::new(vec![Some(cap(10))], false, tx)),
        completed: None,
        audit: Vec::new(),
    });
    assert_eq!(
        a.on_message(CommandComplete::new("DELETE 10").message()),
        Action::Forward
    );
    assert_eq!(a.on_message(&rfq()), Action::Forward);
    assert_eq!(rx.try_recv().unwrap(), LimitReport::Within);
}

#[test]
fn an_execute_over_its_row_limit_is_reported() {
    let mut a = Attribution::default();
    let (tx, mut rx) = oneshot::channel();
    a.push(execute_of(Expected::Write, Some((cap(5), tx))));
    assert_eq!(
        code(a.on_message(CommandComplete::new("UPDATE 6").message())),
        "54000"
    );
    assert_eq!(rx.try_recv().unwrap(), LimitReport::Exceeded);
    // The frontend then sends a failing Parse, whose error is swallowed and starts the skip.
    a.push(Expect::Parse {
        on_error: OnError::Swallow,
        on_success: None,
        report: None,
    });
    a.push(Expect::Bind {
        portal: None,
        on_error: OnError::Forward,
        audit: None,
    });
    assert_eq!(a.on_message(&error("42601")), Action::Swallow);
    assert!(a.is_idle());
}

#[test]
fn barriers_answer_when_the_server_caught_up() {
    let mut a = Attribution::default();
    a.push(query(1));
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Barrier(Some(tx)));
    assert!(rx.try_recv().is_err());
    a.on_message(CommandComplete::new("SELECT 1").message());
    a.on_message(&rfq());
    assert!(rx.try_recv().is_ok());
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Barrier(Some(tx)));
    assert!(rx.try_recv().is_ok());
    assert!(a.is_idle());
}

#[test]
fn barriers_say_whether_the_server_is_skipping() {
    let mut a = Attribution::default();
    a.push(parse());
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Barrier(Some(tx)));
    a.push(Expect::Sync);
    a.on_message(&error("42601"));
    assert_eq!(rx.try_recv(), Ok(true));
    a.on_message(&rfq());
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Barrier(Some(tx)));
    assert_eq!(rx.try_recv(), Ok(false));
}

/// The gateway's own query of the lexer settings: every answer swallowed, the row
/// delivered.
#[test]
fn the_settings_query_is_swallowed_and_its_row_delivered() {
    let mut a = Attribution::default();
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Quiet);
    a.push(Expect::Quiet);
    a.push(Expect::Settings {
        row: None,
        reply: Some(tx),
    });
    a.push(Expect::Quiet);
    a.push(Expect::Quiet);
    let row = backend::DataRow::new([Some(b"SJIS".as_slice()), Some(b"off".as_slice())]);
    for m in [
        msg(backend::PARSE_COMPLETE),
        msg(backend::BIND_COMPLETE),
        row.message().clone(),
        CommandComplete::new("SELECT 1").message().clone(),
        msg(backend::CLOSE_COMPLETE),
        msg(backend::CLOSE_COMPLETE),
    ] {
        assert_eq!(a.on_message(&m), Action::Swallow);
    }
    assert_eq!(rx.try_recv(), Ok(("SJIS".to_string(), "off".to_string())));
    assert!(a.is_idle());
    // A failure is the client's pipeline's: forwarded, and the server skips to Sync.
    let (tx, mut rx) = oneshot::channel();
    a.push(Expect::Quiet);
    a.push(Expect::Settings {
        row: None,
        reply: Some(tx),
    });
    a.push(parse());
    a.push(Expect::Sync);
    assert_eq!(a.on_message(&error("57014")), Action::Forward);
    assert!(rx.try_recv().is_err());
    assert_eq!(a.on_message(&rfq()), Action::Forward);
    assert!(a.is_idle());
}

#[test]
fn readies_count_entries_that_end_with_ready_for_query() {
    let mut a = Attribution::default();
    a.push(query(1));
    a.push(parse());
    a.push(Expect::Sync);
    a.on_message(CommandComplete::new("SELECT 1").message());
    a.on_message(&rfq());
    assert_eq!(a.readies, 1);
    a.on_message(&msg(backend::PARSE_COMPLETE));
    a.on_message(&rfq());
    assert_eq!(a.readies, 2);
    // A Sync sent during COPY FROM STDIN is swallowed by the server: done, unanswered.
    a.push(query(1));
    a.push(Expect::Sync);
    a.push(Expect::CopyEnd);
    a.on_message(&msg(backend::COPY_IN_RESPONSE));
    a.on_message(CommandComplete::new("COPY 1").message());
    a.on_message(&rfq());
    assert_eq!(a.readies, 4);
    assert!(a.is_idle());
}

/// The tripwire: a write's tag for a statement analysed as not writing, and a result
/// beyond the statements analysed, are swallowed and reported.
#[test]
fn answers_that_contradict_the_decision_trip() {
    let with = |expected: Vec<Expected>| Expect::Query {
        effects: Vec::new(),
        statements: expected.iter().map(|_| None).collect(),
        expected,
        on_error: OnError::Forward,
        limits: None,
        completed: None,
        audit: Vec::new(),
    };
    let mut a = Attribution::default();
    a.push(with(vec![Expected::NoWrite]));
    assert_eq!(
        a.on_message(CommandComplete::new("SELECT 1").message()),
        Action::Forward
    );
    assert!(a.tripped.is_none());
    a.on_message(&rfq());
    a.push(with(vec![Expected::NoWrite]));
    assert_eq!(
        a.on_message(CommandComplete::new("DELETE 5000").message()),
        Action::Swallow
    );
    assert!(tripped(&mut a).contains("DELETE 5000"));
    a.on_message(&rfq());
    // Two results for one statement.
    a.push(with(vec![Expected::NoWrite]));
    a.on_message(CommandComplete::new("SELECT 1").message());
    assert_eq!(
        a.on_message(CommandComplete::new("SELECT 1").message()),
        Action::Swallow
    );
    assert!(tripped(&mut a).contains("beyond the 1 statements"));
    a.on_message(&rfq());
    // An Execute of a portal analysed as a read.
    a.push(execute_of(Expected::NoWrite, None));
    assert_eq!(
        a.on_message(CommandComplete::new("UPDATE 3").message()),
        Action::Swallow
    );
    assert!(a.tripped.is_some());
}

mod results;
