//! `audit verify`: walks the whole chain and names the first event that does not hold.
//!
//! Checked: every event's hash covers its contents; each links to the one before with no
//! gap in `seq`; the indexed columns agree with the body; every checkpoint is signed by the
//! given key and matches the event it names; no checkpoint names an event past the end
//! (the tail was deleted). The first event links to nothing (seq 1) or, after retention,
//! to a checkpoint. Events after the last checkpoint are reported as not yet signed.

use std::collections::BTreeMap;

use crate::chain::{Checkpoint, GENESIS, PublicKey};
use crate::event::Event;
use crate::store::{Columns, Store, StoreError};

/// Events read per round trip.
const PAGE: u32 = 5_000;

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: u64,
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub events: u64,
    pub checkpoints: u64,
    /// Events after the last checkpoint: intact links, but no signature covers them yet.
    pub unsigned: u64,
    pub broken: Option<Broken>,
}

impl Verification {
    pub fn is_intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// Verifies the store, calling `progress(done, total)` as it goes.
pub async fn verify(
    store: &mut Store,
    key: &PublicKey,
    mut progress: impl FnMut(u64, u64),
) -> Result<Verification, StoreError> {
    let checkpoints: BTreeMap<u64, Checkpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.seq, c))
        .collect();
    let (total, first, last) = store.extent().await?;
    let mut report = Verification {
        events: 0,
        checkpoints: checkpoints.len() as u64,
        unsigned: 0,
        broken: None,
    };
    let fail = |seq: u64, reason: String, mut report: Verification| {
        report.broken = Some(Broken { seq, reason });
        Ok(report)
    };
    for c in checkpoints.values() {
        if c.key_id != key.id() || !key.verify(c) {
            return fail(
                c.seq,
                format!(
                    "the checkpoint at event {} is not signed by key {}",
                    c.seq,
                    key.id()
                ),
                report,
            );
        }
    }
    if let Some(c) = checkpoints.values().next_back()
        && c.seq > last
    {
        return fail(
            last + 1,
            format!(
                "a checkpoint names event {} but the store ends at {last}: events were deleted",
                c.seq
            ),
            report,
        );
    }
    let mut prev: Option<(u64, [u8; 32])> = None;
    let mut last_signed = 0u64;
    let mut from = first;
    loop {
        let page = store.records(from, PAGE).await?;
        let Some(end) = page.last().map(|s| s.record.seq) else {
            break;
        };
        for s in &page {
            let r = &s.record;
            let expected_prev = match prev {
                Some((seq, hash)) => {
                    if r.seq != seq + 1 {
                        return fail(
                            seq + 1,
                            format!("events {} to {} are missing", seq + 1, r.seq - 1),
                            report,
                        );
                    }
                    hash
                }
                None if r.seq == 1 => GENESIS,
                None => match checkpoints.get(&(r.seq - 1)) {
                    Some(c) => c.hash,
                    None => {
                        return fail(
                            r.seq,
                            format!(
                                "the store starts at event {} with no checkpoint before it: earlier events were deleted",
                                r.seq
                            ),
                            report,
                        );
                    }
                },
            };
            if r.prev_hash != expected_prev {
                return fail(
                    r.seq,
                    format!("event {} does not link to the event before it", r.seq),
                    report,
                );
            }
            if !r.is_intact() {
                return fail(
                    r.seq,
                    format!("event {} was changed after it was written", r.seq),
                    report,
                );
            }
            match serde_json::from_str::<Event>(&r.body) {
                Ok(e) if Columns::of(&e) == s.columns => {}
                _ => {
                    return fail(
                        r.seq,
                        format!("event {}'s indexed columns were changed", r.seq),
                        report,
                    );
                }
            }
            if let Some(c) = checkpoints.get(&r.seq) {
                if c.hash != r.hash {
                    return fail(
                        r.seq,
                        format!("event {} is not the event its checkpoint signed", r.seq),
                        report,
                    );
                }
                last_signed = r.seq;
            }
            prev = Some((r.seq, r.hash));
            report.events += 1;
        }
        progress(report.events, total);
        from = end + 1;
    }
    report.unsigned = prev.map_or(0, |(seq, _)| {
        seq.saturating_sub(last_signed.max(first.saturating_sub(1)))
    });
    Ok(report)
}

/// What a witness says about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessCheck {
    /// The store holds the witnessed event with the witnessed hash (and may go on past it).
    Holds { seq: u64 },
    /// Retention deleted the witnessed event; the store's chain starts after it, so it is
    /// ahead of the witness.
    Pruned { seq: u64, first: u64 },
    /// The witness is not signed by the key (forged or edited).
    Forged { reason: String },
    /// The store ends before the witnessed event: its newest events were deleted.
    Truncated { witnessed: u64, last: u64 },
    /// The store's event at the witnessed position is another one: the chain was rewritten.
    Diverged { seq: u64 },
}

impl WitnessCheck {
    pub fn holds(&self) -> bool {
        matches!(
            self,
            WitnessCheck::Holds { .. } | WitnessCheck::Pruned { .. }
        )
    }

    /// A sentence for people.
    pub fn describe(&self) -> String {
        match self {
            WitnessCheck::Holds { seq: 0 } => {
                "the witness was made when the chain was empty".to_string()
            }
            WitnessCheck::Holds { seq } => {
                format!("the witnessed head, event #{seq}, is in the store")
            }
            WitnessCheck::Pruned { seq, first } => format!(
                "the witnessed head, event #{seq}, was deleted by retention (the store starts at #{first})"
            ),
            WitnessCheck::Forged { reason } => reason.clone(),
            WitnessCheck::Truncated { witnessed, last } => format!(
                "events after #{last} are missing: the witness signed the chain up to event #{witnessed}, so {} newest events were deleted",
                witnessed - last
            ),
            WitnessCheck::Diverged { seq } => {
                format!("event #{seq} is not the event the witness signed: the chain was rewritten")
            }
        }
    }
}

/// Checks the store against a witnessed head: signed by `key`, and the store holds that
/// event with that hash. A store ahead of the witness holds.
pub async fn check_witness(
    store: &mut Store,
    key: &PublicKey,
    witnessed: &Checkpoint,
) -> Result<WitnessCheck, StoreError> {
    if witnessed.key_id != key.id() || !key.verify(witnessed) {
        return Ok(WitnessCheck::Forged {
            reason: format!(
                "the witness (event #{}) is not signed by key {}",
                witnessed.seq,
                key.id()
            ),
        });
    }
    store_holds(store, witnessed.seq, &witnessed.hash).await
}

/// Whether the store holds event `seq` with `hash` (or is past it after retention); the
/// signature is not looked at. Seq 0 is the empty chain, which every store extends.
pub async fn store_holds(
    store: &mut Store,
    seq: u64,
    hash: &[u8; 32],
) -> Result<WitnessCheck, StoreError> {
    if seq == 0 {
        return Ok(if *hash == GENESIS {
            WitnessCheck::Holds { seq }
        } else {
            WitnessCheck::Diverged { seq }
        });
    }
    let (count, first, last) = store.extent().await?;
    if count == 0 || seq > last {
        return Ok(WitnessCheck::Truncated {
            witnessed: seq,
            last: if count == 0 { 0 } else { last },
        });
    }
    let held = if seq >= first {
        store
            .records(seq, 1)
            .await?
            .into_iter()
            .next()
            .filter(|s| s.record.seq == seq)
            .map(|s| s.record.hash)
    } else {
        // Before the first event: retention keeps the checkpoint the chain starts from.
        let checkpoints = store.checkpoints().await?;
        match checkpoints.iter().find(|c| c.seq == seq) {
            Some(c) => Some(c.hash),
            None => return Ok(WitnessCheck::Pruned { seq, first }),
        }
    };
    Ok(match held {
        Some(h) if h == *hash => WitnessCheck::Holds { seq },
        // A gap where the witnessed event was is a deletion `verify` names; here it means
        // the store does not hold what was witnessed.
        _ => WitnessCheck::Diverged { seq },
    })
}
