//! ParameterStatus: the server reports a run-time parameter's value.

use crate::{Message, Reader, WireError, put_cstr};

use super::PARAMETER_STATUS;

/// ParameterStatus: a parameter name and its current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterStatus {
    pub name: String,
    pub value: String,
}

impl ParameterStatus {
    pub fn decode(msg: &Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "ParameterStatus");
        let name = r.cstr_utf8()?.to_owned();
        let value = String::from_utf8_lossy(r.cstr()?).into_owned();
        r.finish()?;
        Ok(ParameterStatus { name, value })
    }

    pub fn to_message(&self) -> Message {
        Message::build(PARAMETER_STATUS, |b| {
            put_cstr(b, self.name.as_bytes());
            put_cstr(b, self.value.as_bytes());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = ParameterStatus {
            name: "client_encoding".into(),
            value: "UTF8".into(),
        };
        assert_eq!(ParameterStatus::decode(&p.to_message()).unwrap(), p);
        assert!(ParameterStatus::decode(&Message::new(PARAMETER_STATUS, b"a\0")).is_err());
    }
}
