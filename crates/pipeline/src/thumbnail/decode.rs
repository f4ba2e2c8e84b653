//! Parsing and pixel extraction: from Part-10 bytes to one frame of stored sample values.

use std::panic::{catch_unwind, AssertUnwindSafe};

use dicom_core::dictionary::UidDictionary;
use dicom_core::value::Value;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::ThumbnailError;

pub(crate) type Obj = DefaultDicomObject;
type Element = dicom_object::mem::InMemElement;

/// Largest frame accepted, in samples (rows × columns × samples per pixel).
const MAX_FRAME_SAMPLES: u64 = 1 << 26;

/// Runs `f`, turning a panic into [`ThumbnailError::DecoderPanicked`].
pub(crate) fn guard<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, ThumbnailError>,
) -> Result<T, ThumbnailError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(ThumbnailError::DecoderPanicked(format!("{what}: {msg}")))
        }
    }
}

/// `e` and its sources, joined by ": ".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Parses a Part-10 file held in memory (preamble optional).
pub(crate) fn parse(file: &[u8]) -> Result<Obj, ThumbnailError> {
    let body = if file.len() >= 132 && &file[128..132] == b"DICM" {
        &file[128..]
    } else if file.starts_with(b"DICM") {
        file
    } else {
        return Err(ThumbnailError::NotDicom("no DICM signature".into()));
    };
    guard("parser", || {
        radport_prescan::check_file(body).map_err(|e| ThumbnailError::Malformed(e.to_string()))?;
        OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .from_reader(body)
            .map_err(|e| ThumbnailError::NotDicom(error_chain(&e)))
    })
}

/// What an object says about itself, without decoding pixels.
pub(crate) struct Description {
    pub modality: Option<String>,
    pub sop_class_uid: Option<String>,
    pub sop_class_name: Option<String>,
    pub has_pixel_data: bool,
}

impl Description {
    /// "Name (UID)", or whichever of the two is known.
    pub fn sop_class_label(&self) -> String {
        match (&self.sop_class_name, &self.sop_class_uid) {
            (Some(name), Some(uid)) => format!("{name} ({uid})"),
            (Some(name), None) => name.clone(),
            (None, Some(uid)) => format!("SOP class {uid}"),
            (None, None) => "an object without SOP Class UID".to_owned(),
        }
    }
}

pub(crate) fn describe(obj: &Obj) -> Description {
    let modality = text(obj, tags::MODALITY);
    let sop_class_uid = text(obj, tags::SOP_CLASS_UID).or_else(|| {
        let uid = obj.meta().media_storage_sop_class_uid();
        (!uid.is_empty()).then(|| uid.to_owned())
    });
    let sop_class_name = sop_class_uid.as_deref().and_then(sop_class_name);
    let has_pixel_data = [
        tags::PIXEL_DATA,
        tags::FLOAT_PIXEL_DATA,
        tags::DOUBLE_FLOAT_PIXEL_DATA,
    ]
    .iter()
    .any(|t| obj.get(*t).is_some());
    Description {
        modality,
        sop_class_uid,
        sop_class_name,
        has_pixel_data,
    }
}

/// The SOP Class name from the standard UID dictionary.
pub(crate) fn sop_class_name(uid: &str) -> Option<String> {
    let uid = uid.trim_end_matches(['\0', ' ']);
    dicom_dictionary_std::sop_class::registry()
        .by_uid(uid)
        .map(|entry| entry.name.to_owned())
}

// ---- attribute access -------------------------------------------------------------------------

pub(crate) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let value = obj.get(tag)?.to_str().ok()?;
    let value = value.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!value.is_empty()).then(|| value.to_owned())
}

pub(crate) fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

pub(crate) fn floats(element: &Element) -> Option<Vec<f64>> {
    let values = element.to_multi_float64().ok()?;
    (!values.is_empty() && values.iter().all(|v| v.is_finite())).then_some(values)
}

/// An attribute of a frame: at the top level, else in the per-frame functional group `frame` of
/// macro `group_seq`, else in the shared functional groups (enhanced multi-frame objects).
pub(crate) fn frame_attr<'a>(
    obj: &'a InMemDicomObject,
    frame: u32,
    group_seq: Tag,
    tag: Tag,
) -> Option<&'a Element> {
    if let Some(e) = obj.get(tag) {
        return Some(e);
    }
    let in_group = |group: &'a InMemDicomObject| -> Option<&'a Element> {
        group.get(group_seq)?.items()?.first()?.get(tag)
    };
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|e| e.items())
        .and_then(|items| items.get(frame as usize))
        .and_then(in_group);
    per_frame.or_else(|| {
        obj.get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|e| e.items())
            .and_then(|items| items.first())
            .and_then(in_group)
    })
}

// ---- frames ------------------------------------------------------------------------------------

/// How the samples of a frame are to be turned into display values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Photometric {
    Monochrome1,
    Monochrome2,
    Palette,
    Rgb,
    /// Full-range YCbCr (BT.601), one sample triple per pixel.
    YbrFull,
    /// Studio-range YCbCr (BT.601), one sample triple per pixel.
    YbrPartial,
}

/// One frame of stored values (after bit masking and sign extension; before any LUT).
#[derive(Debug)]
pub(crate) struct Frame {
    /// Index of the frame in the instance.
    pub index: u32,
    pub rows: u32,
    pub cols: u32,
    pub photometric: Photometric,
    pub samples: Vec<f32>,
    pub bits_stored: u16,
    pub signed: bool,
    /// Float or Double Float Pixel Data.
    pub float: bool,
    /// (row spacing, column spacing), if known.
    pub aspect: Option<(f64, f64)>,
}

/// How the samples of one frame are laid out in the byte buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `samples_per_pixel` samples per pixel, interleaved.
    Interleaved,
    /// Colour by plane (Planar Configuration 1).
    Planar,
    /// 4:2:2 horizontal subsampling, Y1 Y2 Cb Cr per pair of pixels.
    Sub422,
}

#[derive(Debug, Clone, Copy)]
struct SampleFormat {
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
}

/// Decodes frame `requested` (0-based) of the object's pixel data, or the middle one (`None`).
pub(crate) fn frame(obj: &Obj, requested: Option<u32>) -> Result<Frame, ThumbnailError> {
    let description = describe(obj);
    if !description.has_pixel_data {
        return Err(ThumbnailError::NoPixelData {
            sop_class: description.sop_class_label(),
        });
    }
    let rows = required_u32(obj, tags::ROWS, "Rows")?;
    let cols = required_u32(obj, tags::COLUMNS, "Columns")?;
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let frames = u32::try_from(frames).map_err(|_| invalid("Number of Frames out of range"))?;
    let index = match requested {
        None => frames / 2,
        Some(index) if index < frames => index,
        Some(index) => return Err(ThumbnailError::NoSuchFrame { index, frames }),
    };
    let spp = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let spp: usize = match spp {
        1 => 1,
        3 => 3,
        other => {
            return Err(ThumbnailError::Unsupported(format!(
                "Samples per Pixel {other}"
            )))
        }
    };
    if rows == 0 || cols == 0 {
        return Err(invalid("zero Rows or Columns"));
    }
    if u64::from(rows) * u64::from(cols) * spp as u64 > MAX_FRAME_SAMPLES {
        return Err(ThumbnailError::TooLarge {
            rows,
            columns: cols,
            samples: spp as u32,
        });
    }
    let pi_text = text(obj, tags::PHOTOMETRIC_INTERPRETATION)
        .unwrap_or_else(|| if spp == 3 { "RGB" } else { "MONOCHROME2" }.to_owned());
    let aspect = pixel_aspect(obj, index);

    // Float / Double Float Pixel Data (parametric maps): native only.
    if obj.get(tags::PIXEL_DATA).is_none() {
        for (tag, width) in [
            (tags::FLOAT_PIXEL_DATA, 4usize),
            (tags::DOUBLE_FLOAT_PIXEL_DATA, 8usize),
        ] {
            if let Some(element) = obj.get(tag) {
                if spp != 1 {
                    return Err(ThumbnailError::Unsupported(
                        "colour float pixel data".into(),
                    ));
                }
                let bytes = element
                    .value()
                    .primitive()
                    .ok_or_else(|| invalid("float pixel data is not a plain value"))?
                    .to_bytes();
                let samples = unpack_float(&bytes, width, index, rows, cols)?;
                return Ok(Frame {
                    index,
                    rows,
                    cols,
                    photometric: Photometric::Monochrome2,
                    samples,
                    bits_stored: (width * 8) as u16,
                    signed: true,
                    float: true,
                    aspect,
                });
            }
        }
        return Err(invalid("no pixel data"));
    }

    let format = sample_format(obj)?;
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| invalid("no pixel data"))?;

    match pixel_data.value() {
        Value::Primitive(value) => {
            let declared = parse_photometric(&pi_text, spp)?;
            let planar = int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0) == 1;
            let (photometric, layout) = match declared {
                Declared::Plain(p) if spp == 3 && planar => (p, Layout::Planar),
                Declared::Plain(p) => (p, Layout::Interleaved),
                Declared::Subsampled422(p) => (p, Layout::Sub422),
                Declared::Subsampled420 => {
                    return Err(ThumbnailError::Unsupported(
                        "uncompressed YBR_PARTIAL_420 pixel data".into(),
                    ))
                }
                Declared::CodecColour(name) => {
                    return Err(ThumbnailError::Unsupported(format!(
                        "uncompressed {name} pixel data"
                    )))
                }
            };
            let bytes = value.to_bytes();
            let samples = unpack(&bytes, index, rows, cols, spp, layout, format)?;
            Ok(Frame {
                index,
                rows,
                cols,
                photometric,
                samples,
                bits_stored: format.bits_stored,
                signed: format.signed,
                float: false,
                aspect,
            })
        }
        Value::PixelSequence(_) => {
            let ts_uid = obj.meta().transfer_syntax().to_owned();
            let ts = TransferSyntaxRegistry
                .get(&ts_uid)
                .ok_or_else(|| ThumbnailError::UnknownTransferSyntax(ts_uid.clone()))?;
            if !ts.can_decode_all() {
                return Err(ThumbnailError::CodecMissing {
                    uid: ts_uid,
                    name: ts.name().to_owned(),
                });
            }
            // DCMTK writes non-zero quantization table selectors into lossless JPEG colour
            // frames, which the JPEG decoder rejects: decode a copy with them zeroed.
            let patched = if spp == 3 && is_lossless_jpeg(&ts_uid) {
                with_lossless_tq_zeroed(obj)
            } else {
                None
            };
            let source = patched.as_ref().unwrap_or(obj);
            let decoded = source
                .decode_pixel_data_frame(index)
                .map_err(|e| ThumbnailError::Decode(error_chain(&e)))?;
            if decoded.samples_per_pixel() as usize != spp
                || decoded.rows() != rows
                || decoded.columns() != cols
            {
                return Err(invalid("decoded frame does not match the image attributes"));
            }
            let bits_allocated = decoded.bits_allocated();
            if !matches!(bits_allocated, 8 | 16 | 32) {
                return Err(ThumbnailError::Unsupported(format!(
                    "decoded Bits Allocated {bits_allocated}"
                )));
            }
            let format = SampleFormat {
                bits_allocated,
                bits_stored: format.bits_stored.min(bits_allocated),
                high_bit: format.high_bit.min(bits_allocated - 1),
                ..format
            };
            let photometric = match parse_photometric(&pi_text, spp)? {
                // Lossy JPEG: the decoder converts YCbCr to RGB (and upsamples).
                _ if spp == 3 && is_lossy_jpeg(&ts_uid) => Photometric::Rgb,
                // JPEG 2000 YBR_ICT / YBR_RCT: the codec applies the inverse transform.
                Declared::CodecColour(_) => Photometric::Rgb,
                Declared::Plain(p) => p,
                // Decoded frames come out at full resolution.
                Declared::Subsampled422(p) => p,
                Declared::Subsampled420 => Photometric::YbrPartial,
            };
            let planar =
                decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst;
            let layout = if spp == 3 && planar {
                Layout::Planar
            } else {
                Layout::Interleaved
            };
            let samples = unpack(decoded.data(), 0, rows, cols, spp, layout, format)?;
            Ok(Frame {
                index,
                rows,
                cols,
                photometric,
                samples,
                bits_stored: format.bits_stored,
                signed: format.signed,
                float: false,
                aspect,
            })
        }
        Value::Sequence(_) => Err(invalid("Pixel Data is a sequence")),
    }
}

/// Frames `indices` (0-based) of encapsulated (compressed) pixel data decoded to native
/// little-endian samples, as Explicit VR Little Endian would hold them: Bits Allocated of the
/// decoded data (8 or 16, 32), colour interleaved (Planar Configuration 0). Lossy JPEG colour
/// comes out as RGB (the codec converts YCbCr), JPEG 2000's YBR_ICT/YBR_RCT as RGB likewise.
/// Native pixel data is refused ([`ThumbnailError::Unsupported`]): it is sent as stored.
pub(crate) fn native_frames(obj: &Obj, indices: &[u32]) -> Result<Vec<Vec<u8>>, ThumbnailError> {
    let description = describe(obj);
    if !description.has_pixel_data {
        return Err(ThumbnailError::NoPixelData {
            sop_class: description.sop_class_label(),
        });
    }
    let pixel_data = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| invalid("no Pixel Data"))?;
    if !matches!(pixel_data.value(), Value::PixelSequence(_)) {
        return Err(ThumbnailError::Unsupported(
            "decoding pixel data that is not encapsulated".into(),
        ));
    }
    let rows = required_u32(obj, tags::ROWS, "Rows")?;
    let cols = required_u32(obj, tags::COLUMNS, "Columns")?;
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let frames = u32::try_from(frames).map_err(|_| invalid("Number of Frames out of range"))?;
    let spp = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let spp = u32::try_from(spp)
        .ok()
        .filter(|s| matches!(s, 1 | 3))
        .ok_or_else(|| ThumbnailError::Unsupported(format!("Samples per Pixel {spp}")))?;
    if rows == 0 || cols == 0 {
        return Err(invalid("zero Rows or Columns"));
    }
    if u64::from(rows) * u64::from(cols) * u64::from(spp) > MAX_FRAME_SAMPLES {
        return Err(ThumbnailError::TooLarge {
            rows,
            columns: cols,
            samples: spp,
        });
    }
    let ts_uid = obj.meta().transfer_syntax().to_owned();
    let ts = TransferSyntaxRegistry
        .get(&ts_uid)
        .ok_or_else(|| ThumbnailError::UnknownTransferSyntax(ts_uid.clone()))?;
    if !ts.can_decode_all() {
        return Err(ThumbnailError::CodecMissing {
            uid: ts_uid,
            name: ts.name().to_owned(),
        });
    }
    let patched = if spp == 3 && is_lossless_jpeg(&ts_uid) {
        with_lossless_tq_zeroed(obj)
    } else {
        None
    };
    let source = patched.as_ref().unwrap_or(obj);
    let mut out = Vec::with_capacity(indices.len());
    for &index in indices {
        if index >= frames {
            return Err(ThumbnailError::NoSuchFrame { index, frames });
        }
        let decoded = guard("decoding", || {
            source
                .decode_pixel_data_frame(index)
                .map_err(|e| ThumbnailError::Decode(error_chain(&e)))
        })?;
        if decoded.samples_per_pixel() != spp as u16
            || decoded.rows() != rows
            || decoded.columns() != cols
        {
            return Err(invalid("decoded frame does not match the image attributes"));
        }
        let bytes_per_sample = match decoded.bits_allocated() {
            8 => 1usize,
            16 => 2,
            32 => 4,
            other => {
                return Err(ThumbnailError::Unsupported(format!(
                    "decoded Bits Allocated {other}"
                )))
            }
        };
        let pixels = rows as usize * cols as usize;
        let expected = pixels * spp as usize * bytes_per_sample;
        let data = decoded
            .data()
            .get(..expected)
            .ok_or_else(|| invalid("decoded frame shorter than its attributes say"))?;
        let planar =
            decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst;
        let mut frame = if spp == 3 && planar {
            // R…R G…G B…B → RGB RGB …
            let plane = pixels * bytes_per_sample;
            let mut interleaved = Vec::with_capacity(expected);
            for p in 0..pixels {
                for s in 0..3 {
                    let at = s * plane + p * bytes_per_sample;
                    interleaved.extend_from_slice(&data[at..at + bytes_per_sample]);
                }
            }
            interleaved
        } else {
            data.to_vec()
        };
        if cfg!(target_endian = "big") && bytes_per_sample > 1 {
            for sample in frame.chunks_exact_mut(bytes_per_sample) {
                sample.reverse();
            }
        }
        out.push(frame);
    }
    Ok(out)
}

fn invalid(what: &str) -> ThumbnailError {
    ThumbnailError::Invalid(what.to_owned())
}

fn required_u32(obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<u32, ThumbnailError> {
    let v = int(obj, tag).ok_or_else(|| invalid(&format!("{name} missing")))?;
    u32::try_from(v).map_err(|_| invalid(&format!("{name} out of range")))
}

fn is_lossless_jpeg(ts_uid: &str) -> bool {
    use dicom_dictionary_std::uids;
    matches!(ts_uid, uids::JPEG_LOSSLESS | uids::JPEG_LOSSLESS_SV1)
}

/// A copy of `obj` whose JPEG fragments have the quantization table selectors of their SOF3
/// (lossless) frame header set to 0 (which ITU-T T.81 requires for lossless, and which the
/// decoder enforces), or `None` when no fragment needs it.
fn with_lossless_tq_zeroed(obj: &Obj) -> Option<Obj> {
    let fragments = obj.get(tags::PIXEL_DATA)?.value().fragments()?;
    if !fragments
        .iter()
        .any(|f| lossless_tq_offsets(f).next().is_some())
    {
        return None;
    }
    let mut copy = obj.clone();
    let element = copy.get(tags::PIXEL_DATA)?;
    let offset_table: Vec<u32> = element.value().offset_table()?.to_vec();
    let patched: Vec<Vec<u8>> = fragments
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let offsets: Vec<usize> = lossless_tq_offsets(&f).collect();
            for at in offsets {
                f[at] = 0;
            }
            f
        })
        .collect();
    let vr = element.vr();
    copy.put(dicom_core::DataElement::new(
        tags::PIXEL_DATA,
        vr,
        dicom_core::value::PixelFragmentSequence::new(offset_table, patched),
    ));
    Some(copy)
}

/// Offsets of the non-zero Tq bytes of the SOF3 header of a JPEG fragment (none if the fragment
/// does not start a JPEG stream or has no SOF3 before its first scan).
fn lossless_tq_offsets(fragment: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut found = Vec::new();
    if fragment.starts_with(&[0xFF, 0xD8]) {
        let mut at = 2usize;
        while let (Some(&0xFF), Some(&marker)) = (fragment.get(at), fragment.get(at + 1)) {
            if marker == 0xFF {
                at += 1; // fill byte
                continue;
            }
            if marker == 0xDA || marker == 0xD9 {
                break; // start of scan / end of image
            }
            let Some(len) = fragment
                .get(at + 2..at + 4)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            else {
                break;
            };
            if marker == 0xC3 {
                // length(2) precision(1) rows(2) columns(2) Nf(1), then Nf x (C, H/V, Tq)
                let count = fragment.get(at + 9).copied().unwrap_or(0);
                for i in 0..usize::from(count) {
                    let tq = at + 10 + 3 * i + 2;
                    if tq < at + 2 + len && fragment.get(tq).is_some_and(|v| *v != 0) {
                        found.push(tq);
                    }
                }
                break;
            }
            at += 2 + len;
        }
    }
    found.into_iter()
}

fn is_lossy_jpeg(ts_uid: &str) -> bool {
    use dicom_dictionary_std::uids;
    // JPEG Extended (Process 3 & 5) is retired, so the crate marks its constant deprecated;
    // files in it still exist.
    #[allow(deprecated)]
    let extended35 = uids::JPEG_EXTENDED35;
    ts_uid == uids::JPEG_BASELINE8_BIT
        || ts_uid == uids::JPEG_EXTENDED12_BIT
        || ts_uid == extended35
}

enum Declared {
    Plain(Photometric),
    Subsampled422(Photometric),
    Subsampled420,
    /// YBR_ICT / YBR_RCT: only meaningful inside JPEG 2000.
    CodecColour(&'static str),
}

fn parse_photometric(text: &str, spp: usize) -> Result<Declared, ThumbnailError> {
    let declared = match text {
        "MONOCHROME1" => Declared::Plain(Photometric::Monochrome1),
        "MONOCHROME2" => Declared::Plain(Photometric::Monochrome2),
        "PALETTE COLOR" => Declared::Plain(Photometric::Palette),
        "RGB" => Declared::Plain(Photometric::Rgb),
        "YBR_FULL" => Declared::Plain(Photometric::YbrFull),
        "YBR_FULL_422" => Declared::Subsampled422(Photometric::YbrFull),
        "YBR_PARTIAL_422" => Declared::Subsampled422(Photometric::YbrPartial),
        "YBR_PARTIAL_420" => Declared::Subsampled420,
        "YBR_ICT" => Declared::CodecColour("YBR_ICT"),
        "YBR_RCT" => Declared::CodecColour("YBR_RCT"),
        other => {
            return Err(ThumbnailError::Unsupported(format!(
                "photometric interpretation {other:?}"
            )))
        }
    };
    let wants = match declared {
        Declared::Plain(
            Photometric::Monochrome1 | Photometric::Monochrome2 | Photometric::Palette,
        ) => 1,
        _ => 3,
    };
    if wants != spp {
        return Err(invalid(&format!("{text} with {spp} samples per pixel")));
    }
    Ok(declared)
}

fn sample_format(obj: &InMemDicomObject) -> Result<SampleFormat, ThumbnailError> {
    let bits_allocated =
        int(obj, tags::BITS_ALLOCATED).ok_or_else(|| invalid("Bits Allocated missing"))?;
    let bits_allocated = match bits_allocated {
        1 | 8 | 16 | 32 => bits_allocated as u16,
        other => {
            return Err(ThumbnailError::Unsupported(format!(
                "Bits Allocated {other}"
            )))
        }
    };
    // Be lenient with inconsistent Bits Stored / High Bit: fall back to what fits.
    let bits_stored = int(obj, tags::BITS_STORED)
        .filter(|b| (1..=i64::from(bits_allocated)).contains(b))
        .map_or(bits_allocated, |b| b as u16);
    let high_bit = int(obj, tags::HIGH_BIT)
        .filter(|h| *h >= i64::from(bits_stored) - 1 && *h < i64::from(bits_allocated))
        .map_or(bits_stored - 1, |h| h as u16);
    let signed = int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
    Ok(SampleFormat {
        bits_allocated,
        bits_stored,
        high_bit,
        signed,
    })
}

/// (row spacing, column spacing) from Pixel Spacing and its stand-ins.
fn pixel_aspect(obj: &InMemDicomObject, frame: u32) -> Option<(f64, f64)> {
    let valid = |v: Vec<f64>| -> Option<(f64, f64)> {
        let (r, c) = (*v.first()?, *v.get(1)?);
        let ok = r > 0.0 && c > 0.0 && (r / c) > 1.0 / 64.0 && (r / c) < 64.0;
        ok.then_some((r, c))
    };
    let spacing = frame_attr(
        obj,
        frame,
        tags::PIXEL_MEASURES_SEQUENCE,
        tags::PIXEL_SPACING,
    )
    .and_then(floats)
    .and_then(valid);
    spacing
        .or_else(|| {
            obj.get(tags::IMAGER_PIXEL_SPACING)
                .and_then(floats)
                .and_then(valid)
        })
        .or_else(|| {
            obj.get(tags::NOMINAL_SCANNED_PIXEL_SPACING)
                .and_then(floats)
                .and_then(valid)
        })
        .or_else(|| {
            // Pixel Aspect Ratio: vertical size \ horizontal size.
            obj.get(tags::PIXEL_ASPECT_RATIO)
                .and_then(floats)
                .and_then(valid)
        })
}

/// Extracts frame `frame` of native pixel data into stored values, interleaved.
fn unpack(
    bytes: &[u8],
    frame: u32,
    rows: u32,
    cols: u32,
    spp: usize,
    layout: Layout,
    format: SampleFormat,
) -> Result<Vec<f32>, ThumbnailError> {
    let pixels = rows as usize * cols as usize;
    // Samples stored per frame.
    let stored = match layout {
        Layout::Sub422 => {
            if cols & 1 == 1 {
                return Err(invalid("4:2:2 pixel data with an odd number of columns"));
            }
            pixels * 2
        }
        _ => pixels * spp,
    };
    let too_short = || {
        ThumbnailError::Invalid(format!(
            "pixel data too short for frame {frame} ({} bytes)",
            bytes.len()
        ))
    };
    let raw: Vec<f32> = if format.bits_allocated == 1 {
        // Bits packed LSB first, contiguously across frames.
        let start = frame as usize * stored;
        let end = start + stored;
        if end.div_ceil(8) > bytes.len() {
            return Err(too_short());
        }
        (start..end)
            .map(|i| f32::from((bytes[i / 8] >> (i % 8)) & 1))
            .collect()
    } else {
        let width = usize::from(format.bits_allocated / 8);
        let start = frame as usize * stored * width;
        let chunk = bytes
            .get(start..start + stored * width)
            .ok_or_else(too_short)?;
        let shift = u32::from((format.high_bit + 1).saturating_sub(format.bits_stored));
        let bits = u32::from(format.bits_stored);
        let mask: u32 = if bits >= 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        let sign_bit: u32 = 1u32 << (bits - 1);
        let convert = move |raw: u32| -> f32 {
            let v = (raw >> shift) & mask;
            if format.signed && v & sign_bit != 0 {
                // Two's complement of a `bits`-wide value.
                (i64::from(v) - (1i64 << bits)) as f32
            } else {
                v as f32
            }
        };
        match width {
            1 => chunk.iter().map(|b| convert(u32::from(*b))).collect(),
            2 => chunk
                .chunks_exact(2)
                .map(|b| convert(u32::from(u16::from_ne_bytes([b[0], b[1]]))))
                .collect(),
            _ => chunk
                .chunks_exact(4)
                .map(|b| convert(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
        }
    };
    Ok(match layout {
        Layout::Interleaved => raw,
        Layout::Planar => {
            let mut out = vec![0f32; pixels * 3];
            for (c, plane) in raw.chunks_exact(pixels).enumerate().take(3) {
                for (i, v) in plane.iter().enumerate() {
                    out[i * 3 + c] = *v;
                }
            }
            out
        }
        Layout::Sub422 => {
            let mut out = Vec::with_capacity(pixels * 3);
            for quad in raw.chunks_exact(4) {
                let (y1, y2, cb, cr) = (quad[0], quad[1], quad[2], quad[3]);
                out.extend_from_slice(&[y1, cb, cr, y2, cb, cr]);
            }
            out
        }
    })
}

fn unpack_float(
    bytes: &[u8],
    width: usize,
    frame: u32,
    rows: u32,
    cols: u32,
) -> Result<Vec<f32>, ThumbnailError> {
    let n = rows as usize * cols as usize;
    let start = frame as usize * n * width;
    let chunk = bytes.get(start..start + n * width).ok_or_else(|| {
        ThumbnailError::Invalid(format!("float pixel data too short for frame {frame}"))
    })?;
    Ok(if width == 4 {
        chunk
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        chunk
            .chunks_exact(8)
            .map(|b| f64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect()
    })
}
