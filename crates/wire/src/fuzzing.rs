//! Entry points for the fuzz targets and the hostile-input tests: each feeds arbitrary bytes
//! through the decoders a peer can reach and must never panic.

use bytes::BytesMut;

use crate::backend::{
    Authentication, BackendKeyData, CommandComplete, DataRow, ErrorResponse, ParameterStatus,
    ReadyForQuery, RowDescription,
};
use crate::frontend::{Bind, Close, Describe, Execute, Parse, PasswordMessage, Query};
use crate::startup::StartupPacket;
use crate::{Frame, FrameReader, Limits, Message};

/// Frames `data` with small limits and decodes every frame with every typed view that
/// matches its type byte, in both directions.
pub fn frames(data: &[u8]) {
    let limits = Limits {
        max_message: 4096,
        stream_threshold: 1024,
    };
    let mut reader = FrameReader::with_buffer(tokio::io::empty(), limits, BytesMut::from(data));
    let streamable = |tag: u8| tag == b'd' || tag == b'D';
    while let Ok(Some(frame)) = reader.try_next(streamable) {
        if let Frame::Message(m) = frame {
            decode_any(m);
        }
    }
}

fn decode_any(m: Message) {
    match m.tag() {
        b'Q' => drop(Query::decode(m.clone()).map(|q| q.sql().len())),
        b'P' => drop(Parse::decode(m.clone()).map(|p| p.param_types().count())),
        b'B' => drop(Bind::decode(m.clone()).map(|b| (b.portal().len(), b.statement().len()))),
        b'D' => {
            drop(Describe::decode(m.clone()));
            drop(DataRow::decode(m.clone()).map(|r| r.values().count()));
        }
        b'E' => {
            drop(Execute::decode(m.clone()));
            drop(ErrorResponse::decode(&m).map(|e| e.to_string()));
        }
        b'C' => {
            drop(Close::decode(m.clone()));
            drop(CommandComplete::decode(m.clone()).map(|c| c.rows()));
        }
        b'p' => drop(PasswordMessage::decode(m.clone())),
        b'R' => drop(Authentication::decode(&m)),
        b'K' => drop(BackendKeyData::decode(&m)),
        b'S' => drop(ParameterStatus::decode(&m)),
        b'Z' => drop(ReadyForQuery::decode(&m)),
        b'T' => drop(RowDescription::decode(m.clone())),
        b'N' => drop(ErrorResponse::decode(&m)),
        _ => {}
    }
}

/// Decodes `data` as a startup packet body.
pub fn startup(data: &[u8]) {
    if let Ok(StartupPacket::Startup(s)) = StartupPacket::decode(data) {
        let _ = s.get("database");
    }
}
