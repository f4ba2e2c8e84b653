//! `import-dicoms-from-data-upload`: a .zip of DICOM folders from the uploads area, imported
//! file by file through the ingest path.
//!
//! The zip is copied into the scratch directory and read entry by entry in a blocking thread,
//! through the limits of [`crate::upload`] (entry count, zip slip, symbolic links, inflated
//! size per entry and per zip, compression ratio). An entry is never held whole: its first
//! 64 KiB (preamble and file meta group) and then 1 MiB chunks go to the async side over a
//! bounded channel and straight into [`radport_ingest::Ingestor::begin`] /
//! [`radport_ingest::IncomingInstance::write`], so a run holds a few MiB whatever the size of
//! its entries. Nothing is extracted to disk.

use std::io::Read;

use radport_ingest::{Announced, IncomingInstance};
use tokio::sync::mpsc::Sender;

use crate::driver;
use crate::upload::{self, Budget};
use crate::{
    ImportLimits, ParamSpec, ParamType, Recorder, WorkflowError, WorkflowSpec, Workflows,
    IMPORT_DICOMS,
};
use serde_json::json;

/// Bytes read first from each entry: the preamble and the file meta group.
const HEAD: usize = 64 * 1024;
/// Bytes per chunk after the head.
const CHUNK: usize = 1 << 20;

enum Entry {
    /// Number of items (candidate DICOM files) and names skipped by the extension filter.
    Plan { items: usize, skipped: Vec<String> },
    /// A DICOM file starts: its first bytes (at least its file meta group).
    Begin { name: String, head: Vec<u8> },
    /// More bytes of the current file.
    Chunk(Vec<u8>),
    /// The current file is complete.
    End,
    /// The current file could not be read to its end (a limit, corrupt data): why.
    Abort(String),
    /// A candidate refused before any of it was imported: why.
    Refused { name: String, reason: String },
    /// A candidate that turned out not to be DICOM while any file was a candidate.
    NotDicom { name: String },
    /// The archive as a whole cannot be read.
    Fatal(String),
}

/// The file being imported: its name, and the ingest in progress (or why it failed).
struct Current {
    name: String,
    incoming: Result<IncomingInstance, String>,
}

/// The workflow as `GET /api/workflows` lists it: what it does and its parameters (the
/// fields of [`Params`]).
pub(crate) fn spec() -> WorkflowSpec {
    WorkflowSpec {
        name: IMPORT_DICOMS,
        description: "Imports a .zip of DICOM folders from the uploaded files into the archive, \
                      as if its files had been sent to the DICOM receiver.",
        parameters: vec![
            crate::file_param(),
            crate::project_param(),
            crate::dataset_param("dicomupload"),
            ParamSpec {
                name: "extension",
                kind: ParamType::String,
                default: json!(".dcm"),
                required: false,
                description: "File extension of the DICOM files; empty: every file that is DICOM by its preamble",
            },
            crate::delete_original_param(),
        ],
    }
}

/// The parameters of [`IMPORT_DICOMS`](crate::IMPORT_DICOMS), defaults filled in (see its
/// [`WorkflowSpec`](crate::WorkflowSpec) in [`definitions`](crate::definitions)).
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct Params {
    /// The uploaded zip, a path inside the uploads area.
    file: String,
    /// Project to import into.
    project: String,
    /// Dataset of the imported series.
    dataset: String,
    /// File extension of the DICOM entries; empty: every entry with a DICOM preamble.
    extension: String,
    /// Delete the upload once every item was imported.
    delete_original_file: bool,
}

pub(crate) async fn run(w: &Workflows, rec: &mut Recorder) -> Result<(), WorkflowError> {
    let Params {
        file,
        project,
        dataset,
        extension,
        delete_original_file,
    } = rec.params()?;
    let upload = driver::Upload {
        file: &file,
        project: &project,
        dataset: &dataset,
        delete_original: delete_original_file,
    };
    let limits = w.limits;
    let read = move |path: &std::path::Path, tx: &Sender<Entry>| {
        read_entries(path, &extension, &limits, tx)
    };
    let import = DicomImport {
        current: None,
        not_dicom: Vec::new(),
    };
    driver::run(w, rec, upload, read, import).await
}

/// The async side of the DICOM import: each entry streamed into the ingest path.
struct DicomImport {
    /// The entry being imported.
    current: Option<Current>,
    /// Entries that turned out not to be DICOM.
    not_dicom: Vec<String>,
}

impl driver::Import for DicomImport {
    type Msg = Entry;
    const READER: &'static str = "the zip reader";
    const QUEUE: usize = 4;

    async fn handle(
        &mut self,
        w: &Workflows,
        to: &driver::Destination,
        rec: &mut Recorder,
        entry: Entry,
    ) -> Result<(), WorkflowError> {
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
            Entry::Begin { name, head } => {
                let incoming = match file_meta(&head) {
                    Ok((announced, offset)) => {
                        match w
                            .ingestor
                            .begin(to.route.clone(), to.source.clone(), announced)
                            .await
                        {
                            Ok(mut incoming) => match incoming.write(head[offset..].to_vec()).await
                            {
                                Ok(()) => Ok(incoming),
                                Err(e) => {
                                    incoming.abort().await;
                                    Err(e.to_string())
                                }
                            },
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Err(reason) => Err(reason),
                };
                self.current = Some(Current { name, incoming });
            }
            Entry::Chunk(bytes) => {
                if let Some(cur) = &mut self.current {
                    if let Ok(i) = &mut cur.incoming {
                        if let Err(e) = i.write(bytes).await {
                            let failed = std::mem::replace(&mut cur.incoming, Err(e.to_string()));
                            if let Ok(i) = failed {
                                i.abort().await;
                            }
                        }
                    }
                }
            }
            Entry::End => {
                if let Some(Current { name, incoming }) = self.current.take() {
                    match incoming {
                        Ok(i) => match w.ingestor.finish(i).await {
                            Ok(outcome) => rec.series(&outcome.series_instance_uid),
                            Err(e) => rec.item_error(&name, e.to_string()),
                        },
                        Err(reason) => rec.item_error(&name, reason),
                    }
                    rec.run.progress.done += 1;
                    rec.progress().await;
                }
            }
            Entry::Abort(reason) => {
                if let Some(Current { name, incoming }) = self.current.take() {
                    if let Ok(i) = incoming {
                        i.abort().await;
                    }
                    rec.item_error(&name, reason);
                    rec.run.progress.done += 1;
                    rec.progress().await;
                }
            }
            Entry::Refused { name, reason } => {
                rec.item_error(&name, reason);
                rec.run.progress.done += 1;
                rec.progress().await;
            }
            Entry::NotDicom { name } => {
                self.not_dicom.push(name);
                rec.run.progress.done += 1;
                rec.progress().await;
            }
            Entry::Fatal(reason) => return Err(WorkflowError::Fatal(reason)),
        }
        Ok(())
    }

    async fn end(&mut self, rec: &mut Recorder) {
        // An entry cut off by the end of the messages (or a fatal error) is not stored.
        if let Some(Current {
            incoming: Ok(i), ..
        }) = self.current.take()
        {
            i.abort().await;
        }
        if !self.not_dicom.is_empty() {
            let shown: Vec<&str> = self.not_dicom.iter().take(10).map(String::as_str).collect();
            rec.log(format!(
                "skipped {} files that are not DICOM: {}{}",
                self.not_dicom.len(),
                shown.join(", "),
                if self.not_dicom.len() > 10 {
                    ", …"
                } else {
                    ""
                }
            ))
            .await;
        }
    }
}

fn is_dicom(head: &[u8]) -> bool {
    head.get(128..132) == Some(b"DICM")
}

/// The announced UIDs and where the data set starts: ingest's own reading of the file meta
/// group (prescan first), so an import refuses exactly what a stored file would.
fn file_meta(head: &[u8]) -> Result<(Announced, usize), String> {
    radport_ingest::read_file_meta(head).map_err(|e| e.to_string())
}

/// Reads the zip at `path` and sends its plan and entries. Runs in a blocking thread.
fn read_entries(
    path: &std::path::Path,
    extension: &str,
    limits: &ImportLimits,
    tx: &tokio::sync::mpsc::Sender<Entry>,
) {
    let send = |e: Entry| tx.blocking_send(e).is_ok();
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut zip = match upload::open_zip(path, limits) {
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
    let mut budget = Budget::new(*limits, size);
    for i in items {
        if !send_entry(&mut zip, i, &mut budget, extension.is_empty(), &send) {
            return;
        }
        if budget.exhausted() {
            send(Entry::Fatal(budget.exhausted_error()));
            return;
        }
    }
}

/// Streams entry `i`; false when the receiver is gone.
fn send_entry(
    zip: &mut zip::ZipArchive<std::fs::File>,
    i: usize,
    budget: &mut Budget,
    any_file: bool,
    send: &impl Fn(Entry) -> bool,
) -> bool {
    let (name, mut reader) = match upload::open_entry(zip, i, budget) {
        Ok(r) => r,
        Err((name, reason)) => return send(Entry::Refused { name, reason }),
    };
    let why = |e: std::io::Error, violation: &Option<upload::LimitError>| match violation {
        Some(v) => v.to_string(),
        None => format!("cannot decompress: {e}"),
    };
    let mut head = vec![0u8; HEAD];
    let n = match read_full(&mut reader, &mut head) {
        Ok(n) => n,
        Err(e) => {
            let reason = why(e, &reader.violation);
            return send(Entry::Refused { name, reason });
        }
    };
    head.truncate(n);
    if !is_dicom(&head) {
        // With no extension filter, files that are not DICOM are skipped, not errors.
        return send(if any_file {
            Entry::NotDicom { name }
        } else {
            Entry::Refused {
                name,
                reason: "not a DICOM file (no DICM preamble)".into(),
            }
        });
    }
    if !send(Entry::Begin { name, head }) {
        return false;
    }
    loop {
        let mut chunk = vec![0u8; CHUNK];
        match read_full(&mut reader, &mut chunk) {
            Ok(0) => return send(Entry::End),
            Ok(n) => {
                chunk.truncate(n);
                if !send(Entry::Chunk(chunk)) {
                    return false;
                }
            }
            Err(e) => return send(Entry::Abort(why(e, &reader.violation))),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// For the fuzz targets (fuzz/): what the reading side sends for the zip at `path`, as
/// `(kind, name)` pairs: `begin` (a DICOM file is opened and streamed), `refused`, `not-dicom`,
/// `fatal` (the name is then the reason).
pub(crate) fn fuzz_entries(
    path: &std::path::Path,
    extension: &str,
    limits: &ImportLimits,
) -> Vec<(&'static str, String)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Entry>(4);
    let (path, extension, limits) = (path.to_path_buf(), extension.to_string(), *limits);
    let reader = std::thread::spawn(move || read_entries(&path, &extension, &limits, &tx));
    let mut out = Vec::new();
    while let Some(entry) = rx.blocking_recv() {
        match entry {
            Entry::Begin { name, .. } => out.push(("begin", name)),
            Entry::Refused { name, .. } => out.push(("refused", name)),
            Entry::NotDicom { name } => out.push(("not-dicom", name)),
            Entry::Fatal(reason) => out.push(("fatal", reason)),
            Entry::Plan { .. } | Entry::Chunk(_) | Entry::End | Entry::Abort(_) => {}
        }
    }
    let _ = reader.join();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_meta_is_read_as_ingest_reads_it() {
        let v = radport_convert::Volume::new(
            [4, 3, 2],
            radport_convert::VoxelData::I16(vec![1; 24]),
            [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
        )
        .unwrap();
        let s = radport_convert::volume_to_series(
            &v,
            &radport_convert::SeriesOptions::new("CT", "a", "b"),
        )
        .unwrap();
        let file = &s.files[0];
        let (announced, offset) = file_meta(file).unwrap();
        assert_eq!(announced.sop_class_uid, s.sop_class_uid);
        assert_eq!(announced.sop_instance_uid, s.sop_instance_uids[0]);
        assert_eq!(announced.transfer_syntax_uid, "1.2.840.10008.1.2.1");
        // the data set starts right after the group: (0008,0005) Specific Character Set
        assert_eq!(file[offset..offset + 4], [0x08, 0x00, 0x05, 0x00]);
        // a head cut inside the group, a group length beyond the head, no DICM
        assert!(file_meta(&file[..offset - 3]).is_err());
        let mut long = file.clone();
        let gl = 128 + 4 + 8;
        long[gl..gl + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        assert!(file_meta(&long[..offset]).is_err());
        assert!(file_meta(&file[1..]).is_err());
        assert!(file_meta(&[]).is_err());
    }

    #[test]
    fn entries_are_opened_refused_or_skipped() {
        use std::io::Write;
        let v = radport_convert::Volume::new(
            [2, 2, 1],
            radport_convert::VoxelData::U8(vec![1; 4]),
            [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
        )
        .unwrap();
        let s = radport_convert::volume_to_series(
            &v,
            &radport_convert::SeriesOptions::new("OT", "a", "b"),
        )
        .unwrap();
        let tmp = tempfile::NamedTempFile::new().unwrap();
        let mut zip = zip::ZipWriter::new(tmp.reopen().unwrap());
        let o = zip::write::SimpleFileOptions::default();
        for (name, bytes) in [
            ("a/1.dcm", &s.files[0][..]),
            ("../evil.dcm", &s.files[0][..]),
            ("notes.txt", &b"hello"[..]),
        ] {
            zip.start_file(name, o).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        let got = crate::fuzzing::dicom_entries(tmp.path(), "", &ImportLimits::default());
        assert_eq!(
            got,
            vec![
                ("begin", "a/1.dcm".to_string()),
                ("refused", "../evil.dcm".to_string()),
                ("not-dicom", "notes.txt".to_string()),
            ]
        );
        let limits = ImportLimits {
            max_entries: 2,
            ..Default::default()
        };
        let got = crate::fuzzing::dicom_entries(tmp.path(), "", &limits);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "fatal");
        assert!(got[0].1.contains("3 entries"), "{got:?}");
    }
}
