//! Functional group macros of enhanced multi-frame IODs, on files written by highdicom and
//! pydicom (`tests/fixtures/make_fixtures.py`; needs `pip install highdicom`), compared with
//! dciodvfy.

mod common;
use common::*;
use radport_validate::{Finding, InstanceValidation, Severity};

fn errors(v: &InstanceValidation) -> Vec<&Finding> {
    v.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect()
}

fn only_error(v: &InstanceValidation) -> &Finding {
    let e = errors(v);
    assert_eq!(e.len(), 1, "{e:#?}");
    e[0]
}

fn dc_has(lines: &Option<Vec<String>>, needle: &str) {
    if let Some(l) = lines {
        assert!(
            l.iter().any(|x| x.contains(needle)),
            "dciodvfy lacks {needle:?}: {l:#?}"
        );
    }
}

#[test]
fn valid_highdicom_seg_has_no_errors_in_either_tool() {
    for name in ["seg.dcm", "seg-big.dcm"] {
        let (v, dc) = both_tools(&fixtures().join(name));
        assert_eq!(v.iod.as_deref(), Some("Segmentation"));
        assert!(errors(&v).is_empty(), "{name}: {:#?}", v.findings);
        if let Some(lines) = dc {
            assert_eq!(dciodvfy_errors(&lines), Vec::<String>::new(), "{name}");
        }
    }
}

/// highdicom's Legacy Converted Enhanced CT: shared and per-frame groups (Unassigned Converted
/// Attributes, Conversion Source, Frame VOI LUT ...). dciodvfy's two errors are known
/// disagreements #1 (Laterality) and #7 (a semantic cross-check).
#[test]
fn highdicom_legacy_converted_ct_matches_dciodvfy() {
    let (v, dc) = both_tools(&fixtures().join("legacy-ct.dcm"));
    assert_eq!(v.iod.as_deref(), Some("Legacy Converted Enhanced CT Image"));
    assert!(errors(&v).is_empty(), "{:#?}", v.findings);
    if let Some(lines) = dc {
        assert_eq!(
            dciodvfy_errors(&lines),
            vec![
                "Error - Missing attribute Type 2C Conditional Element=<Laterality> Module=<GeneralSeries>".to_string(),
                "Error - ReferencedSeriesSequence present but Instance does not reference Instances - attribute <ReferencedSeriesSequence>".to_string(),
            ]
        );
    }
}

#[test]
fn mandatory_macro_missing_from_every_frame() {
    let (v, dc) = both_tools(&fixtures().join("seg-no-frame-content.dcm"));
    let f = only_error(&v);
    assert_eq!(f.tag_path, "(5200,9230)[1]/(0020,9111)");
    assert_eq!(f.keyword, "FrameContentSequence");
    assert_eq!(f.module.as_deref(), Some("Frame Content Macro"));
    assert!(
        f.message.starts_with("Type 1 attribute Frame Content Sequence (0020,9111) of Frame Content Macro is missing from the Shared Functional Groups Sequence item and from every Per-frame")
            && f.message.contains("mandatory"),
        "{}",
        f.message
    );
    dc_has(
        &dc,
        "Error - Missing attribute Type 1 Required Element=<FrameContentSequence> Module=<FrameContentMacro>",
    );
}

#[test]
fn per_frame_macro_missing_from_one_frame() {
    let (v, dc) = both_tools(&fixtures().join("seg-plane-position-gap.dcm"));
    let f = only_error(&v);
    assert_eq!(f.tag_path, "(5200,9230)[2]/(0020,9113)");
    assert_eq!(f.keyword, "PlanePositionSequence");
    assert_eq!(f.module.as_deref(), Some("Plane Position (Patient) Macro"));
    assert!(
        f.message.contains(
            "missing from 1 of 5 Per-frame Functional Groups Sequence items (first: item 2)"
        ),
        "{}",
        f.message
    );
    dc_has(
        &dc,
        "Error - Missing attribute Type 1 Required Element=<PlanePositionSequence> Module=<PlanePositionMacro>",
    );
}

#[test]
fn macro_both_shared_and_per_frame() {
    let (v, dc) = both_tools(&fixtures().join("seg-shared-and-per-frame.dcm"));
    let f = only_error(&v);
    assert_eq!(f.tag_path, "(5200,9230)[1]/(0020,9113)");
    assert!(
        f.message
            .contains("is in the Shared Functional Groups Sequence and also in 5 of 5 Per-frame"),
        "{}",
        f.message
    );
    dc_has(&dc, "Error - Functional Group Sequence already used in SharedFunctionalGroupsSequence - (0x0020,0x9113) Plane Position Sequence - in Per-frame Functional Groups Sequence Item #5");
}

/// An attribute inside a macro item, missing in every frame: one finding, counting the others.
#[test]
fn attribute_inside_macro_items_checked_and_folded() {
    let (v, dc) = both_tools(&fixtures().join("seg-no-segment-number.dcm"));
    let f = only_error(&v);
    assert_eq!(f.tag_path, "(5200,9230)[1]/(0062,000A)[1]/(0062,000B)");
    assert_eq!(f.keyword, "ReferencedSegmentNumber");
    assert_eq!(
        f.message,
        "Type 1 attribute Referenced Segment Number (0062,000B) of Segmentation Macro is missing \
         (also in 4 other Per-frame Functional Groups Sequence items)"
    );
    if let Some(lines) = &dc {
        let n = lines
            .iter()
            .filter(|l| {
                l.as_str()
                    == "Error - Missing attribute Type 1 Required Element=<ReferencedSegmentNumber> Module=<SegmentationMacro>"
            })
            .count();
        assert_eq!(n, 5, "{lines:#?}");
    }
}

#[test]
fn number_of_frames_and_per_frame_items_differ() {
    let (v, dc) = both_tools(&fixtures().join("seg-frame-count.dcm"));
    let f = only_error(&v);
    assert_eq!(f.tag_path, "(5200,9230)");
    assert_eq!(
        f.message,
        "Per-frame Functional Groups Sequence (5200,9230) has 5 items, but Number of Frames (0028,0008) is 6"
    );
    dc_has(&dc, "Number of items in PerFrameFunctionalGroupsSequence does not match NumberOfFrames - have 5 items - but 6 frames");
}

/// pydicom's `liver_1frame.dcm` (a SEG cut down to one frame of pixel data, three per-frame items
/// left, Number of Frames removed).
#[test]
fn pydicom_liver_1frame() {
    let Some(p) = pydicom_file("liver_1frame.dcm") else {
        return;
    };
    let (v, dc) = both_tools(&p);
    let f = only_error(&v);
    assert_eq!(
        (f.tag_path.as_str(), f.keyword.as_str()),
        ("(0028,0008)", "NumberOfFrames")
    );
    dc_has(&dc, "Error - Missing attribute Type 1 Required Element=<NumberOfFrames> Module=<MultiFrameFunctionalGroupsCommon>");
}

/// Files of the `pydicom-data` package, when installed: an Enhanced CT with shared and
/// per-frame groups, and SEGs from another writer. dciodvfy's only error on the CT is an
/// enumerated value stated in section text (#2).
#[test]
fn pydicom_data_enhanced_ct_and_seg() {
    for name in ["eCT_Supplemental.dcm", "liver.dcm", "liver_expb.dcm"] {
        let Some(p) = pydicom_file(name) else {
            continue;
        };
        let (v, dc) = both_tools(&p);
        assert!(errors(&v).is_empty(), "{name}: {:#?}", v.findings);
        if let Some(lines) = dc {
            let expected: Vec<String> = if name == "eCT_Supplemental.dcm" {
                vec!["Error - Unrecognized enumerated value <US> for value 1 of attribute <Rescale Type>".into()]
            } else {
                vec![]
            };
            assert_eq!(dciodvfy_errors(&lines), expected, "{name}");
        }
    }
}
