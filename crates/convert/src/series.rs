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
    /// CT → CT Image Storage, MR → MR Image Storage, PT → PET Image Storage, anything else (OT, NM, …) and every
    /// colour volume → Secondary Capture Image Storage with this Modality value. A Modality (0008,0060) in
    /// `extra_tags` wins over this field.
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
    /// Series Description (0008,103E).
    pub series_description: String,
    /// Series Number (0020,0011).
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
    /// Series Instance UID.
    pub series_uid: String,
    /// Study Instance UID.
    pub study_uid: String,
    /// `sop_instance_uids[k]` is the instance of slice k.
    pub sop_instance_uids: Vec<String>,
    /// SOP Class UID of its instances.
    pub sop_class_uid: String,
    /// Frame of Reference UID.
    pub frame_of_reference_uid: String,
    /// Set when the stored values differ from the NIfTI values (rescale quantisation, non-finite voxels).
    pub precision_note: Option<String>,
    /// Rescale Slope / Intercept written (1 / 0 when stored as is).
    pub rescale_slope: f64,
    /// Rescale Intercept (0028,1052) written.
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
    /// Integral values stored as they are (slope 1, intercept 0, no rounding needed).
    pub as_is: bool,
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
            as_is: false,
        };
        q.nonfinite_stored = q.store(0.0);
        q
    }

    fn stored_as_is(mut self) -> Self {
        self.as_is = true;
        self
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

/// Plan how `v` is stored. `zero_intercept`: Rescale Intercept must be 0 (PET Image, PS3.3 C.8.9.4.1.2), so data
/// that need an offset are stored with a slope only (uint16 when nothing is negative, else int16).
pub(crate) fn plan_quantisation(v: &Volume, zero_intercept: bool) -> Quant {
    let scans = par_slices(v, |slices| {
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut integral = true;
        let mut nonfinite = 0u64;
        let mut buf = Vec::new();
        for k in slices {
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
        (min, max, integral, nonfinite)
    });
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    let mut integral = true;
    let mut nonfinite = 0u64;
    for (lo, hi, int, nf) in scans {
        min = min.min(lo);
        max = max.max(hi);
        integral &= int;
        nonfinite += nf;
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
            return Quant::new(false, 1.0, 0.0, min, max, nonfinite).stored_as_is();
        }
        if min >= -32768.0 && max <= 32767.0 {
            return Quant::new(true, 1.0, 0.0, min, max, nonfinite).stored_as_is();
        }
        if !zero_intercept && max - min <= 65535.0 && ds_value(min).1 == min {
            return Quant::new(false, 1.0, min, min, max, nonfinite);
        }
    }
    // Integer voxels with scl_slope/scl_inter whose raw values fit 16 bits: keep the raw values and the scaling.
    // Without an intercept: stored = raw + scl_inter / scl_slope, exact when that offset is an integer.
    if v.data.is_integer() && v.is_scaled() && small && zero_intercept {
        let s = v.scl_slope;
        let offset = v.scl_inter / s;
        if offset.fract() == 0.0 && ds_value(s).1 == s {
            let (r0, r1) = (min / s, max / s);
            let (rmin, rmax) = (r0.min(r1).round(), r0.max(r1).round());
            if rmin >= 0.0 && rmax <= 65535.0 {
                return Quant::new(false, s, 0.0, min, max, nonfinite);
            }
            if rmin >= -32768.0 && rmax <= 32767.0 {
                return Quant::new(true, s, 0.0, min, max, nonfinite);
            }
        }
    }
    if v.data.is_integer() && v.is_scaled() && small && !zero_intercept {
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
    if zero_intercept {
        // stored = round(value / slope): uint16 over 0..=max, or int16 over -32768..=32767
        let signed = min < 0.0;
        let mut slope = if signed {
            (max / 32767.0).max(-min / 32768.0)
        } else {
            max / 65535.0
        };
        if slope.is_nan() || slope <= 0.0 || !slope.is_finite() {
            slope = 1.0;
        }
        let mut q = Quant::new(signed, slope, 0.0, min, max, nonfinite);
        // make sure min and max stay reachable after the DS rounding of the slope
        let (lo, hi) = q.range();
        for _ in 0..32 {
            if hi * q.slope >= max && lo * q.slope <= min {
                break;
            }
            slope *= 1.0 + 1e-10;
            q = Quant::new(signed, slope, 0.0, min, max, nonfinite);
        }
        return q;
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
        if self.as_is {
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
        || (tag.group() == 0x0028 && tag != tags::CORRECTED_IMAGE)
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
    let n = nx.checked_mul(ny).and_then(|p| p.checked_mul(nz));
    if nx == 0 || ny == 0 || nz == 0 || n != Some(v.data.len()) {
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
    let colour = v.data.is_colour();
    let iod = match modality.as_str() {
        // CT, MR and PET Image require MONOCHROME1/2: colour data go to Secondary Capture, Modality kept
        _ if colour => Iod::Sc,
        "CT" => Iod::Ct,
        "MR" => Iod::Mr,
        "PT" => Iod::Pet,
        _ => Iod::Sc,
    };
    let sop_class = match iod {
        Iod::Ct => uids::CT_IMAGE_STORAGE,
        Iod::Mr => uids::MR_IMAGE_STORAGE,
        Iod::Pet => uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
        Iod::Sc => uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
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

    // None: colour, stored as 8-bit RGB as it is
    let q = (!colour).then(|| plan_quantisation(v, iod == Iod::Pet));

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
    if matches!(iod, Iod::Ct | Iod::Mr) {
        // Type 2C; not allowed with PET's Patient Orientation Code Sequence
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
    base.us(tags::ROWS, &[ny as u16]);
    base.us(tags::COLUMNS, &[nx as u16]);
    match &q {
        Some(q) => {
            base.us(tags::SAMPLES_PER_PIXEL, &[1]);
            base.s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
            base.us(tags::BITS_ALLOCATED, &[16]);
            base.us(tags::BITS_STORED, &[16]);
            base.us(tags::HIGH_BIT, &[15]);
            base.us(tags::PIXEL_REPRESENTATION, &[q.signed as u16]);
            // Modality LUT (CT Image, PET Image, SC; MR: see the crate doc)
            base.s(tags::RESCALE_INTERCEPT, VR::DS, &q.intercept_s);
            base.s(tags::RESCALE_SLOPE, VR::DS, &q.slope_s);
        }
        None => {
            base.us(tags::SAMPLES_PER_PIXEL, &[3]);
            base.s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
            base.us(tags::PLANAR_CONFIGURATION, &[0]);
            base.us(tags::BITS_ALLOCATED, &[8]);
            base.us(tags::BITS_STORED, &[8]);
            base.us(tags::HIGH_BIT, &[7]);
            base.us(tags::PIXEL_REPRESENTATION, &[0]);
        }
    }
    // Modality-specific
    match iod {
        Iod::Ct => {
            base.s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY\\AXIAL");
            base.empty(tags::KVP, VR::DS);
            base.empty(tags::ACQUISITION_NUMBER, VR::IS);
            base.s(tags::RESCALE_TYPE, VR::LO, "HU");
        }
        Iod::Mr => {
            base.s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY\\OTHER");
            base.s(tags::SCANNING_SEQUENCE, VR::CS, "RM");
            base.s(tags::SEQUENCE_VARIANT, VR::CS, "NONE");
            base.empty(tags::SCAN_OPTIONS, VR::CS);
            base.empty(tags::MR_ACQUISITION_TYPE, VR::CS);
            base.empty(tags::REPETITION_TIME, VR::DS);
            base.empty(tags::ECHO_TIME, VR::DS);
            base.empty(tags::ECHO_TRAIN_LENGTH, VR::IS);
        }
        Iod::Pet => pet_attributes(&mut base, nz, &extra_str),
        Iod::Sc => {
            // SC Equipment (+ Modality LUT for grey data)
            base.s(tags::CONVERSION_TYPE, VR::CS, "WSD");
            if q.is_some() {
                base.s(tags::RESCALE_TYPE, VR::LO, "US");
            }
        }
    }
    if let Some(q) = &q {
        // VOI LUT: a window over the whole range, so viewers show float maps sensibly
        let (wmin, wmax) = (q.min, q.max);
        base.s(tags::WINDOW_CENTER, VR::DS, &ds((wmin + wmax) / 2.0));
        base.s(tags::WINDOW_WIDTH, VR::DS, &ds((wmax - wmin).max(1.0)));
    }
    for (_, e) in extras {
        base.put(e);
    }

    // ---- per slice, in contiguous runs of slices on the available cores
    let npix = nx * ny;
    let frame_bytes = if colour {
        (npix * 3).next_multiple_of(2)
    } else {
        npix * 2
    };
    let runs = par_slices(v, |slices| -> Result<(Vec<Vec<u8>>, f64), ConvertError> {
        let mut files = Vec::with_capacity(slices.len());
        let mut vals = Vec::with_capacity(if colour { 0 } else { npix });
        let mut max_err = 0.0f64;
        for k in slices {
            let mut pix = Vec::with_capacity(frame_bytes);
            let pixel_vr = match &q {
                Some(q) => {
                    v.slice_values(k, &mut vals);
                    max_err = max_err.max(q.encode(&vals, &mut pix));
                    VR::OW
                }
                None => {
                    encode_rgb(&v.data, k * npix..(k + 1) * npix, &mut pix);
                    VR::OB
                }
            };
            let mut o = base.clone();
            o.s(tags::SOP_INSTANCE_UID, VR::UI, &sop_uids[k]);
            o.s(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string());
            if iod == Iod::Pet {
                // PET Image: the slice's index within the (STATIC) series
                o.us(tags::IMAGE_INDEX, &[(k + 1).min(65535) as u16]);
            }
            let p = geo.position(k);
            o.s(
                tags::IMAGE_POSITION_PATIENT,
                VR::DS,
                &crate::dicom_util::ds_multi(&p),
            );
            o.s(tags::SLICE_LOCATION, VR::DS, &ds(geo.slice_location(k)));
            o.put(DataElement::new(
                tags::PIXEL_DATA,
                pixel_vr,
                PrimitiveValue::U8(pix.into()),
            ));
            files.push(to_part10(o, frame_bytes)?);
        }
        Ok((files, max_err))
    });
    let mut files = Vec::with_capacity(nz);
    let mut max_err = 0.0f64;
    for run in runs {
        let (f, e) = run?;
        files.extend(f);
        max_err = max_err.max(e);
    }

    let mut notes = Vec::new();
    let (slope, intercept) = q.as_ref().map_or((1.0, 0.0), |q| (q.slope, q.intercept));
    if let Some(q) = &q {
        // DS strings carry ~11 significant digits: below this the values are exact for every practical purpose
        let noise = 1e-9 * q.min.abs().max(q.max.abs()).max(1.0);
        if max_err > noise {
            notes.push(format!(
                "{}{} data (range {} .. {}) stored as {} with Rescale Slope {} and Intercept {}{}: max abs error {}",
                v.data.type_name(),
                if v.is_scaled() { " with scl_slope/scl_inter" } else { "" },
                ds(q.min),
                ds(q.max),
                if q.signed { "int16" } else { "uint16" },
                q.slope_s,
                q.intercept_s,
                if iod == Iod::Pet { " (PET: intercept must be 0)" } else { "" },
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
    }
    if let crate::VoxelData::Rgba32(d) = &v.data {
        let translucent = d.iter().filter(|p| p[3] != 255).count();
        notes.push(format!(
            "rgba32 data: alpha channel dropped (DICOM RGB has no alpha); {translucent} of {} voxel(s) were not opaque",
            d.len()
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
        rescale_slope: slope,
        rescale_intercept: intercept,
        max_abs_error: max_err,
    })
}

/// Run `f` over contiguous runs of the volume's slices, one run per available core (one run for small volumes),
/// and return the results in slice order.
fn par_slices<R: Send>(v: &Volume, f: impl Fn(std::ops::Range<usize>) -> R + Sync) -> Vec<R> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if v.voxel_count() < (1 << 20) {
        1
    } else {
        cores.clamp(1, 8)
    };
    par_runs(v.dims[2], threads, f)
}

/// `f` over `0..n` split into at most `threads` contiguous runs, each on a thread of its own; results in order.
fn par_runs<R: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(std::ops::Range<usize>) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(n);
    if threads <= 1 {
        return vec![f(0..n)];
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|start| scope.spawn(move || f(start..(start + per).min(n))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// The image IOD a series is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Iod {
    Ct,
    Mr,
    Pet,
    Sc,
}

/// Interleaved 8-bit RGB (Planar Configuration 0) of voxels `range` of colour data, padded to an even length.
fn encode_rgb(data: &crate::VoxelData, range: std::ops::Range<usize>, out: &mut Vec<u8>) {
    out.clear();
    match data {
        crate::VoxelData::Rgb24(d) => out.extend(d[range].iter().flatten()),
        crate::VoxelData::Rgba32(d) => out.extend(d[range].iter().flat_map(|p| &p[..3])),
        _ => unreachable!("encode_rgb is only called for colour data"),
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
}

/// PET Series, PET Isotope, NM/PET Patient Orientation and PET Image (PS3.3 A.21) attributes shared by every
/// slice; everything here may be overridden through `extra_tags` (e.g. Units "BQML", Decay Correction "START"
/// with a Decay Factor, Series Date/Time).
fn pet_attributes(base: &mut InMemDicomObject, nz: usize, extra: &dyn Fn(Tag) -> Option<String>) {
    // PET Series: Series Date/Time are Type 1 — the given ones, else the study's, else the conversion's
    let now = chrono::Local::now();
    let date = extra(tags::SERIES_DATE)
        .or_else(|| extra(tags::STUDY_DATE))
        .unwrap_or_else(|| now.format("%Y%m%d").to_string());
    let time = extra(tags::SERIES_TIME)
        .or_else(|| extra(tags::STUDY_TIME))
        .unwrap_or_else(|| now.format("%H%M%S").to_string());
    base.s(tags::SERIES_DATE, VR::DA, &date);
    base.s(tags::SERIES_TIME, VR::TM, &time);
    base.s(tags::UNITS, VR::CS, "CNTS");
    base.s(tags::COUNTS_SOURCE, VR::CS, "EMISSION");
    base.s(tags::SERIES_TYPE, VR::CS, "STATIC\\IMAGE");
    base.us(tags::NUMBER_OF_SLICES, &[nz.min(65535) as u16]);
    base.empty(tags::CORRECTED_IMAGE, VR::CS);
    base.s(tags::DECAY_CORRECTION, VR::CS, "NONE");
    base.empty(tags::COLLIMATOR_TYPE, VR::CS);
    // PET Isotope (Type 2: present, empty)
    base.seq(tags::RADIOPHARMACEUTICAL_INFORMATION_SEQUENCE, Vec::new());
    // NM/PET Patient Orientation (Type 2 sequences)
    base.seq(tags::PATIENT_ORIENTATION_CODE_SEQUENCE, Vec::new());
    base.seq(tags::PATIENT_GANTRY_RELATIONSHIP_CODE_SEQUENCE, Vec::new());
    // PET Image (Image Index is per slice)
    // Image Type: Value 2 shall be PRIMARY for PET (C.8.9.4.1.1), derived or not
    base.s(tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY");
    base.s(tags::FRAME_REFERENCE_TIME, VR::DS, "0");
    base.empty(tags::ACQUISITION_DATE, VR::DA);
    base.empty(tags::ACQUISITION_TIME, VR::TM);
    base.empty(tags::ACTUAL_FRAME_DURATION, VR::IS);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_everything_in_order() {
        for n in [0, 1, 2, 7, 300] {
            for threads in [1, 2, 3, 8, 400] {
                let runs = par_runs(n, threads, |r| r.collect::<Vec<_>>());
                assert!(runs.len() <= threads.max(1));
                let all: Vec<usize> = runs.into_iter().flatten().collect();
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "n {n} threads {threads}");
            }
        }
    }

    #[test]
    fn parallel_conversion_is_in_slice_order() {
        // 1 << 20 voxels: converted on every available core
        let (nx, ny, nz) = (128, 128, 64);
        let data: Vec<f32> = (0..nx * ny * nz)
            .map(|n| (n as f32).sqrt() - 300.5)
            .collect();
        let aff = [
            [0.5, 0.0, 0.0, 1.0],
            [0.0, 0.5, 0.0, 2.0],
            [0.0, 0.0, 2.0, 3.0],
        ];
        let v = Volume::new([nx, ny, nz], crate::VoxelData::F32(data.clone()), aff).unwrap();
        let s = volume_to_series(&v, &SeriesOptions::new("CT", "a", "b")).unwrap();
        let q = plan_quantisation(&v, false);
        let (min, max) = data.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| {
            (a.min(x as f64), b.max(x as f64))
        });
        assert_eq!((q.min, q.max), (min, max));
        assert_eq!(s.files.len(), nz);
        for (k, f) in s.files.iter().enumerate() {
            let o = dicom_object::from_reader(&f[128..]).unwrap();
            let num: usize = o.element(tags::INSTANCE_NUMBER).unwrap().to_int().unwrap();
            assert_eq!(num, k + 1);
            let px = o.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
            let first =
                u16::from_le_bytes([px[0], px[1]]) as f64 * s.rescale_slope + s.rescale_intercept;
            assert!((first - data[k * nx * ny] as f64).abs() <= s.max_abs_error * 1.0001 + 1e-9);
        }
    }
}
