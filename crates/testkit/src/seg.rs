//! Segmentations (SEG) of the testkit's series, written with dicom-rs: small, BINARY, one
//! segment, for the end-to-end tests of what the server does with them (highdicom's own
//! fixtures, `crates/pipeline/tests/fixtures/make_seg.py`, test the drawing itself).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dicom_core::value::DataSetSequence;
use dicom_core::{dicom_value, DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;

use crate::{digits, series_uid, sop_uid, study_uid, SeriesSpec, UID_ROOT};

/// A segmentation of a testkit series: one BINARY frame per listed slice, each a square.
#[derive(Debug, Clone)]
pub struct SegSpec {
    /// The series segmented (its geometry, UIDs and patient); it need not be stored anywhere.
    pub source: SeriesSpec,
    /// The slices (0-based indices into `source`) that get a frame, in frame order.
    pub slices: Vec<usize>,
    /// Number of Frames as written, when not `slices.len()`: a larger number claims frames
    /// whose pixel data is not there.
    pub claimed_frames: Option<u32>,
    /// Distinguishes the UIDs of this segmentation from another's.
    pub uid_seed: String,
}

/// Series Instance UID of a segmentation.
pub fn seg_series_uid(spec: &SegSpec) -> String {
    format!("{UID_ROOT}.{}.7", digits(&spec.uid_seed))
}

/// SOP Instance UID of a segmentation.
pub fn seg_sop_uid(spec: &SegSpec) -> String {
    format!("{UID_ROOT}.{}.8", digits(&spec.uid_seed))
}

/// The square of frame `k`: rows and columns `[start, end)`, moving right with `k`.
pub fn seg_square(spec: &SegSpec, k: usize) -> ((usize, usize), (usize, usize)) {
    let (rows, cols) = (
        usize::from(spec.source.rows),
        usize::from(spec.source.columns),
    );
    let side = (rows.min(cols) / 4).max(1);
    let r0 = rows / 8;
    let c0 = (cols / 8 + k * side / 2).min(cols - side);
    ((r0, r0 + side), (c0, c0 + side))
}

fn text(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

fn sequence(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

fn item(build: impl FnOnce(&mut InMemDicomObject)) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    build(&mut obj);
    obj
}

/// Builds the segmentation as an in-memory data set (without file meta).
pub fn seg_object(spec: &SegSpec) -> InMemDicomObject {
    let source = &spec.source;
    let (rows, cols) = (usize::from(source.rows), usize::from(source.columns));
    let mut obj = InMemDicomObject::new_empty();
    text(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::SEGMENTATION_STORAGE,
    );
    text(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, &seg_sop_uid(spec));
    text(
        &mut obj,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &study_uid(source),
    );
    text(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &seg_series_uid(spec),
    );
    text(&mut obj, tags::MODALITY, VR::CS, "SEG");
    text(&mut obj, tags::PATIENT_NAME, VR::PN, &source.patient_name);
    text(&mut obj, tags::PATIENT_ID, VR::LO, &source.patient_id);
    text(&mut obj, tags::PATIENT_BIRTH_DATE, VR::DA, "19700101");
    text(&mut obj, tags::PATIENT_SEX, VR::CS, "O");
    text(&mut obj, tags::STUDY_DATE, VR::DA, &source.study_date);
    text(&mut obj, tags::STUDY_TIME, VR::TM, "101500");
    text(&mut obj, tags::ACCESSION_NUMBER, VR::SH, "ACC0001");
    text(&mut obj, tags::REFERRING_PHYSICIAN_NAME, VR::PN, "");
    text(&mut obj, tags::STUDY_ID, VR::SH, "1");
    text(&mut obj, tags::SERIES_NUMBER, VR::IS, "2");
    text(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
    text(&mut obj, tags::SERIES_DESCRIPTION, VR::LO, "Synthetic SEG");
    text(&mut obj, tags::MANUFACTURER, VR::LO, "radport-testkit");
    text(
        &mut obj,
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        &format!("{}.4", study_uid(source)),
    );
    text(&mut obj, tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY");
    text(&mut obj, tags::CONTENT_LABEL, VR::CS, "SQUARE");
    text(&mut obj, tags::SEGMENTATION_TYPE, VR::CS, "BINARY");
    text(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    for (tag, value) in [
        (tags::SAMPLES_PER_PIXEL, 1u16),
        (tags::ROWS, source.rows),
        (tags::COLUMNS, source.columns),
        (tags::BITS_ALLOCATED, 1),
        (tags::BITS_STORED, 1),
        (tags::HIGH_BIT, 0),
        (tags::PIXEL_REPRESENTATION, 0),
    ] {
        obj.put(DataElement::new(tag, VR::US, dicom_value!(U16, [value])));
    }
    let frames = spec
        .claimed_frames
        .unwrap_or(spec.slices.len() as u32)
        .max(1);
    text(
        &mut obj,
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        &frames.to_string(),
    );
    sequence(
        &mut obj,
        tags::SEGMENT_SEQUENCE,
        vec![item(|s| {
            s.put(DataElement::new(
                tags::SEGMENT_NUMBER,
                VR::US,
                dicom_value!(U16, [1]),
            ));
            text(s, tags::SEGMENT_LABEL, VR::LO, "Square");
            text(s, tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "MANUAL");
        })],
    );
    sequence(
        &mut obj,
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![item(|s| {
            text(s, tags::SERIES_INSTANCE_UID, VR::UI, &series_uid(source));
            let instances = spec
                .slices
                .iter()
                .map(|k| {
                    item(|i| {
                        text(
                            i,
                            tags::REFERENCED_SOP_CLASS_UID,
                            VR::UI,
                            uids::CT_IMAGE_STORAGE,
                        );
                        text(
                            i,
                            tags::REFERENCED_SOP_INSTANCE_UID,
                            VR::UI,
                            &sop_uid(source, *k),
                        );
                    })
                })
                .collect();
            sequence(s, tags::REFERENCED_INSTANCE_SEQUENCE, instances);
        })],
    );
    sequence(
        &mut obj,
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![item(|g| {
            sequence(
                g,
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![item(|o| {
                    text(
                        o,
                        tags::IMAGE_ORIENTATION_PATIENT,
                        VR::DS,
                        "1\\0\\0\\0\\1\\0",
                    )
                })],
            );
            sequence(
                g,
                tags::PIXEL_MEASURES_SEQUENCE,
                vec![item(|m| {
                    text(m, tags::PIXEL_SPACING, VR::DS, "0.7\\0.7");
                    text(m, tags::SLICE_THICKNESS, VR::DS, "1.0");
                })],
            );
        })],
    );
    let per_frame = spec
        .slices
        .iter()
        .map(|k| {
            item(|g| {
                sequence(
                    g,
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![item(|d| {
                        sequence(
                            d,
                            tags::SOURCE_IMAGE_SEQUENCE,
                            vec![item(|i| {
                                text(
                                    i,
                                    tags::REFERENCED_SOP_CLASS_UID,
                                    VR::UI,
                                    uids::CT_IMAGE_STORAGE,
                                );
                                text(
                                    i,
                                    tags::REFERENCED_SOP_INSTANCE_UID,
                                    VR::UI,
                                    &sop_uid(source, *k),
                                );
                            })],
                        );
                    })],
                );
                sequence(
                    g,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![item(|s| {
                        s.put(DataElement::new(
                            tags::REFERENCED_SEGMENT_NUMBER,
                            VR::US,
                            dicom_value!(U16, [1]),
                        ));
                    })],
                );
                sequence(
                    g,
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![item(|p| {
                        // As `ct_slice` places slice k.
                        text(
                            p,
                            tags::IMAGE_POSITION_PATIENT,
                            VR::DS,
                            &format!("-100\\-100\\{:.1}", *k as f64),
                        );
                    })],
                );
            })
        })
        .collect();
    sequence(
        &mut obj,
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        per_frame,
    );
    // Packed LSB first, contiguously across frames.
    let pixels = rows * cols;
    let mut bits = vec![0u8; (spec.slices.len() * pixels).div_ceil(8)];
    for (f, k) in spec.slices.iter().enumerate() {
        let ((r0, r1), (c0, c1)) = seg_square(spec, *k);
        for r in r0..r1 {
            for c in c0..c1 {
                let b = f * pixels + r * cols + c;
                bits[b / 8] |= 1 << (b % 8);
            }
        }
    }
    if bits.len() % 2 == 1 {
        bits.push(0);
    }
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(bits),
    ));
    obj
}

/// Writes the segmentation as `DIR/seg.dcm` and returns its path.
pub fn write_seg(dir: &Path, spec: &SegSpec) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(uids::SEGMENTATION_STORAGE)
        .media_storage_sop_instance_uid(seg_sop_uid(spec))
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .implementation_class_uid(format!("{UID_ROOT}.1"))
        .build()?;
    let path = dir.join("seg.dcm");
    seg_object(spec)
        .with_exact_meta(meta)
        .write_to_file(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
