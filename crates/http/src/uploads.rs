//! Uploads (the tus 1.0 protocol: core, creation, termination, expiration) and the files they
//! leave in the archive's `uploads/` area.
//!
//! Each PATCH streams its body into a chunk object of its own, `upload-parts/<id>/<offset>-<uuid>`;
//! the upload's row in the catalog advances (compare-and-set on the offset, recording the
//! chunk's key) only after the chunk is stored, so the offset a client reads back (HEAD) is
//! always backed by stored bytes, and of two PATCHes at one offset the one counted keeps its
//! chunk while the other deletes its own and answers 409. A PATCH cut off by a network drop
//! keeps what arrived, and the client resumes from there. When the last byte arrives the
//! recorded chunks are streamed, in order, into `uploads/<path>` under an assembly lease (an
//! upload being assembled is never swept) and deleted.
//!
//! Every upload has a path of its own: a name already used by another upload, complete or
//! not, is numbered (`scan.zip` → `scan-2.zip`), and the path given to the file is answered in
//! `Radport-File-Path`. Incomplete uploads expire after a time without chunks; completed files
//! after their retention, unless a queued or running workflow run names them. All uploads
//! together stay under a quota (incomplete ones count their announced length).

use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use futures::StreamExt;
use radport_archive::ArchiveError;
use radport_catalog::{UploadRefused, KEEP_FOREVER};

use crate::responses::{ErrorBody, UploadedFile, UploadedFileList};
use crate::{ApiError, ApiResult, AppState};

/// The protocol version spoken.
pub const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination,expiration";
const UPLOADS_PREFIX: &str = "uploads";
const PARTS_PREFIX: &str = "upload-parts";
/// Header naming the path an upload's file is stored at (percent-encoded like a URL path).
pub const FILE_PATH_HEADER: &str = "radport-file-path";
/// How long an assembler holds an upload before it must renew (it renews at a third).
const ASSEMBLY_LEASE: Duration = Duration::from_secs(60);
/// Longest part of an uploaded file's path, in bytes (whole paths: 1024).
const MAX_NAME_PART: usize = 255;
/// Numbered names tried when a name is taken.
const MAX_NUMBERED: u32 = 1000;

/// Limits of the upload endpoint.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    /// Largest file accepted, in bytes.
    pub max_size: u64,
    /// Incomplete uploads are deleted this long after their last chunk.
    pub expire_after: Duration,
    /// Completed files are deleted this long after completion (zero: kept until deleted),
    /// unless a queued or running workflow run names them.
    pub retention: Duration,
    /// Bytes of all uploads together (incomplete ones count their announced length).
    pub max_total: u64,
}

impl Default for UploadSettings {
    fn default() -> Self {
        Self {
            max_size: 10 * 1024 * 1024 * 1024,
            expire_after: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_total: 100 * 1024 * 1024 * 1024,
        }
    }
}

pub use radport_archive::keys::clean_upload_path;

fn file_key(path: &str) -> String {
    format!("{UPLOADS_PREFIX}/{path}")
}

fn parts_prefix(id: &str) -> String {
    format!("{PARTS_PREFIX}/{id}")
}

/// A chunk's key: its offset (so that a listing sorts in order) and a name of its own (so
/// that two PATCHes at one offset never share an object).
fn part_key(id: &str, offset: i64) -> String {
    format!(
        "{PARTS_PREFIX}/{id}/{offset:020}-{}",
        uuid::Uuid::new_v4().simple()
    )
}

/// RFC 3339 time `after` from now (far future if out of range).
fn time_after(after: Duration) -> String {
    chrono::Duration::from_std(after)
        .ok()
        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| KEEP_FOREVER.to_string())
}

/// When an incomplete upload active now expires.
fn idle_expiry(state: &AppState) -> String {
    time_after(state.uploads.expire_after)
}

/// When a file completed now expires.
fn retention_expiry(state: &AppState) -> String {
    if state.uploads.retention.is_zero() {
        KEEP_FOREVER.to_string()
    } else {
        time_after(state.uploads.retention)
    }
}

fn tus_headers(headers: &mut HeaderMap) {
    headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
}

fn http_date(rfc3339: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    let system: SystemTime = t.with_timezone(&chrono::Utc).into();
    Some(httpdate::fmt_http_date(system))
}

/// A path as it appears in a URL: unreserved characters and `/` as they are, the rest
/// percent-encoded (so it fits a header and `/api/files/<it>` works).
pub fn url_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

/// Public for the fuzz targets (fuzz/tus_headers).
#[doc(hidden)]
pub fn header_i64(headers: &HeaderMap, name: &str) -> ApiResult<Option<i64>> {
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
#[doc(hidden)]
pub fn metadata_filename(metadata: &str) -> ApiResult<Option<String>> {
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

/// The path an uploaded file is stored at, from the name the client gave: a relative path
/// without `.`/`..`/empty parts, control or format (bidi) characters, backslashes or `#`,
/// parts of at most 255 bytes, 1024 in all.
pub fn upload_path(name: &str) -> Option<String> {
    let path = clean_upload_path(name)?;
    let fits = path.split('/').all(|part| {
        part.len() <= MAX_NAME_PART
            && !part.chars().any(crate::is_format_char)
            && part.trim() == part
    });
    fits.then_some(path)
}

/// Longest whole path of an uploaded file, in bytes (the archive's key limit).
const MAX_PATH: usize = 1024;

/// The `n`-th name tried for `path`: itself, then `stem-2.ext`, `stem-3.ext` … (the number
/// goes before the extension, and before both parts of `.nii.gz`-like double extensions).
/// A stem too long to take the number is shortened, so every candidate of a valid path is
/// valid too (at most [`MAX_NAME_PART`] bytes per part, [`MAX_PATH`] in all); `None` when the
/// folders leave no room for the number.
#[doc(hidden)]
pub fn numbered(path: &str, n: u32) -> Option<String> {
    if n == 0 {
        return Some(path.to_string());
    }
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (format!("{dir}/"), name),
        None => (String::new(), path),
    };
    let lower = name.to_ascii_lowercase();
    let double = [".nii.gz", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst"]
        .iter()
        .find(|ext| lower.len() > ext.len() && lower.ends_with(*ext))
        .map(|ext| name.len() - ext.len());
    let split = double.or_else(|| name.rfind('.').filter(|&i| i > 0));
    let (mut stem, mut ext) = match split {
        Some(i) => name.split_at(i),
        None => (name, ""),
    };
    let suffix = format!("-{}", u64::from(n) + 1);
    let budget = MAX_NAME_PART.min(MAX_PATH.saturating_sub(dir.len()));
    if budget <= suffix.len() {
        return None;
    }
    if suffix.len() + ext.len() >= budget {
        // An extension that leaves no room for a stem is numbered as part of the name.
        (stem, ext) = (name, "");
    }
    let room = budget.saturating_sub(suffix.len() + ext.len());
    if stem.len() > room {
        let mut end = room;
        while !stem.is_char_boundary(end) {
            end -= 1;
        }
        stem = stem[..end].trim_end();
    }
    Some(format!("{dir}{stem}{suffix}{ext}"))
}

fn gib(bytes: i64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// `OPTIONS /api/uploads[/{id}]`: what this server supports.
#[utoipa::path(options, path = "/api/uploads", tag = "uploads",
    responses((status = 204, description = "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size`")))]
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

/// `OPTIONS /api/uploads/{id}`: the same as [`options`].
#[utoipa::path(options, path = "/api/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id (the last part of the `Location` of its creation)")),
    responses((status = 204, description = "`Tus-Version`, `Tus-Extension`, `Tus-Max-Size`")))]
pub async fn options_of_upload(state: State<AppState>) -> Response {
    options(state).await
}

/// `POST /api/uploads`: creates an upload of `Upload-Length` bytes named by the `filename`
/// key of `Upload-Metadata` (numbered if the name is taken; the path given is answered in
/// `Radport-File-Path`).
#[utoipa::path(post, path = "/api/uploads", tag = "uploads",
    params(
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = u64, Header, description = "Bytes of the file"),
        ("Upload-Metadata" = Option<String>, Header, description = "tus metadata; `filename` names the file (folders allowed)"),
    ),
    responses(
        (status = 201, description = "Created: `Location` is the upload's URL, `Radport-File-Path` the file's path"),
        (status = 400, description = "A header is missing or malformed, or the name is not allowed", body = ErrorBody),
        (status = 409, description = "All uploads together would pass the quota", body = ErrorBody),
        (status = 412, description = "Another tus version", body = ErrorBody),
        (status = 413, description = "Larger than one file may be", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<radport_access::Principal>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_tus(&headers)?;
    let length = header_i64(&headers, "upload-length")?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "Upload-Length is required (deferred lengths are not supported)",
        )
    })?;
    if u64::try_from(length).map_or(true, |l| l > state.uploads.max_size) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the file is {length} bytes; this server accepts at most {} per file",
                state.uploads.max_size
            ),
        ));
    }
    let metadata = headers
        .get("upload-metadata")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if metadata.len() > 4096 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Upload-Metadata is longer than 4096 bytes",
        ));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let filename = metadata_filename(&metadata)?.unwrap_or_else(|| format!("upload-{id}"));
    let path = upload_path(&filename).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{filename:?} is not a usable file path (no '..', empty parts, control or \
                     bidi characters; parts of at most {MAX_NAME_PART} bytes, 1024 in all)"
            ),
        )
    })?;
    let quota = i64::try_from(state.uploads.max_total).unwrap_or(i64::MAX);
    let expires = idle_expiry(&state);
    let mut created = None;
    for n in 0..MAX_NUMBERED {
        // No room for a number under deep folders: the name stays taken (409 below).
        let Some(candidate) = numbered(&path, n) else {
            break;
        };
        // A file without an upload row (stored before uploads had unique paths) takes its
        // name too.
        match state.archive.size(&file_key(&candidate)).await {
            Ok(_) => continue,
            Err(ArchiveError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        match state
            .catalog
            .create_upload(
                &radport_catalog::NewUpload {
                    id: &id,
                    path: &candidate,
                    length,
                    metadata: &metadata,
                    expires_at: &expires,
                    owner: principal.user.as_deref(),
                },
                quota,
            )
            .await?
        {
            Ok(upload) => {
                created = Some(upload);
                break;
            }
            Err(UploadRefused::PathTaken) => continue,
            Err(UploadRefused::OverQuota { used }) => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the uploads area is full: uploads take {} of the {} allowed and this \
                         file needs {}; delete uploaded files (DELETE /api/files/PATH) or wait \
                         for them to expire",
                        gib(used),
                        gib(quota),
                        gib(length)
                    ),
                ))
            }
        }
    }
    let upload = created.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("{MAX_NUMBERED} files are named like {filename:?}; choose another name"),
        )
    })?;
    tracing::info!(upload = %id, bytes = length, "upload created");
    tracing::debug!(upload = %id, path = %upload.path, "upload path");
    let mut out = HeaderMap::new();
    tus_headers(&mut out);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/uploads/{id}")) {
        out.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&url_path(&upload.path)) {
        out.insert(FILE_PATH_HEADER, v);
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
    // The catalog's form (fixed-width microseconds, `Z`), so that the texts compare as times.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let assembling = upload
        .assembly_lease
        .as_deref()
        .is_some_and(|lease| lease >= now.as_str());
    if !upload.completed && !assembling && upload.expires_at < now {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!("upload {id} expired; start again"),
        ));
    }
    Ok(upload)
}

/// `HEAD /api/uploads/{id}`: how far the upload got.
#[utoipa::path(head, path = "/api/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id (the last part of the `Location` of its creation)")),
    responses(
        (status = 200, description = "`Upload-Offset`, `Upload-Length`, `Upload-Expires`, `Radport-File-Path`"),
        (status = 404, description = "No such upload"),
        (status = 410, description = "Expired"),
    ))]
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
    if let Ok(v) = HeaderValue::from_str(&url_path(&upload.path)) {
        out.insert(FILE_PATH_HEADER, v);
    }
    if let Some(Ok(v)) = http_date(&upload.expires_at).map(|d| HeaderValue::from_str(&d)) {
        out.insert("upload-expires", v);
    }
    Ok((StatusCode::OK, out).into_response())
}

/// `PATCH /api/uploads/{id}`: appends the body at `Upload-Offset`.
#[utoipa::path(patch, path = "/api/uploads/{id}", tag = "uploads",
    params(
        ("id" = String, Path, description = "Upload id (the last part of the `Location` of its creation)"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Offset" = u64, Header, description = "Where the body goes: the offset `HEAD` answered"),
    ),
    request_body(content = crate::responses::FileBytes, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored; `Upload-Offset` is the new offset"),
        (status = 400, description = "A header is missing or malformed, or the body passes the length", body = ErrorBody),
        (status = 404, description = "No such upload", body = ErrorBody),
        (status = 409, description = "`Upload-Offset` is not the upload's offset (another PATCH came first)", body = ErrorBody),
        (status = 410, description = "Expired", body = ErrorBody),
        (status = 412, description = "Another tus version", body = ErrorBody),
        (status = 415, description = "Not `application/offset+octet-stream`", body = ErrorBody),
    ))]
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
    let room = upload.length.saturating_sub(upload.offset).max(0);
    if header_i64(&headers, "content-length")?.is_some_and(|announced| announced > room) {
        return Err(past_the_end(room));
    }
    // Activity: the upload expires counting from now.
    state
        .catalog
        .touch_upload(&id, &idle_expiry(&state))
        .await?;
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
    let new_offset = offset.saturating_add(received);
    let mut out = HeaderMap::new();
    tus_headers(&mut out);
    out.insert("upload-offset", HeaderValue::from(new_offset));
    Ok((StatusCode::NO_CONTENT, out).into_response())
}

fn past_the_end(room: i64) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("the body goes past Upload-Length (room for {room} more bytes)"),
    )
}

/// Stores one PATCH body as a chunk at `offset` and advances the upload; returns the bytes
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
    // A body that takes longer than the expiry keeps the upload alive while it arrives.
    let touch_every = (state.uploads.expire_after / 4).max(Duration::from_millis(100));
    let mut touched = Instant::now();
    while let Some(chunk) = stream.next().await {
        if touched.elapsed() >= touch_every {
            if let Err(e) = state.catalog.touch_upload(&id, &idle_expiry(&state)).await {
                writer.abort().await;
                return Err(e.into());
            }
            touched = Instant::now();
        }
        match chunk {
            Ok(bytes) => {
                received = match i64::try_from(bytes.len())
                    .ok()
                    .and_then(|n| received.checked_add(n))
                    .filter(|&r| r <= room)
                {
                    Some(r) => r,
                    None => {
                        writer.abort().await;
                        return Err(past_the_end(room));
                    }
                };
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
    let end = offset
        .checked_add(received)
        .ok_or_else(|| past_the_end(room))?;
    if let Err(e) = state
        .catalog
        .advance_upload(&id, offset, end, &key, &idle_expiry(&state))
        .await
    {
        // Another PATCH at this offset was counted first (or the upload is gone): this chunk
        // is nobody's, and only this one is deleted.
        let _ = state.archive.delete(&key).await;
        return Err(e.into());
    }
    radport_metrics::global().upload_received(received.unsigned_abs());
    if received == room {
        finish_upload(&state, &id).await?;
    }
    Ok((received, cut_off))
}

/// The chunks of an upload in order: those recorded by the catalog, or for an upload begun
/// before chunks were recorded, those named by their offset alone (a contiguous run).
async fn chunks_of(state: &AppState, upload: &radport_catalog::Upload) -> ApiResult<Vec<String>> {
    if !upload.part_keys.is_empty() || upload.length == 0 {
        return Ok(upload.part_keys.clone());
    }
    let mut keys = Vec::new();
    let mut expected: u64 = 0;
    for part in state.archive.list(&parts_prefix(&upload.id)).await? {
        let offset: Option<u64> = part.key.rsplit('/').next().and_then(|s| s.parse().ok());
        if offset != Some(expected) {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("upload {} is missing bytes at offset {expected}", upload.id),
            ));
        }
        expected = expected.saturating_add(part.size);
        keys.push(part.key);
    }
    Ok(keys)
}

/// Streams the chunks of a complete upload into its file, then drops them. Does nothing if
/// another request is assembling it (or it is complete).
async fn finish_upload(state: &AppState, id: &str) -> ApiResult<()> {
    let mut lease = time_after(ASSEMBLY_LEASE);
    if !state.catalog.lease_assembly(id, &lease, None).await? {
        return Ok(());
    }
    let upload = live_upload(state, id).await?;
    tracing::info!(upload = %id, bytes = upload.length, "assembling upload");
    let keys = chunks_of(state, &upload).await?;
    let mut writer = state.archive.writer(&file_key(&upload.path))?;
    let mut renew_at = Instant::now() + ASSEMBLY_LEASE / 3;
    let mut written: i64 = 0;
    for key in &keys {
        let (size, mut stream) = match state.archive.get_stream(key).await {
            Ok(s) => s,
            Err(e) => {
                writer.abort().await;
                return Err(e.into());
            }
        };
        while let Some(bytes) = stream.next().await {
            let written_ok = match bytes {
                Ok(bytes) => writer.write(&bytes).await.map_err(ApiError::from),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = written_ok {
                writer.abort().await;
                return Err(e);
            }
            if Instant::now() >= renew_at {
                let renewed = time_after(ASSEMBLY_LEASE);
                if !state
                    .catalog
                    .lease_assembly(id, &renewed, Some(&lease))
                    .await?
                {
                    writer.abort().await;
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("upload {id} is being assembled by another request"),
                    ));
                }
                lease = renewed;
                renew_at = Instant::now() + ASSEMBLY_LEASE / 3;
            }
        }
        written = i64::try_from(size)
            .ok()
            .and_then(|s| written.checked_add(s))
            .unwrap_or(i64::MAX);
    }
    if written != upload.length {
        writer.abort().await;
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upload {id} has {written} of {} bytes", upload.length),
        ));
    }
    writer.finish().await?;
    state
        .catalog
        .complete_upload(id, &retention_expiry(state))
        .await?;
    // Every chunk under the upload's prefix: the counted ones and any left by a PATCH that
    // lost its compare-and-set and could not delete its own.
    for part in state.archive.list(&parts_prefix(id)).await? {
        let _ = state.archive.delete(&part.key).await;
    }
    tracing::info!(upload = %id, bytes = upload.length, "upload complete");
    Ok(())
}

/// `DELETE /api/uploads/{id}`: abandons an upload (termination).
#[utoipa::path(delete, path = "/api/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "Upload id (the last part of the `Location` of its creation)"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses(
        (status = 204, description = "Abandoned; its bytes are deleted"),
        (status = 404, description = "No such upload", body = ErrorBody),
        (status = 412, description = "Another tus version", body = ErrorBody),
    ))]
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
    remove_parts(state, id).await?;
    state.catalog.delete_upload(id).await?;
    Ok(())
}

/// Deletes the chunks stored for upload `id`.
async fn remove_parts(state: &AppState, id: &str) -> ApiResult<()> {
    for part in state.archive.list(&parts_prefix(id)).await? {
        state.archive.delete(&part.key).await?;
    }
    Ok(())
}

/// Deletes incomplete uploads past their expiry (not those being assembled), completed files
/// past their retention that no queued or running workflow run names, and the rows of
/// completed uploads whose file is gone (an import deleted it); returns how many incomplete
/// uploads were deleted.
pub async fn sweep_expired(state: &AppState) -> ApiResult<usize> {
    // Each row is claimed (deleted if still expired) before its objects are deleted: with
    // several nodes sweeping, one of them deletes an upload, and a chunk recorded through
    // another node in the meantime keeps the upload alive. Objects of a row claimed by a node
    // that dies before deleting them are chunks of a gone upload, which `collect` removes.
    let mut expired = 0usize;
    for upload in state.catalog.expired_uploads().await? {
        if state.catalog.claim_expired_upload(&upload.id).await? {
            remove_parts(state, &upload.id).await?;
            expired += 1;
        }
    }
    let in_use = state.catalog.files_in_use().await?;
    let mut retired = 0usize;
    for upload in state.catalog.expired_files().await? {
        if in_use.contains(&upload.path) {
            continue;
        }
        if state.catalog.claim_expired_file(&upload.id).await? {
            state.archive.delete(&file_key(&upload.path)).await?;
            retired += 1;
        }
    }
    if retired > 0 {
        tracing::info!(
            count = retired,
            "uploaded files past their retention deleted"
        );
    }
    let completed = state.catalog.completed_uploads().await?;
    if !completed.is_empty() {
        let stored: std::collections::HashSet<String> = state
            .archive
            .list(UPLOADS_PREFIX)
            .await?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix("uploads/").map(str::to_string))
            .collect();
        for upload in completed {
            if !stored.contains(&upload.path) && !in_use.contains(&upload.path) {
                // Re-check: the file may have been completed since the listing.
                if let Err(ArchiveError::NotFound(_)) =
                    state.archive.size(&file_key(&upload.path)).await
                {
                    state.catalog.delete_upload(&upload.id).await?;
                }
            }
        }
    }
    Ok(expired)
}

/// `GET /api/files`: the uploaded files.
#[utoipa::path(get, path = "/api/files", tag = "uploads",
    responses(
        (status = 200, description = "The files the caller uploaded (administrators: every file)", body = UploadedFileList),
    ))]
pub async fn list_files(
    State(state): State<AppState>,
    axum::Extension(principal): axum::Extension<radport_access::Principal>,
) -> ApiResult<Json<UploadedFileList>> {
    // Others than administrators see the files they uploaded.
    let own = match (&principal.user, principal.admin) {
        (_, true) => None,
        (Some(user), false) => Some(state.catalog.upload_paths_of(user).await?),
        (None, false) => Some(Default::default()),
    };
    let items = state
        .archive
        .list(UPLOADS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|o| {
            let path = o.key.strip_prefix("uploads/")?.to_string();
            if own.as_ref().is_some_and(|own| !own.contains(&path)) {
                return None;
            }
            Some(UploadedFile {
                path,
                size: o.size,
                modified: o.modified,
            })
        })
        .collect();
    Ok(Json(UploadedFileList { items }))
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
#[utoipa::path(get, path = "/api/files/{*path}", tag = "uploads",
    params(("path" = String, Path, description = "Path of the file inside the uploads area (folders allowed)")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = crate::responses::FileBytes),
        (status = 400, description = "Not a path inside the uploads area", body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
pub async fn get_file(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    let path = file_path(&path)?;
    let (size, stream) = state.archive.get_stream(&file_key(&path)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, crate::attachment(&path)),
        ],
        Body::from_stream(state.downloads.throttled(stream)),
    )
        .into_response())
}

/// `DELETE /api/files/{path}`: deletes an uploaded file.
#[utoipa::path(delete, path = "/api/files/{*path}", tag = "uploads",
    params(("path" = String, Path, description = "Path of the file inside the uploads area (folders allowed)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Not a path inside the uploads area", body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 409, description = "A queued or running workflow run imports it", body = ErrorBody),
    ))]
pub async fn delete_file(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> ApiResult<StatusCode> {
    let path = file_path(&path)?;
    let key = file_key(&path);
    state.archive.size(&key).await?;
    if state.catalog.files_in_use().await?.contains(&path) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "a queued or running workflow run imports this file; delete it when the run ended",
        ));
    }
    state.archive.delete(&key).await?;
    if let Some(upload) = state.catalog.upload_at(&path).await? {
        state.catalog.delete_upload(&upload.id).await?;
    }
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
    fn upload_names_are_checked() {
        assert_eq!(
            upload_path("study/scan 1.zip").as_deref(),
            Some("study/scan 1.zip")
        );
        let long = "a".repeat(256);
        for bad in [
            "../x",
            "a/\u{202E}gpj.exe",
            "zero\u{200B}width",
            "tab\tname",
            " lead",
            "trail ",
            long.as_str(),
        ] {
            assert_eq!(upload_path(bad), None, "{bad:?}");
        }
        assert!(upload_path(&"a".repeat(255)).is_some());
        assert_eq!(
            upload_path(&format!("{}/b", "a/".repeat(600))),
            None,
            "1024 in all"
        );
    }

    #[test]
    fn taken_names_are_numbered_before_the_extension() {
        let numbered = |p: &str, n| numbered(p, n).expect("room for the number");
        assert_eq!(numbered("scan.zip", 0), "scan.zip");
        assert_eq!(numbered("scan.zip", 1), "scan-2.zip");
        assert_eq!(numbered("dir/case.nii.gz", 2), "dir/case-3.nii.gz");
        assert_eq!(numbered("a.b/README", 1), "a.b/README-2");
        assert_eq!(numbered(".hidden", 1), ".hidden-2");
        assert_eq!(numbered("x.TAR.GZ", 1), "x-2.TAR.GZ");
    }

    #[test]
    fn paths_in_headers_are_percent_encoded() {
        assert_eq!(url_path("a b/Ü.zip"), "a%20b/%C3%9C.zip");
        assert!(HeaderValue::from_str(&url_path("x\u{7f}y")).is_ok());
    }

    #[test]
    fn part_keys_are_unique_and_sort_by_offset() {
        let a = part_key("u", 5);
        let b = part_key("u", 5);
        assert_ne!(a, b);
        assert!(a.starts_with("upload-parts/u/00000000000000000005-"));
        assert!(part_key("u", 10) > a);
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
