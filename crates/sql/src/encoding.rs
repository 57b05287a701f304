//! Client encodings: converting statement text to UTF-8 the way the server does before it parses.

use std::borrow::Cow;

/// The session's `client_encoding`, as reported by the server in ParameterStatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEncoding {
    Utf8,
    /// SQL_ASCII: bytes are taken as they are; only ASCII text can be analysed.
    SqlAscii,
    /// ISO 8859-1, where every byte is the code point of the same value.
    Latin1,
    /// Any other encoding the server supports and `encoding_rs` implements exactly.
    Other(&'static encoding_rs::Encoding),
    /// An encoding the gateway cannot convert; its text cannot be analysed.
    Unsupported,
}

impl ClientEncoding {
    /// Maps a PostgreSQL encoding name (case-insensitive, with PostgreSQL's aliases).
    pub fn from_name(name: &str) -> Self {
        let upper: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        use encoding_rs as e;
        let other = |enc| ClientEncoding::Other(enc);
        match upper.as_str() {
            "UTF8" | "UNICODE" => ClientEncoding::Utf8,
            "SQLASCII" => ClientEncoding::SqlAscii,
            "LATIN1" | "ISO88591" => ClientEncoding::Latin1,
            "LATIN2" | "ISO88592" => other(e::ISO_8859_2),
            "LATIN3" | "ISO88593" => other(e::ISO_8859_3),
            "LATIN4" | "ISO88594" => other(e::ISO_8859_4),
            "ISO88595" => other(e::ISO_8859_5),
            "ISO88596" => other(e::ISO_8859_6),
            "ISO88597" => other(e::ISO_8859_7),
            "ISO88598" => other(e::ISO_8859_8),
            "LATIN6" | "ISO885910" => other(e::ISO_8859_10),
            "LATIN7" | "ISO885913" => other(e::ISO_8859_13),
            "LATIN8" | "ISO885914" => other(e::ISO_8859_14),
            "LATIN9" | "ISO885915" => other(e::ISO_8859_15),
            "LATIN10" | "ISO885916" => other(e::ISO_8859_16),
            "WIN1250" => other(e::WINDOWS_1250),
            "WIN1251" | "WIN" => other(e::WINDOWS_1251),
            "WIN1252" => other(e::WINDOWS_1252),
            "WIN1253" => other(e::WINDOWS_1253),
            "WIN1254" => other(e::WINDOWS_1254),
            "WIN1255" => other(e::WINDOWS_1255),
            "WIN1256" => other(e::WINDOWS_1256),
            "WIN1257" => other(e::WINDOWS_1257),
            "WIN1258" => other(e::WINDOWS_1258),
            "WIN866" | "ALT" => other(e::IBM866),
            "WIN874" => other(e::WINDOWS_874),
            "KOI8R" | "KOI8" => other(e::KOI8_R),
            "KOI8U" => other(e::KOI8_U),
            "SJIS" | "SHIFTJIS" | "MSKANJI" => other(e::SHIFT_JIS),
            "EUCJP" => other(e::EUC_JP),
            "EUCKR" | "UHC" => other(e::EUC_KR),
            "BIG5" => other(e::BIG5),
            "GBK" | "WIN936" => other(e::GBK),
            "GB18030" => other(e::GB18030),
            _ => ClientEncoding::Unsupported,
        }
    }

    /// Converts `bytes` to UTF-8; `None` when they are not valid in this encoding or the
    /// encoding cannot be converted.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
        match self {
            ClientEncoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            ClientEncoding::SqlAscii => {
                if bytes.is_ascii() {
                    std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
                } else {
                    None
                }
            }
            ClientEncoding::Latin1 => match std::str::from_utf8(bytes) {
                Ok(s) if bytes.is_ascii() => Some(Cow::Borrowed(s)),
                _ => Some(Cow::Owned(bytes.iter().map(|&b| b as char).collect())),
            },
            ClientEncoding::Other(enc) => {
                enc.decode_without_bom_handling_and_without_replacement(bytes)
            }
            ClientEncoding::Unsupported => {
                if bytes.is_ascii() {
                    std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        assert_eq!(ClientEncoding::from_name("utf8"), ClientEncoding::Utf8);
        assert_eq!(ClientEncoding::from_name("UTF-8"), ClientEncoding::Utf8);
        assert_eq!(ClientEncoding::Latin1.decode(b"caf\xe9").unwrap(), "café");
        assert!(ClientEncoding::Utf8.decode(b"caf\xe9").is_none());
        assert!(ClientEncoding::SqlAscii.decode(b"caf\xe9").is_none());
        let sjis = ClientEncoding::from_name("SJIS");
        // 0x95 0x5c is one character whose second byte is a backslash in ASCII.
        assert_eq!(sjis.decode(b"'\x95\x5c'").unwrap(), "'表'");
        assert!(sjis.decode(b"\x95").is_none());
        assert_eq!(
            ClientEncoding::from_name("MULE_INTERNAL"),
            ClientEncoding::Unsupported
        );
    }
}
