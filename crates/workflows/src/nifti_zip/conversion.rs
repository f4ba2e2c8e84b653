//! Converting the cases: NIfTI volumes to DICOM series, label maps to SEG, in the blocking
//! thread that streams the zip; each series goes to the async side for ingest.

use super::*;

/// Modality (0008,0060).
pub(super) const MODALITY: Tag = Tag(0x0008, 0x0060);

/// Reads, plans, converts; sends everything over `tx`. Runs in a blocking thread.
pub(super) fn convert_zip(
    path: &std::path::Path,
    ctx: &Context,
    tx: &tokio::sync::mpsc::Sender<Msg>,
) {
    let send = |m: Msg| tx.blocking_send(m).is_ok();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut zip = match upload::open_zip(path, &ctx.limits) {
        Ok(z) => z,
        Err(reason) => {
            send(Msg::Fatal(reason));
            return;
        }
    };
    let mut budget = Budget::new(ctx.limits, size);
    let plan = match plan(&mut zip, &mut budget) {
        Ok(p) => p,
        Err(reason) => {
            send(Msg::Fatal(reason.to_string()));
            return;
        }
    };
    if plan.cases.is_empty() {
        send(Msg::Fatal(match plan.refused.first() {
            Some((item, reason)) => {
                format!("no importable NIfTI volume in the zip ({item}: {reason})")
            }
            None => "no NIfTI volume (.nii.gz or .nii) in the zip".into(),
        }));
        return;
    }
    if !send(Msg::Plan {
        layout: plan.layout,
        items: plan.cases.len() + plan.refused.len(),
    }) {
        return;
    }
    for line in &plan.logs {
        if !send(Msg::Log(line.clone())) {
            return;
        }
    }
    for (item, reason) in &plan.refused {
        if !send(Msg::Refused {
            item: item.clone(),
            reason: reason.clone(),
        }) {
            return;
        }
    }
    let modality = resolve_modality(ctx, &plan.meta);
    if let Some(line) = &modality.note {
        if !send(Msg::Log(line.clone())) {
            return;
        }
    }
    let mut used_series_tags = BTreeSet::new();
    for case in &plan.cases {
        let errors = convert_case(
            &mut zip,
            &mut budget,
            ctx,
            &plan,
            &modality,
            case,
            &mut used_series_tags,
            &send,
        );
        let Some(errors) = errors else { return };
        if !send(Msg::CaseDone {
            case: case.id.clone(),
            errors,
        }) {
            return;
        }
        if budget.exhausted() {
            send(Msg::Fatal(budget.exhausted_error()));
            return;
        }
    }
    let unused: Vec<&str> = plan
        .meta
        .series
        .keys()
        .filter(|k| !used_series_tags.contains(k.as_str()))
        .map(String::as_str)
        .collect();
    if !unused.is_empty() {
        send(Msg::Log(format!(
            "meta_data.json: series_tags for files not in the zip (not used): {}",
            unused.join(", ")
        )));
    }
}

/// The modality: parameter, else meta_data.json's global 0008|0060, else per series.
pub(super) struct ModalityChoice {
    pub(super) fixed: Option<String>,
    /// Drop 0008|0060 from the global tags (the parameter wins over it).
    pub(super) drop_global: bool,
    pub(super) note: Option<String>,
}

pub(super) fn resolve_modality(ctx: &Context, meta: &Meta) -> ModalityChoice {
    let global = meta
        .global
        .iter()
        .find(|(t, _)| *t == MODALITY)
        .map(|(_, v)| v.trim().to_ascii_uppercase());
    match (&ctx.modality, global) {
        (Some(p), Some(g)) if *p != g => ModalityChoice {
            fixed: Some(p.clone()),
            drop_global: true,
            note: Some(format!(
                "modality {p} (parameter) instead of {g} (meta_data.json global_tags)"
            )),
        },
        (Some(p), _) => ModalityChoice {
            fixed: Some(p.clone()),
            drop_global: true,
            note: None,
        },
        (None, Some(g)) => ModalityChoice {
            fixed: Some(g),
            drop_global: true,
            note: None,
        },
        (None, None) => ModalityChoice {
            fixed: None,
            drop_global: false,
            note: None,
        },
    }
}

/// Converts and sends one case; returns its errors, or `None` when the receiver is gone.
#[allow(clippy::too_many_arguments)]
pub(super) fn convert_case(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
    ctx: &Context,
    plan: &Plan,
    modality: &ModalityChoice,
    case: &CaseSpec,
    used_series_tags: &mut BTreeSet<String>,
    send: &impl Fn(Msg) -> bool,
) -> Option<Vec<String>> {
    let mut errors = case.errors.clone();
    let study_seed = format!("{}/{}", ctx.upload_name, case.id);
    let patient_id: String = case.id.chars().take(64).collect();
    // Whether the label map was dealt with (converted, or its error recorded).
    let mut seg_sent = false;
    let log = |line: String| send(Msg::Log(line));
    for (n, image) in case.images.iter().enumerate() {
        let first = n == 0;
        let volume = match read_volume(zip, budget, &image.file) {
            Ok(v) => v,
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let mut extra: Vec<(Tag, String)> = plan
            .meta
            .global
            .iter()
            .filter(|(t, _)| !(modality.drop_global && *t == MODALITY))
            .cloned()
            .collect();
        match series_tags(&plan.meta, &image.file, used_series_tags) {
            Ok(tags) => extra.extend(tags),
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        }
        let modality = modality
            .fixed
            .clone()
            .or_else(|| image.modality_guess.clone())
            .unwrap_or_else(|| "OT".into());
        let mut opts = convert::SeriesOptions::new(
            &modality,
            &study_seed,
            &format!("{}/{}", case.id, image.seed),
        );
        opts.patient_id = Some(patient_id.clone());
        opts.patient_name = Some(patient_id.clone());
        opts.series_description = image.description.clone();
        opts.series_number = image.number;
        opts.extra_tags = extra;
        let series = match convert::volume_to_series(&volume, &opts) {
            Ok(s) => s,
            Err(e) => {
                errors.push(format!("{}: {e}", image.file.path));
                continue;
            }
        };
        if let Some(note) = &series.precision_note {
            if !log(format!("{}: {}: {note}", case.id, image.file.path)) {
                return None;
            }
        }
        // The SEG is made while its source volume and series are at hand, and sent right after.
        let seg = match (&case.labels, first) {
            (Some(labels), true) => {
                seg_sent = true;
                Some((
                    labels,
                    make_seg(zip, budget, plan, case, labels, &volume, &series),
                ))
            }
            _ => None,
        };
        drop(volume);
        if !send(Msg::Series {
            case: case.id.clone(),
            what: image.what(),
            files: series.files,
        }) {
            return None;
        }
        match seg {
            Some((labels, Ok((bytes, note)))) => {
                if let Some(note) = note {
                    if !log(format!("{}: {note}", case.id)) {
                        return None;
                    }
                }
                if !send(Msg::Series {
                    case: case.id.clone(),
                    what: format!("{} (SEG)", labels.path),
                    files: vec![bytes],
                }) {
                    return None;
                }
            }
            Some((_, Err(e))) => errors.push(e.to_string()),
            None => {}
        }
    }
    if let (Some(labels), false) = (&case.labels, seg_sent) {
        errors.push(format!(
            "{}: not converted: its image series {} could not be made",
            labels.path,
            case.images
                .first()
                .map(|i| i.file.path.as_str())
                .unwrap_or("(none)")
        ));
    }
    Some(errors)
}

/// Converts the label map of `case` into a SEG on `series`; returns it and a note.
pub(super) fn make_seg(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
    plan: &Plan,
    case: &CaseSpec,
    labels_file: &FileRef,
    volume: &convert::Volume,
    series: &convert::ConvertedSeries,
) -> Result<(Vec<u8>, Option<String>), FileError> {
    let limits = budget.limits.convert;
    let labels = read_volume(zip, budget, labels_file)?;
    let mut note = None;
    let listed = if plan.seg.labels.is_empty() {
        let found =
            label_values(&labels, limits.max_segments).map_err(|problem| FileError::Labels {
                file: labels_file.path.clone(),
                problem,
            })?;
        note = Some(format!(
            "{}: no label names given; segments named after the values found ({})",
            labels_file.path,
            found
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        found
            .into_iter()
            .map(|v| (v, format!("label {v}")))
            .collect()
    } else {
        plan.seg.labels.clone()
    };
    let segments: Vec<convert::Segment> = listed
        .iter()
        .map(|(v, name)| convert::Segment::from_seg_info(*v, name, &plan.seg.algorithm))
        .collect();
    let mut opts = convert::SegOptions::new(&format!("{}/seg", case.id));
    opts.series_description = plan.seg.series_description.clone();
    opts.content_description = plan.seg.content_description.clone();
    opts.ignore_unlisted_labels = plan.seg.ignore_unlisted;
    opts.limits = limits;
    let bytes =
        convert::labels_to_seg(&labels, series, volume, &segments, &opts).map_err(|source| {
            FileError::Convert {
                file: labels_file.path.clone(),
                source,
            }
        })?;
    Ok((bytes, note))
}

/// Distinct non-zero values of a label map (at most `max` of them).
pub(super) fn label_values(labels: &convert::Volume, max: usize) -> Result<Vec<u32>, LabelProblem> {
    let mut found = BTreeSet::new();
    let mut buf = Vec::new();
    for k in 0..labels.dims[2] {
        labels.slice_values(k, &mut buf);
        for &x in &buf {
            if x == 0.0 {
                continue;
            }
            if !(x > 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64) {
                return Err(LabelProblem::NotALabel(x));
            }
            found.insert(x as u32);
            if found.len() > max {
                return Err(LabelProblem::TooMany(max));
            }
        }
    }
    if found.is_empty() {
        return Err(LabelProblem::Empty);
    }
    Ok(found.into_iter().collect())
}

/// Reads one NIfTI entry into a volume, streamed from the zip through the entry limits (only as
/// much as its header needs is inflated); errors name the file.
pub(super) fn read_volume(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
    file: &FileRef,
) -> Result<convert::Volume, FileError> {
    let opts = convert::ReadOptions {
        channel: None,
        limits: budget.limits.convert,
    };
    let (_, mut reader) =
        upload::open_entry(zip, file.index, budget).map_err(|(_, reason)| FileError::Entry {
            file: file.path.clone(),
            reason,
        })?;
    let read = convert::read_nifti_from(&mut reader, &opts);
    read.map_err(|e| match (e, &reader.violation) {
        // The zip's limits, not the NIfTI reader's view of them.
        (_, Some(violation)) => FileError::Entry {
            file: file.path.clone(),
            reason: violation.to_string(),
        },
        (convert::ConvertError::FourD { channels }, _) => FileError::FourD {
            file: file.path.clone(),
            channels,
        },
        (source, _) => FileError::Convert {
            file: file.path.clone(),
            source,
        },
    })
}

/// The series_tags of `file` (keyed by its name with or without `.gz`, or its path), parsed.
pub(super) fn series_tags(
    meta: &Meta,
    file: &FileRef,
    used: &mut BTreeSet<String>,
) -> Result<Vec<(Tag, String)>, FileError> {
    let strip_gz = |s: &str| {
        if s.to_ascii_lowercase().ends_with(".gz") {
            s[..s.len() - 3].to_string()
        } else {
            s.to_string()
        }
    };
    let mut keys: Vec<String> = Vec::new();
    for key in [
        file.base().to_string(),
        strip_gz(file.base()),
        file.path.clone(),
        strip_gz(&file.path),
    ] {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let mut out = Vec::new();
    for key in keys {
        if let Some(tags) = meta.series.get(&key) {
            used.insert(key.clone());
            for (k, v) in tags {
                let tag = convert::parse_tag_key(k).map_err(|source| FileError::SeriesTag {
                    file: file.path.clone(),
                    key: key.clone(),
                    source,
                })?;
                out.push((tag, v.clone()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NIfTI-1 header, uint8, `dims`, vox_offset `offset`, followed by `data`.
    fn nii(dims: [i16; 3], offset: f32, data: &[u8]) -> Vec<u8> {
        let dims = dims.map(|d| d as usize);
        let mut nii = radport_testkit::nifti::Nii::new(&dims, 2, data.to_vec());
        nii.vox_offset = Some(f64::from(offset));
        nii.bytes()
    }

    /// gzip with stored deflate blocks.
    fn gz(bytes: &[u8]) -> Vec<u8> {
        radport_testkit::nifti::gzip_stored(bytes)
    }

    /// A zip of stored entries.
    fn stored_zip(entries: &[(&str, Vec<u8>)]) -> tempfile::NamedTempFile {
        radport_testkit::zip::stored_zip_file(entries)
    }

    #[test]
    fn label_values_become_segments_or_say_why_not() {
        let labels = |data: &[u8]| convert::read_nifti(&nii([2, 2, 2], 352.0, data)).unwrap();
        assert_eq!(
            label_values(&labels(&[0, 3, 0, 1, 3, 0, 0, 7]), 10),
            Ok(vec![1, 3, 7])
        );
        assert_eq!(label_values(&labels(&[0; 8]), 10), Err(LabelProblem::Empty));
        assert_eq!(
            label_values(&labels(&[1, 2, 3, 4, 0, 0, 0, 0]), 3),
            Err(LabelProblem::TooMany(3))
        );
        let e = FileError::Labels {
            file: "labels/case1.nii.gz".into(),
            problem: LabelProblem::TooMany(3),
        };
        assert_eq!(
            e.to_string(),
            "labels/case1.nii.gz: label map: more than 3 distinct values (the segment limit) \
             and no seg_info.json to name them"
        );
    }

    #[test]
    fn hostile_volumes_and_json_fail_their_item_or_run_with_a_reason() {
        let mut huge_offset = nii([2, 2, 2], 4294967296.0, &[]);
        huge_offset.extend(vec![0u8; 1 << 10]);
        // NIfTI-2, uint8, dims multiplying past 2^64.
        let mut overflowing = radport_testkit::nifti::Nii::new(&[32768, 32768, 1 << 34], 2, vec![]);
        overflowing.version = 2;
        let nifti2 = overflowing.bytes();
        let tmp = stored_zip(&[
            ("offset.nii.gz", gz(&huge_offset)),
            ("overflow.nii", nifti2),
            ("big.nii", nii([64, 64, 64], 352.0, &vec![1u8; 1 << 18])),
            ("ok.nii.gz", gz(&nii([2, 2, 2], 352.0, &[5; 8]))),
        ]);
        let limits = ImportLimits {
            max_entry_bytes: 64 << 10,
            ..Default::default()
        };
        let mut zip = upload::open_zip(tmp.path(), &limits).unwrap();
        let mut budget = Budget::new(limits, 1 << 20);
        let file = |index: usize, path: &str| FileRef {
            path: path.into(),
            index,
        };
        let e = read_volume(&mut zip, &mut budget, &file(0, "offset.nii.gz")).unwrap_err();
        assert!(matches!(e, FileError::Convert { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("offset.nii.gz") && e.contains("extensions"),
            "{e}"
        );
        let e = read_volume(&mut zip, &mut budget, &file(1, "overflow.nii"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflow"), "{e}");
        let e = read_volume(&mut zip, &mut budget, &file(2, "big.nii"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("declares") || e.contains("limit for one entry"),
            "{e}"
        );
        let v = read_volume(&mut zip, &mut budget, &file(3, "ok.nii.gz")).unwrap();
        assert_eq!(v.dims, [2, 2, 2]);
        assert!(
            budget.inflated() < 64 << 10,
            "inflated {}",
            budget.inflated()
        );

        // JSON files over the limit stop the run before anything is converted.
        let mut meta = b"{\"global_tags\": {}, \"pad\": \"".to_vec();
        meta.extend(vec![b'x'; 2 << 20]);
        meta.extend_from_slice(b"\"}");
        let tmp = stored_zip(&[
            ("Case0.nii.gz", gz(&nii([2, 2, 2], 352.0, &[5; 8]))),
            ("meta_data.json", meta),
        ]);
        let mut zip = upload::open_zip(tmp.path(), &ImportLimits::default()).unwrap();
        let mut budget = Budget::new(ImportLimits::default(), 4 << 20);
        let e = plan(&mut zip, &mut budget).err().unwrap();
        assert!(matches!(e, PlanError::Unread(_)), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("meta_data.json") && e.contains("larger than"),
            "{e}"
        );

        // More labels than a SEG may have segments: refused before anything is converted.
        let labels: Vec<String> = (1..=1001)
            .map(|v| format!("{{\"label_name\":\"l{v}\",\"label_int\":{v}}}"))
            .collect();
        let seg_info = format!("{{\"seg_info\":[{}]}}", labels.join(",")).into_bytes();
        let tmp = stored_zip(&[
            ("Case0.nii.gz", gz(&nii([2, 2, 2], 352.0, &[5; 8]))),
            ("seg_info.json", seg_info),
        ]);
        let mut zip = upload::open_zip(tmp.path(), &ImportLimits::default()).unwrap();
        let mut budget = Budget::new(ImportLimits::default(), 4 << 20);
        let e = plan(&mut zip, &mut budget).err().unwrap();
        assert!(
            matches!(
                e,
                PlanError::TooManyLabels {
                    count: 1001,
                    max: 1000,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(
            e.contains("1001 labels") && e.contains("at most 1000"),
            "{e}"
        );
    }
}
