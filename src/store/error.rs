//! Errors from the storage layer.

/// Errors from the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}`: use sqlite://FILE or postgres://...")]
    UnsupportedUrl(String),
    #[error(
        "DATABASE_URL `{url}` cannot be parsed ({reason}); percent-encode special characters \
         of the password (`@` as %40, `/` as %2F, `#` as %23, `?` as %3F, `%` as %25, `:` as %3A) \
         or leave the password out of the URL and set DATABASE_PASSWORD"
    )]
    BadUrl { url: String, reason: String },
}

impl StoreError {
    /// Whether waiting may help: the database did not answer (not running yet, restarting,
    /// refusing connections while it starts). Configuration mistakes are final.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            StoreError::Database(sqlx::Error::Database(db)) => {
                // 57P03: the database system is starting up / shutting down; 08xxx: connection.
                db.code()
                    .is_some_and(|c| c.starts_with("57P") || c.starts_with("08"))
            }
            StoreError::Migrate(sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(_))) => true,
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the database cancelled a query that ran past the read statement timeout.
    pub fn is_query_timeout(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("57014"))
    }

    /// Whether the database rejected the data itself (a constraint or data exception), so that
    /// retrying the same statement cannot succeed. Everything else (connection refused or lost,
    /// pool exhausted, locks, a database that is starting, shutting down or refusing connections)
    /// is worth retrying, and the writer keeps its batch until it goes through.
    pub fn is_data_error(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(db)) = self else {
            return false;
        };
        let code = db.code().unwrap_or_default();
        if code.len() == 5 {
            // PostgreSQL SQLSTATE: class 22 (data exception) or 23 (integrity constraint).
            return code.starts_with("22") || code.starts_with("23");
        }
        // SQLite (extended) result codes: TOOBIG (18), CONSTRAINT (19), MISMATCH (20), RANGE (25).
        code.parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
    }
}
