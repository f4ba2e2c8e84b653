//! The HTTP API: a thin JSON layer over the catalog and the archive.
//!
//! Handlers validate input, call one catalog or archive function and shape the answer; no
//! business rule lives here. Errors are JSON `{"error": "..."}` with a status code that says
//! what kind of problem it is. The OpenAPI document is served at `/api/openapi.json`.

#![warn(missing_docs)]

mod openapi;
pub mod preview;
pub mod server;
mod ui;
pub mod uploads;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use radport_archive::{Archive, ArchiveError};
use radport_catalog::{Catalog, CatalogError, JobFilter, SeriesFilter};
use serde::Deserialize;
use serde_json::json;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The catalog.
    pub catalog: Catalog,
    /// The archive.
    pub archive: Archive,
    /// Facts about this deployment shown by `/api/health` (e.g. DIMSE port, AE title).
    pub deployment: serde_json::Value,
    /// Limits of uploads.
    pub uploads: uploads::UploadSettings,
    /// Starts workflow runs.
    pub workflows: radport_workflows::Workflows,
    /// Draws instances for `/rendered` (`None`: that endpoint answers 501).
    pub rendering: Option<preview::FrameRendering>,
    /// Reads of stored files for downloads.
    pub downloads: Downloads,
    /// Largest body of the JSON endpoints (everything but tus PATCH), in bytes.
    pub max_json_body: usize,
}

/// Default of [`AppState::max_json_body`]: 1 MiB, far above any request of the API.
pub const DEFAULT_MAX_JSON_BODY: usize = 1024 * 1024;

/// Downloads (series zips, instances, uploaded files) read stored files through a small
/// number of permits, taken for each piece read and given back before the piece is sent.
///
/// A download never holds a thread or a permit while its client is slow to read: it reads
/// the next piece only when the connection asks for it. So the archive's blocking threads,
/// which local writes of received instances need, are used by at most `concurrent_reads`
/// downloads at any moment, however many slow clients there are.
#[derive(Clone, Debug)]
pub struct Downloads {
    reads: Arc<tokio::sync::Semaphore>,
}

impl Downloads {
    /// At most `concurrent_reads` pieces of stored files read at once for downloads.
    pub fn new(concurrent_reads: usize) -> Self {
        Self {
            reads: Arc::new(tokio::sync::Semaphore::new(concurrent_reads.max(1))),
        }
    }

    /// A stream of a stored object's pieces, each read under a permit.
    pub(crate) fn throttled(
        &self,
        stream: futures::stream::BoxStream<'static, Result<bytes::Bytes, ArchiveError>>,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
        let reads = self.reads.clone();
        futures::stream::unfold((stream, reads), |(mut stream, reads)| async move {
            let item = {
                let _permit = reads.acquire().await.ok();
                futures::StreamExt::next(&mut stream).await
            }?;
            Some((item.map_err(read_failed), (stream, reads)))
        })
    }
}

impl Default for Downloads {
    fn default() -> Self {
        Self::new(16)
    }
}

fn read_failed(e: ArchiveError) -> std::io::Error {
    tracing::warn!(
        error = %without_file_names(&e.to_string()),
        "reading a stored file for a download failed"
    );
    std::io::Error::other("reading a stored file failed")
}

/// An error answered as JSON with a status code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, error = %without_file_names(&self.message),
                "request failed");
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl ApiError {
    /// A failure whose detail (database or storage error text, which may name tables, values
    /// or paths) is logged under a fresh id and not sent: the client gets the id to quote.
    pub(crate) fn internal(status: StatusCode, what: &str, detail: &dyn std::fmt::Display) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let id = &id[..12];
        tracing::error!(error_id = id, error = %without_file_names(&detail.to_string()), "{what}");
        ApiError::new(
            status,
            format!("{what}; the server log has the details under error id {id}"),
        )
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let status = match &e {
            CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
            CatalogError::Conflict(_) => StatusCode::CONFLICT,
            CatalogError::Invalid(_) => StatusCode::BAD_REQUEST,
            CatalogError::Database(_) if e.is_transient() => {
                return ApiError::internal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the catalog is busy; try again",
                    &e,
                )
            }
            CatalogError::Database(_) => {
                return ApiError::internal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the catalog failed",
                    &e,
                )
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        match &e {
            ArchiveError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            ArchiveError::InvalidKey(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            ArchiveError::OutOfSpace(_) => ApiError::internal(
                StatusCode::INSUFFICIENT_STORAGE,
                "the archive is out of space",
                &e,
            ),
            ArchiveError::Storage(_) => {
                ApiError::internal(StatusCode::INTERNAL_SERVER_ERROR, "the archive failed", &e)
            }
        }
    }
}

/// `text` with the names of uploaded files (archive keys and paths under `uploads/`, which
/// carry patient names as often as not) replaced by `uploads/[file]`, for logs at info level
/// and above.
pub fn without_file_names(text: &str) -> String {
    const MARK: &str = "uploads/";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(MARK) {
        let (before, after) = rest.split_at(i + MARK.len());
        out.push_str(before);
        // A name may hold spaces: it ends at a quote, bracket, comma, line end or ": ".
        let end = after
            .char_indices()
            .find(|&(k, c)| {
                matches!(c, '"' | '\'' | '`' | ')' | ']' | '}' | ',' | '\n' | '\r')
                    || (c == ':' && after[k..].starts_with(": "))
            })
            .map_or(after.len(), |(k, _)| k);
        // `upload-parts/<id>/…` names no file: keep it.
        if before.ends_with("upload-parts/") || end == 0 {
            out.push_str(&after[..end]);
        } else {
            out.push_str("[file]");
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A 400 for a JSON body that could not be read, or the rejection's own status where it says
/// more (413 past the body limit, 415 without a JSON content type).
fn json_rejection(e: axum::extract::rejection::JsonRejection, expected: &str) -> ApiError {
    let status = match e.status() {
        s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
        _ => StatusCode::BAD_REQUEST,
    };
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "the request body is larger than this endpoint accepts",
        );
    }
    ApiError::new(status, format!("expected {expected}: {e}"))
}

/// True for a DICOM UID: 1 to 64 characters, dot-separated components of digits.
pub fn is_dicom_uid(uid: &str) -> bool {
    (1..=64).contains(&uid.len())
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// A UID as it may appear in a file name: itself if it is a valid UID, else a stand-in
/// derived from it (UIDs come from the wire; `..`, `/` or control characters must not reach
/// a zip entry name or a `Content-Disposition`).
pub fn uid_for_file_name(uid: &str) -> String {
    if is_dicom_uid(uid) {
        uid.to_string()
    } else {
        format!("invalid-uid-{:016x}", fnv1a(uid.as_bytes()))
    }
}

/// `attachment` with a file name safe to save anywhere: the last path part, without control,
/// format (bidi) or path characters, at most 200 bytes; an ASCII `filename` for old clients
/// and the UTF-8 name as RFC 6266 / RFC 5987 `filename*`.
pub fn attachment(filename: &str) -> String {
    let last = filename.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut safe = String::new();
    for c in last.chars() {
        if c.is_control() || is_format_char(c) {
            continue;
        }
        let c = if matches!(c, ':' | '"' | '*' | '?' | '<' | '>' | '|' | ';' | '%') {
            '_'
        } else {
            c
        };
        if safe.len() + c.len_utf8() > 200 {
            break;
        }
        safe.push(c);
    }
    let safe = safe.trim_matches(|c: char| c == '.' || c.is_whitespace());
    let safe = if safe.is_empty() { "download" } else { safe };
    let ascii: String = safe
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '(' | ')' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in safe.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Unicode format characters that reorder or hide text (bidi overrides, zero-width marks).
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The router of the whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi_document))
        .route("/api/projects", get(list_projects).post(create_project))
        .route(
            "/api/projects/{project}",
            axum::routing::delete(delete_project),
        )
        .route("/api/projects/{project}/datasets", get(list_datasets))
        .route("/api/projects/{project}/series", get(list_series))
        .route("/api/projects/{project}/facets", get(series_facets))
        .route("/api/series/{series_uid}", get(get_series))
        .route(
            "/api/series/{series_uid}/instances/{sop_instance_uid}",
            get(get_instance_file),
        )
        .route(
            "/api/series/{series_uid}/instances/{sop_instance_uid}/rendered",
            get(preview::get_rendered_instance),
        )
        .route("/api/series/{series_uid}/thumbnail", get(get_thumbnail))
        .route("/api/series/{series_uid}/download", get(download_series))
        .route("/api/series/{series_uid}/validation", get(get_validation))
        .route(
            "/api/series/{series_uid}/validation/report",
            get(get_validation_report),
        )
        .route(
            "/api/series/{series_uid}/verify",
            axum::routing::post(verify_series),
        )
        .route("/api/jobs", get(list_jobs))
        .route(
            "/api/uploads",
            axum::routing::post(uploads::create).options(uploads::options),
        )
        .route(
            "/api/uploads/{id}",
            axum::routing::head(uploads::head)
                .patch(uploads::patch)
                .delete(uploads::terminate)
                .options(uploads::options),
        )
        .route("/api/workflows", get(list_workflows))
        .route(
            "/api/workflows/{name}/runs",
            axum::routing::post(start_workflow_run),
        )
        .route("/api/workflow-runs", get(list_workflow_runs))
        .route("/api/workflow-runs/{id}", get(get_workflow_run))
        .route("/api/files", get(uploads::list_files))
        .route(
            "/api/files/{*path}",
            get(uploads::get_file).delete(uploads::delete_file),
        )
        .merge(ui::routes())
        .fallback(not_found)
        // Bodies read by extractors (JSON); tus PATCH streams its body and is bounded by
        // the upload's length instead.
        .layer(DefaultBodyLimit::max(state.max_json_body))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /api/openapi.json",
    )
}

async fn openapi_document() -> Json<serde_json::Value> {
    Json(openapi::document())
}

async fn health(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    // A cheap query proves the catalog answers.
    state.catalog.list_projects().await?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "catalog": format!("{:?}", state.catalog.dialect()).to_lowercase(),
        "archive": state.archive.description(),
        "deployment": state.deployment,
    })))
}

/// A project as the API shows it: the catalog's row, and whether DICOM senders can reach it.
#[derive(serde::Serialize)]
struct ProjectResponse {
    #[serde(flatten)]
    project: radport_catalog::Project,
    /// `kp-<name>` fits in an AE title (16 characters): see
    /// [`radport_catalog::MAX_AE_TITLE_NAME`].
    dicom_addressable: bool,
}

impl From<radport_catalog::Project> for ProjectResponse {
    fn from(project: radport_catalog::Project) -> Self {
        let dicom_addressable = radport_catalog::reachable_by_ae_title(&project.name);
        ProjectResponse {
            project,
            dicom_addressable,
        }
    }
}

async fn list_projects(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let items: Vec<ProjectResponse> = state
        .catalog
        .list_projects()
        .await?
        .into_iter()
        .map(ProjectResponse::from)
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
struct CreateProject {
    name: String,
}

async fn create_project(
    State(state): State<AppState>,
    body: Result<Json<CreateProject>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let Json(body) =
        body.map_err(|e| json_rejection(e, "a JSON body like {\"name\": \"my-project\"}"))?;
    let project = state.catalog.create_project(body.name.trim()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!(ProjectResponse::from(project))),
    ))
}

async fn delete_project(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalog.delete_project(&project).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_datasets(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let items = state.catalog.list_datasets(&project).await?;
    Ok(Json(json!({ "items": items })))
}

async fn list_series(
    State(state): State<AppState>,
    Path(project): Path<String>,
    query: Result<Query<SeriesFilter>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    // Dates, limit and offset are checked by the catalog (a 400 that says what is wrong).
    let Query(filter) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let page = state.catalog.list_series(&project, &filter).await?;
    Ok(Json(json!(page)))
}

async fn series_facets(
    State(state): State<AppState>,
    Path(project): Path<String>,
    query: Result<Query<SeriesFilter>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(filter) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    Ok(Json(json!(
        state.catalog.series_facets(&project, &filter).await?
    )))
}

/// The series, or a 404 that names it.
async fn series_or_404(
    state: &AppState,
    series_uid: &str,
) -> ApiResult<radport_catalog::SeriesDetail> {
    state.catalog.get_series(series_uid).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("series {series_uid} is not in the catalog"),
        )
    })
}

async fn get_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let detail = series_or_404(&state, &series_uid).await?;
    Ok(Json(json!(detail)))
}

async fn list_jobs(
    State(state): State<AppState>,
    query: Result<Query<JobFilter>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(filter) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    Ok(Json(json!(state.catalog.list_jobs(&filter).await?)))
}

async fn get_thumbnail(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    if !series_uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') || series_uid.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "a series UID has only digits and dots",
        ));
    }
    let bytes = match state
        .archive
        .get(&radport_archive::keys::thumbnail(&series_uid))
        .await
    {
        Ok(b) => b,
        Err(ArchiveError::NotFound(_)) => {
            let known = state.catalog.get_series(&series_uid).await?.is_some();
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                if known {
                    format!("the thumbnail of series {series_uid} is not rendered yet (the series is rendered once it has been idle for the stable time)")
                } else {
                    format!("series {series_uid} is not in the catalog")
                },
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // The thumbnail changes when a series grows: validate with an ETag instead of caching long.
    let etag = format!("\"{:016x}\"", fnv1a(&bytes));
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (
                header::CACHE_CONTROL,
                "public, max-age=60, must-revalidate".to_string(),
            ),
            (header::ETAG, etag),
        ],
        bytes,
    )
        .into_response())
}

/// Job kind of a verification (the pipeline's `worker::VERIFY`, which runs it).
const VERIFY_JOB: &str = "verify";

async fn verify_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    if state.catalog.get_series(&series_uid).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("series {series_uid} is not in the catalog"),
        ));
    }
    let queued = state
        .catalog
        .enqueue_job(&radport_catalog::NewJob {
            kind: VERIFY_JOB.to_string(),
            series_uid: Some(series_uid.clone()),
            payload: json!({}),
            // A file that differs does not heal: no retries.
            max_attempts: 1,
        })
        .await?;
    let job_id = match queued {
        Some(id) => id,
        // Already queued and not started: that job answers this request too.
        None => {
            let waiting = state
                .catalog
                .list_jobs(&JobFilter {
                    state: Some("queued".into()),
                    kind: Some(VERIFY_JOB.into()),
                    series: Some(series_uid.clone()),
                    limit: Some(1),
                    offset: None,
                })
                .await?;
            waiting
                .items
                .into_iter()
                .next()
                .map(|job| job.id)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::CONFLICT,
                        "a verification of this series was just started; ask again",
                    )
                })?
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": job_id, "series_instance_uid": series_uid})),
    ))
}

async fn get_validation(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    match state.catalog.get_validation(&series_uid).await? {
        Some(v) => Ok(Json(json!(v))),
        None => Err(not_validated(&state, &series_uid).await?),
    }
}

async fn not_validated(state: &AppState, series_uid: &str) -> ApiResult<ApiError> {
    let known = state.catalog.get_series(series_uid).await?.is_some();
    Ok(ApiError::new(
        StatusCode::NOT_FOUND,
        if known {
            format!("series {series_uid} is not validated yet (it is once it has been idle for the stable time)")
        } else {
            format!("series {series_uid} is not in the catalog")
        },
    ))
}

async fn get_validation_report(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Response> {
    let Some(v) = state.catalog.get_validation(&series_uid).await? else {
        return Err(not_validated(&state, &series_uid).await?);
    };
    let bytes = state.archive.get(&v.report_key).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The report holds DICOM values: forbid scripts whatever it contains.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response())
}

impl From<radport_workflows::WorkflowError> for ApiError {
    fn from(e: radport_workflows::WorkflowError) -> Self {
        use radport_workflows::WorkflowError as W;
        match e {
            W::UnknownWorkflow(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            W::BadParameters(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            W::Catalog(c) => c.into(),
            W::Archive(a) => a.into(),
            W::Fatal(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

async fn list_workflows() -> Json<serde_json::Value> {
    Json(json!({ "items": radport_workflows::definitions() }))
}

async fn start_workflow_run(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let Json(params) = body.map_err(|e| json_rejection(e, "the parameters as a JSON object"))?;
    let run = state.workflows.start(&name, &params).await?;
    Ok((StatusCode::CREATED, Json(json!(run))))
}

#[derive(Deserialize)]
struct RunsQuery {
    limit: Option<i64>,
}

async fn list_workflow_runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let items = state
        .catalog
        .list_workflow_runs(q.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({ "items": items })))
}

async fn get_workflow_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let run = state
        .catalog
        .get_workflow_run(&id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no workflow run {id}")))?;
    Ok(Json(json!(run)))
}

/// A fast, stable 64-bit hash for ETags (not for security).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The bytes the zip writer produced and the download has not sent yet.
#[derive(Clone, Default)]
struct ZipOutput(Arc<std::sync::Mutex<Vec<u8>>>);

impl ZipOutput {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn take(&self) -> bytes::Bytes {
        bytes::Bytes::from(std::mem::take(&mut *self.lock()))
    }
}

impl std::io::Write for ZipOutput {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sent to the client once this much zip output is ready.
const ZIP_PIECE: usize = 32 * 1024;

/// A series zip being produced: the zip writer runs on the async side, one stored piece at a
/// time and only when the client asks for more (CRC and copying only, no blocking I/O), so a
/// slow client holds no thread and at most one piece of memory.
struct SeriesZip {
    zip: Option<zip::ZipWriter<zip::write::StreamWriter<ZipOutput>>>,
    out: ZipOutput,
    files: std::vec::IntoIter<(String, String)>,
    current: Option<futures::stream::BoxStream<'static, Result<bytes::Bytes, ArchiveError>>>,
    archive: Archive,
    downloads: Downloads,
}

impl SeriesZip {
    async fn next_piece(&mut self) -> Option<Result<bytes::Bytes, std::io::Error>> {
        use std::io::Write;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        loop {
            if self.out.len() >= ZIP_PIECE {
                return Some(Ok(self.out.take()));
            }
            let Some(zip) = self.zip.as_mut() else {
                return (self.out.len() > 0).then(|| Ok(self.out.take()));
            };
            if let Some(stream) = self.current.as_mut() {
                let next = {
                    let _permit = self.downloads.reads.acquire().await.ok();
                    futures::StreamExt::next(stream).await
                };
                match next {
                    Some(Ok(bytes)) => {
                        if let Err(e) = zip.write_all(&bytes) {
                            return Some(Err(e));
                        }
                    }
                    Some(Err(e)) => return Some(Err(read_failed(e))),
                    None => self.current = None,
                }
                continue;
            }
            match self.files.next() {
                Some((name, key)) => {
                    let opened = {
                        let _permit = self.downloads.reads.acquire().await.ok();
                        self.archive.get_stream(&key).await
                    };
                    let stream = match opened {
                        Ok((_, stream)) => stream,
                        Err(e) => return Some(Err(read_failed(e))),
                    };
                    if let Err(e) = zip.start_file(name, options) {
                        return Some(Err(std::io::Error::other(e)));
                    }
                    self.current = Some(stream);
                }
                None => {
                    if let Some(zip) = self.zip.take() {
                        if let Err(e) = zip.finish() {
                            return Some(Err(std::io::Error::other(e)));
                        }
                    }
                }
            }
        }
    }
}

/// The zip entry names of a series' instances: `<series>/<number>_<sop>.dcm`, UIDs checked
/// (see [`uid_for_file_name`]) and every name unique.
fn zip_entry_names(series_uid: &str, instances: &[radport_catalog::InstanceRow]) -> Vec<String> {
    let series = uid_for_file_name(series_uid);
    let mut seen = std::collections::HashSet::new();
    instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let number = inst.instance_number.unwrap_or(i as i64);
            let sop = uid_for_file_name(&inst.sop_instance_uid);
            let mut name = format!("{series}/{number:05}_{sop}.dcm");
            if !seen.insert(name.clone()) {
                name = format!("{series}/{number:05}_{sop}_{i}.dcm");
                seen.insert(name.clone());
            }
            name
        })
        .collect()
}

/// `GET /api/series/{uid}/download`: every stored file of the series in a zip, streamed (files
/// are stored, not recompressed: DICOM pixel data rarely deflates well, and this keeps the
/// server's CPU free).
async fn download_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Response> {
    let detail = series_or_404(&state, &series_uid).await?;
    let names = zip_entry_names(&series_uid, &detail.instances);
    let files: Vec<(String, String)> = names
        .into_iter()
        .zip(detail.instances.iter().map(|inst| inst.object_key.clone()))
        .collect();
    let out = ZipOutput::default();
    let zip = SeriesZip {
        zip: Some(zip::ZipWriter::new_stream(out.clone())),
        out,
        files: files.into_iter(),
        current: None,
        archive: state.archive.clone(),
        downloads: state.downloads.clone(),
    };
    let stream = futures::stream::unfold(zip, |mut zip| async move {
        zip.next_piece().await.map(|item| (item, zip))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                attachment(&format!("{}.zip", uid_for_file_name(&series_uid))),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn get_instance_file(
    State(state): State<AppState>,
    Path((series_uid, sop_instance_uid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let instance = state
        .catalog
        .get_instance(&series_uid, &sop_instance_uid)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("instance {sop_instance_uid} is not in series {series_uid}"),
            )
        })?;
    let (size, stream) = state.archive.get_stream(&instance.object_key).await?;
    let body = Body::from_stream(state.downloads.throttled(stream));
    Ok((
        [
            (header::CONTENT_TYPE, "application/dicom".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                attachment(&format!("{}.dcm", uid_for_file_name(&sop_instance_uid))),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_checked_before_they_name_files() {
        assert!(is_dicom_uid("1.2.840.10008.5.1.4.1.1.2"));
        for bad in [
            "",
            "..",
            "1..2",
            ".1",
            "1.",
            "1.2/../3",
            "1.2\r\n",
            &"1".repeat(65),
        ] {
            assert!(!is_dicom_uid(bad), "{bad:?}");
            let name = uid_for_file_name(bad);
            assert!(name.starts_with("invalid-uid-"), "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        }
        assert_eq!(uid_for_file_name("1.2.3"), "1.2.3");
        // Distinct bad UIDs stay distinct.
        assert_ne!(uid_for_file_name("../a"), uid_for_file_name("../b"));
    }

    #[test]
    fn content_disposition_is_sanitised() {
        assert_eq!(
            attachment("1.2.3.zip"),
            "attachment; filename=\"1.2.3.zip\"; filename*=UTF-8''1.2.3.zip"
        );
        let hostile = attachment("../../etc/pa\"ss\r\nSet-Cookie: x=1;\u{202E}gpj.exe");
        assert!(!hostile.contains(['\r', '\n', '\u{202E}']), "{hostile}");
        assert!(!hostile.contains(".."), "{hostile}");
        let (ascii, _) = hostile.split_once("; filename*=").unwrap();
        assert_eq!(ascii.matches('"').count(), 2, "{hostile}");
        assert!(
            !ascii.contains(';') || ascii.starts_with("attachment;"),
            "{hostile}"
        );
        assert!(HeaderValueCheck::ok(&hostile));
        let unicode = attachment("Müller Ödem.zip");
        assert!(
            unicode.contains("filename*=UTF-8''M%C3%BCller%20%C3%96dem.zip"),
            "{unicode}"
        );
        assert!(
            unicode.contains("filename=\"M_ller _dem.zip\""),
            "{unicode}"
        );
        assert!(attachment("...").contains("filename=\"download\""));
        assert!(attachment(&"a".repeat(1000)).len() < 700);
    }

    /// A header value must be visible ASCII (and tabs/spaces).
    struct HeaderValueCheck;
    impl HeaderValueCheck {
        fn ok(v: &str) -> bool {
            axum::http::HeaderValue::from_str(v).is_ok() && v.is_ascii()
        }
    }

    #[test]
    fn zip_entry_names_are_safe_and_unique() {
        let row = |sop: &str, n: Option<i64>| radport_catalog::InstanceRow {
            sop_instance_uid: sop.to_string(),
            series_instance_uid: String::new(),
            instance_number: n,
            sop_class_uid: String::new(),
            transfer_syntax_uid: String::new(),
            size: 0,
            checksum: String::new(),
            rows: None,
            columns: None,
            number_of_frames: None,
            received_at: String::new(),
            object_key: String::new(),
        };
        let names = zip_entry_names(
            "1.2.3",
            &[
                row("1.2.3.1", Some(1)),
                row("../../evil", Some(2)),
                row("1.2.3.1", Some(1)),
            ],
        );
        assert_eq!(names[0], "1.2.3/00001_1.2.3.1.dcm");
        assert!(
            names[1].starts_with("1.2.3/00002_invalid-uid-"),
            "{}",
            names[1]
        );
        assert_eq!(names[2], "1.2.3/00001_1.2.3.1_2.dcm");
        let names = zip_entry_names("../x", &[row("1.1", None)]);
        assert!(names[0].starts_with("invalid-uid-") && !names[0].contains(".."));
    }

    #[test]
    fn file_names_are_kept_out_of_logs() {
        assert_eq!(
            without_file_names("Unable to open /data/archive/uploads/Doe^John/ct.zip: EIO"),
            "Unable to open /data/archive/uploads/[file]: EIO"
        );
        assert_eq!(
            without_file_names("object not found: \"uploads/a b.zip\" and uploads/x"),
            "object not found: \"uploads/[file]\" and uploads/[file]"
        );
        assert_eq!(without_file_names("no file here"), "no file here");
    }

    #[test]
    fn database_errors_are_not_sent() {
        let e: ApiError = CatalogError::Database(sqlx_error()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret_table"), "{}", e.message);
        assert!(e.message.contains("error id"), "{}", e.message);
        let e: ApiError = ArchiveError::Storage("/data/archive/x: EIO".into()).into();
        assert!(!e.message.contains("/data"), "{}", e.message);
        let e: ApiError = CatalogError::NotFound("project x".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
    }

    fn sqlx_error() -> sqlx::Error {
        sqlx::Error::Protocol("relation secret_table does not exist".into())
    }
}
