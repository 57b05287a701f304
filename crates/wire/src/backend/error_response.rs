//! ErrorResponse and NoticeResponse: severity, SQLSTATE, message and the optional fields.

use crate::{Message, Reader, WireError, put_cstr};

use super::{ERROR_RESPONSE, NOTICE_RESPONSE};

/// Severity of an error or notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Panic,
    Warning,
    Notice,
    Debug,
    Info,
    Log,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Log => "LOG",
        }
    }

    fn parse(s: &[u8]) -> Option<Self> {
        Some(match s {
            b"ERROR" => Severity::Error,
            b"FATAL" => Severity::Fatal,
            b"PANIC" => Severity::Panic,
            b"WARNING" => Severity::Warning,
            b"NOTICE" => Severity::Notice,
            b"DEBUG" => Severity::Debug,
            b"INFO" => Severity::Info,
            b"LOG" => Severity::Log,
            _ => return None,
        })
    }
}

/// The fields of an ErrorResponse or NoticeResponse, by their one-byte codes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ErrorResponse {
    fields: Vec<(u8, String)>,
}

impl ErrorResponse {
    /// A gateway-generated error with severity, SQLSTATE and message.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        ErrorResponse {
            fields: vec![
                (b'S', severity.as_str().to_owned()),
                (b'V', severity.as_str().to_owned()),
                (b'C', code.to_owned()),
                (b'M', message.into()),
            ],
        }
    }

    /// Decodes the body of an ErrorResponse or NoticeResponse.
    pub fn decode(msg: &Message) -> Result<Self, WireError> {
        let mut r = Reader::new(msg.body(), "ErrorResponse");
        let mut fields = Vec::new();
        loop {
            let code = r.u8()?;
            if code == 0 {
                break;
            }
            let value = String::from_utf8_lossy(r.cstr()?).into_owned();
            fields.push((code, value));
        }
        r.finish()?;
        Ok(ErrorResponse { fields })
    }

    pub fn with(mut self, code: u8, value: impl Into<String>) -> Self {
        self.fields.retain(|(c, _)| *c != code);
        self.fields.push((code, value.into()));
        self
    }

    pub fn detail(self, detail: impl Into<String>) -> Self {
        self.with(b'D', detail)
    }

    pub fn hint(self, hint: impl Into<String>) -> Self {
        self.with(b'H', hint)
    }

    pub fn field(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// The non-localized severity (`V`), falling back to the localized one (`S`).
    pub fn severity(&self) -> Option<Severity> {
        self.field(b'V')
            .or_else(|| self.field(b'S'))
            .and_then(|s| Severity::parse(s.as_bytes()))
    }

    pub fn code(&self) -> &str {
        self.field(b'C').unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.field(b'M').unwrap_or("")
    }

    fn encode(&self, tag: u8) -> Message {
        Message::build(tag, |b| {
            for (code, value) in &self.fields {
                b.extend_from_slice(&[*code]);
                put_cstr(b, value.as_bytes());
            }
            b.extend_from_slice(&[0]);
        })
    }

    /// Encodes as an ErrorResponse.
    pub fn to_message(&self) -> Message {
        self.encode(ERROR_RESPONSE)
    }

    /// Encodes as a NoticeResponse.
    pub fn to_notice(&self) -> Message {
        self.encode(NOTICE_RESPONSE)
    }
}

impl std::fmt::Debug for ErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorResponse")
            .field("severity", &self.severity())
            .field("code", &self.code())
            .field("message", &self.message())
            .finish()
    }
}

impl std::fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (SQLSTATE {})",
            self.field(b'S').unwrap_or("ERROR"),
            self.message(),
            self.code()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = ErrorResponse::new(Severity::Fatal, "28000", "token expired 4m ago")
            .hint("run portcullis login");
        let m = e.to_message();
        assert_eq!(m.tag(), ERROR_RESPONSE);
        let d = ErrorResponse::decode(&m).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.severity(), Some(Severity::Fatal));
        assert_eq!(d.code(), "28000");
        assert_eq!(d.field(b'H'), Some("run portcullis login"));
        assert_eq!(e.to_notice().tag(), NOTICE_RESPONSE);
    }

    #[test]
    fn hostile() {
        assert!(ErrorResponse::decode(&Message::new(ERROR_RESPONSE, b"Sx")).is_err());
        assert!(ErrorResponse::decode(&Message::new(ERROR_RESPONSE, b"")).is_err());
        assert!(ErrorResponse::decode(&Message::new(ERROR_RESPONSE, b"\0x")).is_err());
    }
}
