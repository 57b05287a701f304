//! Reading and checking the claims of a verified token.
//!
//! A signature says who issued the claims, not that they are well formed: every claim the
//! gateway reads is checked for its type and range here, so a validly signed token with a
//! numeric subject, a string of groups or `exp = 1e300` is refused with a sentence, never
//! coerced and never allowed to overflow time arithmetic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::{AuthError, IdentityConfig, human_duration};

/// The latest instant a token may name: 9999-12-31T23:59:59Z, the end of the range every
/// timestamp type the gateway hands the instant to can hold.
pub(crate) const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// Longest piece of a peer's claim repeated in a refusal (and so in the audit trail).
const MAX_ECHO: usize = 100;

/// `s` cut to [`MAX_ECHO`] characters, marked when cut.
pub(crate) fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// Looks up a dotted path such as `realm_access.roles`. A key that itself contains dots
/// (some IdPs use URLs as claim names) is matched whole first.
pub(crate) fn lookup<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut cur = claims;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// The JSON type of `v`, for refusals that say what was sent instead.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bad(message: String) -> AuthError {
    AuthError::BadClaim(message)
}

/// A NumericDate claim (`exp`, `nbf`, `iat`): whole seconds since 1970 up to
/// [`MAX_NUMERIC_DATE`]. Fractions are refused like the JWT library itself refuses them,
/// so no two readers of one token can disagree about the instant.
fn seconds(claims: &Value, name: &str) -> Result<Option<u64>, AuthError> {
    let v = match claims.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let Value::Number(n) = v else {
        return Err(bad(format!(
            "token claim '{name}' must be a number of seconds since 1970, not {}",
            type_name(v)
        )));
    };
    let shown = echo(&n.to_string());
    let after_9999 = || {
        bad(format!(
            "token claim '{name}' is out of range: {shown} is after the year 9999"
        ))
    };
    if let Some(s) = n.as_u64() {
        return if s <= MAX_NUMERIC_DATE {
            Ok(Some(s))
        } else {
            Err(after_9999())
        };
    }
    // Not an unsigned integer: a negative integer or a float.
    let f = n.as_f64().unwrap_or(f64::NAN);
    if f.is_nan() {
        return Err(bad(format!(
            "token claim '{name}' is not a valid time: {shown}"
        )));
    }
    if f < 0.0 {
        return Err(bad(format!(
            "token claim '{name}' is out of range: {shown} is before 1970"
        )));
    }
    if f > MAX_NUMERIC_DATE as f64 {
        return Err(after_9999());
    }
    if f.fract() != 0.0 {
        return Err(bad(format!(
            "token claim '{name}' must be a whole number of seconds since 1970, not {shown}"
        )));
    }
    // Integral floats such as 1.7e9 are whole seconds, and in range here.
    Ok(Some(f as u64))
}

/// `secs` seconds after the epoch; `secs` never exceeds what the clock can hold because
/// callers cap it at [`MAX_NUMERIC_DATE`] (plus a leeway that is capped too).
fn instant(secs: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH + Duration::from_secs(MAX_NUMERIC_DATE))
}

/// When a token stops being accepted, as the standard claims say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetime {
    /// The `exp` claim.
    pub expires_at: SystemTime,
    /// `exp` plus the leeway: the last instant a login is accepted, and the instant a live
    /// session's token counts as expired (before any grace period).
    pub valid_until: SystemTime,
}

/// Checks `iss`, `aud`, `exp`, `nbf` and `iat` at time `now`; returns the token's lifetime.
pub(crate) fn check_standard(
    claims: &Value,
    config: &IdentityConfig,
    now: SystemTime,
) -> Result<Lifetime, AuthError> {
    let iss = match claims.get("iss") {
        None | Some(Value::Null) => return Err(AuthError::MissingClaim("iss".into())),
        Some(Value::String(s)) => s,
        Some(v) => {
            return Err(bad(format!(
                "token claim 'iss' must be a string, not {}",
                type_name(v)
            )));
        }
    };
    if *iss != config.issuer {
        return Err(AuthError::WrongIssuer {
            got: echo(iss),
            want: config.issuer.clone(),
        });
    }
    check_audience(claims.get("aud"), &config.audience)?;

    let exp = seconds(claims, "exp")?.ok_or_else(|| AuthError::MissingClaim("exp".into()))?;
    let nbf = seconds(claims, "nbf")?;
    seconds(claims, "iat")?;
    // A leeway longer than the range of dates is as good as "forever": cap the sum.
    let leeway = config.leeway.as_secs();
    let lifetime = Lifetime {
        expires_at: instant(exp),
        valid_until: instant(exp.saturating_add(leeway).min(MAX_NUMERIC_DATE)),
    };
    // Compared at full precision, as the session compares its clock to `valid_until`.
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    if now > lifetime.valid_until {
        let ago = since_epoch.saturating_sub(Duration::from_secs(exp));
        return Err(AuthError::Expired(human_duration(ago)));
    }
    if let Some(nbf) = nbf {
        let starts = Duration::from_secs(nbf);
        if starts > since_epoch.saturating_add(config.leeway) {
            return Err(AuthError::NotYetValid(human_duration(
                starts.saturating_sub(since_epoch),
            )));
        }
    }
    Ok(lifetime)
}

fn check_audience(aud: Option<&Value>, want: &str) -> Result<(), AuthError> {
    let wrong = |got: String| AuthError::WrongAudience {
        got: echo(&got),
        want: want.into(),
    };
    let shape = |v: &Value| {
        bad(format!(
            "token claim 'aud' must be a string or an array of strings, not {}",
            type_name(v)
        ))
    };
    match aud {
        None | Some(Value::Null) => Err(AuthError::MissingClaim("aud".into())),
        Some(Value::String(s)) if s == want => Ok(()),
        Some(Value::String(s)) => Err(wrong(s.clone())),
        Some(Value::Array(items)) => {
            let mut got = Vec::with_capacity(items.len());
            for item in items {
                got.push(item.as_str().ok_or_else(|| shape(item))?);
            }
            if got.contains(&want) {
                Ok(())
            } else {
                Err(wrong(got.join(", ")))
            }
        }
        Some(v) => Err(shape(v)),
    }
}

/// The subject: a non-empty string, or `None` when the claim is absent or empty (a
/// service account's token may have none). Any other type refuses the token.
pub(crate) fn subject(claims: &Value, path: &str) -> Result<Option<String>, AuthError> {
    match lookup(claims, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(format!(
            "token claim '{path}' must be a string, not {}",
            type_name(v)
        ))),
    }
}

/// The groups: an array of strings, or absent (no groups). A claim that the IdP replaced
/// by a `_claim_names` reference (Entra ID's overage) is an error, not "no groups": the
/// caller is in groups the gateway cannot see.
pub(crate) fn groups(claims: &Value, path: &str) -> Result<Vec<String>, AuthError> {
    match lookup(claims, path) {
        None | Some(Value::Null) => {
            if claims
                .get("_claim_names")
                .and_then(|n| n.get(path))
                .is_some()
            {
                return Err(AuthError::GroupsOverage(path.into()));
            }
            Ok(Vec::new())
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    bad(format!(
                        "token claim '{path}' must be an array of group names as strings, but it holds {}",
                        type_name(v)
                    ))
                })
            })
            .collect(),
        Some(v) => Err(bad(format!(
            "token claim '{path}' must be an array of group names (a JSON list of strings), not {}",
            type_name(v)
        ))),
    }
}

/// Keeps the groups that start with `prefix`, without it.
pub(crate) fn strip_prefix(groups: Vec<String>, prefix: Option<&str>) -> Vec<String> {
    match prefix {
        None => groups,
        Some(p) => groups
            .into_iter()
            .filter_map(|g| {
                g.strip_prefix(p)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
            })
            .collect(),
    }
}

/// The client a token was issued to (`client_id`, RFC 9068, else `azp`); either must be a
/// string when present.
pub(crate) fn client_id(claims: &Value) -> Result<Option<&str>, AuthError> {
    for name in ["client_id", "azp"] {
        match claims.get(name) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(Some(s)),
            Some(v) => {
                return Err(bad(format!(
                    "token claim '{name}' must be a string, not {}",
                    type_name(v)
                )));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
