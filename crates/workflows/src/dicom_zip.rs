//! `import-dicoms-from-data-upload`: a .zip of DICOM folders from the uploads area, imported
//! file by file through the ingest path.
//!
//! The zip is copied from the archive into the scratch directory (a zip's table of contents is
//! at its end, and the archive may be an S3 bucket), read entry by entry in a blocking thread,
//! and each entry's bytes go to the async side over a bounded channel, so memory holds at most
//! two entries. Nothing is extracted to disk. Limits keep hostile archives harmless: entries
//! whose names would escape a folder are refused, an entry may decompress to at most
//! [`MAX_ENTRY_BYTES`], compression ratios past [`MAX_RATIO`] are refused as bombs, and the
//! whole archive may decompress to at most [`MAX_TOTAL_BYTES`].

use std::io::Read;

use radport_catalog::Route;
use tokio::io::AsyncWriteExt;

use crate::{Recorder, WorkflowError, Workflows};

/// Largest decompressed entry imported (it is held in memory while ingested).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;
/// Largest decompressed/compressed ratio accepted for entries over 1 MiB.
pub const MAX_RATIO: u64 = 200;
/// Largest total decompressed size of one archive.
pub const MAX_TOTAL_BYTES: u64 = 200 << 30;

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

    let project = w
        .ingestor
        .resolve_project(&project)
        .await
        .map_err(|e| WorkflowError::Fatal(e.to_string()))?
        .ok_or_else(|| {
            WorkflowError::Fatal(format!(
                "project {project:?} does not exist; create it first"
            ))
        })?;
    if !radport_catalog::is_valid_name(&dataset) {
        return Err(WorkflowError::Fatal(format!(
            "dataset name {dataset:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    let key = radport_archive::keys::upload_file(&file).ok_or_else(|| {
        WorkflowError::Fatal(format!("{file:?} is not a path inside the uploads area"))
    })?;

    // Copy into the scratch area.
    tokio::fs::create_dir_all(w.scratch.as_ref())
        .await
        .map_err(|e| WorkflowError::Fatal(format!("cannot create the scratch directory: {e}")))?;
    let scratch = tempfile::NamedTempFile::new_in(w.scratch.as_ref())
        .map_err(|e| WorkflowError::Fatal(format!("cannot create a scratch file: {e}")))?;
    let (size, mut stream) = match w.archive().get_stream(&key).await {
        Ok(s) => s,
        Err(radport_archive::ArchiveError::NotFound(_)) => {
            return Err(WorkflowError::Fatal(format!(
                "there is no uploaded file {file:?} (see GET /api/files)"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    rec.log(format!(
        "reading {file} ({size} bytes) into {project}/{dataset}"
    ))
    .await;
    {
        let mut out = tokio::fs::File::from_std(
            scratch
                .reopen()
                .map_err(|e| WorkflowError::Fatal(format!("scratch file: {e}")))?,
        );
        use futures::StreamExt;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk?)
                .await
                .map_err(|e| WorkflowError::Fatal(format!("writing the scratch copy: {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| WorkflowError::Fatal(format!("writing the scratch copy: {e}")))?;
    }

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

    if delete_original && rec.run.errors.is_empty() && !rec.run.series.is_empty() {
        w.archive().delete(&key).await?;
        rec.log(format!("deleted the uploaded file {file}")).await;
    } else if delete_original {
        rec.log(format!(
            "kept the uploaded file {file}: not every item was imported"
        ))
        .await;
    }
    Ok(())
}

fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM")
}

/// Reads the zip at `path` and sends its plan and entries. Runs in a blocking thread.
fn read_entries(path: &std::path::Path, extension: &str, tx: &tokio::sync::mpsc::Sender<Entry>) {
    let send = |e: Entry| tx.blocking_send(e).is_ok();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            send(Entry::Fatal(format!("cannot open the scratch copy: {e}")));
            return;
        }
    };
    let mut zip = match zip::ZipArchive::new(file) {
        Ok(z) => z,
        Err(e) => {
            send(Entry::Fatal(format!("not a readable .zip file: {e}")));
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
        let name = entry
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| format!("entry #{i}"));
        let base = name.rsplit('/').next().unwrap_or_default();
        if base.starts_with("._") || name.starts_with("__MACOSX/") {
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
        let (name, bytes) = read_item(&mut zip, i, &mut total);
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
            send(Entry::Fatal(format!(
                "the archive decompresses to more than {} GiB; refused",
                MAX_TOTAL_BYTES >> 30
            )));
            return;
        }
    }
}

/// Reads entry `i`: its name and bytes, or why not.
fn read_item(
    zip: &mut zip::ZipArchive<std::fs::File>,
    i: usize,
    total: &mut u64,
) -> (String, Result<Vec<u8>, String>) {
    let mut entry = match zip.by_index(i) {
        Ok(e) => e,
        Err(e) => return (format!("entry #{i}"), Err(format!("unreadable entry: {e}"))),
    };
    let name = entry
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| format!("entry #{i}"));
    if entry.enclosed_name().is_none() {
        return (
            name,
            Err(
                "unsafe path (absolute, or leading out of the folder with ..); not imported".into(),
            ),
        );
    }
    let declared = entry.size();
    let compressed = entry.compressed_size().max(1);
    if declared > MAX_ENTRY_BYTES {
        return (
            name,
            Err(format!(
                "decompresses to {declared} bytes; entries over {} MiB are not imported",
                MAX_ENTRY_BYTES >> 20
            )),
        );
    }
    if declared > (1 << 20) && declared / compressed > MAX_RATIO {
        return (
            name,
            Err(format!(
                "compression ratio {}:1 looks like a zip bomb; not imported",
                declared / compressed
            )),
        );
    }
    let mut bytes = Vec::with_capacity(declared.min(64 << 20) as usize);
    // The declared size may lie: never read past the limit.
    match (&mut entry)
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)
    {
        Ok(n) if n as u64 > MAX_ENTRY_BYTES => (
            name,
            Err(format!(
                "decompresses to more than {} MiB; not imported",
                MAX_ENTRY_BYTES >> 20
            )),
        ),
        Ok(n) => {
            *total += n as u64;
            if n as u64 > (1 << 20) && n as u64 / compressed > MAX_RATIO {
                return (
                    name,
                    Err(format!(
                        "compression ratio {}:1 looks like a zip bomb; not imported",
                        n as u64 / compressed
                    )),
                );
            }
            (name, Ok(bytes))
        }
        Err(e) => (name, Err(format!("cannot decompress: {e}"))),
    }
}
