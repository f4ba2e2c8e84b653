//! Consistency checks across the instances of one series (DICOM JSON, PS3.18 F.2).

use crate::{Finding, Severity};
use serde_json::Value;
use std::collections::BTreeMap;

/// Attributes that must be identical in every instance of a series: (tag, keyword, name, module, severity).
const SAME: &[(&str, &str, &str, &str, Severity)] = &[
    (
        "0020000D",
        "StudyInstanceUID",
        "Study Instance UID",
        "General Study",
        Severity::Error,
    ),
    (
        "00100020",
        "PatientID",
        "Patient ID",
        "Patient",
        Severity::Error,
    ),
    (
        "00100010",
        "PatientName",
        "Patient's Name",
        "Patient",
        Severity::Error,
    ),
    (
        "00100030",
        "PatientBirthDate",
        "Patient's Birth Date",
        "Patient",
        Severity::Error,
    ),
    (
        "0020000E",
        "SeriesInstanceUID",
        "Series Instance UID",
        "General Series",
        Severity::Error,
    ),
    (
        "00080060",
        "Modality",
        "Modality",
        "General Series",
        Severity::Error,
    ),
    (
        "00200052",
        "FrameOfReferenceUID",
        "Frame of Reference UID",
        "Frame of Reference",
        Severity::Error,
    ),
];

/// Geometry that is expected to be identical among image instances of a series (soft: warnings).
const GEOMETRY: &[(&str, &str, &str, &str)] = &[
    (
        "00200037",
        "ImageOrientationPatient",
        "Image Orientation (Patient)",
        "Image Plane",
    ),
    ("00280030", "PixelSpacing", "Pixel Spacing", "Image Plane"),
    ("00280010", "Rows", "Rows", "Image Pixel"),
    ("00280011", "Columns", "Columns", "Image Pixel"),
];

/// Renders the value of a DICOM JSON attribute as a comparable string; `None` when absent or empty.
fn json_value(inst: &Value, tag: &str) -> Option<String> {
    let attr = inst.get(tag).or_else(|| inst.get(tag.to_lowercase()))?;
    let values = attr.get("Value")?.as_array()?;
    if values.is_empty() {
        return None;
    }
    let parts: Vec<String> = values
        .iter()
        .map(|v| match v {
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Object(o) => o
                .get("Alphabetic")
                .and_then(|a| a.as_str())
                .unwrap_or_default()
                .trim()
                .to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect();
    Some(parts.join("\\"))
}

fn json_numbers(inst: &Value, tag: &str) -> Option<Vec<f64>> {
    let attr = inst.get(tag)?;
    let values = attr.get("Value")?.as_array()?;
    let v: Option<Vec<f64>> = values
        .iter()
        .map(|x| match x {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .collect();
    v.filter(|v| !v.is_empty())
}

fn describe_groups(groups: &BTreeMap<String, Vec<&str>>) -> String {
    groups
        .iter()
        .map(|(v, uids)| {
            let shown: Vec<&str> = uids.iter().take(3).copied().collect();
            let more = if uids.len() > 3 {
                format!(" and {} more", uids.len() - 3)
            } else {
                String::new()
            };
            format!(
                "\"{v}\" in {} instance(s) ({}{more})",
                uids.len(),
                shown.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn tag_path(tag: &str) -> String {
    format!("({},{})", &tag[..4], &tag[4..])
}

/// Checks consistency across the instances of a series, given as (SOP Instance UID, DICOM JSON).
///
/// * Errors: Study Instance UID, Patient ID, Patient's Name, Patient's Birth Date, Series Instance
///   UID, Modality or Frame of Reference UID differ between instances (absent values are ignored:
///   a missing attribute is an instance-level finding).
/// * Warnings: Image Orientation (Patient) (tolerance 1e-4), Pixel Spacing (tolerance 1e-4), Rows or
///   Columns differ among the instances that have them (localizers can legitimately differ, hence
///   warnings); duplicate Instance Numbers.
pub fn validate_series(instances: &[(String, Value)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for &(tag, keyword, name, module, severity) in SAME {
        let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (uid, inst) in instances {
            if let Some(v) = json_value(inst, tag) {
                groups.entry(v).or_default().push(uid);
            }
        }
        if groups.len() > 1 {
            out.push(Finding {
                severity,
                tag_path: tag_path(tag),
                keyword: keyword.into(),
                module: Some(module.into()),
                message: format!(
                    "{name} {} differs within the series: {} distinct values: {}",
                    tag_path(tag),
                    groups.len(),
                    describe_groups(&groups)
                ),
            });
        }
    }
    for &(tag, keyword, name, module) in GEOMETRY {
        let mut reps: Vec<(Vec<f64>, Vec<&str>)> = Vec::new();
        for (uid, inst) in instances {
            let Some(v) = json_numbers(inst, tag) else {
                continue;
            };
            match reps.iter_mut().find(|(r, _)| {
                r.len() == v.len() && r.iter().zip(&v).all(|(a, b)| (a - b).abs() <= 1e-4)
            }) {
                Some((_, uids)) => uids.push(uid),
                None => reps.push((v, vec![uid])),
            }
        }
        if reps.len() > 1 {
            let groups: BTreeMap<String, Vec<&str>> = reps
                .into_iter()
                .map(|(v, u)| {
                    (
                        v.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join("\\"),
                        u,
                    )
                })
                .collect();
            out.push(Finding {
                severity: Severity::Warning,
                tag_path: tag_path(tag),
                keyword: keyword.into(),
                module: Some(module.into()),
                message: format!(
                    "{name} {} is not the same for all images of the series: {}",
                    tag_path(tag),
                    describe_groups(&groups)
                ),
            });
        }
    }
    let mut numbers: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (uid, inst) in instances {
        if let Some(n) = json_value(inst, "00200013") {
            numbers.entry(n).or_default().push(uid);
        }
    }
    for (n, uids) in numbers.iter().filter(|(_, u)| u.len() > 1) {
        out.push(Finding {
            severity: Severity::Warning,
            tag_path: "(0020,0013)".into(),
            keyword: "InstanceNumber".into(),
            module: Some("General Image".into()),
            message: format!(
                "Instance Number {n} is used by {} instances: {}",
                uids.len(),
                uids.join(", ")
            ),
        });
    }
    out
}
