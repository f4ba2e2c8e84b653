//! The series page's slice viewer:
//! `GET /api/series/{series_uid}/instances/{sop_instance_uid}/rendered` draws one frame of a
//! stored instance as PNG (a segmentation's frame over the image it segments), and
//! `…/segmentation` lists the slices of a segmentation to step through.
//!
//! The drawing is not done here: `http` must not build the image codecs, so the binary plugs in
//! a [`FrameRenderer`] (the pipeline's thumbnail renderer) through [`AppState::rendering`]. This
//! module fetches the stored files (the instance, and the image an overlay is drawn over, which
//! the renderer names), bounds the work (at most `concurrency` renders, their files in memory,
//! at once, each in a blocking thread) and answers with cache headers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::responses::ErrorBody;
use crate::{fnv1a, ApiError, ApiResult, AppState};

/// Segmentation Storage: the SOP class `…/segmentation` lists.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";
/// At most this many distinct referenced series are looked up for one listing; the sources of
/// any further series are answered as not stored.
const MAX_SOURCE_SERIES: usize = 8;

/// Longest side of a rendered frame when `size` is not given.
pub const DEFAULT_SIZE: u32 = 512;
/// Smallest `size` accepted.
pub const MIN_SIZE: u32 = 16;
/// Largest `size` accepted.
pub const MAX_SIZE: u32 = 2048;

/// Draws frames of stored instances (implemented by the binary with the pipeline's renderer).
/// Every method is called in a blocking thread.
pub trait FrameRenderer: Send + Sync + 'static {
    /// Draws frame `frame` (1-based; `1..=number_of_frames`) of `file` (a whole Part-10 file)
    /// as PNG, scaled so that its longest side is `size` pixels. Objects without pixel data, or
    /// whose codec is missing, are drawn as a labelled placeholder rather than refused. `source`
    /// is the stored file [`FrameRenderer::source_of`] named for this frame, when the archive
    /// has it (an overlay is drawn over it, else alone).
    fn render(
        &self,
        file: &[u8],
        frame: u32,
        number_of_frames: u32,
        size: u32,
        source: Option<&[u8]>,
    ) -> Result<Vec<u8>, RenderError>;

    /// Whether instances of this SOP class are drawn over another stored image (segmentations,
    /// structure sets): then [`FrameRenderer::source_of`] is asked which one before drawing.
    fn draws_over(&self, _sop_class_uid: &str) -> bool {
        false
    }

    /// The stored image frame `frame` (1-based) of `file` is drawn over, if any.
    fn source_of(&self, _file: &[u8], _frame: u32) -> Option<SourceImage> {
        None
    }

    /// The slices of a segmentation (`file`, of SOP class [`SEGMENTATION_STORAGE`]), in the
    /// order a viewer steps through them.
    fn segmentation(&self, _file: &[u8]) -> Result<SegmentationLayout, RenderError> {
        Err(RenderError::Unsupported(
            "this server's renderer does not read segmentations".into(),
        ))
    }
}

/// A stored image, as an overlay references it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceImage {
    /// Its Series Instance UID, if the overlay names it (else it cannot be looked up).
    pub series_uid: Option<String>,
    /// Its SOP Instance UID.
    pub sop_instance_uid: String,
    /// The frame (1-based) of a multi-frame image, if the overlay names one.
    pub frame: Option<u32>,
}

/// A segmentation as the renderer reads it (see [`FrameRenderer::segmentation`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentationLayout {
    /// Number of Frames.
    pub number_of_frames: u32,
    /// The segments.
    pub segments: Vec<SegmentLayout>,
    /// The slices, in slice order.
    pub slices: Vec<SliceLayout>,
}

/// A segment of a [`SegmentationLayout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentLayout {
    /// Segment Number.
    pub number: i64,
    /// Segment Label.
    pub label: Option<String>,
    /// The colour it is drawn in (sRGB).
    pub colour: [u8; 3],
}

/// A slice of a [`SegmentationLayout`]: frames drawn together over one image.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceLayout {
    /// Frame numbers (1-based), ascending; never empty.
    pub frames: Vec<u32>,
    /// Segment Numbers on the slice.
    pub segments: Vec<i64>,
    /// The image the frames reference.
    pub source: Option<SourceImage>,
    /// Position along the slice normal, mm.
    pub position: Option<f64>,
}

/// Why a frame was not drawn.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The renderer cannot draw this frame (answered 501).
    #[error("{0}")]
    Unsupported(String),
    /// The object cannot be read as what it claims to be (answered 422).
    #[error("{0}")]
    Invalid(String),
}

impl From<RenderError> for ApiError {
    fn from(e: RenderError) -> Self {
        match e {
            RenderError::Unsupported(m) => ApiError::new(StatusCode::NOT_IMPLEMENTED, m),
            RenderError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        }
    }
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

    /// A turn to fetch and draw (held until the work is done, even if the client leaves).
    async fn permit(&self) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))
    }

    /// Runs `f` with the renderer in a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn FrameRenderer) -> T + Send + 'static,
    ) -> ApiResult<T> {
        let renderer = self.renderer.clone();
        tokio::task::spawn_blocking(move || f(renderer.as_ref()))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the renderer stopped: {e}"),
                )
            })
    }
}

fn renderer_of(state: &AppState) -> ApiResult<FrameRendering> {
    state.rendering.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "this server was started without a renderer",
        )
    })
}

async fn instance_or_404(
    state: &AppState,
    series_uid: &str,
    sop_instance_uid: &str,
) -> ApiResult<radport_catalog::InstanceRow> {
    state
        .catalog
        .get_instance(series_uid, sop_instance_uid)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("instance {sop_instance_uid} is not in series {series_uid}"),
            )
        })
}

/// The catalog row of a referenced image, if it names its series and the catalog has it.
async fn stored_source(
    state: &AppState,
    source: Option<&SourceImage>,
) -> ApiResult<Option<radport_catalog::InstanceRow>> {
    let Some((series_uid, source)) =
        source.and_then(|s| s.series_uid.as_deref().map(|series| (series, s)))
    else {
        return Ok(None);
    };
    Ok(state
        .catalog
        .get_instance(series_uid, &source.sop_instance_uid)
        .await?)
}

/// Cache headers: kept an hour, unless the answer would change once a referenced image that is
/// not in the archive yet arrives (then revalidated every time: the tag changes with it).
fn cache_headers(etag: &str, waiting_for_source: bool) -> [(header::HeaderName, String); 2] {
    let control = if waiting_for_source {
        "private, no-cache"
    } else {
        "private, max-age=3600"
    };
    [
        (header::CACHE_CONTROL, control.to_string()),
        (header::ETAG, etag.to_string()),
    ]
}

fn etag_of(text: &str) -> String {
    format!("\"{:016x}\"", fnv1a(text.as_bytes()))
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
}

/// Which frame of an instance to draw, and how large.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RenderedQuery {
    /// Frame number, 1-based (default: the middle frame).
    frame: Option<u32>,
    /// Longest side of the image in pixels: 16 to 2048, 512 unless given.
    size: Option<u32>,
}

/// One frame of an instance drawn as a PNG (its window, grey levels or colour). A frame of a
/// segmentation is drawn with the other frames of its slice, in their segment colours, over the
/// image they reference when the archive has it (alone on a dark background otherwise); a
/// structure set is drawn as one slice, over its image likewise.
#[utoipa::path(get, path = "/api/series/{series_uid}/instances/{sop_instance_uid}/rendered",
    tag = "series",
    params(
        ("series_uid" = String, Path, description = "Series Instance UID"),
        ("sop_instance_uid" = String, Path, description = "SOP Instance UID"),
        RenderedQuery,
    ),
    responses(
        (status = 200, description = "The frame. Cached for an hour, unless it is an overlay drawn alone because the image it references is not in the archive yet (then `no-cache`: revalidated with its ETag, which changes when that image arrives)", content_type = "image/png", body = crate::responses::FileBytes),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 400, description = "No such frame, or a bad size", body = ErrorBody),
        (status = 404, description = "Not in the series", body = ErrorBody),
        (status = 501, description = "This instance cannot be drawn (codec, photometric interpretation)", body = ErrorBody),
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
    let instance = instance_or_404(&state, &series_uid, &sop_instance_uid).await?;
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
    let rendering = renderer_of(&state)?;

    // The stored object can be replaced under the same SOP Instance UID (duplicate policy
    // `overwrite`), and a newer build may draw differently: both are part of the tag.
    let tag = format!(
        "{sop_instance_uid}|{frame}|{size}|{}|{}",
        instance.checksum,
        env!("CARGO_PKG_VERSION")
    );
    if !rendering.renderer.draws_over(&instance.sop_class_uid) {
        let etag = etag_of(&tag);
        let cache = cache_headers(&etag, false);
        if not_modified(&headers, &etag) {
            return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
        }
        // The permit covers the file in memory and its decoding; it goes with the blocking
        // task, so a client that leaves does not let more decodes run than allowed.
        let permit = rendering.permit().await?;
        let file = state.archive.get(&instance.object_key).await?;
        let png = rendering
            .run(move |renderer| {
                let _permit = permit;
                renderer.render(&file, frame, frames, size, None)
            })
            .await??;
        return Ok(png_response(cache, png));
    }

    // An overlay: which image it is drawn over is in the file, and that image (whether the
    // archive has it, which version) is part of the tag.
    let permit = rendering.permit().await?;
    let file = state.archive.get(&instance.object_key).await?;
    let probe = file.clone();
    let source = rendering
        .run(move |renderer| renderer.source_of(&probe, frame))
        .await?;
    let row = stored_source(&state, source.as_ref()).await?;
    let waiting = row.is_none() && source.as_ref().is_some_and(|s| s.series_uid.is_some());
    let etag = etag_of(&format!(
        "{tag}|over:{}",
        row.as_ref().map_or("-", |r| r.checksum.as_str())
    ));
    let cache = cache_headers(&etag, waiting);
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let source_file: Option<Bytes> = match &row {
        None => None,
        // Listed but gone from the archive: drawn alone.
        Some(row) => match state.archive.get(&row.object_key).await {
            Ok(bytes) => Some(bytes),
            Err(radport_archive::ArchiveError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
    };
    let png = rendering
        .run(move |renderer| {
            let _permit = permit;
            renderer.render(&file, frame, frames, size, source_file.as_deref())
        })
        .await??;
    Ok(png_response(cache, png))
}

fn png_response(cache: [(header::HeaderName, String); 2], png: Vec<u8>) -> Response {
    (
        cache,
        [(header::CONTENT_TYPE, "image/png".to_string())],
        png,
    )
        .into_response()
}

/// `GET /api/series/{series_uid}/instances/{sop_instance_uid}/segmentation`: the slices of a
/// segmentation, in the order the series page's slice viewer steps through them.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentationSlices {
    /// Number of Frames of the segmentation.
    pub number_of_frames: u32,
    /// Its segments (Segment Sequence).
    pub segments: Vec<Segment>,
    /// Its slices: the frames with foreground grouped by the image they reference (else by
    /// position, else one frame each), ordered along the slice normal when every slice has a
    /// position, else by first frame. Every frame is listed when none has foreground.
    pub slices: Vec<SegmentationSlice>,
}

/// A segment of a segmentation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Segment {
    /// Segment Number (0062,0004).
    pub number: i64,
    /// Segment Label (0062,0005).
    #[schema(required = true)]
    pub label: Option<String>,
    /// The colour it is drawn in, `#rrggbb` (from its Recommended Display CIELab Value, else a
    /// palette colour by number).
    pub colour: String,
}

/// One slice of a segmentation.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentationSlice {
    /// The frame to ask `/rendered` for: it draws this slice (the first of `frames`).
    pub frame: u32,
    /// The segmentation's frames on this slice (1-based), ascending.
    pub frames: Vec<u32>,
    /// Segment Numbers drawn on this slice.
    pub segments: Vec<i64>,
    /// Position of the slice along its normal, mm (from Plane Position), if known.
    #[schema(required = true)]
    pub position: Option<f64>,
    /// The image the frames reference; `null` when they reference none.
    #[schema(required = true)]
    pub source: Option<SliceSource>,
}

/// The image a slice of a segmentation is drawn over.
#[derive(Debug, Serialize, ToSchema)]
pub struct SliceSource {
    /// Its SOP Instance UID.
    pub sop_instance_uid: String,
    /// Its Series Instance UID, when the segmentation names it (Referenced Series Sequence).
    #[schema(required = true)]
    pub series_instance_uid: Option<String>,
    /// The frame of a multi-frame image (Referenced Frame Number).
    #[schema(required = true)]
    pub frame: Option<u32>,
    /// Whether the archive has it (then the slice is drawn over it, else alone).
    pub stored: bool,
    /// Its Instance Number, when stored.
    #[schema(required = true)]
    pub instance_number: Option<i64>,
}

/// The slices of a segmentation to step through, each with the image it is drawn over.
#[utoipa::path(get, path = "/api/series/{series_uid}/instances/{sop_instance_uid}/segmentation",
    tag = "series",
    params(
        ("series_uid" = String, Path, description = "Series Instance UID"),
        ("sop_instance_uid" = String, Path, description = "SOP Instance UID of a segmentation (Segmentation Storage)"),
    ),
    responses(
        (status = 200, description = "The slices. Cached for an hour, unless an image they reference is not in the archive yet (then `no-cache`: revalidated with its ETag)", body = SegmentationSlices),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 404, description = "Not in the series, or not a segmentation", body = ErrorBody),
        (status = 422, description = "A segmentation that cannot be read (pixel data too short for its frames, more than 65 536 frames, …)", body = ErrorBody),
        (status = 501, description = "This server cannot read segmentations", body = ErrorBody),
    ))]
pub(crate) async fn get_segmentation(
    State(state): State<AppState>,
    Path((series_uid, sop_instance_uid)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let instance = instance_or_404(&state, &series_uid, &sop_instance_uid).await?;
    if instance.sop_class_uid != SEGMENTATION_STORAGE {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "instance {sop_instance_uid} is not a segmentation (its SOP class is {}, not \
                 Segmentation Storage {SEGMENTATION_STORAGE})",
                instance.sop_class_uid
            ),
        ));
    }
    let rendering = renderer_of(&state)?;
    let permit = rendering.permit().await?;
    let file = state.archive.get(&instance.object_key).await?;
    let layout = rendering
        .run(move |renderer| {
            let _permit = permit;
            renderer.segmentation(&file)
        })
        .await??;

    // The referenced images of the first few series, as the catalog has them.
    let mut series: Vec<&str> = Vec::new();
    for uid in layout
        .slices
        .iter()
        .filter_map(|s| s.source.as_ref()?.series_uid.as_deref())
    {
        if !series.contains(&uid) && series.len() < MAX_SOURCE_SERIES {
            series.push(uid);
        }
    }
    let mut stored: HashMap<(String, String), radport_catalog::InstanceRow> = HashMap::new();
    for uid in series {
        if let Some(detail) = state.catalog.get_series(uid).await? {
            for row in detail.instances {
                stored.insert((uid.to_owned(), row.sop_instance_uid.clone()), row);
            }
        }
    }

    let mut tag = format!(
        "segmentation|{sop_instance_uid}|{}|{}",
        instance.checksum,
        env!("CARGO_PKG_VERSION")
    );
    let mut waiting = false;
    let slices = layout
        .slices
        .into_iter()
        .map(|slice| {
            let source = slice.source.map(|s| {
                let row = s
                    .series_uid
                    .as_ref()
                    .and_then(|series| stored.get(&(series.clone(), s.sop_instance_uid.clone())));
                tag.push('|');
                tag.push_str(row.map_or("-", |r| r.checksum.as_str()));
                waiting |= row.is_none() && s.series_uid.is_some();
                SliceSource {
                    instance_number: row.and_then(|r| r.instance_number),
                    stored: row.is_some(),
                    sop_instance_uid: s.sop_instance_uid,
                    series_instance_uid: s.series_uid,
                    frame: s.frame,
                }
            });
            SegmentationSlice {
                frame: slice.frames.first().copied().unwrap_or(1),
                frames: slice.frames,
                segments: slice.segments,
                position: slice.position.filter(|p| p.is_finite()),
                source,
            }
        })
        .collect();
    let body = SegmentationSlices {
        number_of_frames: layout.number_of_frames,
        segments: layout
            .segments
            .into_iter()
            .map(|s| Segment {
                number: s.number,
                label: s.label,
                colour: format!("#{:02x}{:02x}{:02x}", s.colour[0], s.colour[1], s.colour[2]),
            })
            .collect(),
        slices,
    };
    let etag = etag_of(&tag);
    let cache = cache_headers(&etag, waiting);
    if not_modified(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let json = serde_json::to_vec(&body).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the answer: {e}"),
        )
    })?;
    Ok((
        cache,
        [(header::CONTENT_TYPE, "application/json".to_string())],
        json,
    )
        .into_response())
}
