//! Claim checks on hand-built claim sets: ranges, types and the shared expiry instant.

use super::*;
use serde_json::json;

fn config() -> IdentityConfig {
    IdentityConfig::new("https://idp.example", "portcullis")
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn with(claim: &str, value: Value) -> Value {
    let mut c = json!({"iss": "https://idp.example", "aud": "portcullis", "exp": 1000});
    c[claim] = value;
    c
}

fn refusal(claims: &Value) -> String {
    check_standard(claims, &config(), at(500))
        .unwrap_err()
        .to_string()
}

#[test]
fn standard_claims() {
    let ok =
        json!({"iss": "https://idp.example", "aud": ["x", "portcullis"], "exp": 1000, "nbf": 100});
    let lifetime = check_standard(&ok, &config(), at(500)).unwrap();
    assert_eq!(lifetime.expires_at, at(1000));
    assert_eq!(lifetime.valid_until, at(1030));
    assert_eq!(
        check_standard(&ok, &config(), at(1000 + 240))
            .unwrap_err()
            .to_string(),
        "token expired 4m ago"
    );
    // Within the leeway, up to its last instant and not a nanosecond after.
    assert!(check_standard(&ok, &config(), at(1020)).is_ok());
    assert!(check_standard(&ok, &config(), at(1030)).is_ok());
    assert!(check_standard(&ok, &config(), at(1030) + Duration::from_millis(1)).is_err());
    assert_eq!(
        check_standard(&ok, &config(), at(10)).unwrap_err(),
        AuthError::NotYetValid("90s".into())
    );
    let aud = json!({"iss": "https://idp.example", "aud": "x", "exp": 1000});
    assert_eq!(refusal(&aud), "token audience 'x' is not 'portcullis'");
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
fn times_out_of_range_are_refused_not_overflowed() {
    for (claim, value, says) in [
        (
            "exp",
            json!(1e300),
            "'exp' is out of range: 1e+300 is after the year 9999",
        ),
        ("exp", json!(u64::MAX), "is after the year 9999"),
        ("exp", json!(253_402_300_800u64), "is after the year 9999"),
        ("exp", json!(-1), "'exp' is out of range: -1 is before 1970"),
        ("exp", json!(-1e300), "is before 1970"),
        (
            "exp",
            json!(1000.5),
            "'exp' must be a whole number of seconds since 1970, not 1000.5",
        ),
        (
            "exp",
            json!("1000"),
            "'exp' must be a number of seconds since 1970, not a string",
        ),
        ("exp", json!(true), "not a boolean"),
        ("nbf", json!(1e300), "'nbf' is out of range"),
        ("nbf", json!(-5), "'nbf' is out of range: -5 is before 1970"),
        ("iat", json!(1e300), "'iat' is out of range"),
        (
            "iat",
            json!([1]),
            "'iat' must be a number of seconds since 1970, not an array",
        ),
    ] {
        let e = check_standard(&with(claim, value.clone()), &config(), at(500)).unwrap_err();
        assert!(e.to_string().contains(says), "{claim}={value}: {e}");
        assert_eq!(e.sqlstate(), "28000", "{claim}={value}");
    }
    // Whole seconds written as a float are whole seconds.
    assert!(check_standard(&with("exp", json!(1000.0)), &config(), at(500)).is_ok());
    // The last second the clock types hold, with a leeway that would overflow it.
    let mut c = config();
    c.leeway = Duration::MAX;
    let far = with("exp", json!(MAX_NUMERIC_DATE));
    let lifetime = check_standard(&far, &c, at(500)).unwrap();
    assert_eq!(lifetime.valid_until, at(MAX_NUMERIC_DATE));
    assert!(check_standard(&with("nbf", json!(MAX_NUMERIC_DATE)), &c, at(500)).is_ok());
    // A clock before 1970 does not underflow either.
    assert!(check_standard(&far, &config(), UNIX_EPOCH - Duration::from_secs(5)).is_ok());
}

#[test]
fn standard_claims_of_the_wrong_type_are_refused() {
    assert_eq!(
        refusal(&with("iss", json!(7))),
        "token claim 'iss' must be a string, not a number"
    );
    assert_eq!(
        refusal(&with("aud", json!(["portcullis", 7]))),
        "token claim 'aud' must be a string or an array of strings, not a number"
    );
    assert_eq!(
        refusal(&with("aud", json!({"portcullis": true}))),
        "token claim 'aud' must be a string or an array of strings, not an object"
    );
    let long = "x".repeat(10_000);
    let echoed = refusal(&with("aud", json!(long)));
    assert!(echoed.len() < 200, "{echoed}");
}

#[test]
fn nested_groups_and_subject() {
    let c = json!({"sub": "u1", "realm_access": {"roles": ["dba", "ops"]}, "https://x.io/groups": ["a"], "scope": "a b"});
    assert_eq!(
        groups(&c, "realm_access.roles").unwrap(),
        vec!["dba", "ops"]
    );
    assert_eq!(groups(&c, "https://x.io/groups").unwrap(), vec!["a"]);
    assert_eq!(groups(&c, "missing").unwrap(), Vec::<String>::new());
    assert_eq!(subject(&c, "sub").unwrap().as_deref(), Some("u1"));
    assert_eq!(subject(&c, "email").unwrap(), None);
}

#[test]
fn subjects_and_groups_of_the_wrong_type_are_refused() {
    assert_eq!(
        subject(&json!({"sub": 42}), "sub").unwrap_err().to_string(),
        "token claim 'sub' must be a string, not a number"
    );
    assert!(subject(&json!({"sub": ["a"]}), "sub").is_err());
    assert_eq!(
        groups(&json!({"groups": "dba"}), "groups")
            .unwrap_err()
            .to_string(),
        "token claim 'groups' must be an array of group names (a JSON list of strings), not a string"
    );
    assert_eq!(
        groups(&json!({"g": [1]}), "g").unwrap_err().to_string(),
        "token claim 'g' must be an array of group names as strings, but it holds a number"
    );
    assert!(groups(&json!({"g": {"dba": true}}), "g").is_err());
    assert_eq!(
        client_id(&json!({"client_id": 5})).unwrap_err().to_string(),
        "token claim 'client_id' must be a string, not a number"
    );
    assert!(client_id(&json!({"azp": ["cli"]})).is_err());
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
    assert_eq!(client_id(&json!({"azp": "cli"})).unwrap(), Some("cli"));
    assert_eq!(
        client_id(&json!({"client_id": "a", "azp": "b"})).unwrap(),
        Some("a")
    );
}
