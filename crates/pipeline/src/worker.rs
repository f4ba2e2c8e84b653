//! Running the pipeline inside `radport serve`: a scheduler that turns idle series into jobs,
//! and workers that claim jobs from the catalog's queue and run them.
//!
//! The receiver never waits for any of this: it only moves a series' `last_arrival`. The
//! scheduler notices a series once it has been idle for `stable_after`, enqueues one job per
//! kind, and wakes the workers. Jobs are idempotent (a thumbnail is rendered from whatever the
//! series holds when the job runs), so a retry or a duplicate run is harmless.

use std::sync::Arc;
use std::time::Duration;

use radport_archive::Archive;
use radport_catalog::{Catalog, Job};
use tokio::sync::Notify;

use crate::thumbnail::{middle_instance, render_or_placeholder, Rendered, ThumbnailOptions};

/// Job kind: render and store the series thumbnail.
pub const THUMBNAIL: &str = "thumbnail";

/// Every job kind the workers run, in the order they are enqueued for a stable series.
pub const KINDS: &[&str] = &[THUMBNAIL];

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Number of workers in this process (0: this process only schedules; others work).
    pub workers: usize,
    /// Idle time after the last arrival before a series counts as stable.
    pub stable_after: Duration,
    /// How often the scheduler looks for stable series.
    pub tick: Duration,
    /// How long a claimed job is held before another worker may take it over.
    pub lease: Duration,
    /// Attempts per job before it ends `failed`.
    pub max_attempts: i64,
    /// Name of this process in job rows (host and process id).
    pub node: String,
    /// Thumbnail size.
    pub thumbnail: ThumbnailOptions,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            stable_after: Duration::from_secs(10),
            tick: Duration::from_millis(500),
            lease: Duration::from_secs(300),
            max_attempts: 5,
            node: format!("radport-{}", std::process::id()),
            thumbnail: ThumbnailOptions::default(),
        }
    }
}

/// Why a job failed (kept as the job's `last_error`).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] radport_catalog::CatalogError),
    /// The archive failed.
    #[error("archive: {0}")]
    Archive(#[from] radport_archive::ArchiveError),
    /// The job cannot be done as asked.
    #[error("{0}")]
    Invalid(String),
}

/// The pipeline of one process.
#[derive(Clone)]
pub struct Pipeline {
    catalog: Catalog,
    archive: Archive,
    config: Arc<PipelineConfig>,
    wake: Arc<Notify>,
}

impl Pipeline {
    /// A pipeline over the catalog (queue) and the archive (inputs and outputs).
    pub fn new(catalog: Catalog, archive: Archive, config: PipelineConfig) -> Self {
        Self {
            catalog,
            archive,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Runs the scheduler and the workers until the task is dropped.
    pub async fn run(self) {
        let mut tasks = tokio::task::JoinSet::new();
        let scheduler = self.clone();
        tasks.spawn(async move { scheduler.schedule_loop().await });
        for i in 0..self.config.workers {
            let worker = self.clone();
            tasks.spawn(async move { worker.work_loop(i).await });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn schedule_loop(&self) {
        loop {
            match self
                .catalog
                .schedule_stable_series(self.config.stable_after, KINDS, self.config.max_attempts)
                .await
            {
                Ok(series) if !series.is_empty() => {
                    tracing::debug!(count = series.len(), "stable series scheduled");
                    self.wake.notify_waiters();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "scheduling stable series failed"),
            }
            tokio::time::sleep(self.config.tick).await;
        }
    }

    async fn work_loop(&self, index: usize) {
        let worker = format!("{}/{}", self.config.node, index);
        loop {
            let claimed = self
                .catalog
                .claim_job(KINDS, &worker, self.config.lease)
                .await;
            match claimed {
                Ok(Some(job)) => self.run_job(&worker, job).await,
                Ok(None) => {
                    // Sleep until woken by the scheduler, or poll (retries come due by time).
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a job failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn run_job(&self, worker: &str, job: Job) {
        let started = std::time::Instant::now();
        let result = self.execute(&job).await;
        match result {
            Ok(()) => {
                tracing::debug!(job = %job.id, kind = %job.kind, series = ?job.series_uid,
                    ms = started.elapsed().as_millis() as u64, "job succeeded");
                if let Err(e) = self.catalog.complete_job(&job.id, worker).await {
                    tracing::warn!(job = %job.id, error = %e, "recording job success failed");
                }
            }
            Err(e) => {
                let message = e.to_string();
                match self.catalog.fail_job(&job.id, worker, &message).await {
                    Ok(state) => tracing::warn!(job = %job.id, kind = %job.kind,
                        attempt = job.attempts, state = state.as_str(), error = %message, "job failed"),
                    Err(e2) => {
                        tracing::warn!(job = %job.id, error = %e2, "recording job failure failed")
                    }
                }
            }
        }
    }

    /// Runs one job now (also used by tests).
    pub async fn execute(&self, job: &Job) -> Result<(), JobError> {
        let series = job
            .series_uid
            .as_deref()
            .ok_or_else(|| JobError::Invalid(format!("{} job without a series", job.kind)))?;
        match job.kind.as_str() {
            THUMBNAIL => self.render_thumbnail(series).await,
            other => Err(JobError::Invalid(format!("unknown job kind {other:?}"))),
        }
    }

    /// Renders the thumbnail of a series from its middle instance and stores it.
    pub async fn render_thumbnail(&self, series_uid: &str) -> Result<(), JobError> {
        let instances = self.catalog.instances_for_pipeline(series_uid).await?;
        if instances.is_empty() {
            return Err(JobError::Invalid(format!(
                "series {series_uid} has no instances"
            )));
        }
        let metadata: Vec<serde_json::Value> =
            instances.iter().map(|i| i.metadata.clone()).collect();
        let index = middle_instance(&metadata).unwrap_or(instances.len() / 2);
        let chosen = &instances[index.min(instances.len() - 1)];
        let bytes = self.archive.get(&chosen.object_key).await?;
        let options = self.config.thumbnail;
        let rendered = tokio::task::spawn_blocking(move || render_or_placeholder(&bytes, &options))
            .await
            .map_err(|e| JobError::Invalid(format!("thumbnail renderer stopped: {e}")))?;
        let png = match rendered {
            Rendered::Image(png) => png,
            Rendered::Placeholder { png, reason } => {
                tracing::debug!(series = series_uid, %reason, "placeholder thumbnail");
                png
            }
        };
        self.archive
            .put(&radport_archive::keys::thumbnail(series_uid), png.into())
            .await?;
        Ok(())
    }
}
