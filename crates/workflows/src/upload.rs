//! What every import of an uploaded .zip shares: the target project/dataset, the scratch copy of
//! the upload, safe reading of its entries, and deleting the upload afterwards.
//!
//! The zip is copied from the archive into the scratch directory (a zip's table of contents is
//! at its end, and the archive may be an S3 bucket) and read from there in a blocking thread.
//! Entries are never read whole into memory: each is read through an [`EntryReader`] that counts
//! what it actually inflates. [`ImportLimits`] keep hostile archives harmless: more entries
//! than `max_entries` (as declared by the end-of-central-directory record, before the zip
//! reader builds its table) refuse the zip; an entry whose name would escape a folder, or that
//! is a symbolic link, is refused; an entry may inflate to at most `max_entry_bytes` and, past
//! 1 MiB, at most `max_ratio` times its compressed size (a bomb); the whole archive may
//! inflate to at most `max_total_bytes` and at most `max_ratio` times its own size (1 GiB at
//! least). Zips inside the zip are never opened: they are files like any other.

use std::io::Read;

use tokio::io::AsyncWriteExt;

use crate::{ImportLimits, Recorder, WorkflowError, Workflows};

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

/// The limits of one imported archive, and what it has inflated so far.
pub(crate) struct Budget {
    pub(crate) limits: ImportLimits,
    /// Bytes inflated so far, over every entry.
    total: u64,
    /// The run-wide cap: `max_total_bytes`, and no more than `max_ratio` times the archive's own
    /// size (at least 1 GiB), so entries that each pass the ratio check (or overlap, as in
    /// "flat" zip bombs) cannot add up to a bomb.
    cap: u64,
}

impl Budget {
    /// The budget of an archive of `archive_size` bytes.
    pub(crate) fn new(limits: ImportLimits, archive_size: u64) -> Self {
        let by_ratio = archive_size.saturating_mul(limits.max_ratio).max(1 << 30);
        Budget {
            limits,
            total: 0,
            cap: limits.max_total_bytes.min(by_ratio),
        }
    }

    /// Bytes inflated so far.
    #[cfg(test)]
    pub(crate) fn inflated(&self) -> u64 {
        self.total
    }

    /// Whether the archive inflated past its cap (the run must stop).
    pub(crate) fn exhausted(&self) -> bool {
        self.total > self.cap
    }

    /// The error that ends a run whose archive inflated past its cap.
    pub(crate) fn exhausted_error(&self) -> String {
        LimitError::Total { limit: self.cap }.to_string()
    }
}

/// Why an entry (or the archive) is refused on size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LimitError {
    /// More inflated bytes than one entry may have.
    #[error("decompresses to more than {limit} bytes (the limit for one entry); not imported")]
    Entry { limit: u64 },
    /// Inflated/compressed past the ratio limit.
    #[error("compression ratio over {ratio}:1 looks like a zip bomb; not imported")]
    Ratio { ratio: u64 },
    /// The archive as a whole inflated past its cap.
    #[error("the archive decompresses to more than {limit} bytes; refused")]
    Total { limit: u64 },
}

/// Counts what one entry actually inflates (the sizes in the zip are not trusted) and fails as
/// soon as it passes the entry limit, the ratio limit or the archive's cap; the error is an
/// `io::Error` wrapping the [`LimitError`], also kept in [`EntryReader::violation`].
pub(crate) struct EntryReader<'a, 'b> {
    file: zip::read::ZipFile<'a, std::fs::File>,
    budget: &'b mut Budget,
    read: u64,
    compressed: u64,
    /// The limit this entry ran into, if any.
    pub(crate) violation: Option<LimitError>,
}

impl Read for EntryReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(v) = &self.violation {
            return Err(std::io::Error::other(v.clone()));
        }
        let n = self.file.read(buf)?;
        self.read += n as u64;
        self.budget.total = self.budget.total.saturating_add(n as u64);
        let limits = &self.budget.limits;
        let violation = if self.read > limits.max_entry_bytes {
            Some(LimitError::Entry {
                limit: limits.max_entry_bytes,
            })
        } else if self.read > RATIO_FLOOR && self.read / self.compressed > limits.max_ratio {
            Some(LimitError::Ratio {
                ratio: limits.max_ratio,
            })
        } else if self.budget.exhausted() {
            Some(LimitError::Total {
                limit: self.budget.cap,
            })
        } else {
            None
        };
        match violation {
            Some(v) => {
                self.violation = Some(v.clone());
                Err(std::io::Error::other(v))
            }
            None => Ok(n),
        }
    }
}

/// Entries are held to the ratio limit once they inflate past this.
const RATIO_FLOOR: u64 = 1 << 20;

/// Opens the scratch copy as a zip, refusing archives with more entries than allowed before the
/// zip reader builds its table of them.
pub(crate) fn open_zip(
    path: &std::path::Path,
    limits: &ImportLimits,
) -> Result<zip::ZipArchive<std::fs::File>, String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot open the scratch copy: {e}"))?;
    let declared =
        declared_entries(&mut file).map_err(|e| format!("cannot read the scratch copy: {e}"))?;
    let too_many = |n: u64| {
        format!(
            "the zip has {n} entries; at most {} are imported per zip",
            limits.max_entries
        )
    };
    if declared > limits.max_entries {
        return Err(too_many(declared));
    }
    let zip = zip::ZipArchive::new(file).map_err(|e| format!("not a readable .zip file: {e}"))?;
    if zip.len() as u64 > limits.max_entries {
        return Err(too_many(zip.len() as u64));
    }
    Ok(zip)
}

/// The largest entry count any end-of-central-directory record in the last 64 KiB declares
/// (the zip64 one when there is one); 0 when there is none (the zip reader then refuses it).
pub(crate) fn declared_entries(file: &mut (impl Read + std::io::Seek)) -> std::io::Result<u64> {
    use std::io::SeekFrom;
    let len = file.seek(SeekFrom::End(0))?;
    let tail_len = len.min(22 + 65535 + 20);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    file.take(tail_len).read_to_end(&mut tail)?;
    let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u64_at = |b: &[u8], at: usize| {
        b.get(at..at + 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let mut most = 0u64;
    for at in (0..tail.len().saturating_sub(21)).rev() {
        if tail[at..at + 4] != [0x50, 0x4b, 0x05, 0x06] {
            continue;
        }
        let count = u16_at(&tail, at + 10).unwrap_or(0) as u64;
        most = most.max(count);
        // zip64: a locator right before the record points at the zip64 record.
        if at >= 20 && tail[at - 20..at - 16] == [0x50, 0x4b, 0x06, 0x07] {
            if let Some(offset) = u64_at(&tail, at - 12).filter(|&o| o < len) {
                let mut record = [0u8; 56];
                file.seek(SeekFrom::Start(offset))?;
                let n = file.read(&mut record)?;
                if n >= 40 && record[..4] == [0x50, 0x4b, 0x06, 0x06] {
                    most = most.max(u64_at(&record, 32).unwrap_or(0));
                }
            }
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(most)
}

/// Name of an entry as stored (not checked for safety; see [`open_entry`]).
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

/// Why an entry's name or kind makes it unsafe to import (zip slip, symbolic links), if it does.
pub(crate) fn unsafe_entry<R: Read>(entry: &zip::read::ZipFile<'_, R>) -> Option<&'static str> {
    let name = entry.name().unwrap_or_default();
    // A drive letter (`C:`) in the first part that names something: `./C:/x` is `C:/x` once
    // the `.` parts are dropped, as the NIfTI import drops them.
    let first_part = name
        .split('/')
        .find(|part| !part.is_empty() && *part != ".")
        .unwrap_or_default();
    let escapes = entry.enclosed_name().is_none()
        || name.starts_with('/')
        || first_part.as_bytes().get(1) == Some(&b':')
        || name.contains('\\')
        || name.split('/').any(|p| p == "..");
    if escapes {
        Some("unsafe path (absolute, or leading out of the folder with ..); not imported")
    } else if entry.is_symlink() {
        Some("a symbolic link; not imported")
    } else {
        None
    }
}

/// Opens entry `i` for reading through the limits: its name and reader, or its name and why it
/// is refused (unsafe name, symbolic link, declared size or ratio over the limits).
pub(crate) fn open_entry<'a, 'b>(
    zip: &'a mut zip::ZipArchive<std::fs::File>,
    i: usize,
    budget: &'b mut Budget,
) -> Result<(String, EntryReader<'a, 'b>), (String, String)> {
    let entry = match zip.by_index(i) {
        Ok(e) => e,
        Err(e) => return Err((format!("entry #{i}"), format!("unreadable entry: {e}"))),
    };
    let name = entry_name(&entry, i);
    if let Some(why) = unsafe_entry(&entry) {
        return Err((name, why.into()));
    }
    let limits = &budget.limits;
    let declared = entry.size();
    let compressed = entry.compressed_size().max(1);
    if declared > limits.max_entry_bytes {
        let e = LimitError::Entry {
            limit: limits.max_entry_bytes,
        };
        return Err((name, format!("declares {declared} bytes: {e}")));
    }
    if declared > RATIO_FLOOR && declared / compressed > limits.max_ratio {
        let e = LimitError::Ratio {
            ratio: limits.max_ratio,
        };
        return Err((name, e.to_string()));
    }
    Ok((
        name,
        EntryReader {
            file: entry,
            budget,
            read: 0,
            compressed,
            violation: None,
        },
    ))
}

/// Reads all of a small entry (a JSON file) into memory: refused past `max` bytes, declared or
/// inflated.
pub(crate) fn read_small_entry(
    zip: &mut zip::ZipArchive<std::fs::File>,
    i: usize,
    budget: &mut Budget,
    max: u64,
) -> Result<Vec<u8>, String> {
    let (_, mut reader) = open_entry(zip, i, budget).map_err(|(_, why)| why)?;
    let too_big = || format!("larger than {max} bytes; refused");
    if reader.file.size() > max {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    match (&mut reader).take(max + 1).read_to_end(&mut bytes) {
        Ok(n) if n as u64 > max => Err(too_big()),
        Ok(_) => Ok(bytes),
        Err(e) => Err(match reader.violation {
            Some(v) => v.to_string(),
            None => format!("cannot decompress: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn options(method: zip::CompressionMethod) -> zip::write::SimpleFileOptions {
        zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .large_file(true)
    }

    /// A zip at a temporary path with the given (name, bytes) entries, deflated.
    fn zip_with(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(tmp.reopen().unwrap());
        for (name, bytes) in entries {
            zip.start_file(*name, options(zip::CompressionMethod::Deflated))
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        tmp
    }

    fn read_all(
        zip: &mut zip::ZipArchive<std::fs::File>,
        i: usize,
        budget: &mut Budget,
    ) -> Result<u64, String> {
        let (_, mut r) = open_entry(zip, i, budget).map_err(|(_, why)| why)?;
        let mut sink = std::io::sink();
        std::io::copy(&mut r, &mut sink).map_err(|e| match &r.violation {
            Some(v) => v.to_string(),
            None => e.to_string(),
        })
    }

    #[test]
    fn entry_counts_are_read_from_the_end_record_before_opening() {
        let names: Vec<String> = (0..300).map(|n| format!("f{n}.dcm")).collect();
        let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
        let tmp = zip_with(&entries);
        let mut f = std::fs::File::open(tmp.path()).unwrap();
        assert_eq!(declared_entries(&mut f).unwrap(), 300);
        let limits = ImportLimits {
            max_entries: 299,
            ..Default::default()
        };
        let e = open_zip(tmp.path(), &limits).unwrap_err();
        assert!(e.contains("300 entries"), "{e}");
        assert!(open_zip(tmp.path(), &ImportLimits::default()).is_ok());

        // A forged end record declaring 65 535 entries, and a zip64 one declaring 2^40.
        let mut bytes = std::fs::read(tmp.path()).unwrap();
        let eocd = bytes.len() - 22;
        assert_eq!(bytes[eocd..eocd + 4], [0x50, 0x4b, 0x05, 0x06]);
        bytes[eocd + 8..eocd + 12].copy_from_slice(&[0xff; 4]);
        let forged = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(forged.path(), &bytes).unwrap();
        let e = open_zip(
            forged.path(),
            &ImportLimits {
                max_entries: 1000,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("65535 entries"), "{e}");

        let mut z64 = std::fs::read(tmp.path()).unwrap();
        let eocd = z64.len() - 22;
        let record_at = eocd as u64;
        let mut record = vec![0x50, 0x4b, 0x06, 0x06];
        record.extend_from_slice(&44u64.to_le_bytes());
        record.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        record.extend_from_slice(&(1u64 << 40).to_le_bytes());
        record.extend_from_slice(&(1u64 << 40).to_le_bytes());
        record.extend_from_slice(&[0; 16]);
        let mut locator = vec![0x50, 0x4b, 0x06, 0x07, 0, 0, 0, 0];
        locator.extend_from_slice(&record_at.to_le_bytes());
        locator.extend_from_slice(&1u32.to_le_bytes());
        let tail = z64.split_off(eocd);
        z64.extend(record);
        z64.extend(locator);
        z64.extend(tail);
        let mut cursor = std::io::Cursor::new(z64);
        assert_eq!(declared_entries(&mut cursor).unwrap(), 1 << 40);
    }

    #[test]
    fn inflated_bytes_are_counted_not_trusted() {
        let zeros = vec![0u8; 8 << 20];
        let text: Vec<u8> = (0..3u32 << 20)
            .map(|x| (x.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        let tmp = zip_with(&[("zeros.dcm", &zeros), ("text.dcm", &text)]);
        let size = std::fs::metadata(tmp.path()).unwrap().len();
        let mut zip = open_zip(tmp.path(), &ImportLimits::default()).unwrap();
        // ratio: 8 MiB of zeros deflate ~1000:1
        let mut budget = Budget::new(ImportLimits::default(), size);
        let e = read_all(&mut zip, 0, &mut budget).unwrap_err();
        assert!(e.contains("zip bomb"), "{e}");
        assert_eq!(read_all(&mut zip, 1, &mut budget).unwrap(), 3 << 20);
        // per-entry cap, counted while inflating (the declared size is under it)
        let limits = ImportLimits {
            max_entry_bytes: 1 << 20,
            max_ratio: 100_000,
            ..Default::default()
        };
        let mut budget = Budget::new(limits, size);
        let e = read_all(&mut zip, 1, &mut budget).unwrap_err();
        assert!(
            e.contains("declares"),
            "refused from its declared size: {e}"
        );
        // A declared size that lies (patched to 1 KiB in both headers): the bytes are counted.
        let mut bytes = std::fs::read(tmp.path()).unwrap();
        let patch = |b: &mut Vec<u8>, magic: [u8; 4], size_at: usize| {
            let at = b.windows(4).position(|w| w == magic).unwrap();
            b[at + size_at..at + size_at + 4].copy_from_slice(&1024u32.to_le_bytes());
        };
        patch(&mut bytes, [0x50, 0x4b, 0x01, 0x02], 24);
        patch(&mut bytes, [0x50, 0x4b, 0x03, 0x04], 22);
        let lying = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(lying.path(), &bytes).unwrap();
        let limits = ImportLimits {
            max_entry_bytes: 1 << 20,
            max_ratio: 100_000,
            ..Default::default()
        };
        if let Ok(mut zip) = open_zip(lying.path(), &limits) {
            let mut budget = Budget::new(limits, size);
            // stopped by the zip reader's own check (zip 9) or, failing that, by our count
            let e = read_all(&mut zip, 0, &mut budget).unwrap_err();
            assert!(
                e.contains("larger than its declared") || e.contains("limit for one entry"),
                "{e}"
            );
            assert!(budget.total <= (1 << 20) + (64 << 10), "{}", budget.total);
        }
        // archive-wide cap
        let limits = ImportLimits {
            max_total_bytes: 2 << 20,
            ..Default::default()
        };
        let mut budget = Budget::new(limits, size);
        let e = read_all(&mut zip, 1, &mut budget).unwrap_err();
        assert!(e.contains("the archive decompresses"), "{e}");
        assert!(budget.exhausted());
    }

    #[test]
    fn unsafe_names_and_symlinks_are_refused() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(tmp.reopen().unwrap());
        let o = options(zip::CompressionMethod::Stored);
        for name in [
            "../evil.dcm",
            "/etc/evil.dcm",
            "a/../../evil.dcm",
            "C:\\evil.dcm",
            "./C:/evil.dcm",
        ] {
            zip.start_file(name, o).unwrap();
            zip.write_all(b"x").unwrap();
        }
        zip.add_symlink("link.dcm", "../../etc/passwd", o).unwrap();
        zip.start_file("fine/ok.dcm", o).unwrap();
        zip.write_all(b"x").unwrap();
        zip.finish().unwrap();
        let mut zip = open_zip(tmp.path(), &ImportLimits::default()).unwrap();
        let mut budget = Budget::new(ImportLimits::default(), 1 << 20);
        for i in 0..5 {
            let name = zip.by_index_raw(i).unwrap().name().unwrap().to_string();
            let e = read_all(&mut zip, i, &mut budget).expect_err(&name);
            assert!(e.contains("unsafe path"), "{i}: {e}");
        }
        let e = read_all(&mut zip, 5, &mut budget).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert_eq!(read_all(&mut zip, 6, &mut budget).unwrap(), 1);
    }

    #[test]
    fn small_entries_are_capped() {
        let big = vec![b' '; 2 << 20];
        let tmp = zip_with(&[("meta_data.json", b"{}"), ("seg_info.json", &big)]);
        let mut zip = open_zip(tmp.path(), &ImportLimits::default()).unwrap();
        let mut budget = Budget::new(
            ImportLimits {
                max_ratio: 100_000,
                ..Default::default()
            },
            1 << 20,
        );
        assert_eq!(
            read_small_entry(&mut zip, 0, &mut budget, 1 << 20).unwrap(),
            b"{}"
        );
        let e = read_small_entry(&mut zip, 1, &mut budget, 1 << 20).unwrap_err();
        assert!(e.contains("larger than 1048576 bytes"), "{e}");
    }
}
