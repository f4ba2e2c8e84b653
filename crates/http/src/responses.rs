//! The API's response bodies: this crate's own types, built from the catalog's, archive's and
//! workflows' values. Only these are serialized; the OpenAPI document's schemas are derived
//! from them (`utoipa::ToSchema`), so the document cannot describe a field the API does not
//! send, nor miss one it does.
//!
//! A field that is `Option` is sent as `null` when absent, never left out: the document marks
//! every field required.

use serde::Serialize;
use utoipa::ToSchema;

/// The bytes of a file, as a body of its own media type (a schema only: such bodies are
/// streamed, never built as a value).
pub struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}

impl ToSchema for FileBytes {}

/// Any error: a sentence that says what went wrong and, where the client can, what to do.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong. Failures of the server's own storage carry an error id that the
    /// server log has the details under.
    pub error: String,
}

/// `GET /api/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` (a catalog that does not answer makes the request fail instead).
    pub status: String,
    /// radport's version.
    pub version: String,
    /// The catalog's database: `sqlite` or `postgres`.
    pub catalog: String,
    /// Where the archive keeps its objects (a directory or an S3 bucket; no credentials).
    pub archive: String,
    /// How DICOM senders reach this deployment.
    pub deployment: Deployment,
}

/// `GET /api/health/live` and `GET /api/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    /// `ok`, or `unavailable` (readiness only, with status 503).
    pub status: String,
    /// What was checked and what it gave: `catalog`, `archive` → `ok` or the reason (no
    /// credentials, no database text). Empty for liveness.
    pub checks: std::collections::BTreeMap<String, String>,
}

/// Facts about a deployment that clients need to address it, shown by `/api/health` (the
/// Data Upload wizard builds its `dcmsend` command from them).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Deployment {
    /// Longest project or dataset name a DICOM sender can address (`kp-<name>` in an AE
    /// title of 16 characters).
    pub ae_title_name_limit: usize,
    /// Host name DICOM senders use.
    pub dicom_host: String,
    /// DICOM port.
    pub dicom_port: u16,
    /// DICOM TLS port, if the server has one.
    pub dicom_tls_port: Option<u16>,
    /// This server's AE title.
    pub ae_title: String,
    /// What happens to an instance that is already stored (`Keep`, `Overwrite`, …).
    pub duplicate_policy: String,
    /// Whether the OHIF viewer is installed and served at `/viewer/` (the web UI links to it).
    pub viewer: bool,
}

/// A project.
#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    /// Name as created (canonical spelling).
    pub name: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Series mapped to the project.
    pub series_count: i64,
    /// Datasets in the project.
    pub dataset_count: i64,
    /// Whether `kp-<name>` fits in an AE title (16 characters), so that DICOM senders can
    /// store into the project; longer names are reached by browser upload only.
    pub dicom_addressable: bool,
}

impl From<radport_catalog::Project> for Project {
    fn from(p: radport_catalog::Project) -> Self {
        Project {
            dicom_addressable: radport_catalog::reachable_by_ae_title(&p.name),
            name: p.name,
            created_at: p.created_at,
            series_count: p.series_count,
            dataset_count: p.dataset_count,
        }
    }
}

/// `GET /api/projects`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// Every project, `admin` first.
    pub items: Vec<Project>,
}

/// A dataset of a project.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dataset {
    /// Name as first used (canonical spelling).
    pub name: String,
    /// Canonical name of the project.
    pub project: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Series in the dataset.
    pub series_count: i64,
    /// Last time an instance was routed into the dataset, RFC 3339 UTC.
    #[schema(required = true)]
    pub last_arrival: Option<String>,
}

impl From<radport_catalog::Dataset> for Dataset {
    fn from(d: radport_catalog::Dataset) -> Self {
        Dataset {
            name: d.name,
            project: d.project,
            created_at: d.created_at,
            series_count: d.series_count,
            last_arrival: d.last_arrival,
        }
    }
}

/// `GET /api/projects/{project}/datasets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetList {
    /// The project's datasets.
    pub items: Vec<Dataset>,
}

/// A series as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesSummary {
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Patient ID (0010,0020).
    #[schema(required = true)]
    pub patient_id: Option<String>,
    /// Patient's Name (0010,0010).
    #[schema(required = true)]
    pub patient_name: Option<String>,
    /// Modality (0008,0060).
    #[schema(required = true)]
    pub modality: Option<String>,
    /// Study Date (0008,0020), `YYYYMMDD`.
    #[schema(required = true)]
    pub study_date: Option<String>,
    /// Study Description (0008,1030).
    #[schema(required = true)]
    pub study_description: Option<String>,
    /// Series Description (0008,103E).
    #[schema(required = true)]
    pub series_description: Option<String>,
    /// Body Part Examined (0018,0015).
    #[schema(required = true)]
    pub body_part_examined: Option<String>,
    /// Accession Number (0008,0050).
    #[schema(required = true)]
    pub accession_number: Option<String>,
    /// Series Number (0020,0011).
    #[schema(required = true)]
    pub series_number: Option<i64>,
    /// Dataset names, sorted: within the listed project in a list, all of them in a series'
    /// detail.
    pub datasets: Vec<String>,
    /// Instances stored.
    pub instance_count: i64,
    /// Bytes of the stored instances.
    pub total_size: i64,
    /// First time an instance of the series was stored, RFC 3339 UTC.
    pub first_arrival: String,
    /// Last time an instance of the series was stored or replaced, RFC 3339 UTC.
    pub last_arrival: String,
    /// Errors found by the last validation; `null`: not validated yet.
    #[schema(required = true)]
    pub validation_errors: Option<i64>,
    /// Warnings found by the last validation; `null`: not validated yet.
    #[schema(required = true)]
    pub validation_warnings: Option<i64>,
}

impl From<radport_catalog::SeriesSummary> for SeriesSummary {
    fn from(s: radport_catalog::SeriesSummary) -> Self {
        SeriesSummary {
            series_instance_uid: s.series_instance_uid,
            study_instance_uid: s.study_instance_uid,
            patient_id: s.patient_id,
            patient_name: s.patient_name,
            modality: s.modality,
            study_date: s.study_date,
            study_description: s.study_description,
            series_description: s.series_description,
            body_part_examined: s.body_part_examined,
            accession_number: s.accession_number,
            series_number: s.series_number,
            datasets: s.datasets,
            instance_count: s.instance_count,
            total_size: s.total_size,
            first_arrival: s.first_arrival,
            last_arrival: s.last_arrival,
            validation_errors: s.validation_errors,
            validation_warnings: s.validation_warnings,
        }
    }
}

/// `GET /api/projects/{project}/series`: one page of series.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesPage {
    /// Series matching the filter, on all pages.
    pub total: i64,
    /// This page.
    pub items: Vec<SeriesSummary>,
    /// Cursor of the next page (pass it as `after`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl From<radport_catalog::SeriesPage> for SeriesPage {
    fn from(p: radport_catalog::SeriesPage) -> Self {
        SeriesPage {
            total: p.total,
            items: p.items.into_iter().map(SeriesSummary::from).collect(),
            next: p.next,
        }
    }
}

/// One value of a facet and how many series have it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetValue {
    /// The value (`""` when the attribute is absent).
    pub value: String,
    /// Series with it, under the other filters.
    pub count: i64,
}

/// `GET /api/projects/{project}/facets`: counts per value of each filterable dimension. Each
/// facet counts under every filter but its own.
#[derive(Debug, Serialize, ToSchema)]
pub struct Facets {
    /// By Modality.
    pub modality: Vec<FacetValue>,
    /// By dataset.
    pub dataset: Vec<FacetValue>,
    /// By Body Part Examined.
    pub body_part: Vec<FacetValue>,
    /// By validation state: `errors`, `warnings`, `valid`, `unvalidated`.
    pub validation: Vec<FacetValue>,
}

impl From<radport_catalog::Facets> for Facets {
    fn from(f: radport_catalog::Facets) -> Self {
        let values = |v: Vec<radport_catalog::FacetValue>| {
            v.into_iter()
                .map(|v| FacetValue {
                    value: v.value,
                    count: v.count,
                })
                .collect()
        };
        Facets {
            modality: values(f.modality),
            dataset: values(f.dataset),
            body_part: values(f.body_part),
            validation: values(f.validation),
        }
    }
}

/// A stored instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Instance {
    /// SOP Instance UID (0008,0018).
    pub sop_instance_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Instance Number (0020,0013).
    #[schema(required = true)]
    pub instance_number: Option<i64>,
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: String,
    /// Transfer syntax of the stored object.
    pub transfer_syntax_uid: String,
    /// Bytes of the stored object.
    pub size: i64,
    /// Checksum of the stored object: algorithm, `:`, hex digest (`xxh128:…`, the XXH3-128
    /// hash as `xxhsum -H2` prints it; `blake3:…` for instances recorded before 2026-12-05,
    /// `sha256:…` before schema version 3).
    pub checksum: String,
    /// Rows (0028,0010).
    #[schema(required = true)]
    pub rows: Option<i64>,
    /// Columns (0028,0011).
    #[schema(required = true)]
    pub columns: Option<i64>,
    /// Number of Frames (0028,0008).
    #[schema(required = true)]
    pub number_of_frames: Option<i64>,
    /// When the stored object was recorded, RFC 3339 UTC.
    pub received_at: String,
}

impl From<radport_catalog::InstanceRow> for Instance {
    fn from(i: radport_catalog::InstanceRow) -> Self {
        Instance {
            sop_instance_uid: i.sop_instance_uid,
            series_instance_uid: i.series_instance_uid,
            instance_number: i.instance_number,
            sop_class_uid: i.sop_class_uid,
            transfer_syntax_uid: i.transfer_syntax_uid,
            size: i.size,
            checksum: i.checksum,
            rows: i.rows,
            columns: i.columns,
            number_of_frames: i.number_of_frames,
            received_at: i.received_at,
        }
    }
}

/// A (project, dataset) pair a series belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetMembership {
    /// Canonical project name.
    pub project: String,
    /// Canonical dataset name.
    pub dataset: String,
}

/// How complete a series looks from its Instance Numbers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Completeness {
    /// Instances stored.
    pub instance_count: i64,
    /// Lowest Instance Number, if any instance has one.
    #[schema(required = true)]
    pub min_instance_number: Option<i64>,
    /// Highest Instance Number, if any instance has one.
    #[schema(required = true)]
    pub max_instance_number: Option<i64>,
    /// Instance Numbers between the lowest and the highest that no instance has (at most
    /// 1000 listed).
    pub missing_instance_numbers: Vec<i64>,
    /// How many Instance Numbers are missing between the lowest and the highest.
    pub missing_count: i64,
    /// Instances without an Instance Number.
    pub without_instance_number: i64,
}

/// `GET /api/series/{series_uid}`: a series with its projects, instances and metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct SeriesDetail {
    /// The series; `datasets` holds every dataset name it is in.
    pub series: SeriesSummary,
    /// Canonical names of the projects the series is mapped to, sorted.
    pub projects: Vec<String>,
    /// Every (project, dataset) membership, sorted.
    pub dataset_memberships: Vec<DatasetMembership>,
    /// Instances by Instance Number (absent last), then SOP Instance UID.
    pub instances: Vec<Instance>,
    /// The DICOM JSON (PS3.18 F.2) of the middle instance, without bulk data; `null` when
    /// it could not be read.
    #[schema(value_type = Object, nullable, required = true)]
    pub metadata: serde_json::Value,
    /// Instance count and gaps in the Instance Numbers.
    pub completeness: Completeness,
}

impl From<radport_catalog::SeriesDetail> for SeriesDetail {
    fn from(d: radport_catalog::SeriesDetail) -> Self {
        let c = d.completeness;
        SeriesDetail {
            series: d.series.into(),
            projects: d.projects,
            dataset_memberships: d
                .dataset_memberships
                .into_iter()
                .map(|m| DatasetMembership {
                    project: m.project,
                    dataset: m.dataset,
                })
                .collect(),
            instances: d.instances.into_iter().map(Instance::from).collect(),
            metadata: d.metadata,
            completeness: Completeness {
                instance_count: c.instance_count,
                min_instance_number: c.min_instance_number,
                max_instance_number: c.max_instance_number,
                missing_instance_numbers: c.missing_instance_numbers,
                missing_count: c.missing_count,
                without_instance_number: c.without_instance_number,
            },
        }
    }
}

/// How serious a validation finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object breaks the standard.
    Error,
    /// The object is unusual or deprecated.
    Warning,
}

/// One finding of a validation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Finding {
    /// The instance it is about; `null` for findings about the series.
    #[schema(required = true)]
    pub sop_instance_uid: Option<String>,
    /// Error or warning.
    pub severity: Severity,
    /// Path of the attribute, e.g. `(0008,1115)[0]/(0020,000E)`; empty for the instance.
    pub tag_path: String,
    /// Keyword of the attribute.
    pub keyword: String,
    /// Module of the IOD, if known.
    #[schema(required = true)]
    pub module: Option<String>,
    /// What is wrong, for a person.
    pub message: String,
}

/// `GET /api/series/{series_uid}/validation`: the last validation of a series.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validation {
    /// Series Instance UID.
    pub series_uid: String,
    /// Instances validated.
    pub instances_checked: i64,
    /// Error findings.
    pub errors: i64,
    /// Warning findings.
    pub warnings: i64,
    /// IODs the instances were checked against.
    pub iods: Vec<String>,
    /// Archive key of the HTML report (served at `…/validation/report`).
    pub report_key: String,
    /// When, RFC 3339 UTC.
    pub validated_at: String,
    /// The findings, in the order recorded.
    pub findings: Vec<Finding>,
}

impl From<radport_catalog::SeriesValidation> for Validation {
    fn from(v: radport_catalog::SeriesValidation) -> Self {
        Validation {
            series_uid: v.series_uid,
            instances_checked: v.instances_checked,
            errors: v.errors,
            warnings: v.warnings,
            iods: v.iods,
            report_key: v.report_key,
            validated_at: v.validated_at,
            findings: v
                .findings
                .into_iter()
                .map(|f| Finding {
                    sop_instance_uid: f.sop_instance_uid,
                    severity: if f.severity == "error" {
                        Severity::Error
                    } else {
                        Severity::Warning
                    },
                    tag_path: f.tag_path,
                    keyword: f.keyword,
                    module: f.module,
                    message: f.message,
                })
                .collect(),
        }
    }
}

/// `POST /api/series/{series_uid}/verify`: the queued verification.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerificationQueued {
    /// The job that verifies the series (see `GET /api/jobs`).
    pub job_id: String,
    /// The series verified.
    pub series_instance_uid: String,
}

/// State of a job or a workflow run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting to start.
    Queued,
    /// Started and not ended.
    Running,
    /// Ended well.
    Succeeded,
    /// Ended with an error (a job: out of attempts).
    Failed,
}

impl From<radport_catalog::JobState> for State {
    fn from(s: radport_catalog::JobState) -> Self {
        use radport_catalog::JobState as J;
        match s {
            J::Queued => State::Queued,
            J::Running => State::Running,
            J::Succeeded => State::Succeeded,
            J::Failed => State::Failed,
        }
    }
}

impl From<State> for radport_catalog::JobState {
    fn from(s: State) -> Self {
        use radport_catalog::JobState as J;
        match s {
            State::Queued => J::Queued,
            State::Running => J::Running,
            State::Succeeded => J::Succeeded,
            State::Failed => J::Failed,
        }
    }
}

/// What a job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Renders the series' thumbnail.
    Thumbnail,
    /// Validates the series against the standard.
    Validate,
    /// Reads the series' stored files back and compares their checksums.
    Verify,
    /// Executes a workflow run (`payload.run` names it).
    Workflow,
}

impl From<radport_catalog::JobKind> for JobKind {
    fn from(k: radport_catalog::JobKind) -> Self {
        use radport_catalog::JobKind as K;
        match k {
            K::Thumbnail => JobKind::Thumbnail,
            K::Validate => JobKind::Validate,
            K::Verify => JobKind::Verify,
            K::Workflow => JobKind::Workflow,
        }
    }
}

impl From<JobKind> for radport_catalog::JobKind {
    fn from(k: JobKind) -> Self {
        use radport_catalog::JobKind as K;
        match k {
            JobKind::Thumbnail => K::Thumbnail,
            JobKind::Validate => K::Validate,
            JobKind::Verify => K::Verify,
            JobKind::Workflow => K::Workflow,
        }
    }
}

/// A job of the queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    /// Identifier.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// The series it is about, if any.
    #[schema(required = true)]
    pub series_uid: Option<String>,
    /// Parameters of the job.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Where it is.
    pub state: State,
    /// Attempts started.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Not started before this time, RFC 3339 UTC.
    pub run_after: String,
    /// Error of the last failed attempt.
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// Worker that holds (or last held) the job.
    #[schema(required = true)]
    pub worker: Option<String>,
    /// Queued at, RFC 3339 UTC.
    pub created_at: String,
    /// Last change, RFC 3339 UTC.
    pub updated_at: String,
    /// When it succeeded or finally failed, RFC 3339 UTC.
    #[schema(required = true)]
    pub finished_at: Option<String>,
}

impl From<radport_catalog::Job> for Job {
    fn from(j: radport_catalog::Job) -> Self {
        Job {
            id: j.id,
            kind: j.kind.into(),
            series_uid: j.series_uid,
            payload: j.payload,
            state: j.state.into(),
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_after: j.run_after,
            last_error: j.last_error,
            worker: j.worker,
            created_at: j.created_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
        }
    }
}

/// `GET /api/jobs`: a page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// Jobs matching the filter, on all pages.
    pub total: i64,
    /// This page.
    pub items: Vec<Job>,
}

impl From<radport_catalog::JobPage> for JobPage {
    fn from(p: radport_catalog::JobPage) -> Self {
        JobPage {
            total: p.total,
            items: p.items.into_iter().map(Job::from).collect(),
        }
    }
}

/// Type of a workflow parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// Text.
    String,
    /// `true` or `false`.
    Boolean,
}

/// One parameter of a workflow.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowParameter {
    /// Name, as a key of the run's parameters.
    pub name: String,
    /// Type of its value.
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Value when not given; `null` for a required parameter.
    #[schema(required = true)]
    pub default: serde_json::Value,
    /// Whether it must be given.
    pub required: bool,
    /// What it means.
    pub description: String,
}

/// A workflow that can be run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Workflow {
    /// Name (in `POST /api/workflows/{name}/runs`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// Its parameters.
    pub parameters: Vec<WorkflowParameter>,
}

impl From<radport_workflows::WorkflowSpec> for Workflow {
    fn from(w: radport_workflows::WorkflowSpec) -> Self {
        Workflow {
            name: w.name.to_string(),
            description: w.description.to_string(),
            parameters: w
                .parameters
                .into_iter()
                .map(|p| WorkflowParameter {
                    name: p.name.to_string(),
                    kind: match p.kind {
                        radport_workflows::ParamType::String => ParameterType::String,
                        radport_workflows::ParamType::Boolean => ParameterType::Boolean,
                    },
                    default: p.default,
                    required: p.required,
                    description: p.description.to_string(),
                })
                .collect(),
        }
    }
}

/// `GET /api/workflows`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    /// Every workflow.
    pub items: Vec<Workflow>,
}

/// Progress of a workflow run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Progress {
    /// Items done (imported or failed).
    pub done: i64,
    /// Items in all (0 while unknown).
    pub total: i64,
}

/// An item of a run that failed, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemError {
    /// The item: an entry of the zip, or a case of a NIfTI dataset.
    pub item: String,
    /// Why it failed.
    pub error: String,
}

/// A workflow run.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowRun {
    /// Identifier.
    pub id: String,
    /// Name of the workflow.
    pub workflow: String,
    /// Parameters, defaults filled in.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// Where it is.
    pub state: State,
    /// Items done and in all.
    pub progress: Progress,
    /// Items that failed.
    pub errors: Vec<ItemError>,
    /// What the run did, line by line.
    pub log: Vec<String>,
    /// Series Instance UIDs produced.
    pub series: Vec<String>,
    /// Created at, RFC 3339 UTC.
    pub created_at: String,
    /// Last change, RFC 3339 UTC.
    pub updated_at: String,
    /// When it ended, RFC 3339 UTC.
    #[schema(required = true)]
    pub finished_at: Option<String>,
}

impl From<radport_catalog::RunState> for State {
    fn from(s: radport_catalog::RunState) -> Self {
        use radport_catalog::RunState as R;
        match s {
            R::Queued => State::Queued,
            R::Running => State::Running,
            R::Succeeded => State::Succeeded,
            R::Failed => State::Failed,
        }
    }
}

impl From<radport_catalog::WorkflowRun> for WorkflowRun {
    fn from(r: radport_catalog::WorkflowRun) -> Self {
        WorkflowRun {
            id: r.id,
            workflow: r.workflow,
            params: r.params,
            state: r.state.into(),
            progress: Progress {
                done: r.progress.done,
                total: r.progress.total,
            },
            errors: r
                .errors
                .into_iter()
                .map(|e| ItemError {
                    item: e.item,
                    error: e.error,
                })
                .collect(),
            log: r.log,
            series: r.series,
            created_at: r.created_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

/// `GET /api/workflow-runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowRunList {
    /// Runs, newest first.
    pub items: Vec<WorkflowRun>,
}

/// An uploaded file.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedFile {
    /// Path inside the uploads area (in `GET /api/files/{path}` and a workflow's `file`).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Last modification, RFC 3339.
    pub modified: String,
}

/// `GET /api/files`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedFileList {
    /// The uploaded files, by path.
    pub items: Vec<UploadedFile>,
}

/// A role in a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// Sees the project's data.
    Viewer,
    /// Also uploads, imports and sends into it.
    Contributor,
    /// Also manages its members and deletes its series.
    Manager,
}

impl From<radport_catalog::Role> for RoleName {
    fn from(r: radport_catalog::Role) -> Self {
        match r {
            radport_catalog::Role::Viewer => RoleName::Viewer,
            radport_catalog::Role::Contributor => RoleName::Contributor,
            radport_catalog::Role::Manager => RoleName::Manager,
        }
    }
}

impl From<RoleName> for radport_catalog::Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::Viewer => radport_catalog::Role::Viewer,
            RoleName::Contributor => radport_catalog::Role::Contributor,
            RoleName::Manager => radport_catalog::Role::Manager,
        }
    }
}

/// A role in one project.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectRole {
    /// Project (canonical name, lower case).
    pub project: String,
    /// The role in it.
    pub role: RoleName,
}

/// `GET /api/session`: who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// `open` (everyone may do everything) or `enforced`.
    pub access: String,
    /// Whether the request carried valid credentials.
    pub signed_in: bool,
    /// The account.
    #[schema(required = true)]
    pub user: Option<String>,
    /// Global administrator (everyone is, with open access).
    pub admin: bool,
    /// The password must be changed before anything else.
    pub must_change_password: bool,
    /// The caller's projects and roles (administrators: empty, they have every project).
    pub projects: Vec<ProjectRole>,
    /// Single sign-on, if this server offers it (`null`: local accounts only).
    #[schema(required = true)]
    pub single_sign_on: Option<SingleSignOnOption>,
}

/// Single sign-on as the sign-in page offers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SingleSignOnOption {
    /// The button's text: "Sign in with {display_name}".
    pub display_name: String,
    /// Where the button goes (add `?return_to=/#/…`).
    pub login: String,
}

/// A token just made: its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    /// The token to pass as `Authorization: Bearer <token>`; not stored, not shown again.
    pub token: String,
    /// What is stored of it.
    pub info: TokenInfo,
}

/// A token as stored (without its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    /// Identifier.
    pub id: String,
    /// The user it acts for.
    pub user: String,
    /// Its name.
    pub name: String,
    /// Highest role it acts with; `null`: its user's.
    #[schema(required = true)]
    pub role: Option<RoleName>,
    /// Projects it may act in; `null`: every project of its user.
    #[schema(required = true)]
    pub projects: Option<Vec<String>>,
    /// Not accepted after this time, RFC 3339 UTC.
    #[schema(required = true)]
    pub expires_at: Option<String>,
    /// Made at.
    pub created_at: String,
    /// Revoked at.
    #[schema(required = true)]
    pub revoked_at: Option<String>,
    /// Last accepted at (recorded at most once a minute).
    #[schema(required = true)]
    pub last_used_at: Option<String>,
}

impl From<radport_catalog::Token> for TokenInfo {
    fn from(t: radport_catalog::Token) -> Self {
        TokenInfo {
            id: t.id,
            user: t.user,
            name: t.name,
            role: t.role.map(Into::into),
            projects: t.projects,
            expires_at: t.expires_at,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
        }
    }
}

/// `GET /api/tokens`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// The caller's tokens, newest first.
    pub items: Vec<TokenInfo>,
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserInfo {
    /// Name.
    pub name: String,
    /// Global administrator.
    pub admin: bool,
    /// Cannot sign in, and its tokens do not work.
    pub disabled: bool,
    /// Must change the password at the next sign-in.
    pub must_change_password: bool,
    /// Created at.
    pub created_at: String,
    /// Projects and roles.
    pub projects: Vec<ProjectRole>,
}

/// `GET /api/users`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Every account, by name.
    pub items: Vec<UserInfo>,
}

/// `POST /api/users` and password resets: the account, and a password drawn for it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    /// The account.
    pub user: UserInfo,
    /// The password drawn for it, shown this once (to be changed at the first sign-in);
    /// `null` when one was given.
    #[schema(required = true)]
    pub password: Option<String>,
}

/// A member of a project.
#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    /// The account.
    pub user: String,
    /// The role.
    pub role: RoleName,
}

/// `GET /api/projects/{project}/members`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    /// The members, by name.
    pub items: Vec<Member>,
}

/// How an audited request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// Done.
    Success,
    /// Refused: no credentials, or roles that do not allow it.
    Refused,
    /// Allowed, but failed.
    Failure,
}

impl From<radport_catalog::Outcome> for AuditOutcome {
    fn from(o: radport_catalog::Outcome) -> Self {
        match o {
            radport_catalog::Outcome::Success => AuditOutcome::Success,
            radport_catalog::Outcome::Refused => AuditOutcome::Refused,
            radport_catalog::Outcome::Failure => AuditOutcome::Failure,
        }
    }
}

impl From<AuditOutcome> for radport_catalog::Outcome {
    fn from(o: AuditOutcome) -> Self {
        match o {
            AuditOutcome::Success => radport_catalog::Outcome::Success,
            AuditOutcome::Refused => radport_catalog::Outcome::Refused,
            AuditOutcome::Failure => radport_catalog::Outcome::Failure,
        }
    }
}

/// One event of the audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEvent {
    /// Identifier (sorts as recorded).
    pub id: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Who: a user name, `anonymous`, `open access`, or the name given at a sign-in.
    pub actor: String,
    /// From where: the client's IP address.
    pub address: String,
    /// What: `sign-in`, `read series`, `download instance`, `view frame`, `download series`,
    /// `read validation report`, `download file`, or the method and route of a change.
    pub action: String,
    /// On what: the route's parameters (UIDs, project, user; never a file's name).
    pub target: String,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The HTTP status, or why a sign-in was refused.
    pub detail: String,
}

/// `GET /api/audit`: a page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Events matching the filter, on all pages.
    pub total: i64,
    /// This page.
    pub items: Vec<AuditEvent>,
}

impl From<radport_catalog::AuditPage> for AuditPage {
    fn from(p: radport_catalog::AuditPage) -> Self {
        AuditPage {
            total: p.total,
            items: p
                .items
                .into_iter()
                .map(|e| AuditEvent {
                    id: e.id,
                    at: e.at,
                    actor: e.actor,
                    address: e.address,
                    action: e.action,
                    target: e.target,
                    outcome: e.outcome.into(),
                    detail: e.detail,
                })
                .collect(),
        }
    }
}

/// Which DICOM peers may store into a project (`GET` and `PUT
/// /api/projects/{project}/dicom-rules`). An empty list allows anyone for its part: a project
/// without rules takes instances from any sender.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct DicomRules {
    /// Calling AE titles allowed (1 to 16 characters each).
    #[serde(default)]
    pub calling_ae_titles: Vec<String>,
    /// Networks allowed, in CIDR form (`10.1.0.0/16`, `2001:db8::/32`) or single addresses.
    #[serde(default)]
    pub networks: Vec<String>,
}

impl From<radport_catalog::DicomRules> for DicomRules {
    fn from(r: radport_catalog::DicomRules) -> Self {
        DicomRules {
            calling_ae_titles: r.calling_ae_titles,
            networks: r.networks,
        }
    }
}

/// A C-MOVE destination of a project: the AE title C-MOVE requests name and where it
/// listens.
#[derive(Debug, Serialize, ToSchema)]
pub struct DicomDestination {
    /// AE title (1 to 16 characters).
    pub ae_title: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Free text.
    pub description: String,
}

impl From<radport_catalog::MoveDestination> for DicomDestination {
    fn from(d: radport_catalog::MoveDestination) -> Self {
        DicomDestination {
            ae_title: d.ae_title,
            host: d.host,
            port: d.port,
            description: d.description,
        }
    }
}

/// A project's C-MOVE destinations, by AE title.
#[derive(Debug, Serialize, ToSchema)]
pub struct DicomDestinationList {
    /// The destinations.
    pub destinations: Vec<DicomDestination>,
}

/// What an erasure removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erasure {
    /// Series UIDs erased.
    pub series: Vec<String>,
    /// Instances erased.
    pub instances: u64,
    /// Studies erased (no series of them was left).
    pub studies: u64,
    /// Patients erased (no study of them was left).
    pub patients: u64,
    /// Archive objects deleted: instance files, thumbnails, reports (a missing one counts).
    pub objects_deleted: u64,
    /// Deletes that failed; the collector removes those objects later (nothing references
    /// them any more).
    pub objects_failed: u64,
}

impl From<radport_collector::Erasure> for Erasure {
    fn from(e: radport_collector::Erasure) -> Self {
        Erasure {
            series: e.erased.series,
            instances: e.erased.instances,
            studies: e.erased.studies,
            patients: e.erased.patients,
            objects_deleted: e.objects_deleted,
            objects_failed: e.objects_failed,
        }
    }
}

/// The series of a project that no other project holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnsharedSeries {
    /// How many: deleting the project with `erase_unshared_series=true` erases them.
    pub count: u64,
}
