//! The shared store: a PostgreSQL control database (never a target) that several gateways
//! append to. An append moves the chain's head (`audit_head`) from the head the gateway
//! expects and inserts the batch in the same statement; if another gateway moved it first,
//! nothing is written and the batch is re-linked to the new head. So there is one chain per
//! store, and an append costs one round trip. A lost connection is re-opened at the next
//! call.
//!
//! TLS follows the URL's `sslmode` (`disable`, `prefer` — the default — or `require`); when
//! TLS is used the server's certificate is always verified, against the system's roots and
//! the configured CA file.

use std::path::Path;
use std::sync::Arc;
use tokio_postgres::types::ToSql;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Columns, Hit, Pending, StoreError, Stored, chain_batch, hash32, hit, sig64, words};
use crate::chain::{Checkpoint, Record};
use crate::search::Filter;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_events (
    seq bigint PRIMARY KEY,
    time_us bigint NOT NULL,
    kind text NOT NULL,
    session text,
    statement_seq bigint,
    subject text,
    target text,
    decision text,
    statement_kind text,
    sqlstate text,
    body text NOT NULL,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time_us);
CREATE INDEX IF NOT EXISTS audit_events_session ON audit_events (session, statement_seq);
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, time_us);
CREATE TABLE IF NOT EXISTS audit_head (
    id int PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    hash bytea NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq bigint PRIMARY KEY,
    hash bytea NOT NULL,
    time_us bigint NOT NULL,
    key_id text NOT NULL,
    signature bytea NOT NULL
);
";

const COLUMNS: &str = "seq, time_us, body, prev_hash, hash, kind, session, statement_seq, subject, target, decision, statement_kind, sqlstate";

pub struct PgStore {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    client: Option<Client>,
    /// The chain's head as of this store's last append: the next append expects it.
    head_seen: Option<(u64, [u8; 32])>,
}

/// The TLS connector: the system's roots plus `ca_file`.
fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| StoreError::Other(format!("cannot read {}: {e}", path.display())))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| StoreError::Other(format!("{}: {e}", path.display())))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Other(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn stored(row: &Row) -> Stored {
    Stored {
        record: Record {
            seq: row.get::<_, i64>(0) as u64,
            time_us: row.get(1),
            body: row.get(2),
            prev_hash: hash32(row.get::<_, &[u8]>(3)),
            hash: hash32(row.get::<_, &[u8]>(4)),
        },
        columns: Columns {
            kind: row.get(5),
            session: row.get(6),
            statement_seq: row.get::<_, Option<i64>>(7).map(|n| n as u64),
            subject: row.get(8),
            target: row.get(9),
            decision: row.get(10),
            statement_kind: row.get(11),
            sqlstate: row.get(12),
        },
    }
}

/// A batch as column arrays, for one `INSERT … SELECT * FROM unnest(…)`.
#[derive(Default)]
struct Batch<'a> {
    seq: Vec<i64>,
    time: Vec<i64>,
    body: Vec<&'a str>,
    prev: Vec<&'a [u8]>,
    hash: Vec<&'a [u8]>,
    kind: Vec<&'a str>,
    session: Vec<Option<&'a str>>,
    statement_seq: Vec<Option<i64>>,
    subject: Vec<Option<&'a str>>,
    target: Vec<Option<&'a str>>,
    decision: Vec<Option<&'a str>>,
    statement_kind: Vec<Option<&'a str>>,
    sqlstate: Vec<Option<&'a str>>,
}

impl<'a> Batch<'a> {
    fn push(&mut self, s: &'a Stored) {
        let (r, c) = (&s.record, &s.columns);
        self.seq.push(r.seq as i64);
        self.time.push(r.time_us);
        self.body.push(&r.body);
        self.prev.push(&r.prev_hash);
        self.hash.push(&r.hash);
        self.kind.push(&c.kind);
        self.session.push(c.session.as_deref());
        self.statement_seq.push(c.statement_seq.map(|n| n as i64));
        self.subject.push(c.subject.as_deref());
        self.target.push(c.target.as_deref());
        self.decision.push(c.decision.as_deref());
        self.statement_kind.push(c.statement_kind.as_deref());
        self.sqlstate.push(c.sqlstate.as_deref());
    }
}

/// Drives a connection; says so when it ends badly.
async fn watch<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "audit store connection ended");
    }
}

impl PgStore {
    pub async fn connect(
        url: &str,
        password: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<Self, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Other(format!("bad URL: {e}")))?;
        if let Some(p) = password {
            config.password(p);
        }
        config.application_name("portcullis audit");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(connector(ca_file)?),
        };
        let mut store = PgStore {
            config,
            tls,
            client: None,
            head_seen: None,
        };
        store.client().await?.batch_execute(SCHEMA).await?;
        Ok(store)
    }

    async fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            let client = match &self.tls {
                None => {
                    let (client, connection) = self.config.connect(NoTls).await?;
                    tokio::spawn(watch(connection));
                    client
                }
                Some(tls) => {
                    let (client, connection) = self.config.connect(tls.clone()).await?;
                    tokio::spawn(watch(connection));
                    client
                }
            };
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Other("not connected".into()))
    }

    /// Appends in one statement: the head moves from the head this gateway last saw
    /// and the events are inserted, or nothing happens when another gateway moved it
    /// first, in which case the head is read again and the batch re-linked.
    pub async fn append(&mut self, batch: &[Pending]) -> Result<Vec<Record>, StoreError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        for _ in 0..100 {
            let head = match self.head_seen {
                Some(h) => h,
                None => {
                    let h = self.head().await?.unwrap_or((0, crate::chain::GENESIS));
                    self.head_seen = Some(h);
                    h
                }
            };
            let linked = if head.0 == 0 { None } else { Some(head) };
            let rows = chain_batch(linked, batch);
            let mut b = Batch::default();
            for s in &rows {
                b.push(s);
            }
            let Some(last) = rows.last() else {
                return Ok(Vec::new());
            };
            let client = self.client().await?;
            let inserted = client
                .execute(
                    "WITH moved AS (
                         UPDATE audit_head SET seq = $14, hash = $15 WHERE id = 1 AND seq = $16 RETURNING 1
                     )
                     INSERT INTO audit_events (seq, time_us, body, prev_hash, hash, kind, session, statement_seq, subject, target, decision, statement_kind, sqlstate)
                     SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[], $5::bytea[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[])
                     WHERE EXISTS (SELECT 1 FROM moved)",
                    &[
                        &b.seq, &b.time, &b.body, &b.prev, &b.hash, &b.kind, &b.session,
                        &b.statement_seq, &b.subject, &b.target, &b.decision,
                        &b.statement_kind, &b.sqlstate,
                        &(last.record.seq as i64), &&last.record.hash[..], &(head.0 as i64),
                    ],
                )
                .await;
            match inserted {
                Ok(n) if n as usize == rows.len() => {
                    self.head_seen = Some((last.record.seq, last.record.hash));
                    return Ok(rows.into_iter().map(|s| s.record).collect());
                }
                Ok(_) => self.head_seen = None,
                Err(e) => {
                    self.head_seen = None;
                    return Err(e.into());
                }
            }
        }
        Err(StoreError::Other(
            "the chain's head kept moving: too many gateways appending at once".into(),
        ))
    }

    pub async fn head(&mut self) -> Result<Option<(u64, [u8; 32])>, StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
            .await?;
        Ok(match row.get::<_, i64>(0) {
            0 => None,
            seq => Some((seq as u64, hash32(row.get::<_, &[u8]>(1)))),
        })
    }

    pub async fn records(&mut self, from_seq: u64, limit: u32) -> Result<Vec<Stored>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2"
                ),
                &[&(from_seq as i64), &i64::from(limit)],
            )
            .await?;
        Ok(rows.iter().map(stored).collect())
    }

    pub async fn extent(&mut self) -> Result<(u64, u64, u64), StoreError> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*), min(seq), max(seq) FROM audit_events", &[])
            .await?;
        Ok((
            row.get::<_, i64>(0) as u64,
            row.get::<_, Option<i64>>(1).unwrap_or(0) as u64,
            row.get::<_, Option<i64>>(2).unwrap_or(0) as u64,
        ))
    }

    pub async fn add_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO audit_checkpoints (seq, hash, time_us, key_id, signature) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (seq) DO UPDATE SET hash = excluded.hash, time_us = excluded.time_us, key_id = excluded.key_id, signature = excluded.signature",
                &[&(c.seq as i64), &&c.hash[..], &c.time_us, &c.key_id, &&c.signature[..]],
            )
            .await?;
        Ok(())
    }

    pub async fn checkpoints(&mut self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, hash, time_us, key_id, signature FROM audit_checkpoints ORDER BY seq",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Checkpoint {
                seq: r.get::<_, i64>(0) as u64,
                hash: hash32(r.get::<_, &[u8]>(1)),
                time_us: r.get(2),
                key_id: r.get(3),
                signature: sig64(r.get::<_, &[u8]>(4)),
            })
            .collect())
    }

    pub async fn session(&mut self, session: &str) -> Result<Vec<Stored>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                &format!("SELECT {COLUMNS} FROM audit_events WHERE session = $1 ORDER BY seq"),
                &[&session],
            )
            .await?;
        Ok(rows.iter().map(stored).collect())
    }

    pub async fn search(&mut self, f: &Filter) -> Result<Vec<Hit>, StoreError> {
        let mut sql = String::from(
            "SELECT e.seq, e.time_us, e.body, (SELECT r.body FROM audit_events r WHERE r.kind = 'result' AND r.session = e.session AND r.statement_seq = e.statement_seq ORDER BY r.seq DESC LIMIT 1)
             FROM audit_events e WHERE e.kind = $1",
        );
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> =
            vec![Box::new(f.event_kind().to_string())];
        let mut param = |v: Box<dyn ToSql + Sync + Send>| {
            args.push(v);
            format!("${}", args.len())
        };
        for (col, v) in [
            ("subject", &f.subject),
            ("target", &f.target),
            ("decision", &f.decision),
            ("statement_kind", &f.statement_kind),
            ("session", &f.session),
        ] {
            if let Some(v) = v {
                let p = param(Box::new(v.clone()));
                sql.push_str(&format!(" AND e.{col} = {p}"));
            }
        }
        if let Some(s) = &f.sqlstate {
            let p = param(Box::new(s.clone()));
            sql.push_str(&format!(" AND (e.sqlstate = {p} OR EXISTS (SELECT 1 FROM audit_events r WHERE r.kind = 'result' AND r.session = e.session AND r.statement_seq = e.statement_seq AND r.sqlstate = {p}))"));
        }
        if let Some(g) = &f.group {
            let p = param(Box::new(g.clone()));
            sql.push_str(&format!(" AND (e.body::jsonb -> 'groups') ? {p}"));
        }
        if let Some((exact, like, bare)) = f.table_patterns() {
            let (a, b, c) = (
                param(Box::new(exact)),
                param(Box::new(like)),
                param(Box::new(bare)),
            );
            sql.push_str(&format!(" AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(e.body::jsonb -> 'tables') t WHERE t = {a} OR t LIKE {b} OR t = {c})"));
        }
        if let Some(t) = f.since_us {
            let p = param(Box::new(t));
            sql.push_str(&format!(" AND e.time_us >= {p}"));
        }
        if let Some(t) = f.until_us {
            let p = param(Box::new(t));
            sql.push_str(&format!(" AND e.time_us < {p}"));
        }
        if let Some(text) = &f.text {
            let words = words(text);
            if !words.is_empty() {
                let p = param(Box::new(words));
                sql.push_str(&format!(" AND regexp_split_to_array(lower(e.body::jsonb ->> 'text'), '[^[:alnum:]]+') @> {p}::text[]"));
            }
        }
        let p = param(Box::new(i64::from(f.limit())));
        sql.push_str(&format!(" ORDER BY e.seq DESC LIMIT {p}"));
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = self.client().await?.query(&sql, &params).await?;
        rows.iter()
            .map(|r| {
                hit(
                    r.get::<_, i64>(0) as u64,
                    r.get(1),
                    r.get::<_, &str>(2),
                    r.get::<_, Option<&str>>(3),
                )
            })
            .collect()
    }

    pub async fn prune(&mut self, before_us: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let tx = client.transaction().await?;
        let upto: Option<i64> = tx
            .query_one(
                "SELECT max(seq) FROM audit_checkpoints WHERE time_us < $1",
                &[&before_us],
            )
            .await?
            .get(0);
        let Some(upto) = upto else {
            return Ok(0);
        };
        let n = tx
            .execute("DELETE FROM audit_events WHERE seq <= $1", &[&upto])
            .await?;
        tx.execute("DELETE FROM audit_checkpoints WHERE seq < $1", &[&upto])
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The client, for tests that tamper with the store.
    pub async fn raw(&mut self) -> Result<&mut Client, StoreError> {
        self.client().await
    }
}
