//! Witnesses: the chain's signed head, published outside the store at every checkpoint.
//!
//! The chain and its checkpoints live in one store, so whoever can delete from it can
//! delete the newest events *and* the checkpoints that signed them, back to an older
//! checkpoint, and what is left still verifies. A witness keeps a copy of the newest
//! checkpoint somewhere else (a file on another path or volume now; the system journal or
//! a webhook can implement [`Witness`] the same way). `audit verify` then checks that the
//! store still holds the witnessed event with the witnessed hash: a store that ends before
//! it was truncated.
//!
//! The writer publishes only after the checkpoint is committed in the store, so a crash
//! in between leaves the witness behind the store, never ahead of it. A store ahead of a
//! witness is normal (several gateways sharing a PostgreSQL store each keep their own
//! witness, and each witnesses the shared chain's head when it signs). Before replacing a
//! head, the writer checks that the store still holds it: a trail cut back while the
//! gateway runs (or was down) keeps its old witness, so the cut stays visible instead of
//! being overwritten by the next checkpoint. The witness is created when the writer
//! starts (a signed empty head, seq 0, for an empty store), so a missing witness means a
//! deleted one or the wrong file, never "not yet".

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chain::Checkpoint;

/// Format marker of a witness file, so another JSON file is not taken for one.
const FORMAT: &str = "portcullis-audit-witness-v1";

/// Why a witness could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("'{0}' is not a witness: use file:PATH")]
    Unsupported(String),
    #[error("cannot write the witness {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read the witness {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the witness {path} is not a witness file: {reason}")]
    Invalid { path: String, reason: String },
}

/// Somewhere the chain's signed head is published, outside the store.
pub trait Witness: Send + Sync {
    /// Where it publishes, for messages.
    fn describe(&self) -> String;
    /// Publishes `head`, replacing what was published before; returns once it is durable.
    fn publish(&self, head: &Checkpoint) -> Result<(), WitnessError>;
    /// The head last published, when this witness can be read back (a webhook may not:
    /// `None`), so the writer never replaces a head the store no longer holds.
    fn read(&self) -> Result<Option<Checkpoint>, WitnessError>;
}

/// A configured witness: `file:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessRef {
    File(PathBuf),
}

impl WitnessRef {
    /// Parses a configuration value.
    pub fn parse(text: &str) -> Result<WitnessRef, WitnessError> {
        match text.split_once(':') {
            Some(("file", path)) if !path.is_empty() => Ok(WitnessRef::File(PathBuf::from(path))),
            _ => Err(WitnessError::Unsupported(text.to_string())),
        }
    }

    /// The witness that publishes here.
    pub fn open(&self) -> Box<dyn Witness> {
        match self {
            WitnessRef::File(path) => Box::new(FileWitness::new(path)),
        }
    }
}

/// The head as a witness file holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Published {
    format: String,
    seq: u64,
    hash: String,
    time_us: i64,
    key_id: String,
    signature: String,
}

/// A witness kept in a file, replaced atomically: a reader (or a crash) sees the old
/// head or the new one, never half of either.
#[derive(Debug, Clone)]
pub struct FileWitness {
    path: PathBuf,
}

impl FileWitness {
    pub fn new(path: impl Into<PathBuf>) -> FileWitness {
        FileWitness { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head last published here; `None` when nothing was published yet.
    fn read_file(&self) -> Result<Option<Checkpoint>, WitnessError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(WitnessError::Read {
                    path: self.path.display().to_string(),
                    source,
                });
            }
        };
        let invalid = |reason: String| WitnessError::Invalid {
            path: self.path.display().to_string(),
            reason,
        };
        let p: Published = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if p.format != FORMAT {
            return Err(invalid(format!("format '{}' is not {FORMAT}", p.format)));
        }
        let hash = hex::decode(&p.hash)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| invalid("hash is not 64 hex digits".into()))?;
        let signature = hex::decode(&p.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .ok_or_else(|| invalid("signature is not 128 hex digits".into()))?;
        Ok(Some(Checkpoint {
            seq: p.seq,
            hash,
            time_us: p.time_us,
            key_id: p.key_id,
            signature,
        }))
    }

    fn write(&self, head: &Checkpoint) -> std::io::Result<()> {
        let body = serde_json::to_string_pretty(&Published {
            format: FORMAT.into(),
            seq: head.seq,
            hash: hex::encode(head.hash),
            time_us: head.time_us,
            key_id: head.key_id.clone(),
            signature: hex::encode(head.signature),
        })?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "witness".into());
        // Unique per writer, so gateways sharing a directory never clobber each other's
        // half-written file.
        let tmp = dir.join(format!(
            ".{name}.{}.{:016x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            // The rename itself is durable once the directory is.
            std::fs::File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

impl Witness for FileWitness {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn publish(&self, head: &Checkpoint) -> Result<(), WitnessError> {
        self.write(head).map_err(|source| WitnessError::Write {
            path: self.path.display().to_string(),
            source,
        })
    }

    fn read(&self) -> Result<Option<Checkpoint>, WitnessError> {
        self.read_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::CheckpointKey;

    #[test]
    fn a_file_witness_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let w = FileWitness::new(dir.path().join("head.json"));
        assert!(w.read().unwrap().is_none());
        let key = CheckpointKey::from_pem(&CheckpointKey::generate_pem()).unwrap();
        let first = key.sign(3, [1; 32], 10);
        w.publish(&first).unwrap();
        assert_eq!(w.read().unwrap(), Some(first));
        let second = key.sign(9, [2; 32], 20);
        w.publish(&second).unwrap();
        assert_eq!(w.read().unwrap(), Some(second));
        // Nothing but the witness is left in the directory.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("head.json")]);
        std::fs::write(w.path(), "{\"format\": \"other\"}").unwrap();
        assert!(matches!(w.read(), Err(WitnessError::Invalid { .. })));
    }

    #[test]
    fn only_file_witnesses_parse() {
        assert_eq!(
            WitnessRef::parse("file:/var/lib/w.json").unwrap(),
            WitnessRef::File("/var/lib/w.json".into())
        );
        assert!(WitnessRef::parse("journal:").is_err());
        assert!(WitnessRef::parse("file:").is_err());
        assert!(WitnessRef::parse("/var/lib/w.json").is_err());
    }
}
