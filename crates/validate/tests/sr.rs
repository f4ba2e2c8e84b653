//! The SR Document Content module: the content tree walked recursively, on SRs written by
//! highdicom and pydicom (`tests/fixtures/make_fixtures.py`; needs `pip install highdicom`)
//! and defects injected into them, compared with dciodvfy.

mod common;
use common::*;
use radport_validate::{Finding, InstanceValidation, Severity};
use std::collections::BTreeMap;

fn errors(v: &InstanceValidation) -> Vec<&Finding> {
    v.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect()
}

/// Keywords of missing-attribute errors, with their counts.
fn our_missing(v: &InstanceValidation) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in errors(v) {
        if f.message.starts_with("Type ") && f.message.contains(" is missing") {
            *m.entry(f.keyword.clone()).or_default() += 1;
        }
    }
    m
}

fn dciodvfy_missing(lines: &[String]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines
        .iter()
        .filter(|l| l.starts_with("Error - Missing attribute"))
    {
        if let Some(k) = l
            .split("Element=<")
            .nth(1)
            .and_then(|s| s.split('>').next())
        {
            *m.entry(k.to_string()).or_default() += 1;
        }
    }
    m
}

/// dciodvfy's errors that are known disagreements (#7: semantic cross-checks of references;
/// UIDs of pydicom's samples).
fn dciodvfy_unexplained(lines: &[String]) -> Vec<String> {
    dciodvfy_errors(lines)
        .into_iter()
        .filter(|l| {
            !l.contains("not listed in CurrentRequestedProcedureEvidenceSequence")
                && !l.contains("Nothing but zero components")
                && !l.contains("invalid data values for Value Representations")
                && !l.contains("Illegal root for UID")
                && !l.contains(
                    "Shall not be present for Referenced SOP Class that is not multi-frame",
                )
                && !l.contains("Coordinates Content Item has missing or incorrect required child")
        })
        .collect()
}

#[test]
fn valid_srs_have_no_errors_in_either_tool() {
    let mut files = vec![fixtures().join("sr.dcm")];
    for name in [
        "reportsi.dcm",
        "reportsi_with_empty_number_tags.dcm",
        "test-SR.dcm",
    ] {
        files.extend(pydicom_file(name));
    }
    for p in files {
        let (v, dc) = both_tools(&p);
        assert!(
            v.iod.as_deref().is_some_and(|i| i.ends_with(" SR")),
            "{:?}",
            v.iod
        );
        assert!(errors(&v).is_empty(), "{}: {:#?}", p.display(), v.findings);
        if let Some(lines) = dc {
            assert_eq!(
                dciodvfy_unexplained(&lines),
                Vec::<String>::new(),
                "{}",
                p.display()
            );
        }
    }
}

/// Each injected defect: our one finding (path, module, message start) and dciodvfy's line.
#[test]
fn injected_defects_found_by_both_tools() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        (
            "sr-no-text-value.dcm",
            "(0040,A730)[5]/(0040,A730)[1]/(0040,A730)[1]/(0040,A160)",
            "Document Content Macro",
            "Type 1C attribute Text Value (0040,A160) of Document Content Macro is missing (Required if Value Type (0040,A040) is TEXT)",
            "Error - Missing attribute Type 1C Conditional Element=<TextValue> Module=<DocumentContentMacro>",
        ),
        (
            "sr-bad-value-type.dcm",
            "(0040,A730)[5]/(0040,A730)[1]/(0040,A730)[3]/(0040,A040)",
            "Document Content Macro",
            "Value \"FOO\" of Value Type (0040,A040) (Document Content Macro) is not one of the enumerated values TEXT, NUM",
            "Error - Unrecognized enumerated value <FOO> for value 1 of attribute <Value Type>",
        ),
        (
            "sr-no-continuity.dcm",
            "(0040,A730)[5]/(0040,A730)[1]/(0040,A050)",
            "Container Macro",
            "Type 1 attribute Continuity Of Content (0040,A050) of Container Macro is missing",
            "Error - Missing attribute Type 1 Required Element=<ContinuityOfContent> Module=<ContainerMacro>",
        ),
        (
            "sr-bad-graphic-type.dcm",
            "(0040,A730)[5]/(0040,A730)[1]/(0040,A730)[6]/(0070,0023)",
            "Spatial Coordinates Macro",
            "Value \"SQUARE\" of Graphic Type (0070,0023) (Spatial Coordinates Macro) is not one of the enumerated values POINT, MULTIPOINT, POLYLINE, CIRCLE, ELLIPSE",
            "Error - Unrecognized enumerated value <SQUARE> for value 1 of attribute <Graphic Type>",
        ),
        (
            "sr-no-concept-code.dcm",
            "(0040,A730)[5]/(0040,A730)[1]/(0040,A730)[3]/(0040,A168)",
            "Code Macro",
            "Type 1 attribute Concept Code Sequence (0040,A168) of Code Macro is missing",
            "Error - Missing attribute Type 1 Required Element=<ConceptCodeSequence> Module=<CodeMacro>",
        ),
        (
            "basic-text-no-concept-name.dcm",
            "(0040,A730)[3]/(0040,A043)",
            "Document Content Macro",
            "Type 1C attribute Concept Name Code Sequence (0040,A043) of Document Content Macro is missing (required when Value Type (0040,A040) is TEXT)",
            "Error - Missing attribute Type 1C Conditional Element=<ConceptNameCodeSequence> Module=<DocumentContentMacro>",
        ),
    ];
    for (file, path, module, message, theirs) in cases {
        let (v, dc) = both_tools(&fixtures().join(file));
        let e = errors(&v);
        assert_eq!(e.len(), 1, "{file}: {e:#?}");
        assert_eq!(
            (e[0].tag_path.as_str(), e[0].module.as_deref()),
            (*path, Some(*module)),
            "{file}"
        );
        assert!(
            e[0].message.starts_with(message),
            "{file}: {}",
            e[0].message
        );
        if let Some(lines) = dc {
            assert!(
                lines.iter().any(|l| l == theirs),
                "{file}: dciodvfy lacks {theirs:?}: {lines:#?}"
            );
            assert_eq!(dciodvfy_missing(&lines), our_missing(&v), "{file}");
        }
    }
}

/// NUM: highdicom shares one measured value item between the two measurement groups, so the
/// Measurement Units Code Sequence is missing in both; both tools report it twice.
#[test]
fn numeric_measurement_units_missing_in_two_groups() {
    let (v, dc) = both_tools(&fixtures().join("sr-no-units.dcm"));
    let paths: Vec<&str> = errors(&v).iter().map(|f| f.tag_path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "(0040,A730)[5]/(0040,A730)[1]/(0040,A730)[4]/(0040,A300)[1]/(0040,08EA)",
            "(0040,A730)[5]/(0040,A730)[2]/(0040,A730)[4]/(0040,A300)[1]/(0040,08EA)"
        ]
    );
    assert_eq!(
        errors(&v)[0].module.as_deref(),
        Some("Numeric Measurement Macro")
    );
    if let Some(lines) = dc {
        assert_eq!(dciodvfy_missing(&lines), our_missing(&v));
        assert_eq!(
            our_missing(&v).get("MeasurementUnitsCodeSequence"),
            Some(&2)
        );
    }
}
