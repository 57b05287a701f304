//! Tamper evidence: every stored event carries the hash of the one before it, and signed
//! checkpoints pin the head of the chain with the gateway's Ed25519 key.
//!
//! `hash = SHA-256(prev_hash ‖ seq ‖ time ‖ body)`, with `seq` and `time` as 8-byte
//! big-endian integers and `body` the event's JSON exactly as stored. Editing any field of
//! an event changes its hash and breaks the next link; deleting one leaves a gap in `seq`.
//! A checkpoint signs `(seq, hash, time)` of the head, so rewriting the whole chain after an
//! edit is caught too, unless the signing key is stolen as well.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// Domain separation for checkpoint signatures.
const CHECKPOINT_CONTEXT: &[u8] = b"portcullis audit checkpoint v1\0";

/// An event as stored: its place in the chain and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// Microseconds since the Unix epoch, UTC.
    pub time_us: i64,
    pub body: String,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// The hash linking an event to its predecessor.
pub fn link(prev: &[u8; 32], seq: u64, time_us: i64, body: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(time_us.to_be_bytes());
    h.update(body.as_bytes());
    h.finalize().into()
}

impl Record {
    /// Chains a new event after `(prev_seq, prev_hash)`.
    pub fn next(prev_seq: u64, prev_hash: [u8; 32], time_us: i64, body: String) -> Record {
        let seq = prev_seq + 1;
        let hash = link(&prev_hash, seq, time_us, &body);
        Record {
            seq,
            time_us,
            body,
            prev_hash,
            hash,
        }
    }

    /// Whether the stored hash is the hash of the stored contents.
    pub fn is_intact(&self) -> bool {
        link(&self.prev_hash, self.seq, self.time_us, &self.body) == self.hash
    }
}

/// A signed statement that the chain's head was `(seq, hash)` at `time_us`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: [u8; 32],
    pub time_us: i64,
    /// Hex of the first 8 bytes of SHA-256 of the public key: which key signed.
    pub key_id: String,
    pub signature: [u8; 64],
}

fn signed_bytes(seq: u64, hash: &[u8; 32], time_us: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_CONTEXT.len() + 48);
    m.extend_from_slice(CHECKPOINT_CONTEXT);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time_us.to_be_bytes());
    m
}

/// The key that signs checkpoints.
pub struct CheckpointKey {
    key: SigningKey,
}

/// Why a key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    Private(String),
    #[error("not an Ed25519 public key (PEM or 64 hex digits): {0}")]
    Public(String),
}

impl CheckpointKey {
    /// Reads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| CheckpointKey { key })
            .map_err(|e| KeyError::Private(e.to_string()))
    }

    /// A new random key, as PKCS#8 PEM (for the demo and tests).
    pub fn generate_pem() -> String {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        key.to_pkcs8_pem(Default::default())
            .map(|p| p.to_string())
            .unwrap_or_default()
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    pub fn sign(&self, seq: u64, hash: [u8; 32], time_us: i64) -> Checkpoint {
        let signature = self.key.sign(&signed_bytes(seq, &hash, time_us));
        Checkpoint {
            seq,
            hash,
            time_us,
            key_id: self.public().id(),
            signature: signature.to_bytes(),
        }
    }
}

/// The key that verifies checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a public key as SPKI PEM, or 64 hex digits.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if let Ok(bytes) = hex::decode(text)
            && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return VerifyingKey::from_bytes(&arr)
                .map(PublicKey)
                .map_err(|e| KeyError::Public(e.to_string()));
        }
        VerifyingKey::from_public_key_pem(text)
            .map(PublicKey)
            .map_err(|e| KeyError::Public(e.to_string()))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    pub fn verify(&self, c: &Checkpoint) -> bool {
        let signature = Signature::from_bytes(&c.signature);
        self.0
            .verify(&signed_bytes(c.seq, &c.hash, c.time_us), &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_cover_every_field() {
        let a = Record::next(0, GENESIS, 10, "{\"a\":1}".into());
        assert!(a.is_intact());
        let mut edited = a.clone();
        edited.body = "{\"a\":2}".into();
        assert!(!edited.is_intact());
        let mut moved = a.clone();
        moved.time_us += 1;
        assert!(!moved.is_intact());
        let b = Record::next(a.seq, a.hash, 11, "{}".into());
        assert_eq!(b.seq, 2);
        assert_eq!(b.prev_hash, a.hash);
    }

    #[test]
    fn checkpoints_verify_only_with_their_key_and_contents() {
        let key = CheckpointKey::from_pem(&CheckpointKey::generate_pem()).unwrap();
        let other = CheckpointKey::from_pem(&CheckpointKey::generate_pem()).unwrap();
        let c = key.sign(7, [3; 32], 99);
        assert!(key.public().verify(&c));
        assert!(!other.public().verify(&c));
        let mut forged = c.clone();
        forged.seq = 8;
        assert!(!key.public().verify(&forged));
        let parsed = PublicKey::parse(&key.public().to_hex()).unwrap();
        assert_eq!(parsed, key.public());
        assert!(CheckpointKey::from_pem("not a key").is_err());
    }
}
