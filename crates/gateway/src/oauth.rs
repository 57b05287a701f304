//! The server side of SASL `OAUTHBEARER` (RFC 7628) as PostgreSQL 18 speaks it: libpq 18
//! runs the device flow itself and sends the token in a SASL exchange.
//!
//! A client that sends no token is asking how to get one: it gets the JSON error naming
//! the issuer's discovery document and the scope, answers with a single `0x01`, and the
//! attempt fails; libpq then logs in at the issuer and reconnects with a token, which is
//! verified exactly like the password path's.

use bytes::Bytes;
use portcullis_wire::{Message, Reader, WireError};

/// The mechanism's name in AuthenticationSASL.
pub const MECHANISM: &str = "OAUTHBEARER";

/// The key-value separator of RFC 7628.
const KVSEP: u8 = 0x01;

/// A SASLInitialResponse: the chosen mechanism and its first message.
pub struct InitialResponse {
    pub mechanism: String,
    pub data: Option<Bytes>,
}

impl InitialResponse {
    pub fn decode(msg: &Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "SASLInitialResponse");
        let mechanism = r.cstr_utf8()?.to_owned();
        let data = r.value()?.map(Bytes::copy_from_slice);
        r.finish()?;
        Ok(InitialResponse { mechanism, data })
    }
}

/// What the client's first message holds.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientFirst<'a> {
    /// No `auth` value: the client wants to know where to get a token.
    Discovery,
    Bearer(&'a str),
}

/// Parses `gs2-header kvsep *(kvpair kvsep) kvsep`; returns the bearer token, if any.
pub fn client_first(data: &[u8]) -> Result<ClientFirst<'_>, &'static str> {
    let text = std::str::from_utf8(data).map_err(|_| "the message is not UTF-8")?;
    // gs2-header: channel binding flag ("n" or "y"; "p" is not offered), authzid, then ','.
    let mut parts = text.splitn(3, ',');
    let flag = parts.next().unwrap_or("");
    if flag != "n" && flag != "y" {
        return Err("channel binding is not supported with OAUTHBEARER");
    }
    let authzid = parts.next().ok_or("malformed GS2 header")?;
    if !authzid.is_empty() && !authzid.starts_with("a=") {
        return Err("malformed GS2 header");
    }
    let rest = parts.next().ok_or("malformed GS2 header")?.as_bytes();
    let rest = rest
        .strip_prefix(&[KVSEP])
        .ok_or("missing separator after the GS2 header")?;
    let rest = rest
        .strip_suffix(&[KVSEP])
        .ok_or("the message does not end with a separator")?;
    let mut token = None;
    for pair in rest.split(|&b| b == KVSEP).filter(|p| !p.is_empty()) {
        let pair = std::str::from_utf8(pair).map_err(|_| "the message is not UTF-8")?;
        let (key, value) = pair.split_once('=').ok_or("a key-value pair has no '='")?;
        if key == "auth" {
            let (scheme, t) = value
                .split_once(' ')
                .ok_or("the auth value is not 'Bearer <token>'")?;
            if !scheme.eq_ignore_ascii_case("bearer") || t.trim().is_empty() {
                return Err("the auth value is not 'Bearer <token>'");
            }
            token = Some(t.trim());
        }
    }
    Ok(match token {
        Some(t) => ClientFirst::Bearer(t),
        None => ClientFirst::Discovery,
    })
}

/// The error challenge: where to get a token, and for which scope.
pub fn challenge(issuer: &str, scope: &str) -> Bytes {
    let body = serde_json::json!({
        "status": "invalid_token",
        "openid-configuration": format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/')),
        "scope": scope,
    });
    Bytes::from(body.to_string())
}

/// Whether a SASLResponse is the client's acknowledgement of the challenge.
pub fn is_ack(data: &[u8]) -> bool {
    data == [KVSEP]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_first_message() {
        assert_eq!(
            client_first(b"n,,\x01auth=Bearer abc.def.ghi\x01\x01"),
            Ok(ClientFirst::Bearer("abc.def.ghi"))
        );
        assert_eq!(
            client_first(b"y,a=alice,\x01host=db\x01auth=bearer tok\x01\x01"),
            Ok(ClientFirst::Bearer("tok"))
        );
        assert_eq!(client_first(b"n,,\x01\x01"), Ok(ClientFirst::Discovery));
        for bad in [
            &b"p=tls-unique,,\x01auth=Bearer t\x01\x01"[..],
            b"n,,auth=Bearer t",
            b"n,,\x01auth=Basic dXNlcg==\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01noequals\x01\x01",
            b"n",
            b"\xff,,\x01\x01",
        ] {
            assert!(client_first(bad).is_err(), "{bad:?}");
        }
        let c = challenge("http://idp/", "openid groups");
        let v: serde_json::Value = serde_json::from_slice(&c).unwrap();
        assert_eq!(
            v["openid-configuration"],
            "http://idp/.well-known/openid-configuration"
        );
        assert_eq!(v["status"], "invalid_token");
        assert!(is_ack(b"\x01"));
    }
}
