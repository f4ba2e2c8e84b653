//! Uploads (the tus 1.0 protocol: core, creation, termination, expiration) and the files they
//! leave in the archive's `uploads/` area.
//!
//! Each PATCH streams its body into one chunk object `upload-parts/<id>/<offset>`; the upload's
//! row in the catalog advances only after the chunk is stored, so the offset a client reads
//! back (HEAD) is always backed by stored bytes. A PATCH cut off by a network drop keeps what
//! arrived, and the client resumes from there. When the last byte arrives the chunks are
//! streamed, in order, into `uploads/<path>` and deleted. Incomplete uploads expire.

use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use futures::StreamExt;
use serde_json::json;

use crate::{ApiError, ApiResult, AppState};

/// The protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination,expiration";
const UPLOADS_PREFIX: &str = "uploads";
const PARTS_PREFIX: &str = "upload-parts";

/// Limits of the upload endpoint.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    /// Largest file accepted, in bytes.
    pub max_size: u64,
    /// Incomplete uploads are deleted this long after creation.
    pub expire_after: Duration,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024 * 1024,
            expire_after: Duration::from_secs(24 * 3600),
        }
    }
}

pub use radport_archive::keys::clean_upload_path;

fn file_key(path: &str) -> String {
    format!("{UPLOADS_PREFIX}/{path}")
}

fn part_key(id: &str, offset: i64) -> String {
    format!("{PARTS_PREFIX}/{id}/{offset:020}")
}

fn tus_headers(headers: &mut HeaderMap) {
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
}

fn http_date(rfc3339: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let system: SystemTime = t.with_timezone(&chrono::Utc).into();
    Some(httpdate::fmt_http_date(system))
}

fn require_tus(headers: &HeaderMap) -> ApiResult<()> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!("send the header Tus-Resumable: {TUS_VERSION}"),
        )),
    }
}

fn header_i64(headers: &HeaderMap, name: &str) -> ApiResult<Option<i64>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{name} must be a non-negative integer"),
                )
            }),
    }
}

/// Parses `Upload-Metadata` (`key base64,key2 base64`) and returns the decoded `filename`.
fn metadata_filename(metadata: &str) -> ApiResult<Option<String>> {
    for pair in metadata.split(',') {
        let mut it = pair.trim().splitn(2, ' ');
        let key = it.next().unwrap_or_default();
        if key != "filename" {
            continue;
        }
        let value = it.next().unwrap_or_default().trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "Upload-Metadata: filename is not base64",
                )
            })?;
        let name = String::from_utf8(bytes).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "Upload-Metadata: filename is not UTF-8",
            )
        })?;
        return Ok(Some(name));
    }
    Ok(None)
}

/// `OPTIONS /api/uploads[/{id}]`: what this server supports.
pub async fn options(State(state): State<AppState>) -> Response {
    let mut headers = HeaderMap::new();
    tus_headers(&mut headers);
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    if let Ok(v) = HeaderValue::from_str(&state.uploads.max_size.to_string()) {
        headers.insert("tus-max-size", v);
    }
    (StatusCode::NO_CONTENT, headers).into_response()
}

/// `POST /api/uploads`: creates an upload of `Upload-Length` bytes named by the `filename`
/// key of `Upload-Metadata`.
pub async fn create(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    require_tus(&headers)?;
    let length = header_i64(&headers, "upload-length")?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Upload-Length is required (deferred lengths are not supported)",
        )
    })?;
    if length as u64 > state.uploads.max_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the file is {length} bytes; this server accepts at most {}",
                state.uploads.max_size
            ),
        ));
    }
    let metadata = headers
        .get("upload-metadata")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let filename = metadata_filename(&metadata)?.unwrap_or_else(|| format!("upload-{id}"));
    let path = clean_upload_path(&filename).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{filename:?} is not a usable file path (no '..', empty parts or control characters)"),
        )
    })?;
    let expires = chrono::Utc::now()
        + chrono::Duration::from_std(state.uploads.expire_after)
            .unwrap_or_else(|_| chrono::Duration::days(1));
    let expires = expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let upload = state
        .catalog
        .create_upload(&id, &path, length, &metadata, &expires)
        .await?;
    let mut out = HeaderMap::new();
    tus_headers(&mut out);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/uploads/{id}")) {
        out.insert(header::LOCATION, v);
    }
    if let Some(Ok(v)) = http_date(&upload.expires_at).map(|d| HeaderValue::from_str(&d)) {
        out.insert("upload-expires", v);
    }
    if length == 0 {
        finish_upload(&state, &upload.id).await?;
    }
    Ok((StatusCode::CREATED, out).into_response())
}

async fn live_upload(state: &AppState, id: &str) -> ApiResult<radport_catalog::Upload> {
    let upload = state
        .catalog
        .get_upload(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no upload {id}")))?;
    if !upload.completed && upload.expires_at < chrono::Utc::now().to_rfc3339() {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("upload {id} expired; start again"),
        ));
    }
    Ok(upload)
}

/// `HEAD /api/uploads/{id}`: how far the upload got.
pub async fn head(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let mut upload = live_upload(&state, &id).await?;
    if !upload.completed && upload.offset == upload.length {
        // Every byte is here but the file was never assembled (the server stopped between
        // the last chunk and its assembly): assemble it now, so "complete" means complete.
        finish_upload(&state, &id).await?;
        upload = live_upload(&state, &id).await?;
    }
    let mut out = HeaderMap::new();
    tus_headers(&mut out);
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out.insert("upload-offset", HeaderValue::from(upload.offset));
    out.insert("upload-length", HeaderValue::from(upload.length));
    if let Some(Ok(v)) = http_date(&upload.expires_at).map(|d| HeaderValue::from_str(&d)) {
        out.insert("upload-expires", v);
    }
    Ok((StatusCode::OK, out).into_response())
}

/// `PATCH /api/uploads/{id}`: appends the body at `Upload-Offset`.
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    require_tus(&headers)?;
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/offset+octet-stream")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/offset+octet-stream",
        ));
    }
    let upload = live_upload(&state, &id).await?;
    let offset = header_i64(&headers, "upload-offset")?
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "Upload-Offset is required"))?;
    if upload.completed || offset != upload.offset {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the upload is at offset {}; send from there (HEAD tells)",
                upload.offset
            ),
        ));
    }
    let room = upload.length - upload.offset;
    // In its own task: if the client goes away, hyper drops this handler, but the bytes that
    // arrived are still stored and counted (and the file assembled if they were the last),
    // and the client resumes after them.
    let (received, _cut_off) =
        tokio::spawn(receive_chunk(state.clone(), id.clone(), offset, room, body))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("upload task failed: {e}"),
                )
            })??;
    let new_offset = offset + received;
    let mut out = HeaderMap::new();
    tus_headers(&mut out);
    out.insert("upload-offset", HeaderValue::from(new_offset));
    Ok((StatusCode::NO_CONTENT, out).into_response())
}

/// Stores one PATCH body as the chunk at `offset` and advances the upload; returns the bytes
/// received and whether the client was cut off.
async fn receive_chunk(
    state: AppState,
    id: String,
    offset: i64,
    room: i64,
    body: Body,
) -> ApiResult<(i64, bool)> {
    let key = part_key(&id, offset);
    let mut writer = state.archive.writer(&key)?;
    let mut stream = body.into_data_stream();
    let mut received: i64 = 0;
    let mut cut_off = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                received += bytes.len() as i64;
                if received > room {
                    writer.abort().await;
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("the body goes past Upload-Length (room for {room} more bytes)"),
                    ));
                }
                if let Err(e) = writer.write(&bytes).await {
                    writer.abort().await;
                    return Err(e.into());
                }
            }
            Err(e) => {
                tracing::info!(upload = %id, received, error = %e, "upload cut off; keeping the bytes received");
                cut_off = true;
                break;
            }
        }
    }
    if received == 0 {
        writer.abort().await;
        if room == 0 {
            // An empty PATCH at the end (a client that missed the answer to its last chunk).
            finish_upload(&state, &id).await?;
        }
        return Ok((0, cut_off));
    }
    writer.finish().await?;
    if let Err(e) = state
        .catalog
        .advance_upload(&id, offset, offset + received)
        .await
    {
        let _ = state.archive.delete(&key).await;
        return Err(e.into());
    }
    if received == room {
        finish_upload(&state, &id).await?;
    }
    Ok((received, cut_off))
}

/// Streams the chunks of a complete upload into its file, then drops them.
async fn finish_upload(state: &AppState, id: &str) -> ApiResult<()> {
    let upload = live_upload(state, id).await?;
    let parts = state.archive.list(&format!("{PARTS_PREFIX}/{id}")).await?;
    let mut writer = state.archive.writer(&file_key(&upload.path))?;
    let mut expected: i64 = 0;
    for part in &parts {
        let offset: i64 = part
            .key
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        if offset != expected {
            writer.abort().await;
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("upload {id} is missing bytes at offset {expected}"),
            ));
        }
        let (size, mut stream) = state.archive.get_stream(&part.key).await?;
        while let Some(bytes) = stream.next().await {
            if let Err(e) = writer.write(&bytes?).await {
                writer.abort().await;
                return Err(e.into());
            }
        }
        expected += size as i64;
    }
    if expected != upload.length {
        writer.abort().await;
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upload {id} has {expected} of {} bytes", upload.length),
        ));
    }
    writer.finish().await?;
    state.catalog.complete_upload(id).await?;
    for part in parts {
        let _ = state.archive.delete(&part.key).await;
    }
    tracing::info!(upload = %id, bytes = upload.length, "upload complete");
    Ok(())
}

/// `DELETE /api/uploads/{id}`: abandons an upload (termination).
pub async fn terminate(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_tus(&headers)?;
    state
        .catalog
        .get_upload(&id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no upload {id}")))?;
    remove_upload(&state, &id).await?;
    let mut out = HeaderMap::new();
    tus_headers(&mut out);
    Ok((StatusCode::NO_CONTENT, out).into_response())
}

async fn remove_upload(state: &AppState, id: &str) -> ApiResult<()> {
    for part in state.archive.list(&format!("{PARTS_PREFIX}/{id}")).await? {
        state.archive.delete(&part.key).await?;
    }
    state.catalog.delete_upload(id).await?;
    Ok(())
}

/// Deletes incomplete uploads past their expiry; returns how many.
pub async fn sweep_expired(state: &AppState) -> ApiResult<usize> {
    let expired = state.catalog.expired_uploads().await?;
    for upload in &expired {
        remove_upload(state, &upload.id).await?;
    }
    Ok(expired.len())
}

/// `GET /api/files`: the uploaded files.
pub async fn list_files(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let items: Vec<serde_json::Value> = state
        .archive
        .list(UPLOADS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|o| {
            let path = o.key.strip_prefix("uploads/")?.to_string();
            Some(json!({ "path": path, "size": o.size, "modified": o.modified }))
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

fn file_path(path: &str) -> ApiResult<String> {
    clean_upload_path(path).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{path:?} is not a path inside the uploads area"),
        )
    })
}

/// `GET /api/files/{path}`: downloads an uploaded file.
pub async fn get_file(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    let path = file_path(&path)?;
    let (size, stream) = state.archive.get_stream(&file_key(&path)).await?;
    let name = path.rsplit('/').next().unwrap_or("file").replace('"', "");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `DELETE /api/files/{path}`: deletes an uploaded file.
pub async fn delete_file(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> ApiResult<StatusCode> {
    let path = file_path(&path)?;
    let key = file_key(&path);
    state.archive.size(&key).await?;
    state.archive.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape() {
        assert_eq!(clean_upload_path("a/b.zip").as_deref(), Some("a/b.zip"));
        assert_eq!(
            clean_upload_path("/lead/trail/").as_deref(),
            Some("lead/trail")
        );
        for bad in [
            "../x",
            "a/../../b",
            "a//b",
            "",
            ".",
            "a\\b",
            "a/\u{7}",
            "x#1",
        ] {
            assert_eq!(clean_upload_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn metadata_filename_is_decoded() {
        let v = base64::engine::general_purpose::STANDARD.encode("scan 1.zip");
        assert_eq!(
            metadata_filename(&format!("relativePath bnVsbA==,filename {v}")).unwrap(),
            Some("scan 1.zip".to_string())
        );
        assert_eq!(metadata_filename("").unwrap(), None);
        assert!(metadata_filename("filename !!!").is_err());
    }
}
