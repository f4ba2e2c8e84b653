//! What the catalog references in the archive, asked in batches: for the collector, which
//! removes what nothing references.
//!
//! Each question takes a batch of values (archive keys, series UIDs, upload ids, workflow run
//! ids) and answers with the subset the catalog references, by one indexed `IN (…)` query per
//! [`REFERENCE_BATCH`] values — never a scan of a table, never the whole table in memory.

use std::collections::HashSet;

use sqlx::Row;

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

impl Catalog {
    /// Of `values`, those the catalog references as `kind`: one query per
    /// [`REFERENCE_BATCH`] values, each an indexed lookup (the schema's indexes).
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
