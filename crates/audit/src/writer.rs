//! The gateway's handle on the audit trail: events go to one writer thread that commits
//! whatever has queued up in a single transaction (group commit), so many sessions share
//! one fsync.
//!
//! [`AuditLog::durable`] resolves once its event is committed: the gateway forwards a
//! statement only after that. [`AuditLog::record`] does not wait (results, session ends);
//! if the store is failing, such events are kept in memory and written when it recovers.
//! Every interval (and at shutdown) the writer signs a checkpoint of the chain's head and,
//! once the store has it, publishes it to the configured witness. Statement events are
//! cut to the configured size before they are queued ([`crate::bound`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::chain::{Checkpoint, CheckpointKey};
use crate::event::Event;
use crate::store::{Pending, Store, StoreError};
use crate::witness::{Witness, WitnessRef};

/// Events committed per transaction at most.
const MAX_BATCH: usize = 1024;
/// Events kept for a failing store before the oldest are dropped (and logged).
const MAX_RETRY: usize = 1_000_000;
/// A write that takes longer is abandoned and the connection re-opened.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a failed write is retried when nothing new arrives.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// A head left unsigned is signed once no event has been written for this long.
const SIGN_WHEN_IDLE: Duration = Duration::from_secs(1);
/// How often new statement text is added to the store's search index.
const INDEX_EVERY: Duration = Duration::from_secs(1);
/// How long an event nobody waits for may wait to share a commit with one somebody does.
const RECORD_DELAY: Duration = Duration::from_millis(20);

/// Why an event could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("the audit store cannot write: {0}")]
    Unavailable(String),
    #[error("the audit log is shut down")]
    Closed,
}

/// How the writer behaves.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Sign a checkpoint at least this often while events arrive.
    pub checkpoint_interval: Duration,
    /// …and after this many events.
    pub checkpoint_events: u64,
    /// Delete events older than this (down to a checkpoint), checked hourly.
    pub retention: Option<Duration>,
    /// CA certificates for a PostgreSQL store's TLS, beside the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Most bytes of a statement's text (and of its parameters together) an event keeps.
    pub max_text_bytes: usize,
    /// Where each checkpoint is also published, outside the store.
    pub witness: Option<WitnessRef>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_events: 10_000,
            retention: None,
            ca_file: None,
            max_text_bytes: 64 * 1024,
            witness: None,
        }
    }
}

struct Request {
    pending: Pending,
    reply: Option<oneshot::Sender<Result<u64, AuditError>>>,
}

enum Command {
    Append(Box<Request>),
    /// Answered once everything sent before it was attempted, after a checkpoint.
    Flush(oneshot::Sender<()>),
}

/// A handle on the writer; cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Command>,
    healthy: Arc<AtomicBool>,
    max_text_bytes: usize,
}

/// Resolves when an event is committed.
pub struct Durable(Option<oneshot::Receiver<Result<u64, AuditError>>>);

impl Future for Durable {
    type Output = Result<u64, AuditError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.as_mut() {
            None => Poll::Ready(Err(AuditError::Closed)),
            Some(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(AuditError::Closed))),
        }
    }
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

impl AuditLog {
    /// Opens the store and starts the writer thread. Fails if the store cannot be opened
    /// now; once running, outages are reported per event and recovered from by itself.
    pub fn start(
        location: &str,
        password: Option<String>,
        key: CheckpointKey,
        options: LogOptions,
    ) -> Result<AuditLog, StoreError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let location = location.to_string();
        let flag = healthy.clone();
        let max_text_bytes = options.max_text_bytes;
        // The store is opened on the writer's own thread and runtime: callers may be
        // inside a runtime already, where blocking on another is not allowed.
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = opened_tx.send(Err(StoreError::Other(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let opened = Store::open_with(
                        &location,
                        password.as_deref(),
                        options.ca_file.as_deref(),
                    )
                    .await;
                    let store = match opened {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut store = store;
                    let witness = options.witness.as_ref().map(WitnessRef::open);
                    if let Some(w) = &witness
                        && let Err(e) = first_witness(&mut store, &key, w.as_ref()).await
                    {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                    let _ = opened_tx.send(Ok(()));
                    let writer = Writer {
                        store,
                        key,
                        options,
                        witness,
                        unwitnessed: None,
                        healthy: flag,
                        retry: VecDeque::new(),
                        unsigned: 0,
                        last_checkpoint: Instant::now(),
                        last_prune: None,
                        last_index: Instant::now(),
                        last_write: Instant::now(),
                    };
                    writer.run(rx).await
                })
            })
            .map_err(|e| StoreError::Other(e.to_string()))?;
        opened
            .recv()
            .map_err(|_| StoreError::Other("the audit writer did not start".into()))??;
        Ok(AuditLog {
            tx,
            healthy,
            max_text_bytes,
        })
    }

    /// Appends an event; the future resolves once it is committed.
    pub fn durable(&self, mut event: Event) -> Durable {
        crate::bound::bound(&mut event, self.max_text_bytes);
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Command::Append(Box::new(Request {
            pending: Pending {
                time_us: now_us(),
                event,
            },
            reply: Some(reply),
        })));
        Durable(sent.ok().map(|_| rx))
    }

    /// Appends an event without waiting; kept and retried while the store is failing.
    pub fn record(&self, mut event: Event) {
        crate::bound::bound(&mut event, self.max_text_bytes);
        let _ = self.tx.send(Command::Append(Box::new(Request {
            pending: Pending {
                time_us: now_us(),
                event,
            },
            reply: None,
        })));
    }

    /// Waits until every event sent before has been attempted and a checkpoint signed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Whether the last write succeeded.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

struct Writer {
    store: Store,
    key: CheckpointKey,
    options: LogOptions,
    witness: Option<Box<dyn Witness>>,
    /// A checkpoint the store holds but the witness does not yet (its write failed).
    unwitnessed: Option<Checkpoint>,
    healthy: Arc<AtomicBool>,
    /// Events not yet written: ones nobody waits for, waiting to share a commit, and
    /// ones a failing store did not take.
    retry: VecDeque<Request>,
    /// Events committed since the last checkpoint.
    unsigned: u64,
    last_checkpoint: Instant,
    last_prune: Option<Instant>,
    last_index: Instant,
    /// When events were last committed.
    last_write: Instant,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut open = true;
        // When the oldest event in `retry` that nobody waits for arrived.
        let mut oldest: Option<Instant> = None;
        loop {
            let failing = !self.healthy.load(Ordering::Relaxed);
            let wait = match oldest {
                _ if failing && !self.retry.is_empty() => RETRY_AFTER,
                Some(t) => RECORD_DELAY.saturating_sub(t.elapsed()),
                None if self.unsigned > 0 => {
                    SIGN_WHEN_IDLE.saturating_sub(self.last_write.elapsed())
                }
                None => self.options.checkpoint_interval,
            };
            let wait = match self.unwitnessed {
                Some(_) => wait.min(RETRY_AFTER),
                None => wait,
            };
            let mut batch: Vec<Request> = Vec::new();
            let mut flushes = Vec::new();
            if open {
                match tokio::time::timeout(wait, rx.recv()).await {
                    Ok(Some(c)) => self.take(c, &mut batch, &mut flushes),
                    Ok(None) => open = false,
                    Err(_) => {}
                }
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(c) => self.take(c, &mut batch, &mut flushes),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => {
                            open = false;
                            break;
                        }
                    }
                }
            } else if !self.retry.is_empty() {
                tokio::time::sleep(wait).await;
            }
            // Events nobody waits for (results, session ends) wait to share the next
            // commit somebody does wait for, so a statement costs one flush, not two.
            let urgent = batch.iter().any(|r| r.reply.is_some())
                || !flushes.is_empty()
                || !open
                || oldest.is_some_and(|t| t.elapsed() >= RECORD_DELAY)
                || self.retry.len() + batch.len() >= MAX_BATCH;
            if urgent {
                let mut all: Vec<Request> = self.retry.drain(..).collect();
                all.extend(batch);
                if !all.is_empty() {
                    self.write(all).await;
                }
                oldest = (!self.retry.is_empty()).then(Instant::now);
            } else {
                if !batch.is_empty() && oldest.is_none() {
                    oldest = Some(Instant::now());
                }
                self.retry.extend(batch);
            }
            // Sign at the interval under load, and soon after the load stops, so the
            // unsigned tail (which could be cut off without a trace) stays short.
            let due = self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
                || self.unsigned >= self.options.checkpoint_events
                || self.last_write.elapsed() >= SIGN_WHEN_IDLE;
            if self.unsigned > 0 && (due || !flushes.is_empty() || !open) {
                self.checkpoint().await;
            }
            self.witness_head().await;
            if self.last_index.elapsed() >= INDEX_EVERY || !flushes.is_empty() || !open {
                self.last_index = Instant::now();
                if let Err(e) = self.store.index_text().await {
                    tracing::warn!(error = %e, "cannot index audit text for search");
                }
            }
            self.prune_if_due().await;
            for f in flushes {
                let _ = f.send(());
            }
            if !open && self.retry.is_empty() {
                break;
            }
            if !open && !self.healthy.load(Ordering::Relaxed) {
                // Shutting down with a store that does not come back: say what is lost.
                tracing::error!(
                    events = self.retry.len(),
                    "audit log shut down with events the store would not take"
                );
                break;
            }
        }
    }

    fn take(&self, c: Command, batch: &mut Vec<Request>, flushes: &mut Vec<oneshot::Sender<()>>) {
        match c {
            Command::Append(r) => batch.push(*r),
            Command::Flush(f) => flushes.push(f),
        }
    }

    async fn write(&mut self, batch: Vec<Request>) {
        // The events go to the store by reference; the replies wait beside them.
        let (pending, replies): (Vec<Pending>, Vec<_>) =
            batch.into_iter().map(|r| (r.pending, r.reply)).unzip();
        let result = match tokio::time::timeout(WRITE_TIMEOUT, self.store.append(&pending)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Other("write timed out".into())),
        };
        match result {
            Ok(records) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("audit store writable again");
                }
                self.unsigned += records.len() as u64;
                self.last_write = Instant::now();
                for (reply, rec) in replies.into_iter().zip(records) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(rec.seq));
                    }
                }
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "audit store cannot write; statements are refused until it can");
                }
                let error = AuditError::Unavailable(e.to_string());
                for (mut pending, reply) in pending.into_iter().zip(replies) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(error.clone()));
                        // The statement is refused because its event could not be
                        // written: it is still recorded, as refused, when the store can.
                        let Event::Statement(s) = &mut pending.event else {
                            continue;
                        };
                        s.sqlstate = Some("58030".into());
                        s.message = Some(format!(
                            "not run: the audit store could not record it ({e})"
                        ));
                    }
                    self.retry.push_back(Request {
                        pending,
                        reply: None,
                    });
                }
                while self.retry.len() > MAX_RETRY {
                    self.retry.pop_front();
                    tracing::error!("audit event dropped: the store has been failing too long");
                }
            }
        }
    }

    async fn checkpoint(&mut self) {
        let head = match self.store.head().await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit chain's head to sign it");
                return;
            }
        };
        let c = self.key.sign(head.0, head.1, now_us());
        match self.store.add_checkpoint(&c).await {
            Ok(()) => {
                self.unsigned = 0;
                self.last_checkpoint = Instant::now();
                // Witnessed only once the store holds it: a witness is never ahead.
                if self.witness.is_some() {
                    self.unwitnessed = Some(c);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot store an audit checkpoint"),
        }
    }

    /// Publishes the newest stored checkpoint to the witness; kept and retried on failure.
    /// A witnessed head the store no longer holds is never replaced: that is the evidence
    /// of a trail cut back, and the next checkpoint must not erase it.
    async fn witness_head(&mut self) {
        let (Some(witness), Some(c)) = (&self.witness, &self.unwitnessed) else {
            return;
        };
        let previous = match witness.read() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit witness; retrying");
                return;
            }
        };
        if let Some(old) = previous {
            let kept = match crate::verify::store_holds(&mut self.store, old.seq, &old.hash).await {
                Ok(check) => check,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the audit witness against the store; retrying");
                    return;
                }
            };
            if old.seq > c.seq || !kept.holds() {
                tracing::error!(
                    witness = %witness.describe(),
                    witnessed = old.seq,
                    checkpoint = c.seq,
                    problem = %kept.describe(),
                    "the audit store no longer extends its witnessed head; the witness is kept as evidence and not moved"
                );
                self.unwitnessed = None;
                return;
            }
        }
        match witness.publish(c) {
            Ok(()) => self.unwitnessed = None,
            Err(e) => tracing::warn!(error = %e, "cannot publish the audit head to its witness"),
        }
    }

    async fn prune_if_due(&mut self) {
        let Some(retention) = self.options.retention else {
            return;
        };
        if self
            .last_prune
            .is_some_and(|t| t.elapsed() < Duration::from_secs(3600))
        {
            return;
        }
        self.last_prune = Some(Instant::now());
        let before = now_us() - retention.as_micros() as i64;
        match self.store.prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "audit retention: old events deleted"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed"),
        }
    }
}

/// Makes sure the witness exists before anything is written: it gets the store's head,
/// signed now (and stored as a checkpoint first), or the signed empty head (seq 0). A
/// witness that exists is left alone; one that cannot be read or written stops the start.
async fn first_witness(
    store: &mut Store,
    key: &CheckpointKey,
    witness: &dyn Witness,
) -> Result<(), StoreError> {
    let failed = |e: crate::witness::WitnessError| StoreError::Other(format!("audit witness: {e}"));
    if witness.read().map_err(failed)?.is_some() {
        return Ok(());
    }
    let head = match store.head().await? {
        Some((seq, hash)) => {
            let c = key.sign(seq, hash, now_us());
            store.add_checkpoint(&c).await?;
            c
        }
        None => key.sign(0, crate::chain::GENESIS, now_us()),
    };
    witness.publish(&head).map_err(failed)
}
