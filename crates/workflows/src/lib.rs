//! Workflows: named, parameterised runs that import uploaded files into the archive.
//!
//! A run is a row of the catalog (`workflow_runs`: parameters, state, progress, item errors,
//! log, series produced) executed as one job of the catalog's queue (kind `workflow`), so it
//! survives a restart like any job (it is then run again from the start: imports are
//! idempotent, known instances are kept once). Every imported instance goes through
//! [`radport_ingest::Ingestor`], the same path as DIMSE: routing to project and dataset, catalog,
//! mappings for the project and `admin`, and then the series pipeline.
//!
//! A failed item (an entry that is not DICOM, an unsafe name, a file the ingest refuses) is
//! recorded with its reason and does not stop the others.

#![warn(missing_docs)]

mod dicom_zip;
mod driver;
mod nifti_zip;
mod upload;

use std::sync::Arc;

pub use radport_convert::Limits as ConvertLimits;

/// For the fuzz targets (fuzz/): the layout and JSON logic of the imports without a catalog.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::nifti_zip::fuzzing::{nifti_plan, parse_json_file};

    /// What the DICOM import's reading side does with the zip at `path`: `(kind, name)` for
    /// every entry it opens (`begin`), refuses (`refused`), skips (`not-dicom`), or the reason
    /// the zip is refused as a whole (`fatal`).
    pub fn dicom_entries(
        path: &std::path::Path,
        extension: &str,
        limits: &crate::ImportLimits,
    ) -> Vec<(&'static str, String)> {
        crate::dicom_zip::fuzz_entries(path, extension, limits)
    }
}

use radport_archive::Archive;
use radport_catalog::{Catalog, ItemError, Job, JobKind, NewJob, Progress, RunState, WorkflowRun};
use radport_ingest::Ingestor;
use serde::Serialize;
use serde_json::{json, Map, Value};

/// Name of the DICOM zip import.
pub const IMPORT_DICOMS: &str = "import-dicoms-from-data-upload";

/// Name of the NIfTI zip import (conversion to DICOM series and SEG).
pub const IMPORT_NIFTIS: &str = "import-niftis-from-data-upload";

/// Errors of starting or running a workflow.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// No workflow of that name.
    #[error("no workflow named {0:?}; see GET /api/workflows")]
    UnknownWorkflow(String),
    /// The parameters do not fit the workflow.
    #[error("{0}")]
    BadParameters(String),
    /// The catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] radport_catalog::CatalogError),
    /// The archive failed.
    #[error("archive: {0}")]
    Archive(#[from] radport_archive::ArchiveError),
    /// Anything else that stops a run as a whole.
    #[error("{0}")]
    Fatal(String),
}

/// Type of a parameter.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// Text.
    String,
    /// true / false.
    Boolean,
}

/// One parameter of a workflow.
#[derive(Clone, Debug, Serialize)]
pub struct ParamSpec {
    /// Name, as a key of the run's parameter object.
    pub name: &'static str,
    /// Type.
    #[serde(rename = "type")]
    pub kind: ParamType,
    /// Default; `null` for required parameters.
    pub default: Value,
    /// Whether it must be given.
    pub required: bool,
    /// What it means.
    pub description: &'static str,
}

/// A workflow as listed by `GET /api/workflows`.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowSpec {
    /// Name.
    pub name: &'static str,
    /// What it does.
    pub description: &'static str,
    /// Its parameters.
    pub parameters: Vec<ParamSpec>,
}

/// A workflow radport runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workflow {
    /// [`IMPORT_DICOMS`]: a zip of DICOM folders.
    ImportDicoms,
    /// [`IMPORT_NIFTIS`]: a zip of NIfTI volumes and label maps, converted to DICOM.
    ImportNiftis,
}

impl Workflow {
    /// Every workflow.
    pub const ALL: [Workflow; 2] = [Workflow::ImportDicoms, Workflow::ImportNiftis];

    /// The workflow's name (in the API's URLs and a run's `workflow`).
    pub fn name(self) -> &'static str {
        match self {
            Workflow::ImportDicoms => IMPORT_DICOMS,
            Workflow::ImportNiftis => IMPORT_NIFTIS,
        }
    }

    /// The workflow of that name.
    pub fn parse(name: &str) -> Option<Workflow> {
        Workflow::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What it does and its parameters.
    pub fn spec(self) -> WorkflowSpec {
        match self {
            Workflow::ImportDicoms => dicom_zip::spec(),
            Workflow::ImportNiftis => nifti_zip::spec(),
        }
    }
}

/// `file`: the uploaded zip every import reads.
pub(crate) fn file_param() -> ParamSpec {
    ParamSpec {
        name: "file",
        kind: ParamType::String,
        default: Value::Null,
        required: true,
        description: "Uploaded .zip to import (a path from GET /api/files)",
    }
}

/// `project`: where an import goes.
pub(crate) fn project_param() -> ParamSpec {
    ParamSpec {
        name: "project",
        kind: ParamType::String,
        default: json!("admin"),
        required: false,
        description: "Project to import into (must exist)",
    }
}

/// `dataset`: the dataset of the imported series, `default` unless given.
pub(crate) fn dataset_param(default: &str) -> ParamSpec {
    ParamSpec {
        name: "dataset",
        kind: ParamType::String,
        default: json!(default),
        required: false,
        description: "Dataset name (created on first use)",
    }
}

/// `delete_original_file`: whether an import deletes its upload once all went well.
pub(crate) fn delete_original_param() -> ParamSpec {
    ParamSpec {
        name: "delete_original_file",
        kind: ParamType::Boolean,
        default: json!(true),
        required: false,
        description: "Delete the uploaded file once every item was imported",
    }
}

/// Every workflow radport runs.
pub fn definitions() -> Vec<WorkflowSpec> {
    Workflow::ALL.into_iter().map(Workflow::spec).collect()
}

/// Checks `given` against the workflow's parameters and fills in defaults.
pub fn resolve_params(workflow: &str, given: &Value) -> Result<Value, WorkflowError> {
    let spec = Workflow::parse(workflow)
        .ok_or_else(|| WorkflowError::UnknownWorkflow(workflow.to_string()))?
        .spec();
    let given = match given {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        _ => {
            return Err(WorkflowError::BadParameters(
                "parameters must be a JSON object".into(),
            ))
        }
    };
    for key in given.keys() {
        if !spec.parameters.iter().any(|p| p.name == key) {
            let known: Vec<&str> = spec.parameters.iter().map(|p| p.name).collect();
            return Err(WorkflowError::BadParameters(format!(
                "unknown parameter {key:?}; {workflow} takes {}",
                known.join(", ")
            )));
        }
    }
    let mut out = Map::new();
    for p in &spec.parameters {
        let value = match given.get(p.name) {
            Some(v) => coerce(p, v)?,
            None if p.required => {
                return Err(WorkflowError::BadParameters(format!(
                    "parameter {:?} is required: {}",
                    p.name, p.description
                )))
            }
            None => p.default.clone(),
        };
        out.insert(p.name.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// Accepts the natural JSON type, and strings for booleans (`--param k=true` on the CLI).
fn coerce(p: &ParamSpec, v: &Value) -> Result<Value, WorkflowError> {
    let bad = || {
        WorkflowError::BadParameters(format!(
            "parameter {:?} must be a {}",
            p.name,
            match p.kind {
                ParamType::String => "string",
                ParamType::Boolean => "boolean (true or false)",
            }
        ))
    };
    match (p.kind, v) {
        (ParamType::String, Value::String(_)) => Ok(v.clone()),
        (ParamType::Boolean, Value::Bool(_)) => Ok(v.clone()),
        (ParamType::Boolean, Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(json!(true)),
            "false" | "no" | "0" => Ok(json!(false)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// What one imported zip may make a run read, inflate and allocate. Hostile input past these
/// ends the item (an entry, a case) or the run as failed, with the reason in the run's errors or
/// log, never the process.
///
/// Defaults, and why:
/// * `max_entries` 100 000: a zip of a few large studies (10 series × 2000 slices is 20 000
///   files); the zip reader keeps a few hundred bytes per entry (≈ 35 MB at the limit).
/// * `max_entry_bytes` 4 GiB: entries are streamed, never held whole, so this bounds work, not
///   memory; above the largest multi-frame DICOM objects and NIfTI volumes accepted.
/// * `max_total_bytes` 200 GiB inflated per zip (and at most `max_ratio` × the zip's size, at
///   least 1 GiB): a 10 GiB upload of uncompressed DICOM inflates to ~20 GiB.
/// * `max_ratio` 200: DICOM and gzipped NIfTI deflate 1.5–10:1; uncompressed label maps a few
///   hundred to one at most, and should be sent as `.nii.gz`; deflate bombs reach ~1000:1.
/// * `max_json_bytes` 1 MiB: `meta_data.json`, `seg_info.json`, `dataset.json` are kilobytes.
/// * `convert`: the NIfTI and SEG limits of [`radport_convert::Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Entries (files and folders) of one zip.
    pub max_entries: u64,
    /// Inflated bytes of one entry.
    pub max_entry_bytes: u64,
    /// Inflated bytes of one zip, all entries together.
    pub max_total_bytes: u64,
    /// Inflated ÷ compressed size of an entry (checked past 1 MiB) and of the whole zip.
    pub max_ratio: u64,
    /// Bytes of each JSON file of a NIfTI zip.
    pub max_json_bytes: u64,
    /// NIfTI volumes and SEG.
    pub convert: radport_convert::Limits,
}

impl Default for ImportLimits {
    fn default() -> Self {
        ImportLimits {
            max_entries: 100_000,
            max_entry_bytes: 4 << 30,
            max_total_bytes: 200 << 30,
            max_ratio: 200,
            max_json_bytes: 1 << 20,
            convert: radport_convert::Limits::default(),
        }
    }
}

/// Starts and runs workflows. Cheap to clone.
#[derive(Clone)]
pub struct Workflows {
    ingestor: Ingestor,
    scratch: Arc<std::path::PathBuf>,
    limits: ImportLimits,
}

impl Workflows {
    /// The ingestor imports store through (also the receiver's).
    pub fn ingestor(&self) -> &Ingestor {
        &self.ingestor
    }

    /// Workflows that import through `ingestor`, using `scratch` for temporary copies, with the
    /// default [`ImportLimits`].
    pub fn new(ingestor: Ingestor, scratch: std::path::PathBuf) -> Self {
        Self {
            ingestor,
            scratch: Arc::new(scratch),
            limits: ImportLimits::default(),
        }
    }

    /// The same workflows with other limits.
    pub fn with_limits(mut self, limits: ImportLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits imports run with.
    pub fn limits(&self) -> &ImportLimits {
        &self.limits
    }

    fn catalog(&self) -> &Catalog {
        self.ingestor.catalog()
    }

    fn archive(&self) -> &Archive {
        self.ingestor.archive()
    }

    /// Creates a run of `workflow` with `params` (defaults filled in) and queues it.
    pub async fn start(
        &self,
        workflow: &str,
        params: &Value,
    ) -> Result<WorkflowRun, WorkflowError> {
        let params = resolve_params(workflow, params)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let run = self
            .catalog()
            .create_workflow_run(&id, workflow, &params)
            .await?;
        self.catalog()
            .enqueue_job(&NewJob {
                kind: JobKind::Workflow,
                series_uid: None,
                payload: json!({ "run": id }),
                max_attempts: 3,
            })
            .await?;
        Ok(run)
    }

    /// Executes the run named by a queued job.
    pub async fn execute(&self, job: &Job) -> Result<(), WorkflowError> {
        let id = job.payload["run"]
            .as_str()
            .ok_or_else(|| WorkflowError::Fatal("workflow job without a run id".into()))?;
        let run = self
            .catalog()
            .get_workflow_run(id)
            .await?
            .ok_or_else(|| WorkflowError::Fatal(format!("no workflow run {id}")))?;
        let mut recorder = Recorder::new(self.catalog().clone(), run);
        recorder.run.state = RunState::Running;
        recorder.run.progress = Progress { done: 0, total: 0 };
        recorder.run.errors.clear();
        recorder.run.series.clear();
        recorder
            .log(format!("started (attempt {})", job.attempts))
            .await;
        let result = match Workflow::parse(&recorder.run.workflow) {
            Some(Workflow::ImportDicoms) => dicom_zip::run(self, &mut recorder).await,
            Some(Workflow::ImportNiftis) => nifti_zip::run(self, &mut recorder).await,
            None => Err(WorkflowError::UnknownWorkflow(
                recorder.run.workflow.clone(),
            )),
        };
        let items = recorder.run.progress.total;
        match result {
            Ok(()) => {
                let all_failed = recorder.run.progress.total > 0 && recorder.run.series.is_empty();
                recorder.run.state = if all_failed {
                    RunState::Failed
                } else {
                    RunState::Succeeded
                };
                let summary = format!(
                    "{}: {} of {} items imported, {} errors, {} series",
                    recorder.run.state,
                    recorder.run.progress.done - recorder.run.errors.len() as i64,
                    recorder.run.progress.total,
                    recorder.run.errors.len(),
                    recorder.run.series.len()
                );
                recorder.log(summary).await;
            }
            Err(e) => {
                recorder.run.state = RunState::Failed;
                recorder.log(format!("failed: {e}")).await;
            }
        }
        // Info level: counts only (item names and reasons can name patients and files).
        tracing::info!(
            run = %recorder.run.id,
            workflow = %recorder.run.workflow,
            state = %recorder.run.state,
            items,
            errors = recorder.run.errors.len(),
            series = recorder.run.series.len(),
            "workflow run finished"
        );
        recorder.save().await
    }
}

/// Keeps a run's row up to date without writing it on every item.
pub(crate) struct Recorder {
    catalog: Catalog,
    pub(crate) run: WorkflowRun,
    last_save: std::time::Instant,
}

impl Recorder {
    fn new(catalog: Catalog, run: WorkflowRun) -> Self {
        Self {
            catalog,
            run,
            last_save: std::time::Instant::now() - std::time::Duration::from_secs(10),
        }
    }

    /// Adds a log line and saves. The line goes to the process log at debug level only: it may
    /// name uploaded files, zip entries and cases (patients).
    pub(crate) async fn log(&mut self, line: String) {
        tracing::debug!(run = %self.run.id, workflow = %self.run.workflow, "{line}");
        self.run.log.push(line);
        let _ = self.save().await;
    }

    /// The run's parameters as the workflow's own type (`resolve_params` checked them when
    /// the run was started).
    pub(crate) fn params<P: serde::de::DeserializeOwned>(&self) -> Result<P, WorkflowError> {
        serde_json::from_value(self.run.params.clone()).map_err(|e| {
            WorkflowError::Fatal(format!(
                "the run's parameters do not fit {}: {e}",
                self.run.workflow
            ))
        })
    }

    /// Records a failed item.
    pub(crate) fn item_error(&mut self, item: &str, error: String) {
        self.run.errors.push(ItemError {
            item: item.to_string(),
            error,
        });
    }

    /// Adds a produced series (once).
    pub(crate) fn series(&mut self, uid: &str) {
        if !self.run.series.iter().any(|s| s == uid) {
            self.run.series.push(uid.to_string());
        }
    }

    /// Saves at most a few times a second.
    pub(crate) async fn progress(&mut self) {
        if self.last_save.elapsed() >= std::time::Duration::from_millis(300) {
            let _ = self.save().await;
        }
    }

    pub(crate) async fn save(&mut self) -> Result<(), WorkflowError> {
        self.last_save = std::time::Instant::now();
        self.catalog.update_workflow_run(&self.run).await?;
        Ok(())
    }
}
