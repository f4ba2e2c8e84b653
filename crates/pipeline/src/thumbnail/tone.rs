//! From stored values to 8-bit display values: modality LUT (rescale), VOI (window or percentile),
//! MONOCHROME1 inversion, palette lookup and YCbCr → RGB.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::decode::{floats, frame_attr, text, Frame, Photometric};
use super::ThumbnailError;

/// Lower and upper percentiles of the automatic window.
const AUTO_WINDOW_PERCENTILES: (f64, f64) = (0.005, 0.995);
/// At most this many samples are looked at to find the percentiles.
const PERCENTILE_SAMPLES: usize = 1 << 18;

/// An 8-bit picture, grey or RGB (interleaved), row by row.
#[derive(Debug)]
pub(crate) struct Display8 {
    pub width: u32,
    pub height: u32,
    pub rgb: bool,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum VoiFunction {
    Linear,
    LinearExact,
    Sigmoid,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    center: f64,
    width: f64,
    function: VoiFunction,
}

/// A palette colour lookup table, entries scaled to 8 bits.
#[derive(Debug)]
struct Palette {
    first_mapped: i64,
    rgb: Vec<[u8; 3]>,
}

/// Display parameters of one frame, read from the object.
#[derive(Debug)]
pub(crate) struct ToneParams {
    /// (slope, intercept)
    rescale: Option<(f64, f64)>,
    window: Option<Window>,
    palette: Option<Palette>,
}

impl ToneParams {
    /// These parameters with the VOI window replaced by one given by the viewer (a width below
    /// the function's minimum is widened to it).
    pub fn with_window(mut self, center: f64, width: f64, function: VoiFunction) -> Self {
        let width = match function {
            VoiFunction::Linear => width.max(1.0),
            _ => width.max(f64::MIN_POSITIVE),
        };
        self.window = Some(Window {
            center,
            width,
            function,
        });
        self
    }

    pub fn from_object(obj: &InMemDicomObject, frame: u32) -> Result<Self, ThumbnailError> {
        let first = |seq: Tag, tag: Tag| -> Option<f64> {
            frame_attr(obj, frame, seq, tag)
                .and_then(floats)
                .and_then(|v| v.first().copied())
        };
        let slope = first(
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            tags::RESCALE_SLOPE,
        );
        let intercept = first(
            tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
            tags::RESCALE_INTERCEPT,
        );
        let rescale = match (slope, intercept) {
            (None, None) => None,
            (s, i) => {
                let s = s.filter(|s| *s != 0.0).unwrap_or(1.0);
                let i = i.unwrap_or(0.0);
                (s != 1.0 || i != 0.0).then_some((s, i))
            }
        };
        let center = first(tags::FRAME_VOILUT_SEQUENCE, tags::WINDOW_CENTER);
        let width = first(tags::FRAME_VOILUT_SEQUENCE, tags::WINDOW_WIDTH);
        let function = frame_attr(
            obj,
            frame,
            tags::FRAME_VOILUT_SEQUENCE,
            tags::VOILUT_FUNCTION,
        )
        .and_then(|e| e.to_str().ok())
        .map(
            |s| match s.trim_matches(|c: char| c.is_whitespace() || c == '\0') {
                "LINEAR_EXACT" => VoiFunction::LinearExact,
                "SIGMOID" => VoiFunction::Sigmoid,
                _ => VoiFunction::Linear,
            },
        )
        .unwrap_or(VoiFunction::Linear);
        let window = match (center, width) {
            (Some(center), Some(width)) => {
                let usable = match function {
                    VoiFunction::Linear => width >= 1.0,
                    _ => width > 0.0,
                };
                usable.then_some(Window {
                    center,
                    width,
                    function,
                })
            }
            _ => None,
        };
        let palette =
            if text(obj, tags::PHOTOMETRIC_INTERPRETATION).as_deref() == Some("PALETTE COLOR") {
                Some(read_palette(obj)?)
            } else {
                None
            };
        Ok(Self {
            rescale,
            window,
            palette,
        })
    }
}

fn read_palette(obj: &InMemDicomObject) -> Result<Palette, ThumbnailError> {
    let unsupported = |what: &str| ThumbnailError::Unsupported(what.to_owned());
    let invalid = |what: &str| ThumbnailError::Invalid(what.to_owned());
    let channels = [
        (
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
        (
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
        ),
    ];
    let mut tables: Vec<Vec<u8>> = Vec::with_capacity(3);
    let mut first_mapped = 0i64;
    let mut entries = 0usize;
    for (descriptor_tag, data_tag, segmented_tag) in channels {
        let descriptor = obj
            .get(descriptor_tag)
            .and_then(|e| e.to_multi_int::<i64>().ok())
            .filter(|d| d.len() >= 3)
            .ok_or_else(|| invalid("palette colour LUT descriptor missing"))?;
        // 0 means 65536 entries; a signed reading of 32768..65535 shows up as negative.
        let n = match descriptor[0] {
            0 => 65536,
            n if n < 0 => (n + 65536) as usize,
            n => n as usize,
        };
        if n > 65536 {
            return Err(invalid("palette colour LUT descriptor out of range"));
        }
        let bits = descriptor[2];
        first_mapped = descriptor[1];
        entries = n;
        let Some(data) = obj.get(data_tag) else {
            if obj.get(segmented_tag).is_some() {
                return Err(unsupported("segmented palette colour LUT"));
            }
            return Err(invalid("palette colour LUT data missing"));
        };
        let bytes = data
            .value()
            .primitive()
            .ok_or_else(|| invalid("palette colour LUT data is not a plain value"))?
            .to_bytes();
        let table: Vec<u8> = if bits <= 8 && bytes.len() < 2 * n {
            // One byte per entry.
            bytes
                .get(..n)
                .ok_or_else(|| invalid("palette colour LUT data too short"))?
                .to_vec()
        } else {
            let words: Vec<u16> = bytes
                .get(..2 * n)
                .ok_or_else(|| invalid("palette colour LUT data too short"))?
                .chunks_exact(2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .collect();
            if bits <= 8 {
                // 8-bit entries in 16-bit words: normally in the low byte, sometimes the high one.
                let high = words.iter().any(|w| *w > 0xff);
                words
                    .iter()
                    .map(|w| {
                        if high {
                            (w >> 8) as u8
                        } else {
                            (*w & 0xff) as u8
                        }
                    })
                    .collect()
            } else {
                words.iter().map(|w| (w >> 8) as u8).collect()
            }
        };
        tables.push(table);
    }
    // Channels of different lengths: use what all three have.
    let entries = tables.iter().map(Vec::len).min().unwrap_or(0).min(entries);
    if entries == 0 {
        return Err(invalid("empty palette colour LUT"));
    }
    let rgb = (0..entries)
        .map(|i| [tables[0][i], tables[1][i], tables[2][i]])
        .collect();
    Ok(Palette { first_mapped, rgb })
}

pub(crate) fn to_display(frame: &Frame, params: &ToneParams) -> Result<Display8, ThumbnailError> {
    let (width, height) = (frame.cols, frame.rows);
    let data = match frame.photometric {
        Photometric::Monochrome1 | Photometric::Monochrome2 => {
            grey(frame, params, frame.photometric == Photometric::Monochrome1)
        }
        Photometric::Palette => {
            let palette = params
                .palette
                .as_ref()
                .ok_or_else(|| ThumbnailError::Invalid("palette colour LUT missing".into()))?;
            palette_rgb(&frame.samples, palette)
        }
        Photometric::Rgb | Photometric::YbrFull | Photometric::YbrPartial => colour(frame),
    };
    let rgb = frame.photometric != Photometric::Monochrome1
        && frame.photometric != Photometric::Monochrome2;
    Ok(Display8 {
        width,
        height,
        rgb,
        data,
    })
}

fn grey(frame: &Frame, params: &ToneParams, invert: bool) -> Vec<u8> {
    let (slope, intercept) = params.rescale.unwrap_or((1.0, 0.0));
    let modality = |v: f32| f64::from(v) * slope + intercept;
    let mut out: Vec<u8> = if let Some(window) = params.window {
        frame
            .samples
            .iter()
            .map(|v| apply_window(modality(*v), window))
            .collect()
    } else {
        let (lo, hi) = if !frame.float && frame.bits_stored <= 8 && params.rescale.is_none() {
            // Small integer data is shown over its whole stored range (1-bit: 0 and 255).
            let bits = i32::from(frame.bits_stored);
            if frame.signed {
                (
                    -f64::from(1 << (bits - 1)),
                    f64::from((1 << (bits - 1)) - 1),
                )
            } else {
                (0.0, f64::from((1 << bits) - 1))
            }
        } else {
            percentile_range(&frame.samples, modality)
        };
        let scale = 255.0 / (hi - lo);
        frame
            .samples
            .iter()
            .map(|v| {
                let m = modality(*v);
                if m.is_nan() {
                    0
                } else {
                    ((m - lo) * scale).round().clamp(0.0, 255.0) as u8
                }
            })
            .collect()
    };
    if invert {
        for v in &mut out {
            *v = 255 - *v;
        }
    }
    out
}

/// VOI LUT functions of PS3.3 C.11.2.1.2 and C.11.2.1.3, output range 0..=255.
fn apply_window(x: f64, w: Window) -> u8 {
    if x.is_nan() {
        return 0;
    }
    let y = match w.function {
        VoiFunction::Linear => {
            let c = w.center - 0.5;
            let half = (w.width - 1.0) / 2.0;
            if x <= c - half {
                0.0
            } else if x > c + half {
                255.0
            } else {
                ((x - c) / (w.width - 1.0) + 0.5) * 255.0
            }
        }
        VoiFunction::LinearExact => ((x - w.center) / w.width + 0.5) * 255.0,
        VoiFunction::Sigmoid => 255.0 / (1.0 + (-4.0 * (x - w.center) / w.width).exp()),
    };
    y.round().clamp(0.0, 255.0) as u8
}

/// The automatic window: the 0.5 and 99.5 percentiles of the modality values.
fn percentile_range(samples: &[f32], modality: impl Fn(f32) -> f64) -> (f64, f64) {
    let step = samples.len().div_ceil(PERCENTILE_SAMPLES).max(1);
    let mut values: Vec<f64> = samples
        .iter()
        .step_by(step)
        .map(|v| modality(*v))
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return (0.0, 1.0);
    }
    let last = values.len() - 1;
    let lo_i = ((last as f64) * AUTO_WINDOW_PERCENTILES.0).round() as usize;
    let hi_i = ((last as f64) * AUTO_WINDOW_PERCENTILES.1).round() as usize;
    let (_, lo, _) = values.select_nth_unstable_by(lo_i, f64::total_cmp);
    let lo = *lo;
    let (_, hi, _) = values.select_nth_unstable_by(hi_i, f64::total_cmp);
    let hi = *hi;
    if hi > lo {
        (lo, hi)
    } else {
        // A flat image: show it mid-grey-ish rather than dividing by zero.
        (lo - 1.0, lo + 1.0)
    }
}

fn palette_rgb(samples: &[f32], palette: &Palette) -> Vec<u8> {
    let last = palette.rgb.len().saturating_sub(1) as i64;
    let mut out = Vec::with_capacity(samples.len() * 3);
    for v in samples {
        let index = (*v as i64 - palette.first_mapped).clamp(0, last) as usize;
        let rgb = palette.rgb.get(index).copied().unwrap_or([0, 0, 0]);
        out.extend_from_slice(&rgb);
    }
    out
}

fn colour(frame: &Frame) -> Vec<u8> {
    let max = if frame.bits_stored >= 32 {
        u32::MAX as f32
    } else {
        ((1u64 << frame.bits_stored) - 1) as f32
    };
    let to8 = |v: f32| -> f32 {
        if frame.bits_stored == 8 {
            v
        } else {
            v * 255.0 / max
        }
    };
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    let mut out = Vec::with_capacity(frame.samples.len());
    for px in frame.samples.chunks_exact(3) {
        let (a, b, c) = (to8(px[0]), to8(px[1]), to8(px[2]));
        let rgb = match frame.photometric {
            Photometric::YbrFull => {
                let (cb, cr) = (b - 128.0, c - 128.0);
                [
                    a + 1.402 * cr,
                    a - 0.344_136 * cb - 0.714_136 * cr,
                    a + 1.772 * cb,
                ]
            }
            Photometric::YbrPartial => {
                let (y, cb, cr) = (1.164_383 * (a - 16.0), b - 128.0, c - 128.0);
                [
                    y + 1.596_027 * cr,
                    y - 0.391_762 * cb - 0.812_968 * cr,
                    y + 2.017_232 * cb,
                ]
            }
            _ => [a, b, c],
        };
        out.extend_from_slice(&[clamp(rgb[0]), clamp(rgb[1]), clamp(rgb[2])]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(center: f64, width: f64) -> Window {
        Window {
            center,
            width,
            function: VoiFunction::Linear,
        }
    }

    #[test]
    fn linear_window_follows_the_standard() {
        let w = linear(40.0, 400.0);
        assert_eq!(apply_window(-160.0, w), 0);
        assert_eq!(apply_window(-500.0, w), 0);
        assert_eq!(apply_window(240.0, w), 255);
        assert_eq!(apply_window(1000.0, w), 255);
        let mid = apply_window(40.0, w);
        assert!((127..=128).contains(&mid), "{mid}");
    }

    #[test]
    fn percentiles_ignore_outliers() {
        let mut samples: Vec<f32> = (0..1000).map(|i| (i % 100) as f32).collect();
        samples[0] = -30000.0;
        samples[1] = 30000.0;
        let (lo, hi) = percentile_range(&samples, f64::from);
        assert!((0.0..=1.0).contains(&lo), "{lo}");
        assert!((98.0..=99.0).contains(&hi), "{hi}");
    }
}
