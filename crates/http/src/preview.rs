//! `GET /api/series/{series_uid}/instances/{sop_instance_uid}/rendered`: one frame of a stored
//! instance as PNG, for the series page's slice viewer.
//!
//! The drawing is not done here: `http` must not build the image codecs, so the binary plugs in
//! a [`FrameRenderer`] (the pipeline's thumbnail renderer) through [`AppState::rendering`]. This
//! module fetches the stored file, bounds the work (at most `concurrency` files in memory and
//! being decoded at once, each in a blocking thread) and answers with cache headers.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::{fnv1a, ApiError, ApiResult, AppState};

/// Longest side of a rendered frame when `size` is not given.
pub const DEFAULT_SIZE: u32 = 512;
/// Smallest `size` accepted.
pub const MIN_SIZE: u32 = 16;
/// Largest `size` accepted.
pub const MAX_SIZE: u32 = 2048;

/// Draws frames of stored instances (implemented by the binary with the pipeline's renderer).
pub trait FrameRenderer: Send + Sync + 'static {
    /// Draws frame `frame` (1-based; `1..=number_of_frames`) of `file` (a whole Part-10 file)
    /// as PNG, scaled so that its longest side is `size` pixels. Objects without pixel data, or
    /// whose codec is missing, are drawn as a labelled placeholder rather than refused. Called
    /// in a blocking thread.
    fn render(
        &self,
        file: &[u8],
        frame: u32,
        number_of_frames: u32,
        size: u32,
    ) -> Result<Vec<u8>, RenderError>;
}

/// Why a frame was not drawn.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The renderer cannot draw this frame (answered 501).
    #[error("{0}")]
    Unsupported(String),
}

/// A renderer and the limit on concurrent renders.
#[derive(Clone)]
pub struct FrameRendering {
    renderer: Arc<dyn FrameRenderer>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl FrameRendering {
    /// At most `concurrency` (at least 1) instances are fetched and drawn at once; further
    /// requests wait their turn.
    pub fn new(renderer: Arc<dyn FrameRenderer>, concurrency: usize) -> Self {
        Self {
            renderer,
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        }
    }
}

/// Which frame of an instance to draw, and how large.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RenderedQuery {
    /// Frame number, 1-based (default 1).
    frame: Option<u32>,
    /// Longest side of the image in pixels: 16 to 2048, 512 unless given.
    size: Option<u32>,
}

/// One frame of an instance drawn as a PNG (its window, grey levels or colour).
#[utoipa::path(get, path = "/api/series/{series_uid}/instances/{sop_instance_uid}/rendered",
    tag = "series",
    params(
        ("series_uid" = String, Path, description = "Series Instance UID"),
        ("sop_instance_uid" = String, Path, description = "SOP Instance UID"),
        RenderedQuery,
    ),
    responses(
        (status = 200, description = "The frame", content_type = "image/png", body = crate::responses::FileBytes),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 400, description = "No such frame, or a bad size", body = crate::responses::ErrorBody),
        (status = 404, description = "Not in the series", body = crate::responses::ErrorBody),
        (status = 501, description = "This instance cannot be drawn (codec, photometric interpretation)", body = crate::responses::ErrorBody),
    ))]
pub(crate) async fn get_rendered_instance(
    State(state): State<AppState>,
    Path((series_uid, sop_instance_uid)): Path<(String, String)>,
    query: Result<Query<RenderedQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad query ({e}): frame and size are positive integers"),
        )
    })?;
    let size = query.size.unwrap_or(DEFAULT_SIZE);
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}"),
        ));
    }
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
    let frames = u32::try_from(instance.number_of_frames.unwrap_or(1).max(1)).unwrap_or(u32::MAX);
    // Without `frame`: the frame the thumbnail shows (the middle one of a multi-frame object).
    let frame = query.frame.unwrap_or(frames / 2 + 1);
    if frame == 0 || frame > frames {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "frame must be between 1 and {frames} (the Number of Frames of this instance), got {frame}"
            ),
        ));
    }
    let rendering = state.rendering.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this server was started without a renderer",
        )
    })?;

    // The stored object can be replaced under the same SOP Instance UID (duplicate policy
    // `overwrite`), and a newer build may draw differently: both are part of the tag.
    let etag = format!(
        "\"{:016x}\"",
        fnv1a(
            format!(
                "{sop_instance_uid}|{frame}|{size}|{}|{}",
                instance.checksum,
                env!("CARGO_PKG_VERSION")
            )
            .as_bytes()
        )
    );
    let cache = [
        (header::CACHE_CONTROL, "private, max-age=3600".to_string()),
        (header::ETAG, etag.clone()),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }

    // The permit covers the file in memory and its decoding; it goes with the blocking task, so
    // a client that leaves does not let more decodes run than allowed.
    let permit = rendering
        .permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let file = state.archive.get(&instance.object_key).await?;
    let renderer = rendering.renderer.clone();
    let png = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        renderer.render(&file, frame, frames, size)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the renderer stopped: {e}"),
        )
    })?
    .map_err(|e| ApiError::new(StatusCode::NOT_IMPLEMENTED, e.to_string()))?;
    Ok((
        cache,
        [(header::CONTENT_TYPE, "image/png".to_string())],
        png,
    )
        .into_response())
}
