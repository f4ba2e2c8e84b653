//! The durable job queue, in the catalog's own database, and stable-series scheduling.
//!
//! A job is a row: `queued` → `running` (claimed with a lease) → `succeeded`, or back to
//! `queued` with a later `run_after` after a failure (exponential backoff), until it has used
//! its attempts and ends `failed` with its last error kept. A claim is one statement:
//! `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …` on PostgreSQL, the same
//! under the process's write lock and `BEGIN IMMEDIATE` on SQLite.
//!
//! An attempt is counted when it is claimed, not when it fails: a worker that dies (panic,
//! abort, out of memory, `kill -9`, the whole process) has still used it. A running job whose
//! lease ran out, and at start-up with the embedded catalog every running job, is *reaped*:
//! queued again while it has attempts left, else parked `failed` with "worker died during
//! attempt N (…)". So a job that kills its worker runs at most `max_attempts` times, across
//! restarts too. A worker renews its lease while the job runs ([`Catalog::renew_job_lease`]);
//! a renewal that finds the job no longer its own tells it to abandon the work.
//!
//! Stable series: a series whose `last_arrival` is older than the idle time and newer than the
//! last arrival it was scheduled for gets one job of each pipeline kind. An instance that
//! arrives later moves `last_arrival` forward, so the series is scheduled again. The arrival also
//! sets the series' `pipeline_pending` flag, which scheduling clears: a tick reads only the
//! pending series (a partial index), not every series.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now, Catalog, CatalogError, Dialect};

/// State of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to be claimed (possibly not before `run_after`).
    Queued,
    /// Claimed by a worker.
    Running,
    /// Done.
    Succeeded,
    /// Out of attempts; `last_error` says why.
    Failed,
}

impl JobState {
    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    /// Parses a stored or user-given state name.
    pub fn parse(s: &str) -> Option<JobState> {
        match s {
            "queued" => Some(JobState::Queued),
            "running" => Some(JobState::Running),
            "succeeded" => Some(JobState::Succeeded),
            "failed" => Some(JobState::Failed),
            _ => None,
        }
    }
}

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Render and store a series' thumbnail (scheduled for every stable series).
    Thumbnail,
    /// Validate a series' instances, store the findings and the HTML report (scheduled for
    /// every stable series).
    Validate,
    /// Read every stored file of a series back and compare it with its recorded size and
    /// checksum (on request only).
    Verify,
    /// Execute a workflow run: `payload.run` names the `workflow_runs` row, and when such a
    /// job fails its run is marked failed with the reason.
    Workflow,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 4] = [
        JobKind::Thumbnail,
        JobKind::Validate,
        JobKind::Verify,
        JobKind::Workflow,
    ];

    /// The kind's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Thumbnail => "thumbnail",
            JobKind::Validate => "validate",
            JobKind::Verify => "verify",
            JobKind::Workflow => "workflow",
        }
    }

    /// Parses a stored or user-given kind name.
    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// What to do.
    pub kind: JobKind,
    /// The series it is about, if any.
    pub series_uid: Option<String>,
    /// Parameters.
    pub payload: serde_json::Value,
    /// Attempts before the job ends `failed`.
    pub max_attempts: i64,
}

/// A job as stored.
#[derive(Clone, Debug)]
pub struct Job {
    /// Identifier.
    pub id: String,
    /// What to do.
    pub kind: JobKind,
    /// The series it is about, if any.
    pub series_uid: Option<String>,
    /// Parameters.
    pub payload: serde_json::Value,
    /// Current state.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Not claimed before this time.
    pub run_after: String,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Worker holding (or last holding) the job.
    pub worker: Option<String>,
    /// Enqueued at.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it succeeded or finally failed.
    pub finished_at: Option<String>,
}

/// The shared queue of one kind of job, as [`Catalog::job_queue`] finds it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueFigures {
    /// The kind.
    pub kind: JobKind,
    /// Jobs waiting (due or not yet due).
    pub queued: i64,
    /// Jobs claimed by a worker.
    pub running: i64,
    /// How long the oldest waiting job has been in the queue (zero when none waits).
    pub oldest_queued: Duration,
}

/// Filter of [`Catalog::list_jobs`].
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    pub kind: Option<JobKind>,
    /// Only jobs about this series.
    pub series: Option<String>,
    /// Only jobs about series in one of these projects (any case); `None`: every job.
    pub projects: Option<Vec<String>>,
    /// Page size (default 100, max 1000).
    pub limit: Option<i64>,
    /// Items to skip.
    pub offset: Option<i64>,
}

/// A page of jobs, newest first.
#[derive(Clone, Debug)]
pub struct JobPage {
    /// Jobs matching the filter.
    pub total: i64,
    /// This page.
    pub items: Vec<Job>,
}

/// Delay before retry number `attempts` (1-based): 2 s, 4 s, 8 s … capped at 5 minutes.
pub fn retry_delay(attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs((2u64 << exp).min(300))
}

fn at(offset: Duration) -> String {
    let t = chrono::Utc::now()
        + chrono::Duration::from_std(offset).unwrap_or_else(|_| chrono::Duration::zero());
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn before(offset: Duration) -> String {
    let t = chrono::Utc::now()
        - chrono::Duration::from_std(offset).unwrap_or_else(|_| chrono::Duration::zero());
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

const JOB_COLUMNS: &str = "id, kind, series_uid, payload, state, attempts, max_attempts, \
    run_after, last_error, worker, created_at, updated_at, finished_at";

fn job_from_row(row: &AnyRow) -> Result<Job, CatalogError> {
    let state: String = row.try_get("state")?;
    let kind: String = row.try_get("kind")?;
    let payload: String = row.try_get("payload")?;
    Ok(Job {
        id: row.try_get("id")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| CatalogError::Invalid(format!("unknown job kind {kind:?}")))?,
        series_uid: row.try_get("series_uid")?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        state: JobState::parse(&state)
            .ok_or_else(|| CatalogError::Invalid(format!("unknown job state {state:?}")))?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        run_after: row.try_get("run_after")?,
        last_error: row.try_get("last_error")?,
        worker: row.try_get("worker")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What [`Catalog::requeue_running_jobs`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reaped {
    /// Jobs queued again (attempts left).
    pub requeued: u64,
    /// Jobs parked `failed` (their attempts used up).
    pub failed: u64,
}

/// Requeues or parks the running jobs that match `condition` (their worker is gone), in the
/// caller's transaction. `$1` is now, `$2` the cause shown in `last_error`. The same statement
/// on both databases.
async fn reap(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: &str,
    condition: &str,
    cause: &str,
) -> Result<Reaped, CatalogError> {
    let sql = format!(
        "UPDATE jobs SET \
           state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
           last_error = 'worker died during attempt ' || CAST(attempts AS TEXT) || ' (' || $2 || ')', \
           finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END, \
           run_after = $1, locked_until = NULL, updated_at = $1 \
         WHERE state = 'running' AND {condition} \
         RETURNING id, kind, payload, state, attempts, last_error"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(cause)
        .fetch_all(&mut **tx)
        .await?;
    let mut reaped = Reaped::default();
    for row in &rows {
        let state: String = row.try_get("state")?;
        let kind: String = row.try_get("kind")?;
        let payload: String = row.try_get("payload")?;
        let attempts: i64 = row.try_get("attempts")?;
        let error: Option<String> = row.try_get("last_error")?;
        let error = error.unwrap_or_default();
        let failed = state == "failed";
        if failed {
            reaped.failed += 1;
        } else {
            reaped.requeued += 1;
        }
        if kind == JobKind::Workflow.as_str() {
            note_workflow_run(tx, &payload, attempts, &error, failed, now).await?;
        }
    }
    Ok(reaped)
}

/// Records a failed attempt of a workflow job on its run: a log line with the reason, and the
/// run `failed` when the job is (else `queued` for its retry). A run that succeeded is left
/// alone.
async fn note_workflow_run(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    payload: &str,
    attempt: i64,
    error: &str,
    job_failed: bool,
    now: &str,
) -> Result<(), CatalogError> {
    let payload: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let Some(run) = payload.get("run").and_then(|r| r.as_str()) else {
        return Ok(());
    };
    let row = sqlx::query("SELECT state, log FROM workflow_runs WHERE id = $1")
        .bind(run)
        .fetch_optional(&mut **tx)
        .await?;
    let Some(row) = row else {
        return Ok(());
    };
    let state: String = row.try_get("state")?;
    if state == "succeeded" {
        return Ok(());
    }
    let log: String = row.try_get("log")?;
    let mut log: Vec<serde_json::Value> = serde_json::from_str(&log).unwrap_or_default();
    let (line, new_state, finished) = if job_failed {
        (format!("failed: {error}"), "failed", Some(now))
    } else {
        (
            format!("attempt {attempt} failed: {error}; it will be retried"),
            "queued",
            None,
        )
    };
    log.push(serde_json::Value::String(line));
    sqlx::query(
        "UPDATE workflow_runs SET state = $1, log = $2, updated_at = $3, \
         finished_at = COALESCE($4, finished_at) WHERE id = $5",
    )
    .bind(new_state)
    .bind(serde_json::Value::from(log).to_string())
    .bind(now)
    .bind(finished)
    .bind(run)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

const SQL_INSERT_JOB: &str = "INSERT INTO jobs (id, kind, series_uid, payload, state, attempts, \
    max_attempts, run_after, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $6, $6) ON CONFLICT DO NOTHING";

impl Catalog {
    /// Enqueues a job. A job of the same kind for the same series that is queued and has
    /// never started stands for it: then nothing is added and `None` is returned.
    pub async fn enqueue_job(&self, job: &NewJob) -> Result<Option<String>, CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let id = new_id();
        let done = sqlx::query(SQL_INSERT_JOB)
            .bind(&id)
            .bind(job.kind.as_str())
            .bind(job.series_uid.as_deref())
            .bind(job.payload.to_string())
            .bind(job.max_attempts.max(1))
            .bind(now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((done.rows_affected() == 1).then_some(id))
    }

    /// Claims the next due job of one of `kinds` for `worker`, holding it for `lease`.
    pub async fn claim_job(
        &self,
        kinds: &[JobKind],
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Job>, CatalogError> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let now = now();
        let kind_list = (0..kinds.len())
            .map(|i| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let lock = match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        // The attempt is counted here, at the claim: a worker that dies has used it.
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, worker = $1, \
               locked_until = $2, updated_at = $3 \
             WHERE id = (SELECT id FROM jobs WHERE kind IN ({kind_list}) AND \
               state = 'queued' AND run_after <= $3 \
               ORDER BY run_after, created_at LIMIT 1{lock}) \
             RETURNING {JOB_COLUMNS}"
        );
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        // A running job whose lease ran out lost its worker: queued again (due at once), or
        // failed if that was its last attempt. Of every kind, not only the ones claimed here.
        // Cheap when there is none (`idx_jobs_due`).
        reap(&mut tx, &now, "locked_until < $1", "lease expired").await?;
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(at(lease))
            .bind(&now);
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        let row = query.fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Extends the lease of a job `worker` is running to `lease` from now. `false`: the job is
    /// no longer this worker's (its lease ran out and it was reaped or claimed by another), so
    /// the worker should abandon it.
    pub async fn renew_job_lease(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<bool, CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs SET locked_until = $1 \
             WHERE id = $2 AND worker = $3 AND state = 'running'",
        )
        .bind(at(lease))
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// One job by id.
    pub async fn get_job(&self, id: &str) -> Result<Option<Job>, CatalogError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Marks a job done. Ignored if `worker` no longer holds it (its lease ran out and another
    /// worker took it).
    pub async fn complete_job(&self, id: &str, worker: &str) -> Result<(), CatalogError> {
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query(
            "UPDATE jobs SET state = 'succeeded', updated_at = $1, finished_at = $1, \
             locked_until = NULL, last_error = NULL \
             WHERE id = $2 AND worker = $3 AND state = 'running'",
        )
        .bind(&now)
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt: back to `queued` after a backoff, or `failed` when the job
    /// has used its attempts. Returns the new state.
    pub async fn fail_job(
        &self,
        id: &str,
        worker: &str,
        error: &str,
    ) -> Result<JobState, CatalogError> {
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let row = sqlx::query(
            "SELECT attempts, max_attempts, kind, payload FROM jobs WHERE id = $1 \
             AND worker = $2 AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(JobState::Running);
        };
        let attempts: i64 = row.try_get("attempts")?;
        let max_attempts: i64 = row.try_get("max_attempts")?;
        let kind: String = row.try_get("kind")?;
        let payload: String = row.try_get("payload")?;
        let error: String = error.chars().take(4000).collect();
        let state = if attempts >= max_attempts {
            sqlx::query(
                "UPDATE jobs SET state = 'failed', last_error = $1, updated_at = $2, \
                 finished_at = $2, locked_until = NULL WHERE id = $3",
            )
            .bind(&error)
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            JobState::Failed
        } else {
            sqlx::query(
                "UPDATE jobs SET state = 'queued', last_error = $1, updated_at = $2, \
                 run_after = $3, locked_until = NULL WHERE id = $4",
            )
            .bind(&error)
            .bind(&now)
            .bind(at(retry_delay(attempts)))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            JobState::Queued
        };
        if kind == JobKind::Workflow.as_str() {
            let failed = state == JobState::Failed;
            note_workflow_run(&mut tx, &payload, attempts, &error, failed, &now).await?;
        }
        tx.commit().await?;
        Ok(state)
    }

    /// Reaps every `running` job at once: queued again (due now) while it has attempts left,
    /// else `failed` with "worker died during attempt N (process restarted)" — the attempt it
    /// was running counts, so a job that kills the process cannot be started forever. For a
    /// single-process deployment at start-up (embedded SQLite), where no other process can be
    /// running them.
    pub async fn requeue_running_jobs(&self) -> Result<Reaped, CatalogError> {
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let reaped = reap(&mut tx, &now, "1 = 1", "process restarted").await?;
        tx.commit().await?;
        Ok(reaped)
    }

    /// Jobs matching a filter, newest first.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<JobPage, CatalogError> {
        let mut conditions: Vec<String> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        if let Some(state) = filter.state {
            args.push(state.as_str().to_string());
            conditions.push(format!("state = ${}", args.len()));
        }
        if let Some(kind) = filter.kind {
            args.push(kind.as_str().to_string());
            conditions.push(format!("kind = ${}", args.len()));
        }
        if let Some(series) = filter.series.as_deref().filter(|s| !s.is_empty()) {
            args.push(series.to_string());
            conditions.push(format!("series_uid = ${}", args.len()));
        }
        if let Some(projects) = &filter.projects {
            let mut placeholders = Vec::new();
            for p in projects {
                args.push(p.to_ascii_lowercase());
                placeholders.push(format!("${}", args.len()));
            }
            conditions.push(if placeholders.is_empty() {
                "1 = 0".to_string()
            } else {
                format!(
                    "series_uid IN (SELECT series_uid FROM series_projects \
                     WHERE project_key IN ({}))",
                    placeholders.join(", ")
                )
            });
        }
        let limit = filter.limit.unwrap_or(100);
        let offset = filter.offset.unwrap_or(0);
        if limit < 0 || offset < 0 {
            return Err(CatalogError::Invalid(
                "limit and offset must not be negative".into(),
            ));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) FROM jobs{where_clause}");
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
        for a in &args {
            count = count.bind(a.clone());
        }
        let total = count.fetch_one(&self.pool).await?;
        let list_sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs{where_clause} ORDER BY created_at DESC, id \
             LIMIT {} OFFSET {}",
            limit.min(1000),
            offset
        );
        let mut list = sqlx::query(sqlx::AssertSqlSafe(list_sql));
        for a in &args {
            list = list.bind(a.clone());
        }
        let items = list
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JobPage { total, items })
    }

    /// The queue now, one entry for every kind (for `/metrics`): one grouped query over the
    /// unfinished jobs, which the index on `(state, run_after)` finds.
    pub async fn job_queue(&self) -> Result<Vec<QueueFigures>, CatalogError> {
        let rows = sqlx::query(
            "SELECT kind, state, COUNT(*) AS jobs, MIN(created_at) AS oldest FROM jobs \
             WHERE state IN ('queued', 'running') GROUP BY kind, state",
        )
        .fetch_all(&self.pool)
        .await?;
        let now = chrono::Utc::now();
        let mut figures: Vec<QueueFigures> = JobKind::ALL
            .iter()
            .map(|&kind| QueueFigures {
                kind,
                queued: 0,
                running: 0,
                oldest_queued: Duration::ZERO,
            })
            .collect();
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let state: String = row.try_get("state")?;
            let jobs: i64 = row.try_get("jobs")?;
            let Some(entry) =
                JobKind::parse(&kind).and_then(|kind| figures.iter_mut().find(|f| f.kind == kind))
            else {
                continue;
            };
            match JobState::parse(&state) {
                Some(JobState::Queued) => {
                    entry.queued = jobs;
                    let oldest: Option<String> = row.try_get("oldest")?;
                    entry.oldest_queued = oldest
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                        .and_then(|t| (now - t.with_timezone(&chrono::Utc)).to_std().ok())
                        .unwrap_or_default();
                }
                Some(JobState::Running) => entry.running = jobs,
                _ => {}
            }
        }
        Ok(figures)
    }

    /// Finds series idle for at least `idle` since their last arrival and not yet scheduled
    /// for that arrival, and enqueues one job of each of `kinds` for each. Returns them.
    pub async fn schedule_stable_series(
        &self,
        idle: Duration,
        kinds: &[JobKind],
        max_attempts: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let cutoff = before(idle);
        // Cheap read first: most ticks find nothing and need no write lock. Only pending
        // series are read (a partial index holds them), however many series there are; in
        // the index's order, so that a tick reads at most 200 due ones even behind a backlog
        // of a million (sorting by arrival would read every pending series). The ORDER BY
        // keeps PostgreSQL on that index: without it, statistics that say a fifth of the
        // series are pending made it scan the table for 200 of them (234 ms a tick at 10⁶
        // series, the pending ones all at its end). Each tick takes its series out of the
        // pending set, so a backlog drains 200 a tick.
        let due: Vec<(String, String)> = sqlx::query(
            "SELECT s.series_uid, s.last_arrival FROM series s \
             WHERE s.pipeline_pending = 1 AND s.last_arrival <= $1 \
             ORDER BY s.series_uid LIMIT 200",
        )
        .bind(&cutoff)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((row.try_get("series_uid")?, row.try_get("last_arrival")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let now = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let mut scheduled = Vec::with_capacity(due.len());
        for (series_uid, last_arrival) in due {
            // Only if nobody scheduled this arrival since the read above: another node's
            // scheduler may have (PostgreSQL re-checks the WHERE after waiting for it).
            let claimed = sqlx::query(
                "INSERT INTO series_pipeline (series_uid, scheduled_for, scheduled_at) \
                 VALUES ($1, $2, $3) ON CONFLICT (series_uid) DO UPDATE \
                 SET scheduled_for = excluded.scheduled_for, scheduled_at = excluded.scheduled_at \
                 WHERE series_pipeline.scheduled_for < excluded.scheduled_for",
            )
            .bind(&series_uid)
            .bind(&last_arrival)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            // Not pending any more, unless an instance arrived since the read (then its
            // `last_arrival` moved, and the next ticks see it; on PostgreSQL this waits for
            // the arrival's transaction and re-checks).
            sqlx::query(
                "UPDATE series SET pipeline_pending = 0 \
                 WHERE series_uid = $1 AND last_arrival = $2 AND pipeline_pending = 1",
            )
            .bind(&series_uid)
            .bind(&last_arrival)
            .execute(&mut *tx)
            .await?;
            if claimed.rows_affected() == 0 {
                // Another node's scheduler took this arrival.
                continue;
            }
            for kind in kinds {
                sqlx::query(SQL_INSERT_JOB)
                    .bind(new_id())
                    .bind(kind.as_str())
                    .bind(&series_uid)
                    .bind("{}")
                    .bind(max_attempts.max(1))
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
            }
            scheduled.push(series_uid);
        }
        tx.commit().await?;
        Ok(scheduled)
    }
}

/// One instance of a series as the pipeline needs it: where its file is and its attributes.
#[derive(Clone, Debug)]
pub struct InstanceForPipeline {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Archive key of the stored file.
    pub object_key: String,
    /// Instance Number, if any.
    pub instance_number: Option<i64>,
    /// Size of the stored file in bytes.
    pub size: i64,
    /// DICOM JSON of the instance (without bulk data).
    pub metadata: serde_json::Value,
}

impl Catalog {
    /// Every instance of a series with its archive key and DICOM JSON, by Instance Number.
    pub async fn instances_for_pipeline(
        &self,
        series_uid: &str,
    ) -> Result<Vec<InstanceForPipeline>, CatalogError> {
        let rows = sqlx::query(
            "SELECT sop_instance_uid, sop_class_uid, object_key, instance_number, size, \
               metadata_json \
             FROM instances WHERE series_uid = $1 ORDER BY instance_number, sop_instance_uid",
        )
        .bind(series_uid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let metadata: String = row.try_get("metadata_json")?;
                Ok(InstanceForPipeline {
                    sop_instance_uid: row.try_get("sop_instance_uid")?,
                    sop_class_uid: row.try_get("sop_class_uid")?,
                    object_key: row.try_get("object_key")?,
                    instance_number: row.try_get("instance_number")?,
                    size: row.try_get("size")?,
                    metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(CatalogError::from)
    }
}

impl Catalog {
    /// Records the series a derived series (SEG, RTSTRUCT) refers to, replacing earlier ones.
    pub async fn set_series_references(
        &self,
        series_uid: &str,
        referenced: &[String],
    ) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        sqlx::query("DELETE FROM series_references WHERE series_uid = $1")
            .bind(series_uid)
            .execute(&mut *tx)
            .await?;
        for r in referenced {
            sqlx::query(
                "INSERT INTO series_references (series_uid, referenced_series_uid) \
                 VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(series_uid)
            .bind(r)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Series that refer to `referenced_series_uid` (e.g. its segmentations).
    pub async fn series_referencing(
        &self,
        referenced_series_uid: &str,
    ) -> Result<Vec<String>, CatalogError> {
        let rows = sqlx::query(
            "SELECT series_uid FROM series_references WHERE referenced_series_uid = $1 \
             ORDER BY series_uid",
        )
        .bind(referenced_series_uid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("series_uid").map_err(CatalogError::from))
            .collect()
    }
}
