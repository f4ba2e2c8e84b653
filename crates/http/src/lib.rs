//! The HTTP API: a thin JSON layer over the catalog and the archive.
//!
//! Handlers validate input, call one catalog or archive function and shape the answer; no
//! business rule lives here. Errors are JSON `{"error": "..."}` with a status code that says
//! what kind of problem it is. The OpenAPI document is served at `/api/openapi.json`.

mod openapi;
pub mod preview;
mod ui;
pub mod uploads;

use axum::body::Body;
use axum::extract::{Path, Query, State};
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
            tracing::error!(status = %self.status, error = %self.message, "request failed");
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let status = match &e {
            CatalogError::NotFound(_) => StatusCode::NOT_FOUND,
            CatalogError::Conflict(_) => StatusCode::CONFLICT,
            CatalogError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        let status = match &e {
            ArchiveError::NotFound(_) => StatusCode::NOT_FOUND,
            ArchiveError::InvalidKey(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
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

async fn list_projects(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let items = state.catalog.list_projects().await?;
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
    let Json(body) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON body like {{\"name\": \"my-project\"}}: {e}"),
        )
    })?;
    let project = state.catalog.create_project(body.name.trim()).await?;
    Ok((StatusCode::CREATED, Json(json!(project))))
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
    let Json(params) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected the parameters as a JSON object: {e}"),
        )
    })?;
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

/// A writer that hands what is written to an async body stream, chunk by chunk (for the zip
/// writer, which is synchronous, running in a blocking thread).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buffer));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= 256 * 1024 {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `GET /api/series/{uid}/download`: every stored file of the series in a zip, streamed (files
/// are stored, not recompressed: DICOM pixel data rarely deflates well, and this keeps the
/// server's CPU free).
async fn download_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Response> {
    let detail = series_or_404(&state, &series_uid).await?;
    let files: Vec<(String, String)> = detail
        .instances
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let name = match inst.instance_number {
                Some(n) => format!("{series_uid}/{n:05}_{}.dcm", inst.sop_instance_uid),
                None => format!("{series_uid}/{i:05}_{}.dcm", inst.sop_instance_uid),
            };
            (name, inst.object_key.clone())
        })
        .collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let archive = state.archive.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut zip = zip::ZipWriter::new_stream(ChannelWriter {
            tx: tx.clone(),
            buffer: Vec::new(),
        });
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for (name, key) in files {
            let bytes = match handle.block_on(archive.get(&key)) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let written = zip
                .start_file(name, options)
                .map_err(std::io::Error::other)
                .and_then(|()| std::io::Write::write_all(&mut zip, &bytes));
            if written.is_err() {
                return; // the client went away
            }
        }
        if let Ok(mut inner) = zip.finish() {
            let _ = std::io::Write::flush(&mut inner);
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{series_uid}.zip\""),
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
    let body = Body::from_stream(stream);
    Ok((
        [
            (header::CONTENT_TYPE, "application/dicom".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.dcm\"",
                    sop_instance_uid.replace('"', "")
                ),
            ),
        ],
        body,
    )
        .into_response())
}
