//! `portcullis replay`: a recorded session as it happened, for people (statements, decisions
//! and psql-style result tables, with the time between them) or as JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::chain::Record;
use crate::event::{Event, Recording, ResultEvent, SessionEnd, SessionStart, StatementEvent};

/// One statement of a session and how it ended.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub time: String,
    /// Milliseconds since the session started.
    pub offset_ms: i64,
    pub statement: StatementEvent,
    /// One per Execute: a portal fetched in parts ends several times.
    pub results: Vec<ResultEvent>,
}

/// A session read back from the store.
#[derive(Debug, Clone, Serialize)]
pub struct Session {
    pub id: String,
    pub start: Option<SessionStart>,
    pub end: Option<SessionEnd>,
    pub steps: Vec<Step>,
}

pub fn format_time(time_us: i64) -> String {
    jiff::Timestamp::from_microsecond(time_us)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| time_us.to_string())
}

impl Session {
    /// Assembles a session from its events in chain order.
    pub fn from_records(id: &str, records: &[Record]) -> Session {
        let mut s = Session {
            id: id.to_string(),
            start: None,
            end: None,
            steps: Vec::new(),
        };
        let origin = records.first().map_or(0, |r| r.time_us);
        for r in records {
            match serde_json::from_str::<Event>(&r.body) {
                Ok(Event::SessionStart(e)) => s.start = Some(e),
                Ok(Event::SessionEnd(e)) => s.end = Some(e),
                Ok(Event::Statement(e)) => s.steps.push(Step {
                    time: format_time(r.time_us),
                    offset_ms: (r.time_us - origin) / 1000,
                    statement: e,
                    results: Vec::new(),
                }),
                Ok(Event::Result(e)) => {
                    if let Some(step) = s.steps.iter_mut().rev().find(|x| x.statement.seq == e.seq)
                    {
                        step.results.push(e);
                    }
                }
                _ => {}
            }
        }
        s
    }

    /// The session for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match &self.start {
            Some(st) => {
                let _ = writeln!(
                    out,
                    "session {} — {} ({}) from {} to target {} as {}{}",
                    self.id,
                    st.subject,
                    st.groups.join(", "),
                    st.client_addr,
                    st.target,
                    st.upstream_role,
                    st.application_name
                        .as_deref()
                        .map(|a| format!(", application {a}"))
                        .unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(out, "session {}", self.id);
            }
        }
        let mut last = 0i64;
        for step in &self.steps {
            let st = &step.statement;
            let gap = step.offset_ms - last;
            last = step.offset_ms;
            let _ = writeln!(
                out,
                "\n[{} +{}.{:03}s] #{} {}",
                step.time,
                gap / 1000,
                gap % 1000,
                st.seq,
                st.text.trim()
            );
            if !st.truncated.is_empty() {
                let _ = writeln!(
                    out,
                    "  truncated at the size cap: {}{}",
                    st.truncated.join(", "),
                    match (st.text_bytes, &st.text_sha256) {
                        (Some(n), Some(h)) if st.truncated.iter().any(|f| f == "text") => {
                            format!(" (the whole text: {n} bytes, SHA-256 {h})")
                        }
                        _ => String::new(),
                    }
                );
            }
            if !st.parameters.is_empty() {
                let params: Vec<String> = st
                    .parameters
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("${}={}", i + 1, p.as_deref().unwrap_or("NULL")))
                    .collect();
                let _ = writeln!(out, "  parameters: {}", params.join(", "));
            }
            let mut decision = st.decision.clone();
            if !st.policies.is_empty() {
                let _ = write!(decision, " (policies: {})", st.policies.join(", "));
            }
            if let Some(m) = &st.message {
                let _ = write!(decision, ": {m}");
            }
            let _ = writeln!(out, "  decision: {decision}");
            if let Some(o) = &st.observed {
                let _ = writeln!(out, "  observe: {o}");
            }
            for r in &step.results {
                if let Some(rec) = &r.recording {
                    out.push_str(&table(rec));
                }
                match (&r.command, &r.sqlstate) {
                    (_, Some(code)) => {
                        let _ = writeln!(
                            out,
                            "  ERROR {code}: {}",
                            r.message.as_deref().unwrap_or("")
                        );
                    }
                    (Some(c), None) => {
                        let _ = writeln!(out, "  {c} ({} ms)", r.duration_us / 1000);
                    }
                    (None, None) => {}
                }
            }
        }
        if let Some(end) = &self.end {
            let _ = writeln!(
                out,
                "\nsession ended: {} after {} ms, {} statements",
                end.reason, end.duration_ms, end.statements
            );
        }
        out
    }
}

/// A psql-style table of recorded rows.
pub fn table(rec: &Recording) -> String {
    let cell = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut widths: Vec<usize> = rec.columns.iter().map(|c| c.chars().count()).collect();
    for row in &rec.rows {
        for (i, v) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell(v).chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!(" {c:<w$} "))
            .collect();
        format!("  {}", padded.join("|").trim_end())
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(rec.columns.clone()));
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
    let _ = writeln!(out, "  {}", rule.join("+"));
    for row in &rec.rows {
        let _ = writeln!(out, "{}", line(row.iter().map(cell).collect()));
    }
    let n = rec.rows.len();
    let _ = writeln!(
        out,
        "  ({n} row{}){}",
        if n == 1 { "" } else { "s" },
        if rec.truncated {
            " — recording truncated at the size cap"
        } else {
            ""
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_look_like_psql() {
        let t = table(&Recording {
            columns: vec!["id".into(), "email".into()],
            rows: vec![
                vec![Some("1".into()), Some("a@example.com".into())],
                vec![Some("22".into()), None],
            ],
            truncated: false,
        });
        assert_eq!(
            t,
            "   id | email\n  ----+---------------\n   1  | a@example.com\n   22 |\n  (2 rows)\n"
        );
    }
}
