//! The archive: every stored object of radport (DICOM instances, thumbnails, validation
//! reports and uploads) goes through this crate, on top of the `object_store` crate.
//!
//! The embedded default is a directory on local disk (`LocalFileSystem` with fsync on), the
//! distributed setup an S3-compatible bucket. No other crate touches the file system to store
//! an object.
//!
//! Invariants:
//! - An object is visible under its key only once it is complete: writes go through
//!   [`ObjectWriter`], which either completes (atomic rename / multipart completion) or aborts.
//! - On local disk a completed object has been fsynced together with its directory, so a caller
//!   may acknowledge it to a remote peer. On S3 an object exists only once its `PUT` or its
//!   multipart completion has been answered; a multipart upload that fails, is aborted or whose
//!   writer is dropped unfinished is aborted (a process killed mid-upload leaves an incomplete
//!   multipart upload, invisible, for the bucket's lifecycle rule to expire).
//!
//! [`Archive::from_url`] opens the archive named by `--archive-url` (see [`open`]).

#![warn(missing_docs)]

use std::path::Path as FsPath;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

mod behind_journal;
pub mod open;
mod packed;
pub use open::{redact_archive_url, OpenError};
pub use packed::PACKS_AREA;

/// The layout of the archive: where each kind of object lives.
pub mod keys {
    pub use crate::packed::{key as packed, parse_key as parse_packed};

    /// Key of the PNG thumbnail of a series.
    pub fn thumbnail(series_uid: &str) -> String {
        format!("thumbnails/{series_uid}.png")
    }

    /// Key of an uploaded file at `path` inside the uploads area, or `None` if the path would
    /// leave it: it must be relative, `/`-separated, without `.`, `..` or empty parts, control
    /// characters, backslashes or `#`.
    pub fn upload_file(path: &str) -> Option<String> {
        clean_upload_path(path).map(|p| format!("uploads/{p}"))
    }

    /// The cleaned form of a path inside the uploads area (see [`upload_file`]).
    pub fn clean_upload_path(path: &str) -> Option<String> {
        let path = path.trim_matches('/');
        if path.is_empty() || path.len() > 1024 {
            return None;
        }
        let mut parts = Vec::new();
        for part in path.split('/') {
            let bad = part.is_empty()
                || part == "."
                || part == ".."
                || part
                    .chars()
                    .any(|c| c.is_control() || c == '\\' || c == '#');
            if bad {
                return None;
            }
            parts.push(part);
        }
        Some(parts.join("/"))
    }

    /// Key of the HTML validation report of a series.
    pub fn validation_report(series_uid: &str) -> String {
        format!("reports/{series_uid}.html")
    }
}

/// Errors of the archive, classified so that callers can map them to protocol statuses.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The storage has no space left (ENOSPC / quota).
    #[error("out of storage space: {0}")]
    OutOfSpace(String),
    /// The object does not exist.
    #[error("object not found: {0}")]
    NotFound(String),
    /// The key is not acceptable (e.g. it would escape its prefix).
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    /// Any other storage failure.
    #[error("storage error: {0}")]
    Storage(String),
    /// Not yet possible: a packed instance cannot be deleted before the pack log's
    /// checkpoint has passed it (try again after the next one).
    #[error("not yet possible: {0} is ahead of the pack log's checkpoint")]
    NotYet(String),
}

impl ArchiveError {
    fn classify(err: object_store::Error) -> Self {
        if let object_store::Error::NotFound { path, .. } = &err {
            return ArchiveError::NotFound(path.clone());
        }
        if error_chain_is_out_of_space(&err) {
            return ArchiveError::OutOfSpace(err.to_string()).counted();
        }
        ArchiveError::Storage(err.to_string()).counted()
    }

    fn from_io(err: std::io::Error) -> Self {
        if error_chain_is_out_of_space(&err) {
            ArchiveError::OutOfSpace(err.to_string()).counted()
        } else {
            ArchiveError::Storage(err.to_string()).counted()
        }
    }

    fn from_journal(err: radport_journal::JournalError) -> Self {
        match err {
            radport_journal::JournalError::Io(e) => ArchiveError::from_io(e),
            other => ArchiveError::Storage(other.to_string()).counted(),
        }
    }

    /// A storage failure that the store did not report (a short read, no answer in time).
    fn storage(message: String) -> Self {
        ArchiveError::Storage(message).counted()
    }

    /// Counts the failure in `radport_archive_errors_total` (a missing object or a refused
    /// key is an answer, not a failure of the store).
    fn counted(self) -> Self {
        let kind = match &self {
            ArchiveError::OutOfSpace(_) => Some("out_of_space"),
            ArchiveError::Storage(_) => Some("storage"),
            ArchiveError::NotFound(_) | ArchiveError::InvalidKey(_) | ArchiveError::NotYet(_) => {
                None
            }
        };
        if let Some(kind) = kind {
            radport_metrics::global().archive_error(kind);
        }
        self
    }
}

/// Bytes `range` of a local file, read into a buffer that is not zeroed first (object_store's
/// `get_range` zeroes it, then reads over it: a tenth of the CPU of a WADO-RS retrieval, see
/// `docs/performance.md`). A file shorter than the range is an error.
fn read_file_range(
    file: &FsPath,
    key: String,
    range: std::ops::Range<u64>,
) -> Result<Bytes, ArchiveError> {
    use std::io::{Read, Seek, SeekFrom};
    let want = range.end.saturating_sub(range.start);
    let capacity = usize::try_from(want)
        .map_err(|_| ArchiveError::Storage(format!("{key}: range of {want} bytes too large")))?;
    let mut handle = match std::fs::File::open(file) {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArchiveError::NotFound(key));
        }
        Err(e) => return Err(ArchiveError::from_io(e)),
    };
    handle
        .seek(SeekFrom::Start(range.start))
        .map_err(ArchiveError::from_io)?;
    let mut buffer = Vec::with_capacity(capacity);
    handle
        .take(want)
        .read_to_end(&mut buffer)
        .map_err(ArchiveError::from_io)?;
    if buffer.len() != capacity {
        return Err(ArchiveError::storage(format!(
            "{key}: {} bytes where bytes {}..{} were asked for",
            buffer.len(),
            range.start,
            range.end
        )));
    }
    Ok(Bytes::from(buffer))
}

fn io_is_out_of_space(err: &std::io::Error) -> bool {
    // ENOSPC = 28, EDQUOT = 122 on Linux.
    matches!(err.raw_os_error(), Some(28) | Some(122))
        || err.kind() == std::io::ErrorKind::StorageFull
        || err.kind() == std::io::ErrorKind::QuotaExceeded
}

fn error_chain_is_out_of_space(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io_is_out_of_space(io) {
                return true;
            }
        }
        current = e.source();
    }
    // object_store flattens some io errors into strings
    let text = err.to_string();
    text.contains("No space left on device") || text.contains("Disk quota exceeded")
}

/// Whether a file name is one object_store stages a write in: `<name>#<digits>`.
fn is_staged_name(name: &str) -> bool {
    match name.rsplit_once('#') {
        Some((_, suffix)) => !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// One object listed by [`Archive::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, RFC 3339.
    pub modified: String,
}

/// What a completed [`ObjectWriter`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The object's key.
    pub key: String,
    /// Number of bytes stored.
    pub size: u64,
    /// Checksum of the stored bytes, see [`checksum`].
    pub checksum: String,
}

/// Name of the checksum algorithm, the prefix of every checksum the archive computes.
pub const CHECKSUM_ALGORITHM: &str = "xxh128";

/// The checksum of `bytes` as the archive writes it: `xxh128:` and 32 lower-case hex digits,
/// the XXH3-128 hash as `xxhsum -H2` prints it (big-endian).
///
/// XXH3-128, not BLAKE3 (2026-12-02 to -05) nor SHA-256 (before): hashing every received byte
/// is on the ingest hot path, where BLAKE3 was 12 % of the receiver's CPU and XXH3-128 is a
/// sixth of that (figures in `docs/performance.md`, session 19). The checksum catches a
/// damaged or truncated copy — what a stored hash can do; it is no signature (whoever can
/// change the bytes can change it too). The `overwrite-if-different` duplicate policy compares
/// these: a crafted collision could only make a re-send with other bytes count as the same
/// (the copy already there is kept), and a re-send of an instance recorded under another
/// algorithm counts as different once. The prefix names the algorithm, so that a stored
/// value says how to verify it; older values (`blake3:`, `sha256:`) are still verified.
pub fn checksum(bytes: &[u8]) -> String {
    let mut checksummer = Checksummer::new();
    checksummer.update(bytes);
    checksummer.finish().to_string()
}

/// The checksum of bytes hashed as they arrived ([`Checksummer`]), as [`checksum`] writes it.
pub fn checksum_of(digest: &Digest) -> String {
    digest.to_string()
}

/// The archive's checksum, computed incrementally as bytes arrive.
#[derive(Clone, Default)]
pub struct Checksummer(twox_hash::xxhash3_128::Hasher);

impl std::fmt::Debug for Checksummer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checksummer")
    }
}

impl Checksummer {
    /// A checksum of nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The checksum of every byte taken.
    pub fn finish(&self) -> Digest {
        Digest(self.0.finish_128())
    }
}

/// What a [`Checksummer`] computed: the XXH3-128 hash. Displays as the archive writes
/// checksums (`xxh128:` and the hash big-endian in hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u128);

impl Digest {
    /// The hash as a number (for a journal frame's body hash: `to_le_bytes`).
    pub fn xxh3_128(&self) -> u128 {
        self.0
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{CHECKSUM_ALGORITHM}:{:032x}", self.0)
    }
}

fn format_blake3(hash: &blake3::Hash) -> String {
    format!("blake3:{}", hash.to_hex())
}

/// What reading an object back told about it (see [`Archive::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Its size and checksum are those recorded.
    Intact,
    /// There is no object under the key.
    Missing,
    /// Its size is not the one recorded.
    SizeDiffers {
        /// Bytes stored now.
        stored: u64,
    },
    /// Its checksum is not the one recorded.
    ChecksumDiffers {
        /// Checksum of the bytes stored now, in the recorded checksum's algorithm.
        stored: String,
    },
    /// The recorded checksum names an algorithm this build does not know.
    UnknownAlgorithm(String),
}

/// An incremental hash in the algorithm a recorded checksum names.
enum Hasher {
    Xxh128(Box<Checksummer>),
    Blake3(Box<blake3::Hasher>),
    Sha256(sha2::Sha256),
}

impl Hasher {
    fn for_checksum(checksum: &str) -> Option<Hasher> {
        use sha2::Digest;
        match checksum.split_once(':')?.0 {
            CHECKSUM_ALGORITHM => Some(Hasher::Xxh128(Box::default())),
            // Recorded from 2026-12-02 to session 19.
            "blake3" => Some(Hasher::Blake3(Box::default())),
            // Recorded before schema version 3.
            "sha256" => Some(Hasher::Sha256(sha2::Sha256::new())),
            _ => None,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Xxh128(h) => h.update(bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        use sha2::Digest;
        match self {
            Hasher::Xxh128(h) => h.finish().to_string(),
            Hasher::Blake3(h) => format_blake3(&h.finalize()),
            Hasher::Sha256(h) => {
                let digest = h.finalize();
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        }
    }
}

/// Handle on the object store. Cheap to clone.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    /// A local directory: the same store, for direct file access.
    local: Option<Arc<LocalFileSystem>>,
    description: String,
    /// Bytes an [`ObjectWriter`] buffers before it writes a part.
    write_buffer: usize,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

/// The key a readiness check asks about (it need not exist).
const READY_PROBE_KEY: &str = "probe/ready";

/// Buffer size of an [`ObjectWriter`] before it switches to a multipart upload; also the part
/// size. S3 needs parts of at least 5 MiB.
pub const WRITE_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// The same for a local directory. An object up to this size (a CT or MR slice) is written
/// by one hand-off to a blocking thread — create, write, fsync, rename, fsync the directory —
/// which measured faster than overlapping smaller parts with the arrival of the rest (each
/// part is one more hand-off; see `docs/performance.md`). Larger objects are written part by
/// part as they arrive.
pub const LOCAL_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// Creates `dir` and its missing ancestors so that each one's name is durable: after making a
/// directory, its parent is fsynced. (A directory's entry is in its parent; without that sync
/// a power cut could take a new data directory — and everything later stored in it — away.)
pub fn create_dir_all_durably(dir: &FsPath) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        create_dir_all_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(e),
    }
    std::fs::File::open(parent.unwrap_or(FsPath::new(".")))?.sync_all()
}

impl Archive {
    /// An archive in a local directory (created if missing, durably), fsyncing every object it
    /// completes.
    pub fn local(dir: &FsPath) -> Result<Self, ArchiveError> {
        create_dir_all_durably(dir).map_err(ArchiveError::from_io)?;
        let store = Arc::new(
            LocalFileSystem::new_with_prefix(dir)
                .map_err(ArchiveError::classify)?
                .with_automatic_cleanup(true)
                .with_fsync(true),
        );
        Ok(Self {
            store: store.clone(),
            local: Some(store),
            description: format!("local directory {}", dir.display()),
            write_buffer: LOCAL_WRITE_BUFFER_BYTES,
        })
    }

    /// An archive over any object store (in-memory for tests, S3 in distributed setups).
    pub fn with_store(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self {
            store,
            local: None,
            description: description.into(),
            write_buffer: WRITE_BUFFER_BYTES,
        }
    }

    /// Human-readable description of the backend (no secrets).
    pub fn description(&self) -> &str {
        &self.description
    }

    fn path(key: &str) -> Result<Path, ArchiveError> {
        if packed::in_packs_area(key) {
            return Err(ArchiveError::InvalidKey(format!(
                "{key}: the packs' area is written by the pack log only"
            )));
        }
        Path::parse(key).map_err(|e| ArchiveError::InvalidKey(format!("{key}: {e}")))
    }

    /// Starts writing an object; nothing is visible under `key` until [`ObjectWriter::finish`].
    pub fn writer(&self, key: &str) -> Result<ObjectWriter, ArchiveError> {
        let path = Self::path(key)?;
        Ok(ObjectWriter {
            key: key.to_string(),
            inner: Some(BufWriter::with_capacity(
                self.store.clone(),
                path,
                self.write_buffer,
            )),
            hasher: Checksummer::new(),
            size: 0,
        })
    }

    /// Stores a whole object at once.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<StoredObject, ArchiveError> {
        let path = Self::path(key)?;
        let checksum = checksum(&bytes);
        let size = bytes.len() as u64;
        self.store
            .put(&path, bytes.into())
            .await
            .map_err(ArchiveError::classify)?;
        Ok(StoredObject {
            key: key.to_string(),
            size,
            checksum,
        })
    }

    /// Reads a whole object into memory.
    pub async fn get(&self, key: &str) -> Result<Bytes, ArchiveError> {
        if let Some(position) = keys::parse_packed(key) {
            return self.packed_range(key, position, packed::Wanted::All).await;
        }
        let path = Self::path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(ArchiveError::classify)?;
        result.bytes().await.map_err(ArchiveError::classify)
    }

    /// Reads an object as a stream of chunks (for serving large files without buffering them).
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<
        (
            u64,
            futures::stream::BoxStream<'static, Result<Bytes, ArchiveError>>,
        ),
        ArchiveError,
    > {
        if let Some(position) = keys::parse_packed(key) {
            return self
                .packed_stream(key, position, packed::STREAM_PIECE_BYTES)
                .await;
        }
        let path = Self::path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(ArchiveError::classify)?;
        let size = result.meta.size;
        let stream = result.into_stream().map_err(ArchiveError::classify);
        Ok((size, Box::pin(stream)))
    }

    /// Reads bytes `range` of an object into memory (DICOMweb frames). A range that does not
    /// lie within the object is an error, on every store.
    pub async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, ArchiveError> {
        if let Some(position) = keys::parse_packed(key) {
            return self
                .packed_range(key, position, packed::Wanted::Range(range))
                .await;
        }
        let path = Self::path(key)?;
        if let Some(local) = &self.local {
            let file = local
                .path_to_filesystem(&path)
                .map_err(ArchiveError::classify)?;
            return tokio::task::spawn_blocking(move || {
                read_file_range(&file, path.to_string(), range)
            })
            .await
            .map_err(|e| ArchiveError::Storage(format!("read task failed: {e}")))?;
        }
        let want = range.end.saturating_sub(range.start);
        let bytes = self
            .store
            .get_range(&path, range.clone())
            .await
            .map_err(ArchiveError::classify)?;
        // Stores clamp a range past the end; the caller asked for bytes that are not there.
        if u64::try_from(bytes.len()).ok() != Some(want) {
            return Err(ArchiveError::storage(format!(
                "{path}: {} bytes where bytes {}..{} were asked for",
                bytes.len(),
                range.start,
                range.end
            )));
        }
        Ok(bytes)
    }

    /// Reads bytes `range` of an object as a stream of pieces of at most `piece` bytes, each
    /// one range read, made when the stream is polled for it (DICOMweb retrieval). On local
    /// disk this is one blocking read per piece, where `get_stream` makes one per 8 KiB.
    pub fn get_in_pieces(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
        piece: u64,
    ) -> futures::stream::BoxStream<'static, Result<Bytes, ArchiveError>> {
        let archive = self.clone();
        let key = key.to_string();
        let piece = piece.max(1);
        Box::pin(futures::stream::try_unfold(range.start, move |at| {
            let archive = archive.clone();
            let key = key.clone();
            let end = range.end;
            async move {
                if at >= end {
                    return Ok(None);
                }
                let to = at.saturating_add(piece).min(end);
                let bytes = archive.get_range(&key, at..to).await?;
                Ok(Some((bytes, to)))
            }
        }))
    }

    /// Like [`Archive::get_stream`], in chunks of up to `chunk_size` bytes from a local
    /// directory (object_store reads 8 KiB per blocking call there, which costs a thread hand-off
    /// per 8 KiB when a retrieve streams a series); other stores give the chunks they give.
    pub async fn get_chunks(
        &self,
        key: &str,
        chunk_size: usize,
    ) -> Result<
        (
            u64,
            futures::stream::BoxStream<'static, Result<Bytes, ArchiveError>>,
        ),
        ArchiveError,
    > {
        use std::io::Read;
        if let Some(position) = keys::parse_packed(key) {
            return self.packed_stream(key, position, chunk_size as u64).await;
        }
        let path = Self::path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(ArchiveError::classify)?;
        let size = result.meta.size;
        match result.payload {
            object_store::GetResultPayload::File(file, _) => {
                let chunk_size = chunk_size.max(4096);
                let stream =
                    futures::stream::try_unfold((file, size), move |(mut file, left)| async move {
                        if left == 0 {
                            return Ok(None);
                        }
                        let want = usize::try_from(left).unwrap_or(usize::MAX).min(chunk_size);
                        let (file, buffer) = tokio::task::spawn_blocking(move || {
                            let mut buffer = Vec::with_capacity(want);
                            let read = (&mut file)
                                .take(want as u64)
                                .read_to_end(&mut buffer)
                                .map(|_| buffer);
                            (file, read)
                        })
                        .await
                        .map_err(|e| ArchiveError::Storage(format!("read task failed: {e}")))?;
                        let buffer = buffer.map_err(ArchiveError::from_io)?;
                        if buffer.is_empty() {
                            return Err(ArchiveError::from_io(std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "object shorter than its size",
                            )));
                        }
                        let left = left - buffer.len() as u64;
                        Ok(Some((Bytes::from(buffer), (file, left))))
                    });
                Ok((size, Box::pin(stream)))
            }
            other => {
                let result = object_store::GetResult {
                    payload: other,
                    ..result
                };
                Ok((
                    size,
                    Box::pin(result.into_stream().map_err(ArchiveError::classify)),
                ))
            }
        }
    }

    /// Reads the first `len` bytes of an object (fewer if it is shorter).
    pub async fn get_prefix(&self, key: &str, len: u64) -> Result<Bytes, ArchiveError> {
        if let Some(position) = keys::parse_packed(key) {
            return self
                .packed_range(key, position, packed::Wanted::Prefix(len))
                .await;
        }
        let path = Self::path(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(ArchiveError::classify)?;
        let end = len.min(meta.size);
        self.store
            .get_range(&path, 0..end)
            .await
            .map_err(ArchiveError::classify)
    }

    /// Reads an object back whole and compares it with the size and checksum recorded for it
    /// (a checksum of [`checksum`]'s form, or `blake3:<hex>` and `sha256:<hex>` recorded
    /// before).
    pub async fn verify(
        &self,
        key: &str,
        size: u64,
        checksum: &str,
    ) -> Result<Verification, ArchiveError> {
        let Some(mut hasher) = Hasher::for_checksum(checksum) else {
            let algorithm = checksum.split_once(':').map_or(checksum, |(a, _)| a);
            return Ok(Verification::UnknownAlgorithm(algorithm.to_string()));
        };
        let mut stream = match self.get_stream(key).await {
            Ok((_, stream)) => stream,
            Err(ArchiveError::NotFound(_)) => return Ok(Verification::Missing),
            Err(e) => return Err(e),
        };
        let mut stored = 0u64;
        while let Some(chunk) = stream.try_next().await? {
            stored += chunk.len() as u64;
            hasher.update(&chunk);
        }
        if stored != size {
            return Ok(Verification::SizeDiffers { stored });
        }
        let computed = hasher.finish();
        Ok(if computed.eq_ignore_ascii_case(checksum) {
            Verification::Intact
        } else {
            Verification::ChecksumDiffers { stored: computed }
        })
    }

    /// Local directory only (a no-op elsewhere): asks the kernel, in the background, to drop a
    /// durable object's pages from the page cache.
    ///
    /// For objects written once and read seldom, such as received instances. Left cached, they
    /// push out what is read again (the catalog), and once the machine's free memory is used
    /// up, every later write waits for the kernel to reclaim pages. What this does to the
    /// ingest benchmark is in `docs/performance.md`.
    pub fn drop_cached(&self, key: &str) {
        self.drop_all_cached(vec![key.to_string()]);
    }

    /// [`Archive::drop_cached`] for many objects, in one blocking task (a checkpoint of the
    /// ingest journal drops a segment's worth at once: one task each would start a thread each).
    pub fn drop_all_cached(&self, keys: Vec<String>) {
        let Some(local) = &self.local else { return };
        let paths: Vec<std::path::PathBuf> = keys
            .iter()
            .filter_map(|key| {
                Self::path(key)
                    .and_then(|p| local.path_to_filesystem(&p).map_err(ArchiveError::classify))
                    .ok()
            })
            .collect();
        if paths.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || {
                for path in paths {
                    #[cfg(target_os = "linux")]
                    if let Ok(file) = std::fs::File::open(&path) {
                        use std::os::fd::AsRawFd;
                        // SAFETY: advisory call on an open descriptor with integer arguments.
                        unsafe {
                            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
                        }
                    }
                    #[cfg(not(target_os = "linux"))]
                    let _ = path;
                }
            });
        }
    }

    /// Whether the store answers: a metadata request for an object that does not exist (a
    /// local directory: that the directory is there). For readiness checks; bounded by
    /// `timeout`.
    pub async fn ready(&self, timeout: std::time::Duration) -> Result<(), ArchiveError> {
        let probe = async {
            if let Some(root) = self.local_root() {
                return match tokio::fs::metadata(&root).await {
                    Ok(meta) if meta.is_dir() => Ok(()),
                    Ok(_) => Err(ArchiveError::Storage(format!(
                        "{} is not a directory",
                        root.display()
                    ))),
                    Err(e) => Err(ArchiveError::from_io(e)),
                };
            }
            match self.store.head(&Path::from(READY_PROBE_KEY)).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(ArchiveError::classify(e)),
            }
        };
        tokio::time::timeout(timeout, probe)
            .await
            .map_err(|_| ArchiveError::storage(format!("no answer within {timeout:?}")))?
    }

    /// Size of an object, or `NotFound`.
    pub async fn size(&self, key: &str) -> Result<u64, ArchiveError> {
        if let Some(position) = keys::parse_packed(key) {
            return self.packed_size(key, position).await;
        }
        let path = Self::path(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(ArchiveError::classify)?;
        Ok(meta.size)
    }

    /// Deletes an object; deleting a missing object is not an error. A packed instance is
    /// punched out of its pack, once the pack log's checkpoint has passed it
    /// ([`ArchiveError::NotYet`] before).
    pub async fn delete(&self, key: &str) -> Result<(), ArchiveError> {
        if let Some(position) = keys::parse_packed(key) {
            return self.delete_packed(key, position).await;
        }
        let path = Self::path(key)?;
        match self.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(ArchiveError::classify(e)),
        }
    }

    /// Lists the objects under a prefix (recursively), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, ArchiveError> {
        let path = Self::path(prefix)?;
        let mut items: Vec<ListedObject> = self
            .store
            .list(Some(&path))
            .map_ok(|meta| ListedObject {
                key: meta.location.to_string(),
                size: meta.size,
                modified: meta.last_modified.to_rfc3339(),
            })
            .try_collect()
            .await
            .map_err(ArchiveError::classify)?;
        items.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    /// Lists the objects under a prefix (recursively) as a stream, in no particular order:
    /// pages of the store's listing as they come, never the whole listing in memory.
    pub fn list_stream(
        &self,
        prefix: &str,
    ) -> futures::stream::BoxStream<'static, Result<ListedObject, ArchiveError>> {
        let path = match Self::path(prefix) {
            Ok(path) => path,
            Err(e) => return Box::pin(futures::stream::once(async move { Err(e) })),
        };
        Box::pin(
            self.store
                .list(Some(&path))
                .map_ok(|meta| ListedObject {
                    key: meta.location.to_string(),
                    size: meta.size,
                    modified: meta.last_modified.to_rfc3339(),
                })
                .map_err(ArchiveError::classify),
        )
    }

    /// The directory of a local archive.
    fn local_root(&self) -> Option<std::path::PathBuf> {
        let local = self.local.as_ref()?;
        let probe = local.path_to_filesystem(&Path::from("probe")).ok()?;
        probe.parent().map(FsPath::to_path_buf)
    }

    /// Local directory only (empty elsewhere): the staging files of writes that never
    /// completed, which the listing hides. object_store writes an object at `KEY` into
    /// `KEY#<n>` and renames it into place; a process killed before the rename leaves the
    /// staging file behind. Each is listed with its key, `KEY#<n>`, for
    /// [`delete_staged`](Self::delete_staged). The directories are walked in a blocking
    /// thread, a bounded number of entries at a time.
    pub fn list_staged(
        &self,
    ) -> futures::stream::BoxStream<'static, Result<ListedObject, ArchiveError>> {
        let Some(root) = self.local_root() else {
            return Box::pin(futures::stream::empty());
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let walk = move || {
            let mut dirs = vec![root.clone()];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(ArchiveError::from_io(e)));
                        return;
                    }
                };
                for entry in entries.flatten() {
                    let Ok(kind) = entry.file_type() else {
                        continue;
                    };
                    let path = entry.path();
                    if kind.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    if !kind.is_file() || !is_staged_name(&entry.file_name().to_string_lossy()) {
                        continue;
                    }
                    // Gone meanwhile (completed or cleaned up): nothing to list.
                    let Ok(meta) = entry.metadata() else { continue };
                    let Ok(relative) = path.strip_prefix(&root) else {
                        continue;
                    };
                    let key = relative
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    let modified: chrono::DateTime<chrono::Utc> = match meta.modified() {
                        Ok(t) => t.into(),
                        Err(_) => continue,
                    };
                    let listed = ListedObject {
                        key,
                        size: meta.len(),
                        modified: modified.to_rfc3339(),
                    };
                    if tx.blocking_send(Ok(listed)).is_err() {
                        return;
                    }
                }
            }
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::task::spawn_blocking(walk);
        } else {
            std::thread::spawn(walk);
        }
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// Deletes a staging file listed by [`list_staged`](Self::list_staged) if it was last
    /// modified before `modified_before` (checked again now, so a write that went on since it
    /// was listed keeps it). Returns whether it was deleted; a file gone already is not an
    /// error.
    pub fn delete_staged(
        &self,
        key: &str,
        modified_before: std::time::SystemTime,
    ) -> Result<bool, ArchiveError> {
        let root = self
            .local_root()
            .ok_or_else(|| ArchiveError::InvalidKey(format!("{key}: not a local archive")))?;
        let name = key.rsplit('/').next().unwrap_or(key);
        let escapes = key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
        if escapes || key.contains('\\') || !is_staged_name(name) {
            return Err(ArchiveError::InvalidKey(format!(
                "{key}: not a staging file"
            )));
        }
        let path = root.join(key);
        let modified = match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(modified) => modified,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(ArchiveError::from_io(e)),
        };
        if modified >= modified_before {
            return Ok(false);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ArchiveError::from_io(e)),
        }
    }
}

/// A streaming write of one object. Memory use is bounded by [`WRITE_BUFFER_BYTES`].
/// Dropping it without [`finish`](Self::finish) leaves nothing visible and aborts a multipart
/// upload in the background (call [`abort`](Self::abort) to clean up before going on).
pub struct ObjectWriter {
    key: String,
    /// `None` only once finished or aborted.
    inner: Option<BufWriter>,
    hasher: Checksummer,
    size: u64,
}

impl ObjectWriter {
    /// The key the object will have.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a copy of `bytes`.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ArchiveError> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(self.finished_error());
        };
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        inner.write_all(bytes).await.map_err(ArchiveError::from_io)
    }

    /// Appends `bytes` without copying them: the writer keeps the buffer until it is written.
    pub async fn write_owned(&mut self, bytes: Bytes) -> Result<(), ArchiveError> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(self.finished_error());
        };
        self.hasher.update(&bytes);
        self.size += bytes.len() as u64;
        inner.put(bytes).await.map_err(ArchiveError::classify)
    }

    fn finished_error(&self) -> ArchiveError {
        ArchiveError::Storage(format!("{}: write after finish or abort", self.key))
    }

    /// Completes the object: after this returns `Ok`, it is durably stored and visible. On
    /// failure nothing is visible (a failed multipart completion is aborted by object_store).
    pub async fn finish(mut self) -> Result<StoredObject, ArchiveError> {
        let mut inner = self.inner.take().ok_or_else(|| {
            ArchiveError::Storage(format!("{}: finished or aborted already", self.key))
        })?;
        inner.shutdown().await.map_err(ArchiveError::from_io)?;
        Ok(StoredObject {
            key: std::mem::take(&mut self.key),
            size: self.size,
            checksum: self.hasher.finish().to_string(),
        })
    }

    /// Abandons the object; nothing becomes visible (a multipart upload is aborted).
    pub async fn abort(mut self) {
        if let Some(mut inner) = self.inner.take() {
            if let Err(e) = inner.abort().await {
                tracing::warn!(key = %self.key, error = %e, "aborting a partial object failed");
            }
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        // Dropped mid-write (a cancelled task, an early return): abort a multipart upload that
        // was started, so no incomplete upload is left behind in the bucket.
        let Some(mut inner) = self.inner.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        runtime.spawn(async move {
            if let Err(e) = inner.abort().await {
                tracing::warn!(key = %key, error = %e, "aborting a dropped partial object failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksums stored before (xxhash-rust) and after (twox-hash) are the same XXH3-128:
    /// every length through each of XXH3's size classes (0, 1–3, 4–8, 9–16, 17–128,
    /// 129–240, longer: stripes and blocks, with and without a partial last one), fed whole
    /// and in pieces that split its 64-byte stripes and 1 KiB blocks anywhere.
    #[test]
    fn the_checksum_is_xxh3_128_whatever_the_pieces() {
        let data: Vec<u8> = (0..600_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let lengths = (0..300).chain([1023, 1024, 1025, 16_372, 65_536, 131_060, 600_000]);
        for len in lengths {
            let bytes = &data[..len];
            let expected = xxhash_rust::xxh3::xxh3_128(bytes);
            for piece in [usize::MAX, 1, 7, 64, 777, 16_372] {
                let mut checksummer = Checksummer::new();
                for chunk in bytes.chunks(piece.min(len.max(1))) {
                    checksummer.update(chunk);
                }
                assert_eq!(
                    checksummer.finish().xxh3_128(),
                    expected,
                    "{len} bytes in {piece}s"
                );
            }
        }
    }

    #[tokio::test]
    async fn write_finish_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        let mut w = archive.writer("instances/a/b.dcm").unwrap();
        w.write(b"hello ").await.unwrap();
        w.write_owned(Bytes::from_static(b"wor")).await.unwrap();
        w.write(b"ld").await.unwrap();
        let stored = w.finish().await.unwrap();
        assert_eq!(stored.size, 11);
        assert_eq!(
            stored.checksum,
            // Python's xxhash (`xxh3_128_hexdigest`), as `xxhsum -H2` prints it.
            "xxh128:df8d09e93f874900a99b8775cc15b6c7",
            "checksum covers every byte"
        );
        assert_eq!(stored.checksum, checksum(b"hello world"));
        assert_eq!(checksum(b""), "xxh128:99aa06d3014798d86001c324468d497f");
        assert_eq!(
            archive.get("instances/a/b.dcm").await.unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert_eq!(
            archive.get_prefix("instances/a/b.dcm", 5).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        let listed = archive.list("instances").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, "instances/a/b.dcm");
        archive.delete("instances/a/b.dcm").await.unwrap();
        assert!(matches!(
            archive.get("instances/a/b.dcm").await,
            Err(ArchiveError::NotFound(_))
        ));
        archive.delete("instances/a/b.dcm").await.unwrap();
    }

    /// Range reads of a local directory (its own code, not object_store's) and of another
    /// store agree: the bytes asked for, `NotFound`, and an error for a range past the end.
    #[tokio::test]
    async fn range_reads_agree_between_local_and_other_stores() {
        let dir = tempfile::tempdir().unwrap();
        let local = Archive::local(dir.path()).unwrap();
        let memory = Archive::with_store(Arc::new(object_store::memory::InMemory::new()), "memory");
        let content: Vec<u8> = (0..100_000u32).map(|n| (n % 251) as u8).collect();
        for archive in [&local, &memory] {
            let mut w = archive.writer("instances/r.dcm").unwrap();
            w.write(&content).await.unwrap();
            w.finish().await.unwrap();
            for range in [0..100_000u64, 0..1, 4095..4097, 99_999..100_000] {
                let bytes = archive
                    .get_range("instances/r.dcm", range.clone())
                    .await
                    .unwrap();
                assert_eq!(
                    &bytes[..],
                    &content[range.start as usize..range.end as usize]
                );
            }
            let pieces: Vec<Bytes> = archive
                .get_in_pieces("instances/r.dcm", 10..100_000, 32_768)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(pieces.len(), 4, "{archive:?}");
            assert_eq!(pieces.concat(), &content[10..]);
            assert!(
                archive
                    .get_range("instances/r.dcm", 99_000..100_001)
                    .await
                    .is_err(),
                "{archive:?}: a range past the end is an error"
            );
            assert!(
                matches!(
                    archive.get_range("instances/missing.dcm", 0..1).await,
                    Err(ArchiveError::NotFound(_))
                ),
                "{archive:?}"
            );
        }
    }

    #[tokio::test]
    async fn verify_reads_back_and_compares() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        let stored = archive
            .put("x/a.bin", Bytes::from_static(b"hello world"))
            .await
            .unwrap();
        let verify = |size, checksum: &str| {
            let archive = archive.clone();
            let checksum = checksum.to_string();
            async move { archive.verify("x/a.bin", size, &checksum).await.unwrap() }
        };
        assert_eq!(verify(11, &stored.checksum).await, Verification::Intact);
        // SHA-256 values recorded before BLAKE3 (this is the SHA-256 of "hello world").
        let sha256 = "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(verify(11, sha256).await, Verification::Intact);
        // BLAKE3 values recorded before XXH3-128 (the BLAKE3 of "hello world").
        let blake3 = format!("blake3:{}", blake3::hash(b"hello world").to_hex());
        assert_eq!(verify(11, &blake3).await, Verification::Intact);
        assert_eq!(
            verify(
                11,
                &format!("blake3:{}", blake3::hash(b"hello there").to_hex())
            )
            .await,
            Verification::ChecksumDiffers {
                stored: blake3.clone()
            }
        );
        assert_eq!(
            verify(12, &stored.checksum).await,
            Verification::SizeDiffers { stored: 11 }
        );
        assert_eq!(
            verify(11, &checksum(b"hello there")).await,
            Verification::ChecksumDiffers {
                stored: stored.checksum.clone()
            }
        );
        assert_eq!(
            verify(11, "md5:5eb63bbbe01eeed093cb22bb8f5acdc3").await,
            Verification::UnknownAlgorithm("md5".into())
        );
        assert_eq!(
            archive
                .verify("x/none.bin", 1, &stored.checksum)
                .await
                .unwrap(),
            Verification::Missing
        );
    }

    #[tokio::test]
    async fn aborted_or_dropped_writer_leaves_nothing_visible() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        let mut w = archive.writer("x/partial.dcm").unwrap();
        w.write(&vec![7u8; 3 * 1024 * 1024]).await.unwrap();
        w.abort().await;
        let mut w = archive.writer("x/dropped.dcm").unwrap();
        w.write(&vec![7u8; WRITE_BUFFER_BYTES + 10]).await.unwrap();
        drop(w);
        assert!(archive.list("x").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn large_object_goes_multipart_and_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        let mut w = archive.writer("big.bin").unwrap();
        let chunk = vec![1u8; 1024 * 1024];
        for _ in 0..20 {
            w.write(&chunk).await.unwrap();
        }
        let stored = w.finish().await.unwrap();
        assert_eq!(stored.size, 20 * 1024 * 1024);
        assert_eq!(archive.size("big.bin").await.unwrap(), 20 * 1024 * 1024);
    }

    #[tokio::test]
    async fn staging_files_are_listed_apart_and_deleted_only_when_old() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        archive
            .put("instances/a/done.dcm", Bytes::from_static(b"done"))
            .await
            .unwrap();
        std::fs::write(dir.path().join("instances/a/killed.dcm#1"), b"partial").unwrap();
        std::fs::write(dir.path().join("instances/a/odd#name.dcm"), b"an object").unwrap();
        let listed: Vec<String> = archive
            .list_stream("instances")
            .map_ok(|o| o.key)
            .try_collect()
            .await
            .unwrap();
        let mut listed = listed;
        listed.sort();
        assert_eq!(
            listed,
            ["instances/a/done.dcm", "instances/a/odd#name.dcm"],
            "the listing hides staging files"
        );
        let staged: Vec<ListedObject> = archive.list_staged().try_collect().await.unwrap();
        assert_eq!(staged.len(), 1, "{staged:?}");
        assert_eq!(staged[0].key, "instances/a/killed.dcm#1");
        assert_eq!(staged[0].size, 7);
        let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert!(!archive.delete_staged(&staged[0].key, past).unwrap());
        assert!(dir.path().join("instances/a/killed.dcm#1").exists());
        let future = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(archive.delete_staged(&staged[0].key, future).unwrap());
        assert!(!dir.path().join("instances/a/killed.dcm#1").exists());
        assert!(!archive.delete_staged(&staged[0].key, future).unwrap());
        for bad in ["instances/a/done.dcm", "../x#1", "instances//x#1"] {
            assert!(
                matches!(
                    archive.delete_staged(bad, future),
                    Err(ArchiveError::InvalidKey(_))
                ),
                "{bad}"
            );
        }
        assert!(dir.path().join("instances/a/done.dcm").exists());
    }

    #[tokio::test]
    async fn rejects_keys_that_escape() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        assert!(matches!(
            archive.writer("../etc/passwd"),
            Err(ArchiveError::InvalidKey(_))
        ));
    }
}
