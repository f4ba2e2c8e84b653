//! Commits whose durability another log provides: instances recorded behind the ingest
//! journal or into packs (`radport-journal`), which hold each one durably before it is
//! recorded and redo it after a crash. Such a commit is visible when it returns and durable at the next
//! [`Catalog::sync`], which the journal's checkpoint calls before it frees what it held.

use sqlx::Row;

use crate::{Catalog, CatalogError, Dialect, Writer};

/// How durable an instance's commit is when [`Catalog::record_instance_with`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Durable (the default): SQLite syncs its WAL, PostgreSQL flushes its WAL.
    #[default]
    Synced,
    /// Visible, and durable at the next [`Catalog::sync`]: the caller holds the record
    /// durably elsewhere and redoes it after a crash. On SQLite a group of such records only
    /// is committed with `synchronous = NORMAL` (the WAL is not synced); PostgreSQL commits
    /// them synced, as any other (deferring there is not done yet).
    Deferred,
}

/// `synchronous` of the writer's connection for everything but deferred groups.
pub(crate) const SQLITE_SYNCED: &str = "PRAGMA synchronous = FULL";
/// `synchronous` while a group of deferred records commits.
pub(crate) const SQLITE_DEFERRED: &str = "PRAGMA synchronous = NORMAL";

impl Catalog {
    /// Makes every commit so far durable, deferred ones included. SQLite: a full checkpoint
    /// of the WAL (synced, copied into the database, which is synced); PostgreSQL: the
    /// synchronous commit of a transaction that has an id, which flushes the WAL up to it.
    pub async fn sync(&self) -> Result<(), CatalogError> {
        match self.dialect {
            Dialect::Sqlite => {
                let mut writer = self.writer().await;
                let row = match writer.own_connection_mut().await? {
                    Some(connection) => {
                        sqlx::query("PRAGMA wal_checkpoint(FULL)")
                            .fetch_one(connection)
                            .await?
                    }
                    None => {
                        sqlx::query("PRAGMA wal_checkpoint(FULL)")
                            .fetch_one(&self.pool)
                            .await?
                    }
                };
                let busy: i64 = row.try_get(0)?;
                if busy != 0 {
                    return Err(CatalogError::Invalid(
                        "the catalog's WAL could not be checkpointed: readers held it past the \
                         busy timeout"
                            .to_string(),
                    ));
                }
                Ok(())
            }
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_current_xact_id()::text")
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }
}

impl Catalog {
    /// For tests: `PRAGMA synchronous` of the SQLite writer's own connection (`None` where
    /// there is none), which must be FULL (2) whenever no deferred group is committing.
    #[doc(hidden)]
    pub async fn writer_synchronous(&self) -> Result<Option<i64>, CatalogError> {
        let mut writer = self.writer().await;
        match writer.own_connection_mut().await? {
            Some(connection) => Ok(Some(
                sqlx::query_scalar("PRAGMA synchronous")
                    .fetch_one(connection)
                    .await?,
            )),
            None => Ok(None),
        }
    }
}

impl Catalog {
    /// For tests: how many instances the SQLite group recorders (the committer thread's and
    /// those of [`Catalog::group_recorder`]) have recorded; `None` where there are none
    /// (PostgreSQL, in-memory SQLite).
    #[doc(hidden)]
    pub fn committer_recorded(&self) -> Option<u64> {
        self.recorder_source.as_ref().map(|s| s.recorded())
    }
}

impl Writer {
    /// SQLite, the writer's own connection: commits after this are not synced until
    /// [`Writer::end_deferred`]. Whether it took effect.
    pub(crate) async fn begin_deferred(&mut self) -> bool {
        match self.own_connection_mut().await {
            Ok(Some(connection)) => sqlx::query(SQLITE_DEFERRED)
                .execute(connection)
                .await
                .is_ok(),
            _ => false,
        }
    }

    /// Commits are synced again. If that cannot be said to the connection, it is let go (a
    /// new one starts with `synchronous = FULL`): no other writer may inherit `NORMAL`.
    pub(crate) async fn end_deferred(&mut self) {
        let restored = match self.own_connection_mut().await {
            Ok(Some(connection)) => sqlx::query(SQLITE_SYNCED).execute(connection).await.is_ok(),
            _ => false,
        };
        if !restored {
            tracing::warn!(
                "the catalog's writer connection is replaced (synchronous not restored)"
            );
            self.discard_connection();
        }
    }
}
