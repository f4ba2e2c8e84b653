//! Label map → DICOM Segmentation (BINARY).

use std::collections::HashMap;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};

use crate::dicom_util::{code, ds, ds_multi, to_part10, uid_from, Geometry, Put};
use crate::dicom_util::{MANUFACTURER, MODEL, SOFTWARE_VERSION};
use crate::{ConvertError, ConvertedSeries, Limits, Volume};

/// Segmentation SOP Class.
pub const SEGMENTATION_STORAGE: &str = dicom_dictionary_std::uids::SEGMENTATION_STORAGE;

/// Segment Algorithm Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgorithmType {
    /// MANUAL: drawn by a person.
    Manual,
    /// SEMIAUTOMATIC: drawn with a tool's help.
    Semiautomatic,
    /// AUTOMATIC: by an algorithm.
    Automatic,
}

impl AlgorithmType {
    fn code_string(self) -> &'static str {
        match self {
            AlgorithmType::Manual => "MANUAL",
            AlgorithmType::Semiautomatic => "SEMIAUTOMATIC",
            AlgorithmType::Automatic => "AUTOMATIC",
        }
    }
}

/// One label of the label map.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Voxel value of this label (≠ 0).
    pub label_value: u32,
    /// Segment Label (the `label_name` of `seg_info.json`); also picks the SNOMED CT property codes.
    pub label: String,
    /// Segment Algorithm Type (0062,0008).
    pub algorithm_type: AlgorithmType,
    /// Segment Algorithm Name (required unless MANUAL; "unknown" when missing or empty).
    pub algorithm_name: Option<String>,
}

impl Segment {
    /// From a `seg_info.json` entry and its `"algorithm"` field: "Ground truth" (any case) → MANUAL, anything
    /// else → AUTOMATIC with that algorithm name.
    pub fn from_seg_info(label_value: u32, label_name: &str, algorithm: &str) -> Self {
        let manual = algorithm.trim().eq_ignore_ascii_case("ground truth");
        Segment {
            label_value,
            label: label_name.to_string(),
            algorithm_type: if manual {
                AlgorithmType::Manual
            } else {
                AlgorithmType::Automatic
            },
            algorithm_name: if manual {
                None
            } else {
                Some(algorithm.trim().to_string())
            },
        }
    }
}

/// How to build the SEG instance.
#[derive(Debug, Clone)]
pub struct SegOptions {
    /// Series Instance UID = `2.25.<UUIDv5 of the source series UID + this seed>`; SOP Instance UID derived from it.
    pub series_uid_seed: String,
    /// Series Description (0008,103E) of the SEG.
    pub series_description: String,
    /// Series Number (0020,0011) of the SEG.
    pub series_number: i64,
    /// Content Label (CS: upper case, digits, `_`, ≤ 16 characters).
    pub content_label: String,
    /// Content Description (0070,0081).
    pub content_description: Option<String>,
    /// Content Creator's Name (0070,0084).
    pub content_creator_name: Option<String>,
    /// Content Date (YYYYMMDD) and Time (HHMMSS); `None` → now (local time).
    pub content_date: Option<String>,
    /// Content Time (0008,0033), HHMMSS; `None`: now (local time).
    pub content_time: Option<String>,
    /// Label values present in the map but not in `segments`: error (default) or ignored.
    pub ignore_unlisted_labels: bool,
    /// Segments, segments × slices, frames and pixel bytes allowed (see [`Limits`]).
    pub limits: Limits,
}

impl SegOptions {
    /// Defaults for a SEG whose Series Instance UID derives from `series_uid_seed`.
    pub fn new(series_uid_seed: &str) -> Self {
        SegOptions {
            series_uid_seed: series_uid_seed.to_string(),
            series_description: "Segmentation".into(),
            series_number: 100,
            content_label: "SEGMENTATION".into(),
            content_description: None,
            content_creator_name: None,
            content_date: None,
            content_time: None,
            ignore_unlisted_labels: false,
            limits: Limits::default(),
        }
    }
}

const ANATOMY: (&str, &str) = ("91723000", "Anatomical structure");
const ALTERED: (&str, &str) = ("49755003", "Morphologically altered structure");

/// (normalised names, SNOMED CT type code, meaning, category)
/// (names, type code, type meaning, (category code, category meaning))
type PropertyEntry = (
    &'static [&'static str],
    &'static str,
    &'static str,
    (&'static str, &'static str),
);

const PROPERTY_TABLE: &[PropertyEntry] = &[
    (&["liver"], "10200004", "Liver", ANATOMY),
    (&["kidney", "kidneys"], "64033007", "Kidney", ANATOMY),
    (
        &["left kidney", "kidney left", "kidney l"],
        "18639004",
        "Left kidney",
        ANATOMY,
    ),
    (
        &["right kidney", "kidney right", "kidney r"],
        "9846003",
        "Right kidney",
        ANATOMY,
    ),
    (&["spleen"], "78961009", "Spleen", ANATOMY),
    (&["lung", "lungs"], "39607008", "Lung", ANATOMY),
    (
        &["left lung", "lung left", "lung l"],
        "44029006",
        "Left lung",
        ANATOMY,
    ),
    (
        &["right lung", "lung right", "lung r"],
        "3341006",
        "Right lung",
        ANATOMY,
    ),
    (&["heart"], "80891009", "Heart", ANATOMY),
    (
        &["prostate", "prostate gland"],
        "41216001",
        "Prostate",
        ANATOMY,
    ),
    (&["brain"], "12738006", "Brain", ANATOMY),
    (&["pancreas"], "15776009", "Pancreas", ANATOMY),
    (&["stomach"], "69695003", "Stomach", ANATOMY),
    (
        &["gallbladder", "gall bladder"],
        "28231008",
        "Gallbladder",
        ANATOMY,
    ),
    (
        &["bladder", "urinary bladder"],
        "89837001",
        "Urinary bladder",
        ANATOMY,
    ),
    (&["aorta"], "15825003", "Aorta", ANATOMY),
    (
        &["esophagus", "oesophagus"],
        "32849002",
        "Esophagus",
        ANATOMY,
    ),
    (&["colon"], "71854001", "Colon", ANATOMY),
    (&["duodenum"], "38848004", "Duodenum", ANATOMY),
    (
        &["small intestine", "small bowel"],
        "30315005",
        "Small intestine",
        ANATOMY,
    ),
    (
        &["adrenal gland", "adrenal"],
        "23451007",
        "Adrenal gland",
        ANATOMY,
    ),
    (&["trachea"], "44567001", "Trachea", ANATOMY),
    (
        &["tumor", "tumour", "neoplasm"],
        "108369006",
        "Neoplasm",
        ALTERED,
    ),
    (&["lesion"], "52988006", "Lesion", ALTERED),
];

/// (type code, type meaning, category code, category meaning) for a label name.
pub(crate) fn property_codes(
    label: &str,
) -> (&'static str, &'static str, &'static str, &'static str) {
    let norm = label
        .to_lowercase()
        .replace(['_', '-', '.'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for (names, code_value, meaning, (cat, cat_meaning)) in PROPERTY_TABLE {
        if names.contains(&norm.as_str()) {
            return (code_value, meaning, cat, cat_meaning);
        }
    }
    ("85756007", "Tissue", ANATOMY.0, ANATOMY.1)
}

fn srgb_to_dicom_lab(rgb: [u8; 3]) -> [u16; 3] {
    let lin = |c: u8| {
        let c = c as f64 / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (lin(rgb[0]), lin(rgb[1]), lin(rgb[2]));
    let x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047;
    let y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
    let z = (0.0193339 * r + 0.119192 * g + 0.9503041 * b) / 1.08883;
    let f = |t: f64| {
        if t > 216.0 / 24389.0 {
            t.cbrt()
        } else {
            (24389.0 / 27.0 * t + 16.0) / 116.0
        }
    };
    let (fx, fy, fz) = (f(x), f(y), f(z));
    let l = 116.0 * fy - 16.0;
    let a = 500.0 * (fx - fy);
    let bb = 200.0 * (fy - fz);
    [
        (l.clamp(0.0, 100.0) * 65535.0 / 100.0).round() as u16,
        ((a.clamp(-128.0, 127.0) + 128.0) * 65535.0 / 255.0).round() as u16,
        ((bb.clamp(-128.0, 127.0) + 128.0) * 65535.0 / 255.0).round() as u16,
    ]
}

/// Distinct display colours (DICOM-scaled CIELab), one per segment.
pub(crate) fn segment_colours(n: usize) -> Vec<[u16; 3]> {
    const PALETTE: [[u8; 3]; 12] = [
        [221, 130, 101], // liver-ish brown-red
        [128, 174, 128], // green
        [241, 214, 145], // yellow
        [177, 122, 101], // brown
        [111, 184, 210], // blue
        [216, 101, 79],  // red
        [183, 156, 220], // purple
        [183, 214, 211], // teal
        [252, 125, 186], // pink
        [255, 163, 0],   // orange
        [90, 105, 170],  // indigo
        [150, 150, 50],  // olive
    ];
    let mut out: Vec<[u16; 3]> = Vec::with_capacity(n);
    for s in 0..n {
        let rgb = if s < PALETTE.len() {
            PALETTE[s]
        } else {
            // golden-angle hues, alternating lightness
            let h = (s as f64 * 137.507_764) % 360.0;
            let v = [0.95, 0.75, 0.55][s % 3];
            hsv(h, 0.65, v)
        };
        let mut lab = srgb_to_dicom_lab(rgb);
        while out.contains(&lab) {
            lab[0] = lab[0].wrapping_add(97);
        }
        out.push(lab);
    }
    out
}

fn hsv(h: f64, s: f64, v: f64) -> [u8; 3] {
    let c = v * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = v - c;
    let (r, g, b) = match (h / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [r, g, b].map(|t| ((t + m) * 255.0).round() as u8)
}

/// Patient / study attributes copied from the source series.
const COPIED: &[Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::PATIENT_AGE,
    tags::ISSUER_OF_PATIENT_ID,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_DESCRIPTION,
    tags::CLINICAL_TRIAL_SPONSOR_NAME,
    tags::CLINICAL_TRIAL_PROTOCOL_ID,
    tags::CLINICAL_TRIAL_PROTOCOL_NAME,
    tags::CLINICAL_TRIAL_SITE_ID,
    tags::CLINICAL_TRIAL_SITE_NAME,
    tags::CLINICAL_TRIAL_SUBJECT_ID,
    tags::CLINICAL_TRIAL_SUBJECT_READING_ID,
];

/// Type 2 attributes written empty when the source lacks them.
const TYPE2: &[(Tag, VR)] = &[
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::PATIENT_BIRTH_DATE, VR::DA),
    (tags::PATIENT_SEX, VR::CS),
    (tags::STUDY_DATE, VR::DA),
    (tags::STUDY_TIME, VR::TM),
    (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
];

fn affines_match(a: &Volume, b: &Volume) -> bool {
    a.affine
        .iter()
        .flatten()
        .zip(b.affine.iter().flatten())
        .all(|(x, y)| (x - y).abs() <= 1e-3 * (1.0 + x.abs().max(y.abs())))
}

/// Convert a label map on the grid of `source_volume` (converted to `source`) into one DICOM SEG Part-10 file.
///
/// `segments` describe the label values (numbered 1.. in the given order). Empty segment×slice frames are left
/// out; a map with no labelled voxel at all is refused (a SEG needs at least one frame).
#[allow(clippy::needless_range_loop)] // k indexes slices, the source UIDs and the frame tables alike
pub fn labels_to_seg(
    labels: &Volume,
    source: &ConvertedSeries,
    source_volume: &Volume,
    segments: &[Segment],
    opts: &SegOptions,
) -> Result<Vec<u8>, ConvertError> {
    let [nx, ny, nz] = labels.dims;
    let limits = &opts.limits;
    // Limits first: nothing per segment or per slice is allocated before these checks.
    let max_segments = limits.max_segments.min(u16::MAX as usize);
    if segments.len() > max_segments {
        return Err(ConvertError::TooLarge(format!(
            "{} segments: a SEG may have at most {max_segments}",
            segments.len()
        )));
    }
    let candidates = (segments.len() as u64).saturating_mul(nz as u64);
    if candidates > limits.max_segment_slices {
        return Err(ConvertError::TooLarge(format!(
            "{} segments × {nz} slices = {candidates} candidate frames exceed the limit of {}",
            segments.len(),
            limits.max_segment_slices
        )));
    }
    if labels.data.is_colour() {
        return Err(ConvertError::Labels(format!(
            "label map is {} colour data: labels must be a scalar integer volume",
            labels.data.type_name()
        )));
    }
    if labels.dims != source_volume.dims {
        return Err(ConvertError::Labels(format!(
            "label map shape {:?} differs from the image volume's {:?}",
            labels.dims, source_volume.dims
        )));
    }
    if !affines_match(labels, source_volume) {
        return Err(ConvertError::Labels(format!(
            "label map geometry (affine {:?}) differs from the image volume's ({:?})",
            labels.affine, source_volume.affine
        )));
    }
    let npix = nx.checked_mul(ny);
    if npix.and_then(|p| p.checked_mul(nz)) != Some(labels.data.len()) {
        return Err(ConvertError::InvalidArgument(
            "label map dims do not match its data".into(),
        ));
    }
    let npix = npix.unwrap_or_default();
    if nx > 65535 || ny > 65535 {
        return Err(ConvertError::Unsupported(format!(
            "slice of {nx} × {ny}: DICOM Rows/Columns are limited to 65535"
        )));
    }
    if source.sop_instance_uids.len() != nz || source.files.is_empty() {
        return Err(ConvertError::InvalidArgument(format!(
            "source series has {} instances, the volume {nz} slices",
            source.sop_instance_uids.len()
        )));
    }
    if segments.is_empty() {
        return Err(ConvertError::InvalidArgument("no segments given".into()));
    }
    let mut lut: HashMap<u32, usize> = HashMap::new();
    for (s, seg) in segments.iter().enumerate() {
        if seg.label_value == 0 {
            return Err(ConvertError::InvalidArgument(format!(
                "segment {:?}: label value 0 is the background",
                seg.label
            )));
        }
        if seg.label.trim().is_empty() || seg.label.chars().count() > 64 {
            return Err(ConvertError::InvalidArgument(format!(
                "segment label {:?} must have 1 to 64 characters",
                seg.label
            )));
        }
        if lut.insert(seg.label_value, s).is_some() {
            return Err(ConvertError::InvalidArgument(format!(
                "label value {} listed twice",
                seg.label_value
            )));
        }
    }
    let content_label = opts.content_label.trim().to_uppercase();
    if content_label.is_empty()
        || content_label.len() > 16
        || !content_label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b' ')
    {
        return Err(ConvertError::InvalidArgument(format!(
            "content label {:?} is not a valid CS value",
            opts.content_label
        )));
    }
    let geo = Geometry::of(source_volume)?;

    // Segment index of each voxel of slice k (usize::MAX = background / ignored).
    let small: Vec<usize> = {
        let mut v = vec![usize::MAX; 4096];
        for (&l, &s) in &lut {
            if (l as usize) < v.len() {
                v[l as usize] = s;
            }
        }
        v
    };
    let mut vals = Vec::with_capacity(npix);
    let mut seg_of_slice = |k: usize, out: &mut Vec<usize>| -> Result<(), ConvertError> {
        labels.slice_values(k, &mut vals);
        out.clear();
        for (p, &x) in vals.iter().enumerate() {
            if x == 0.0 {
                out.push(usize::MAX);
                continue;
            }
            if !(x > 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64) {
                return Err(ConvertError::Labels(format!(
                    "voxel ({}, {}, {k}) has value {x}: labels must be non-negative integers",
                    p % nx,
                    p / nx
                )));
            }
            let l = x as u32;
            let s = if (l as usize) < small.len() {
                small[l as usize]
            } else {
                lut.get(&l).copied().unwrap_or(usize::MAX)
            };
            if s == usize::MAX && !opts.ignore_unlisted_labels {
                return Err(ConvertError::Labels(format!(
                    "label value {l} (voxel ({}, {}, {k})) is not described in the segment list",
                    p % nx,
                    p / nx
                )));
            }
            out.push(s);
        }
        Ok(())
    };

    // pass 1: which (segment, slice) frames are non-empty; frame_of[s * nz + k] = frame number (segment-major,
    // slice-minor), NO_FRAME for empty ones. Its size is bounded by max_segment_slices (checked above).
    const NO_FRAME: u32 = u32::MAX;
    let nseg = segments.len();
    let mut frame_of: Vec<u32> = Vec::new();
    frame_of
        .try_reserve_exact(nseg * nz)
        .map_err(|_| ConvertError::TooLarge(format!("cannot allocate {nseg} × {nz} frames")))?;
    frame_of.resize(nseg * nz, NO_FRAME);
    let mut segbuf = Vec::with_capacity(npix);
    for k in 0..nz {
        seg_of_slice(k, &mut segbuf)?;
        for &s in &segbuf {
            if s != usize::MAX {
                frame_of[s * nz + k] = 0;
            }
        }
    }
    let mut nframes: u64 = 0;
    for f in frame_of.iter_mut().filter(|f| **f != NO_FRAME) {
        *f = u32::try_from(nframes).unwrap_or(NO_FRAME);
        nframes += 1;
    }
    if nframes == 0 {
        return Err(ConvertError::Labels(
            "the label map contains none of the listed labels: nothing to store in a SEG".into(),
        ));
    }
    if nframes > limits.max_seg_frames {
        return Err(ConvertError::TooLarge(format!(
            "the SEG would have {nframes} non-empty frames; the limit is {}",
            limits.max_seg_frames
        )));
    }
    let total_bits = nframes.checked_mul(npix as u64);
    let pixel_bytes = total_bits.map(|b| b.div_ceil(8).next_multiple_of(2));
    let pixel_bytes = match pixel_bytes {
        Some(b) if b <= limits.max_seg_pixel_bytes => b as usize,
        _ => {
            return Err(ConvertError::TooLarge(format!(
                "the SEG would have {nframes} frames of {nx} × {ny} pixels, more than {} bytes of pixel data",
                limits.max_seg_pixel_bytes
            )))
        }
    };
    let frames: Vec<(usize, usize)> = (0..nseg)
        .flat_map(|s| (0..nz).map(move |k| (s, k)))
        .filter(|&(s, k)| frame_of[s * nz + k] != NO_FRAME)
        .collect();
    // pass 2: pack bits LSB-first, contiguously across frames
    let mut bits = vec![0u8; pixel_bytes];
    for k in 0..nz {
        seg_of_slice(k, &mut segbuf)?;
        for (p, &s) in segbuf.iter().enumerate() {
            if s != usize::MAX {
                let bit = frame_of[s * nz + k] as usize * npix + p;
                bits[bit >> 3] |= 1 << (bit & 7);
            }
        }
    }

    // source attributes
    let src = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .read_until(tags::PIXEL_DATA)
        .from_reader(&source.files[0][..])
        .map_err(|e| {
            ConvertError::InvalidArgument(format!("source file 0 is not readable DICOM: {e}"))
        })?;

    let series_uid = uid_from(&format!(
        "seg-series\0{}\0{}",
        source.series_uid, opts.series_uid_seed
    ));
    let sop_uid = uid_from(&format!("seg-sop\0{series_uid}"));
    let dim_org_uid = uid_from(&format!("seg-dimorg\0{sop_uid}"));
    let now = chrono::Local::now();
    let date = opts
        .content_date
        .clone()
        .unwrap_or_else(|| now.format("%Y%m%d").to_string());
    let time = opts
        .content_time
        .clone()
        .unwrap_or_else(|| now.format("%H%M%S").to_string());

    let mut o = InMemDicomObject::new_empty();
    for &t in COPIED {
        if let Some(e) = src.get(t) {
            o.put(e.clone());
        }
    }
    for &(t, vr) in TYPE2 {
        if o.get(t).is_none() {
            o.empty(t, vr);
        }
    }
    if o.get(tags::STUDY_INSTANCE_UID).is_none() {
        o.s(tags::STUDY_INSTANCE_UID, VR::UI, &source.study_uid);
    }
    // SOP Common
    o.s(tags::SOP_CLASS_UID, VR::UI, SEGMENTATION_STORAGE);
    o.s(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid);
    // General Series + Segmentation Series
    o.s(tags::MODALITY, VR::CS, "SEG");
    o.s(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid);
    o.s(tags::SERIES_NUMBER, VR::IS, &opts.series_number.to_string());
    if !opts.series_description.is_empty() {
        o.s(tags::SERIES_DESCRIPTION, VR::LO, &opts.series_description);
    }
    // Frame of Reference
    o.s(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &source.frame_of_reference_uid,
    );
    o.empty(tags::POSITION_REFERENCE_INDICATOR, VR::LO);
    // General + Enhanced General Equipment
    o.s(tags::MANUFACTURER, VR::LO, MANUFACTURER);
    o.s(tags::MANUFACTURER_MODEL_NAME, VR::LO, MODEL);
    o.s(tags::DEVICE_SERIAL_NUMBER, VR::LO, "1");
    o.s(tags::SOFTWARE_VERSIONS, VR::LO, SOFTWARE_VERSION);
    // General Image / Segmentation Image / Multi-frame Functional Groups
    o.s(tags::INSTANCE_NUMBER, VR::IS, "1");
    o.s(tags::CONTENT_DATE, VR::DA, &date);
    o.s(tags::CONTENT_TIME, VR::TM, &time);
    o.s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY");
    o.s(tags::CONTENT_LABEL, VR::CS, &content_label);
    match &opts.content_description {
        Some(d) => o.s(tags::CONTENT_DESCRIPTION, VR::LO, d),
        None => o.empty(tags::CONTENT_DESCRIPTION, VR::LO),
    }
    match &opts.content_creator_name {
        Some(d) => o.s(tags::CONTENT_CREATOR_NAME, VR::PN, d),
        None => o.empty(tags::CONTENT_CREATOR_NAME, VR::PN),
    }
    o.us(tags::SAMPLES_PER_PIXEL, &[1]);
    o.s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    o.us(tags::ROWS, &[ny as u16]);
    o.us(tags::COLUMNS, &[nx as u16]);
    o.us(tags::BITS_ALLOCATED, &[1]);
    o.us(tags::BITS_STORED, &[1]);
    o.us(tags::HIGH_BIT, &[0]);
    o.us(tags::PIXEL_REPRESENTATION, &[0]);
    o.s(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
    o.s(tags::SEGMENTATION_TYPE, VR::CS, "BINARY");
    o.s(tags::NUMBER_OF_FRAMES, VR::IS, &frames.len().to_string());

    // Segment Sequence
    let colours = segment_colours(nseg);
    let seg_items = segments
        .iter()
        .enumerate()
        .map(|(s, seg)| {
            let mut it = InMemDicomObject::new_empty();
            it.us(tags::SEGMENT_NUMBER, &[(s + 1) as u16]);
            it.s(tags::SEGMENT_LABEL, VR::LO, seg.label.trim());
            it.s(
                tags::SEGMENT_ALGORITHM_TYPE,
                VR::CS,
                seg.algorithm_type.code_string(),
            );
            if seg.algorithm_type != AlgorithmType::Manual {
                let name = seg
                    .algorithm_name
                    .as_deref()
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .unwrap_or("unknown");
                it.s(tags::SEGMENT_ALGORITHM_NAME, VR::LO, name);
            }
            let (tv, tm, cv, cm) = property_codes(&seg.label);
            it.seq(
                tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
                vec![code(cv, "SCT", cm)],
            );
            it.seq(
                tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
                vec![code(tv, "SCT", tm)],
            );
            it.us(tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE, &colours[s]);
            it
        })
        .collect();
    o.seq(tags::SEGMENT_SEQUENCE, seg_items);

    // Multi-frame Dimension
    o.seq(tags::DIMENSION_ORGANIZATION_SEQUENCE, {
        let mut it = InMemDicomObject::new_empty();
        it.s(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_org_uid);
        vec![it]
    });
    o.s(tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D");
    let dim = |index: Tag, group: Tag, label: &str| {
        let mut it = InMemDicomObject::new_empty();
        it.s(tags::DIMENSION_ORGANIZATION_UID, VR::UI, &dim_org_uid);
        it.at(tags::DIMENSION_INDEX_POINTER, index);
        it.at(tags::FUNCTIONAL_GROUP_POINTER, group);
        it.s(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
        it
    };
    o.seq(
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dim(
                tags::REFERENCED_SEGMENT_NUMBER,
                tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                "Segment Number",
            ),
            dim(
                tags::IMAGE_POSITION_PATIENT,
                tags::PLANE_POSITION_SEQUENCE,
                "Image Position Patient",
            ),
        ],
    );

    // Shared functional groups
    let mut shared = InMemDicomObject::new_empty();
    shared.seq(tags::PIXEL_MEASURES_SEQUENCE, {
        let mut it = InMemDicomObject::new_empty();
        it.s(tags::PIXEL_SPACING, VR::DS, &geo.pixel_spacing());
        it.s(tags::SLICE_THICKNESS, VR::DS, &ds(geo.slice_spacing));
        it.s(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(geo.slice_spacing));
        vec![it]
    });
    shared.seq(tags::PLANE_ORIENTATION_SEQUENCE, {
        let mut it = InMemDicomObject::new_empty();
        it.s(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &geo.iop());
        vec![it]
    });
    o.seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]);

    // Per-frame functional groups
    let positions: Vec<String> = (0..nz).map(|k| ds_multi(&geo.position(k))).collect();
    let per_frame = frames
        .iter()
        .map(|&(s, k)| {
            let mut f = InMemDicomObject::new_empty();
            f.seq(tags::DERIVATION_IMAGE_SEQUENCE, {
                let mut src_img = InMemDicomObject::new_empty();
                src_img.s(
                    tags::REFERENCED_SOP_CLASS_UID,
                    VR::UI,
                    &source.sop_class_uid,
                );
                src_img.s(
                    tags::REFERENCED_SOP_INSTANCE_UID,
                    VR::UI,
                    &source.sop_instance_uids[k],
                );
                src_img.s(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES");
                src_img.seq(
                    tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                    vec![code(
                        "121322",
                        "DCM",
                        "Source image for image processing operation",
                    )],
                );
                let mut d = InMemDicomObject::new_empty();
                d.seq(
                    tags::DERIVATION_CODE_SEQUENCE,
                    vec![code("113076", "DCM", "Segmentation")],
                );
                d.seq(tags::SOURCE_IMAGE_SEQUENCE, vec![src_img]);
                vec![d]
            });
            f.seq(tags::FRAME_CONTENT_SEQUENCE, {
                let mut it = InMemDicomObject::new_empty();
                it.ul(
                    tags::DIMENSION_INDEX_VALUES,
                    &[(s + 1) as u32, (k + 1) as u32],
                );
                vec![it]
            });
            f.seq(tags::PLANE_POSITION_SEQUENCE, {
                let mut it = InMemDicomObject::new_empty();
                it.s(tags::IMAGE_POSITION_PATIENT, VR::DS, &positions[k]);
                vec![it]
            });
            f.seq(tags::SEGMENT_IDENTIFICATION_SEQUENCE, {
                let mut it = InMemDicomObject::new_empty();
                it.us(tags::REFERENCED_SEGMENT_NUMBER, &[(s + 1) as u16]);
                vec![it]
            });
            f
        })
        .collect();
    o.seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame);

    // Common Instance Reference: every source instance, empty frames included
    o.seq(tags::REFERENCED_SERIES_SEQUENCE, {
        let mut it = InMemDicomObject::new_empty();
        it.s(tags::SERIES_INSTANCE_UID, VR::UI, &source.series_uid);
        it.seq(
            tags::REFERENCED_INSTANCE_SEQUENCE,
            source
                .sop_instance_uids
                .iter()
                .map(|u| {
                    let mut r = InMemDicomObject::new_empty();
                    r.s(
                        tags::REFERENCED_SOP_CLASS_UID,
                        VR::UI,
                        &source.sop_class_uid,
                    );
                    r.s(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, u);
                    r
                })
                .collect(),
        );
        vec![it]
    });

    let n = bits.len();
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::U8(bits.into()),
    ));
    to_part10(o, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(property_codes("Liver").0, "10200004");
        assert_eq!(property_codes("kidney_left").0, "18639004");
        assert_eq!(property_codes("Prostate").0, "41216001");
        assert_eq!(
            property_codes("something else"),
            ("85756007", "Tissue", "91723000", "Anatomical structure")
        );
    }

    fn unit_volume(dims: [usize; 3], data: crate::VoxelData) -> Volume {
        let aff = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
        ];
        Volume::new(dims, data, aff).unwrap()
    }

    /// The error (a SEG made anyway is not printed: it is megabytes of Debug output).
    fn err(r: Result<Vec<u8>, ConvertError>) -> ConvertError {
        match r {
            Ok(seg) => panic!("a SEG of {} bytes was made", seg.len()),
            Err(e) => e,
        }
    }

    fn segs(n: u32) -> Vec<Segment> {
        (1..=n)
            .map(|v| Segment::from_seg_info(v, &format!("s{v}"), "test"))
            .collect()
    }

    #[test]
    fn segment_count_bombs_are_refused_before_allocating() {
        // The reported case: 65 535 labels over a 1 × 1 × 8192 label map.
        let dims = [1, 1, 8192];
        let image = unit_volume(dims, crate::VoxelData::I16(vec![0; 8192]));
        let labels = unit_volume(
            dims,
            crate::VoxelData::U16((0..8192).map(|k| (k % 65535 + 1) as u16).collect()),
        );
        let series =
            crate::volume_to_series(&image, &crate::SeriesOptions::new("CT", "a", "b")).unwrap();
        let e = err(labels_to_seg(
            &labels,
            &series,
            &image,
            &segs(65535),
            &SegOptions::new("s"),
        ));
        assert!(
            matches!(e, ConvertError::TooLarge(_)) && e.to_string().contains("65535 segments"),
            "{e}"
        );
        // Under the segment cap, over segments × slices.
        let mut opts = SegOptions::new("s");
        opts.limits.max_segment_slices = 1 << 20;
        let e = err(labels_to_seg(&labels, &series, &image, &segs(1000), &opts));
        assert!(e.to_string().contains("candidate frames"), "{e}");
        // Under both, over the frame cap (one non-empty frame per slice).
        let mut opts = SegOptions::new("s");
        opts.limits.max_seg_frames = 999;
        opts.ignore_unlisted_labels = true;
        let e = err(labels_to_seg(&labels, &series, &image, &segs(1000), &opts));
        assert!(e.to_string().contains("1000 non-empty frames"), "{e}");
        // Pixel data cap.
        let mut opts = SegOptions::new("s");
        opts.limits.max_seg_pixel_bytes = 100;
        opts.ignore_unlisted_labels = true;
        let e = err(labels_to_seg(&labels, &series, &image, &segs(1000), &opts));
        assert!(e.to_string().contains("bytes of pixel data"), "{e}");
        // Within the limits it converts (frames of labels 1..=1000 only).
        let mut opts = SegOptions::new("s");
        opts.ignore_unlisted_labels = true;
        let seg = labels_to_seg(&labels, &series, &image, &segs(1000), &opts).unwrap();
        let o = dicom_object::from_reader(&seg[128..]).unwrap();
        let frames: usize = o.element(tags::NUMBER_OF_FRAMES).unwrap().to_int().unwrap();
        assert_eq!(frames, 1000, "labels 1..=1000, one slice each");
    }

    #[test]
    fn unlisted_label_values_are_named_in_the_error() {
        let dims = [2, 2, 2];
        let image = unit_volume(dims, crate::VoxelData::I16(vec![0; 8]));
        let labels = unit_volume(dims, crate::VoxelData::U8(vec![0, 1, 0, 0, 0, 0, 9, 0]));
        let series =
            crate::volume_to_series(&image, &crate::SeriesOptions::new("CT", "a", "b")).unwrap();
        let e = err(labels_to_seg(
            &labels,
            &series,
            &image,
            &segs(1),
            &SegOptions::new("s"),
        ));
        assert!(
            matches!(e, ConvertError::Labels(_)) && e.to_string().contains("label value 9"),
            "{e}"
        );
    }

    #[test]
    fn colours_distinct() {
        let c = segment_colours(300);
        for i in 0..c.len() {
            for j in 0..i {
                assert_ne!(c[i], c[j]);
            }
        }
    }
}
