//! Test data for radport's tests and benchmarks: synthetic but realistic DICOM series written
//! with dicom-rs (uncompressed, Explicit VR Little Endian). Compressed variants are made from
//! these with DCMTK's own tools in the tests. Not part of the product.

#![warn(missing_docs)]

pub mod nifti;
pub mod postgres;
pub mod python;
pub mod seg;
pub mod strace;
pub mod zip;

use std::path::{Path, PathBuf};

pub use seg::{seg_series_uid, seg_sop_uid, write_seg, SegSpec};

use anyhow::{Context, Result};
use dicom_core::{dicom_value, DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

/// Shape and identity of a synthetic series.
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    /// Number of slices (one file each).
    pub count: usize,
    /// Rows of each slice.
    pub rows: u16,
    /// Columns of each slice.
    pub columns: u16,
    /// Patient ID.
    pub patient_id: String,
    /// Patient Name (encoded in `charset`).
    pub patient_name: String,
    /// Specific Character Set (0008,0005), if any.
    pub charset: Option<String>,
    /// Modality.
    pub modality: String,
    /// Series Description.
    pub series_description: String,
    /// Study Date (YYYYMMDD).
    pub study_date: String,
    /// Distinguishes the UIDs of one generated series from another's.
    pub uid_seed: String,
}

impl Default for SeriesSpec {
    fn default() -> Self {
        Self {
            count: 10,
            rows: 64,
            columns: 64,
            patient_id: "PAT-0001".into(),
            patient_name: "Test^Patient".into(),
            charset: None,
            modality: "CT".into(),
            series_description: "Synthetic CT".into(),
            study_date: "20240102".into(),
            uid_seed: "1".into(),
        }
    }
}

/// Root of every UID the testkit makes (a 2.25 UUID-derived root).
pub const UID_ROOT: &str = "2.25.1234567890123456789";

/// Study Instance UID of a spec.
pub fn study_uid(spec: &SeriesSpec) -> String {
    format!("{UID_ROOT}.{}.1", digits(&spec.uid_seed))
}

/// Series Instance UID of a spec.
pub fn series_uid(spec: &SeriesSpec) -> String {
    format!("{UID_ROOT}.{}.2", digits(&spec.uid_seed))
}

/// SOP Instance UID of slice `index` of a spec.
pub fn sop_uid(spec: &SeriesSpec, index: usize) -> String {
    format!("{UID_ROOT}.{}.3.{}", digits(&spec.uid_seed), index + 1)
}

fn digits(seed: &str) -> String {
    // UID components are digits without leading zeros.
    let d: String = seed
        .bytes()
        .map(|b| (b % 10).to_string())
        .collect::<String>();
    format!("9{d}")
}

fn text(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

/// Builds slice `index` of a series as an in-memory data set (without file meta).
pub fn ct_slice(spec: &SeriesSpec, index: usize) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    if let Some(cs) = &spec.charset {
        text(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, cs);
    }
    text(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::CT_IMAGE_STORAGE,
    );
    text(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        &sop_uid(spec, index),
    );
    text(
        &mut obj,
        tags::IMAGE_TYPE,
        VR::CS,
        "ORIGINAL\\PRIMARY\\AXIAL",
    );
    text(&mut obj, tags::STUDY_DATE, VR::DA, &spec.study_date);
    text(&mut obj, tags::STUDY_TIME, VR::TM, "101500");
    text(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "ACC0001");
    text(&mut obj, tags::MODALITY, VR::CS, &spec.modality);
    text(&mut obj, tags::MANUFACTURER, VR::LO, "radport-testkit");
    text(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    text(&mut obj, tags::STUDY_DESCRIPTION, VR::LO, "Synthetic study");
    text(
        &mut obj,
        tags::SERIES_DESCRIPTION,
        VR::LO,
        &spec.series_description,
    );
    text(&mut obj, tags::PATIENT_NAME, VR::PN, &spec.patient_name);
    text(&mut obj, tags::PATIENT_ID, VR::LO, &spec.patient_id);
    text(&mut obj, tags::PATIENT_BIRTH_DATE, VR::DA, "19700101");
    text(&mut obj, tags::PATIENT_SEX, VR::CS, "O");
    text(&mut obj, tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    text(&mut obj, tags::SLICE_THICKNESS, VR::DS, "1.0");
    text(&mut obj, tags::KVP, VR::DS, "120");
    text(&mut obj, tags::PATIENT_POSITION, VR::CS, "HFS");
    text(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, &study_uid(spec));
    text(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &series_uid(spec),
    );
    text(&mut obj, tags::STUDY_ID, VR::SH, "1");
    text(&mut obj, tags::SERIES_NUMBER, VR::IS, "1");
    text(
        &mut obj,
        tags::INSTANCE_NUMBER,
        VR::IS,
        &(index + 1).to_string(),
    );
    let z = index as f64;
    text(
        &mut obj,
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        &format!("-100\\-100\\{z:.1}"),
    );
    text(
        &mut obj,
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        "1\\0\\0\\0\\1\\0",
    );
    text(
        &mut obj,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &format!("{}.4", study_uid(spec)),
    );
    text(&mut obj, tags::POSITION_REFERENCE_INDICATOR, VR::LO, "");
    text(&mut obj, tags::SAMPLES_PER_PIXEL, VR::US, "1");
    obj.put(DataElement::new(
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        dicom_value!(U16, [1]),
    ));
    text(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        dicom_value!(U16, [spec.rows]),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        dicom_value!(U16, [spec.columns]),
    ));
    text(&mut obj, tags::PIXEL_SPACING, VR::DS, "0.7\\0.7");
    obj.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        dicom_value!(U16, [16]),
    ));
    obj.put(DataElement::new(
        tags::BITS_STORED,
        VR::US,
        dicom_value!(U16, [12]),
    ));
    obj.put(DataElement::new(
        tags::HIGH_BIT,
        VR::US,
        dicom_value!(U16, [11]),
    ));
    obj.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        dicom_value!(U16, [0]),
    ));
    text(&mut obj, tags::RESCALE_INTERCEPT, VR::DS, "-1024");
    text(&mut obj, tags::RESCALE_SLOPE, VR::DS, "1");
    text(&mut obj, tags::WINDOW_CENTER, VR::DS, "40");
    text(&mut obj, tags::WINDOW_WIDTH, VR::DS, "400");
    // A disc whose radius changes along the series, on a noisy background.
    let (rows, cols) = (spec.rows as usize, spec.columns as usize);
    let mut pixels = Vec::with_capacity(rows * cols);
    let radius = (rows.min(cols) as f64) * (0.2 + 0.2 * ((index % 10) as f64 / 10.0));
    let mut noise: u32 = 0x9E37_79B9 ^ (index as u32);
    for r in 0..rows {
        for c in 0..cols {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let dr = r as f64 - rows as f64 / 2.0;
            let dc = c as f64 - cols as f64 / 2.0;
            let base: u16 = if (dr * dr + dc * dc).sqrt() < radius {
                1100
            } else {
                24
            };
            pixels.push(base + (noise % 40) as u16);
        }
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    obj
}

/// Writes a series as Part-10 files `DIR/slice_NNNN.dcm` and returns their paths.
pub fn write_series(dir: &Path, spec: &SeriesSpec) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut paths = Vec::with_capacity(spec.count);
    for index in 0..spec.count {
        let obj = ct_slice(spec, index);
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
            .media_storage_sop_instance_uid(sop_uid(spec, index))
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .implementation_class_uid(format!("{UID_ROOT}.1"))
            .build()?;
        let file = obj.with_exact_meta(meta);
        let path = dir.join(format!("slice_{:04}.dcm", index + 1));
        file.write_to_file(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// SOP Instance UID of the instance [`write_multi_frame`] writes for `spec`.
pub fn multi_frame_sop_uid(spec: &SeriesSpec) -> String {
    format!("{UID_ROOT}.{}.9", digits(&spec.uid_seed))
}

/// Writes the series as one instance whose frames are its slices (`DIR/frames.dcm`, Number of
/// Frames = `spec.count`, the first slice's attributes) and returns its path.
pub fn write_multi_frame(dir: &Path, spec: &SeriesSpec) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut obj = ct_slice(spec, 0);
    let mut pixels = Vec::new();
    for index in 0..spec.count {
        let slice = ct_slice(spec, index);
        let bytes = slice
            .element(tags::PIXEL_DATA)
            .context("a slice without pixel data")?
            .to_bytes()
            .context("pixel data as bytes")?;
        pixels.extend_from_slice(&bytes);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(pixels.into()),
    ));
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from(spec.count.to_string()),
    ));
    let sop = multi_frame_sop_uid(spec);
    obj.put(DataElement::new(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(sop.as_str()),
    ));
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(uids::CT_IMAGE_STORAGE)
        .media_storage_sop_instance_uid(sop.as_str())
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .implementation_class_uid(format!("{UID_ROOT}.1"))
        .build()?;
    let path = dir.join("frames.dcm");
    obj.with_exact_meta(meta)
        .write_to_file(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
