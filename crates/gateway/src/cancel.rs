//! Cancel keys: clients see the real upstream backend PID with a secret the gateway made up;
//! a CancelRequest is matched on both and replayed to the right upstream with the real key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use portcullis_wire::startup::{self, CancelKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::runtime::Target;

/// Where a client's cancel key leads.
/// A session's cancel requests: counted, so that work the gateway still holds (a statement
/// waiting for its audit event or for approval) can tell a cancel that came after the
/// client sent it, even one that came before the wait began.
#[derive(Debug, Default)]
pub struct Cancels {
    count: std::sync::atomic::AtomicU64,
    notify: Notify,
    /// Messages sent to the server that end with a ReadyForQuery, and those answered: a
    /// cancel is for what was sent before it, so it is sent again while that is unanswered
    /// (the server ignores a cancel that reaches it before it starts on the statement).
    sent: std::sync::atomic::AtomicU64,
    answered: std::sync::atomic::AtomicU64,
    /// Whether the server had answered everything sent when the last cancel arrived: only
    /// then is a cancel for something still on its way to the gateway.
    idle_at_last: std::sync::atomic::AtomicBool,
}

impl Cancels {
    /// The frontend sent a message that ends with a ReadyForQuery (`count` so far).
    pub fn sent(&self, count: u64) {
        self.sent.store(count, std::sync::atomic::Ordering::SeqCst);
    }

    /// The backend read the ReadyForQuery of `count` of them.
    pub fn answered(&self, count: u64) {
        self.answered
            .store(count, std::sync::atomic::Ordering::SeqCst);
    }

    fn unanswered_since(&self, target: u64) -> bool {
        self.answered.load(std::sync::atomic::Ordering::SeqCst) < target
    }

    /// Whether a cancel sent again could only reach what was sent before `target`: it is
    /// unanswered, and nothing was sent since (which the cancel could reach instead).
    fn worth_resending(&self, target: u64) -> bool {
        self.unanswered_since(target)
            && self.sent.load(std::sync::atomic::Ordering::SeqCst) == target
    }

    pub fn cancel(&self) {
        let idle = !self.unanswered_since(self.sent.load(std::sync::atomic::Ordering::SeqCst));
        self.idle_at_last
            .store(idle, std::sync::atomic::Ordering::SeqCst);
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether the session's server work was all answered when the last cancel arrived.
    pub fn last_found_idle(&self) -> bool {
        self.idle_at_last.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Cancels so far.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once there have been more than `seen` cancels.
    pub async fn after(&self, seen: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() > seen {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Clone)]
pub struct CancelEntry {
    pub target: Arc<Target>,
    pub upstream: CancelKey,
    /// Woken by a cancel so that a statement the gateway is holding stops waiting.
    /// The session's cancels, which what the gateway still holds of the session's work
    /// waits on.
    pub cancels: Arc<Cancels>,
}

/// All live sessions' cancel keys.
#[derive(Default)]
pub struct CancelRegistry {
    map: Mutex<HashMap<(i32, [u8; 4]), CancelEntry>>,
}

/// Removes its key from the registry when the session ends.
pub struct CancelKeyGuard {
    registry: Arc<CancelRegistry>,
    key: (i32, [u8; 4]),
}

impl Drop for CancelKeyGuard {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.map.lock() {
            map.remove(&self.key);
        }
    }
}

impl CancelRegistry {
    /// Registers `entry` under the upstream PID and a fresh random secret; returns the key
    /// to give the client.
    pub fn register(self: &Arc<Self>, entry: CancelEntry) -> (CancelKey, CancelKeyGuard) {
        let pid = entry.upstream.pid;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let secret = loop {
            let s: [u8; 4] = rand::random();
            if !map.contains_key(&(pid, s)) {
                break s;
            }
        };
        map.insert((pid, secret), entry);
        (
            CancelKey {
                pid,
                secret: Bytes::copy_from_slice(&secret),
            },
            CancelKeyGuard {
                registry: self.clone(),
                key: (pid, secret),
            },
        )
    }

    /// The session a client's key belongs to; `None` for a wrong key.
    pub fn lookup(&self, key: &CancelKey) -> Option<CancelEntry> {
        let secret: [u8; 4] = key.secret.as_ref().try_into().ok()?;
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(key.pid, secret)).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Wakes a held statement and sends the upstream CancelRequest on a new connection, with
/// TLS when the target uses it.
pub async fn cancel(entry: &CancelEntry) -> std::io::Result<()> {
    let target = entry.cancels.sent.load(std::sync::atomic::Ordering::SeqCst);
    entry.cancels.cancel();
    if !entry.cancels.unanswered_since(target) {
        // The server has answered everything sent: the cancel is for what the gateway
        // still holds (a statement waiting for its audit event or for approval, bytes on
        // their way), which the frontend refuses with 57014 itself. Sent on, it could
        // reach the statement the client sends next.
        return Ok(());
    }
    send_cancel(entry).await?;
    // Sent again while what the client had sent is unanswered: a cancel that reaches the
    // server before it starts on the statement is ignored, and the statement would run to
    // its end. A few times, further apart each time.
    for wait_ms in [20, 100, 500, 2000] {
        tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
        if !entry.cancels.worth_resending(target) {
            break;
        }
        send_cancel(entry).await?;
    }
    Ok(())
}

async fn send_cancel(entry: &CancelEntry) -> std::io::Result<()> {
    let target = &entry.target;
    let tcp = tokio::time::timeout(
        target.connect_timeout,
        TcpStream::connect((target.host.as_str(), target.port)),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let packet = startup::cancel_request(&entry.upstream);
    match &target.connector {
        None => send_and_wait(tcp, &packet).await,
        Some(connector) => {
            let mut tcp = tcp;
            tcp.write_all(&startup::ssl_request()).await?;
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer).await?;
            if answer[0] != b'S' {
                return Err(std::io::Error::other(
                    "target refused TLS for the cancel request",
                ));
            }
            let tls = connector.connect(target.server_name.clone(), tcp).await?;
            send_and_wait(tls, &packet).await
        }
    }
}

/// Sends the packet and waits for the server to close, as libpq does, so that the cancel
/// has been delivered when this returns.
async fn send_and_wait<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    packet: &[u8],
) -> std::io::Result<()> {
    s.write_all(packet).await?;
    s.flush().await?;
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut sink)).await;
    Ok(())
}
