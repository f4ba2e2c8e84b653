//! Demonstrations of the known disagreements with dciodvfy listed in DISAGREEMENTS.md.

mod common;
use common::*;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use radport_validate::{validate_file, Severity};

fn run(
    o: dicom_object::InMemDicomObject,
    name: &str,
) -> (radport_validate::InstanceValidation, Option<Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = to_bytes(o);
    (
        validate_file(&bytes).unwrap(),
        dciodvfy(&bytes, dir.path(), name),
    )
}

fn dc_has(lines: &Option<Vec<String>>, needle: &str) {
    if let Some(l) = lines {
        assert!(
            l.iter().any(|x| x.contains(needle)),
            "dciodvfy lacks {needle:?}: {l:#?}"
        );
    }
}

/// 1. Laterality (0020,0060) 2C: the condition is prose; dciodvfy requires it, we skip it.
#[test]
fn d1_laterality_prose_condition() {
    let (v, dc) = run(ct(0, 8, 8), "d1.dcm");
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
    dc_has(
        &dc,
        "Missing attribute Type 2C Conditional Element=<Laterality> Module=<GeneralSeries>",
    );
}

/// 2. Enumerated values stated outside the attribute table (Photometric Interpretation of CT in C.8.2.1.1.3).
#[test]
fn d2_enumerations_in_section_text() {
    let mut o = ct(0, 8, 8);
    put_str(&mut o, tags::LATERALITY, VR::CS, "");
    put_str(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME3",
    );
    let (v, dc) = run(o, "d2.dcm");
    assert!(
        !v.findings.iter().any(|f| f.tag_path == "(0028,0004)"),
        "{:#?}",
        v.findings
    );
    dc_has(&dc, "Unrecognized enumerated value <MONOCHROME3> for value 1 of attribute <Photometric Interpretation>");
}

/// 3. Defined terms are not checked (dciodvfy warns).
#[test]
fn d3_defined_terms() {
    let mut o = ct(0, 8, 8);
    put_str(&mut o, tags::LATERALITY, VR::CS, "");
    put_str(&mut o, tags::BODY_PART_EXAMINED, VR::CS, "NOSE_TIP");
    let (v, dc) = run(o, "d3.dcm");
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
    dc_has(&dc, "Unrecognized defined term <NOSE_TIP>");
}

/// 4. Attributes that are not part of the IOD are not reported (dciodvfy warns "not present in standard DICOM IOD").
#[test]
fn d4_attributes_outside_the_iod() {
    let mut o = ct(0, 8, 8);
    put_str(&mut o, tags::LATERALITY, VR::CS, "");
    put_str(&mut o, Tag(0x0018, 0x1164), VR::DS, "0.5\\0.5"); // Imager Pixel Spacing: not in the CT IOD
    let (v, dc) = run(o, "d4.dcm");
    assert!(v.findings.is_empty(), "{:#?}", v.findings);
    dc_has(
        &dc,
        "Attribute is not present in standard DICOM IOD - (0x0018,0x1164)",
    );
}

/// 5. Type of Modality: dciodvfy (newer edition) calls it Type 1C in General Series, the 2020 table Type 1.
#[test]
fn d5_modality_type() {
    let mut o = ct(0, 8, 8);
    put_str(&mut o, tags::LATERALITY, VR::CS, "");
    o.remove_element(tags::MODALITY);
    let (v, dc) = run(o, "d5.dcm");
    let f = v
        .findings
        .iter()
        .find(|f| f.tag_path == "(0008,0060)")
        .unwrap();
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.starts_with("Type 1 attribute"));
    dc_has(
        &dc,
        "Missing attribute Type 1C Conditional Element=<Modality>",
    );
}
