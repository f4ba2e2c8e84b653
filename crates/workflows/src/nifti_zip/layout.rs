//! The zip's layout: its entries, which of the two layouts they form, and the cases (images
//! and label maps) of each.

use super::*;

/// A file of the zip: its path (below the wrapping folder, if any) and its index.
#[derive(Clone, Debug)]
pub(super) struct FileRef {
    pub(super) path: String,
    pub(super) index: usize,
}

impl FileRef {
    pub(super) fn base(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    pub(super) fn dir(&self) -> &str {
        self.path
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or_default()
    }
}

/// `name` without `.nii.gz` / `.nii` (any case), or `None` when it is no NIfTI name.
pub(super) fn nifti_stem(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    for ext in [".nii.gz", ".nii"] {
        if lower.ends_with(ext) && name.len() > ext.len() {
            return Some(&name[..name.len() - ext.len()]);
        }
    }
    None
}

/// One image series to make.
#[derive(Debug)]
pub(super) struct ImageSpec {
    pub(super) file: FileRef,
    /// Seed part after the case id (`image`, or the nnU-Net channel number).
    pub(super) seed: String,
    pub(super) description: String,
    pub(super) number: i64,
    /// Modality when neither the parameter nor meta_data.json give one.
    pub(super) modality_guess: Option<String>,
}

impl ImageSpec {
    /// How logs name the series: its file, and its channel name (nnU-Net).
    pub(super) fn what(&self) -> String {
        if self.seed == "image" {
            self.file.path.clone()
        } else {
            format!("{} ({})", self.file.path, self.description)
        }
    }
}

/// One case: its image series (the first is the SEG's source) and label map.
#[derive(Debug)]
pub(super) struct CaseSpec {
    pub(super) id: String,
    pub(super) images: Vec<ImageSpec>,
    pub(super) labels: Option<FileRef>,
    /// Problems found while planning (a missing channel…), reported with the case.
    pub(super) errors: Vec<String>,
}

/// The planned run.
pub(super) struct Plan {
    pub(super) layout: &'static str,
    pub(super) cases: Vec<CaseSpec>,
    pub(super) refused: Vec<(String, String)>,
    pub(super) seg: SegSpec,
    pub(super) meta: Meta,
    pub(super) logs: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Planning: entries, layout, JSON files.

/// Lists the zip, detects the layout and reads its JSON files.
pub(super) fn plan(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
) -> Result<Plan, PlanError> {
    let mut files: Vec<FileRef> = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    // Names that differ only by `.` or empty parts name one file: the first one is used.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|source| PlanError::Unreadable { index: i, source })?;
        if entry.is_dir() {
            continue;
        }
        let name = upload::entry_name(&entry, i);
        if upload::is_os_junk(&name) {
            continue;
        }
        let relevant = nifti_stem(&name).is_some() || name.to_ascii_lowercase().ends_with(".json");
        let parts: Vec<&str> = name
            .split(['/', '\\'])
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if let Some(why) = upload::unsafe_entry(&entry) {
            if relevant {
                refused.push((name, why.into()));
            } else {
                ignored.push(name);
            }
            continue;
        }
        let path = parts.join("/");
        if !seen.insert(path.clone()) {
            if relevant {
                refused.push((
                    name,
                    format!("the same path as an earlier entry ({path}); keep one per zip"),
                ));
            } else {
                ignored.push(name);
            }
            continue;
        }
        files.push(FileRef { path, index: i });
    }
    // One folder wrapping everything.
    if let Some(first) = files
        .first()
        .and_then(|f| f.path.split_once('/'))
        .map(|p| p.0)
    {
        let prefix = format!("{first}/");
        if files.iter().all(|f| f.path.starts_with(&prefix)) {
            for f in &mut files {
                f.path = f.path[prefix.len()..].to_string();
            }
        }
    }
    let mut logs = Vec::new();
    let find = |names: &[&'static str]| -> Result<Option<FileRef>, PlanError> {
        let found: Vec<&FileRef> = files
            .iter()
            .filter(|f| names.contains(&f.base().to_ascii_lowercase().as_str()))
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(PlanError::Repeated {
                name: names[0],
                count: many.len(),
                paths: many
                    .iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    };
    let dataset_json = find(&["dataset.json"])?;
    let meta_file = find(&["meta_data.json", "meta-data.json"])?;
    let meta = match &meta_file {
        Some(f) => parse_meta(&read_json(zip, budget, f).map_err(PlanError::Unread)?).map_err(
            |source| PlanError::Unusable {
                file: f.path.clone(),
                source,
            },
        )?,
        None => Meta::default(),
    };
    if let Some(f) = &meta_file {
        logs.push(format!(
            "{}: {} global tags, series tags for {} files",
            f.path,
            meta.global.len(),
            meta.series.len()
        ));
    }

    let nnunet_root = dataset_json.as_ref().map(|f| f.dir().to_string());
    let is_nnunet = nnunet_root.as_ref().is_some_and(|root| {
        let p = |sub: &str| join(root, sub) + "/";
        files
            .iter()
            .any(|f| f.path.starts_with(&p("imagesTr")) || f.path.starts_with(&p("imagesTs")))
    });
    let (layout, cases, seg) = if is_nnunet {
        let dj = dataset_json.expect("dataset.json");
        let ds = parse_dataset(&read_json(zip, budget, &dj).map_err(PlanError::Unread)?).map_err(
            |source| PlanError::Unusable {
                file: dj.path.clone(),
                source,
            },
        )?;
        logs.push(format!(
            "{}: dataset {:?}, channels {}, labels {}",
            dj.path,
            ds.name,
            ds.channels
                .iter()
                .map(|(i, n)| format!("{i}={n}"))
                .collect::<Vec<_>>()
                .join(", "),
            ds.labels
                .iter()
                .map(|(v, n)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        logs.extend(ds.notes.iter().cloned());
        let cases = nnunet_cases(
            &files,
            nnunet_root.as_deref().unwrap_or(""),
            &ds,
            &mut refused,
        );
        let name = if ds.name.is_empty() {
            "nnU-Net".to_string()
        } else {
            ds.name.clone()
        };
        let seg = SegSpec {
            labels: ds.labels.clone(),
            algorithm: "Ground truth".into(),
            series_description: format!("{name} ground truth").chars().take(64).collect(),
            content_description: (!ds.description.is_empty())
                .then(|| ds.description.chars().take(64).collect()),
            ignore_unlisted: ds.regions,
        };
        ("nnU-Net v2", cases, seg)
    } else {
        let seg_file = find(&["seg_info.json", "seg-info.json"])?;
        let seg = match &seg_file {
            Some(f) => {
                let s = parse_seg_info(&read_json(zip, budget, f).map_err(PlanError::Unread)?)
                    .map_err(|source| PlanError::Unusable {
                        file: f.path.clone(),
                        source,
                    })?;
                logs.push(format!(
                    "{}: algorithm {:?}, labels {}",
                    f.path,
                    s.algorithm,
                    s.labels
                        .iter()
                        .map(|(v, n)| format!("{n}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                s
            }
            None => SegSpec {
                series_description: "Segmentation".into(),
                ..Default::default()
            },
        };
        let cases = basic_cases(&files, &mut refused);
        ("basic", cases, seg)
    };
    // Every SEG of the run would have these segments: refused before anything is converted.
    let max_segments = budget.limits.convert.max_segments;
    if seg.labels.len() > max_segments {
        return Err(PlanError::TooManyLabels {
            count: seg.labels.len(),
            file: if layout == "basic" {
                "seg_info.json"
            } else {
                "dataset.json"
            },
            max: max_segments,
        });
    }
    for f in &files {
        let lower = f.path.to_ascii_lowercase();
        if nifti_stem(&f.path).is_none() && !lower.ends_with(".json") {
            ignored.push(f.path.clone());
        }
    }
    if !ignored.is_empty() {
        let shown: Vec<&str> = ignored.iter().take(10).map(String::as_str).collect();
        logs.push(format!(
            "ignored {} files that are neither NIfTI nor JSON: {}{}",
            ignored.len(),
            shown.join(", "),
            if ignored.len() > 10 { ", …" } else { "" }
        ));
    }
    Ok(Plan {
        layout,
        cases,
        refused,
        seg,
        meta,
        logs,
    })
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The basic layout: every NIfTI is a case, except label maps (`_segmentation`, `segs/`).
pub(super) fn basic_cases(files: &[FileRef], refused: &mut Vec<(String, String)>) -> Vec<CaseSpec> {
    const SUFFIX: &str = "_segmentation";
    let in_dir = |f: &FileRef, d: &str| f.dir() == d || f.dir().ends_with(&format!("/{d}"));
    let mut volumes: Vec<&FileRef> = Vec::new();
    let mut segs: Vec<&FileRef> = Vec::new();
    for f in files.iter().filter(|f| nifti_stem(&f.path).is_some()) {
        let stem = nifti_stem(f.base()).unwrap_or_default();
        if in_dir(f, "segs") || stem.to_ascii_lowercase().ends_with(SUFFIX) {
            segs.push(f);
        } else {
            volumes.push(f);
        }
    }
    // Key of a volume: its path without extension; a label map names it by that key.
    let key_of = |f: &FileRef| nifti_stem(&f.path).unwrap_or_default().to_string();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (n, v) in volumes.iter().enumerate() {
        by_key.insert(key_of(v), n);
    }
    let mut labels: Vec<Option<FileRef>> = vec![None; volumes.len()];
    for s in segs {
        let stem = nifti_stem(s.base()).unwrap_or_default();
        let stem = if stem.to_ascii_lowercase().ends_with(SUFFIX) {
            &stem[..stem.len() - SUFFIX.len()]
        } else {
            stem
        };
        let dir = s.dir();
        let mut wanted = vec![join(dir, stem)];
        if in_dir(s, "segs") {
            let parent = dir.rsplit_once('/').map(|p| p.0).unwrap_or("");
            wanted.insert(0, join(&join(parent, "cases"), stem));
        }
        match wanted.iter().find_map(|k| by_key.get(k)) {
            Some(&n) if labels[n].is_none() => labels[n] = Some(s.clone()),
            Some(&n) => refused.push((
                s.path.clone(),
                format!(
                    "a second label map for {} (already {}); not imported",
                    volumes[n].path,
                    labels[n].as_ref().map(|l| l.path.as_str()).unwrap_or("")
                ),
            )),
            None => refused.push((
                s.path.clone(),
                format!(
                    "label map without its image (expected {}.nii.gz); not imported",
                    wanted[0]
                ),
            )),
        }
    }
    // Case ids: the file name without extension, or the path when names repeat.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in &volumes {
        *counts
            .entry(nifti_stem(v.base()).unwrap_or_default())
            .or_default() += 1;
    }
    volumes
        .iter()
        .zip(labels)
        .map(|(v, labels)| {
            let stem = nifti_stem(v.base()).unwrap_or_default();
            let id = if counts[stem] > 1 {
                key_of(v)
            } else {
                stem.to_string()
            };
            CaseSpec {
                id: id.clone(),
                images: vec![ImageSpec {
                    file: (*v).clone(),
                    seed: "image".into(),
                    description: stem.chars().take(64).collect(),
                    number: 1,
                    modality_guess: None,
                }],
                labels,
                errors: Vec::new(),
            }
        })
        .collect()
}

/// DICOM modality guessed from an nnU-Net channel name.
pub(super) fn modality_of_channel(name: &str) -> Option<String> {
    let n = name.trim().to_ascii_uppercase();
    let m = match n.as_str() {
        "CT" => "CT",
        "MR" | "MRI" => "MR",
        "PT" | "PET" => "PT",
        _ if n.starts_with("T1")
            || n.starts_with("T2")
            || n.contains("FLAIR")
            || n.contains("MRI")
            || n == "ADC"
            || n.starts_with("DWI") =>
        {
            "MR"
        }
        _ => return None,
    };
    Some(m.into())
}

/// The nnU-Net v2 layout: cases from `imagesTr/` and `imagesTs/`, labels from `labelsTr/`
/// (and `labelsTs/`).
pub(super) fn nnunet_cases(
    files: &[FileRef],
    root: &str,
    ds: &NnDataset,
    refused: &mut Vec<(String, String)>,
) -> Vec<CaseSpec> {
    let ending = ds.file_ending.to_ascii_lowercase();
    let strip = |f: &FileRef| -> Option<String> {
        let base = f.base();
        base.to_ascii_lowercase()
            .ends_with(&ending)
            .then(|| base[..base.len() - ending.len()].to_string())
    };
    // (split, case) → channel → file
    let mut cases: BTreeMap<(&str, String), BTreeMap<usize, FileRef>> = BTreeMap::new();
    let mut label_files: HashMap<(&str, String), FileRef> = HashMap::new();
    for f in files {
        let split = ["imagesTr", "imagesTs", "labelsTr", "labelsTs"]
            .into_iter()
            .find(|s| f.dir() == join(root, s));
        let Some(split) = split else { continue };
        let Some(name) = strip(f) else {
            if nifti_stem(&f.path).is_some() {
                refused.push((
                    f.path.clone(),
                    format!(
                        "does not end with the file_ending {:?} of dataset.json",
                        ds.file_ending
                    ),
                ));
            }
            continue;
        };
        if let Some(kind) = split.strip_prefix("labels") {
            let images = if kind == "Tr" { "imagesTr" } else { "imagesTs" };
            label_files.insert((images, name), f.clone());
            continue;
        }
        let parsed = name.rsplit_once('_').and_then(|(case, ch)| {
            (ch.len() == 4 && ch.bytes().all(|b| b.is_ascii_digit()) && !case.is_empty())
                .then(|| (case.to_string(), ch.parse::<usize>().unwrap_or(0)))
        });
        match parsed {
            Some((case, ch)) => {
                cases
                    .entry((split, case))
                    .or_default()
                    .insert(ch, f.clone());
            }
            None => refused.push((
                f.path.clone(),
                format!(
                    "not named CASE_XXXX{} (a channel number of 4 digits); not imported",
                    ds.file_ending
                ),
            )),
        }
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (_, case) in cases.keys() {
        *ids.entry(case.clone()).or_default() += 1;
    }
    let mut out = Vec::new();
    for ((split, case), channels) in cases {
        let id = if ids[&case] > 1 {
            format!("{split}/{case}")
        } else {
            case.clone()
        };
        let mut errors = Vec::new();
        for (i, name) in &ds.channels {
            if !channels.contains_key(i) {
                errors.push(format!(
                    "channel {i} ({name}) is missing: expected {}",
                    join(
                        &join(root, split),
                        &format!("{case}_{i:04}{}", ds.file_ending)
                    )
                ));
            }
        }
        let images: Vec<ImageSpec> = channels
            .into_iter()
            .map(|(i, file)| {
                let name = ds
                    .channels
                    .iter()
                    .find(|(c, _)| *c == i)
                    .map(|(_, n)| n.clone())
                    .unwrap_or_else(|| format!("channel {i}"));
                ImageSpec {
                    file,
                    seed: format!("{i:04}"),
                    description: name.chars().take(64).collect(),
                    number: i as i64 + 1,
                    modality_guess: modality_of_channel(&name),
                }
            })
            .collect();
        let mut labels = label_files.remove(&(split, case.clone()));
        if labels.is_some() && images.first().is_some_and(|im| !im.seed.ends_with("0000")) {
            errors.push(format!(
                "the label map needs channel 0 as its source; {} not converted",
                labels.as_ref().map(|l| l.path.as_str()).unwrap_or("")
            ));
            labels = None;
        }
        out.push(CaseSpec {
            id,
            images,
            labels,
            errors,
        });
    }
    let mut orphans: Vec<FileRef> = label_files.into_values().collect();
    orphans.sort_by(|a, b| a.path.cmp(&b.path));
    for l in orphans {
        refused.push((
            l.path.clone(),
            "label map without images (no CASE_XXXX_0000 file for it); not imported".into(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(paths: &[&str]) -> Vec<FileRef> {
        paths
            .iter()
            .enumerate()
            .map(|(index, p)| FileRef {
                path: p.to_string(),
                index,
            })
            .collect()
    }

    #[test]
    fn basic_layouts_pair_label_maps() {
        let mut refused = Vec::new();
        let cases = basic_cases(
            &refs(&[
                "Case00.nii.gz",
                "Case00_segmentation.nii.gz",
                "Case01.nii",
                "cases/Case02.nii.gz",
                "segs/Case02.nii.gz",
                "Orphan_segmentation.nii.gz",
            ]),
            &mut refused,
        );
        let got: Vec<(String, Option<String>)> = cases
            .iter()
            .map(|c| (c.id.clone(), c.labels.as_ref().map(|l| l.path.clone())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Case00".into(), Some("Case00_segmentation.nii.gz".into())),
                ("Case01".into(), None),
                ("Case02".into(), Some("segs/Case02.nii.gz".into())),
            ]
        );
        assert_eq!(refused.len(), 1);
        assert!(refused[0].1.contains("without its image"), "{refused:?}");
    }

    #[test]
    fn nnunet_cases_group_channels() {
        let ds = parse_dataset(&json!({
            "channel_names": {"0": "CT", "1": "PET"},
            "labels": {"background": 0, "liver": 1, "tumour": "2"},
            "file_ending": ".nii.gz",
            "name": "Dataset001_Liver"
        }))
        .unwrap();
        assert_eq!(ds.labels, vec![(1, "liver".into()), (2, "tumour".into())]);
        let mut refused = Vec::new();
        let cases = nnunet_cases(
            &refs(&[
                "imagesTr/liver_001_0000.nii.gz",
                "imagesTr/liver_001_0001.nii.gz",
                "labelsTr/liver_001.nii.gz",
                "imagesTs/liver_009_0000.nii.gz",
                "labelsTr/liver_404.nii.gz",
            ]),
            "",
            &ds,
            &mut refused,
        );
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].id, "liver_001");
        assert_eq!(cases[0].images.len(), 2);
        assert_eq!(cases[0].images[1].description, "PET");
        assert_eq!(cases[0].images[1].modality_guess.as_deref(), Some("PT"));
        assert!(cases[0].labels.is_some());
        assert_eq!(cases[1].id, "liver_009");
        assert!(cases[1].errors[0].contains("channel 1 (PET) is missing"));
        assert_eq!(refused.len(), 1, "{refused:?}");
    }
}
