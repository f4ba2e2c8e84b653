//! Error type of the catalog.

/// Everything that can go wrong in a catalog operation.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The named project, dataset, series or instance does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The object to create already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The request is malformed (bad name, bad filter, bad record, unsupported URL or schema).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for CatalogError {
    /// Every database error passes here, and is counted in `radport_catalog_errors_total`
    /// by kind.
    fn from(e: sqlx::Error) -> Self {
        let kind = if is_transient_db(&e) {
            "transient"
        } else if is_unique_violation(&e) || is_foreign_key_violation(&e) {
            "constraint"
        } else if matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Protocol(_)
        ) {
            "connection"
        } else {
            "other"
        };
        radport_metrics::global().catalog_error(kind);
        CatalogError::Database(e)
    }
}

impl CatalogError {
    /// True if this error is a transient database condition (SQLite busy/locked, PostgreSQL
    /// serialization failure or deadlock) that a retry may resolve.
    pub fn is_transient(&self) -> bool {
        match self {
            CatalogError::Database(e) => is_transient_db(e),
            _ => false,
        }
    }
}

/// SQLite: primary result codes SQLITE_BUSY (5) and SQLITE_LOCKED (6), including extended codes.
/// PostgreSQL: 40001 serialization_failure, 40P01 deadlock_detected.
pub(crate) fn is_transient_db(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(dbe) = e else {
        return false;
    };
    let Some(code) = dbe.code() else {
        return false;
    };
    if code == "40001" || code == "40P01" {
        return true;
    }
    match code.parse::<i64>() {
        Ok(n) => matches!(n & 0xff, 5 | 6),
        Err(_) => false,
    }
}

pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(dbe) if dbe.is_foreign_key_violation())
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(dbe) if dbe.is_unique_violation())
}
