//! The embedded store: one SQLite file in WAL mode, full-text search with FTS5.
//!
//! `synchronous = FULL`: a commit is on disk when it returns, so a statement whose event
//! was appended survives a crash of the gateway and of the machine.
//!
//! Statement text is indexed for full-text search in batches, not in the append's
//! transaction: an FTS5 insert per small transaction costs more than the rest of the
//! append. [`SqliteStore::index_text`] indexes what is new; the writer calls it every
//! second, and a text search calls it first, so searches always see every event.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter, types::Value};

use super::{Columns, Hit, Pending, StoreError, Stored, chain_batch, hash32, hit, sig64, words};
use crate::chain::{Checkpoint, Record};
use crate::search::Filter;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    session TEXT,
    statement_seq INTEGER,
    subject TEXT,
    target TEXT,
    decision TEXT,
    statement_kind TEXT,
    sqlstate TEXT,
    body TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time_us);
CREATE INDEX IF NOT EXISTS audit_events_session ON audit_events (session, statement_seq);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, time_us);
CREATE VIRTUAL TABLE IF NOT EXISTS audit_text USING fts5(text);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    time_us INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL
);
";

const COLUMNS: &str = "seq, time_us, body, prev_hash, hash, kind, session, statement_seq, subject, target, decision, statement_kind, sqlstate";

pub struct SqliteStore {
    conn: Connection,
}

fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    let prev: Vec<u8> = row.get(3)?;
    let hash: Vec<u8> = row.get(4)?;
    Ok(Stored {
        record: Record {
            seq: row.get::<_, i64>(0)? as u64,
            time_us: row.get(1)?,
            body: row.get(2)?,
            prev_hash: hash32(&prev),
            hash: hash32(&hash),
        },
        columns: Columns {
            kind: row.get(5)?,
            session: row.get(6)?,
            statement_seq: row.get::<_, Option<i64>>(7)?.map(|n| n as u64),
            subject: row.get(8)?,
            target: row.get(9)?,
            decision: row.get(10)?,
            statement_kind: row.get(11)?,
            sqlstate: row.get(12)?,
        },
    })
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore { conn })
    }

    pub fn append(&mut self, batch: &[Pending]) -> Result<Vec<Record>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let head = head(&tx)?;
        let rows = chain_batch(head, batch);
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit_events (seq, time_us, body, prev_hash, hash, kind, session, statement_seq, subject, target, decision, statement_kind, sqlstate)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for row in &rows {
                let r = &row.record;
                let c = &row.columns;
                insert.execute(params![
                    r.seq as i64,
                    r.time_us,
                    r.body,
                    &r.prev_hash[..],
                    &r.hash[..],
                    c.kind,
                    c.session,
                    c.statement_seq.map(|n| n as i64),
                    c.subject,
                    c.target,
                    c.decision,
                    c.statement_kind,
                    c.sqlstate,
                ])?;
            }
        }
        tx.commit()?;
        Ok(rows.into_iter().map(|s| s.record).collect())
    }

    pub fn head(&mut self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        head(&self.conn)
    }

    /// Adds the text of statements appended since the last call to the full-text index;
    /// returns how many. The index always holds a prefix of the chain's statements.
    pub fn index_text(&mut self) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: i64 =
            tx.query_row("SELECT coalesce(max(rowid), 0) FROM audit_text", [], |r| {
                r.get(0)
            })?;
        let n = tx.execute(
            "INSERT INTO audit_text (rowid, text)
             SELECT seq, json_extract(body, '$.text') FROM audit_events
             WHERE seq > ?1 AND kind = 'statement' ORDER BY seq",
            params![done],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    pub fn records(&mut self, from_seq: u64, limit: u32) -> Result<Vec<Stored>, StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq >= ?1 ORDER BY seq LIMIT ?2"
        ))?;
        let rows = q.query_map(params![from_seq as i64, limit], stored)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn extent(&mut self) -> Result<(u64, u64, u64), StoreError> {
        let (n, first, last): (i64, Option<i64>, Option<i64>) = self.conn.query_row(
            "SELECT count(*), min(seq), max(seq) FROM audit_events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok((
            n as u64,
            first.unwrap_or(0) as u64,
            last.unwrap_or(0) as u64,
        ))
    }

    pub fn add_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO audit_checkpoints (seq, hash, time_us, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![c.seq as i64, &c.hash[..], c.time_us, c.key_id, &c.signature[..]],
        )?;
        Ok(())
    }

    pub fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        let mut q = self.conn.prepare_cached(
            "SELECT seq, hash, time_us, key_id, signature FROM audit_checkpoints ORDER BY seq",
        )?;
        let rows = q.query_map([], |r| {
            Ok(Checkpoint {
                seq: r.get::<_, i64>(0)? as u64,
                hash: hash32(&r.get::<_, Vec<u8>>(1)?),
                time_us: r.get(2)?,
                key_id: r.get(3)?,
                signature: sig64(&r.get::<_, Vec<u8>>(4)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn session(&mut self, session: &str) -> Result<Vec<Stored>, StoreError> {
        let mut q = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE session = ?1 ORDER BY seq"
        ))?;
        let rows = q.query_map(params![session], stored)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn search(&mut self, f: &Filter) -> Result<Vec<Hit>, StoreError> {
        if f.text.is_some() {
            self.index_text()?;
        }
        let mut sql = String::from(
            "SELECT e.seq, e.time_us, e.body, (SELECT r.body FROM audit_events r WHERE r.kind = 'result' AND r.session = e.session AND r.statement_seq = e.statement_seq ORDER BY r.seq DESC LIMIT 1)
             FROM audit_events e WHERE e.kind = ?",
        );
        let mut args: Vec<Value> = vec![f.event_kind().to_string().into()];
        let mut eq = |sql: &mut String, col: &str, v: &Option<String>| {
            if let Some(v) = v {
                sql.push_str(&format!(" AND e.{col} = ?"));
                args.push(v.clone().into());
            }
        };
        eq(&mut sql, "subject", &f.subject);
        eq(&mut sql, "target", &f.target);
        eq(&mut sql, "decision", &f.decision);
        eq(&mut sql, "statement_kind", &f.statement_kind);
        eq(&mut sql, "session", &f.session);
        if let Some(s) = &f.sqlstate {
            sql.push_str(" AND (e.sqlstate = ? OR EXISTS (SELECT 1 FROM audit_events r WHERE r.kind = 'result' AND r.session = e.session AND r.statement_seq = e.statement_seq AND r.sqlstate = ?))");
            args.push(s.clone().into());
            args.push(s.clone().into());
        }
        if let Some(g) = &f.group {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM json_each(e.body, '$.groups') WHERE value = ?)",
            );
            args.push(g.clone().into());
        }
        if let Some((exact, like, bare)) = f.table_patterns() {
            sql.push_str(" AND EXISTS (SELECT 1 FROM json_each(e.body, '$.tables') WHERE value = ? OR value LIKE ? OR value = ?)");
            args.push(exact.into());
            args.push(like.into());
            args.push(bare.into());
        }
        if let Some(t) = f.since_us {
            sql.push_str(" AND e.time_us >= ?");
            args.push(t.into());
        }
        if let Some(t) = f.until_us {
            sql.push_str(" AND e.time_us < ?");
            args.push(t.into());
        }
        if let Some(text) = &f.text {
            let words = words(text);
            if !words.is_empty() {
                let query = words
                    .iter()
                    .map(|w| format!("\"{w}\""))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                sql.push_str(
                    " AND e.seq IN (SELECT rowid FROM audit_text WHERE audit_text MATCH ?)",
                );
                args.push(query.into());
            }
        }
        sql.push_str(" ORDER BY e.seq DESC LIMIT ?");
        args.push(i64::from(f.limit()).into());
        let mut q = self.conn.prepare(&sql)?;
        let rows = q.query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut hits = Vec::new();
        for row in rows {
            let (seq, time, body, result) = row?;
            hits.push(hit(seq, time, &body, result.as_deref())?);
        }
        Ok(hits)
    }

    pub fn prune(&mut self, before_us: i64) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let upto: Option<i64> = tx
            .query_row(
                "SELECT max(seq) FROM audit_checkpoints WHERE time_us < ?1",
                params![before_us],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let Some(upto) = upto else {
            return Ok(0);
        };
        tx.execute("DELETE FROM audit_text WHERE rowid <= ?1", params![upto])?;
        let n = tx.execute("DELETE FROM audit_events WHERE seq <= ?1", params![upto])?;
        tx.execute(
            "DELETE FROM audit_checkpoints WHERE seq < ?1",
            params![upto],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    /// The underlying connection, for tests that tamper with the store.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// The chain's head: the last event, or after retention emptied the table, the
/// checkpoint it was pruned to.
fn head(conn: &Connection) -> Result<Option<(u64, [u8; 32])>, StoreError> {
    let read = |sql: &str| {
        conn.prepare_cached(sql)?
            .query_row([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, hash32(&r.get::<_, Vec<u8>>(1)?)))
            })
            .optional()
    };
    match read("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")? {
        Some(h) => Ok(Some(h)),
        None => Ok(read(
            "SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
        )?),
    }
}
