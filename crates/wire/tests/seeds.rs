//! The committed fuzz seeds decode as the protocol says: counts up to 65,535 are read as
//! unsigned (the truncated ones fail as truncated, never as a negative count), and the
//! whole ones decode with every parameter.

use bytes::BytesMut;
use portcullis_wire::frontend::{Bind, Parse};
use portcullis_wire::{Frame, FrameReader, Limits};

fn message(path: &str) -> portcullis_wire::Message {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/frames");
    let data = std::fs::read(dir.join(path)).expect("seed");
    let mut reader = FrameReader::with_buffer(
        tokio::io::empty(),
        Limits::default(),
        BytesMut::from(&data[..]),
    );
    match reader.try_next(|_| false) {
        Ok(Some(Frame::Message(m))) => m,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn edge_counts_are_unsigned() {
    for n in [32767, 32768, 65535] {
        for (name, err) in [
            (
                format!("parse-count-{n}"),
                Parse::decode(message(&format!("parse-count-{n}"))).err(),
            ),
            (
                format!("bind-count-{n}"),
                Bind::decode(message(&format!("bind-count-{n}"))).err(),
            ),
        ] {
            let err = err.map(|e| e.to_string()).unwrap_or_default();
            assert!(!err.contains("negative"), "{name}: {err}");
            assert!(!err.is_empty(), "{name}: a truncated message decoded");
        }
    }
    let p = Parse::decode(message("parse-1000-params")).expect("parse");
    assert_eq!(p.param_types().count(), 1000);
    let b = Bind::decode(message("bind-1000-nulls")).expect("bind");
    assert_eq!(b.parameters().len(), 1000);
    for f in std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/frames"),
    )
    .unwrap()
    {
        portcullis_wire::fuzzing::frames(&std::fs::read(f.unwrap().path()).unwrap());
    }
}
