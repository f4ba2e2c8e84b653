//! A series and what belongs to it: its detail, stored files, thumbnail, zip download,
//! validation and verification.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use radport_archive::ArchiveError;
use radport_catalog::JobFilter;

use crate::download::{attachment, fnv1a, series_zip, uid_for_file_name};
use crate::error::{ApiError, ApiResult};
use crate::responses::{ErrorBody, SeriesDetail, Validation, VerificationQueued};
use crate::AppState;

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
/// A series with its projects, instances and metadata.
#[utoipa::path(get, path = "/api/series/{series_uid}", tag = "series",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 200, description = "The series", body = SeriesDetail),
        (status = 404, description = "Not in the catalog", body = ErrorBody),
    ))]
pub(crate) async fn get_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Json<SeriesDetail>> {
    let detail = series_or_404(&state, &series_uid).await?;
    Ok(Json(detail.into()))
}
/// A stored instance, as stored.
#[utoipa::path(get, path = "/api/series/{series_uid}/instances/{sop_instance_uid}", tag = "series",
    params(("series_uid" = String, Path, description = "Series Instance UID"), ("sop_instance_uid" = String, Path, description = "SOP Instance UID")),
    responses(
        (status = 200, description = "The stored DICOM file", content_type = "application/dicom", body = crate::responses::FileBytes),
        (status = 404, description = "Not in the series", body = ErrorBody),
    ))]
pub(crate) async fn get_instance_file(
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
/// The series' thumbnail (PNG, segmentations drawn over their source), with an ETag.
#[utoipa::path(get, path = "/api/series/{series_uid}/thumbnail", tag = "series",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 200, description = "The thumbnail", content_type = "image/png", body = crate::responses::FileBytes),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 400, description = "Not a UID", body = ErrorBody),
        (status = 404, description = "Not in the catalog, or not rendered yet", body = ErrorBody),
    ))]
pub(crate) async fn get_thumbnail(
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
/// `GET /api/series/{uid}/download`: every stored file of the series in a zip, streamed (files
/// are stored, not recompressed: DICOM pixel data rarely deflates well, and this keeps the
/// server's CPU free).
#[utoipa::path(get, path = "/api/series/{series_uid}/download", tag = "series",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 200, description = "`<series>/<number>_<sop>.dcm` for every instance", content_type = "application/zip", body = crate::responses::FileBytes),
        (status = 404, description = "Not in the catalog", body = ErrorBody),
    ))]
pub(crate) async fn download_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Response> {
    let detail = series_or_404(&state, &series_uid).await?;
    let body = series_zip(
        &series_uid,
        &detail.instances,
        state.archive.clone(),
        state.downloads.clone(),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                attachment(&format!("{}.zip", uid_for_file_name(&series_uid))),
            ),
        ],
        body,
    )
        .into_response())
}

/// The last validation of the series.
#[utoipa::path(get, path = "/api/series/{series_uid}/validation", tag = "series",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 200, description = "The validation and its findings", body = Validation),
        (status = 404, description = "Not in the catalog, or not validated yet", body = ErrorBody),
    ))]
pub(crate) async fn get_validation(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<Json<Validation>> {
    match state.catalog.get_validation(&series_uid).await? {
        Some(v) => Ok(Json(v.into())),
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
/// The HTML report of the last validation.
#[utoipa::path(get, path = "/api/series/{series_uid}/validation/report", tag = "series",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 200, description = "The report (scripts forbidden by its Content-Security-Policy)", content_type = "text/html", body = String),
        (status = 404, description = "Not in the catalog, or not validated yet", body = ErrorBody),
    ))]
pub(crate) async fn get_validation_report(
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
/// Queues a verification: every stored file of the series is read back and compared with
/// the checksum recorded when it arrived.
#[utoipa::path(post, path = "/api/series/{series_uid}/verify", tag = "series",
    params(("series_uid" = String, Path, description = "Series Instance UID")),
    responses(
        (status = 202, description = "Queued (or already queued: that job)", body = VerificationQueued),
        (status = 404, description = "Not in the catalog", body = ErrorBody),
        (status = 409, description = "A verification was just started; ask again", body = ErrorBody),
    ))]
pub(crate) async fn verify_series(
    State(state): State<AppState>,
    Path(series_uid): Path<String>,
) -> ApiResult<(StatusCode, Json<VerificationQueued>)> {
    if state.catalog.get_series(&series_uid).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("series {series_uid} is not in the catalog"),
        ));
    }
    let queued = state
        .catalog
        .enqueue_job(&radport_catalog::NewJob {
            kind: radport_catalog::JobKind::Verify,
            series_uid: Some(series_uid.clone()),
            payload: serde_json::json!({}),
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
                    state: Some(radport_catalog::JobState::Queued),
                    kind: Some(radport_catalog::JobKind::Verify),
                    series: Some(series_uid.clone()),
                    limit: Some(1),
                    offset: None,
                    projects: None,
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
        Json(VerificationQueued {
            job_id,
            series_instance_uid: series_uid,
        }),
    ))
}
