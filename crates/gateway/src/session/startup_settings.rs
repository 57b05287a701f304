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
) -> Result<Vec<(String, String)>, StartupError> {
    let mut out = Vec::new();
    for (name, value) in &startup.params {
        let value = String::from_utf8_lossy(value).into_owned();
        match name.as_str() {
            "user" | "database" | "replication" => {}
            "options" => out.extend(parse_options(&value).map_err(StartupError::Refused)?),
            n if n.starts_with("_pq_.") => {}
            n => out.push((n.to_ascii_lowercase(), value)),
        }
    }
    Ok(out)
}

/// The server's whitespace in `options` (C's `isspace`, not Unicode's).
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The switches of `options` that take an argument, as the server's `getopt` string
/// (`process_postgres_switches`) declares them; the rest are flags.
const WITH_ARGUMENT: &str = "BcCDdfhkNprStvW-";
const FLAGS: &str = "bEeFijlnOPsT";

/// The settings `options` makes, read the way the server reads it: split on whitespace
/// with backslash escapes, then `getopt`, so switches bundle (`-ec role=x` is `-e -c
/// role=x`) and an argument may follow its switch in the same word. `-c name=value` and
/// `--name=value` are settings. Anything the server would reject (a bare word, an unknown
/// switch, a missing argument or value) is an error: the login is refused, as the server
/// would refuse it.
fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
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
            c if is_space(c) => {
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
    let mut words = words.into_iter();
    while let Some(w) = words.next() {
        let Some(switches) = w.strip_prefix('-').filter(|s| !s.is_empty()) else {
            return Err(format!("invalid command-line argument in options: \"{w}\""));
        };
        for (at, switch) in switches.char_indices() {
            if FLAGS.contains(switch) {
                continue;
            }
            if !WITH_ARGUMENT.contains(switch) {
                return Err(format!("unknown switch -{switch} in options"));
            }
            let inline = &switches[at + switch.len_utf8()..];
            let argument = if inline.is_empty() {
                words
                    .next()
                    .ok_or_else(|| format!("switch -{switch} in options needs an argument"))?
            } else {
                inline.to_string()
            };
            if switch == 'c' || switch == '-' {
                let Some((name, value)) = argument.split_once('=') else {
                    return Err(format!("setting \"{argument}\" in options has no value"));
                };
                out.push((
                    name.replace('-', "_").to_ascii_lowercase(),
                    value.to_string(),
                ));
            }
            break;
        }
    }
    Ok(out)
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
            parameters: &[],
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
            parse_options(r"-c role=admin --search-path=a,b -csession_authorization=x -c a\ b=c")
                .unwrap(),
            vec![
                ("role".to_string(), "admin".to_string()),
                ("search_path".to_string(), "a,b".to_string()),
                ("session_authorization".to_string(), "x".to_string()),
                ("a b".to_string(), "c".to_string()),
            ]
        );
        // Switches bundle as getopt bundles them; an argument may share the word.
        let settings = |o: &str| parse_options(o).unwrap();
        assert_eq!(settings("-ec role=x"), vec![("role".into(), "x".into())]);
        assert_eq!(settings("-ecrole=x"), vec![("role".into(), "x".into())]);
        assert_eq!(
            settings("-e -S 1024 -csearch_path=a"),
            vec![("search_path".into(), "a".into())]
        );
        // Only the server's whitespace separates words.
        assert_eq!(
            settings("-c\u{2003}role=x"),
            vec![("\u{2003}role".into(), "x".into())]
        );
        for refused in ["role=x", "-q", "-c", "-c role", "-e --", "-c a=b stray"] {
            assert!(parse_options(refused).is_err(), "{refused}");
        }
        assert_eq!(
            split_search_path("\"$user\", public"),
            vec!["$user", "public"]
        );
    }
}
