//! Where events are kept: one interface over the embedded SQLite store and the PostgreSQL
//! store several gateways share.
//!
//! Both append a batch atomically after the chain's head as it is at commit (SQLite reads
//! it inside the write transaction; PostgreSQL moves it only from the head it expected),
//! so a batch is all-or-nothing and the chain has no forks even with several writers.
//! Both store the body as the exact text that was hashed.

mod postgres;
mod sqlite;

use crate::chain::{Checkpoint, Record};
use crate::event::{Event, ResultEvent};
use crate::search::Filter;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("audit store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("audit store: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("audit store: {0}")]
    Other(String),
}

/// An event waiting to be appended.
#[derive(Debug, Clone)]
pub struct Pending {
    pub time_us: i64,
    pub event: Event,
}

/// A stored event with the columns the store indexes it by, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub record: Record,
    pub columns: Columns,
}

/// The indexed columns of a stored event, as read back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    pub kind: String,
    pub session: Option<String>,
    pub statement_seq: Option<u64>,
    pub subject: Option<String>,
    pub target: Option<String>,
    pub decision: Option<String>,
    pub statement_kind: Option<String>,
    pub sqlstate: Option<String>,
}

impl Columns {
    /// The columns an event should be stored with.
    pub fn of(event: &Event) -> Columns {
        let i = event.indexed();
        Columns {
            kind: i.kind.to_string(),
            session: i.session.map(str::to_string),
            statement_seq: i.statement_seq,
            subject: i.subject.map(str::to_string),
            target: i.target.map(str::to_string),
            decision: i.decision.map(str::to_string),
            statement_kind: i.statement_kind.map(str::to_string),
            sqlstate: i.sqlstate.map(str::to_string),
        }
    }
}

/// A search result: an event and, for a statement, how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub seq: u64,
    pub time_us: i64,
    pub event: Event,
    pub result: Option<ResultEvent>,
}

/// An audit store.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

impl Store {
    /// Opens (and creates the tables of) the store at `location`: a PostgreSQL URL
    /// (`postgresql://…`), or a SQLite file path, optionally prefixed `sqlite:`.
    pub async fn open(location: &str, password: Option<&str>) -> Result<Store, StoreError> {
        Store::open_with(location, password, None).await
    }

    /// Like [`Store::open`], trusting `ca_file` too for a PostgreSQL store's TLS.
    pub async fn open_with(
        location: &str,
        password: Option<&str>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Store, StoreError> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Ok(Store::Postgres(Box::new(
                PgStore::connect(location, password.map(str::to_string), ca_file).await?,
            )))
        } else {
            let path = location.strip_prefix("sqlite:").unwrap_or(location);
            Ok(Store::Sqlite(SqliteStore::open(std::path::Path::new(
                path,
            ))?))
        }
    }

    /// Appends a batch after the current head, in one transaction.
    pub async fn append(&mut self, batch: &[Pending]) -> Result<Vec<Record>, StoreError> {
        match self {
            Store::Sqlite(s) => s.append(batch),
            Store::Postgres(s) => s.append(batch).await,
        }
    }

    /// Brings the full-text index up to date (SQLite; PostgreSQL searches the text
    /// directly). Returns how many statements were indexed.
    pub async fn index_text(&mut self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.index_text(),
            Store::Postgres(_) => Ok(0),
        }
    }

    /// The last event's `(seq, hash)`.
    pub async fn head(&mut self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        match self {
            Store::Sqlite(s) => s.head(),
            Store::Postgres(s) => s.head().await,
        }
    }

    /// Events in chain order from `from_seq`, at most `limit`.
    pub async fn records(&mut self, from_seq: u64, limit: u32) -> Result<Vec<Stored>, StoreError> {
        match self {
            Store::Sqlite(s) => s.records(from_seq, limit),
            Store::Postgres(s) => s.records(from_seq, limit).await,
        }
    }

    /// The number of events and the first and last seq.
    pub async fn extent(&mut self) -> Result<(u64, u64, u64), StoreError> {
        match self {
            Store::Sqlite(s) => s.extent(),
            Store::Postgres(s) => s.extent().await,
        }
    }

    pub async fn add_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.add_checkpoint(c),
            Store::Postgres(s) => s.add_checkpoint(c).await,
        }
    }

    /// Every checkpoint, oldest first.
    pub async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        match self {
            Store::Sqlite(s) => s.checkpoints(),
            Store::Postgres(s) => s.checkpoints().await,
        }
    }

    /// Events matching `filter`, newest first.
    pub async fn search(&mut self, filter: &Filter) -> Result<Vec<Hit>, StoreError> {
        match self {
            Store::Sqlite(s) => s.search(filter),
            Store::Postgres(s) => s.search(filter).await,
        }
    }

    /// Every event of a session, in order.
    pub async fn session(&mut self, session: &str) -> Result<Vec<Stored>, StoreError> {
        match self {
            Store::Sqlite(s) => s.session(session),
            Store::Postgres(s) => s.session(session).await,
        }
    }

    /// Retention: deletes the events up to the newest checkpoint older than `before_us`,
    /// keeping that checkpoint so the chain's new start still verifies. Returns how many
    /// events were deleted.
    pub async fn prune(&mut self, before_us: i64) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.prune(before_us),
            Store::Postgres(s) => s.prune(before_us).await,
        }
    }
}

/// Links a batch after `head`, producing the rows to insert.
pub(crate) fn chain_batch(head: Option<(u64, [u8; 32])>, batch: &[Pending]) -> Vec<Stored> {
    let (mut seq, mut hash) = head.unwrap_or((0, crate::chain::GENESIS));
    batch
        .iter()
        .map(|p| {
            // Serialising plain data cannot fail.
            let body = serde_json::to_string(&p.event).unwrap_or_default();
            let record = Record::next(seq, hash, p.time_us, body);
            seq = record.seq;
            hash = record.hash;
            Stored {
                record,
                columns: Columns::of(&p.event),
            }
        })
        .collect()
}

/// Words of a full-text query, lowercased: both stores match events holding every word
/// as a token (a run of letters and digits).
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

pub(crate) fn hash32(bytes: &[u8]) -> [u8; 32] {
    <[u8; 32]>::try_from(bytes).unwrap_or([0xff; 32])
}

pub(crate) fn sig64(bytes: &[u8]) -> [u8; 64] {
    <[u8; 64]>::try_from(bytes).unwrap_or([0; 64])
}

/// Decodes a hit's bodies; a body that is not an event is reported, not skipped.
pub(crate) fn hit(
    seq: u64,
    time_us: i64,
    body: &str,
    result: Option<&str>,
) -> Result<Hit, StoreError> {
    let event = serde_json::from_str(body)
        .map_err(|e| StoreError::Other(format!("event {seq} is not readable: {e}")))?;
    let result = match result.map(serde_json::from_str::<Event>) {
        Some(Ok(Event::Result(r))) => Some(r),
        _ => None,
    };
    Ok(Hit {
        seq,
        time_us,
        event,
        result,
    })
}
