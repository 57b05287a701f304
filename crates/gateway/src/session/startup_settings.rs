//! What a startup packet asks of the session: its run-time settings (parameters and the
//! `options` switches, split as the server splits them), and whether the policy lets one
//! that changes who the session acts as through.

use portcullis_wire::backend::TransactionStatus;

use crate::decision::{Decider, SessionInfo};
use crate::error::StartupError;

/// Run-time settings a startup packet asks for: its parameters (other than the protocol's
/// own) and the `-c name=value` / `--name=value` switches in `options`, in order.
pub(super) fn startup_settings(
    startup: &portcullis_wire::startup::StartupMessage,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in &startup.params {
        let value = String::from_utf8_lossy(value).into_owned();
        match name.as_str() {
            "user" | "database" | "replication" => {}
            "options" => out.extend(parse_options(&value)),
            n if n.starts_with("_pq_.") => {}
            n => out.push((n.to_ascii_lowercase(), value)),
        }
    }
    out
}

/// Splits `options` the way the server does: on whitespace, with backslash escapes.
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let setting = if w == "-c" {
            i += 1;
            words.get(i).cloned()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest.to_string())
        } else {
            w.strip_prefix("--").map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            out.push((
                name.replace('-', "_").to_ascii_lowercase(),
                value.to_string(),
            ));
        }
        i += 1;
    }
    out
}

pub(super) fn split_search_path(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A startup packet may set `role` or `session_authorization` and so change who the
/// session acts as before any statement is seen: decide that like `SET ROLE`.
pub(super) fn check_startup_identity(
    settings: &[(String, String)],
    info: &SessionInfo,
    decider: &dyn Decider,
    search_path: &[String],
) -> Result<(), StartupError> {
    use portcullis_sql::analysis::{Facts, Kind, SessionChange};
    let mut facts = Facts::new(Kind::SetSession, "StartupMessage");
    for (name, value) in settings {
        match name.as_str() {
            "role" => facts.session.push(SessionChange::Role(Some(value.clone()))),
            "session_authorization" => facts
                .session
                .push(SessionChange::SessionAuthorization(Some(value.clone()))),
            _ => {}
        }
    }
    if facts.session.is_empty() {
        return Ok(());
    }
    let text = settings
        .iter()
        .filter(|(n, _)| n == "role" || n == "session_authorization")
        .map(|(n, v)| format!("SET {n} = '{v}' (startup parameter)"))
        .collect::<Vec<_>>()
        .join("; ");
    let statement = portcullis_sql::ParsedStatement::synthetic(text.clone(), facts);
    let verdict = decider.decide(
        info,
        &crate::decision::Statement {
            origin: crate::decision::Origin::Startup,
            text: Some(&text),
            parsed: Ok(&statement),
            prepared: None,
            transaction: TransactionStatus::Idle,
            search_path,
        },
    );
    match verdict {
        crate::decision::Verdict::Refuse(e) => Err(StartupError::Refused(e.message().to_string())),
        crate::decision::Verdict::Hold(_) => Err(StartupError::Refused(
            "a startup parameter that changes the session's identity needs approval, which cannot wait at login".into(),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_like_the_server_does() {
        assert_eq!(
            parse_options(r"-c role=admin --search-path=a,b -csession_authorization=x -c a\ b=c"),
            vec![
                ("role".to_string(), "admin".to_string()),
                ("search_path".to_string(), "a,b".to_string()),
                ("session_authorization".to_string(), "x".to_string()),
                ("a b".to_string(), "c".to_string()),
            ]
        );
        assert_eq!(
            split_search_path("\"$user\", public"),
            vec!["$user", "public"]
        );
    }
}
