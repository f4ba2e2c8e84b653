//! Series consistency and HTML report tests.

mod common;
use common::*;
use dicom_core::VR;
use dicom_dictionary_std::tags;
use radport_validate::{
    html_escape, render_report_html, validate_file, validate_series, Finding, Severity,
};
use serde_json::{json, Value};

fn inst(study: &str, orientation: [f64; 6], number: i64) -> Value {
    json!({
        "0020000D": {"vr": "UI", "Value": [study]},
        "0020000E": {"vr": "UI", "Value": [SERIES]},
        "00100020": {"vr": "LO", "Value": ["PID1"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]},
        "00080060": {"vr": "CS", "Value": ["CT"]},
        "00200052": {"vr": "UI", "Value": [FOR]},
        "00200037": {"vr": "DS", "Value": orientation},
        "00280030": {"vr": "DS", "Value": [0.5, 0.5]},
        "00280010": {"vr": "US", "Value": [512]},
        "00280011": {"vr": "US", "Value": [512]},
        "00200013": {"vr": "IS", "Value": [number]}
    })
}

const AXIAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
const CORONAL: [f64; 6] = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];

#[test]
fn consistent_series_has_no_findings() {
    let s = vec![
        ("1.1".to_string(), inst(STUDY, AXIAL, 1)),
        (
            "1.2".to_string(),
            inst(STUDY, [1.0, 0.0, 0.0, 0.0, 1.00001, 0.0], 2),
        ),
    ];
    assert!(validate_series(&s).is_empty(), "{:#?}", validate_series(&s));
}

#[test]
fn different_study_and_orientation_are_reported() {
    let s = vec![
        ("1.1".to_string(), inst(STUDY, AXIAL, 1)),
        ("1.2".to_string(), inst("1.2.3.4", CORONAL, 1)),
    ];
    let f = validate_series(&s);
    let study = f
        .iter()
        .find(|f| f.tag_path == "(0020,000D)")
        .expect("study finding");
    assert_eq!(study.severity, Severity::Error);
    assert!(study
        .message
        .contains("Study Instance UID (0020,000D) differs within the series"));
    assert!(study.message.contains("1.2.3.4") && study.message.contains("1.1"));
    let orient = f
        .iter()
        .find(|f| f.tag_path == "(0020,0037)")
        .expect("orientation finding");
    assert_eq!(orient.severity, Severity::Warning);
    let dup = f
        .iter()
        .find(|f| f.tag_path == "(0020,0013)")
        .expect("duplicate instance number");
    assert!(dup
        .message
        .contains("Instance Number 1 is used by 2 instances"));
    assert_eq!(f.len(), 3, "{f:#?}");
}

#[test]
fn escape() {
    assert_eq!(
        html_escape("<script>alert(1)</script>"),
        "&lt;script&gt;alert(1)&lt;/script&gt;"
    );
    assert_eq!(
        html_escape("a&b \"c\" 'd'"),
        "a&amp;b &quot;c&quot; &#39;d&#39;"
    );
}

#[test]
fn report_escapes_and_counts() {
    let evil = "<script>alert(1)</script>";
    // a Patient Name that is also a bad value (too many components) so it lands in a finding message
    let mut o = ct(0, 16, 16);
    put_str(
        &mut o,
        tags::PATIENT_NAME,
        VR::PN,
        &format!("{evil}^b^c^d^e^f"),
    );
    put_str(&mut o, tags::PATIENT_SEX, VR::CS, "X");
    let a = validate_file(&to_bytes(o)).unwrap();
    let b = validate_file(&to_bytes(ct(1, 16, 16))).unwrap();
    assert!(a.findings.iter().any(|f| f.message.contains(evil)));
    let series = vec![Finding {
        severity: Severity::Warning,
        tag_path: "(0020,0037)".into(),
        keyword: "ImageOrientationPatient".into(),
        module: Some("Image Plane".into()),
        message: format!("series message {evil}"),
    }];
    let instances = vec![a, b];
    let html = render_report_html(&format!("1.2.3{evil}"), &series, &instances);
    assert!(!html.contains("<script"), "unescaped script tag in report");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<style>"));

    let errors: usize = instances
        .iter()
        .map(|i| i.count(Severity::Error))
        .sum::<usize>();
    let warnings: usize = instances
        .iter()
        .map(|i| i.count(Severity::Warning))
        .sum::<usize>()
        + 1;
    assert!(errors >= 2);
    let cell = |id: &str| {
        let start = html.find(&format!("id=\"{id}\"")).unwrap();
        let rest = &html[start..];
        let v = &rest[rest.find('>').unwrap() + 1..rest.find("</td>").unwrap()];
        v.to_string()
    };
    assert_eq!(cell("errors"), errors.to_string());
    assert_eq!(cell("warnings"), warnings.to_string());
    assert_eq!(cell("instances"), "2");
    assert_eq!(cell("series-findings"), "1");
    assert!(cell("iod").contains("CT Image (2)"));
    // sections: series, by module (Patient module has the enumerated-value error), by instance
    assert!(
        html.contains("id=\"series\"")
            && html.contains("id=\"by-module\"")
            && html.contains("id=\"by-instance\"")
    );
    assert!(html.contains("<h3>Patient <small>"));
    assert_eq!(html.matches("class=\"instance\"").count(), 2);
}
