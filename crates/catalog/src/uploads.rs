//! Resumable uploads (the state behind the tus protocol) and workflow runs.
//!
//! An upload's bytes live in the archive; its row says how far it got (`offset`), how long it
//! will be, where it goes when complete and when it expires. A workflow run is a row with its
//! parameters, state, progress, errors, log and the series it produced; the run itself executes
//! as a job of the queue (`jobs`), so it survives restarts like any job.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::error::is_unique_violation;
use crate::{now, Catalog, CatalogError};

/// An upload in progress (or complete).
#[derive(Clone, Debug)]
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
    /// Deleted after this: an incomplete upload this long after its last chunk, a completed
    /// one when its retention ends ([`KEEP_FOREVER`]: never).
    pub expires_at: String,
    /// Whether every byte arrived and the file was assembled.
    pub completed: bool,
    /// Archive keys of the chunks counted so far, in order (empty for uploads begun before
    /// schema version 4, whose chunks are named by their offset alone).
    pub part_keys: Vec<String>,
    /// While the file is assembled: until when the assembler holds it.
    pub assembly_lease: Option<String>,
    /// The account that uploaded it (`None`: uploaded without access control).
    pub owner: Option<String>,
}

/// An upload to create.
#[derive(Clone, Copy, Debug)]
pub struct NewUpload<'a> {
    /// Identifier (part of the upload URL).
    pub id: &'a str,
    /// Where the file goes when complete, relative to the uploads area.
    pub path: &'a str,
    /// Total length announced.
    pub length: i64,
    /// The raw `Upload-Metadata` header.
    pub metadata: &'a str,
    /// Deleted after this unless a chunk arrives.
    pub expires_at: &'a str,
    /// The account uploading it, if any.
    pub owner: Option<&'a str>,
}

/// Bytes an upload counts toward the quota at least (its row, its chunks' objects).
pub const MIN_UPLOAD_CHARGE: i64 = 64 * 1024;

/// `expires_at` of an upload that never expires.
pub const KEEP_FOREVER: &str = "9999-12-31T23:59:59.999999Z";

/// Why an upload was not created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UploadRefused {
    /// Another upload (complete or not) has this path.
    PathTaken,
    /// All uploads together would pass the quota; `used` bytes are taken already.
    OverQuota {
        /// Bytes of all uploads (incomplete ones count their announced length).
        used: i64,
    },
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
        part_keys: row
            .try_get::<String, _>("part_keys")?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        assembly_lease: row.try_get("assembly_lease")?,
        owner: row.try_get("owner")?,
    })
}

const UPLOAD_COLUMNS: &str = "id, path, length, upload_offset, chunks, metadata, created_at, \
    expires_at, completed, part_keys, assembly_lease, owner";

/// A workflow run as stored.
#[derive(Clone, Debug)]
pub struct WorkflowRun {
    /// Identifier.
    pub id: String,
    /// Name of the workflow.
    pub workflow: String,
    /// Parameters as given (defaults filled in).
    pub params: serde_json::Value,
    /// Where the run is.
    pub state: RunState,
    /// Items done and total.
    pub progress: Progress,
    /// Items that failed, and why.
    pub errors: Vec<ItemError>,
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

/// State of a workflow run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Created; its job is waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// It ended, and not every item failed.
    Succeeded,
    /// It ended without importing anything, or stopped as a whole.
    Failed,
}

impl RunState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
        }
    }

    /// Parses a stored state name.
    pub fn parse(s: &str) -> Option<RunState> {
        match s {
            "queued" => Some(RunState::Queued),
            "running" => Some(RunState::Running),
            "succeeded" => Some(RunState::Succeeded),
            "failed" => Some(RunState::Failed),
            _ => None,
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Failed)
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An item of a run that failed (stored as JSON `{"item", "error"}` in the run's row).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    /// The item: an entry of the zip, or a case of a NIfTI dataset.
    pub item: String,
    /// Why it failed.
    pub error: String,
}

/// Progress of a run.
#[derive(Clone, Debug)]
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
    let state: String = row.try_get("state")?;
    let state = RunState::parse(&state).ok_or_else(|| {
        CatalogError::Invalid(format!("workflow run with an unknown state {state:?}"))
    })?;
    Ok(WorkflowRun {
        id: row.try_get("id")?,
        workflow: row.try_get("workflow")?,
        params: json("params")?,
        state,
        progress: Progress {
            done: row.try_get("progress_done")?,
            total: row.try_get("progress_total")?,
        },
        errors: list(json("errors")?)
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect(),
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
    /// Creates an upload row at `path`, unless another upload has that path or all uploads
    /// together would pass `quota` bytes. Each upload counts at least [`MIN_UPLOAD_CHARGE`]
    /// bytes, so the quota also bounds the number of uploads (empty files included).
    pub async fn create_upload(
        &self,
        new: &NewUpload<'_>,
        quota: i64,
    ) -> Result<Result<Upload, UploadRefused>, CatalogError> {
        let NewUpload {
            id,
            path,
            length,
            metadata,
            expires_at,
            owner,
        } = *new;
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(CASE WHEN length < $1 THEN $1 ELSE length END), 0) \
               AS BIGINT) FROM uploads",
        )
        .bind(MIN_UPLOAD_CHARGE)
        .fetch_one(&mut *tx)
        .await?;
        let charge = length.max(MIN_UPLOAD_CHARGE);
        if used.checked_add(charge).is_none_or(|total| total > quota) {
            return Ok(Err(UploadRefused::OverQuota { used }));
        }
        let taken: Option<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE path = $1")
            .bind(path)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Ok(Err(UploadRefused::PathTaken));
        }
        let inserted = sqlx::query(
            "INSERT INTO uploads (id, path, length, upload_offset, chunks, metadata, created_at, \
               expires_at, completed, part_keys, owner) \
             VALUES ($1, $2, $3, 0, 0, $4, $5, $6, 0, '', $7)",
        )
        .bind(id)
        .bind(path)
        .bind(length)
        .bind(metadata)
        .bind(&now)
        .bind(expires_at)
        .bind(owner)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            // Another node took the path between the check and the insert.
            Err(e) if is_unique_violation(&e) => return Ok(Err(UploadRefused::PathTaken)),
            Err(e) => return Err(e.into()),
        }
        tx.commit().await?;
        self.get_upload(id)
            .await?
            .ok_or_else(|| CatalogError::NotFound(format!("upload {id}")))
            .map(Ok)
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

    /// Records the chunk `part_key` appended at `expected_offset` and moves the expiry to
    /// `expires_at`. Fails with `Conflict` if the upload moved on meanwhile (two clients at
    /// once), so a chunk is never counted twice: the caller then deletes its chunk.
    pub async fn advance_upload(
        &self,
        id: &str,
        expected_offset: i64,
        new_offset: i64,
        part_key: &str,
        expires_at: &str,
    ) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET upload_offset = $1, chunks = chunks + 1, \
               part_keys = part_keys || $2, expires_at = $3 \
             WHERE id = $4 AND upload_offset = $5 AND completed = 0",
        )
        .bind(new_offset)
        .bind(format!("{part_key}\n"))
        .bind(expires_at)
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

    /// Moves an incomplete upload's expiry to `expires_at` (activity: a chunk begins).
    pub async fn touch_upload(&self, id: &str, expires_at: &str) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query("UPDATE uploads SET expires_at = $1 WHERE id = $2 AND completed = 0")
            .bind(expires_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes (or renews, with `renew`) the right to assemble an upload whose every byte
    /// arrived, until `lease_until`; false if it is complete, not all there, or another
    /// assembler holds a lease that has not run out. An upload under a lease is not swept.
    pub async fn lease_assembly(
        &self,
        id: &str,
        lease_until: &str,
        renew: Option<&str>,
    ) -> Result<bool, CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let done = sqlx::query(
            "UPDATE uploads SET assembly_lease = $1 \
             WHERE id = $2 AND completed = 0 AND upload_offset = length \
               AND (assembly_lease IS NULL OR assembly_lease < $3 OR assembly_lease = $4)",
        )
        .bind(lease_until)
        .bind(id)
        .bind(now())
        .bind(renew.unwrap_or(""))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks an upload complete (its file assembled); it expires at `expires_at` (its
    /// retention, or [`KEEP_FOREVER`]).
    pub async fn complete_upload(&self, id: &str, expires_at: &str) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "UPDATE uploads SET completed = 1, expires_at = $1, assembly_lease = NULL, \
               part_keys = '' WHERE id = $2",
        )
        .bind(expires_at)
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

    /// Deletes the row of incomplete upload `id` if it is still expired and not being
    /// assembled (a chunk may have arrived through another node since it was listed); true if
    /// this call deleted it. The sweeper of each node claims an upload this way before deleting
    /// its chunks, so that one node deletes it, once, and never one that came alive again.
    pub async fn claim_expired_upload(&self, id: &str) -> Result<bool, CatalogError> {
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM uploads WHERE id = $1 AND completed = 0 AND expires_at < $2 \
               AND (assembly_lease IS NULL OR assembly_lease < $2)",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// Deletes the row of completed upload `id` if its retention has still passed; true if
    /// this call deleted it (see [`Catalog::claim_expired_upload`]).
    pub async fn claim_expired_file(&self, id: &str) -> Result<bool, CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let deleted =
            sqlx::query("DELETE FROM uploads WHERE id = $1 AND completed = 1 AND expires_at < $2")
                .bind(id)
                .bind(now())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(deleted == 1)
    }

    /// Incomplete uploads whose expiry has passed and that are not being assembled.
    pub async fn expired_uploads(&self) -> Result<Vec<Upload>, CatalogError> {
        let now = now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE completed = 0 AND expires_at < $1 \
               AND (assembly_lease IS NULL OR assembly_lease < $1)"
        )))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(upload_from_row).collect::<Result<_, _>>()?)
    }

    /// Completed uploads whose retention has passed.
    pub async fn expired_files(&self) -> Result<Vec<Upload>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE completed = 1 AND expires_at < $1"
        )))
        .bind(now())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(upload_from_row).collect::<Result<_, _>>()?)
    }

    /// Every completed upload.
    pub async fn completed_uploads(&self) -> Result<Vec<Upload>, CatalogError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE completed = 1"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(upload_from_row).collect::<Result<_, _>>()?)
    }

    /// The paths of the uploads (complete or not) of an account.
    pub async fn upload_paths_of(
        &self,
        owner: &str,
    ) -> Result<std::collections::HashSet<String>, CatalogError> {
        let rows = sqlx::query("SELECT path FROM uploads WHERE owner = $1")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("path"))
            .collect::<Result<_, _>>()?)
    }

    /// The upload at `path`, if any.
    pub async fn upload_at(&self, path: &str) -> Result<Option<Upload>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE path = $1"
        )))
        .bind(path)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(upload_from_row).transpose()?)
    }

    /// The `file` parameters of queued and running workflow runs: uploads they will read.
    pub async fn files_in_use(&self) -> Result<std::collections::HashSet<String>, CatalogError> {
        let params: Vec<String> = sqlx::query_scalar(
            "SELECT params FROM workflow_runs WHERE state IN ('queued', 'running')",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(params
            .iter()
            .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .filter_map(|v| {
                v.get("file")?
                    .as_str()
                    .map(|f| f.trim_matches('/').to_string())
            })
            .collect())
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
        let finished = run.state.is_final().then(|| now.clone());
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "UPDATE workflow_runs SET state = $1, progress_done = $2, progress_total = $3, \
               errors = $4, log = $5, series = $6, updated_at = $7, \
               finished_at = COALESCE($8, finished_at) WHERE id = $9",
        )
        .bind(run.state.as_str())
        .bind(run.progress.done)
        .bind(run.progress.total)
        .bind(serde_json::to_string(&run.errors).unwrap_or_else(|_| "[]".into()))
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
