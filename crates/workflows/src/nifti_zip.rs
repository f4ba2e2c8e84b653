//! `import-niftis-from-data-upload`: a .zip of NIfTI volumes (and label maps) from the uploads
//! area, converted to DICOM series (and DICOM SEG) by `radport-convert` and imported through the
//! ingest path.
//!
//! Two layouts are recognised inside the zip (one folder wrapping everything is allowed):
//!
//! * **basic** (Kaapana's "basic format"): volumes `*.nii.gz` / `*.nii`, each with a unique name,
//!   an optional `meta_data.json` (`global_tags`, `series_tags`, keys `"gggg|eeee"`) and an
//!   optional `seg_info.json` (`algorithm`, `task_body_part`, `seg_info: [{label_name,
//!   label_int}]`). A label map is `CaseNN_segmentation.nii.gz` beside `CaseNN.nii.gz`, or
//!   `segs/CaseNN.nii.gz` beside `cases/CaseNN.nii.gz`.
//! * **nnU-Net v2**: `dataset.json` (`channel_names`, `labels`, `file_ending`, `name`, …) beside
//!   `imagesTr/`, `imagesTs/`, `labelsTr/` (and `labelsTs/` when present); images
//!   `CASE_XXXX_0000.nii.gz`, one per channel; labels `CASE_XXXX.nii.gz`. Each channel is one
//!   series of the case's study; the label map is a SEG on the channel-0 series, with
//!   "Ground truth" (MANUAL) segments named after `labels`.
//!
//! One case is one item. A case that cannot be converted (truncated file, label map on another
//! grid, bad tag key in its `series_tags`, 4-D volume…) is an item error with its reason; what
//! did convert of it is still imported, and the other cases go on. A `meta_data.json`,
//! `seg_info.json` or `dataset.json` that is not JSON or has the wrong shape stops the run
//! before anything is imported: those files describe every case, so no case can be trusted
//! without them.
//!
//! UIDs are derived from seeds: the study from `<upload file name>/<case>`, the series from
//! `<case>/<channel>` (or `image`), the SEG from its source series and `<case>/seg`, so
//! importing the same zip again gives the same instances (kept once by the catalog).
//!
//! Everything but ingest runs in one blocking thread (reading the zip, parsing, converting);
//! series go to the async side one at a time over a channel of one slot, so memory holds about
//! one volume, its label map and two series.
//!
//! Hostile input ([`crate::ImportLimits`]): a NIfTI entry is streamed from the zip into
//! [`radport_convert::read_nifti_from`], which checks its header against the limits before
//! allocating and inflates only as far as the header needs; the zip's own limits (entry size
//! counted as it inflates, ratio, archive total) apply on the way and are reported as such.
//! JSON files over `max_json_bytes` stop the run, and so do more labels than a SEG may have
//! segments; a case over a volume or SEG limit is an item error.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use radport_catalog::Route;
use radport_convert::{self as convert, Tag};
use serde_json::Value;

use crate::upload::{self, Budget};
use crate::{ImportLimits, Recorder, WorkflowError, Workflows};

/// Modality (0008,0060).
const MODALITY: Tag = Tag(0x0008, 0x0060);

/// What the converting thread tells the async side.
enum Msg {
    /// How many items there are, and which layout was found.
    Plan {
        layout: &'static str,
        items: usize,
    },
    Log(String),
    /// An entry that is not imported and belongs to no case (unsafe name, orphan label map).
    Refused {
        item: String,
        reason: String,
    },
    /// One converted series of a case (image or SEG): its files, to ingest now.
    Series {
        case: String,
        what: String,
        files: Vec<Vec<u8>>,
    },
    /// A case is finished: its conversion errors (empty: all well).
    CaseDone {
        case: String,
        errors: Vec<String>,
    },
    /// The run cannot go on.
    Fatal(String),
}

pub(crate) async fn run(w: &Workflows, rec: &mut Recorder) -> Result<(), WorkflowError> {
    let params = rec.run.params.clone();
    let text = |k: &str| params[k].as_str().unwrap_or_default().trim().to_string();
    let (file, project, dataset, modality) = (
        text("file"),
        text("project"),
        text("dataset"),
        text("modality").to_ascii_uppercase(),
    );
    let delete_original = params["delete_original_file"].as_bool().unwrap_or(true);
    if !modality.is_empty()
        && (modality.len() > 16
            || !modality
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b' '))
    {
        return Err(WorkflowError::Fatal(format!(
            "modality {modality:?} is not a DICOM Modality value (e.g. CT, MR, PT, OT)"
        )));
    }

    let upload::Prepared {
        project,
        key,
        scratch,
    } = upload::prepare(w, rec, &file, &project, &dataset).await?;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Msg>(1);
    let path = scratch.path().to_path_buf();
    let ctx = Context {
        upload_name: file.rsplit('/').next().unwrap_or(&file).to_string(),
        modality: (!modality.is_empty()).then_some(modality),
        limits: w.limits,
    };
    // Conversion is CPU-heavy: the whole reading and converting side is one blocking thread.
    let reader = tokio::task::spawn_blocking(move || convert_zip(&path, &ctx, &tx));

    let route = Route { project, dataset };
    let source = format!("upload:{file}");
    // Ingest failures per case, reported with the case's conversion errors.
    let mut ingest_errors: HashMap<String, Vec<String>> = HashMap::new();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Plan { layout, items } => {
                rec.run.progress.total = items as i64;
                rec.log(format!("{layout} layout: {items} items to import"))
                    .await;
            }
            Msg::Log(line) => rec.log(line).await,
            Msg::Refused { item, reason } => {
                rec.item_error(&item, reason);
                rec.run.progress.done += 1;
                rec.progress().await;
            }
            Msg::Series { case, what, files } => {
                let mut failed = 0usize;
                let mut first_error = None;
                let mut uid = None;
                for bytes in &files {
                    match w
                        .ingestor
                        .ingest_part10(route.clone(), source.clone(), bytes)
                        .await
                    {
                        Ok(outcome) => {
                            rec.series(&outcome.series_instance_uid);
                            uid = Some(outcome.series_instance_uid);
                        }
                        Err(e) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                if let Some(e) = first_error {
                    ingest_errors.entry(case.clone()).or_default().push(format!(
                        "{what}: {failed} of {} instances not imported: {e}",
                        files.len()
                    ));
                }
                rec.log(format!(
                    "{case}: {what}: {} instances{}",
                    files.len() - failed,
                    uid.map(|u| format!(" in series {u}")).unwrap_or_default()
                ))
                .await;
            }
            Msg::CaseDone { case, mut errors } => {
                errors.extend(ingest_errors.remove(&case).unwrap_or_default());
                if !errors.is_empty() {
                    rec.item_error(&case, errors.join("; "));
                }
                rec.run.progress.done += 1;
                rec.progress().await;
            }
            Msg::Fatal(reason) => return Err(WorkflowError::Fatal(reason)),
        }
    }
    reader
        .await
        .map_err(|e| WorkflowError::Fatal(format!("the NIfTI converter stopped: {e}")))?;
    drop(scratch);
    upload::finish(w, rec, &key, &file, delete_original).await
}

/// Run-wide settings handed to the converting thread.
struct Context {
    /// File name of the upload (seed of the study UIDs).
    upload_name: String,
    /// The `modality` parameter, when given.
    modality: Option<String>,
    /// Zip, JSON, NIfTI and SEG limits.
    limits: ImportLimits,
}

/// A file of the zip: its path (below the wrapping folder, if any) and its index.
#[derive(Clone, Debug)]
struct FileRef {
    path: String,
    index: usize,
}

impl FileRef {
    fn base(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    fn dir(&self) -> &str {
        self.path
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or_default()
    }
}

/// `name` without `.nii.gz` / `.nii` (any case), or `None` when it is no NIfTI name.
fn nifti_stem(name: &str) -> Option<&str> {
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
struct ImageSpec {
    file: FileRef,
    /// Seed part after the case id (`image`, or the nnU-Net channel number).
    seed: String,
    description: String,
    number: i64,
    /// Modality when neither the parameter nor meta_data.json give one.
    modality_guess: Option<String>,
}

impl ImageSpec {
    /// How logs name the series: its file, and its channel name (nnU-Net).
    fn what(&self) -> String {
        if self.seed == "image" {
            self.file.path.clone()
        } else {
            format!("{} ({})", self.file.path, self.description)
        }
    }
}

/// One case: its image series (the first is the SEG's source) and label map.
#[derive(Debug)]
struct CaseSpec {
    id: String,
    images: Vec<ImageSpec>,
    labels: Option<FileRef>,
    /// Problems found while planning (a missing channel…), reported with the case.
    errors: Vec<String>,
}

/// How label maps become segments.
#[derive(Debug, Default)]
struct SegSpec {
    /// `(label value, name)`; empty: one segment per value found in the map.
    labels: Vec<(u32, String)>,
    algorithm: String,
    series_description: String,
    content_description: Option<String>,
    /// Values in the map that `labels` does not list are ignored (nnU-Net regions).
    ignore_unlisted: bool,
}

/// `meta_data.json`.
#[derive(Debug, Default)]
struct Meta {
    global: Vec<(Tag, String)>,
    /// File name → (key, value), keys parsed per case.
    series: BTreeMap<String, Vec<(String, String)>>,
}

/// The planned run.
struct Plan {
    layout: &'static str,
    cases: Vec<CaseSpec>,
    refused: Vec<(String, String)>,
    seg: SegSpec,
    meta: Meta,
    logs: Vec<String>,
}

/// Reads, plans, converts; sends everything over `tx`. Runs in a blocking thread.
fn convert_zip(path: &std::path::Path, ctx: &Context, tx: &tokio::sync::mpsc::Sender<Msg>) {
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
            send(Msg::Fatal(reason));
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
struct ModalityChoice {
    fixed: Option<String>,
    /// Drop 0008|0060 from the global tags (the parameter wins over it).
    drop_global: bool,
    note: Option<String>,
}

fn resolve_modality(ctx: &Context, meta: &Meta) -> ModalityChoice {
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
fn convert_case(
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
                errors.push(e);
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
                errors.push(format!("{}: {e}", image.file.path));
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
            Some((_, Err(e))) => errors.push(e),
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
fn make_seg(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
    plan: &Plan,
    case: &CaseSpec,
    labels_file: &FileRef,
    volume: &convert::Volume,
    series: &convert::ConvertedSeries,
) -> Result<(Vec<u8>, Option<String>), String> {
    let at = |e: String| format!("{}: {e}", labels_file.path);
    let limits = budget.limits.convert;
    let labels = read_volume(zip, budget, labels_file)?;
    let mut note = None;
    let listed = if plan.seg.labels.is_empty() {
        let found = label_values(&labels, limits.max_segments).map_err(at)?;
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
    let bytes = convert::labels_to_seg(&labels, series, volume, &segments, &opts)
        .map_err(|e| at(e.to_string()))?;
    Ok((bytes, note))
}

/// Distinct non-zero values of a label map (at most `max` of them).
fn label_values(labels: &convert::Volume, max: usize) -> Result<Vec<u32>, String> {
    let mut found = BTreeSet::new();
    let mut buf = Vec::new();
    for k in 0..labels.dims[2] {
        labels.slice_values(k, &mut buf);
        for &x in &buf {
            if x == 0.0 {
                continue;
            }
            if !(x > 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64) {
                return Err(format!(
                    "label map: value {x} (labels must be non-negative integers)"
                ));
            }
            found.insert(x as u32);
            if found.len() > max {
                return Err(format!(
                    "label map: more than {max} distinct values (the segment limit) and no \
                     seg_info.json to name them"
                ));
            }
        }
    }
    if found.is_empty() {
        return Err("label map: no labelled voxel".into());
    }
    Ok(found.into_iter().collect())
}

/// Reads one NIfTI entry into a volume, streamed from the zip through the entry limits (only as
/// much as its header needs is inflated); errors name the file.
fn read_volume(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
    file: &FileRef,
) -> Result<convert::Volume, String> {
    let opts = convert::ReadOptions {
        channel: None,
        limits: budget.limits.convert,
    };
    let (_, mut reader) = upload::open_entry(zip, file.index, budget)
        .map_err(|(_, why)| format!("{}: {why}", file.path))?;
    let read = convert::read_nifti_from(&mut reader, &opts);
    read.map_err(|e| match (e, &reader.violation) {
        // The zip's limits, not the NIfTI reader's view of them.
        (_, Some(violation)) => format!("{}: {violation}", file.path),
        (convert::ConvertError::FourD { channels }, _) => format!(
            "{}: 4-D volume ({channels} volumes along the 4th dimension): only 3-D volumes are \
             imported; save one file per volume (nnU-Net: one file per channel, _0000, _0001 …)",
            file.path
        ),
        (e, _) => format!("{}: {e}", file.path),
    })
}

/// The series_tags of `file` (keyed by its name with or without `.gz`, or its path), parsed.
fn series_tags(
    meta: &Meta,
    file: &FileRef,
    used: &mut BTreeSet<String>,
) -> Result<Vec<(Tag, String)>, String> {
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
                let tag = convert::parse_tag_key(k)
                    .map_err(|e| format!("meta_data.json series_tags[{key:?}]: {e}"))?;
                out.push((tag, v.clone()));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Planning: entries, layout, JSON files.

/// Lists the zip, detects the layout and reads its JSON files.
fn plan(zip: &mut zip::ZipArchive<std::fs::File>, budget: &mut Budget) -> Result<Plan, String> {
    let mut files: Vec<FileRef> = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    // Names that differ only by `.` or empty parts name one file: the first one is used.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| format!("not a readable .zip file: entry #{i}: {e}"))?;
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
    let find = |names: &[&str]| -> Result<Option<FileRef>, String> {
        let found: Vec<&FileRef> = files
            .iter()
            .filter(|f| names.contains(&f.base().to_ascii_lowercase().as_str()))
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some((*one).clone())),
            many => Err(format!(
                "{} found {} times ({}); keep one per zip",
                names[0],
                many.len(),
                many.iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    };
    let dataset_json = find(&["dataset.json"])?;
    let meta_file = find(&["meta_data.json", "meta-data.json"])?;
    let meta = match &meta_file {
        Some(f) => parse_meta(&read_json(zip, budget, f)?)
            .map_err(|e| format!("{} is not usable: {e}", f.path))?,
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
        let ds = parse_dataset(&read_json(zip, budget, &dj)?)
            .map_err(|e| format!("{} is not usable: {e}", dj.path))?;
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
                let s = parse_seg_info(&read_json(zip, budget, f)?)
                    .map_err(|e| format!("{} is not usable: {e}", f.path))?;
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
        return Err(format!(
            "{} labels are listed ({}); a SEG may have at most {max_segments} segments",
            seg.labels.len(),
            if layout == "basic" {
                "seg_info.json"
            } else {
                "dataset.json"
            }
        ));
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

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads and parses a JSON file of the zip (at most `max_json_bytes`).
fn read_json(
    zip: &mut zip::ZipArchive<std::fs::File>,
    budget: &mut Budget,
    file: &FileRef,
) -> Result<Value, String> {
    let max = budget.limits.max_json_bytes;
    let bytes = upload::read_small_entry(zip, file.index, budget, max)
        .map_err(|e| format!("{}: {e}", file.path))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not valid JSON: {e}", file.path))
}

/// A JSON string or number as text.
fn text_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_meta(v: &Value) -> Result<Meta, String> {
    let obj = v
        .as_object()
        .ok_or("expected an object with \"global_tags\" and \"series_tags\"")?;
    let mut meta = Meta::default();
    let tag_map = |v: &Value, what: &str| -> Result<Vec<(String, String)>, String> {
        let o = v
            .as_object()
            .ok_or_else(|| format!("{what} must be an object of \"gggg|eeee\": value"))?;
        o.iter()
            .map(|(k, v)| {
                text_value(v)
                    .map(|t| (k.clone(), t))
                    .ok_or_else(|| format!("{what}[{k:?}] must be a string or a number"))
            })
            .collect()
    };
    if let Some(g) = obj.get("global_tags") {
        for (k, v) in tag_map(g, "global_tags")? {
            let tag = convert::parse_tag_key(&k).map_err(|e| format!("global_tags: {e}"))?;
            meta.global.push((tag, v));
        }
    }
    if let Some(s) = obj.get("series_tags") {
        let o = s
            .as_object()
            .ok_or("series_tags must be an object: file name → tags")?;
        for (file, tags) in o {
            let tags = tag_map(tags, &format!("series_tags[{file:?}]"))?;
            meta.series.insert(file.clone(), tags);
        }
    }
    Ok(meta)
}

fn parse_label_int(v: &Value, what: &str) -> Result<u32, String> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 && n <= u32::MAX as u64 => Ok(n as u32),
        Some(0) => Err(format!("{what}: 0 is the background")),
        _ => Err(format!(
            "{what} must be a positive integer (or a string of one), not {v}"
        )),
    }
}

fn parse_seg_info(v: &Value) -> Result<SegSpec, String> {
    let obj = v
        .as_object()
        .ok_or("expected an object with \"algorithm\" and \"seg_info\"")?;
    let opt_text = |k: &str| -> Result<String, String> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(other) => Err(format!("\"{k}\" must be a string, not {other}")),
        }
    };
    let algorithm = opt_text("algorithm")?;
    let body_part = opt_text("task_body_part")?;
    let list = obj
        .get("seg_info")
        .ok_or("\"seg_info\" is missing: a list of {\"label_name\", \"label_int\"}")?
        .as_array()
        .ok_or("\"seg_info\" must be a list of {\"label_name\", \"label_int\"}")?;
    let mut labels = Vec::new();
    for (n, item) in list.iter().enumerate() {
        let what = format!("seg_info[{n}]");
        let o = item
            .as_object()
            .ok_or_else(|| format!("{what} must be an object"))?;
        let name = match o.get("label_name") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Err(format!("{what}.label_name must be a non-empty string")),
        };
        let value = parse_label_int(
            o.get("label_int").unwrap_or(&Value::Null),
            &format!("{what}.label_int"),
        )?;
        if labels.iter().any(|(v, _)| *v == value) {
            return Err(format!("{what}: label_int {value} is listed twice"));
        }
        labels.push((value, name));
    }
    if labels.is_empty() {
        return Err("\"seg_info\" is empty".into());
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

/// The basic layout: every NIfTI is a case, except label maps (`_segmentation`, `segs/`).
fn basic_cases(files: &[FileRef], refused: &mut Vec<(String, String)>) -> Vec<CaseSpec> {
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

/// `dataset.json` of nnU-Net v2.
#[derive(Debug, Default)]
struct NnDataset {
    channels: Vec<(usize, String)>,
    labels: Vec<(u32, String)>,
    regions: bool,
    file_ending: String,
    name: String,
    description: String,
    notes: Vec<String>,
}

fn parse_dataset(v: &Value) -> Result<NnDataset, String> {
    let obj = v
        .as_object()
        .ok_or("expected an object with \"channel_names\", \"labels\", \"file_ending\"")?;
    let mut ds = NnDataset::default();
    let channels = obj
        .get("channel_names")
        .or_else(|| obj.get("modality"))
        .ok_or("\"channel_names\" is missing (e.g. {\"0\": \"CT\"})")?
        .as_object()
        .ok_or("\"channel_names\" must be an object like {\"0\": \"CT\"}")?;
    for (k, v) in channels {
        let i: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("channel_names key {k:?} is not a channel number"))?;
        let name = v
            .as_str()
            .ok_or_else(|| format!("channel_names[{k:?}] must be a string"))?;
        ds.channels.push((i, name.trim().to_string()));
    }
    ds.channels.sort();
    if ds.channels.is_empty() {
        return Err("\"channel_names\" is empty".into());
    }
    let labels = obj
        .get("labels")
        .ok_or("\"labels\" is missing (e.g. {\"background\": 0, \"liver\": 1})")?
        .as_object()
        .ok_or("\"labels\" must be an object: name → integer")?;
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
            _ => return Err(format!("labels[{name:?}] must be an integer, not {v}")),
        }
        let value = match parse_label_int(v, &format!("labels[{name:?}]")) {
            Ok(value) => value,
            Err(_) if v.as_u64() == Some(0) || v.as_str().map(str::trim) == Some("0") => continue,
            Err(e) => return Err(e),
        };
        if ds.labels.iter().any(|(x, _)| *x == value) {
            return Err(format!("labels: value {value} is listed twice"));
        }
        ds.labels.push((value, name.clone()));
    }
    ds.labels.sort();
    if ds.labels.is_empty() {
        return Err("\"labels\" names no label besides the background".into());
    }
    ds.file_ending = match obj.get("file_ending") {
        None => ".nii.gz".into(),
        Some(Value::String(s)) if nifti_stem(&format!("x{s}")) == Some("x") => s.clone(),
        Some(other) => {
            return Err(format!(
                "file_ending must be \".nii.gz\" or \".nii\" (NIfTI), not {other}"
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

/// DICOM modality guessed from an nnU-Net channel name.
fn modality_of_channel(name: &str) -> Option<String> {
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
fn nnunet_cases(
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
        use std::io::Write;
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(tmp.reopen().unwrap());
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        for (name, bytes) in entries {
            zip.start_file(*name, o).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        tmp
    }

    #[test]
    fn hostile_volumes_and_json_fail_their_item_or_run_with_a_reason() {
        let mut huge_offset = nii([2, 2, 2], 4294967296.0, &[]);
        huge_offset.extend(vec![0u8; 1 << 10]);
        let mut nifti2 = vec![0u8; 544];
        nifti2[0..4].copy_from_slice(&540i32.to_le_bytes());
        nifti2[4..12].copy_from_slice(b"n+2\0\r\n\x1a\n");
        nifti2[12..14].copy_from_slice(&2i16.to_le_bytes());
        nifti2[14..16].copy_from_slice(&8i16.to_le_bytes());
        for (a, d) in [3i64, 32768, 32768, 1 << 34].iter().enumerate() {
            nifti2[16 + 8 * a..24 + 8 * a].copy_from_slice(&d.to_le_bytes());
        }
        nifti2[168..176].copy_from_slice(&544i64.to_le_bytes());
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
        assert!(
            e.contains("offset.nii.gz") && e.contains("extensions"),
            "{e}"
        );
        let e = read_volume(&mut zip, &mut budget, &file(1, "overflow.nii")).unwrap_err();
        assert!(e.contains("overflow"), "{e}");
        let e = read_volume(&mut zip, &mut budget, &file(2, "big.nii")).unwrap_err();
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
            e.contains("1001 labels") && e.contains("at most 1000"),
            "{e}"
        );
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

    #[test]
    fn json_files_are_checked() {
        assert!(parse_meta(&json!({"global_tags": {"0008|0060": "MR"}})).is_ok());
        let e = parse_meta(&json!({"global_tags": {"0008-0060": "MR"}})).unwrap_err();
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

/// For the fuzz targets (fuzz/): the planning step and the JSON parsers, on their own.
pub(crate) mod fuzzing {
    use super::*;

    /// What the import makes of `json` as the JSON file `file` (`meta_data.json`,
    /// `seg_info.json` or `dataset.json`): the parsed form (Debug) or why it is refused.
    pub fn parse_json_file(file: &str, json: &[u8]) -> Result<String, String> {
        let v: Value =
            serde_json::from_slice(json).map_err(|e| format!("{file} is not valid JSON: {e}"))?;
        match file {
            "meta_data.json" => parse_meta(&v).map(|m| format!("{m:?}")),
            "seg_info.json" => parse_seg_info(&v).map(|s| format!("{s:?}")),
            "dataset.json" => parse_dataset(&v).map(|d| format!("{d:?}")),
            other => Err(format!("{other} is none of the import's JSON files")),
        }
    }

    /// The plan of the NIfTI zip at `path`: its layout, each case's id with the files it reads
    /// (images, then its label map), and the refused names with why.
    #[allow(clippy::type_complexity)]
    pub fn nifti_plan(
        path: &std::path::Path,
        limits: &ImportLimits,
    ) -> Result<
        (
            &'static str,
            Vec<(String, Vec<String>)>,
            Vec<(String, String)>,
        ),
        String,
    > {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut zip = upload::open_zip(path, limits)?;
        let mut budget = Budget::new(*limits, size);
        let p = plan(&mut zip, &mut budget)?;
        let cases = p
            .cases
            .iter()
            .map(|c| {
                let files = c
                    .images
                    .iter()
                    .map(|i| i.file.path.clone())
                    .chain(c.labels.iter().map(|l| l.path.clone()))
                    .collect();
                (c.id.clone(), files)
            })
            .collect();
        Ok((p.layout, cases, p.refused))
    }
}
