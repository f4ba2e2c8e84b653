//! Running the pipeline inside `radport serve`: a scheduler that turns idle series into jobs,
//! and workers that claim jobs from the catalog's queue and run them.
//!
//! The receiver never waits for any of this: it only moves a series' `last_arrival`. The
//! scheduler notices a series once it has been idle for `stable_after`, enqueues one job per
//! kind, and wakes the workers. Jobs are idempotent (a thumbnail is rendered from whatever the
//! series holds when the job runs), so a retry or a duplicate run is harmless.
//!
//! While a job runs its worker renews the lease every third of it; a renewal that finds the
//! job taken over (the lease ran out anyway, e.g. the process stalled) abandons the work. The
//! risky kinds (decoding uploaded or received pixels) can run in a child process of their own
//! under a memory limit ([`crate::isolate`]); every job has a wall-clock limit.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use radport_archive::Archive;
use radport_catalog::{Catalog, Job, JobKind, StoredFinding};
use radport_metrics::{global as metrics, JobOutcome};
use radport_validate::{Finding, InstanceValidation, Severity};
use tokio::sync::Notify;

use crate::isolate::{human_bytes, ChildOutcome, Isolation};
use crate::thumbnail::{
    middle_instance, render_or_placeholder, render_rtstruct_overlay, render_seg_overlay,
    rtstruct_source_reference, seg_source_reference, ThumbnailOptions,
};

/// Every job kind enqueued for a stable series, in that order. ([`JobKind::Verify`] is
/// enqueued on request only; [`JobKind::Workflow`] by the workflows, run by their
/// [`JobHandler`].)
pub const KINDS: &[JobKind] = &[JobKind::Thumbnail, JobKind::Validate];

/// Instances named in the error of a failed verification (the count is always given).
const VERIFY_PROBLEMS_SHOWN: usize = 10;

/// How much of each stored file validation reads: the attributes come before Pixel Data.
const VALIDATION_PREFIX: u64 = 16 * 1024 * 1024;

/// Instances validated at once by one job.
const VALIDATION_CONCURRENCY: usize = 4;

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
    /// Name of this process in job rows (process id and a random part: unique across
    /// restarts and nodes).
    pub node: String,
    /// Thumbnail size.
    pub thumbnail: ThumbnailOptions,
    /// Wall-clock limit of one attempt of a job.
    pub time_limit: Duration,
    /// Kinds run in a child process, and how; `None`: every job runs in this process.
    pub isolation: Option<Isolation>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            stable_after: Duration::from_secs(10),
            tick: Duration::from_millis(500),
            lease: Duration::from_secs(300),
            max_attempts: 5,
            node: node_name(),
            thumbnail: ThumbnailOptions::default(),
            time_limit: Duration::from_secs(3600),
            isolation: None,
        }
    }
}

/// `radport-<pid>-<random>`: a process id alone repeats across restarts in a container.
fn node_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("radport-{}-{:08x}", std::process::id(), nanos)
}

/// Job kinds that decode untrusted bytes (uploaded zips and NIfTI, received pixel data through
/// C codecs) and so run in a child process when isolation is on.
pub const RISKY_KINDS: &[JobKind] = &[JobKind::Thumbnail, JobKind::Workflow];

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

/// Runs jobs of a kind the pipeline itself does not know (e.g. workflow runs), so that one set
/// of workers serves the whole queue.
pub trait JobHandler: Send + Sync + 'static {
    /// The job kind handled.
    fn kind(&self) -> JobKind;
    /// Runs one job; `Err` is recorded as the job's error and retried.
    fn run<'a>(&'a self, job: &'a Job) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

/// The pipeline of one process.
#[derive(Clone)]
pub struct Pipeline {
    catalog: Catalog,
    archive: Archive,
    config: Arc<PipelineConfig>,
    wake: Arc<Notify>,
    handlers: Arc<Vec<Arc<dyn JobHandler>>>,
}

impl Pipeline {
    /// A pipeline over the catalog (queue) and the archive (inputs and outputs).
    pub fn new(catalog: Catalog, archive: Archive, config: PipelineConfig) -> Self {
        Self {
            catalog,
            archive,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
            handlers: Arc::new(Vec::new()),
        }
    }

    /// Adds a handler for another job kind.
    pub fn with_handler(mut self, handler: Arc<dyn JobHandler>) -> Self {
        let mut handlers: Vec<Arc<dyn JobHandler>> = self.handlers.as_ref().clone();
        handlers.push(handler);
        self.handlers = Arc::new(handlers);
        self
    }

    /// Wakes idle workers (e.g. after enqueueing a job).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// A handle that wakes this pipeline's workers.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
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
            // The gallery's counts: fold what the writes appended since the last pass.
            if let Err(e) = self.catalog.fold_series_counts().await {
                tracing::warn!(error = %e, "folding the series counts failed");
            }
            // A target of its own, so that tests can see passes go by (that something was not
            // scheduled again is only known once the scheduler has looked) without the rest.
            tracing::trace!(target: "radport_pipeline::scheduler", "scheduler pass");
            tokio::time::sleep(self.config.tick).await;
        }
    }

    async fn work_loop(&self, index: usize) {
        let worker = format!("{}/{}", self.config.node, index);
        let mut kinds: Vec<JobKind> = KINDS.to_vec();
        kinds.push(JobKind::Verify);
        kinds.extend(self.handlers.iter().map(|h| h.kind()));
        loop {
            let claimed = self
                .catalog
                .claim_job(&kinds, &worker, self.config.lease)
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
        let work = self.attempt(worker, &job);
        let keep = self.keep_lease(worker, &job.id);
        let result = tokio::select! {
            r = work => r,
            () = keep => {
                // Dropping the attempt stops it (a child process is killed).
                tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts,
                    "job taken over by another worker (its lease ran out): abandoned here");
                metrics().job_finished(job.kind.as_str(), JobOutcome::Abandoned, started.elapsed());
                return;
            }
        };
        let outcome = match result {
            Attempt::Succeeded => JobOutcome::Succeeded,
            Attempt::Failed(_) => JobOutcome::Failed,
            Attempt::NotOurs => JobOutcome::Abandoned,
        };
        metrics().job_finished(job.kind.as_str(), outcome, started.elapsed());
        match result {
            Attempt::Succeeded => {
                tracing::debug!(job = %job.id, kind = %job.kind, series = ?job.series_uid,
                    ms = started.elapsed().as_millis() as u64, "job succeeded");
                if let Err(e) = self.catalog.complete_job(&job.id, worker).await {
                    tracing::warn!(job = %job.id, error = %e, "recording job success failed");
                }
            }
            Attempt::Failed(message) => {
                match self.catalog.fail_job(&job.id, worker, &message).await {
                    Ok(state) => tracing::warn!(job = %job.id, kind = %job.kind,
                        attempt = job.attempts, state = state.as_str(), error = %message, "job failed"),
                    Err(e2) => {
                        tracing::warn!(job = %job.id, error = %e2, "recording job failure failed")
                    }
                }
            }
            Attempt::NotOurs => {
                tracing::warn!(job = %job.id, kind = %job.kind,
                    "job no longer held by this worker: nothing recorded");
            }
        }
    }

    /// One attempt of a claimed job: in a child process for the isolated kinds, else here;
    /// either way under the time limit.
    async fn attempt(&self, worker: &str, job: &Job) -> Attempt {
        let limit = self.config.time_limit;
        if let Some(isolation) = self
            .config
            .isolation
            .as_ref()
            .filter(|i| i.covers(job.kind))
        {
            return match isolation.run(&job.id, worker, limit).await {
                ChildOutcome::Succeeded => Attempt::Succeeded,
                ChildOutcome::Failed(reason) => Attempt::Failed(reason),
                ChildOutcome::NotOurs => Attempt::NotOurs,
            };
        }
        match tokio::time::timeout(limit, self.execute(job)).await {
            Ok(Ok(())) => Attempt::Succeeded,
            Ok(Err(e)) => Attempt::Failed(e.to_string()),
            Err(_) => Attempt::Failed(format!(
                "the job ran longer than its time limit of {} s and was stopped",
                limit.as_secs()
            )),
        }
    }

    /// Renews the lease of a running job every third of it; returns only when the job is
    /// found to be no longer this worker's. A renewal that fails (the database is away) is
    /// tried again at the next tick.
    async fn keep_lease(&self, worker: &str, id: &str) {
        let lease = self.config.lease;
        let every = (lease / 3).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(every).await;
            match self.catalog.renew_job_lease(id, worker, lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(job = %id, error = %e, "renewing a job's lease failed"),
            }
        }
    }

    /// The memory limit of isolated jobs, for messages (`None`: not isolated).
    pub fn job_memory_limit(&self) -> Option<String> {
        self.config
            .isolation
            .as_ref()
            .map(|i| human_bytes(i.memory_limit))
    }

    /// Runs one job now (also used by tests).
    pub async fn execute(&self, job: &Job) -> Result<(), JobError> {
        if let Some(handler) = self.handlers.iter().find(|h| h.kind() == job.kind) {
            return handler.run(job).await.map_err(JobError::Invalid);
        }
        let series = job
            .series_uid
            .as_deref()
            .ok_or_else(|| JobError::Invalid(format!("{} job without a series", job.kind)))?;
        match job.kind {
            JobKind::Thumbnail => self.render_thumbnail(series).await,
            JobKind::Validate => self.validate_series(series).await,
            JobKind::Verify => self.verify_series(series).await,
            other => Err(JobError::Invalid(format!(
                "no handler for {other} jobs in this process"
            ))),
        }
    }

    /// Reads every stored file of a series back and compares its size and checksum with the
    /// catalog's, two files at a time. `Err` names the instances that differ or are missing.
    pub async fn verify_series(&self, series_uid: &str) -> Result<(), JobError> {
        use radport_archive::Verification;
        let detail =
            self.catalog.get_series(series_uid).await?.ok_or_else(|| {
                JobError::Invalid(format!("series {series_uid} is not catalogued"))
            })?;
        let total = detail.instances.len();
        let archive = &self.archive;
        let results: Vec<(String, Result<Verification, radport_archive::ArchiveError>)> =
            futures::stream::iter(detail.instances)
                .map(|instance| async move {
                    let size = u64::try_from(instance.size).unwrap_or(u64::MAX);
                    let result = archive
                        .verify(&instance.object_key, size, &instance.checksum)
                        .await;
                    (instance.sop_instance_uid, result)
                })
                .buffered(2)
                .collect()
                .await;
        let mut problems = Vec::new();
        for (sop, result) in results {
            let problem = match result? {
                Verification::Intact => continue,
                Verification::Missing => "missing from the archive".to_string(),
                Verification::SizeDiffers { stored } => {
                    format!("{stored} bytes stored, other than recorded")
                }
                Verification::ChecksumDiffers { stored } => {
                    format!("checksum differs (stored bytes: {stored})")
                }
                Verification::UnknownAlgorithm(a) => format!("checksum algorithm {a} not known"),
            };
            problems.push(format!("{sop}: {problem}"));
        }
        if problems.is_empty() {
            tracing::info!(
                series = series_uid,
                instances = total,
                "series verified: intact"
            );
            return Ok(());
        }
        let failed = problems.len();
        tracing::warn!(
            series = series_uid,
            failed,
            instances = total,
            "series verification failed"
        );
        let mut message = format!("{failed} of {total} instances differ from the catalog: ");
        message.push_str(&problems[..failed.min(VERIFY_PROBLEMS_SHOWN)].join("; "));
        if failed > VERIFY_PROBLEMS_SHOWN {
            message.push_str(&format!("; and {} more", failed - VERIFY_PROBLEMS_SHOWN));
        }
        Err(JobError::Invalid(message))
    }

    /// Renders the thumbnail of a series and stores it: the middle instance of an image series;
    /// a segmentation or structure set drawn over the image slice it refers to (alone while
    /// that series is not in the archive). Then the series that refer to this one (their
    /// overlays are drawn on it) get their thumbnails redone.
    pub async fn render_thumbnail(&self, series_uid: &str) -> Result<(), JobError> {
        let instances = self.catalog.instances_for_pipeline(series_uid).await?;
        if instances.is_empty() {
            return Err(JobError::Invalid(format!(
                "series {series_uid} has no instances"
            )));
        }
        let options = self.config.thumbnail;
        let first_class = instances[0].sop_class_uid.as_str();
        let png = if let Some(kind) = Derived::of(first_class) {
            self.render_derived(series_uid, kind, &instances[0].object_key)
                .await?
        } else {
            let metadata: Vec<serde_json::Value> =
                instances.iter().map(|i| i.metadata.clone()).collect();
            let index = middle_instance(&metadata).unwrap_or(instances.len() / 2);
            let chosen = &instances[index.min(instances.len() - 1)];
            let bytes = self.archive.get(&chosen.object_key).await?;
            blocking(move || render_or_placeholder(&bytes, &options).into_png()).await?
        };
        self.archive
            .put(&radport_archive::keys::thumbnail(series_uid), png.into())
            .await?;
        for derived in self.catalog.series_referencing(series_uid).await? {
            self.catalog
                .enqueue_job(&radport_catalog::NewJob {
                    kind: JobKind::Thumbnail,
                    series_uid: Some(derived),
                    payload: serde_json::json!({ "because": series_uid }),
                    max_attempts: self.config.max_attempts,
                })
                .await?;
        }
        Ok(())
    }

    async fn render_derived(
        &self,
        series_uid: &str,
        kind: Derived,
        object_key: &str,
    ) -> Result<Vec<u8>, JobError> {
        let options = self.config.thumbnail;
        let bytes = std::sync::Arc::new(self.archive.get(object_key).await?.to_vec());
        let probe = bytes.clone();
        let reference = blocking(move || match kind {
            Derived::Seg => seg_source_reference(&probe),
            Derived::RtStruct => rtstruct_source_reference(&probe),
        })
        .await?;
        let mut source = None;
        if let Some(r) = &reference {
            self.catalog
                .set_series_references(series_uid, std::slice::from_ref(&r.series_uid))
                .await?;
            if let Some(row) = self
                .catalog
                .get_instance(&r.series_uid, &r.sop_instance_uid)
                .await?
            {
                source = Some(self.archive.get(&row.object_key).await?.to_vec());
            }
        }
        blocking(move || {
            let drawn = match kind {
                Derived::Seg => render_seg_overlay(&bytes, source.as_deref(), &options),
                Derived::RtStruct => render_rtstruct_overlay(&bytes, source.as_deref(), &options),
            };
            drawn.unwrap_or_else(|_| render_or_placeholder(&bytes, &options).into_png())
        })
        .await
    }
}

/// How one attempt of a job ended.
enum Attempt {
    Succeeded,
    Failed(String),
    /// A child found the job taken over: nothing to record.
    NotOurs,
}

/// Objects drawn over another series' image.
#[derive(Clone, Copy)]
enum Derived {
    Seg,
    RtStruct,
}

impl Derived {
    fn of(sop_class_uid: &str) -> Option<Derived> {
        use dicom_dictionary_std::uids;
        match sop_class_uid {
            uids::SEGMENTATION_STORAGE => Some(Derived::Seg),
            uids::RT_STRUCTURE_SET_STORAGE => Some(Derived::RtStruct),
            _ => None,
        }
    }
}

/// Runs CPU-bound work (decoding, drawing) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| JobError::Invalid(format!("thumbnail renderer stopped: {e}")))
}

fn stored(finding: &Finding, sop_instance_uid: Option<&str>) -> StoredFinding {
    StoredFinding {
        sop_instance_uid: sop_instance_uid.map(str::to_string),
        severity: match finding.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
        .to_string(),
        tag_path: finding.tag_path.clone(),
        keyword: finding.keyword.clone(),
        module: finding.module.clone(),
        message: finding.message.clone(),
    }
}

impl Pipeline {
    /// Validates every instance of a series and the series as a whole; stores the HTML report
    /// in the archive and the counts and findings in the catalog.
    pub async fn validate_series(&self, series_uid: &str) -> Result<(), JobError> {
        let instances = self.catalog.instances_for_pipeline(series_uid).await?;
        if instances.is_empty() {
            return Err(JobError::Invalid(format!(
                "series {series_uid} has no instances"
            )));
        }
        // Owned inputs: the stream's futures must not borrow `self` (Send across awaits).
        let inputs: Vec<(String, u64, String, String)> = instances
            .iter()
            .map(|i| {
                (
                    i.object_key.clone(),
                    u64::try_from(i.size).unwrap_or(0),
                    i.sop_instance_uid.clone(),
                    i.sop_class_uid.clone(),
                )
            })
            .collect();
        let archive = self.archive.clone();
        let results: Vec<Result<InstanceValidation, JobError>> = futures::stream::iter(inputs)
            .map(move |(key, size, sop, class)| {
                let archive = archive.clone();
                async move { validate_stored(&archive, &key, size, sop, class).await }
            })
            .buffered(VALIDATION_CONCURRENCY)
            .collect()
            .await;
        let validations = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let metadata: Vec<(String, serde_json::Value)> = instances
            .iter()
            .map(|i| (i.sop_instance_uid.clone(), i.metadata.clone()))
            .collect();
        let series_findings = radport_validate::validate_series(&metadata);
        let html = radport_validate::render_report_html(series_uid, &series_findings, &validations);
        let report_key = radport_archive::keys::validation_report(series_uid);
        self.archive.put(&report_key, html.into()).await?;

        let mut findings: Vec<StoredFinding> =
            series_findings.iter().map(|f| stored(f, None)).collect();
        for v in &validations {
            findings.extend(
                v.findings
                    .iter()
                    .map(|f| stored(f, Some(&v.sop_instance_uid))),
            );
        }
        let mut iods: Vec<String> = validations.iter().filter_map(|v| v.iod.clone()).collect();
        iods.sort();
        iods.dedup();
        self.catalog
            .store_validation(
                series_uid,
                validations.len() as i64,
                &iods,
                &report_key,
                &findings,
            )
            .await?;
        Ok(())
    }
}

/// Validates one stored instance; an unreadable file becomes an error finding, not a failure.
/// `validate_head` walks the bytes with `prescan` first: the parser never sees a hostile length.
async fn validate_stored(
    archive: &Archive,
    key: &str,
    size: u64,
    sop_instance_uid: String,
    sop_class_uid: String,
) -> Result<InstanceValidation, JobError> {
    let bytes = archive.get_prefix(key, VALIDATION_PREFIX).await?;
    let validated = tokio::task::spawn_blocking(move || {
        radport_validate::validate_head(&bytes, size).map_err(|e| match e {
            radport_validate::ValidateError::AttributesBeyondHead(_) => format!(
                "its attributes extend beyond the first {} MiB, which validation reads",
                VALIDATION_PREFIX >> 20
            ),
            other => other.to_string(),
        })
    })
    .await
    .map_err(|e| JobError::Invalid(format!("validator stopped: {e}")))?;
    Ok(validated.unwrap_or_else(|reason| InstanceValidation {
        sop_instance_uid,
        sop_class_uid,
        iod: None,
        findings: vec![Finding {
            severity: Severity::Error,
            tag_path: String::new(),
            keyword: String::new(),
            module: None,
            message: format!("The file cannot be validated: {reason}"),
        }],
    }))
}
