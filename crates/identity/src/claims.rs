//! Reading and checking the claims of a verified token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::{AuthError, IdentityConfig, human_duration};

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

fn seconds(claims: &Value, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| *f >= 0.0)
            .map(|f| Some(f as u64))
            .ok_or_else(|| AuthError::BadClaim(format!("token claim '{name}' is not a timestamp"))),
    }
}

/// Checks `iss`, `aud`, `exp` and `nbf` at time `now`; returns the expiry.
pub(crate) fn check_standard(
    claims: &Value,
    config: &IdentityConfig,
    now: SystemTime,
) -> Result<SystemTime, AuthError> {
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| AuthError::MissingClaim("iss".into()))?;
    if iss != config.issuer {
        return Err(AuthError::WrongIssuer {
            got: iss.into(),
            want: config.issuer.clone(),
        });
    }
    check_audience(claims.get("aud"), &config.audience)?;

    let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let leeway = config.leeway.as_secs();
    let exp = seconds(claims, "exp")?.ok_or_else(|| AuthError::MissingClaim("exp".into()))?;
    if now_s > exp.saturating_add(leeway) {
        return Err(AuthError::Expired(human_duration(Duration::from_secs(
            now_s - exp,
        ))));
    }
    if let Some(nbf) = seconds(claims, "nbf")?
        && nbf > now_s.saturating_add(leeway)
    {
        return Err(AuthError::NotYetValid(human_duration(Duration::from_secs(
            nbf - now_s,
        ))));
    }
    Ok(UNIX_EPOCH + Duration::from_secs(exp))
}

fn check_audience(aud: Option<&Value>, want: &str) -> Result<(), AuthError> {
    let wrong = |got: String| AuthError::WrongAudience {
        got,
        want: want.into(),
    };
    match aud {
        Some(Value::String(s)) if s == want => Ok(()),
        Some(Value::String(s)) => Err(wrong(s.clone())),
        Some(Value::Array(items)) => {
            if items.iter().any(|v| v.as_str() == Some(want)) {
                Ok(())
            } else {
                let got: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
                Err(wrong(got.join(", ")))
            }
        }
        _ => Err(AuthError::MissingClaim("aud".into())),
    }
}

/// The subject: a non-empty string (numbers are accepted and printed).
pub(crate) fn subject(claims: &Value, path: &str) -> Result<String, AuthError> {
    match lookup(claims, path) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(AuthError::MissingClaim(path.into())),
    }
}

/// The groups: an array of strings, a single string, or absent (no groups). A claim that
/// the IdP replaced by a `_claim_names` reference (Entra ID's overage) is an error, not
/// "no groups": the caller is in groups the gateway cannot see.
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
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    AuthError::BadClaim(format!(
                        "token claim '{path}' must list group names as strings"
                    ))
                })
            })
            .collect(),
        Some(_) => Err(AuthError::BadClaim(format!(
            "token claim '{path}' must be a list of group names"
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

/// The client a token was issued to (`client_id`, RFC 9068, else `azp`).
pub(crate) fn client_id(claims: &Value) -> Option<&str> {
    claims
        .get("client_id")
        .or_else(|| claims.get("azp"))
        .and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> IdentityConfig {
        IdentityConfig::new("https://idp.example", "portcullis")
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn standard_claims() {
        let ok = json!({"iss": "https://idp.example", "aud": ["x", "portcullis"], "exp": 1000, "nbf": 100});
        assert_eq!(check_standard(&ok, &config(), at(500)).unwrap(), at(1000));
        assert_eq!(
            check_standard(&ok, &config(), at(1000 + 240))
                .unwrap_err()
                .to_string(),
            "token expired 4m ago"
        );
        // Within the leeway.
        assert!(check_standard(&ok, &config(), at(1020)).is_ok());
        assert_eq!(
            check_standard(&ok, &config(), at(10)).unwrap_err(),
            AuthError::NotYetValid("90s".into())
        );
        let aud = json!({"iss": "https://idp.example", "aud": "x", "exp": 1000});
        assert_eq!(
            check_standard(&aud, &config(), at(500))
                .unwrap_err()
                .to_string(),
            "token audience 'x' is not 'portcullis'"
        );
        let iss = json!({"iss": "https://evil", "aud": "portcullis", "exp": 1000});
        assert!(matches!(
            check_standard(&iss, &config(), at(500)),
            Err(AuthError::WrongIssuer { .. })
        ));
        let no_exp = json!({"iss": "https://idp.example", "aud": "portcullis"});
        assert_eq!(
            check_standard(&no_exp, &config(), at(500)),
            Err(AuthError::MissingClaim("exp".into()))
        );
    }

    #[test]
    fn nested_groups_and_subject() {
        let c = json!({"sub": "u1", "realm_access": {"roles": ["dba", "ops"]}, "https://x.io/groups": ["a"], "scope": "a b"});
        assert_eq!(
            groups(&c, "realm_access.roles").unwrap(),
            vec!["dba", "ops"]
        );
        assert_eq!(groups(&c, "https://x.io/groups").unwrap(), vec!["a"]);
        assert_eq!(groups(&c, "scope").unwrap(), vec!["a", "b"]);
        assert_eq!(groups(&c, "missing").unwrap(), Vec::<String>::new());
        assert!(groups(&json!({"g": [1]}), "g").is_err());
        assert_eq!(subject(&c, "sub").unwrap(), "u1");
        assert!(subject(&c, "email").is_err());
    }

    #[test]
    fn group_overage_is_refused_with_a_reason() {
        let c = json!({"sub": "u1", "_claim_names": {"groups": "src1"}, "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/u1/getMemberObjects"}}});
        let e = groups(&c, "groups").unwrap_err();
        assert_eq!(e, AuthError::GroupsOverage("groups".into()));
        assert!(e.to_string().contains("too many groups"), "{e}");
        assert_eq!(e.sqlstate(), "28000");
    }

    #[test]
    fn prefixes_select_and_strip() {
        let g = vec!["pc-dba".to_string(), "other".into(), "pc-".into()];
        assert_eq!(strip_prefix(g.clone(), Some("pc-")), vec!["dba"]);
        assert_eq!(strip_prefix(g.clone(), None), g);
        assert_eq!(client_id(&json!({"azp": "cli"})), Some("cli"));
        assert_eq!(client_id(&json!({"client_id": "a", "azp": "b"})), Some("a"));
    }
}
