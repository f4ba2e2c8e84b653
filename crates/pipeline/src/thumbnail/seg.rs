//! DICOM Segmentation (SEG) overlays.

use std::borrow::Cow;
use std::collections::BTreeMap;

use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_pixeldata::PixelDecoder;

use super::decode::{self, frame_attr, int, text, Obj};
use super::overlay::{
    cielab_to_srgb, dot, frame_numbers, items, output_to_grid, palette_colour, series_of,
    slice_thickness, Canvas, Plane, Source, Vec3, BACKGROUND, FILL_ALPHA,
};
use super::{
    target_size, OverlaySource, SegSegment, SegSlice, SegSlices, SegSourceRef, ThumbnailError,
    ThumbnailOptions,
};

/// Segmentation Storage.
pub(crate) const SEG_SOP_CLASS: &str = dicom_dictionary_std::uids::SEGMENTATION_STORAGE;
/// Label Map Segmentation Storage (not drawn as an overlay).
const LABEL_MAP_SEG_SOP_CLASS: &str = dicom_dictionary_std::uids::LABEL_MAP_SEGMENTATION_STORAGE;
/// Largest frame accepted, in pixels.
const MAX_FRAME_PIXELS: u64 = 1 << 26;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Binary,
    /// 8-bit values, `max` meaning a probability or occupancy of 1.
    Fractional {
        max: f32,
    },
}

/// A reference from a frame to a source image: SOP Instance UID and Referenced Frame Numbers.
#[derive(Debug, Clone)]
struct Reference {
    uid: String,
    frames: Vec<i64>,
}

#[derive(Debug)]
struct SegFrame {
    index: u32,
    segment: Option<i64>,
    references: Vec<Reference>,
    plane: Option<Plane>,
}

/// Where the frames' values are.
enum Pixels<'a> {
    Native(Cow<'a, [u8]>),
    Encapsulated,
}

struct Seg<'a> {
    obj: &'a Obj,
    rows: u32,
    cols: u32,
    kind: Kind,
    bits_allocated: u16,
    frames: Vec<SegFrame>,
    colours: BTreeMap<i64, [u8; 3]>,
    pixels: Pixels<'a>,
}

/// What the frames of one slice share: the source image they reference (SOP Instance UID and
/// Referenced Frame Numbers), else their position along the slice normal (to the hundredth of
/// a millimetre), else nothing (each such frame is a slice of its own).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum SliceKey {
    Image(String, Vec<i64>),
    Position(i64),
    Frame(u32),
}

/// The frames of one slice of the segmentation (one source image, or one position).
#[derive(Debug)]
struct Slice {
    /// The source image the frames reference, if they do (the first reference of the first
    /// frame).
    reference: Option<Reference>,
    /// Indices into [`Seg::frames`], ascending.
    frames: Vec<usize>,
    /// Mean position of the frames along the slice normal (mm), when they have one.
    position: Option<f64>,
}

/// Most frames [`slices`] and [`render_frame`] take on: each frame costs a per-frame item and a
/// foreground test (a decode, when encapsulated), and the slices become a list for the viewer.
pub(crate) const MAX_VIEWER_FRAMES: u32 = 65_536;

/// See [`super::render_seg_overlay`].
pub(crate) fn render(
    seg: &[u8],
    source: Option<&[u8]>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    let seg_obj = decode::parse(seg)?;
    let source = source.map(|file| Source::render(file, opts)).transpose()?;
    render_object(&seg_obj, source, opts)
}

pub(crate) fn render_object(
    obj: &Obj,
    source: Option<Source>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    decode::guard("drawing the segmentation", || {
        let seg = Seg::read(obj, u32::MAX)?;
        let canvas = match source {
            Some(source) => {
                let frames = seg.frames_for(&source);
                let mut canvas = source.canvas.clone();
                for i in frames {
                    seg.draw_frame(&mut canvas, i, Some(&source))?;
                }
                canvas
            }
            None => {
                let slice = seg.middle_slice()?.ok_or_else(|| {
                    ThumbnailError::NothingToDraw("the segmentation has no foreground".into())
                })?;
                let aspect = pixel_spacing(obj);
                let (width, height) = target_size(seg.cols, seg.rows, aspect, opts.side());
                let mut canvas = Canvas::filled(width, height, BACKGROUND);
                for i in slice.frames {
                    seg.draw_frame(&mut canvas, i, None)?;
                }
                canvas
            }
        };
        canvas.png()
    })
}

/// See [`super::seg_source_reference`].
pub(crate) fn source_reference(seg: &[u8]) -> Option<SegSourceRef> {
    let obj = decode::parse(seg).ok()?;
    decode::guard("reading the segmentation", || {
        let seg = Seg::read(&obj, u32::MAX)?;
        let Some(uid) = seg.middle_slice()?.and_then(|s| s.reference).map(|r| r.uid) else {
            return Ok(None);
        };
        Ok(series_of(&obj, &uid).map(|series_uid| SegSourceRef {
            series_uid,
            sop_instance_uid: uid,
        }))
    })
    .ok()
    .flatten()
}

/// See [`super::seg_slices`].
pub(crate) fn slices(obj: &Obj) -> Result<SegSlices, ThumbnailError> {
    decode::guard("reading the segmentation", || {
        let seg = Seg::read(obj, MAX_VIEWER_FRAMES)?;
        let mut slices = seg.slices(true)?;
        if slices.is_empty() {
            // Nothing drawn anywhere: the frames' slices all the same, so that a viewer still
            // steps through the images they were made on.
            slices = seg.slices(false)?;
        }
        let segments = items(obj, tags::SEGMENT_SEQUENCE)
            .iter()
            .filter_map(|item| {
                let number = int(item, tags::SEGMENT_NUMBER)?;
                Some(SegSegment {
                    number,
                    label: text(item, tags::SEGMENT_LABEL),
                    colour: seg.colour(Some(number)),
                })
            })
            .collect();
        let slices = slices
            .into_iter()
            .map(|slice| {
                let mut segments: Vec<i64> = slice
                    .frames
                    .iter()
                    .filter_map(|i| seg.frames[*i].segment)
                    .collect();
                segments.sort_unstable();
                segments.dedup();
                SegSlice {
                    frame_numbers: slice.frames.iter().map(|i| *i as u32 + 1).collect(),
                    segments,
                    source: slice.reference.map(|r| overlay_source(obj, r)),
                    position: slice.position,
                }
            })
            .collect();
        Ok(SegSlices {
            number_of_frames: seg.frames.len() as u32,
            segments,
            slices,
        })
    })
}

/// The source image of the slice of frame `index` (0-based), if its frames reference one.
pub(crate) fn frame_source(obj: &Obj, index: u32) -> Result<Option<OverlaySource>, ThumbnailError> {
    decode::guard("reading the segmentation", || {
        let seg = Seg::read(obj, MAX_VIEWER_FRAMES)?;
        seg.check_frame(index)?;
        Ok(seg.frames[index as usize]
            .references
            .first()
            .cloned()
            .map(|r| overlay_source(obj, r)))
    })
}

fn overlay_source(obj: &Obj, reference: Reference) -> OverlaySource {
    OverlaySource {
        series_uid: series_of(obj, &reference.uid),
        frame_number: reference
            .frames
            .first()
            .and_then(|n| u32::try_from(*n).ok())
            .filter(|n| *n >= 1),
        sop_instance_uid: reference.uid,
    }
}

/// See [`super::render_seg_frame`].
pub(crate) fn render_frame(
    obj: &Obj,
    index: u32,
    source: Option<&[u8]>,
    opts: &ThumbnailOptions,
) -> Result<Vec<u8>, ThumbnailError> {
    decode::guard("drawing the segmentation", || {
        let seg = Seg::read(obj, MAX_VIEWER_FRAMES)?;
        seg.check_frame(index)?;
        let i = index as usize;
        let mut frames = seg.slice_of(i);
        // The source drawn at the frame the slice's frames reference (a multi-frame source).
        let source_frame = seg.frames[i]
            .references
            .first()
            .and_then(|r| r.frames.first())
            .and_then(|n| u32::try_from(n.checked_sub(1)?).ok());
        let source = source.and_then(|file| {
            let source_obj = decode::parse(file).ok()?;
            let frames = int(&source_obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
            let frame = source_frame.filter(|f| i64::from(*f) < frames);
            Source::render_frame(&source_obj, frame, opts).ok()
        });
        let canvas = match source {
            Some(source) => {
                frames.extend(seg.frames_for(&source));
                frames.sort_unstable();
                frames.dedup();
                let mut canvas = source.canvas.clone();
                for i in frames {
                    seg.draw_frame(&mut canvas, i, Some(&source))?;
                }
                canvas
            }
            None => {
                let aspect = pixel_spacing(obj);
                let (width, height) = target_size(seg.cols, seg.rows, aspect, opts.side());
                let mut canvas = Canvas::filled(width, height, BACKGROUND);
                for i in frames {
                    seg.draw_frame(&mut canvas, i, None)?;
                }
                canvas
            }
        };
        canvas.png()
    })
}

/// Whether `obj` is a Segmentation (by SOP Class, else by Modality).
pub(crate) fn is_seg(obj: &Obj) -> bool {
    let description = decode::describe(obj);
    match description.sop_class_uid.as_deref() {
        Some(uid) => uid == SEG_SOP_CLASS,
        None => description.modality.as_deref() == Some("SEG"),
    }
}

/// (row spacing, column spacing) of the segmentation's frames.
fn pixel_spacing(obj: &InMemDicomObject) -> Option<(f64, f64)> {
    let v = frame_attr(obj, 0, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
        .and_then(decode::floats)?;
    let (r, c) = (*v.first()?, *v.get(1)?);
    (r > 0.0 && c > 0.0 && r / c > 1.0 / 64.0 && r / c < 64.0).then_some((r, c))
}

impl<'a> Seg<'a> {
    /// Reads the segmentation's attributes (not its pixels), refusing more than `max_frames`
    /// frames before looking at any.
    fn read(obj: &'a Obj, max_frames: u32) -> Result<Self, ThumbnailError> {
        let description = decode::describe(obj);
        if description.sop_class_uid.as_deref() == Some(LABEL_MAP_SEG_SOP_CLASS) {
            return Err(ThumbnailError::Unsupported(
                "Label Map Segmentation".to_owned(),
            ));
        }
        if !is_seg(obj) {
            return Err(ThumbnailError::Unsupported(format!(
                "{} as a segmentation",
                description.sop_class_label()
            )));
        }
        let invalid = |what: &str| ThumbnailError::Invalid(what.to_owned());
        let rows = int(obj, tags::ROWS).ok_or_else(|| invalid("Rows missing"))?;
        let cols = int(obj, tags::COLUMNS).ok_or_else(|| invalid("Columns missing"))?;
        let (rows, cols) = match (u32::try_from(rows), u32::try_from(cols)) {
            (Ok(r), Ok(c)) if r > 0 && c > 0 => (r, c),
            _ => return Err(invalid("Rows or Columns out of range")),
        };
        if u64::from(rows) * u64::from(cols) > MAX_FRAME_PIXELS {
            return Err(ThumbnailError::TooLarge {
                rows,
                columns: cols,
                samples: 1,
            });
        }
        let bits_allocated = int(obj, tags::BITS_ALLOCATED).unwrap_or(0);
        let kind = match text(obj, tags::SEGMENTATION_TYPE).as_deref() {
            Some("BINARY") => Kind::Binary,
            Some("FRACTIONAL") => Kind::Fractional {
                max: int(obj, tags::MAXIMUM_FRACTIONAL_VALUE)
                    .filter(|m| (1..=255).contains(m))
                    .unwrap_or(255) as f32,
            },
            Some(other) => {
                return Err(ThumbnailError::Unsupported(format!(
                    "Segmentation Type {other}"
                )))
            }
            None if bits_allocated == 1 => Kind::Binary,
            None => Kind::Fractional { max: 255.0 },
        };
        let bits_allocated = match (kind, bits_allocated) {
            (Kind::Binary, 1) => 1,
            (Kind::Fractional { .. }, 8) => 8,
            (_, other) => {
                return Err(ThumbnailError::Unsupported(format!(
                    "{kind:?} segmentation with Bits Allocated {other}"
                )))
            }
        };
        let count = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1);
        let count = u32::try_from(count)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid("Number of Frames out of range"))?;
        if count > max_frames {
            return Err(ThumbnailError::TooManyFrames {
                frames: count,
                limit: max_frames,
            });
        }
        let pixel_data = obj
            .get(tags::PIXEL_DATA)
            .ok_or_else(|| ThumbnailError::NoPixelData {
                sop_class: description.sop_class_label(),
            })?;
        let pixels = match pixel_data.value() {
            Value::Primitive(v) => {
                let bytes = v.to_bytes();
                let bits = u64::from(count) * u64::from(rows) * u64::from(cols);
                let needed = if bits_allocated == 1 {
                    bits.div_ceil(8)
                } else {
                    bits
                };
                if (bytes.len() as u64) < needed {
                    return Err(ThumbnailError::Invalid(format!(
                        "pixel data too short for {count} frames ({} bytes)",
                        bytes.len()
                    )));
                }
                Pixels::Native(bytes)
            }
            Value::PixelSequence(_) => Pixels::Encapsulated,
            Value::Sequence(_) => return Err(invalid("Pixel Data is a sequence")),
        };
        // Per-frame items beyond Number of Frames are ignored; frames without one use the
        // shared groups.
        let per_frame = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
        let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).first();
        let segments = items(obj, tags::SEGMENT_SEQUENCE);
        let only_segment = match segments {
            [one] => int(one, tags::SEGMENT_NUMBER),
            _ => None,
        };
        let frames = (0..count)
            .map(|index| {
                let segment = frame_attr(
                    obj,
                    index,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    tags::REFERENCED_SEGMENT_NUMBER,
                )
                .and_then(|e| e.to_int::<i64>().ok())
                .or(only_segment);
                let mut references = per_frame
                    .get(index as usize)
                    .map(frame_references)
                    .unwrap_or_default();
                if references.is_empty() {
                    references = shared.map(frame_references).unwrap_or_default();
                }
                SegFrame {
                    index,
                    segment,
                    references,
                    plane: Plane::of_frame(obj, index),
                }
            })
            .collect();
        let colours = segments
            .iter()
            .filter_map(|item| {
                let number = int(item, tags::SEGMENT_NUMBER)?;
                let lab = item
                    .get(tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE)
                    .and_then(|e| e.to_multi_int::<i64>().ok())
                    .filter(|v| v.len() == 3 && v.iter().all(|c| (0..=65535).contains(c)))
                    .map(|v| cielab_to_srgb([v[0] as u16, v[1] as u16, v[2] as u16]));
                Some((number, lab.unwrap_or_else(|| palette_colour(number))))
            })
            .collect();
        Ok(Seg {
            obj,
            rows,
            cols,
            kind,
            bits_allocated,
            frames,
            colours,
            pixels,
        })
    }

    /// That frame `index` (0-based) exists.
    fn check_frame(&self, index: u32) -> Result<(), ThumbnailError> {
        let frames = self.frames.len() as u32;
        if index >= frames {
            return Err(ThumbnailError::NoSuchFrame { index, frames });
        }
        Ok(())
    }

    fn pixels_per_frame(&self) -> usize {
        self.rows as usize * self.cols as usize
    }

    fn colour(&self, segment: Option<i64>) -> [u8; 3] {
        let number = segment.unwrap_or(1);
        self.colours
            .get(&number)
            .copied()
            .unwrap_or_else(|| palette_colour(number))
    }

    /// The values of frame `i`: 0/1 (BINARY) or 0..=255 (FRACTIONAL), row by row.
    fn values(&self, i: usize) -> Result<Vec<u8>, ThumbnailError> {
        let n = self.pixels_per_frame();
        let too_short = || ThumbnailError::Invalid(format!("pixel data too short for frame {i}"));
        match &self.pixels {
            Pixels::Native(bytes) => {
                if self.bits_allocated == 1 {
                    // Packed LSB first, contiguously across frames (not padded per frame).
                    let start = i * n;
                    if (start + n).div_ceil(8) > bytes.len() {
                        return Err(too_short());
                    }
                    Ok((start..start + n)
                        .map(|b| (bytes[b / 8] >> (b % 8)) & 1)
                        .collect())
                } else {
                    let start = i * n;
                    Ok(bytes.get(start..start + n).ok_or_else(too_short)?.to_vec())
                }
            }
            Pixels::Encapsulated => {
                let decoded = self
                    .obj
                    .decode_pixel_data_frame(i as u32)
                    .map_err(|e| ThumbnailError::Decode(decode::error_chain(&e)))?;
                let data = decoded.data();
                if self.bits_allocated == 1 && data.len() < n {
                    // Still packed: each encapsulated frame starts on a byte of its own.
                    if data.len() < n.div_ceil(8) {
                        return Err(too_short());
                    }
                    Ok((0..n).map(|b| (data[b / 8] >> (b % 8)) & 1).collect())
                } else {
                    let values = data.get(..n).ok_or_else(too_short)?;
                    Ok(if self.bits_allocated == 1 {
                        values.iter().map(|v| u8::from(*v != 0)).collect()
                    } else {
                        values.to_vec()
                    })
                }
            }
        }
    }

    fn has_foreground(&self, i: usize) -> Result<bool, ThumbnailError> {
        let n = self.pixels_per_frame();
        if let (Pixels::Native(bytes), 1) = (&self.pixels, self.bits_allocated) {
            // Whole bytes at once, the partial bytes at both ends bit by bit.
            let (start, end) = (i * n, (i + 1) * n);
            if end.div_ceil(8) > bytes.len() {
                return Err(ThumbnailError::Invalid(format!(
                    "pixel data too short for frame {i}"
                )));
            }
            let first_whole = start.div_ceil(8);
            let last_whole = end / 8;
            if first_whole >= last_whole {
                return Ok((start..end).any(|b| (bytes[b / 8] >> (b % 8)) & 1 == 1));
            }
            let head = (start..first_whole * 8).any(|b| (bytes[b / 8] >> (b % 8)) & 1 == 1);
            let tail = (last_whole * 8..end).any(|b| (bytes[b / 8] >> (b % 8)) & 1 == 1);
            return Ok(head || tail || bytes[first_whole..last_whole].iter().any(|b| *b != 0));
        }
        Ok(self.values(i)?.iter().any(|v| *v != 0))
    }

    /// Indices (into `frames`) of the frames to draw on `source`: those referencing it, else
    /// those in its plane, else (a segmentation of one image that names no frame's source) all.
    fn frames_for(&self, source: &Source) -> Vec<usize> {
        let referencing: Vec<usize> = (0..self.frames.len())
            .filter(|i| {
                self.frames[*i]
                    .references
                    .iter()
                    .any(|r| source.is_referenced(&r.uid, &r.frames))
            })
            .collect();
        if !referencing.is_empty() {
            return referencing;
        }
        if let Some(plane) = source.plane {
            let same_frame_of_reference = match (
                source.frame_of_reference.as_deref(),
                text(self.obj, tags::FRAME_OF_REFERENCE_UID),
            ) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            let tolerance = source
                .thickness
                .or_else(|| slice_thickness(self.obj, 0))
                .unwrap_or(1.0)
                / 2.0;
            let in_plane: Vec<usize> = (0..self.frames.len())
                .filter(|i| {
                    self.frames[*i].plane.is_some_and(|p| {
                        same_frame_of_reference
                            && p.parallel(&plane)
                            && plane.distance(p.origin).abs() <= tolerance
                    })
                })
                .collect();
            if !in_plane.is_empty() {
                return in_plane;
            }
        }
        let unplaced = self
            .frames
            .iter()
            .all(|f| f.references.is_empty() && f.plane.is_none());
        let referenced = self.referenced_instances();
        let only_this = source
            .sop_instance_uid
            .as_deref()
            .is_some_and(|uid| !referenced.is_empty() && referenced.iter().all(|r| r == uid));
        if unplaced && only_this {
            return (0..self.frames.len()).collect();
        }
        Vec::new()
    }

    /// SOP Instance UIDs of the Referenced Series Sequence and Referenced Image Sequence.
    fn referenced_instances(&self) -> Vec<String> {
        let mut out = Vec::new();
        for series in items(self.obj, tags::REFERENCED_SERIES_SEQUENCE) {
            for item in items(series, tags::REFERENCED_INSTANCE_SEQUENCE) {
                out.extend(text(item, tags::REFERENCED_SOP_INSTANCE_UID));
            }
        }
        for item in items(self.obj, tags::REFERENCED_IMAGE_SEQUENCE) {
            out.extend(text(item, tags::REFERENCED_SOP_INSTANCE_UID));
        }
        out
    }

    /// The slice normal: that of the first frame with a plane.
    fn normal(&self) -> Option<Vec3> {
        self.frames.iter().find_map(|f| f.plane.map(|p| p.normal()))
    }

    /// Position of frame `i` along `normal`, mm.
    fn position(&self, i: usize, normal: Option<Vec3>) -> Option<f64> {
        Some(dot(self.frames[i].plane?.origin, normal?))
    }

    fn slice_key(&self, i: usize, normal: Option<Vec3>) -> SliceKey {
        let frame = &self.frames[i];
        match (frame.references.first(), self.position(i, normal)) {
            (Some(r), _) => SliceKey::Image(r.uid.clone(), r.frames.clone()),
            (None, Some(p)) => SliceKey::Position((p * 100.0).round() as i64),
            (None, None) => SliceKey::Frame(frame.index),
        }
    }

    /// The frames grouped into slices (by referenced source image, else by position, else one
    /// frame each), ordered by position along the slice normal when every slice has one (ties
    /// by first frame), else by first frame. With `foreground_only`, frames without foreground
    /// are left out, and so are slices without any.
    fn slices(&self, foreground_only: bool) -> Result<Vec<Slice>, ThumbnailError> {
        let normal = self.normal();
        let mut by_key: BTreeMap<SliceKey, usize> = BTreeMap::new();
        let mut groups: Vec<(Slice, Vec<f64>)> = Vec::new();
        for i in 0..self.frames.len() {
            if foreground_only && !self.has_foreground(i)? {
                continue;
            }
            let pos = self.position(i, normal);
            let at = *by_key.entry(self.slice_key(i, normal)).or_insert_with(|| {
                groups.push((
                    Slice {
                        reference: self.frames[i].references.first().cloned(),
                        frames: Vec::new(),
                        position: None,
                    },
                    Vec::new(),
                ));
                groups.len() - 1
            });
            let (slice, positions) = &mut groups[at];
            slice.frames.push(i);
            positions.extend(pos);
        }
        let mut slices: Vec<Slice> = groups
            .into_iter()
            .map(|(mut slice, positions)| {
                slice.position = (!positions.is_empty())
                    .then(|| positions.iter().sum::<f64>() / positions.len() as f64);
                slice
            })
            .collect();
        if slices.iter().all(|s| s.position.is_some()) {
            slices.sort_by(|a, b| {
                a.position
                    .unwrap_or_default()
                    .total_cmp(&b.position.unwrap_or_default())
                    .then(a.frames[0].cmp(&b.frames[0]))
            });
        } else {
            slices.sort_by_key(|s| s.frames[0]);
        }
        Ok(slices)
    }

    /// The frames with foreground, grouped into slices and ordered as [`Seg::slices`] does:
    /// the middle one (`n / 2`).
    fn middle_slice(&self) -> Result<Option<Slice>, ThumbnailError> {
        let mut slices = self.slices(true)?;
        let middle = slices.len() / 2;
        Ok((!slices.is_empty()).then(|| slices.swap_remove(middle)))
    }

    /// Indices of the frames on the slice of frame `i` (those with its [`SliceKey`]), with or
    /// without foreground.
    fn slice_of(&self, i: usize) -> Vec<usize> {
        let normal = self.normal();
        let key = self.slice_key(i, normal);
        (0..self.frames.len())
            .filter(|j| *j == i || self.slice_key(*j, normal) == key)
            .collect()
    }

    /// Blends frame `i` into `canvas` (over `source`'s picture, else stretched over the canvas).
    fn draw_frame(
        &self,
        canvas: &mut Canvas,
        i: usize,
        source: Option<&Source>,
    ) -> Result<(), ThumbnailError> {
        let frame = &self.frames[i];
        let values = self.values(i)?;
        if values.iter().all(|v| *v == 0) {
            return Ok(());
        }
        let output = (canvas.width, canvas.height);
        let grid = (self.cols, self.rows);
        // Output pixel centre -> (column, row) of the segmentation frame, an affine map.
        let map = |x: u32, y: u32| -> (f64, f64) {
            match (source, frame.plane) {
                (Some(src), Some(seg_plane))
                    if src.plane.is_some_and(|p| p.parallel(&seg_plane)) =>
                {
                    let src_plane = src.plane.expect("checked");
                    let (c, r) = src.output_to_pixel(x, y);
                    seg_plane.pixel_of(src_plane.patient_of(c, r))
                }
                _ => output_to_grid(x, y, output, grid),
            }
        };
        let origin = map(0, 0);
        let (x1, y1) = (map(1, 0), map(0, 1));
        let dx = (x1.0 - origin.0, x1.1 - origin.1);
        let dy = (y1.0 - origin.0, y1.1 - origin.1);
        let colour = self.colour(frame.segment);
        let alpha = |v: u8| -> f32 {
            match self.kind {
                Kind::Binary => FILL_ALPHA * f32::from(v),
                Kind::Fractional { max } => FILL_ALPHA * (f32::from(v) / max).min(1.0),
            }
        };
        for y in 0..canvas.height {
            for x in 0..canvas.width {
                let c = origin.0 + dx.0 * f64::from(x) + dy.0 * f64::from(y);
                let r = origin.1 + dx.1 * f64::from(x) + dy.1 * f64::from(y);
                let (c, r) = (c.round(), r.round());
                if !(c >= 0.0 && r >= 0.0 && c < f64::from(self.cols) && r < f64::from(self.rows)) {
                    continue;
                }
                let v = values[r as usize * self.cols as usize + c as usize];
                if v != 0 {
                    canvas.blend(x, y, colour, alpha(v));
                }
            }
        }
        Ok(())
    }
}

/// The source images a frame's functional group item names: Derivation Image Sequence →
/// Source Image Sequence, and Referenced Image Sequence.
fn frame_references(group: &InMemDicomObject) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut add = |item: &InMemDicomObject| {
        if let Some(uid) = text(item, tags::REFERENCED_SOP_INSTANCE_UID) {
            out.push(Reference {
                uid,
                frames: frame_numbers(item),
            });
        }
    };
    for derivation in items(group, tags::DERIVATION_IMAGE_SEQUENCE) {
        for item in items(derivation, tags::SOURCE_IMAGE_SEQUENCE) {
            add(item);
        }
    }
    for item in items(group, tags::REFERENCED_IMAGE_SEQUENCE) {
        add(item);
    }
    out
}
