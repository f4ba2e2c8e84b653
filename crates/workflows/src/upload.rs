//! What every import of an uploaded .zip shares: the target project/dataset, the scratch copy of
//! the upload, safe reading of its entries, and deleting the upload afterwards.
//!
//! The zip is copied from the archive into the scratch directory (a zip's table of contents is
//! at its end, and the archive may be an S3 bucket) and read from there in a blocking thread.
//! Limits keep hostile archives harmless: entries whose names would escape a folder are
//! refused, an entry may decompress to at most [`MAX_ENTRY_BYTES`], compression ratios past
//! [`MAX_RATIO`] are refused as bombs, and the whole archive may decompress to at most
//! [`MAX_TOTAL_BYTES`].

use std::io::Read;

use tokio::io::AsyncWriteExt;

use crate::{Recorder, WorkflowError, Workflows};

/// Largest decompressed entry imported (it is held in memory while imported).
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;
/// Largest decompressed/compressed ratio accepted for entries over 1 MiB.
pub const MAX_RATIO: u64 = 200;
/// Largest total decompressed size of one archive.
pub const MAX_TOTAL_BYTES: u64 = 200 << 30;

/// Checks the project (must exist; returns its canonical name) and the dataset name.
pub(crate) async fn resolve_target(
    w: &Workflows,
    project: &str,
    dataset: &str,
) -> Result<String, WorkflowError> {
    let resolved = w
        .ingestor
        .resolve_project(project)
        .await
        .map_err(|e| WorkflowError::Fatal(e.to_string()))?
        .ok_or_else(|| {
            WorkflowError::Fatal(format!(
                "project {project:?} does not exist; create it first"
            ))
        })?;
    if !radport_catalog::is_valid_name(dataset) {
        return Err(WorkflowError::Fatal(format!(
            "dataset name {dataset:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(resolved)
}

/// Archive key of an uploaded file path.
pub(crate) fn upload_key(file: &str) -> Result<String, WorkflowError> {
    radport_archive::keys::upload_file(file).ok_or_else(|| {
        WorkflowError::Fatal(format!("{file:?} is not a path inside the uploads area"))
    })
}

/// Copies the upload at `key` into a scratch file; returns it and its size.
pub(crate) async fn copy_to_scratch(
    w: &Workflows,
    key: &str,
    file: &str,
) -> Result<(tempfile::NamedTempFile, u64), WorkflowError> {
    tokio::fs::create_dir_all(w.scratch.as_ref())
        .await
        .map_err(|e| WorkflowError::Fatal(format!("cannot create the scratch directory: {e}")))?;
    let scratch = tempfile::NamedTempFile::new_in(w.scratch.as_ref())
        .map_err(|e| WorkflowError::Fatal(format!("cannot create a scratch file: {e}")))?;
    let (size, mut stream) = match w.archive().get_stream(key).await {
        Ok(s) => s,
        Err(radport_archive::ArchiveError::NotFound(_)) => {
            return Err(WorkflowError::Fatal(format!(
                "there is no uploaded file {file:?} (see GET /api/files)"
            )))
        }
        Err(e) => return Err(e.into()),
    };
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
    Ok((scratch, size))
}

/// An upload ready to import: where it goes, its key, and its copy in the scratch area.
pub(crate) struct Prepared {
    /// Canonical project name.
    pub(crate) project: String,
    /// Archive key of the upload.
    pub(crate) key: String,
    /// The scratch copy (deleted when dropped).
    pub(crate) scratch: tempfile::NamedTempFile,
}

/// The common start of an import: checks project and dataset, finds the upload, copies it into
/// the scratch area and says so in the run's log.
pub(crate) async fn prepare(
    w: &Workflows,
    rec: &mut Recorder,
    file: &str,
    project: &str,
    dataset: &str,
) -> Result<Prepared, WorkflowError> {
    let project = resolve_target(w, project, dataset).await?;
    let key = upload_key(file)?;
    let (scratch, size) = copy_to_scratch(w, &key, file).await?;
    rec.log(format!(
        "reading {file} ({size} bytes) into {project}/{dataset}"
    ))
    .await;
    Ok(Prepared {
        project,
        key,
        scratch,
    })
}

/// Deletes the upload when asked to and every item was imported; logs either way.
pub(crate) async fn finish(
    w: &Workflows,
    rec: &mut Recorder,
    key: &str,
    file: &str,
    delete_original: bool,
) -> Result<(), WorkflowError> {
    if delete_original && rec.run.errors.is_empty() && !rec.run.series.is_empty() {
        w.archive().delete(key).await?;
        rec.log(format!("deleted the uploaded file {file}")).await;
    } else if delete_original {
        rec.log(format!(
            "kept the uploaded file {file}: not every item was imported"
        ))
        .await;
    }
    Ok(())
}

/// Opens the scratch copy as a zip.
pub(crate) fn open_zip(path: &std::path::Path) -> Result<zip::ZipArchive<std::fs::File>, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open the scratch copy: {e}"))?;
    zip::ZipArchive::new(file).map_err(|e| format!("not a readable .zip file: {e}"))
}

/// Name of an entry as stored (not checked for safety; see [`read_entry`]).
pub(crate) fn entry_name<R: Read>(entry: &zip::read::ZipFile<'_, R>, i: usize) -> String {
    entry
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| format!("entry #{i}"))
}

/// Entries that macOS adds to zips (`__MACOSX/`, `._name`): never items.
pub(crate) fn is_os_junk(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or_default();
    base.starts_with("._") || name.starts_with("__MACOSX/") || base == ".DS_Store"
}

/// Reads entry `i`: its name and bytes, or why not. Adds what was decompressed to `total`.
pub(crate) fn read_entry(
    zip: &mut zip::ZipArchive<std::fs::File>,
    i: usize,
    total: &mut u64,
) -> (String, Result<Vec<u8>, String>) {
    let mut entry = match zip.by_index(i) {
        Ok(e) => e,
        Err(e) => return (format!("entry #{i}"), Err(format!("unreadable entry: {e}"))),
    };
    let name = entry_name(&entry, i);
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

/// The error of a run whose archive decompresses past [`MAX_TOTAL_BYTES`].
pub(crate) fn total_exceeded() -> String {
    format!(
        "the archive decompresses to more than {} GiB; refused",
        MAX_TOTAL_BYTES >> 30
    )
}
