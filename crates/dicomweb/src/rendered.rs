//! WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3, 8.3.5.1; thumbnails: 10.4.1.1.6,
//! Supplement 203), and the decoding of compressed frames that [`crate::frames`] asks for.
//!
//! This crate builds no codec: the pixels are drawn and decoded by a [`PixelService`] that the
//! binary plugs in ([`DicomWeb::with_pixels`]; radport's is the pipeline's thumbnail renderer).
//! Without one, rendered and thumbnail resources answer 501 and compressed frames are sent
//! only as stored. Each request reads one stored file whole (at most [`MAX_DECODE_FILE`] bytes)
//! and hands it to the service in a blocking thread; at most `concurrency` of them run at once,
//! the others wait their turn.
//!
//! What is drawn:
//! - an instance: its first frame; a frame list: its first frame;
//! - a series: its middle instance (in instance order; of those with Rows, if any), at its
//!   middle frame; a study: likewise, of its first series (lowest Series Number);
//! - a thumbnail of a series or a study: the series thumbnail the pipeline stored
//!   (`thumbnails/<series>.png`) when it exists, PNG is acceptable and no viewport is asked;
//!   otherwise drawn as a rendered resource fitted into the thumbnail size (default
//!   [`DEFAULT_THUMBNAIL_SIZE`]) or the viewport.

use std::sync::Arc;

use radport_catalog::search::{InstanceAttributes, Level, Scope, Search};

use crate::media::MediaRange;
use crate::{DicomWeb, DicomWebError, Target};

/// The largest stored file read into memory to be rendered or decoded.
pub const MAX_DECODE_FILE: u64 = 512 * 1024 * 1024;

/// The most bytes of decoded frames one frames request produces.
pub const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// The largest viewport side.
pub const MAX_VIEWPORT: u32 = 4096;

/// The longest side of a thumbnail drawn without a viewport, unless
/// [`DicomWeb::with_thumbnail_size`] says otherwise (the pipeline's default).
pub const DEFAULT_THUMBNAIL_SIZE: u32 = 256;

/// JPEG quality when `quality` is not given.
pub const DEFAULT_QUALITY: u8 = 90;

/// A rendered media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageType {
    /// `image/jpeg` (the default of rendered resources).
    Jpeg,
    /// `image/png`.
    Png,
}

impl ImageType {
    /// Its media type.
    pub fn media_type(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
        }
    }
}

/// The VOI LUT function of a `window` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowFunction {
    /// `linear` (LINEAR).
    Linear,
    /// `linear-exact` (LINEAR_EXACT).
    LinearExact,
    /// `sigmoid` (SIGMOID).
    Sigmoid,
}

/// The `window` parameter: center and width in modality values (after rescale).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Window center.
    pub center: f64,
    /// Window width.
    pub width: f64,
    /// The function.
    pub function: WindowFunction,
}

/// The source rectangle of a `viewport` parameter, in pixels of the frame; a negative width
/// (height) takes the columns (rows) before `x` (`y`) and flips the picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First column (0-based).
    pub x: i64,
    /// First row (0-based).
    pub y: i64,
    /// Columns; `None`: to the right edge.
    pub width: Option<i64>,
    /// Rows; `None`: to the bottom edge.
    pub height: Option<i64>,
}

/// The `viewport` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    /// Width in pixels the picture must fit in.
    pub width: u32,
    /// Height in pixels the picture must fit in.
    pub height: u32,
    /// The part of the frame drawn; `None`: all of it.
    pub region: Option<Region>,
}

/// How a frame is to be drawn, as [`PixelService::render`] receives it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenderOptions {
    /// The frame (1-based, within the instance); `None`: the middle one.
    pub frame: Option<u32>,
    /// JPEG or PNG.
    pub image_type: ImageType,
    /// JPEG quality, 1..=100.
    pub quality: u8,
    /// The window of greyscale images; `None`: the instance's own (else automatic).
    pub window: Option<Window>,
    /// The size (fitted, aspect ratio kept) and the region; `None`: the frame's size in
    /// pixels, whole.
    pub viewport: Option<Viewport>,
}

/// A rendered picture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// Its media type (`image/jpeg`, `image/png`).
    pub media_type: String,
    /// The encoded picture.
    pub bytes: Vec<u8>,
}

/// Why a [`PixelService`] did not draw or decode.
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    /// The instance has no pixel data to draw (answered 406).
    #[error("{0}")]
    NotAnImage(String),
    /// This server cannot draw or decode it (no codec, an unusual photometric
    /// interpretation): answered 501.
    #[error("{0}")]
    Unsupported(String),
    /// The stored object cannot be read as what it claims to be (answered 500).
    #[error("{0}")]
    Invalid(String),
}

impl From<PixelError> for DicomWebError {
    fn from(e: PixelError) -> Self {
        match e {
            PixelError::NotAnImage(m) => DicomWebError::NotAcceptable(m),
            PixelError::Unsupported(m) => DicomWebError::NotImplemented(m),
            PixelError::Invalid(m) => DicomWebError::Unreadable(m),
        }
    }
}

/// Draws and decodes the pixels of stored instances (implemented by the binary over the
/// pipeline's renderer: this crate builds no codec). Every method is called in a blocking
/// thread with a whole Part-10 file that the service must check before parsing (it is
/// untrusted), and must not panic on hostile data.
pub trait PixelService: Send + Sync + 'static {
    /// One frame of `file`, drawn as `options` say.
    fn render(&self, file: &[u8], options: &RenderOptions) -> Result<Rendered, PixelError>;

    /// Frames `frames` (1-based) of `file`'s encapsulated pixel data decoded to native samples
    /// as Explicit VR Little Endian holds them, one buffer per frame.
    fn decode_frames(&self, file: &[u8], frames: &[u32]) -> Result<Vec<Vec<u8>>, PixelError>;
}

/// A pixel service and the limit on concurrent uses.
#[derive(Clone)]
pub(crate) struct Pixels {
    service: Arc<dyn PixelService>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl DicomWeb {
    /// These services, with rendered and thumbnail resources and decoded frames drawn by
    /// `service`, at most `concurrency` (at least 1) at once.
    pub fn with_pixels(mut self, service: Arc<dyn PixelService>, concurrency: usize) -> Self {
        self.pixels = Some(Pixels {
            service,
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        });
        self
    }

    /// Thumbnails drawn without a viewport fit into `size` × `size` pixels (1 to
    /// [`MAX_VIEWPORT`]; default [`DEFAULT_THUMBNAIL_SIZE`]): the size of the pipeline's.
    pub fn with_thumbnail_size(mut self, size: u32) -> Self {
        self.thumbnail_size = size.clamp(1, MAX_VIEWPORT);
        self
    }

    /// Runs `f` over the stored file of `instance` with the pixel service, in a blocking thread,
    /// when a turn is free.
    pub(crate) async fn with_file<T: Send + 'static>(
        &self,
        instance: &InstanceAttributes,
        f: impl FnOnce(&dyn PixelService, &[u8]) -> Result<T, PixelError> + Send + 'static,
    ) -> Result<T, DicomWebError> {
        let pixels = self.pixels.clone().ok_or_else(|| {
            DicomWebError::NotImplemented("this server was started without a renderer".into())
        })?;
        let size = u64::try_from(instance.size).unwrap_or(u64::MAX);
        if size > MAX_DECODE_FILE {
            return Err(DicomWebError::TooLarge(format!(
                "the instance is larger than {MAX_DECODE_FILE} bytes, the most radport reads \
                 into memory to render or decode"
            )));
        }
        // The permit covers the file in memory and its decoding, and goes with the blocking
        // task: a client that leaves does not let more run than allowed.
        let permit = pixels
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DicomWebError::NotImplemented("shutting down".into()))?;
        let file = self.archive.get(&instance.object_key).await?;
        let service = pixels.service.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(service.as_ref(), &file)))
        })
        .await
        .map_err(|e| DicomWebError::Unreadable(format!("the renderer stopped: {e}")))?;
        match result {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(DicomWebError::Unreadable("the renderer crashed".into())),
        }
    }

    /// A rendered resource (`…/rendered`): the frame `frames` names first, the instance's
    /// first frame, or a series' or study's representative instance at its middle frame.
    pub async fn rendered(
        &self,
        target: &Target,
        frames: Option<&[u32]>,
        scope: &Scope,
        accept: &[MediaRange],
        query: &[(String, String)],
    ) -> Result<Rendered, DicomWebError> {
        let params = parse_params(Resource::Rendered, query)?;
        let image_type = image_type(accept, ImageType::Jpeg)?;
        let (instance, _) = self.representative(target, scope).await?;
        let frame = match frames {
            Some(list) => Some(list.first().copied().unwrap_or(1)),
            None if target.instance.is_some() => Some(1),
            None => None,
        };
        self.render_instance(&instance, frame, image_type, params)
            .await
    }

    /// A thumbnail (`…/thumbnail`): the stored series thumbnail of a series or study when it
    /// serves, else drawn like a rendered resource at the thumbnail size.
    pub async fn thumbnail(
        &self,
        target: &Target,
        frames: Option<&[u32]>,
        scope: &Scope,
        accept: &[MediaRange],
        query: &[(String, String)],
    ) -> Result<Rendered, DicomWebError> {
        let mut params = parse_params(Resource::Thumbnail, query)?;
        let image_type = image_type(accept, ImageType::Png)?;
        let (instance, series) = self.representative(target, scope).await?;
        if target.instance.is_none() && params.viewport.is_none() && image_type == ImageType::Png {
            if let Some(series) = series {
                let key = radport_archive::keys::thumbnail(&series);
                match self.archive.get(&key).await {
                    Ok(png) => {
                        return Ok(Rendered {
                            media_type: ImageType::Png.media_type().into(),
                            bytes: png.to_vec(),
                        })
                    }
                    Err(radport_archive::ArchiveError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        params.viewport.get_or_insert(Viewport {
            width: self.thumbnail_size,
            height: self.thumbnail_size,
            region: None,
        });
        let frame = frames.map(|list| list.first().copied().unwrap_or(1));
        self.render_instance(&instance, frame, image_type, params)
            .await
    }

    /// The instance a path names, or the representative one of its series or study (the
    /// middle image of the series, of the study's first series), with its series.
    async fn representative(
        &self,
        target: &Target,
        scope: &Scope,
    ) -> Result<(InstanceAttributes, Option<String>), DicomWebError> {
        let mut target = target.clone();
        if target.series.is_none() {
            // The study's first series (lowest Series Number), without listing its instances.
            let found = self
                .catalog
                .search(&Search {
                    level: Level::Series,
                    conditions: crate::wado::target_conditions(&target),
                    scope: scope.clone(),
                    limit: 1,
                    offset: 0,
                })
                .await?;
            target.series = Some(
                found
                    .into_iter()
                    .find_map(|f| f.series.map(|s| s.uid))
                    .ok_or_else(|| DicomWebError::NotFound("no such study".into()))?,
            );
        }
        let found = self.instances(&target, scope).await?;
        let mut instances: Vec<InstanceAttributes> =
            found.into_iter().filter_map(|f| f.instance).collect();
        // Of a series, images (with Rows) are drawn rather than the reports among them.
        if target.instance.is_none() && instances.iter().any(|i| i.rows.is_some()) {
            instances.retain(|i| i.rows.is_some());
        }
        let middle = instances.len() / 2;
        if middle >= instances.len() {
            return Err(DicomWebError::NotFound("no such instance".into()));
        }
        Ok((instances.swap_remove(middle), target.series))
    }

    async fn render_instance(
        &self,
        instance: &InstanceAttributes,
        frame: Option<u32>,
        image_type: ImageType,
        params: Params,
    ) -> Result<Rendered, DicomWebError> {
        let frames = instance
            .number_of_frames
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(1);
        if let Some(n) = frame.filter(|n| *n > frames) {
            return Err(DicomWebError::BadRequest(format!(
                "frame {n} does not exist: the instance has {frames} frame(s)"
            )));
        }
        if let Some(region) = params.viewport.and_then(|v| v.region) {
            let size = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
            check_region(region, size(instance.columns), size(instance.rows))?;
        }
        let options = RenderOptions {
            frame,
            image_type,
            quality: params.quality.unwrap_or(DEFAULT_QUALITY),
            window: params.window,
            viewport: params.viewport,
        };
        self.with_file(instance, move |service, file| {
            service.render(file, &options)
        })
        .await
    }
}

/// Which resource's parameters are parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `…/rendered`: `window`, `viewport`, `quality`, `iccprofile=no`, `charset`.
    Rendered,
    /// `…/thumbnail`: `viewport`, `charset`.
    Thumbnail,
}

/// The query parameters of a rendered or thumbnail request.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Params {
    /// `window`.
    pub window: Option<Window>,
    /// `viewport`.
    pub viewport: Option<Viewport>,
    /// `quality`.
    pub quality: Option<u8>,
}

/// Reads the query parameters of `resource`; anything it does not support is refused with
/// the reason (400).
pub fn parse_params(
    resource: Resource,
    query: &[(String, String)],
) -> Result<Params, DicomWebError> {
    let bad = |m: String| DicomWebError::BadRequest(m);
    let mut params = Params::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in query {
        if seen.contains(&name.as_str()) {
            return Err(bad(format!("{name} is given more than once")));
        }
        seen.push(name);
        match (name.as_str(), resource) {
            ("viewport", _) => params.viewport = Some(parse_viewport(value)?),
            ("window", Resource::Rendered) => params.window = Some(parse_window(value)?),
            ("quality", Resource::Rendered) => {
                let q: u8 = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| bad(format!("quality must be 1 to 100, got {value:?}")))?;
                params.quality = Some(q);
            }
            // Only about the text of annotations, which are not drawn.
            ("charset", _) => {}
            ("iccprofile", Resource::Rendered) if value.trim().eq_ignore_ascii_case("no") => {}
            ("iccprofile", Resource::Rendered) => {
                return Err(bad(
                    "iccprofile: only \"no\" is supported (pictures are sRGB without a profile)"
                        .into(),
                ))
            }
            ("annotation", Resource::Rendered) => {
                return Err(bad(
                    "annotation is not supported: radport draws no annotations".into(),
                ))
            }
            (other, Resource::Rendered) => {
                return Err(bad(format!(
                    "{other:?} is not a parameter of rendered resources (window, viewport, \
                     quality, iccprofile=no, charset)"
                )))
            }
            (other, Resource::Thumbnail) => {
                return Err(bad(format!(
                    "{other:?} is not a parameter of thumbnails (viewport, charset)"
                )))
            }
        }
    }
    Ok(params)
}

/// `window=center,width[,function]`.
fn parse_window(value: &str) -> Result<Window, DicomWebError> {
    let bad = || {
        DicomWebError::BadRequest(format!(
            "window must be center,width,function (function linear, linear-exact or sigmoid; \
             width above 0, at least 1 for linear), got {value:?}"
        ))
    };
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(bad());
    }
    let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    let center = number(parts[0]).ok_or_else(bad)?;
    let width = number(parts[1]).ok_or_else(bad)?;
    let function = match parts
        .get(2)
        .map(|f| f.to_ascii_lowercase())
        .as_deref()
        .unwrap_or("linear")
    {
        "linear" => WindowFunction::Linear,
        "linear-exact" | "linear_exact" => WindowFunction::LinearExact,
        "sigmoid" => WindowFunction::Sigmoid,
        _ => return Err(bad()),
    };
    let usable = match function {
        WindowFunction::Linear => width >= 1.0,
        _ => width > 0.0,
    };
    if !usable {
        return Err(bad());
    }
    Ok(Window {
        center,
        width,
        function,
    })
}

/// `viewport=vw,vh[,sx,sy[,sw,sh]]`; an empty `vw` or `vh` leaves that side free, an empty
/// `sx`/`sy` is 0, an empty `sw`/`sh` reaches the edge.
fn parse_viewport(value: &str) -> Result<Viewport, DicomWebError> {
    let bad = |why: &str| {
        DicomWebError::BadRequest(format!(
            "viewport must be vw,vh[,sx,sy[,sw,sh]] ({why}), got {value:?}"
        ))
    };
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if !matches!(parts.len(), 2 | 4 | 6) {
        return Err(bad("2, 4 or 6 values"));
    }
    let side = |s: &str| -> Result<Option<u32>, DicomWebError> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse::<u32>()
            .ok()
            .filter(|v| (1..=MAX_VIEWPORT).contains(v))
            .map(Some)
            .ok_or_else(|| bad(&format!("vw and vh are 1 to {MAX_VIEWPORT}")))
    };
    let (width, height) = match (side(parts[0])?, side(parts[1])?) {
        (None, None) => return Err(bad("vw or vh must be given")),
        (w, h) => (w.unwrap_or(MAX_VIEWPORT), h.unwrap_or(MAX_VIEWPORT)),
    };
    let region = if parts.len() > 2 {
        let int = |s: &str, what: &str| -> Result<Option<i64>, DicomWebError> {
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<i64>()
                .ok()
                .filter(|v| v.unsigned_abs() <= 1 << 20)
                .map(Some)
                .ok_or_else(|| bad(&format!("{what} is a whole number of pixels")))
        };
        let x = int(parts[2], "sx")?.unwrap_or(0);
        let y = int(parts[3], "sy")?.unwrap_or(0);
        let (w, h) = match parts.get(4..6) {
            Some([w, h]) => (int(w, "sw")?, int(h, "sh")?),
            _ => (None, None),
        };
        if x < 0 || y < 0 {
            return Err(bad("sx and sy are 0 or more"));
        }
        if w == Some(0) || h == Some(0) {
            return Err(bad("sw and sh are not 0"));
        }
        Some(Region {
            x,
            y,
            width: w,
            height: h,
        })
    } else {
        None
    };
    Ok(Viewport {
        width,
        height,
        region,
    })
}

/// The region must cover some of a frame of `columns` × `rows` (when known).
fn check_region(
    region: Region,
    columns: Option<u32>,
    rows: Option<u32>,
) -> Result<(), DicomWebError> {
    let covers = |start: i64, length: Option<i64>, size: Option<u32>| match size {
        None => true,
        Some(size) => {
            let size = i64::from(size);
            match length {
                None => start < size,
                Some(l) if l < 0 => start.saturating_add(l) < size && start > 0,
                Some(l) => start < size && start.saturating_add(l) > 0,
            }
        }
    };
    if covers(region.x, region.width, columns) && covers(region.y, region.height, rows) {
        Ok(())
    } else {
        Err(DicomWebError::BadRequest(format!(
            "the viewport's source region lies outside the {}×{} image",
            columns.map_or("?".into(), |c| c.to_string()),
            rows.map_or("?".into(), |r| r.to_string())
        )))
    }
}

/// The rendered media type `accept` asks for first; `*/*` and `image/*` get `wildcard`.
pub fn image_type(accept: &[MediaRange], wildcard: ImageType) -> Result<ImageType, DicomWebError> {
    accept
        .iter()
        .find_map(|range| match range.media_type.as_str() {
            "image/jpeg" => Some(ImageType::Jpeg),
            "image/png" => Some(ImageType::Png),
            "*/*" | "image/*" => Some(wildcard),
            _ => None,
        })
        .ok_or_else(|| {
            DicomWebError::NotAcceptable(
                "rendered pictures are image/jpeg or image/png (single frame)".into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::accept;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters() {
        let p = parse_params(
            Resource::Rendered,
            &q(&[
                ("window", "40,400,sigmoid"),
                ("viewport", "64,32"),
                ("quality", "75"),
            ]),
        )
        .unwrap();
        assert_eq!(
            p.window,
            Some(Window {
                center: 40.0,
                width: 400.0,
                function: WindowFunction::Sigmoid
            })
        );
        assert_eq!(
            p.viewport,
            Some(Viewport {
                width: 64,
                height: 32,
                region: None
            })
        );
        assert_eq!(p.quality, Some(75));
        let region = parse_params(Resource::Rendered, &q(&[("viewport", "64,64,2,3,-4,5")]))
            .unwrap()
            .viewport
            .unwrap()
            .region;
        assert_eq!(
            region,
            Some(Region {
                x: 2,
                y: 3,
                width: Some(-4),
                height: Some(5)
            })
        );
        for bad in [
            &[("window", "40")][..],
            &[("window", "40,0")],
            &[("window", "40,400,cubic")],
            &[("viewport", "0,10")],
            &[("viewport", "10,10,1")],
            &[("viewport", "10,10,1,1,0,4")],
            &[("viewport", "99999,10")],
            &[("quality", "0")],
            &[("annotation", "patient")],
            &[("iccprofile", "srgb")],
            &[("frobnicate", "1")],
            &[("quality", "5"), ("quality", "6")],
        ] {
            assert!(
                parse_params(Resource::Rendered, &q(bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(parse_params(Resource::Thumbnail, &q(&[("window", "1,2")])).is_err());
        assert!(parse_params(Resource::Thumbnail, &q(&[("viewport", "64,64")])).is_ok());
    }

    #[test]
    fn media_types_and_regions() {
        assert_eq!(
            image_type(&accept(&[]), ImageType::Jpeg).ok(),
            Some(ImageType::Jpeg)
        );
        assert_eq!(
            image_type(&accept(&["image/png, image/jpeg"]), ImageType::Jpeg).ok(),
            Some(ImageType::Png)
        );
        assert!(image_type(&accept(&["text/html"]), ImageType::Jpeg).is_err());
        let region = |x, y, w, h| Region {
            x,
            y,
            width: w,
            height: h,
        };
        assert!(check_region(region(0, 0, None, None), Some(8), Some(8)).is_ok());
        assert!(check_region(region(8, 0, None, None), Some(8), Some(8)).is_err());
        assert!(check_region(region(4, 4, Some(-2), Some(2)), Some(8), Some(8)).is_ok());
        assert!(check_region(region(0, 4, Some(-2), Some(2)), Some(8), Some(8)).is_err());
    }
}
