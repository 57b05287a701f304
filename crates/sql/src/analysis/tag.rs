//! Notable properties of a statement, as policies see them (`context.statement.tags`).

/// One notable property. Its name (`as_str`) is what policies compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    AlterSystem,
    AnonymousCode,
    /// Reads a catalog holding samples of column values (planner statistics).
    CatalogValues,
    /// Reads a catalog holding password hashes or connection strings with passwords.
    Credentials,
    Cursor,
    DropDatabase,
    Execute,
    ExplainAnalyze,
    Fetch,
    /// Reads the contents of large objects.
    LargeObjectData,
    Load,
    Notify,
    Prepare,
    Returning,
    /// A locking clause (`FOR UPDATE`, `FOR SHARE`): each table read is also updated.
    RowLocks,
    Rule,
    SelectInto,
    /// Reads other sessions' statement texts.
    StatementTexts,
    /// `PREPARE TRANSACTION`, `COMMIT PREPARED`, `ROLLBACK PREPARED`.
    TwoPhase,
}

impl Tag {
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::AlterSystem => "alter_system",
            Tag::AnonymousCode => "anonymous_code",
            Tag::CatalogValues => "catalog_values",
            Tag::Credentials => "credentials",
            Tag::Cursor => "cursor",
            Tag::DropDatabase => "drop_database",
            Tag::Execute => "execute",
            Tag::ExplainAnalyze => "explain_analyze",
            Tag::Fetch => "fetch",
            Tag::LargeObjectData => "large_object_data",
            Tag::Load => "load",
            Tag::Notify => "notify",
            Tag::Prepare => "prepare",
            Tag::Returning => "returning",
            Tag::RowLocks => "row_locks",
            Tag::Rule => "rule",
            Tag::SelectInto => "select_into",
            Tag::StatementTexts => "statement_texts",
            Tag::TwoPhase => "two_phase",
        }
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
