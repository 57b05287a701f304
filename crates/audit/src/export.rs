//! `audit export`: events as JSON Lines for a SIEM, one object per event with its place in
//! the chain, so the receiver can re-check the links.

use std::io::Write;

use crate::replay::format_time;
use crate::store::{Store, StoreError};

/// Writes every event at or after `since_us` to `out`; returns how many.
pub async fn export(
    store: &mut Store,
    since_us: Option<i64>,
    out: &mut impl Write,
) -> Result<u64, StoreError> {
    let (_, first, _) = store.extent().await?;
    let mut from = first;
    let mut n = 0;
    loop {
        let page = store.records(from, 5_000).await?;
        let Some(last) = page.last().map(|s| s.record.seq) else {
            break;
        };
        for s in page {
            let r = s.record;
            if since_us.is_some_and(|t| r.time_us < t) {
                continue;
            }
            // Embedded byte for byte, so the receiver can recompute the hash.
            let event = serde_json::value::RawValue::from_string(r.body)
                .map_err(|e| StoreError::Other(format!("event {} is not JSON: {e}", r.seq)))?;
            let line = serde_json::json!({
                "seq": r.seq,
                "time": format_time(r.time_us),
                "time_us": r.time_us,
                "prev_hash": hex::encode(r.prev_hash),
                "hash": hex::encode(r.hash),
                "event": event,
            });
            writeln!(out, "{line}").map_err(|e| StoreError::Other(e.to_string()))?;
            n += 1;
        }
        from = last + 1;
    }
    Ok(n)
}
