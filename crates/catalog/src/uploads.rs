//! Resumable uploads (the state behind the tus protocol) and workflow runs.
//!
//! An upload's bytes live in the archive; its row says how far it got (`offset`), how long it
//! will be, where it goes when complete and when it expires. A workflow run is a row with its
//! parameters, state, progress, errors, log and the series it produced; the run itself executes
//! as a job of the queue (`jobs`), so it survives restarts like any job.

use serde::Serialize;
use sqlx::Row;

use crate::{now, Catalog, CatalogError};

/// An upload in progress (or complete).
#[derive(Clone, Debug, Serialize)]
pub struct Upload {
    /// Identifier (part of the upload URL).
    pub id: String,
    /// Where the file goes when complete, relative to the uploads area.
    pub path: String,
    /// Total length announced at creation.
    pub length: i64,
    /// Bytes received so far.
    pub offset: i64,
    /// Number of stored chunks (each a separate object until assembly).
    pub chunks: i64,
    /// The raw `Upload-Metadata` header.
    pub metadata: String,
    /// Created at.
    pub created_at: String,
    /// Incomplete uploads are deleted after this.
    pub expires_at: String,
    /// Whether every byte arrived and the file was assembled.
    pub completed: bool,
}

fn upload_from_row(row: &sqlx::any::AnyRow) -> Result<Upload, sqlx::Error> {
    Ok(Upload {
        id: row.try_get("id")?,
        path: row.try_get("path")?,
        length: row.try_get("length")?,
        offset: row.try_get("upload_offset")?,
        chunks: row.try_get("chunks")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        completed: row.try_get::<i64, _>("completed")? != 0,
    })
}

const UPLOAD_COLUMNS: &str =
    "id, path, length, upload_offset, chunks, metadata, created_at, expires_at, completed";

/// A workflow run as stored.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowRun {
    /// Identifier.
    pub id: String,
    /// Name of the workflow.
    pub workflow: String,
    /// Parameters as given (defaults filled in).
    pub params: serde_json::Value,
    /// `queued`, `running`, `succeeded` or `failed`.
    pub state: String,
    /// Items done and total.
    pub progress: Progress,
    /// Item errors: `{"item", "error"}`.
    pub errors: Vec<serde_json::Value>,
    /// Log lines.
    pub log: Vec<String>,
    /// Series Instance UIDs produced.
    pub series: Vec<String>,
    /// Created at.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
}

/// Progress of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    /// Items done (succeeded or failed).
    pub done: i64,
    /// Items in all (0 while unknown).
    pub total: i64,
}

fn run_from_row(row: &sqlx::any::AnyRow) -> Result<WorkflowRun, CatalogError> {
    let json = |column: &str| -> Result<serde_json::Value, CatalogError> {
        let text: String = row.try_get(column)?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    };
    let list = |v: serde_json::Value| v.as_array().cloned().unwrap_or_default();
    Ok(WorkflowRun {
        id: row.try_get("id")?,
        workflow: row.try_get("workflow")?,
        params: json("params")?,
        state: row.try_get("state")?,
        progress: Progress {
            done: row.try_get("progress_done")?,
            total: row.try_get("progress_total")?,
        },
        errors: list(json("errors")?),
        log: list(json("log")?)
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        series: list(json("series")?)
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

const RUN_COLUMNS: &str = "id, workflow, params, state, progress_done, progress_total, errors, \
    log, series, created_at, updated_at, finished_at";

impl Catalog {
    /// Creates an upload row.
    pub async fn create_upload(
        &self,
        id: &str,
        path: &str,
        length: i64,
        metadata: &str,
        expires_at: &str,
    ) -> Result<Upload, CatalogError> {
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "INSERT INTO uploads (id, path, length, upload_offset, chunks, metadata, created_at, \
               expires_at, completed) VALUES ($1, $2, $3, 0, 0, $4, $5, $6, 0)",
        )
        .bind(id)
        .bind(path)
        .bind(length)
        .bind(metadata)
        .bind(&now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_upload(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("upload {id}")))
    }

    /// An upload by id.
    pub async fn get_upload(&self, id: &str) -> Result<Option<Upload>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(upload_from_row).transpose()?)
    }

    /// Records a chunk appended at `expected_offset`. Fails with `Conflict` if the upload moved
    /// on meanwhile (two clients at once), so a chunk is never counted twice.
    pub async fn advance_upload(
        &self,
        id: &str,
        expected_offset: i64,
        new_offset: i64,
    ) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET upload_offset = $1, chunks = chunks + 1 \
             WHERE id = $2 AND upload_offset = $3 AND completed = 0",
        )
        .bind(new_offset)
        .bind(id)
        .bind(expected_offset)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(CatalogError::Conflict(format!(
                "upload {id} is no longer at offset {expected_offset}"
            )))
        }
    }

    /// Marks an upload complete (its file assembled).
    pub async fn complete_upload(&self, id: &str) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query("UPDATE uploads SET completed = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes an upload row.
    pub async fn delete_upload(&self, id: &str) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Incomplete uploads whose expiry has passed.
    pub async fn expired_uploads(&self) -> Result<Vec<Upload>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE completed = 0 AND expires_at < $1"
        )))
        .bind(now())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(upload_from_row).collect::<Result<_, _>>()?)
    }

    /// Creates a workflow run in state `queued`.
    pub async fn create_workflow_run(
        &self,
        id: &str,
        workflow: &str,
        params: &serde_json::Value,
    ) -> Result<WorkflowRun, CatalogError> {
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "INSERT INTO workflow_runs (id, workflow, params, state, progress_done, \
               progress_total, errors, log, series, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', 0, 0, '[]', '[]', '[]', $4, $4)",
        )
        .bind(id)
        .bind(workflow)
        .bind(params.to_string())
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_workflow_run(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("workflow run {id}")))
    }

    /// A workflow run by id.
    pub async fn get_workflow_run(&self, id: &str) -> Result<Option<WorkflowRun>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// Workflow runs, newest first.
    pub async fn list_workflow_runs(&self, limit: i64) -> Result<Vec<WorkflowRun>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM workflow_runs ORDER BY created_at DESC, id LIMIT {}",
            limit.clamp(1, 1000)
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// Replaces the mutable part of a run: state, progress, errors, log, series.
    pub async fn update_workflow_run(&self, run: &WorkflowRun) -> Result<(), CatalogError> {
        let now = now();
        let finished = matches!(run.state.as_str(), "succeeded" | "failed").then(|| now.clone());
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "UPDATE workflow_runs SET state = $1, progress_done = $2, progress_total = $3, \
               errors = $4, log = $5, series = $6, updated_at = $7, \
               finished_at = COALESCE($8, finished_at) WHERE id = $9",
        )
        .bind(&run.state)
        .bind(run.progress.done)
        .bind(run.progress.total)
        .bind(serde_json::Value::from(run.errors.clone()).to_string())
        .bind(serde_json::json!(run.log).to_string())
        .bind(serde_json::json!(run.series).to_string())
        .bind(&now)
        .bind(finished)
        .bind(&run.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
