//! Rendering for viewers (DICOMweb's rendered and thumbnail resources): one frame with an
//! explicit window, a source region and a viewport, as JPEG or PNG; and frames of compressed
//! pixel data decoded to native samples.

use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;

use super::{decode, resize, tone, ThumbnailError, MAX_SIDE_LIMIT};

/// The image format of a rendered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewFormat {
    /// PNG (lossless).
    Png,
    /// Baseline JPEG at this quality (1..=100).
    Jpeg {
        /// Quality, 1 (smallest) to 100 (best).
        quality: u8,
    },
}

/// The VOI LUT function of a window (PS3.3 C.11.2.1.2, C.11.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    /// LINEAR.
    Linear,
    /// LINEAR_EXACT.
    LinearExact,
    /// SIGMOID.
    Sigmoid,
}

/// A window (center and width in modality values, after Rescale Slope/Intercept).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewWindow {
    /// Window Center.
    pub center: f64,
    /// Window Width.
    pub width: f64,
    /// The function.
    pub function: WindowFunction,
}

/// A region of the frame, in its pixels: from column `x`, row `y`, `width` columns and `height`
/// rows; a negative width (height) takes the columns (rows) left of (above) `x` (`y`) and flips
/// the picture horizontally (vertically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViewRegion {
    /// First column (0-based).
    pub x: i64,
    /// First row (0-based).
    pub y: i64,
    /// Columns (negative: flipped).
    pub width: i64,
    /// Rows (negative: flipped).
    pub height: i64,
}

/// How [`render_view`] draws a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewOptions {
    /// The frame (0-based); `None`: the middle one.
    pub frame: Option<u32>,
    /// The window of greyscale images; `None`: the object's own (else automatic, as
    /// [`super::render_instance`] does). Ignored for colour images.
    pub window: Option<ViewWindow>,
    /// The part of the frame drawn; `None`: all of it.
    pub region: Option<ViewRegion>,
    /// The picture is scaled to fit `(width, height)` keeping its physical aspect ratio (one
    /// side may come out shorter); `None`: at its size in pixels (longest side at most 4096,
    /// non-square pixels stretched to square).
    pub viewport: Option<(u32, u32)>,
    /// JPEG or PNG.
    pub format: ViewFormat,
}

/// Draws one frame of `file` (a whole Part-10 file) as [`ViewOptions`] asks: rescale, the
/// window (given, else the object's, else automatic), MONOCHROME1 inverted, colour converted to
/// RGB, the region cut out, scaled to the viewport and encoded. Objects without pixel data, and
/// pixel data without a codec, are errors (no placeholder is drawn).
pub fn render_view(file: &[u8], opts: &ViewOptions) -> Result<Vec<u8>, ThumbnailError> {
    let obj = decode::parse(file)?;
    let (picture, aspect) = decode::guard("rendering", || {
        let frame = decode::frame(&obj, opts.frame)?;
        let mut params = tone::ToneParams::from_object(&obj, frame.index)?;
        if let Some(w) = opts.window {
            let function = match w.function {
                WindowFunction::Linear => tone::VoiFunction::Linear,
                WindowFunction::LinearExact => tone::VoiFunction::LinearExact,
                WindowFunction::Sigmoid => tone::VoiFunction::Sigmoid,
            };
            params = params.with_window(w.center, w.width, function);
        }
        let picture = tone::to_display(&frame, &params)?;
        Ok((picture, frame.aspect))
    })?;
    let picture = match opts.region {
        Some(region) => crop(picture, region)?,
        None => picture,
    };
    let (width, height) = fit(picture.width, picture.height, aspect, opts.viewport);
    let picture = resize(picture, width, height)?;
    let color = if picture.rgb {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    match opts.format {
        ViewFormat::Png => super::png_bytes(&picture.data, width, height, color),
        ViewFormat::Jpeg { quality } => {
            let mut out = Vec::with_capacity(picture.data.len() / 8 + 1024);
            JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
                .encode(&picture.data, width, height, color)
                .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
            Ok(out)
        }
    }
}

/// Frames `frames` (0-based) of `file` (a whole Part-10 file with encapsulated pixel data)
/// decoded to native little-endian samples, each as Explicit VR Little Endian would hold it:
/// the decoded Bits Allocated, colour interleaved (Planar Configuration 0); lossy JPEG and
/// JPEG 2000 colour as RGB. Native pixel data, and a transfer syntax without a codec in this
/// build, are refused.
pub fn decode_native_frames(file: &[u8], frames: &[u32]) -> Result<Vec<Vec<u8>>, ThumbnailError> {
    let obj = decode::parse(file)?;
    decode::guard("decoding", || decode::native_frames(&obj, frames))
}

/// `picture` cut to `region` (clipped to the picture; flipped where the region says).
fn crop(picture: tone::Display8, region: ViewRegion) -> Result<tone::Display8, ThumbnailError> {
    let span = |start: i64, length: i64, size: u32| -> Option<(u32, u32, bool)> {
        let (from, to, flip) = if length < 0 {
            (start.checked_add(length)?, start, true)
        } else {
            (start, start.checked_add(length)?, false)
        };
        let from = from.clamp(0, i64::from(size));
        let to = to.clamp(0, i64::from(size));
        (to > from).then(|| (from as u32, (to - from) as u32, flip))
    };
    let (x, w, flip_x) = span(region.x, region.width, picture.width)
        .ok_or_else(|| ThumbnailError::Invalid("the region lies outside the image".into()))?;
    let (y, h, flip_y) = span(region.y, region.height, picture.height)
        .ok_or_else(|| ThumbnailError::Invalid("the region lies outside the image".into()))?;
    let channels = if picture.rgb { 3usize } else { 1 };
    let row_len = picture.width as usize * channels;
    let mut data = Vec::with_capacity(w as usize * h as usize * channels);
    for r in 0..h {
        let row = if flip_y { y + h - 1 - r } else { y + r } as usize;
        for c in 0..w {
            let col = if flip_x { x + w - 1 - c } else { x + c } as usize;
            let at = row * row_len + col * channels;
            let pixel = picture
                .data
                .get(at..at + channels)
                .ok_or_else(|| ThumbnailError::Invalid("pixel buffer size mismatch".into()))?;
            data.extend_from_slice(pixel);
        }
    }
    Ok(tone::Display8 {
        width: w,
        height: h,
        rgb: picture.rgb,
        data,
    })
}

/// Output size: the physical size (columns × column spacing, rows × row spacing) scaled to fit
/// the viewport, or without one to its longest side in pixels (at most 4096).
fn fit(
    cols: u32,
    rows: u32,
    aspect: Option<(f64, f64)>,
    viewport: Option<(u32, u32)>,
) -> (u32, u32) {
    let (row_spacing, col_spacing) = aspect
        .filter(|(r, c)| r.is_finite() && c.is_finite() && *r > 0.0 && *c > 0.0)
        .unwrap_or((1.0, 1.0));
    let phys_w = f64::from(cols) * col_spacing;
    let phys_h = f64::from(rows) * row_spacing;
    let (vw, vh) = viewport.unwrap_or_else(|| {
        let side = cols.max(rows).clamp(1, MAX_SIDE_LIMIT);
        (side, side)
    });
    let (vw, vh) = (vw.clamp(1, MAX_SIDE_LIMIT), vh.clamp(1, MAX_SIDE_LIMIT));
    if !(phys_w > 0.0 && phys_h > 0.0) {
        return (vw, vh);
    }
    let scale = (f64::from(vw) / phys_w).min(f64::from(vh) / phys_h);
    let w = (phys_w * scale).round().clamp(1.0, f64::from(vw)) as u32;
    let h = (phys_h * scale).round().clamp(1.0, f64::from(vh)) as u32;
    (w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_the_physical_aspect() {
        assert_eq!(fit(32, 32, None, Some((64, 64))), (64, 64));
        assert_eq!(fit(32, 32, None, Some((100, 50))), (50, 50));
        assert_eq!(fit(200, 100, None, None), (200, 100));
        assert_eq!(fit(200, 100, Some((1.0, 0.5)), None), (200, 200));
        assert_eq!(fit(8000, 4000, None, None), (4096, 2048));
    }

    #[test]
    fn regions_are_cut_and_flipped() {
        // 3×2 grey: 0 1 2 / 3 4 5
        let picture = || tone::Display8 {
            width: 3,
            height: 2,
            rgb: false,
            data: vec![0, 1, 2, 3, 4, 5],
        };
        let cut = |x, y, width, height| {
            crop(
                picture(),
                ViewRegion {
                    x,
                    y,
                    width,
                    height,
                },
            )
            .map(|p| (p.width, p.height, p.data))
            .ok()
        };
        assert_eq!(cut(1, 0, 2, 2), Some((2, 2, vec![1, 2, 4, 5])));
        assert_eq!(cut(3, 0, -2, 1), Some((2, 1, vec![2, 1])));
        assert_eq!(cut(0, 2, 1, -2), Some((1, 2, vec![3, 0])));
        assert_eq!(cut(1, 1, 10, 10), Some((2, 1, vec![4, 5])));
        assert_eq!(cut(5, 0, 1, 1), None);
    }
}
