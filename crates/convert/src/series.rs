//! Volume → single-frame DICOM image series.

use std::collections::BTreeMap;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids, StandardDataDictionary};
use dicom_object::InMemDicomObject;

use crate::dicom_util::{ds, ds_value, is_valid_uid, short_id, to_part10, uid_from, Geometry, Put};
use crate::dicom_util::{MANUFACTURER, MODEL, SOFTWARE_VERSION};
use crate::{ConvertError, Volume};

/// How to build the series.
#[derive(Debug, Clone)]
pub struct SeriesOptions {
    /// CT → CT Image Storage, MR → MR Image Storage, anything else (PT, OT, …) → Secondary Capture Image Storage
    /// with this Modality value. A Modality (0008,0060) in `extra_tags` wins over this field.
    pub modality: String,
    /// Patient ID; `None` → derived from `study_uid_seed` ("RP" + 16 hex digits).
    pub patient_id: Option<String>,
    /// Patient's Name; `None` → empty (type 2).
    pub patient_name: Option<String>,
    /// Study Instance UID = `2.25.<UUIDv5 of this seed>`.
    pub study_uid_seed: String,
    /// Series Instance UID = `2.25.<UUIDv5 of study seed + this seed>`; SOP Instance UIDs and the Frame of Reference
    /// UID derive from the Series Instance UID.
    pub series_uid_seed: String,
    pub series_description: String,
    pub series_number: i64,
    /// Applied last, VR from the standard dictionary (from `meta_data.json` "gggg|eeee" keys, see
    /// [`crate::parse_tag_key`]). Empty string = empty value. Study/Series Instance UID may be overridden (the
    /// returned UIDs follow); pixel, geometry, SOP and file-meta attributes are refused.
    pub extra_tags: Vec<(Tag, String)>,
}

impl SeriesOptions {
    /// Options with the given modality and seeds, everything else defaulted.
    pub fn new(modality: &str, study_uid_seed: &str, series_uid_seed: &str) -> Self {
        SeriesOptions {
            modality: modality.to_string(),
            patient_id: None,
            patient_name: None,
            study_uid_seed: study_uid_seed.to_string(),
            series_uid_seed: series_uid_seed.to_string(),
            series_description: String::new(),
            series_number: 1,
            extra_tags: Vec::new(),
        }
    }
}

/// The converted series.
#[derive(Debug, Clone)]
pub struct ConvertedSeries {
    /// One Part-10 file per slice (slice k → `files[k]`, Instance Number k + 1), Explicit VR Little Endian.
    pub files: Vec<Vec<u8>>,
    pub series_uid: String,
    pub study_uid: String,
    /// `sop_instance_uids[k]` is the instance of slice k.
    pub sop_instance_uids: Vec<String>,
    pub sop_class_uid: String,
    pub frame_of_reference_uid: String,
    /// Set when the stored values differ from the NIfTI values (rescale quantisation, non-finite voxels).
    pub precision_note: Option<String>,
    /// Rescale Slope / Intercept written (1 / 0 when stored as is).
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    /// Largest |stored·slope + intercept − original| over finite voxels.
    pub max_abs_error: f64,
}

/// How voxel values become 16-bit pixels: stored = round((value − intercept) / slope), clamped to the 16-bit range.
#[derive(Debug, Clone)]
pub(crate) struct Quant {
    pub signed: bool,
    pub slope_s: String,
    pub slope: f64,
    pub intercept_s: String,
    pub intercept: f64,
    pub min: f64,
    pub max: f64,
    pub nonfinite: u64,
    /// Stored value used for NaN/Inf.
    pub nonfinite_stored: f64,
}

impl Quant {
    fn new(signed: bool, slope: f64, intercept: f64, min: f64, max: f64, nonfinite: u64) -> Self {
        let (slope_s, slope) = ds_value(slope);
        let (intercept_s, intercept) = ds_value(intercept);
        let mut q = Quant {
            signed,
            slope_s,
            slope,
            intercept_s,
            intercept,
            min,
            max,
            nonfinite,
            nonfinite_stored: 0.0,
        };
        q.nonfinite_stored = q.store(0.0);
        q
    }

    fn range(&self) -> (f64, f64) {
        if self.signed {
            (-32768.0, 32767.0)
        } else {
            (0.0, 65535.0)
        }
    }

    fn store(&self, x: f64) -> f64 {
        let (lo, hi) = self.range();
        ((x - self.intercept) / self.slope).round().clamp(lo, hi)
    }
}

pub(crate) fn plan_quantisation(v: &Volume) -> Quant {
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut integral = true;
    let mut nonfinite = 0u64;
    let mut buf = Vec::new();
    for k in 0..v.dims[2] {
        v.slice_values(k, &mut buf);
        for &x in &buf {
            if x.is_finite() {
                min = min.min(x);
                max = max.max(x);
                if integral && x.fract() != 0.0 {
                    integral = false;
                }
            } else {
                nonfinite += 1;
            }
        }
    }
    if !min.is_finite() {
        // all non-finite (or nothing): store zeros
        min = 0.0;
        max = 0.0;
    }
    // Integers up to 2^53 are exact in f64; beyond that we cannot promise exactness.
    let small = min.abs().max(max.abs()) < 9_007_199_254_740_992.0;
    if integral && small {
        if min >= 0.0 && max <= 65535.0 {
            return Quant::new(false, 1.0, 0.0, min, max, nonfinite);
        }
        if min >= -32768.0 && max <= 32767.0 {
            return Quant::new(true, 1.0, 0.0, min, max, nonfinite);
        }
        if max - min <= 65535.0 && ds_value(min).1 == min {
            return Quant::new(false, 1.0, min, min, max, nonfinite);
        }
    }
    // Integer voxels with scl_slope/scl_inter whose raw values fit 16 bits: keep the raw values and the scaling.
    if v.data.is_integer() && v.is_scaled() && small {
        let (s, b) = (v.scl_slope, v.scl_inter);
        let (r0, r1) = ((min - b) / s, (max - b) / s);
        let (rmin, rmax) = (r0.min(r1).round(), r0.max(r1).round());
        if rmin >= 0.0 && rmax <= 65535.0 {
            return Quant::new(false, s, b, min, max, nonfinite);
        }
        if rmin >= -32768.0 && rmax <= 32767.0 {
            return Quant::new(true, s, b, min, max, nonfinite);
        }
    }
    let mut slope = (max - min) / 65535.0;
    if slope.is_nan() || slope <= 0.0 || !slope.is_finite() {
        slope = 1.0;
    }
    let mut q = Quant::new(false, slope, min, min, max, nonfinite);
    // make sure max stays reachable after the DS rounding of the slope
    for _ in 0..32 {
        if q.intercept + 65535.0 * q.slope >= max {
            break;
        }
        slope *= 1.0 + 1e-10;
        q = Quant::new(false, slope, min, min, max, nonfinite);
    }
    q
}

impl Quant {
    /// Encode one slice of real values as little-endian 16-bit pixels; returns max abs error over finite voxels.
    pub fn encode(&self, vals: &[f64], out: &mut Vec<u8>) -> f64 {
        out.clear();
        out.reserve(vals.len() * 2);
        let mut err = 0.0f64;
        if self.slope == 1.0 && self.intercept == 0.0 {
            // integral values within range: stored as is
            for &x in vals {
                let x = if x.is_finite() {
                    x
                } else {
                    self.nonfinite_stored
                };
                let b = if self.signed {
                    (x as i16).to_le_bytes()
                } else {
                    (x as u16).to_le_bytes()
                };
                out.extend_from_slice(&b);
            }
        } else {
            let (s, b) = (self.slope, self.intercept);
            let (lo, hi) = self.range();
            for &x in vals {
                let q = if x.is_finite() {
                    let q = ((x - b) / s).round().clamp(lo, hi);
                    err = err.max((q * s + b - x).abs());
                    q
                } else {
                    self.nonfinite_stored
                };
                let bytes = if self.signed {
                    (q as i16).to_le_bytes()
                } else {
                    (q as u16).to_le_bytes()
                };
                out.extend_from_slice(&bytes);
            }
        }
        err
    }
}

/// Tags `extra_tags` may not touch.
fn protected(tag: Tag) -> bool {
    tag.group() == 0x0002
        || tag.group() == 0x0028
        || tag.group() == 0x7FE0
        || tag.group() == 0xFFFE
        || [
            tags::SPECIFIC_CHARACTER_SET,
            tags::SOP_CLASS_UID,
            tags::SOP_INSTANCE_UID,
            tags::FRAME_OF_REFERENCE_UID,
            tags::IMAGE_POSITION_PATIENT,
            tags::IMAGE_ORIENTATION_PATIENT,
            tags::INSTANCE_NUMBER,
            tags::SLICE_THICKNESS,
            tags::SPACING_BETWEEN_SLICES,
            tags::SLICE_LOCATION,
            tags::NUMBER_OF_FRAMES,
        ]
        .contains(&tag)
}

/// Build the element for an extra tag, with the dictionary's VR.
pub(crate) fn extra_element(
    tag: Tag,
    value: &str,
) -> Result<DataElement<InMemDicomObject>, ConvertError> {
    let bad = |reason: String| ConvertError::BadTag { tag, reason };
    if protected(tag) {
        return Err(bad(
            "set by the converter (pixel data, geometry, SOP or file meta attribute)".into(),
        ));
    }
    if tag.group() % 2 == 1 {
        return Err(bad("private tags are not supported".into()));
    }
    let entry = StandardDataDictionary.by_tag(tag).ok_or_else(|| {
        bad("not in the DICOM standard dictionary (private tags are not supported)".into())
    })?;
    let vr = match entry.vr() {
        VirtualVr::Exact(vr) => vr,
        VirtualVr::Xs => VR::US,
        _ => return Err(bad("binary attribute: cannot be set from text".into())),
    };
    let value = value.trim_end_matches('\0');
    if value.is_empty() {
        return Ok(DataElement::new(tag, vr, PrimitiveValue::Empty));
    }
    let parts: Vec<&str> = value.split('\\').map(str::trim).collect();
    macro_rules! nums {
        ($t:ty, $var:ident) => {{
            let v: Result<Vec<$t>, _> = parts.iter().map(|p| p.parse::<$t>()).collect();
            let v = v.map_err(|_| bad(format!("{value:?} is not a valid {vr:?} value")))?;
            PrimitiveValue::$var(v.into_iter().collect())
        }};
    }
    let pv = match vr {
        VR::US => nums!(u16, U16),
        VR::SS => nums!(i16, I16),
        VR::UL => nums!(u32, U32),
        VR::SL => nums!(i32, I32),
        VR::UV => nums!(u64, U64),
        VR::SV => nums!(i64, I64),
        VR::FL => nums!(f32, F32),
        VR::FD => nums!(f64, F64),
        VR::DS => {
            if parts
                .iter()
                .any(|p| p.parse::<f64>().map(|x| !x.is_finite()).unwrap_or(true) || p.len() > 16)
            {
                return Err(bad(format!("{value:?} is not a valid DS value")));
            }
            PrimitiveValue::from(value)
        }
        VR::IS => {
            if parts
                .iter()
                .any(|p| p.parse::<i64>().is_err() || p.len() > 12)
            {
                return Err(bad(format!("{value:?} is not a valid IS value")));
            }
            PrimitiveValue::from(value)
        }
        VR::UI => {
            if !parts.iter().all(|p| is_valid_uid(p)) {
                return Err(bad(format!("{value:?} is not a valid UID")));
            }
            PrimitiveValue::from(value)
        }
        VR::AE
        | VR::AS
        | VR::CS
        | VR::DA
        | VR::DT
        | VR::TM
        | VR::LO
        | VR::LT
        | VR::PN
        | VR::SH
        | VR::ST
        | VR::UC
        | VR::UR
        | VR::UT => PrimitiveValue::from(value),
        other => return Err(bad(format!("VR {other:?} cannot be set from text"))),
    };
    Ok(DataElement::new(tag, vr, pv))
}

/// Convert a volume into one DICOM instance per slice.
pub fn volume_to_series(v: &Volume, opts: &SeriesOptions) -> Result<ConvertedSeries, ConvertError> {
    let [nx, ny, nz] = v.dims;
    if nx == 0 || ny == 0 || nz == 0 || v.data.len() != nx * ny * nz {
        return Err(ConvertError::InvalidArgument(format!(
            "volume dims {:?} do not match its {} voxels",
            v.dims,
            v.data.len()
        )));
    }
    if nx > 65535 || ny > 65535 {
        return Err(ConvertError::Unsupported(format!(
            "slice of {nx} × {ny}: DICOM Rows/Columns are limited to 65535"
        )));
    }
    let geo = Geometry::of(v)?;

    // extra tags first: they may change modality and UIDs
    let mut extras: BTreeMap<Tag, DataElement<InMemDicomObject>> = BTreeMap::new();
    for (tag, value) in &opts.extra_tags {
        extras.insert(*tag, extra_element(*tag, value)?);
    }
    let extra_str = |t: Tag| -> Option<String> {
        extras
            .get(&t)
            .and_then(|e| e.value().to_str().ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let modality = extra_str(tags::MODALITY)
        .unwrap_or_else(|| opts.modality.trim().to_uppercase())
        .to_uppercase();
    if modality.is_empty()
        || modality.len() > 16
        || !modality
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b' ')
    {
        return Err(ConvertError::InvalidArgument(format!(
            "modality {modality:?} is not a valid CS value"
        )));
    }
    let sop_class = match modality.as_str() {
        "CT" => uids::CT_IMAGE_STORAGE,
        "MR" => uids::MR_IMAGE_STORAGE,
        _ => uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    };
    let study_uid = extra_str(tags::STUDY_INSTANCE_UID)
        .unwrap_or_else(|| uid_from(&format!("study\0{}", opts.study_uid_seed)));
    let series_uid = extra_str(tags::SERIES_INSTANCE_UID).unwrap_or_else(|| {
        uid_from(&format!(
            "series\0{}\0{}",
            opts.study_uid_seed, opts.series_uid_seed
        ))
    });
    let for_uid = uid_from(&format!("for\0{series_uid}"));
    let sop_uids: Vec<String> = (0..nz)
        .map(|k| uid_from(&format!("sop\0{series_uid}\0{k}")))
        .collect();
    let patient_id = opts.patient_id.clone().unwrap_or_else(|| {
        format!(
            "RP{}",
            short_id(&format!("patient\0{}", opts.study_uid_seed))
        )
    });
    let patient_name = opts.patient_name.clone().unwrap_or_default();

    let q = plan_quantisation(v);

    // ---- attributes shared by every slice
    let mut base = InMemDicomObject::new_empty();
    // SOP Common
    base.s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    base.s(tags::SOP_CLASS_UID, VR::UI, sop_class);
    // Patient
    if patient_name.is_empty() {
        base.empty(tags::PATIENT_NAME, VR::PN);
    } else {
        base.s(tags::PATIENT_NAME, VR::PN, &patient_name);
    }
    base.s(tags::PATIENT_ID, VR::LO, &patient_id);
    base.empty(tags::PATIENT_BIRTH_DATE, VR::DA);
    base.empty(tags::PATIENT_SEX, VR::CS);
    // General Study
    base.s(tags::STUDY_INSTANCE_UID, VR::UI, &study_uid);
    base.empty(tags::STUDY_DATE, VR::DA);
    base.empty(tags::STUDY_TIME, VR::TM);
    base.empty(tags::REFERRING_PHYSICIAN_NAME, VR::PN);
    base.empty(tags::STUDY_ID, VR::SH);
    base.empty(tags::ACCESSION_NUMBER, VR::SH);
    // General Series
    base.s(tags::MODALITY, VR::CS, &modality);
    base.s(tags::SERIES_INSTANCE_UID, VR::UI, &series_uid);
    base.s(tags::SERIES_NUMBER, VR::IS, &opts.series_number.to_string());
    if !opts.series_description.is_empty() {
        base.s(tags::SERIES_DESCRIPTION, VR::LO, &opts.series_description);
    }
    base.empty(tags::LATERALITY, VR::CS);
    if sop_class != uids::SECONDARY_CAPTURE_IMAGE_STORAGE {
        base.empty(tags::PATIENT_POSITION, VR::CS);
    }
    // Frame of Reference
    base.s(tags::FRAME_OF_REFERENCE_UID, VR::UI, &for_uid);
    base.empty(tags::POSITION_REFERENCE_INDICATOR, VR::LO);
    // General Equipment
    base.s(tags::MANUFACTURER, VR::LO, MANUFACTURER);
    base.s(tags::MANUFACTURER_MODEL_NAME, VR::LO, MODEL);
    base.s(tags::SOFTWARE_VERSIONS, VR::LO, SOFTWARE_VERSION);
    // General Image
    base.s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY");
    base.empty(tags::PATIENT_ORIENTATION, VR::CS);
    base.s(
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        "Converted from NIfTI by radport-convert",
    );
    // Image Plane
    base.s(tags::PIXEL_SPACING, VR::DS, &geo.pixel_spacing());
    base.s(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, &geo.iop());
    base.s(tags::SLICE_THICKNESS, VR::DS, &ds(geo.slice_spacing));
    base.s(tags::SPACING_BETWEEN_SLICES, VR::DS, &ds(geo.slice_spacing));
    // Image Pixel
    base.us(tags::SAMPLES_PER_PIXEL, &[1]);
    base.s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
    base.us(tags::ROWS, &[ny as u16]);
    base.us(tags::COLUMNS, &[nx as u16]);
    base.us(tags::BITS_ALLOCATED, &[16]);
    base.us(tags::BITS_STORED, &[16]);
    base.us(tags::HIGH_BIT, &[15]);
    base.us(tags::PIXEL_REPRESENTATION, &[q.signed as u16]);
    // Modality-specific
    base.s(tags::RESCALE_INTERCEPT, VR::DS, &q.intercept_s);
    base.s(tags::RESCALE_SLOPE, VR::DS, &q.slope_s);
    match modality.as_str() {
        "CT" => {
            base.s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY\\AXIAL");
            base.empty(tags::KVP, VR::DS);
            base.empty(tags::ACQUISITION_NUMBER, VR::IS);
            base.s(tags::RESCALE_TYPE, VR::LO, "HU");
        }
        "MR" => {
            base.s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY\\OTHER");
            base.s(tags::SCANNING_SEQUENCE, VR::CS, "RM");
            base.s(tags::SEQUENCE_VARIANT, VR::CS, "NONE");
            base.empty(tags::SCAN_OPTIONS, VR::CS);
            base.empty(tags::MR_ACQUISITION_TYPE, VR::CS);
            base.empty(tags::REPETITION_TIME, VR::DS);
            base.empty(tags::ECHO_TIME, VR::DS);
            base.empty(tags::ECHO_TRAIN_LENGTH, VR::IS);
        }
        _ => {
            // SC Equipment + Modality LUT
            base.s(tags::CONVERSION_TYPE, VR::CS, "WSD");
            base.s(tags::RESCALE_TYPE, VR::LO, "US");
        }
    }
    // VOI LUT: a window over the whole range, so viewers show float maps sensibly
    let (wmin, wmax) = (q.min, q.max);
    base.s(tags::WINDOW_CENTER, VR::DS, &ds((wmin + wmax) / 2.0));
    base.s(tags::WINDOW_WIDTH, VR::DS, &ds((wmax - wmin).max(1.0)));
    for (_, e) in extras {
        base.put(e);
    }

    // ---- per slice
    let mut files = Vec::with_capacity(nz);
    let mut vals = Vec::with_capacity(nx * ny);
    let mut pix = Vec::with_capacity(nx * ny * 2);
    let mut max_err = 0.0f64;
    for (k, sop_uid) in sop_uids.iter().enumerate() {
        v.slice_values(k, &mut vals);
        max_err = max_err.max(q.encode(&vals, &mut pix));
        let mut o = base.clone();
        o.s(tags::SOP_INSTANCE_UID, VR::UI, sop_uid);
        o.s(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string());
        let p = geo.position(k);
        o.s(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            &crate::dicom_util::ds_multi(&p),
        );
        o.s(tags::SLICE_LOCATION, VR::DS, &ds(geo.slice_location(k)));
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U8(std::mem::take(&mut pix).into()),
        ));
        files.push(to_part10(o, nx * ny * 2)?);
        pix = Vec::with_capacity(nx * ny * 2);
    }

    let mut notes = Vec::new();
    // DS strings carry ~11 significant digits: below this the values are exact for every practical purpose
    let noise = 1e-9 * q.min.abs().max(q.max.abs()).max(1.0);
    if max_err > noise {
        notes.push(format!(
            "{}{} data (range {} .. {}) stored as {} with Rescale Slope {} and Intercept {}: max abs error {}",
            v.data.type_name(),
            if v.is_scaled() { " with scl_slope/scl_inter" } else { "" },
            ds(q.min),
            ds(q.max),
            if q.signed { "int16" } else { "uint16" },
            q.slope_s,
            q.intercept_s,
            ds(max_err)
        ));
    }
    if q.nonfinite > 0 {
        notes.push(format!(
            "{} NaN/Inf voxel(s) stored as {}",
            q.nonfinite,
            ds(q.nonfinite_stored * q.slope + q.intercept)
        ));
    }
    Ok(ConvertedSeries {
        files,
        series_uid,
        study_uid,
        sop_instance_uids: sop_uids,
        sop_class_uid: sop_class.to_string(),
        frame_of_reference_uid: for_uid,
        precision_note: if notes.is_empty() {
            None
        } else {
            Some(notes.join("; "))
        },
        rescale_slope: q.slope,
        rescale_intercept: q.intercept,
        max_abs_error: max_err,
    })
}
