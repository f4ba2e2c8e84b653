//! The JSON files of the imports: `meta_data.json`, `seg_info.json` (basic layout) and
//! `dataset.json` (nnU-Net v2), parsed into what the conversion needs.

use super::*;

/// What is wrong with a JSON file of the import. Each one stops the run: these files describe
/// every case.
#[derive(Debug, thiserror::Error)]
pub(super) enum ManifestError {
    /// The entry could not be read from the zip (a limit, a broken entry).
    #[error("{file}: {reason}")]
    Unreadable { file: String, reason: String },
    /// The entry is not JSON.
    #[error("{file} is not valid JSON: {source}")]
    NotJson {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    /// The top level is not an object.
    #[error("expected an object with {members}")]
    NotAnObject { members: &'static str },
    /// A member of the wrong kind or form.
    #[error("{what} must be {expected}")]
    MustBe { what: String, expected: String },
    /// A required member is missing.
    #[error("{what} is missing{hint}")]
    Missing {
        what: &'static str,
        hint: &'static str,
    },
    /// A list or map that must not be empty is.
    #[error("{what} is empty")]
    Empty { what: &'static str },
    /// No label besides the background.
    #[error("\"labels\" names no label besides the background")]
    NoLabels,
    /// A label value of 0.
    #[error("{what}: 0 is the background")]
    Background { what: String },
    /// A label value given twice.
    #[error("{what} {value} is listed twice")]
    ListedTwice { what: String, value: u32 },
    /// A key that is not a DICOM tag of the form `gggg|eeee`.
    #[error("{what}: {source}")]
    BadTagKey {
        what: &'static str,
        #[source]
        source: convert::ConvertError,
    },
    /// A `channel_names` key that is not a number.
    #[error("channel_names key {key:?} is not a channel number")]
    NotAChannelNumber { key: String },
}

/// `what` must be `expected`.
fn must_be(what: impl Into<String>, expected: impl Into<String>) -> ManifestError {
    ManifestError::MustBe {
        what: what.into(),
        expected: expected.into(),
    }
}

/// How label maps become segments.
#[derive(Debug, Default)]
pub(super) struct SegSpec {
    /// `(label value, name)`; empty: one segment per value found in the map.
    pub(super) labels: Vec<(u32, String)>,
    pub(super) algorithm: String,
    pub(super) series_description: String,
    pub(super) content_description: Option<String>,
    /// Values in the map that `labels` does not list are ignored (nnU-Net regions).
    pub(super) ignore_unlisted: bool,
}

/// `meta_data.json`.
#[derive(Debug, Default)]
pub(super) struct Meta {
    pub(super) global: Vec<(Tag, String)>,
    /// File name → (key, value), keys parsed per case.
    pub(super) series: BTreeMap<String, Vec<(String, String)>>,
}

/// Reads and parses a JSON file of the zip (at most `max_json_bytes`).
pub(super) fn read_json(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
    file: &FileRef,
) -> Result<Value, ManifestError> {
    let max = budget.limits.max_json_bytes;
    let bytes = upload::read_small_entry(zip, file.index, budget, max).map_err(|reason| {
        ManifestError::Unreadable {
            file: file.path.clone(),
            reason,
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ManifestError::NotJson {
        file: file.path.clone(),
        source,
    })
}

/// A JSON string or number as text.
pub(super) fn text_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn parse_meta(v: &Value) -> Result<Meta, ManifestError> {
    let obj = v.as_object().ok_or(ManifestError::NotAnObject {
        members: "\"global_tags\" and \"series_tags\"",
    })?;
    let mut meta = Meta::default();
    let tag_map = |v: &Value, what: &str| -> Result<Vec<(String, String)>, ManifestError> {
        let o = v
            .as_object()
            .ok_or_else(|| must_be(what, "an object of \"gggg|eeee\": value"))?;
        o.iter()
            .map(|(k, v)| {
                text_value(v)
                    .map(|t| (k.clone(), t))
                    .ok_or_else(|| must_be(format!("{what}[{k:?}]"), "a string or a number"))
            })
            .collect()
    };
    if let Some(g) = obj.get("global_tags") {
        for (k, v) in tag_map(g, "global_tags")? {
            let tag = convert::parse_tag_key(&k).map_err(|source| ManifestError::BadTagKey {
                what: "global_tags",
                source,
            })?;
            meta.global.push((tag, v));
        }
    }
    if let Some(s) = obj.get("series_tags") {
        let o = s
            .as_object()
            .ok_or_else(|| must_be("series_tags", "an object: file name → tags"))?;
        for (file, tags) in o {
            let tags = tag_map(tags, &format!("series_tags[{file:?}]"))?;
            meta.series.insert(file.clone(), tags);
        }
    }
    Ok(meta)
}

pub(super) fn parse_label_int(v: &Value, what: &str) -> Result<u32, ManifestError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 && n <= u32::MAX as u64 => Ok(n as u32),
        Some(0) => Err(ManifestError::Background { what: what.into() }),
        _ => Err(must_be(
            what,
            format!("a positive integer (or a string of one), not {v}"),
        )),
    }
}

pub(super) fn parse_seg_info(v: &Value) -> Result<SegSpec, ManifestError> {
    let obj = v.as_object().ok_or(ManifestError::NotAnObject {
        members: "\"algorithm\" and \"seg_info\"",
    })?;
    let opt_text = |k: &str| -> Result<String, ManifestError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err(must_be(
                format!("\"{k}\""),
                format!("a string, not {other}"),
            )),
        }
    };
    let algorithm = opt_text("algorithm")?;
    let body_part = opt_text("task_body_part")?;
    let list = obj
        .get("seg_info")
        .ok_or(ManifestError::Missing {
            what: "\"seg_info\"",
            hint: ": a list of {\"label_name\", \"label_int\"}",
        })?
        .as_array()
        .ok_or_else(|| must_be("\"seg_info\"", "a list of {\"label_name\", \"label_int\"}"))?;
    let mut labels = Vec::new();
    for (n, item) in list.iter().enumerate() {
        let what = format!("seg_info[{n}]");
        let o = item
            .as_object()
            .ok_or_else(|| must_be(&what, "an object"))?;
        let name = match o.get("label_name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Err(must_be(format!("{what}.label_name"), "a non-empty string")),
        };
        let value = parse_label_int(
            o.get("label_int").unwrap_or(&Value::Null),
            &format!("{what}.label_int"),
        )?;
        if labels.iter().any(|(v, _)| *v == value) {
            return Err(ManifestError::ListedTwice {
                what: format!("{what}: label_int"),
                value,
            });
        }
        labels.push((value, name));
    }
    if labels.is_empty() {
        return Err(ManifestError::Empty {
            what: "\"seg_info\"",
        });
    }
    Ok(SegSpec {
        labels,
        series_description: if algorithm.is_empty() {
            "Segmentation".into()
        } else {
            format!("Segmentation ({algorithm})")
                .chars()
                .take(64)
                .collect()
        },
        algorithm,
        content_description: (!body_part.is_empty()).then(|| body_part.chars().take(64).collect()),
        ignore_unlisted: false,
    })
}

/// `dataset.json` of nnU-Net v2.
#[derive(Debug, Default)]
pub(super) struct NnDataset {
    pub(super) channels: Vec<(usize, String)>,
    pub(super) labels: Vec<(u32, String)>,
    pub(super) regions: bool,
    pub(super) file_ending: String,
    pub(super) name: String,
    pub(super) description: String,
    pub(super) notes: Vec<String>,
}

pub(super) fn parse_dataset(v: &Value) -> Result<NnDataset, ManifestError> {
    let obj = v.as_object().ok_or(ManifestError::NotAnObject {
        members: "\"channel_names\", \"labels\", \"file_ending\"",
    })?;
    let mut ds = NnDataset::default();
    let channels = obj
        .get("channel_names")
        .or_else(|| obj.get("modality"))
        .ok_or(ManifestError::Missing {
            what: "\"channel_names\"",
            hint: " (e.g. {\"0\": \"CT\"})",
        })?
        .as_object()
        .ok_or_else(|| must_be("\"channel_names\"", "an object like {\"0\": \"CT\"}"))?;
    for (k, v) in channels {
        let i: usize = k
            .trim()
            .parse()
            .map_err(|_| ManifestError::NotAChannelNumber { key: k.clone() })?;
        let name = v
            .as_str()
            .ok_or_else(|| must_be(format!("channel_names[{k:?}]"), "a string"))?;
        ds.channels.push((i, name.trim().to_string()));
    }
    ds.channels.sort();
    if ds.channels.is_empty() {
        return Err(ManifestError::Empty {
            what: "\"channel_names\"",
        });
    }
    let labels = obj
        .get("labels")
        .ok_or(ManifestError::Missing {
            what: "\"labels\"",
            hint: " (e.g. {\"background\": 0, \"liver\": 1})",
        })?
        .as_object()
        .ok_or_else(|| must_be("\"labels\"", "an object: name → integer"))?;
    for (name, v) in labels {
        if v.is_array() {
            ds.regions = true;
            ds.notes.push(format!(
                "dataset.json: label {name:?} is a region (a list of labels); not a segment"
            ));
            continue;
        }
        match v {
            Value::Number(_) | Value::String(_) => {}
            _ => {
                return Err(must_be(
                    format!("labels[{name:?}]"),
                    format!("an integer, not {v}"),
                ))
            }
        }
        let value = match parse_label_int(v, &format!("labels[{name:?}]")) {
            Ok(value) => value,
            Err(_) if v.as_u64() == Some(0) || v.as_str().map(str::trim) == Some("0") => continue,
            Err(e) => return Err(e),
        };
        if ds.labels.iter().any(|(x, _)| *x == value) {
            return Err(ManifestError::ListedTwice {
                what: "labels: value".into(),
                value,
            });
        }
        ds.labels.push((value, name.clone()));
    }
    ds.labels.sort();
    if ds.labels.is_empty() {
        return Err(ManifestError::NoLabels);
    }
    ds.file_ending = match obj.get("file_ending") {
        None => ".nii.gz".into(),
        Some(Value::String(s)) if nifti_stem(&format!("x{s}")) == Some("x") => s.clone(),
        Some(other) => {
            return Err(must_be(
                "file_ending",
                format!("\".nii.gz\" or \".nii\" (NIfTI), not {other}"),
            ))
        }
    };
    let opt = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string()
    };
    ds.name = opt("name");
    ds.description = opt("description");
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_files_are_checked() {
        assert!(parse_meta(&json!({"global_tags": {"0008|0060": "MR"}})).is_ok());
        let e = parse_meta(&json!({"global_tags": {"0008-0060": "MR"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gggg|eeee"), "{e}");
        assert!(parse_meta(&json!({"global_tags": ["MR"]})).is_err());
        assert!(parse_meta(&json!({"series_tags": {"a.nii": {"0008|103e": {}}}})).is_err());
        // series_tags keys are checked per case, not here.
        assert!(parse_meta(&json!({"series_tags": {"a.nii": {"bad": "x"}}})).is_ok());
        let s = parse_seg_info(&json!({"algorithm": "Ground truth",
            "seg_info": [{"label_name": "prostate", "label_int": "1"},
                         {"label_name": "lesion", "label_int": 2}]}))
        .unwrap();
        assert_eq!(s.labels, vec![(1, "prostate".into()), (2, "lesion".into())]);
        for bad in [
            json!([]),
            json!({"seg_info": {}}),
            json!({"seg_info": [{"label_name": "x", "label_int": "one"}]}),
            json!({"seg_info": [{"label_name": "x", "label_int": 0}]}),
            json!({"algorithm": 3, "seg_info": [{"label_name": "x", "label_int": 1}]}),
        ] {
            assert!(parse_seg_info(&bad).is_err(), "{bad}");
        }
        assert!(
            parse_dataset(&json!({"channel_names": {"zero": "CT"}, "labels": {"a": 1}})).is_err()
        );
        assert!(
            parse_dataset(&json!({"channel_names": {"0": "CT"}, "labels": {"a": 1.5}})).is_err()
        );
    }
}
