//! What `audit search` (and later the console) asks the store for.

/// Filters; every one given must match. Newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Event kind: `statement` (the default), `session_start`, `session_end`,
    /// `auth_failure`, `admin`, `result`.
    pub event: Option<String>,
    pub subject: Option<String>,
    /// A group the caller was in.
    pub group: Option<String>,
    pub target: Option<String>,
    /// A table read or written: `schema.table`, or a bare name matching it in any schema.
    pub table: Option<String>,
    /// `allow`, `deny`, `needs_approval`, `mask`.
    pub decision: Option<String>,
    /// Statement kind: `select`, `update`, `ddl`, …
    pub statement_kind: Option<String>,
    /// The refusal's or the server's error code.
    pub sqlstate: Option<String>,
    pub session: Option<String>,
    /// Microseconds since the epoch, inclusive.
    pub since_us: Option<i64>,
    /// Microseconds since the epoch, exclusive.
    pub until_us: Option<i64>,
    /// Words that must all appear in the statement text.
    pub text: Option<String>,
    /// At most this many hits (default 100).
    pub limit: Option<u32>,
}

impl Filter {
    pub fn event_kind(&self) -> &str {
        self.event.as_deref().unwrap_or("statement")
    }

    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(100)
    }

    /// The table filter as `(exact, like, bare)`: a bare name matches `any.name`; a
    /// qualified one also matches the bare name, as written by a statement that relied on
    /// its search path (over-matching rather than missing an access).
    pub fn table_patterns(&self) -> Option<(String, String, String)> {
        let t = self.table.as_ref()?;
        let bare = t.rsplit_once('.').map_or(t.as_str(), |(_, n)| n);
        Some((t.clone(), format!("%.{t}"), bare.to_string()))
    }
}
