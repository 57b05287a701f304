//! The frontend's pure step (`plan.rs`): decided statements → what the server is sent
//! and what the queue expects, without a server or a client.

use std::sync::Arc;

use portcullis_sql::{LexerOptions, ParsedStatement, parse};
use portcullis_wire::backend::{ErrorResponse, RowDescription, Severity};
use portcullis_wire::frontend::{self, Describe, Query, Target};

use super::plan::{QueryPlan, after_limited, describe_first, plan_query, refused_query};
use super::refusal::REFUSED_SQL;
use crate::rewrite::{ResultRewriter, RowRewriter};
use crate::session::portals::Effect;
use crate::session::prepared::Treatment;
use crate::session::queue::{Expect, LimitReport, OnError};
use crate::session::tripwire::Expected;

fn statements(sql: &str) -> Vec<ParsedStatement> {
    parse(sql, LexerOptions::default())
        .result
        .expect("the test's SQL parses")
}

fn limit(max: u64) -> portcullis_policy::RowLimit {
    portcullis_policy::RowLimit {
        max,
        policy: "limit".into(),
    }
}

fn refusal() -> ErrorResponse {
    ErrorResponse::new(Severity::Error, "42501", "refused")
}

struct Nothing;

impl ResultRewriter for Nothing {
    fn begin(&self, _: &RowDescription) -> Result<Box<dyn RowRewriter>, ErrorResponse> {
        Err(refusal())
    }
}

#[test]
fn a_refused_statement_refuses_the_query_by_a_stand_in() {
    let s = statements("select 1; select 2");
    assert!(matches!(
        plan_query(&s, Err(refusal()), Vec::new()),
        QueryPlan::Refused(e) if e.message() == "refused"
    ));
    let (expect, msg) = refused_query(refusal());
    assert_eq!(msg, *Query::new(REFUSED_SQL).message());
    let Expect::Query {
        on_error: OnError::Replace(e),
        statements,
        ..
    } = expect
    else {
        panic!("the stand-in's error is replaced by the refusal");
    };
    assert_eq!(e.code(), "42501");
    assert!(statements.is_empty());
}

#[test]
fn forwarded_statements_carry_their_rewriter_expectation_and_effect() {
    let s = statements("select 1; commit; delete from t");
    let rewriter: Arc<dyn ResultRewriter> = Arc::new(Nothing);
    let treatments = vec![
        Treatment {
            rewrite: Some(rewriter.clone()),
            expected: Expected::NoWrite,
            ..Treatment::default()
        },
        Treatment {
            expected: Expected::NoWrite,
            ..Treatment::default()
        },
        Treatment {
            expected: Expected::Write,
            ..Treatment::default()
        },
    ];
    let QueryPlan::Forward(per) = plan_query(&s, Ok(&treatments), Vec::new()) else {
        panic!("nothing here is limited or refused");
    };
    assert!(
        per.rewrites[0]
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &rewriter))
    );
    assert!(per.rewrites[1].is_none() && per.rewrites[2].is_none());
    assert_eq!(
        per.expected,
        [Expected::NoWrite, Expected::NoWrite, Expected::Write]
    );
    assert_eq!(
        per.effects,
        [Effect::None, Effect::EndsTransaction, Effect::None]
    );
    // Statements that touch no portal queue no effects at all.
    let plain = statements("select 1; select 2");
    let t = vec![Treatment::default(), Treatment::default()];
    let QueryPlan::Forward(per) = plan_query(&plain, Ok(&t), Vec::new()) else {
        panic!("forwarded");
    };
    assert!(per.effects.is_empty());
}

#[test]
fn a_fetch_of_a_bound_portal_must_find_it_still_bound() {
    let s = statements("select 1; fetch all from p");
    let t = vec![Treatment::default(), Treatment::default()];
    let bound = (Arc::<str>::from("p"), 7);
    let QueryPlan::Forward(per) = plan_query(&s, Ok(&t), vec![(1, bound.clone())]) else {
        panic!("forwarded");
    };
    assert_eq!(per.effects, [Effect::None, Effect::Reads(bound)]);
}

#[test]
fn row_limits_run_undoably_and_never_beside_transaction_control() {
    let s = statements("delete from t where id < 10");
    let t = vec![Treatment {
        cap: Some(limit(5)),
        ..Treatment::default()
    }];
    let QueryPlan::Limited(_, caps) = plan_query(&s, Ok(&t), Vec::new()) else {
        panic!("a capped statement runs under its limit");
    };
    assert_eq!(caps, [Some(limit(5))]);
    let mixed = statements("begin; delete from t where id < 10; commit");
    let t = vec![
        Treatment::default(),
        Treatment {
            cap: Some(limit(5)),
            ..Treatment::default()
        },
        Treatment::default(),
    ];
    assert!(matches!(
        plan_query(&mixed, Ok(&t), Vec::new()),
        QueryPlan::Refused(e) if e.code() == "0A000"
    ));
    // Transaction control without a limit is forwarded as ever.
    let t = vec![Treatment::default(); 3];
    assert!(matches!(
        plan_query(&mixed, Ok(&t), Vec::new()),
        QueryPlan::Forward(_)
    ));
}

#[test]
fn a_limited_query_commits_rolls_back_or_fails_the_clients_transaction() {
    assert_eq!(
        after_limited(true, LimitReport::Within),
        Some((&b"COMMIT"[..], true))
    );
    for report in [LimitReport::Exceeded, LimitReport::Failed] {
        assert_eq!(after_limited(true, report), Some((&b"ROLLBACK"[..], false)));
    }
    // In the client's own transaction: over the limit fails it, so nothing commits.
    assert_eq!(
        after_limited(false, LimitReport::Exceeded),
        Some((REFUSED_SQL, false))
    );
    assert_eq!(after_limited(false, LimitReport::Within), None);
    assert_eq!(after_limited(false, LimitReport::Failed), None);
}

#[test]
fn an_execute_is_described_first_only_when_its_rows_need_it() {
    let rewriter: Arc<dyn ResultRewriter> = Arc::new(Nothing);
    assert!(describe_first("p", None, false, false).is_none());
    // Already described since its Bind: the backend has the description.
    assert!(describe_first("p", Some(rewriter.clone()), true, true).is_none());
    for (rewrite, recorded) in [(Some(rewriter.clone()), false), (None, true)] {
        let (expect, msg) =
            describe_first("p", rewrite.clone(), recorded, false).expect("described first");
        assert_eq!(msg, *Describe::new(Target::Portal, "p").message());
        assert_eq!(msg.tag(), frontend::DESCRIBE);
        let Expect::Describe {
            of,
            rewrite: bound,
            swallow,
        } = expect
        else {
            panic!("a Describe's expectation");
        };
        assert_eq!(of, (true, Arc::from("p")));
        assert!(swallow, "the client never asked for it");
        assert_eq!(bound.is_some(), rewrite.is_some());
    }
}
