//! What the catalog references in the archive, asked in batches: for the collector, which
//! removes what nothing references.
//!
//! Each question takes a batch of values (archive keys, series UIDs, upload ids, workflow run
//! ids) and answers with the subset the catalog references, by one indexed `IN (…)` query per
//! [`REFERENCE_BATCH`] values — never a scan of a table, never the whole table in memory.

use std::collections::HashSet;

use sqlx::Row;

use crate::error::{is_transient_db, is_unique_violation};
use crate::{Catalog, CatalogError};

/// Most values asked about in one query (well below SQLite's and PostgreSQL's bind limits).
pub const REFERENCE_BATCH: usize = 500;

/// A kind of reference from a catalog row to something stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// An archive key that an instance row's `object_key` names (`instances/…`).
    InstanceObject,
    /// A series UID that has a `series` row (its thumbnail and validation report are kept).
    Series,
    /// An upload id whose upload is still incomplete (its `upload-parts/<id>/…` are kept;
    /// a completed upload's parts have been streamed into its file).
    OpenUpload,
    /// A workflow run id whose run is queued or running (its scratch copy may be in use).
    ActiveWorkflowRun,
}

impl Reference {
    /// The query, up to its `IN` list: selects the referenced value.
    fn select(self) -> &'static str {
        match self {
            Reference::InstanceObject => {
                "SELECT object_key AS v FROM instances WHERE object_key IN ("
            }
            Reference::Series => "SELECT series_uid AS v FROM series WHERE series_uid IN (",
            Reference::OpenUpload => "SELECT id AS v FROM uploads WHERE completed = 0 AND id IN (",
            Reference::ActiveWorkflowRun => {
                "SELECT id AS v FROM workflow_runs \
                 WHERE state IN ('queued', 'running') AND id IN ("
            }
        }
    }
}

/// Indexes the reference lookups need beyond the schema's primary keys.
const REFERENCE_INDEXES: &[&str] =
    &["CREATE INDEX IF NOT EXISTS idx_instances_object_key ON instances (object_key)"];

impl Catalog {
    /// Creates the indexes the reference lookups need, if missing (idempotent; several
    /// nodes may call it at once). Call once before [`Catalog::referenced`].
    pub async fn prepare_reference_lookups(&self) -> Result<(), CatalogError> {
        for statement in REFERENCE_INDEXES {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut writer = self.writer().await;
                let result = async {
                    let mut tx = writer.begin().await?;
                    sqlx::query(*statement).execute(&mut *tx).await?;
                    tx.commit().await
                }
                .await;
                match result {
                    Ok(()) => break,
                    // Two nodes creating the same index at once on PostgreSQL: one of them
                    // fails on the catalog's unique name; the index exists either way.
                    Err(e) if is_unique_violation(&e) => break,
                    Err(e) if attempt < 3 && is_transient_db(&e) => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Of `values`, those the catalog references as `kind`: one query per
    /// [`REFERENCE_BATCH`] values, each an indexed lookup.
    pub async fn referenced(
        &self,
        kind: Reference,
        values: &[String],
    ) -> Result<HashSet<String>, CatalogError> {
        let mut found = HashSet::new();
        for batch in values.chunks(REFERENCE_BATCH) {
            let mut sql = String::from(kind.select());
            for i in 1..=batch.len() {
                if i > 1 {
                    sql.push_str(", ");
                }
                sql.push('$');
                sql.push_str(&i.to_string());
            }
            sql.push(')');
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for value in batch {
                query = query.bind(value.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get::<String, _>("v")?);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
        let catalog = Catalog::connect(&url).await.expect("catalog");
        (dir, catalog)
    }

    #[tokio::test]
    async fn answers_the_referenced_subset_in_batches() {
        let (_dir, catalog) = catalog().await;
        catalog.prepare_reference_lookups().await.expect("index");
        catalog.prepare_reference_lookups().await.expect("again");
        let now = crate::now();
        sqlx::query(
            "INSERT INTO uploads (id, path, length, upload_offset, chunks, metadata, created_at, \
               expires_at, completed) VALUES ('open', 'a.zip', 1, 0, 0, '{}', $1, $1, 0), \
               ('done', 'b.zip', 1, 1, 1, '{}', $1, $1, 1)",
        )
        .bind(&now)
        .execute(&catalog.pool)
        .await
        .expect("uploads");
        let asked: Vec<String> = (0..1200)
            .map(|i| format!("u{i}"))
            .chain(["open".to_string(), "done".to_string()])
            .collect();
        let found = catalog
            .referenced(Reference::OpenUpload, &asked)
            .await
            .expect("lookup");
        assert_eq!(found, HashSet::from(["open".to_string()]));
        let found = catalog
            .referenced(Reference::InstanceObject, &asked)
            .await
            .expect("lookup");
        assert!(found.is_empty());
        assert!(catalog
            .referenced(Reference::Series, &[])
            .await
            .expect("empty")
            .is_empty());
        let plan: Vec<String> = sqlx::query(
            "EXPLAIN QUERY PLAN SELECT object_key FROM instances WHERE object_key IN ($1, $2)",
        )
        .bind("a")
        .bind("b")
        .fetch_all(&catalog.pool)
        .await
        .expect("plan")
        .iter()
        .map(|row| row.try_get::<String, _>("detail").unwrap_or_default())
        .collect();
        assert!(
            plan.iter().any(|d| d.contains("idx_instances_object_key")),
            "{plan:?}"
        );
    }
}
