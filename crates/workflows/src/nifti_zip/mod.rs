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

mod conversion;
mod error;
mod layout;
mod manifest;

use crate::driver;
use crate::upload::{self, Budget};
use crate::{
    ImportLimits, ParamSpec, ParamType, Recorder, WorkflowError, WorkflowSpec, Workflows,
    IMPORT_NIFTIS,
};
use radport_convert::{self as convert, Tag};
use serde_json::json;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tokio::sync::mpsc::Sender;

use conversion::*;
use error::*;
use layout::*;
use manifest::*;

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

/// The workflow as `GET /api/workflows` lists it: what it does and its parameters (the
/// fields of [`Params`]).
pub(crate) fn spec() -> WorkflowSpec {
    WorkflowSpec {
        name: IMPORT_NIFTIS,
        description: "Converts a .zip of NIfTI volumes (Kaapana's basic layout with \
                          meta_data.json and seg_info.json, or an nnU-Net v2 dataset) to DICOM \
                          series, label maps to DICOM SEG, and imports them into the archive.",
        parameters: vec![
            crate::file_param(),
            crate::project_param(),
            crate::dataset_param("itk2dcm"),
            ParamSpec {
                name: "modality",
                kind: ParamType::String,
                default: json!(""),
                required: false,
                description: "Modality of the image series (CT, MR, …); empty: meta_data.json's \
                                  global 0008|0060, else the nnU-Net channel name (CT, MR, PET…), \
                                  else OT",
            },
            crate::delete_original_param(),
        ],
    }
}

/// The parameters of [`IMPORT_NIFTIS`](crate::IMPORT_NIFTIS), defaults filled in (see its
/// [`WorkflowSpec`](crate::WorkflowSpec) in [`definitions`](crate::definitions)).
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct Params {
    /// The uploaded zip, a path inside the uploads area.
    file: String,
    /// Project to import into.
    project: String,
    /// Dataset of the imported series.
    dataset: String,
    /// Modality of the image series; empty: from the layout.
    modality: String,
    /// Delete the upload once every item was imported.
    delete_original_file: bool,
}

pub(crate) async fn run(w: &Workflows, rec: &mut Recorder) -> Result<(), WorkflowError> {
    let Params {
        file,
        project,
        dataset,
        modality,
        delete_original_file: delete_original,
    } = rec.params()?;
    let (file, project, dataset, modality) = (
        file.trim().to_string(),
        project.trim().to_string(),
        dataset.trim().to_string(),
        modality.trim().to_ascii_uppercase(),
    );
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

    let upload = driver::Upload {
        file: &file,
        project: &project,
        dataset: &dataset,
        delete_original,
    };
    let ctx = Context {
        upload_name: file.rsplit('/').next().unwrap_or(&file).to_string(),
        modality: (!modality.is_empty()).then_some(modality.clone()),
        limits: w.limits,
    };
    // Conversion is CPU-heavy: the whole reading and converting side is one blocking thread.
    let read = move |path: &std::path::Path, tx: &Sender<Msg>| convert_zip(path, &ctx, tx);
    let import = NiftiImport {
        ingest_errors: HashMap::new(),
    };
    driver::run(w, rec, upload, read, import).await
}

/// The async side of the NIfTI import: each converted series ingested, item errors per case.
struct NiftiImport {
    /// Ingest failures per case, reported with the case's conversion errors.
    ingest_errors: HashMap<String, Vec<String>>,
}

impl driver::Import for NiftiImport {
    type Msg = Msg;
    const READER: &'static str = "the NIfTI converter";
    // One converted series at a time: a message holds a whole series' files.
    const QUEUE: usize = 1;

    async fn handle(
        &mut self,
        w: &Workflows,
        to: &driver::Destination,
        rec: &mut Recorder,
        msg: Msg,
    ) -> Result<(), WorkflowError> {
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
                        .ingest_part10(to.route.clone(), to.source.clone(), bytes)
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
                    self.ingest_errors
                        .entry(case.clone())
                        .or_default()
                        .push(format!(
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
                errors.extend(self.ingest_errors.remove(&case).unwrap_or_default());
                if !errors.is_empty() {
                    rec.item_error(&case, errors.join("; "));
                }
                rec.run.progress.done += 1;
                rec.progress().await;
            }
            Msg::Fatal(reason) => return Err(WorkflowError::Fatal(reason)),
        }
        Ok(())
    }

    async fn end(&mut self, _rec: &mut Recorder) {}
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

pub(crate) mod fuzzing {
    use super::*;

    /// What the import makes of `json` as the JSON file `file` (`meta_data.json`,
    /// `seg_info.json` or `dataset.json`): the parsed form (Debug) or why it is refused.
    pub fn parse_json_file(file: &str, json: &[u8]) -> Result<String, String> {
        let v: Value =
            serde_json::from_slice(json).map_err(|e| format!("{file} is not valid JSON: {e}"))?;
        match file {
            "meta_data.json" => parse_meta(&v)
                .map(|m| format!("{m:?}"))
                .map_err(|e| e.to_string()),
            "seg_info.json" => parse_seg_info(&v)
                .map(|s| format!("{s:?}"))
                .map_err(|e| e.to_string()),
            "dataset.json" => parse_dataset(&v)
                .map(|d| format!("{d:?}"))
                .map_err(|e| e.to_string()),
            other => Err(format!("{other} is none of the import's JSON files")),
        }
    }

    /// The plan of the NIfTI zip at `path`: its layout, each case's id with the zip entries it
    /// reads (their names as stored: images, then its label map), and the refused names with
    /// why. The entries' names, not the paths below a wrapping folder that the plan keeps, are
    /// what must stay inside the zip: `upload/C:x.nii.gz` is a file `C:x.nii.gz` of folder
    /// `upload`, no drive.
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
        let p = plan(&mut zip, &mut budget).map_err(|e| e.to_string())?;
        let mut entry_name = |file: &FileRef| match zip.by_index_raw(file.index) {
            Ok(entry) => upload::entry_name(&entry, file.index),
            Err(e) => format!("entry #{}: {e}", file.index),
        };
        let cases = p
            .cases
            .iter()
            .map(|c| {
                let files = c
                    .images
                    .iter()
                    .map(|i| &i.file)
                    .chain(c.labels.iter())
                    .map(&mut entry_name)
                    .collect();
                (c.id.clone(), files)
            })
            .collect();
        Ok((p.layout, cases, p.refused))
    }
}
