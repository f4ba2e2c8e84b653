//! The ingest journal: a write-ahead log that makes a received instance durable with one
//! `fdatasync` shared by every instance that arrived meanwhile, from any association.
//!
//! A record — an opaque header and a body, which ingest fills with what it needs to redo the
//! instance: its route and its Part-10 bytes — is [appended](Journal::append); the call
//! returns once the record is durable. What the record stands for (a file in the archive,
//! rows in the catalog) is then made *without* syncing, and the [`Durable`] guard the append
//! returned is dropped. A [checkpoint](Journal::checkpoint) makes all of that durable at once
//! (the caller's `make_durable`: a `syncfs` of the archive, a synced catalog commit) and then
//! frees the segments whose records it covered. When the journal is opened after a crash, the
//! records it still holds are [replayed](Replay): their effects are made again (idempotently:
//! the caller's job), then checkpointed.
//!
//! [Packs](pack) are the same records and group commit in files that are never reused: the
//! record is then itself what it stands for (an instance's only copy), addressed by its
//! [`Position`].
//!
//! The journal is a ring of segment files of fixed size, made once and filled with zeros, so
//! that appending changes no file metadata and a sync writes only the appended pages (see
//! `segment`). One writer thread takes whatever appends are waiting, writes them with one
//! `pwritev` and syncs once: the group commit. A segment is in one of three phases: free,
//! active (being appended to) or full (no more appends; freed by a checkpoint once each of its
//! records has been applied).
//!
//! Invariants:
//! - `append` returning `Ok` ⇒ the record is in the durable content of a segment whose
//!   header is durable, and no frame before it in that segment is torn: replay reads it.
//! - A segment is freed (its header zeroed and synced) only after `make_durable` succeeded
//!   with every one of its records applied (each [`Durable`] dropped), so replay never lacks
//!   a record whose effects could still be lost, and never redoes one a checkpoint covered.
//! - A frame records its segment's generation: records of a segment's earlier use, still
//!   there after its tail, are never replayed. Every length read back is checked before use.

#![warn(missing_docs)]

mod frame;
pub mod pack;
mod replay;
mod segment;
mod writer;

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;

pub use frame::BodyHash;
use frame::{FRAME_HEAD_LEN, SEGMENT_HEADER_BYTES};
use replay::ReplaySegment;
pub use replay::{records_of_segment, Recovered, Replay};

/// Where a record's frame starts: the generation of its segment (for [packs](pack), which
/// are never reused, that names the file) and the byte offset in it. Ordered as appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The segment's generation.
    pub generation: u64,
    /// The frame's offset in the segment.
    pub offset: u64,
}

/// The largest record header taken (ingest's is a few hundred bytes).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The smallest segment size taken.
pub const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

/// How large a journal is and what it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Bytes of each segment file.
    pub segment_bytes: u64,
    /// How many segments the ring has (at least two: one is appended to while another is
    /// checkpointed).
    pub segments: usize,
    /// The largest body taken; a larger one is refused ([`JournalError::TooLarge`]) and must
    /// take another way to durability. Replay reads a body into memory, so this bounds it.
    pub max_body_bytes: u64,
}

impl Default for JournalConfig {
    /// Four segments of 256 MiB; bodies up to 4 MiB.
    fn default() -> Self {
        Self {
            segment_bytes: 256 * 1024 * 1024,
            segments: 4,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

impl JournalConfig {
    fn check(&self) -> Result<(), JournalError> {
        if self.segments < 2 || self.segments > 999 {
            return Err(JournalError::Config(format!(
                "{} segments (from 2 to 999)",
                self.segments
            )));
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(JournalError::Config(format!(
                "segments of {} bytes (at least {MIN_SEGMENT_BYTES})",
                self.segment_bytes
            )));
        }
        let largest_frame = frame::frame_len(MAX_HEADER_BYTES, self.max_body_bytes);
        match largest_frame {
            Some(len) if len <= self.segment_bytes - SEGMENT_HEADER_BYTES => Ok(()),
            _ => Err(JournalError::Config(format!(
                "bodies of up to {} bytes do not fit in segments of {}",
                self.max_body_bytes, self.segment_bytes
            ))),
        }
    }
}

/// Why the journal could not do something.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing a segment failed.
    #[error("journal I/O: {0}")]
    Io(#[from] io::Error),
    /// A record larger than the journal takes.
    #[error("a journal record with a header of {header} bytes and a body of {body} is larger than the journal takes")]
    TooLarge {
        /// Header bytes.
        header: usize,
        /// Body bytes.
        body: u64,
    },
    /// Writing or syncing the group the record was in failed; it is not durable.
    #[error("the journal could not write: {message}")]
    Write {
        /// What kind of I/O error it was.
        kind: io::ErrorKind,
        /// The error.
        message: String,
    },
    /// The journal's settings or files cannot be used.
    #[error("journal: {0}")]
    Config(String),
    /// The caller's `make_durable` failed; nothing was freed.
    #[error("checkpoint: {0}")]
    MakeDurable(String),
    /// The writer is gone.
    #[error("the journal is closed")]
    Closed,
}

impl JournalError {
    /// Whether the disk (or a quota) is full: the caller answers "out of resources".
    pub fn is_out_of_space(&self) -> bool {
        let kind = match self {
            JournalError::Io(e) => e.kind(),
            JournalError::Write { kind, .. } => *kind,
            _ => return false,
        };
        matches!(
            kind,
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        )
    }
}

/// What a journal has done since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Records made durable.
    pub records: u64,
    /// `fdatasync` calls for them (fewer than records when groups formed).
    pub syncs: u64,
    /// Segments freed by checkpoints.
    pub freed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Free,
    Active,
    Full,
    /// Free, its old records being overwritten with zeros ([`Journal::scrub`]).
    Scrubbing,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    phase: Phase,
    generation: u64,
    /// Bytes reserved from the start of the file (header page included).
    used: u64,
    /// Records reserved in it whose [`Durable`] has not been dropped yet.
    in_flight: u64,
    /// Bytes from the start of the file that may still hold records' bytes, of this use or
    /// an earlier one (freeing a segment zeroes its header only), until [`Journal::scrub`].
    stale: u64,
}

impl Segment {
    /// A free segment whose file may hold records' bytes up to `stale`.
    fn free(stale: u64) -> Segment {
        Segment {
            phase: Phase::Free,
            generation: 0,
            used: 0,
            in_flight: 0,
            stale,
        }
    }

    /// This segment freed: what it held stays on disk until a scrub.
    fn freed(&self) -> Segment {
        Segment::free(self.stale.max(self.used))
    }

    fn checkpointable(&self) -> bool {
        self.phase == Phase::Full && self.in_flight == 0
    }
}

#[derive(Debug)]
struct State {
    segments: Vec<Segment>,
    active: Option<usize>,
    next_generation: u64,
}

#[derive(Debug)]
struct Shared {
    files: Vec<Arc<File>>,
    segment_bytes: u64,
    max_body_bytes: u64,
    state: Mutex<State>,
    /// Signalled when a segment is freed (the writer may be waiting for one).
    freed: Condvar,
    /// Woken when a segment may have become checkpointable.
    changed: tokio::sync::Notify,
    records: AtomicU64,
    syncs: AtomicU64,
    freed_total: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counters that are still consistent (every
        // change under it is a few assignments); go on with them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Held while the effects of a durable record are being made; dropping it says they are
/// (or that they never will be: a failed instance). A segment is not freed while one of its
/// records' guards lives.
#[derive(Debug)]
pub struct Durable {
    shared: Arc<Shared>,
    segment: usize,
}

impl Drop for Durable {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let segment = &mut state.segments[self.segment];
        segment.in_flight = segment.in_flight.saturating_sub(1);
        if segment.checkpointable() {
            drop(state);
            self.shared.changed.notify_waiters();
        }
    }
}

/// The journal. Cheap to clone; the writer thread ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Journal {
    shared: Arc<Shared>,
    sender: std::sync::mpsc::Sender<writer::Append>,
}

impl Journal {
    /// Opens the journal in `dir` (which must exist and whose name must be durable), making
    /// its segments on first use, and returns the records it holds from before.
    ///
    /// Until those records have been applied and a [checkpoint](Journal::checkpoint) has
    /// freed their segments, appends may wait for a free segment.
    pub fn open(dir: &Path, config: JournalConfig) -> Result<(Journal, Replay), JournalError> {
        config.check()?;
        if !dir.is_dir() {
            return Err(JournalError::Config(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let mut existing = std::collections::BTreeMap::new();
        let mut changed_names = false;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("segment-") && name.ends_with(".journal.new") {
                // A segment whose making was cut off.
                std::fs::remove_file(entry.path())?;
                changed_names = true;
                continue;
            }
            if let Some(index) = segment::segment_index(name) {
                let file = segment::open_existing(&entry.path())?;
                let len = file.metadata()?.len();
                existing.insert(index, (file, len));
            }
        }
        let mut in_use = Vec::new();
        for (index, (file, len)) in &existing {
            if let Some((generation, bytes)) = segment::in_use(file, *len)? {
                if bytes != *len {
                    return Err(JournalError::Config(format!(
                        "segment {index} is {len} bytes but its header says {bytes}"
                    )));
                }
                in_use.push((*index, generation));
            }
        }

        // Segments made now hold only zeros; any other may hold old records' bytes.
        let mut zero_filled = Vec::new();
        let (files, segment_bytes) = if in_use.is_empty() {
            // Nothing to replay: the configured ring, reusing the files that fit.
            let mut files = Vec::with_capacity(config.segments);
            for index in 0..config.segments {
                let file = match existing.remove(&index) {
                    Some((file, len)) if len == config.segment_bytes => file,
                    _ => {
                        changed_names = true;
                        zero_filled.push(index);
                        segment::create_zeroed(dir, index, config.segment_bytes)?
                    }
                };
                files.push(Arc::new(file));
            }
            for index in existing.keys() {
                std::fs::remove_file(segment::segment_path(dir, *index))?;
                changed_names = true;
            }
            (files, config.segment_bytes)
        } else {
            // Records to replay: the ring as it was, whatever the configuration says now.
            let count = existing.len();
            let bytes = existing.values().next().map(|(_, len)| *len).unwrap_or(0);
            let contiguous = existing.keys().copied().eq(0..count);
            if !contiguous || existing.values().any(|(_, len)| *len != bytes) {
                return Err(JournalError::Config(format!(
                    "the segments in {} are not a ring of equal files; move the directory \
                     away only once its records are applied elsewhere",
                    dir.display()
                )));
            }
            if bytes != config.segment_bytes || count != config.segments {
                tracing::warn!(
                    segments = count,
                    segment_bytes = bytes,
                    "the journal holds records: its ring is kept as it is until they are checkpointed"
                );
            }
            JournalConfig {
                segment_bytes: bytes,
                segments: count,
                max_body_bytes: config.max_body_bytes,
            }
            .check()?;
            let files = existing
                .into_values()
                .map(|(file, _)| Arc::new(file))
                .collect();
            (files, bytes)
        };
        if changed_names {
            segment::sync_dir(dir)?;
        }

        let mut segments: Vec<Segment> = (0..files.len())
            .map(|index| {
                Segment::free(if zero_filled.contains(&index) {
                    0
                } else {
                    segment_bytes
                })
            })
            .collect();
        let mut replay_segments = Vec::new();
        let mut next_generation = 1;
        for (index, generation) in in_use {
            segments[index] = Segment {
                phase: Phase::Full,
                generation,
                used: segment_bytes,
                in_flight: 0,
                stale: segment_bytes,
            };
            next_generation = next_generation.max(generation.saturating_add(1));
            replay_segments.push(ReplaySegment {
                file: files[index].clone(),
                bytes: segment_bytes,
                generation,
                start: SEGMENT_HEADER_BYTES,
                align: 1,
            });
        }
        let shared = Arc::new(Shared {
            files,
            segment_bytes,
            max_body_bytes: config.max_body_bytes,
            state: Mutex::new(State {
                segments,
                active: None,
                next_generation,
            }),
            freed: Condvar::new(),
            changed: tokio::sync::Notify::new(),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            freed_total: AtomicU64::new(0),
        });
        let sender = writer::spawn(shared.clone())?;
        let replay = Replay::new(replay_segments, config.max_body_bytes);
        Ok((Journal { shared, sender }, replay))
    }

    /// Whether the journal in `dir` holds records to replay (a segment in use), without
    /// opening it: for a server that no longer uses its journal but must not drop what it
    /// holds.
    pub fn has_records(dir: &Path) -> Result<bool, JournalError> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_str().and_then(segment::segment_index).is_none() {
                continue;
            }
            let file = segment::open_existing(&entry.path())?;
            if segment::in_use(&file, file.metadata()?.len())?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Appends a record and returns once it is durable. `body_hash` is the hash of the
    /// body's bytes ([`BodyHash`]: XXH3-128, or BLAKE3), which the caller has computed as
    /// they arrived (replay checks it).
    pub async fn append(
        &self,
        header: Vec<u8>,
        body: Vec<Bytes>,
        body_hash: impl Into<BodyHash>,
    ) -> Result<Durable, JournalError> {
        let body_hash = body_hash.into();
        let body_len: u64 = body.iter().map(|b| b.len() as u64).sum();
        if header.len() > MAX_HEADER_BYTES || body_len > self.shared.max_body_bytes {
            return Err(JournalError::TooLarge {
                header: header.len(),
                body: body_len,
            });
        }
        debug_assert!(body_hash.matches(&body), "the body's hash");
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender
            .send(writer::Append {
                header,
                body,
                body_len,
                body_hash,
                reply,
            })
            .map_err(|_| JournalError::Closed)?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// The largest body [`Journal::append`] takes.
    pub fn max_body_bytes(&self) -> u64 {
        self.shared.max_body_bytes
    }

    /// Ends appending to the active segment (the next append starts another), so that a
    /// checkpoint can cover every record appended so far.
    pub fn seal(&self) {
        let mut state = self.shared.lock();
        let Some(active) = state.active else { return };
        if state.segments[active].used <= SEGMENT_HEADER_BYTES {
            return; // nothing in it yet
        }
        state.active = None;
        let segment = &mut state.segments[active];
        if segment.phase == Phase::Active {
            segment.phase = Phase::Full;
        }
        let ready = segment.checkpointable();
        drop(state);
        if ready {
            self.shared.changed.notify_waiters();
        }
    }

    /// Waits until some segment can be checkpointed (full, every record applied).
    pub async fn checkpoint_wanted(&self) {
        loop {
            let changed = self.shared.changed.notified();
            if !self.checkpointable().is_empty() {
                return;
            }
            changed.await;
        }
    }

    /// The segments a checkpoint would free now.
    fn checkpointable(&self) -> Vec<usize> {
        let state = self.shared.lock();
        state
            .segments
            .iter()
            .enumerate()
            .filter(|(_, s)| s.checkpointable())
            .map(|(i, _)| i)
            .collect()
    }

    /// Frees every full segment whose records have all been applied, once `make_durable`
    /// has made their effects durable. Returns how many segments were freed.
    pub async fn checkpoint<F, Fut, E>(&self, make_durable: F) -> Result<usize, JournalError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let ready = self.checkpointable();
        if ready.is_empty() {
            return Ok(0);
        }
        make_durable()
            .await
            .map_err(|e| JournalError::MakeDurable(e.to_string()))?;
        let files: Vec<Arc<File>> = ready
            .iter()
            .map(|i| self.shared.files[*i].clone())
            .collect();
        tokio::task::spawn_blocking(move || {
            files.iter().try_for_each(|f| segment::clear_header(f))
        })
        .await
        .map_err(|e| JournalError::Io(io::Error::other(e)))??;
        let mut state = self.shared.lock();
        for index in &ready {
            state.segments[*index] = state.segments[*index].freed();
        }
        drop(state);
        self.shared
            .freed_total
            .fetch_add(ready.len() as u64, Ordering::Relaxed);
        self.shared.freed.notify_all();
        Ok(ready.len())
    }

    /// Seals the active segment, waits until every record appended so far has been applied,
    /// and checkpoints: afterwards no record appended before the call is replayed.
    pub async fn checkpoint_all<F, Fut, E>(&self, make_durable: F) -> Result<usize, JournalError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        self.seal();
        loop {
            let changed = self.shared.changed.notified();
            let waiting = {
                let state = self.shared.lock();
                state
                    .segments
                    .iter()
                    .any(|s| s.phase == Phase::Full && s.in_flight > 0)
            };
            if !waiting {
                break;
            }
            changed.await;
        }
        self.checkpoint(make_durable).await
    }

    /// Overwrites with zeros (and syncs) whatever free segments may still hold of records
    /// freed by checkpoints, so that bytes erased elsewhere do not live on in the journal.
    /// Call after [`Journal::checkpoint_all`]: records not yet checkpointed are not touched.
    /// Returns the bytes overwritten. Appends wait meanwhile only if no other segment is free.
    ///
    /// After the journal is opened every segment it did not make counts as wholly stale, so
    /// the first scrub of a process overwrites the whole ring.
    pub async fn scrub(&self) -> Result<u64, JournalError> {
        let stale: Vec<(usize, u64)> = {
            let mut state = self.shared.lock();
            let mut stale = Vec::new();
            for (index, segment) in state.segments.iter_mut().enumerate() {
                let end = segment.stale.min(self.shared.segment_bytes);
                if segment.phase == Phase::Free && end > SEGMENT_HEADER_BYTES {
                    segment.phase = Phase::Scrubbing;
                    stale.push((index, end));
                }
            }
            stale
        };
        let files: Vec<(Arc<File>, u64)> = stale
            .iter()
            .map(|(index, end)| (self.shared.files[*index].clone(), *end))
            .collect();
        let written = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut written = 0;
            for (file, end) in &files {
                written += segment::zero_range(file, SEGMENT_HEADER_BYTES, *end)?;
                file.sync_data()?;
            }
            Ok(written)
        })
        .await
        .map_err(|e| JournalError::Io(io::Error::other(e)));
        let written = match written {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(e)) => Err(JournalError::Io(e)),
            Err(e) => Err(e),
        };
        let mut state = self.shared.lock();
        for (index, _) in &stale {
            let segment = &mut state.segments[*index];
            segment.phase = Phase::Free;
            if written.is_ok() {
                segment.stale = 0;
            }
        }
        drop(state);
        self.shared.freed.notify_all();
        written
    }

    /// What the journal has done since it was opened.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            records: self.shared.records.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            freed: self.shared.freed_total.load(Ordering::Relaxed),
        }
    }

    /// Bytes of a frame before its header and body (for sizing).
    pub const FRAME_OVERHEAD: usize = FRAME_HEAD_LEN;
}
