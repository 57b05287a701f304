//! Approval requests as the control store keeps them (SQLite for one gateway): created
//! when a statement is held, decided once, and never pending across a restart.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// One request, as stored and as the control port shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub session: String,
    /// Who asked (the held statement's caller).
    pub subject: String,
    pub groups: Vec<String>,
    pub client: String,
    pub target: String,
    pub upstream_role: String,
    /// The statement held, as it will run.
    pub text: String,
    /// For EXECUTE or FETCH: what it runs (the prepared statement, the cursor's query).
    pub runs: Option<String>,
    /// Its bound parameters as they will run (`***` where a policy marks them sensitive).
    pub parameters: Vec<Option<String>>,
    /// The groups one of whose members may decide.
    pub approvers: Vec<String>,
    /// The policies that asked for approval.
    pub policies: Vec<String>,
    /// RFC 3339.
    pub created: String,
    pub deadline: String,
    /// `pending`, `approved`, `denied`, `expired` or `withdrawn`.
    pub state: String,
    pub decided_by: Option<String>,
    /// The approver's reason, or why the request was withdrawn.
    pub reason: Option<String>,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("approval store: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// The requests' table.
pub struct Store {
    db: Connection,
}

const COLUMNS: &str = "id, session, subject, groups, client, target, upstream_role, text, \
                       approvers, policies, created, deadline, state, decided_by, reason, \
                       parameters, runs";

fn list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn unlist(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Request> {
    Ok(Request {
        id: row.get(0)?,
        session: row.get(1)?,
        subject: row.get(2)?,
        groups: unlist(row.get(3)?),
        client: row.get(4)?,
        target: row.get(5)?,
        upstream_role: row.get(6)?,
        text: row.get(7)?,
        approvers: unlist(row.get(8)?),
        policies: unlist(row.get(9)?),
        created: row.get(10)?,
        deadline: row.get(11)?,
        state: row.get(12)?,
        decided_by: row.get(13)?,
        reason: row.get(14)?,
        parameters: serde_json::from_str(&row.get::<_, String>(15)?).unwrap_or_default(),
        runs: row.get(16)?,
    })
}

impl Store {
    /// Opens (creating) the store. Requests still pending belong to sessions of an earlier
    /// run of the gateway, which are gone: they are withdrawn, so a later approval runs
    /// nothing.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS approval_requests (
                 id TEXT PRIMARY KEY, session TEXT NOT NULL, subject TEXT NOT NULL,
                 groups TEXT NOT NULL, client TEXT NOT NULL, target TEXT NOT NULL,
                 upstream_role TEXT NOT NULL, text TEXT NOT NULL, approvers TEXT NOT NULL,
                 policies TEXT NOT NULL, created TEXT NOT NULL, deadline TEXT NOT NULL,
                 state TEXT NOT NULL, decided_by TEXT, reason TEXT,
                 parameters TEXT NOT NULL DEFAULT '[]', runs TEXT);
             CREATE INDEX IF NOT EXISTS approval_requests_state ON approval_requests (state);",
        )?;
        db.execute(
            "UPDATE approval_requests SET state = 'withdrawn', reason = 'the gateway restarted' \
             WHERE state = 'pending'",
            [],
        )?;
        Ok(Store { db })
    }

    pub fn insert(&self, r: &Request) -> Result<(), StoreError> {
        self.db.execute(
            &format!(
                "INSERT INTO approval_requests ({COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ),
            params![
                r.id,
                r.session,
                r.subject,
                list(&r.groups),
                r.client,
                r.target,
                r.upstream_role,
                r.text,
                list(&r.approvers),
                list(&r.policies),
                r.created,
                r.deadline,
                r.state,
                r.decided_by,
                r.reason,
                serde_json::to_string(&r.parameters).unwrap_or_else(|_| "[]".into()),
                r.runs
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Request>, StoreError> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM approval_requests WHERE id = ?1"),
                [id],
                read,
            )
            .optional()?)
    }

    /// Pending requests, oldest first.
    pub fn pending(&self) -> Result<Vec<Request>, StoreError> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM approval_requests WHERE state = 'pending' ORDER BY created, id"
        ))?;
        let rows = stmt.query_map([], read)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a pending request to `state`; false when it was no longer pending (decided,
    /// expired or withdrawn meanwhile): a request is decided once.
    pub fn settle(
        &self,
        id: &str,
        state: &str,
        by: Option<&str>,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = self.db.execute(
            "UPDATE approval_requests SET state = ?2, decided_by = ?3, reason = ?4 \
             WHERE id = ?1 AND state = 'pending'",
            params![id, state, by, reason],
        )?;
        Ok(n == 1)
    }
}
