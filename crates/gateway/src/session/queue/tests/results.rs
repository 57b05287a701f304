//! The result seam in the queue: each result bound to its rewriter's sink.

use super::*;

/// Numbers the rows of each result it is bound to, and says how many columns it was
/// bound to (from the description).
struct Numbering;

struct Numbered {
    columns: usize,
    rows: usize,
}

impl crate::rewrite::ResultRewriter for Numbering {
    fn begin(
        &self,
        d: &backend::RowDescription,
    ) -> Result<Box<dyn crate::rewrite::RowRewriter>, ErrorResponse> {
        Ok(Box::new(Numbered {
            columns: d.fields().len(),
            rows: 0,
        }))
    }
}

impl crate::rewrite::RowRewriter for Numbered {
    fn row(&mut self, _: backend::DataRow) -> Result<Message, ErrorResponse> {
        self.rows += 1;
        let v = format!("{}/{}", self.rows, self.columns);
        Ok(backend::DataRow::new([Some(v.as_bytes())]).into_message())
    }
}

/// A RowDescription of one text column.
fn description() -> Message {
    Message::new(
        backend::ROW_DESCRIPTION,
        b"\0\x01v\0\0\0\0\0\0\0\0\0\0\x19\xff\xff\xff\xff\xff\xff\0\0",
    )
}

fn data_row(v: &str) -> Message {
    backend::DataRow::new([Some(v.as_bytes())]).into_message()
}

fn value(action: Action) -> String {
    match action {
        Action::Replace(m) => {
            let row = backend::DataRow::decode(m).unwrap();
            String::from_utf8(row.values().next().unwrap().unwrap().to_vec()).unwrap()
        }
        other => panic!("expected a rewritten row, got {other:?}"),
    }
}

fn bound_execute(portal: &Bound, rewrite: &Arc<dyn crate::rewrite::ResultRewriter>) -> Expect {
    Expect::Execute {
        fetch: 1,
        completed: None,
        portal: portal.clone(),
        bound: true,
        started: false,
        effect: Effect::None,
        rewrite: Some(rewrite.clone()),
        expected: Expected::NoWrite,
        limit: None,
        audit: None,
    }
}

#[test]
fn a_portals_rows_go_through_the_sink_bound_at_its_describe_across_executes() {
    let mut a = Attribution::default();
    let rewrite: Arc<dyn crate::rewrite::ResultRewriter> = Arc::new(Numbering);
    let p: Bound = (Arc::from("p"), 1);
    a.push(Expect::Bind {
        portal: Some(p.clone()),
        on_error: OnError::Forward,
        audit: None,
    });
    a.push(Expect::Describe {
        of: (true, Arc::from("p")),
        rewrite: Some(rewrite.clone()),
        swallow: true,
    });
    a.push(bound_execute(&p, &rewrite));
    a.push(bound_execute(&p, &rewrite));
    assert_eq!(a.on_message(&msg(backend::BIND_COMPLETE)), Action::Forward);
    // The gateway's own Describe: bound, and not forwarded.
    assert_eq!(a.on_message(&description()), Action::Swallow);
    assert_eq!(value(a.on_message(&data_row("x"))), "1/1");
    assert_eq!(
        a.on_message(&msg(backend::PORTAL_SUSPENDED)),
        Action::Forward
    );
    // The next Execute of the portal continues the same result.
    assert_eq!(value(a.on_message(&data_row("y"))), "2/1");
    assert_eq!(
        a.on_message(CommandComplete::new("SELECT 2").message()),
        Action::Forward
    );
    assert!(a.tripped.is_none());
}

#[test]
fn rows_that_must_be_rewritten_without_a_description_stop_the_session() {
    let mut a = Attribution::default();
    let rewrite: Arc<dyn crate::rewrite::ResultRewriter> = Arc::new(Numbering);
    a.push(bound_execute(&(Arc::from(""), 0), &rewrite));
    // Not bound through the ledger's eyes either way: what matters is the missing sink.
    a.ledger.bound(&(Arc::from(""), 0));
    assert_eq!(a.on_message(&data_row("secret")), Action::Swallow);
    assert!(matches!(a.tripped.take(), Some((Stop::Unrewritable(_), _))));
}

#[test]
fn a_simple_querys_statements_each_bind_their_own_result() {
    let mut a = Attribution::default();
    let rewrite: Arc<dyn crate::rewrite::ResultRewriter> = Arc::new(Numbering);
    a.push(Expect::Query {
        effects: Vec::new(),
        statements: vec![Some(rewrite.clone()), None, Some(rewrite)],
        expected: vec![Expected::NoWrite; 3],
        on_error: OnError::Forward,
        limits: None,
        completed: None,
        audit: Vec::new(),
    });
    for (rewritten, rows) in [(true, 2), (false, 1), (true, 1)] {
        let shown = a.on_message(&description());
        assert_eq!(
            matches!(shown, Action::Replace(_)),
            rewritten,
            "the description is the sink's when rewritten"
        );
        for n in 1..=rows {
            let action = a.on_message(&data_row("v"));
            if rewritten {
                assert_eq!(value(action), format!("{n}/1"));
            } else {
                assert_eq!(action, Action::Forward);
            }
        }
        a.on_message(CommandComplete::new("SELECT 1").message());
    }
    assert_eq!(a.on_message(&rfq()), Action::Forward);
}
