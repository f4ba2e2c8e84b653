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

/// 12. Content Creator's Name (0070,0084) of a SEG: Type 2 in 2020, not required by dciodvfy.
///
/// highdicom writes it only when given.
#[test]
fn d12_seg_content_creator_name() {
    let (v, dc) = both_tools(&fixtures().join("seg-no-creator.dcm"));
    let errors: Vec<_> = v
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        (errors[0].tag_path.as_str(), errors[0].keyword.as_str()),
        ("(0070,0084)", "ContentCreatorName")
    );
    if let Some(lines) = dc {
        assert_eq!(dciodvfy_errors(&lines), Vec::<String>::new());
    }
}

/// 13. Referenced Frame of Reference UID (3006,0024) of a SCOORD3D item: Type 1 in 2020.
///
/// dciodvfy (a later edition) does not report it missing.
#[test]
fn d13_scoord3d_frame_of_reference() {
    let (v, dc) = both_tools(&fixtures().join("sr-no-frame-of-reference.dcm"));
    let errors: Vec<_> = v
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0].tag_path,
        "(0040,A730)[5]/(0040,A730)[2]/(0040,A730)[5]/(3006,0024)"
    );
    if let Some(lines) = dc {
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("ReferencedFrameOfReferenceUID")),
            "{lines:#?}"
        );
    }
}

/// 14. Relationship Type (0040,A010): Enumerated Values in 2020 (error), Defined Terms for dciodvfy.
///
/// dciodvfy warns "Unrecognized defined term".
#[test]
fn d14_relationship_type_enumerated_values() {
    let Some(p) = pydicom_file("reportsi.dcm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut o = dicom_object::open_file(&p).unwrap();
    let mut items = o
        .get(tags::CONTENT_SEQUENCE)
        .and_then(|e| e.items())
        .unwrap()
        .to_vec();
    put_str(&mut items[0], tags::RELATIONSHIP_TYPE, VR::CS, "HAS FOO");
    o.put(seq(tags::CONTENT_SEQUENCE, items));
    let f = dir.path().join("reltype.dcm");
    o.write_to_file(&f).unwrap();
    let (v, dc) = both_tools(&f);
    let e: Vec<_> = v
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].tag_path, "(0040,A730)[1]/(0040,A010)");
    assert!(e[0].message.contains("not one of the enumerated values"));
    if let Some(lines) = dc {
        assert!(
            !lines
                .iter()
                .any(|l| l.starts_with("Error") && l.contains("HAS FOO")),
            "{lines:#?}"
        );
        dc_has(
            &Some(lines),
            "Warning - Unrecognized defined term <HAS FOO> for value 1 of attribute <Relationship Type>",
        );
    }
}
