//! Gallery thumbnails of DICOM series, as PNG.
//!
//! - [`middle_instance`] picks the instance to show from the catalog's DICOM JSON of a series.
//! - [`render_instance`] draws one instance (a whole Part-10 file in memory).
//! - [`render_placeholder`] draws a titled card for what has no picture.
//! - [`render_or_placeholder`] decides between the two, and is what the pipeline calls.
//! - [`render_seg_overlay`] and [`render_rtstruct_overlay`] draw a segmentation or a structure
//!   set over the image it refers to (or alone); [`seg_source_reference`] and
//!   [`rtstruct_source_reference`] name the image to fetch for that.
//! - For DICOMweb's rendered and thumbnail resources: [`render_view`] draws a frame with a
//!   given window, region and viewport as JPEG or PNG; [`decode_native_frames`] decodes frames
//!   of compressed pixel data to native samples.
//! - For the series page's slice viewer: [`seg_slices`] lists the slices of a segmentation,
//!   [`overlay_source`] names the image a frame is drawn over, [`render_seg_frame`] and
//!   [`render_frame_over_or_placeholder`] draw one slice over it.
//!
//! Pixel data is decoded by `dicom-pixeldata` for encapsulated (compressed) transfer syntaxes and
//! read directly for native ones (which also covers 1-bit, 32-bit and `YBR_FULL_422` data that
//! `dicom-pixeldata` 0.10 cannot convert). Before the parser sees a file,
//! [`radport_prescan::check_file`] checks its structure (declared lengths within the
//! file, bounded nesting), which the parser does not. The DICOM parser and the codecs are treated
//! as able to panic on hostile data: every call into them runs under
//! [`std::panic::catch_unwind`].
//! (A crash inside the C codecs — OpenJPEG, CharLS — or an abort on allocation failure cannot be
//! caught this way; the frame size is bounded before decoding to keep the latter unlikely.)

mod decode;
mod font;
mod overlay;
mod placeholder;
mod rtstruct;
mod seg;
mod series;
mod tone;
mod view;

use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::FilterType;
use image::{ExtendedColorType, ImageBuffer, ImageEncoder, Luma, Rgb};

pub use placeholder::render_placeholder;
pub use series::middle_instance;
pub use view::{
    decode_native_frames, render_view, ViewFormat, ViewOptions, ViewRegion, ViewWindow,
    WindowFunction,
};

/// Largest `max_side` honoured; larger requests are clamped.
const MAX_SIDE_LIMIT: u32 = 4096;

/// How thumbnails are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbnailOptions {
    /// Length in pixels of the longest side of the thumbnail (clamped to 1..=4096). The image is
    /// scaled (down, or up for small images) so that its longest side is exactly this long.
    pub max_side: u32,
}

impl Default for ThumbnailOptions {
    fn default() -> Self {
        Self { max_side: 256 }
    }
}

impl ThumbnailOptions {
    pub(crate) fn side(&self) -> u32 {
        self.max_side.clamp(1, MAX_SIDE_LIMIT)
    }
}

/// What [`render_or_placeholder`] drew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rendered {
    /// The instance's pixel data, as PNG.
    Image(Vec<u8>),
    /// A placeholder card (PNG), and why the instance was not drawn.
    Placeholder {
        /// The card.
        png: Vec<u8>,
        /// Why (shown on the card).
        reason: String,
    },
}

impl Rendered {
    /// The PNG bytes, whichever the kind.
    pub fn png(&self) -> &[u8] {
        match self {
            Rendered::Image(png) | Rendered::Placeholder { png, .. } => png,
        }
    }

    /// The PNG bytes, whichever the kind.
    pub fn into_png(self) -> Vec<u8> {
        match self {
            Rendered::Image(png) | Rendered::Placeholder { png, .. } => png,
        }
    }

    /// Whether this is a placeholder card rather than the image.
    pub fn is_placeholder(&self) -> bool {
        matches!(self, Rendered::Placeholder { .. })
    }
}

/// Why an instance could not be rendered. The `Display` text is meant for people (it becomes the
/// placeholder's subtitle after "cannot render: ").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbnailError {
    /// The bytes are not a DICOM Part-10 file the parser can read.
    #[error("not a readable DICOM file ({0})")]
    NotDicom(String),
    /// The file's structure is broken in a way that would make the parser allocate far more
    /// than the file holds (a declared length beyond the end, absurd nesting).
    #[error("malformed DICOM file ({0})")]
    Malformed(String),
    /// The object has no Pixel Data, Float Pixel Data or Double Float Pixel Data.
    #[error("no pixel data in {sop_class}")]
    NoPixelData {
        /// SOP Class name and UID, e.g. "Basic Text SR Storage (1.2.840.10008.5.1.4.1.1.88.11)".
        sop_class: String,
    },
    /// The transfer syntax is known but this build has no decoder for its pixel data.
    #[error("{name} codec missing")]
    CodecMissing {
        /// The transfer syntax UID.
        uid: String,
        /// Its name.
        name: String,
    },
    /// The transfer syntax is not known to the registry.
    #[error("unknown transfer syntax {0}")]
    UnknownTransferSyntax(String),
    /// The codec reported an error.
    #[error("decoding failed: {0}")]
    Decode(String),
    /// The parser or a codec panicked (caught).
    #[error("the decoder crashed: {0}")]
    DecoderPanicked(String),
    /// A valid image this renderer does not handle (e.g. an unusual photometric interpretation).
    #[error("unsupported {0}")]
    Unsupported(String),
    /// Image attributes missing or inconsistent with the pixel data.
    #[error("invalid image: {0}")]
    Invalid(String),
    /// A frame was asked for that the instance does not have (`index` is 0-based).
    #[error("no frame {} in an instance of {frames} frame(s)", index + 1)]
    NoSuchFrame {
        /// The frame asked for (0-based).
        index: u32,
        /// The frames there are.
        frames: u32,
    },
    /// More frames than the renderer takes on for this (the slice viewer's listing of a
    /// segmentation).
    #[error("too many frames ({frames}; at most {limit})")]
    TooManyFrames {
        /// Number of Frames.
        frames: u32,
        /// The most accepted.
        limit: u32,
    },
    /// One frame is larger than the renderer accepts.
    #[error("frame too large ({rows}x{columns}, {samples} samples per pixel)")]
    TooLarge {
        /// Rows of a frame.
        rows: u32,
        /// Columns of a frame.
        columns: u32,
        /// Samples per pixel.
        samples: u32,
    },
    /// A valid object with nothing to draw (an empty segmentation, a structure set without
    /// contours).
    #[error("nothing to draw: {0}")]
    NothingToDraw(String),
    /// PNG encoding failed (should not happen).
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

impl ThumbnailError {
    /// A short form for the placeholder card (the full text stays in [`Rendered::Placeholder`]'s
    /// `reason`): codec and parser messages are cut to their last two causes.
    pub fn summary(&self) -> String {
        let tail = |chain: &str| {
            let parts: Vec<&str> = chain.split(": ").collect();
            parts[parts.len().saturating_sub(2)..].join(": ")
        };
        match self {
            ThumbnailError::Decode(chain) => tail(chain),
            ThumbnailError::NotDicom(_) => "not a readable DICOM file".to_owned(),
            ThumbnailError::Malformed(_) => "malformed DICOM file".to_owned(),
            ThumbnailError::DecoderPanicked(_) => "the decoder crashed".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Renders one instance (a whole Part-10 file in memory, with or without the 128-byte preamble)
/// to PNG bytes.
///
/// - the middle frame (`frames / 2`) of a multi-frame instance;
/// - Rescale Slope/Intercept (also from the Pixel Value Transformation functional group);
/// - VOI from the first Window Center/Width (with VOI LUT Function LINEAR, LINEAR_EXACT or
///   SIGMOID; also from the Frame VOI LUT functional group); else, for data of more than 8 bits or
///   with a rescale, a 0.5–99.5 % percentile window; else (≤ 8 bits) the full stored range;
/// - MONOCHROME1 inverted; RGB, PALETTE COLOR, YBR_FULL, YBR_FULL_422, YBR_PARTIAL_422 (and the
///   JPEG 2000 YBR_ICT/YBR_RCT) to RGB; Float/Double Float Pixel Data with a percentile window;
/// - aspect ratio from Pixel Spacing (row spacing, column spacing), else Imager / Nominal Scanned
///   Pixel Spacing, else Pixel Aspect Ratio;
/// - scaled so that the longest side is `opts.max_side` (Lanczos3 down, Catmull-Rom up; no
///   resampling at all when the size already matches).
pub fn render_instance(file: &[u8], opts: &ThumbnailOptions) -> Result<Vec<u8>, ThumbnailError> {
    let obj = decode::parse(file)?;
    render_object(&obj, None, opts)
}

/// Decides what to draw for an instance: the image, or a placeholder when the object has no pixel
/// data (title = Modality, subtitle = SOP Class name, or its UID when the dictionary lacks it) or
/// when rendering fails (title = Modality, subtitle = "cannot render: <reason>").
pub fn render_or_placeholder(file: &[u8], opts: &ThumbnailOptions) -> Rendered {
    render_frame_or_placeholder(file, None, opts)
}

/// [`render_or_placeholder`] for frame `frame` (0-based) of a multi-frame image instead of its
/// middle one (`None`: the middle one), for a viewer that steps through the frames. A frame the
/// image does not have gives a placeholder saying so. Segmentations and structure sets are drawn
/// alone, as [`render_frame_over_or_placeholder`] draws them without a source.
pub fn render_frame_or_placeholder(
    file: &[u8],
    frame: Option<u32>,
    opts: &ThumbnailOptions,
) -> Rendered {
    render_frame_over_or_placeholder(file, frame, None, opts)
}

/// [`render_frame_or_placeholder`], with the image that a segmentation or structure set is drawn
/// over (`source`, the Part-10 file [`overlay_source`] names; ignored for other objects):
///
/// - a segmentation, frame `Some(index)`: the slice of that frame, as [`render_seg_frame`] draws
///   it; `None`: the slice its thumbnail shows, as [`render_seg_overlay`] draws it;
/// - a structure set: one slice, as [`render_rtstruct_overlay`] draws it (frames other than its
///   only one give a placeholder saying so).
///
/// A source that cannot be drawn or lined up is left out: the overlay is drawn alone.
pub fn render_frame_over_or_placeholder(
    file: &[u8],
    frame: Option<u32>,
    source: Option<&[u8]>,
    opts: &ThumbnailOptions,
) -> Rendered {
    let obj = match decode::parse(file) {
        Ok(obj) => obj,
        Err(e) => {
            let subtitle = format!("cannot render: {}", e.summary());
            return Rendered::Placeholder {
                png: render_placeholder("?", &subtitle, opts),
                reason: format!("cannot render: {e}"),
            };
        }
    };
    let info = decode::describe(&obj);
    let title = info.modality.as_deref().unwrap_or("DICOM");
    let is_seg = seg::is_seg(&obj);
    let is_rtstruct = !is_seg && rtstruct::is_rtstruct(&obj);
    let frames = decode::int(&obj, dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
        .unwrap_or(1)
        .max(1);
    if let Some(index) = frame.filter(|i| is_rtstruct && i64::from(*i) != frames / 2) {
        let reason = format!(
            "frame {} of {frames}: a {} is drawn as the overlay of one slice (frame {})",
            index + 1,
            info.sop_class_name.as_deref().unwrap_or("structure set"),
            frames / 2 + 1
        );
        return Rendered::Placeholder {
            png: render_placeholder(title, &reason, opts),
            reason,
        };
    }
    // Over the source when it can be drawn and lined up, else alone.
    let over_or_alone =
        |draw: &dyn Fn(Option<overlay::Source>) -> Result<Vec<u8>, ThumbnailError>| {
            let drawn = source
                .and_then(|file| overlay::Source::render(file, opts).ok())
                .and_then(|source| draw(Some(source)).ok());
            match drawn {
                Some(png) => Ok(png),
                None => draw(None),
            }
        };
    let overlay = if is_seg {
        Some(match frame {
            Some(index) => seg::render_frame(&obj, index, source, opts),
            None => over_or_alone(&|s| seg::render_object(&obj, s, opts)),
        })
    } else if is_rtstruct {
        Some(over_or_alone(&|s| rtstruct::render_object(&obj, s, opts)))
    } else {
        None
    };
    if let Some(result) = overlay {
        return match result {
            Ok(png) => Rendered::Image(png),
            Err(e) => {
                let subtitle = format!("cannot render: {}", e.summary());
                Rendered::Placeholder {
                    png: render_placeholder(title, &subtitle, opts),
                    reason: format!("cannot render: {e}"),
                }
            }
        };
    }
    if !info.has_pixel_data {
        let reason = ThumbnailError::NoPixelData {
            sop_class: info.sop_class_label(),
        }
        .to_string();
        let subtitle = info
            .sop_class_name
            .clone()
            .or_else(|| info.sop_class_uid.clone())
            .unwrap_or_else(|| "no pixel data".to_owned());
        return Rendered::Placeholder {
            png: render_placeholder(title, &subtitle, opts),
            reason,
        };
    }
    match render_object(&obj, frame, opts) {
        Ok(png) => Rendered::Image(png),
        Err(e) => {
            let subtitle = format!("cannot render: {}", e.summary());
            Rendered::Placeholder {
                png: render_placeholder(title, &subtitle, opts),
                reason: format!("cannot render: {e}"),
            }
        }
    }
}

/// The image a segmentation or structure set is drawn on: the Series Instance UID and SOP
/// Instance UID of the referenced instance (see [`seg_source_reference`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SegSourceRef {
    /// Series Instance UID of the referenced image.
    pub series_uid: String,
    /// SOP Instance UID of the referenced image.
    pub sop_instance_uid: String,
}

/// Draws a DICOM Segmentation (SOP Class 1.2.840.10008.5.1.4.1.1.66.4) as coloured,
/// semi-transparent overlays (opacity 0.5) on a source image, as PNG (RGB).
///
/// - `seg` is the whole SEG Part-10 file; `source` the Part-10 file of the referenced image to
///   draw on, drawn exactly as [`render_instance`] draws it (same frame, window, size and
///   aspect), or `None` when the referenced series is not in the archive: then the labels of the
///   slice [`seg_source_reference`] would pick are drawn alone, on a dark background, at the
///   SEG's own geometry (Rows, Columns, Pixel Spacing).
/// - The frames drawn are those referencing `source`'s SOP Instance UID (and, for a multi-frame
///   source, the frame drawn) in their Derivation Image Sequence → Source Image Sequence, or
///   Referenced Image Sequence, functional group; else those lying in `source`'s plane (Plane
///   Position / Orientation, within half the slice thickness, same Frame of Reference); else,
///   for a SEG whose frames name neither source nor position and that references only
///   `source`, all of them. When none qualifies, the source is drawn without overlay.
/// - SEG pixels map onto the source through both images' patient geometry when both have it
///   (so a SEG on another grid lines up), else by stretching the SEG frame over the image.
/// - One colour per segment: its Recommended Display CIELab Value converted to sRGB, else a
///   fixed palette colour by segment number.
/// - BINARY (1 bit, packed LSB first contiguously across frames, not padded per frame) and
///   FRACTIONAL (8 bit; the opacity scales with value / Maximum Fractional Value) are drawn,
///   native or encapsulated (as far as the codecs go); LABELMAP is not.
pub fn render_seg_overlay(
    seg: &[u8],
    source: Option<&[u8]>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    seg::render(seg, source, opts)
}

/// For a SEG without a given source: the instance to draw it on. Of the SEG frames that have any
/// foreground, grouped by the source image they reference and ordered along the slice normal
/// (else by frame number), the middle group's (`n / 2`) SOP Instance UID, with the Series
/// Instance UID of the Referenced Series Sequence item that lists it (else of the only one).
/// `None` for an unreadable SEG, one without foreground, or one whose frames reference no image
/// or whose series is not named.
pub fn seg_source_reference(seg: &[u8]) -> Option<SegSourceRef> {
    seg::source_reference(seg)
}

/// A segmentation as the series page's slice viewer steps through it (see [`seg_slices`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SegSlices {
    /// Number of Frames of the segmentation.
    pub number_of_frames: u32,
    /// The segments of the Segment Sequence, in its order.
    pub segments: Vec<SegSegment>,
    /// The slices, in slice order.
    pub slices: Vec<SegSlice>,
}

/// A segment of a segmentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegSegment {
    /// Segment Number.
    pub number: i64,
    /// Segment Label.
    pub label: Option<String>,
    /// The colour it is drawn in (sRGB), as [`render_seg_overlay`] picks it.
    pub colour: [u8; 3],
}

/// One slice of a segmentation: the frames drawn together over one source image.
#[derive(Debug, Clone, PartialEq)]
pub struct SegSlice {
    /// Frame numbers (1-based) of the segmentation's frames on this slice that have
    /// foreground, ascending (all its frames when no frame anywhere has foreground).
    pub frame_numbers: Vec<u32>,
    /// Segment Numbers drawn on it, ascending.
    pub segments: Vec<i64>,
    /// The image the frames reference, if they do.
    pub source: Option<OverlaySource>,
    /// Mean position of the frames along the slice normal, mm (Plane Position), if known.
    pub position: Option<f64>,
}

/// The stored image an overlay is drawn over, as the overlay names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OverlaySource {
    /// SOP Instance UID of the image.
    pub sop_instance_uid: String,
    /// Its Series Instance UID, from the Referenced Series Sequence item that lists it (else
    /// the only one); `None` when the overlay does not say.
    pub series_uid: Option<String>,
    /// The frame (1-based) of a multi-frame image: the first Referenced Frame Number, if any.
    pub frame_number: Option<u32>,
}

/// The slices of a segmentation, for a viewer that steps through them: its frames with
/// foreground grouped as [`render_seg_frame`] draws them together (by the source image they
/// reference, else by position, else one frame each) and ordered along the slice normal when
/// every slice has a position (ties by first frame), else by first frame. When no frame has
/// foreground, all frames are grouped. [`render_seg_overlay`] without a source draws the middle
/// one (`n / 2`). A segmentation of more than 65 536 frames is refused
/// ([`ThumbnailError::TooManyFrames`]); so is one that cannot be read or drawn (Label Map, bits
/// allocated not matching the type, pixel data too short for its frames).
pub fn seg_slices(seg: &[u8]) -> Result<SegSlices, ThumbnailError> {
    let obj = decode::parse(seg)?;
    seg::slices(&obj)
}

/// Whether objects of this SOP class are drawn over another image ([`overlay_source`] names
/// it): Segmentation Storage and RT Structure Set Storage.
pub fn is_drawn_over_source(sop_class_uid: &str) -> bool {
    let uid = sop_class_uid.trim_end_matches(['\0', ' ']);
    uid == seg::SEG_SOP_CLASS || uid == dicom_dictionary_std::uids::RT_STRUCTURE_SET_STORAGE
}

/// The stored image frame `frame` (0-based; `None`: the frame its thumbnail shows) of a
/// segmentation or a structure set is drawn over: for a segmentation frame, the first image its
/// functional groups reference (Derivation Image → Source Image, or Referenced Image); without
/// a frame, [`seg_source_reference`] or [`rtstruct_source_reference`]. `None` for other
/// objects, unreadable ones, a frame they do not have, or one that references no image.
pub fn overlay_source(file: &[u8], frame: Option<u32>) -> Option<OverlaySource> {
    let obj = decode::parse(file).ok()?;
    let thumbnail_source = |r: Option<SegSourceRef>| {
        r.map(|r| OverlaySource {
            sop_instance_uid: r.sop_instance_uid,
            series_uid: Some(r.series_uid),
            frame_number: None,
        })
    };
    if seg::is_seg(&obj) {
        match frame {
            Some(index) => seg::frame_source(&obj, index).ok().flatten(),
            None => thumbnail_source(seg::source_reference(file)),
        }
    } else if rtstruct::is_rtstruct(&obj) {
        thumbnail_source(rtstruct::source_reference(file))
    } else {
        None
    }
}

/// Draws the slice of frame `index` (0-based) of a segmentation: that frame and every other
/// one of its slice (as [`seg_slices`] groups them) in their segment colours, over `source` (the
/// Part-10 file of the image the frame references, drawn as [`render_instance`] draws it, at the
/// referenced frame of a multi-frame image), with the frames [`render_seg_overlay`] would draw
/// on it; without a source, or with one that cannot be drawn, alone on a dark background at the
/// segmentation's geometry. A frame the segmentation does not have is
/// [`ThumbnailError::NoSuchFrame`]; more than 65 536 frames [`ThumbnailError::TooManyFrames`].
pub fn render_seg_frame(
    seg: &[u8],
    index: u32,
    source: Option<&[u8]>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    let obj = decode::parse(seg)?;
    seg::render_frame(&obj, index, source, opts)
}

/// Draws an RT Structure Set (SOP Class 1.2.840.10008.5.1.4.1.1.481.3) as coloured contour
/// lines (ROI Display Color, else a palette colour by ROI number; `max_side / 128` pixels wide)
/// on a source image, as PNG (RGB).
///
/// - With `source`: drawn as [`render_instance`] draws it; the contours drawn are those whose
///   Contour Image Sequence references `source`'s SOP Instance UID, or, for contours without
///   one, whose points lie within half `source`'s slice thickness (1 mm without one) of its
///   plane (same Frame of Reference). Contour Data (patient mm) is mapped to pixels with the
///   source's Image Position / Orientation (Patient) and Pixel Spacing, which it must have.
/// - Without: all contours of the middle contoured slice (slices ordered along the contours'
///   plane normal) on a dark background framing every contour of the structure set.
/// - CLOSED_PLANAR contours are closed, OPEN_* ones not; POINTs are drawn as crosses.
pub fn render_rtstruct_overlay(
    rtstruct: &[u8],
    source: Option<&[u8]>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    rtstruct::render(rtstruct, source, opts)
}

/// For an RTSTRUCT without a given source: the image of the middle contoured slice (as
/// [`render_rtstruct_overlay`] picks it), from its contours' Contour Image Sequence, with the
/// series from Referenced Frame of Reference → RT Referenced Study → RT Referenced Series (the
/// one whose Contour Image Sequence lists it, else the only one). `None` when unreadable, without
/// contours, or when that slice's contours reference no image.
pub fn rtstruct_source_reference(rtstruct: &[u8]) -> Option<SegSourceRef> {
    rtstruct::source_reference(rtstruct)
}

fn render_object(
    obj: &decode::Obj,
    frame: Option<u32>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    let picture = decode::guard("rendering", || {
        let frame = decode::frame(obj, frame)?;
        let params = tone::ToneParams::from_object(obj, frame.index)?;
        let picture = tone::to_display(&frame, &params)?;
        Ok((picture, frame.aspect))
    })?;
    let (picture, aspect) = picture;
    let (width, height) = target_size(picture.width, picture.height, aspect, opts.side());
    encode_png(picture, width, height)
}

/// Output size: physical width = columns × column spacing, physical height = rows × row spacing,
/// scaled so that the longer one is `side` pixels.
fn target_size(cols: u32, rows: u32, aspect: Option<(f64, f64)>, side: u32) -> (u32, u32) {
    let (row_spacing, col_spacing) = aspect.unwrap_or((1.0, 1.0));
    let phys_w = f64::from(cols) * col_spacing;
    let phys_h = f64::from(rows) * row_spacing;
    let longest = phys_w.max(phys_h);
    if !(longest.is_finite() && longest > 0.0) {
        return (side, side);
    }
    let scale = f64::from(side) / longest;
    let w = (phys_w * scale).round().clamp(1.0, f64::from(side)) as u32;
    let h = (phys_h * scale).round().clamp(1.0, f64::from(side)) as u32;
    (w, h)
}

fn encode_png(picture: tone::Display8, width: u32, height: u32) -> Result<Vec<u8>, ThumbnailError> {
    let picture = resize(picture, width, height)?;
    let color = if picture.rgb {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    png_bytes(&picture.data, width, height, color)
}

/// `picture` scaled to `width` × `height` (Lanczos3 down, Catmull-Rom up, untouched when the
/// size already matches).
pub(crate) fn resize(
    picture: tone::Display8,
    width: u32,
    height: u32,
) -> Result<tone::Display8, ThumbnailError> {
    let tone::Display8 {
        width: w0,
        height: h0,
        rgb,
        data,
    } = picture;
    let invalid = || ThumbnailError::Invalid("pixel buffer size mismatch".into());
    let channels = if rgb { 3 } else { 1 };
    if data.len() as u64 != u64::from(w0) * u64::from(h0) * channels {
        return Err(invalid());
    }
    if w0 == width && h0 == height {
        return Ok(tone::Display8 {
            width,
            height,
            rgb,
            data,
        });
    }
    let filter = if width < w0 || height < h0 {
        FilterType::Lanczos3
    } else {
        FilterType::CatmullRom
    };
    let data = if rgb {
        let img: ImageBuffer<Rgb<u8>, Vec<u8>> =
            ImageBuffer::from_raw(w0, h0, data).ok_or_else(invalid)?;
        image::imageops::resize(&img, width, height, filter).into_raw()
    } else {
        let img: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_raw(w0, h0, data).ok_or_else(invalid)?;
        image::imageops::resize(&img, width, height, filter).into_raw()
    };
    Ok(tone::Display8 {
        width,
        height,
        rgb,
        data,
    })
}

pub(crate) fn png_bytes(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: ExtendedColorType,
) -> Result<Vec<u8>, ThumbnailError> {
    let mut out = Vec::with_capacity(pixels.len() / 2 + 1024);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, PngFilter::Adaptive)
        .write_image(pixels, width, height, color)
        .map_err(|e| ThumbnailError::Encode(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_size_keeps_physical_aspect() {
        // 100 rows x 200 columns, rows 1.0 mm apart, columns 0.5 mm apart: 100 mm x 100 mm.
        assert_eq!(target_size(200, 100, Some((1.0, 0.5)), 256), (256, 256));
        assert_eq!(target_size(200, 100, None, 256), (256, 128));
        assert_eq!(target_size(512, 512, None, 512), (512, 512));
        assert_eq!(target_size(512, 256, Some((2.0, 1.0)), 128), (128, 128));
        assert_eq!(target_size(10, 4000, None, 256), (1, 256));
    }
}
