//! `import-dicoms-from-data-upload`: a .zip of DICOM folders from the uploads area, imported
//! file by file through the ingest path.
//!
//! The zip is copied into the scratch directory and read entry by entry in a blocking thread
//! (with the limits of [`crate::upload`]: zip slip, entry size, compression ratio, total size),
//! and each entry's bytes go to the async side over a bounded channel, so memory holds at most
//! two entries. Nothing is extracted to disk.

use radport_catalog::Route;

use crate::upload::{self, MAX_TOTAL_BYTES};
use crate::{Recorder, WorkflowError, Workflows};

enum Entry {
    /// Number of items (candidate DICOM files) and names skipped by the extension filter.
    Plan { items: usize, skipped: Vec<String> },
    /// One candidate: its bytes, or why it cannot be imported.
    Item {
        name: String,
        bytes: Result<Vec<u8>, String>,
    },
    /// A candidate that turned out not to be DICOM while any file was a candidate.
    NotDicom { name: String },
    /// The archive as a whole cannot be read.
    Fatal(String),
}

pub(crate) async fn run(w: &Workflows, rec: &mut Recorder) -> Result<(), WorkflowError> {
    let params = rec.run.params.clone();
    let text = |k: &str| params[k].as_str().unwrap_or_default().to_string();
    let (file, project, dataset, extension) = (
        text("file"),
        text("project"),
        text("dataset"),
        text("extension"),
    );
    let delete_original = params["delete_original_file"].as_bool().unwrap_or(true);

    let upload::Prepared {
        project,
        key,
        scratch,
    } = upload::prepare(w, rec, &file, &project, &dataset).await?;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Entry>(2);
    let path = scratch.path().to_path_buf();
    let reader = tokio::task::spawn_blocking(move || read_entries(&path, &extension, &tx));

    let route = Route { project, dataset };
    let mut not_dicom: Vec<String> = Vec::new();
    let source = format!("upload:{file}");
    while let Some(entry) = rx.recv().await {
        match entry {
            Entry::Plan { items, skipped } => {
                rec.run.progress.total = items as i64;
                if !skipped.is_empty() {
                    let shown: Vec<&str> = skipped.iter().take(10).map(String::as_str).collect();
                    rec.log(format!(
                        "skipped {} entries without the extension: {}{}",
                        skipped.len(),
                        shown.join(", "),
                        if skipped.len() > 10 { ", …" } else { "" }
                    ))
                    .await;
                }
                rec.log(format!("{items} files to import")).await;
            }
            Entry::Item { name, bytes } => {
                match bytes {
                    Ok(bytes) => match w
                        .ingestor
                        .ingest_part10(route.clone(), source.clone(), &bytes)
                        .await
                    {
                        Ok(outcome) => rec.series(&outcome.series_instance_uid),
                        Err(e) => rec.item_error(&name, e.to_string()),
                    },
                    Err(reason) => rec.item_error(&name, reason),
                }
                rec.run.progress.done += 1;
                rec.progress().await;
            }
            Entry::NotDicom { name } => {
                not_dicom.push(name);
                rec.run.progress.done += 1;
                rec.progress().await;
            }
            Entry::Fatal(reason) => return Err(WorkflowError::Fatal(reason)),
        }
    }
    if !not_dicom.is_empty() {
        let shown: Vec<&str> = not_dicom.iter().take(10).map(String::as_str).collect();
        rec.log(format!(
            "skipped {} files that are not DICOM: {}{}",
            not_dicom.len(),
            shown.join(", "),
            if not_dicom.len() > 10 { ", …" } else { "" }
        ))
        .await;
    }
    reader
        .await
        .map_err(|e| WorkflowError::Fatal(format!("the zip reader stopped: {e}")))?;
    drop(scratch);

    upload::finish(w, rec, &key, &file, delete_original).await
}

fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// Reads the zip at `path` and sends its plan and entries. Runs in a blocking thread.
fn read_entries(path: &std::path::Path, extension: &str, tx: &tokio::sync::mpsc::Sender<Entry>) {
    let send = |e: Entry| tx.blocking_send(e).is_ok();
    let mut zip = match upload::open_zip(path) {
        Ok(z) => z,
        Err(reason) => {
            send(Entry::Fatal(reason));
            return;
        }
    };
    let extension = extension.trim().to_ascii_lowercase();
    // Plan from the central directory: which entries are items.
    let mut items = Vec::new();
    let mut skipped = Vec::new();
    for i in 0..zip.len() {
        let Ok(entry) = zip.by_index_raw(i) else {
            items.push(i);
            continue;
        };
        if entry.is_dir() {
            continue;
        }
        let name = upload::entry_name(&entry, i);
        if upload::is_os_junk(&name) {
            skipped.push(name);
            continue;
        }
        if extension.is_empty() || name.to_ascii_lowercase().ends_with(&extension) {
            items.push(i);
        } else {
            skipped.push(name);
        }
    }
    if !send(Entry::Plan {
        items: items.len(),
        skipped,
    }) {
        return;
    }
    let mut total: u64 = 0;
    for i in items {
        let (name, bytes) = upload::read_entry(&mut zip, i, &mut total);
        let bytes = bytes.and_then(|b| {
            if is_dicom(&b) {
                Ok(b)
            } else {
                Err("not a DICOM file (no DICM preamble)".to_string())
            }
        });
        // With no extension filter, files that are not DICOM are skipped, not errors.
        let item = match (&bytes, extension.is_empty()) {
            (Err(reason), true) if reason.starts_with("not a DICOM") => Entry::NotDicom { name },
            _ => Entry::Item { name, bytes },
        };
        if !send(item) {
            return;
        }
        if total > MAX_TOTAL_BYTES {
            send(Entry::Fatal(upload::total_exceeded()));
            return;
        }
    }
}
