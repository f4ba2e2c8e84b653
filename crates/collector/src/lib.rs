//! The collector: removes what was stored but is referenced by nothing — and only that; and
//! erasure ([`erase_series`]), which makes series referenced by nothing and removes their
//! objects at once.
//!
//! Things that can be left behind, and how each is recognised:
//!
//! | left behind by | where | orphan when |
//! |---|---|---|
//! | a process killed between the archive write and the catalog commit, a replaced or refused instance whose delete failed | `instances/…` | no `instances.object_key` names it |
//! | the same in packs (`--ingest-durability packs`), and a process killed before it punched a duplicate's record after a checkpoint | a record in `packs/…` behind the pack log's checkpoint (`Archive::list_packed`), removed by punching it out | no `instances.object_key` names it |
//! | a process killed in the middle of a local write | `KEY#<n>` beside any key (the listing hides them) | always (never referenced) |
//! | a thumbnail or report of a series that no longer exists | `thumbnails/<series>.png`, `reports/<series>.html` | no `series` row |
//! | chunks of an upload terminated, expired, or completed but not cleaned up | `upload-parts/<id>/…` | no *incomplete* `uploads` row with that id |
//! | an import run whose process died (`radport serve`, or the `run-job` child killed at its limits) | `DATA_DIR/scratch/*` | no process holds it open (Linux: `/proc/*/fd`; elsewhere: it was there when this process claimed the directory), and its name is no queued or running workflow run |
//!
//! Anything else (the uploads area, keys of a form it does not know) is never touched.
//!
//! Invariants, which make it safe on several nodes sharing a catalog and a bucket:
//! - **Grace**: nothing modified less than [`CollectorConfig::grace`] ago is removed. Ingest
//!   writes an object, then commits the row that references it, within seconds; the grace
//!   (default one hour) is far longer, so an object written but not yet committed — on this
//!   node or another — is never taken for an orphan. Objects are judged by the store's
//!   modification time, so the grace also absorbs clock skew between nodes and the store.
//! - **Re-checked**: the catalog is asked twice, once for the batch as listed and again for
//!   the candidates right before they are deleted.
//! - **Bounded**: the archive is listed as a stream and judged [`BATCH`] keys at a time, one
//!   indexed catalog query per batch; memory does not grow with the archive.
//! - **Idempotent**: two nodes collecting at once delete the same orphans; deleting a missing
//!   object is not an error.

#![warn(missing_docs)]

mod erase;
pub use erase::{erase_series, EraseError, Erasure};

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use radport_archive::{Archive, ArchiveError, ListedObject};
use radport_catalog::{Catalog, CatalogError, Reference};

/// Keys judged together: one catalog query (two with the re-check) per batch.
pub const BATCH: usize = 500;

/// Deletes in flight at once (S3 deletes are one request each).
const DELETE_CONCURRENCY: usize = 8;

/// The default grace: far longer than any instance takes from archive write to catalog commit.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// The default time between two collections of `radport serve`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

/// Why a collection stopped.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Listing the archive failed.
    #[error("archive: {0}")]
    Archive(#[from] ArchiveError),
    /// Asking the catalog failed.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The scratch directory or its lock could not be read.
    #[error("scratch directory {path}: {source}")]
    Scratch {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// How a [`Collector`] judges age.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Nothing modified more recently than this is removed.
    pub grace: Duration,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
        }
    }
}

/// What one collection saw and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Objects listed in the collected areas (staging files and scratch entries included).
    pub listed: u64,
    /// Kept: modified within the grace.
    pub young: u64,
    /// Kept: referenced by the catalog (at the first look or at the re-check).
    pub referenced: u64,
    /// Kept: a key whose form the collector does not know.
    pub unknown: u64,
    /// Removed instance objects (`instances/…`).
    pub instances: u64,
    /// Removed thumbnails and validation reports of series that do not exist.
    pub derived: u64,
    /// Removed chunks of uploads that are gone or complete.
    pub upload_parts: u64,
    /// Removed staging files of writes that never completed.
    pub staged: u64,
    /// Removed scratch entries of import runs that are not running.
    pub scratch: u64,
    /// Deletes that failed (left for the next collection).
    pub failed: u64,
}

impl Report {
    /// Everything removed.
    pub fn removed(&self) -> u64 {
        self.instances + self.derived + self.upload_parts + self.staged + self.scratch
    }
}

/// An area of the archive whose objects the catalog references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Instances,
    /// Records in the packs of a local archive (`--ingest-durability packs`), behind the
    /// pack log's checkpoint; removing one punches it out of its pack.
    Packs,
    Thumbnails,
    Reports,
    UploadParts,
}

impl Area {
    const ALL: [Area; 5] = [
        Area::Instances,
        Area::Packs,
        Area::Thumbnails,
        Area::Reports,
        Area::UploadParts,
    ];

    fn prefix(self) -> &'static str {
        match self {
            Area::Instances => "instances",
            Area::Packs => radport_archive::PACKS_AREA,
            Area::Thumbnails => "thumbnails",
            Area::Reports => "reports",
            Area::UploadParts => "upload-parts",
        }
    }

    fn reference(self) -> Reference {
        match self {
            Area::Instances | Area::Packs => Reference::InstanceObject,
            Area::Thumbnails | Area::Reports => Reference::Series,
            Area::UploadParts => Reference::OpenUpload,
        }
    }

    /// What the catalog would reference to keep `key`, or `None` for a key of a form this
    /// area does not have (kept).
    fn referent(self, key: &str) -> Option<String> {
        let rest = key.strip_prefix(self.prefix())?.strip_prefix('/')?;
        let value = match self {
            Area::Instances => return Some(key.to_string()),
            Area::Packs => {
                return radport_archive::keys::parse_packed(key).map(|_| key.to_string());
            }
            Area::Thumbnails => rest.strip_suffix(".png")?,
            Area::Reports => rest.strip_suffix(".html")?,
            Area::UploadParts => rest.split_once('/')?.0,
        };
        (!value.is_empty() && !value.contains('/')).then(|| value.to_string())
    }

    fn count(self, report: &mut Report) -> &mut u64 {
        match self {
            Area::Instances | Area::Packs => &mut report.instances,
            Area::Thumbnails | Area::Reports => &mut report.derived,
            Area::UploadParts => &mut report.upload_parts,
        }
    }
}

/// The scratch directory of a data directory, claimed by the one process that uses it.
///
/// Import runs copy their zip there and remove the copy when they end, also on failure; only
/// a process that dies leaves copies behind. A process claims the directory (an exclusive
/// `flock` on `<dir>.lock`, released by the kernel when the process dies, however it dies).
/// An entry goes once no process holds it open (a copy is open for as long as its run uses
/// it); where that cannot be known, only what was there when the directory was claimed.
/// Only the claimant collects the directory, so `radport collect` next to a running server
/// leaves it alone.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    /// Names present when the directory was claimed and not yet removed.
    leftovers: std::sync::Mutex<HashSet<OsString>>,
    /// Holds the lock for as long as this value lives.
    _lock: std::fs::File,
}

impl Scratch {
    /// Claims `dir` for this process. `None` if another live process holds it (a
    /// `radport serve` on the same data directory): its scratch files are then left alone.
    pub fn claim(dir: &Path) -> Result<Option<Scratch>, CollectError> {
        let lock_path = {
            let mut name = dir.as_os_str().to_owned();
            name.push(".lock");
            PathBuf::from(name)
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CollectError::Scratch { path, source }
        };
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if !try_lock_exclusive(&lock).map_err(io(&lock_path))? {
            return Ok(None);
        }
        let mut leftovers = HashSet::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    leftovers.insert(entry.map_err(io(dir))?.file_name());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(dir)(e)),
        }
        Ok(Some(Scratch {
            dir: dir.to_path_buf(),
            leftovers: std::sync::Mutex::new(leftovers),
            _lock: lock,
        }))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn leftovers(&self) -> Vec<OsString> {
        match self.leftovers.lock() {
            Ok(set) => set.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }

    fn forget(&self, name: &OsString) {
        match self.leftovers.lock() {
            Ok(mut set) => set.remove(name),
            Err(poisoned) => poisoned.into_inner().remove(name),
        };
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on an open descriptor owned by `file`, with integer flags.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.kind() == std::io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(err)
    }
}

#[cfg(not(unix))]
fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Removes unreferenced objects from the archive (and leftovers from the scratch directory).
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Collector {
    archive: Archive,
    catalog: Catalog,
    config: CollectorConfig,
    scratch: Option<Arc<Scratch>>,
}

/// `t` as a time the store reports (RFC 3339), or `None` if it does not parse.
fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc).into())
}

impl Collector {
    /// A collector over an archive and the catalog that references its objects.
    pub fn new(archive: Archive, catalog: Catalog, config: CollectorConfig) -> Self {
        Self {
            archive,
            catalog,
            config,
            scratch: None,
        }
    }

    /// Also removes the leftovers of a claimed scratch directory.
    pub fn with_scratch(mut self, scratch: Scratch) -> Self {
        self.scratch = Some(Arc::new(scratch));
        self
    }

    /// Runs one collection now.
    pub async fn collect_once(&self) -> Result<Report, CollectError> {
        let cutoff = SystemTime::now()
            .checked_sub(self.config.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = Report::default();
        for area in Area::ALL {
            self.collect_area(area, cutoff, &mut report).await?;
        }
        self.collect_staged(cutoff, &mut report).await?;
        if let Some(scratch) = &self.scratch {
            self.collect_scratch(scratch, cutoff, &mut report).await?;
        }
        Ok(report)
    }

    /// Collects every `interval` until the task is dropped; the first collection runs after
    /// `interval` or 10 s, whichever is shorter. Failures are logged and retried next time.
    pub async fn run(self, interval: Duration) {
        tokio::time::sleep(interval.min(Duration::from_secs(10))).await;
        loop {
            let started = std::time::Instant::now();
            match self.collect_once().await {
                Ok(report) if report.removed() > 0 || report.failed > 0 => tracing::info!(
                    listed = report.listed,
                    instances = report.instances,
                    derived = report.derived,
                    upload_parts = report.upload_parts,
                    staged = report.staged,
                    scratch = report.scratch,
                    failed = report.failed,
                    ms = started.elapsed().as_millis() as u64,
                    "collected unreferenced objects"
                ),
                Ok(report) => tracing::debug!(
                    listed = report.listed,
                    young = report.young,
                    "nothing to collect"
                ),
                Err(e) => tracing::warn!(error = %e, "collecting unreferenced objects failed"),
            }
            tokio::time::sleep(interval).await;
        }
    }

    async fn collect_area(
        &self,
        area: Area,
        cutoff: SystemTime,
        report: &mut Report,
    ) -> Result<(), CollectError> {
        let mut listing = match area {
            Area::Packs => self.archive.list_packed(),
            _ => self.archive.list_stream(area.prefix()),
        }
        .fuse();
        while let Some(batch) = next_batch(&mut listing).await? {
            report.listed += batch.len() as u64;
            let mut candidates = Vec::new();
            for object in batch {
                match parse_time(&object.modified) {
                    Some(modified) if modified < cutoff => {}
                    _ => {
                        report.young += 1;
                        continue;
                    }
                }
                match area.referent(&object.key) {
                    Some(referent) => candidates.push((object.key, referent)),
                    None => report.unknown += 1,
                }
            }
            let candidates = self.unreferenced(area, candidates, report).await?;
            if candidates.is_empty() {
                continue;
            }
            // Asked again right before deleting: what another node committed meanwhile stays.
            let orphans = self.unreferenced(area, candidates, report).await?;
            let results: Vec<(String, Result<(), ArchiveError>)> = futures::stream::iter(orphans)
                .map(|(key, _)| async move {
                    let result = self.archive.delete(&key).await;
                    (key, result)
                })
                .buffer_unordered(DELETE_CONCURRENCY)
                .collect()
                .await;
            for (key, result) in results {
                match result {
                    Ok(()) => {
                        *area.count(report) += 1;
                        tracing::debug!(key = %key, "removed an unreferenced object");
                    }
                    Err(e) => {
                        report.failed += 1;
                        tracing::debug!(key = %key, error = %e, "removing an unreferenced object failed");
                    }
                }
            }
        }
        Ok(())
    }

    /// Those of `candidates` (key, referent) whose referent the catalog does not reference.
    async fn unreferenced(
        &self,
        area: Area,
        candidates: Vec<(String, String)>,
        report: &mut Report,
    ) -> Result<Vec<(String, String)>, CollectError> {
        if candidates.is_empty() {
            return Ok(candidates);
        }
        let referents: Vec<String> = candidates.iter().map(|(_, r)| r.clone()).collect();
        let referenced = self
            .catalog
            .referenced(area.reference(), &referents)
            .await?;
        let before = candidates.len();
        let unreferenced: Vec<_> = candidates
            .into_iter()
            .filter(|(_, referent)| !referenced.contains(referent))
            .collect();
        report.referenced += (before - unreferenced.len()) as u64;
        Ok(unreferenced)
    }

    async fn collect_staged(
        &self,
        cutoff: SystemTime,
        report: &mut Report,
    ) -> Result<(), CollectError> {
        let mut listing = self.archive.list_staged().fuse();
        while let Some(batch) = next_batch(&mut listing).await? {
            report.listed += batch.len() as u64;
            let mut old = Vec::new();
            for object in batch {
                match parse_time(&object.modified) {
                    Some(modified) if modified < cutoff => old.push(object.key),
                    _ => report.young += 1,
                }
            }
            if old.is_empty() {
                continue;
            }
            let archive = self.archive.clone();
            // The age is checked again by `delete_staged` itself, right before the unlink.
            let results = tokio::task::spawn_blocking(move || {
                old.into_iter()
                    .map(|key| {
                        let result = archive.delete_staged(&key, cutoff);
                        (key, result)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (key, result) in results {
                match result {
                    Ok(true) => {
                        report.staged += 1;
                        tracing::debug!(key = %key, "removed a staging file");
                    }
                    Ok(false) => report.young += 1,
                    Err(e) => {
                        report.failed += 1;
                        tracing::debug!(key = %key, error = %e, "removing a staging file failed");
                    }
                }
            }
        }
        Ok(())
    }

    async fn collect_scratch(
        &self,
        scratch: &Arc<Scratch>,
        cutoff: SystemTime,
        report: &mut Report,
    ) -> Result<(), CollectError> {
        let dir = scratch.dir.clone();
        let listed = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let names = match std::fs::read_dir(&dir) {
                Ok(entries) => entries
                    .map(|e| e.map(|e| e.file_name()))
                    .collect::<std::io::Result<Vec<_>>>()?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            let open = if names.is_empty() {
                None
            } else {
                open_entries(&dir)
            };
            Ok((names, open))
        })
        .await;
        let (names, open) = match listed {
            Ok(Ok(listed)) => listed,
            Ok(Err(source)) => {
                return Err(CollectError::Scratch {
                    path: scratch.dir.clone(),
                    source,
                })
            }
            Err(_) => return Ok(()),
        };
        report.listed += names.len() as u64;
        // Where the system says which files processes hold open: whatever no process holds
        // (a run-job child killed at its time or memory limit leaves its copy closed).
        // Elsewhere: what was there before this process claimed the directory.
        let leftovers: HashSet<OsString> = scratch.leftovers().into_iter().collect();
        let candidates: Vec<OsString> = names
            .into_iter()
            .filter(|name| match &open {
                Some(open) => !open.contains(name),
                None => leftovers.contains(name),
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        // A name that is a queued or running workflow run's id is kept whatever its age.
        let as_text: Vec<String> = candidates
            .iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        let active = self
            .catalog
            .referenced(Reference::ActiveWorkflowRun, &as_text)
            .await?;
        let scratch = scratch.clone();
        let results = tokio::task::spawn_blocking(move || {
            let mut results = Vec::new();
            for name in candidates {
                if active.contains(name.to_string_lossy().as_ref()) {
                    results.push((name, Ok(false)));
                    continue;
                }
                let result = remove_if_older(&scratch.dir.join(&name), cutoff);
                let gone = match &result {
                    Ok(removed) => *removed,
                    Err(e) => e.kind() == std::io::ErrorKind::NotFound,
                };
                if gone {
                    scratch.forget(&name);
                }
                results.push((name, result));
            }
            results
        })
        .await
        .unwrap_or_default();
        for (name, result) in results {
            match result {
                Ok(true) => {
                    report.scratch += 1;
                    tracing::debug!(name = ?name, "removed a scratch leftover");
                }
                Ok(false) => report.young += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    report.failed += 1;
                    tracing::debug!(name = ?name, error = %e, "removing a scratch leftover failed");
                }
            }
        }
        Ok(())
    }
}

/// Linux: the names of the entries of `dir` that some process holds open (a file in them or
/// the entry itself), from `/proc/<pid>/fd`. `None` where that cannot be known.
fn open_entries(dir: &Path) -> Option<HashSet<OsString>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let dir = std::fs::canonicalize(dir).ok()?;
    let processes = std::fs::read_dir("/proc").ok()?;
    let mut open = HashSet::new();
    for process in processes.flatten() {
        let is_pid = process
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        // Another user's process (unreadable) or one that just ended: none of ours.
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if let Ok(rest) = target.strip_prefix(&dir) {
                    if let Some(first) = rest.components().next() {
                        open.insert(first.as_os_str().to_os_string());
                    }
                }
            }
        }
    }
    Some(open)
}

/// Removes a file or directory tree last modified before `cutoff`; whether it did.
fn remove_if_older(path: &Path, cutoff: SystemTime) -> std::io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.modified()? >= cutoff {
        return Ok(false);
    }
    if meta.is_dir() {
        std::fs::remove_dir_all(path)?;
    } else {
        std::fs::remove_file(path)?;
    }
    Ok(true)
}

/// The next up to [`BATCH`] objects of a (fused) listing; `None` at its end.
async fn next_batch(
    listing: &mut (impl Stream<Item = Result<ListedObject, ArchiveError>> + Unpin),
) -> Result<Option<Vec<ListedObject>>, ArchiveError> {
    let mut batch = Vec::new();
    while batch.len() < BATCH {
        match listing.next().await {
            Some(object) => batch.push(object?),
            None => break,
        }
    }
    Ok((!batch.is_empty()).then_some(batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referents_by_area() {
        let k = "instances/2026/01/02/abc.dcm";
        assert_eq!(Area::Instances.referent(k).as_deref(), Some(k));
        assert_eq!(
            Area::Thumbnails.referent("thumbnails/1.2.3.png").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(Area::Thumbnails.referent("thumbnails/1.2.3.jpg"), None);
        assert_eq!(Area::Thumbnails.referent("thumbnails/x/1.png"), None);
        assert_eq!(
            Area::Reports.referent("reports/1.2.html").as_deref(),
            Some("1.2")
        );
        assert_eq!(
            Area::UploadParts
                .referent("upload-parts/abc/00000000000000000000")
                .as_deref(),
            Some("abc")
        );
        assert_eq!(Area::UploadParts.referent("upload-parts/abc"), None);
        assert_eq!(Area::UploadParts.referent("uploads/abc/x"), None);
    }
}
