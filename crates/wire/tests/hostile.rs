//! Hostile input on stable Rust: hundreds of thousands of mutations of valid messages go
//! through every decoder a peer can reach. Nothing may panic. (The cargo-fuzz targets in
//! `fuzz/` run the same entry points coverage-guided.)

use portcullis_wire::Message;
use portcullis_wire::backend::{Authentication, ErrorResponse, Severity};
use portcullis_wire::frontend::{Parse, Query};
use portcullis_wire::fuzzing;
use portcullis_wire::startup::{self, CancelKey, PROTOCOL_3_0, StartupMessage};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for m in [
        Query::new(b"select 1; select 2").into_message(),
        Parse::new("s1", b"select $1", &[23, 25]).into_message(),
        Message::new(
            b'B',
            b"p1\0s1\0\0\x01\0\x01\0\x02\0\0\0\x02hi\xff\xff\xff\xff\0\0",
        ),
        Message::new(b'D', b"\0\x02\0\0\0\x01a\xff\xff\xff\xff"),
        Message::new(
            b'T',
            b"\0\x01id\0\0\0\x40\x01\0\x02\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
        ),
        ErrorResponse::new(Severity::Error, "42501", "refused").to_message(),
        Authentication::Sasl {
            mechanisms: vec!["SCRAM-SHA-256".into()],
        }
        .to_message(),
        Message::new(b'C', b"UPDATE 3\0"),
        Message::new(b'Z', b"T"),
        Message::new(b'E', b"p1\0\0\0\0\x0a"),
    ] {
        frames.push(m.as_bytes().to_vec());
    }
    frames
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    match rng.below(6) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 => {
            let n = rng.below(input.len() + 1);
            input.truncate(n);
        }
        2 if input.len() >= 5 => {
            // Rewrite the length field with something plausible or absurd.
            let len = match rng.below(4) {
                0 => rng.below(64) as i32,
                1 => -(rng.below(10) as i32),
                2 => i32::MAX - rng.below(10) as i32,
                _ => input.len() as i32 + rng.below(8) as i32 - 4,
            };
            input[1..5].copy_from_slice(&len.to_be_bytes());
        }
        3 => {
            let i = rng.below(input.len() + 1);
            input.insert(i, rng.next() as u8);
        }
        4 if !input.is_empty() => {
            let i = rng.below(input.len());
            input.remove(i);
        }
        _ => {
            let extra = seeds();
            input.extend_from_slice(&extra[rng.below(extra.len())]);
        }
    }
}

#[test]
fn mutated_frames_never_panic() {
    let seeds = seeds();
    let mut rng = Rng(0x9E3779B97F4A7C15);
    for _ in 0..200_000 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut input);
        }
        fuzzing::frames(&input);
    }
}

#[test]
fn mutated_startup_packets_never_panic() {
    let startup = StartupMessage::encode(PROTOCOL_3_0, &[("user", b"alice"), ("database", b"app")]);
    let cancel = startup::cancel_request(&CancelKey {
        pid: 7,
        secret: bytes::Bytes::from_static(&[1, 2, 3, 4]),
    });
    let seeds = [
        startup[4..].to_vec(),
        cancel[4..].to_vec(),
        startup::ssl_request()[4..].to_vec(),
    ];
    let mut rng = Rng(42);
    for _ in 0..100_000 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            match rng.below(3) {
                0 if !input.is_empty() => {
                    let i = rng.below(input.len());
                    input[i] = rng.next() as u8;
                }
                1 => {
                    let n = rng.below(input.len() + 1);
                    input.truncate(n);
                }
                _ => input.push(rng.next() as u8),
            }
        }
        fuzzing::startup(&input);
    }
}
