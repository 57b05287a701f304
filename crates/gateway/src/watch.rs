//! Reload on change: the configuration file and every file it names (secrets, certificates,
//! CA bundles) are checked periodically; any change triggers a reload.
//!
//! Polling metadata is cheap for a handful of files and sees every kind of replacement,
//! including the symlink swaps Kubernetes uses for mounted secrets.

use std::path::PathBuf;
use std::sync::Weak;
use std::time::{Duration, SystemTime};

use crate::Inner;

/// What identifies a file's version.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn stamps(inner: &Inner) -> (Vec<(PathBuf, Stamp)>, Duration) {
    let runtime = inner.runtime.load();
    let mut files = vec![inner.config_path.clone()];
    files.extend(runtime.config.watched_files());
    let interval = runtime.config.reload.watch_interval;
    (
        files
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect(),
        interval,
    )
}

pub(crate) async fn watch_files(
    inner: Weak<Inner>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let Some(strong) = inner.upgrade() else {
        return;
    };
    let (mut last, mut interval) = stamps(&strong);
    drop(strong);
    loop {
        let wait = if interval.is_zero() {
            Duration::from_secs(3600)
        } else {
            interval
        };
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let (now, new_interval) = stamps(&strong);
        if !interval.is_zero() && now != last {
            tracing::info!("configuration or secret files changed; reloading");
            let _ = strong.reload();
            // Re-read: the reload may name different files.
            let (after, after_interval) = stamps(&strong);
            last = after;
            interval = after_interval;
        } else {
            last = now;
            interval = new_interval;
        }
    }
}
