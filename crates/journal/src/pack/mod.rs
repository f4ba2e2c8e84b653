//! Packs: the journal's records kept for good, as the archive's only copy of what they hold.
//!
//! A [`PackLog`] appends records as the ring journal does — one writer at a time, one write
//! and one `fdatasync` per group of appends from any association (the writer is an appender
//! that found no one writing: `writer`) — but to pack files that are
//! never reused: `<generation as 16 hex digits>.pack` in its directory (the archive's
//! `packs/`), each up to [`PackConfig::pack_bytes`], growing as records go in. A record stays
//! where it was written; its [`Position`] names it for good, and its body is read there
//! ([`open_record`]). So an instance is written once, not once to the journal and again to a
//! file of its own.
//!
//! A [checkpoint](PackLog::checkpoint) waits until every record appended before it has been
//! applied (each [`PackDurable`] dropped), has the caller make their effects durable (a
//! synced catalog commit) and then writes its position to the `checkpoint` file (aside,
//! synced, renamed, the directory synced). Opening the log replays the records after that
//! position. Records before it may be [punched](punch) out: their bytes read as zeros
//! afterwards and their blocks are freed, the file keeping its size.
//!
//! Files are not filled with zeros when made (the ring's way: a second write of every byte,
//! in series with the records); instead, while no one appends, the active pack's space is
//! written with zeros a piece at a time ahead of its records ([`PackConfig::ahead_bytes`],
//! `ahead`), so that an `fdatasync` after records placed there has only their data to write,
//! not the file's growth. A burst longer than that space appends to a growing file.
//!
//! A record made while no other is between being laid out and written (one sender) is
//! written while it arrives ([`PackConfig::write_while_arriving`], `lease`): it is lent room
//! at the end of the active pack, its blocks go out through native AIO as they fill, and its
//! append writes only its first block and its last piece before the sync.
//!
//! Invariants:
//! - `append` returning `Ok` ⇒ its frame is durable, and so are its pack's name and header
//!   (both synced when the pack was made, before any record went in).
//! - The checkpoint only moves forward, and only past records whose guards were all dropped
//!   and whose effects `make_durable` then made durable.
//! - Only records behind the checkpoint are punched, so replay never meets a hole (one would
//!   end its pack's records early).
//! - Every length read from a pack is checked before use (the ring's frame reading).
//! - Zeros written ahead never land on a frame reserved (`ahead`); nothing is acknowledged on
//!   the strength of them (every record is synced after its write).
//! - Nothing is reserved after a lease, and a lease's blocks are zeros again before anything
//!   is placed over or after them unless its own record is (`lease`): no gap between records,
//!   no sender's bytes outside a frame where replay or a walk could read them.

mod ahead;
mod checkpoint;
mod direct;
mod lease;
#[cfg(test)]
mod lease_tests;
mod records;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::frame::{
    frame_len, parse_pack_header, FRAME_HEAD_LEN, RECORD_ALIGN, SEGMENT_HEADER_BYTES,
    SEGMENT_HEADER_LEN,
};
use crate::replay::ReplaySegment;
use crate::{
    segment, BodyHash, JournalError, Position, Replay, MAX_HEADER_BYTES, MIN_SEGMENT_BYTES,
};

use checkpoint::{drop_cached, write_checkpoint, CHECKPOINT_STAGED};
pub use checkpoint::{read_checkpoint, CHECKPOINT_FILE};
use direct::{open_for_writes, AlignedBuffer};
pub use records::{generations, open_record, punch, records_before, PackedRecord, Punched, Walked};

/// How large packs grow and what they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackConfig {
    /// The most bytes a pack grows to; the next record starts another.
    pub pack_bytes: u64,
    /// The largest body taken ([`JournalError::TooLarge`] beyond). Replay reads a body into
    /// memory, so this bounds it.
    pub max_body_bytes: u64,
    /// [`PackLog::checkpoint_wanted`] returns once this many bytes were appended since the
    /// last checkpoint.
    pub checkpoint_bytes: u64,
    /// While no one appends, the active pack's space is written with zeros (and synced) up
    /// to this many bytes past its records (`ahead`), so that records then overwrite blocks
    /// that are already there; 0: packs only grow as records go in.
    pub ahead_bytes: u64,
    /// A record made while no other is between being laid out and written is written while
    /// it arrives, into room lent at the end of the active pack (`lease`).
    pub write_while_arriving: bool,
}

impl Default for PackConfig {
    /// Packs of up to 1 GiB; bodies up to 4 MiB; a checkpoint every 64 MiB.
    fn default() -> Self {
        Self {
            pack_bytes: 1 << 30,
            max_body_bytes: 4 * 1024 * 1024,
            checkpoint_bytes: 64 * 1024 * 1024,
            ahead_bytes: 0,
            write_while_arriving: false,
        }
    }
}

impl PackConfig {
    fn check(&self) -> Result<(), JournalError> {
        if self.pack_bytes < MIN_SEGMENT_BYTES {
            return Err(JournalError::Config(format!(
                "packs of {} bytes (at least {MIN_SEGMENT_BYTES})",
                self.pack_bytes
            )));
        }
        match frame_len(MAX_HEADER_BYTES, self.max_body_bytes) {
            Some(len) if len <= self.pack_bytes - SEGMENT_HEADER_BYTES => Ok(()),
            _ => Err(JournalError::Config(format!(
                "bodies of up to {} bytes do not fit in packs of {}",
                self.max_body_bytes, self.pack_bytes
            ))),
        }
    }
}

/// Where the records of `segment` (read from its start) end, to the next multiple of its
/// alignment: the first offset where no frame checks.
fn records_end(segment: &ReplaySegment, max_body_bytes: u64) -> Result<u64, JournalError> {
    let mut offset = segment.start;
    while let Some(span) = crate::replay::read_span(
        &*segment.file,
        segment.bytes,
        segment.generation,
        offset,
        max_body_bytes,
    )? {
        // A frame that checked is bounded far below u64::MAX.
        offset = (offset + span.frame_len)
            .checked_next_multiple_of(segment.align)
            .unwrap_or(u64::MAX);
    }
    Ok(offset.min(segment.bytes))
}

/// The generation of the pack made after that of `generation`.
fn generation_after(generation: u64) -> Result<u64, JournalError> {
    generation
        .checked_add(1)
        .ok_or_else(|| JournalError::Config("pack generations are exhausted".to_string()))
}

/// The name of the pack of `generation`.
pub fn pack_file_name(generation: u64) -> String {
    format!("{generation:016x}.pack")
}

/// The generation a pack's file name says, if it is one.
pub fn pack_generation(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".pack")?;
    if digits.len() != 16
        || !digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The pack being appended to.
#[derive(Debug)]
struct Active {
    generation: u64,
    file: Arc<File>,
    used: u64,
    /// Where the space written ahead (zeros, synced) ends; `used` when none is.
    ahead: u64,
    /// Zeros are being written from `ahead` to here: no record may be placed there before.
    filling: Option<u64>,
}

impl Active {
    fn new(generation: u64, file: File) -> Self {
        Self {
            generation,
            file: Arc::new(file),
            used: SEGMENT_HEADER_BYTES,
            ahead: SEGMENT_HEADER_BYTES,
            filling: None,
        }
    }
}

#[derive(Debug)]
struct State {
    active: Option<Active>,
    next_generation: u64,
    /// Just after the last frame reserved (or the checkpoint the log was opened at).
    end: Position,
    /// Frames reserved from now on belong to this epoch; a checkpoint starts the next one.
    epoch: u64,
    /// Guards alive, by epoch.
    in_flight: BTreeMap<u64, u64>,
    /// Bytes reserved since the last checkpoint started.
    since_checkpoint: u64,
    /// Frames reserved since the log was opened (the writer of space ahead watches it).
    reserved: u64,
    /// The room lent to a record being written while it arrives, at the end of the active
    /// pack (see [`lease`]): any other reservation and every checkpoint cancel it first.
    lease: Option<lease::Lease>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    config: PackConfig,
    state: Mutex<State>,
    /// Woken when guards of an epoch are all dropped, or a checkpoint's worth was appended.
    changed: tokio::sync::Notify,
    /// Woken (with `state`) when zeros written ahead are done.
    filled: std::sync::Condvar,
    /// The last checkpoint made durable.
    checkpointed: Mutex<Position>,
    /// One checkpoint at a time.
    checkpointing: tokio::sync::Mutex<()>,
    records: AtomicU64,
    syncs: AtomicU64,
    /// Groups written, and the time their appends waited for a writer, their writes and
    /// their syncs took, in nanoseconds ([`PackStats`]).
    groups: AtomicU64,
    queued_nanos: AtomicU64,
    writing_nanos: AtomicU64,
    syncing_nanos: AtomicU64,
    packs: AtomicU64,
    /// Bytes of zeros written ahead of the records.
    ahead_written: AtomicU64,
    /// Tests: the next group's write fails.
    #[cfg(test)]
    fail_next_write: std::sync::atomic::AtomicBool,
    /// Tests: the next lent record's ends are not written (its writes in flight are waited
    /// for), as if they had failed.
    #[cfg(test)]
    fail_next_ends: std::sync::atomic::AtomicBool,
    /// Tests: the writer panics after the next group's write.
    #[cfg(test)]
    panic_after_next_write: std::sync::atomic::AtomicBool,
    /// Tests: the thread that wrote the last group.
    #[cfg(test)]
    last_writer: Mutex<Option<std::thread::ThreadId>>,
    /// Record buffers written and given back, for the next appends (at most
    /// [`direct::KEPT_RECORD_BUFFERS`]).
    record_buffers: Mutex<Vec<AlignedBuffer>>,
    /// Records laid out and not yet written (or dropped): one made while there are none
    /// is lent room ([`PackConfig::write_while_arriving`]).
    laid_out: std::sync::atomic::AtomicUsize,
    /// Held while reserving ([`writer`]).
    reserving: Mutex<()>,
    /// AIO contexts of leases that ended, for the next.
    aio_contexts: Mutex<Vec<lease::Context>>,
    /// Bytes of lent records written while they arrived.
    written_while_arriving: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a few assignments: still consistent after a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkpointed(&self) -> Position {
        *self.checkpointed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer for a record: one given back, or a new one.
    fn record_buffer(&self) -> AlignedBuffer {
        let mut kept = self
            .record_buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        kept.pop().unwrap_or_else(AlignedBuffer::new)
    }

    /// Keeps a written record's buffer for a next append, if few are kept.
    fn give_back(&self, mut buffer: AlignedBuffer) {
        buffer.trim();
        let mut kept = self
            .record_buffers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if kept.len() < direct::KEPT_RECORD_BUFFERS {
            kept.push(buffer);
        }
    }
}

/// Held while the effects of a durable record are being made; dropping it says they are (or
/// that they never will be). A checkpoint does not pass a record whose guard lives.
#[derive(Debug)]
pub struct PackDurable {
    shared: Arc<Shared>,
    epoch: u64,
}

impl Drop for PackDurable {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let Some(count) = state.in_flight.get_mut(&self.epoch) else {
            return;
        };
        *count = count.saturating_sub(1);
        if *count == 0 {
            state.in_flight.remove(&self.epoch);
            drop(state);
            self.shared.changed.notify_waiters();
        }
    }
}

/// A record made durable: its guard and where it is for good.
#[derive(Debug)]
pub struct Appended {
    /// Drop once the record's effects are made.
    pub durable: PackDurable,
    /// Where the record's frame is.
    pub position: Position,
}

/// What a pack log has done since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PackStats {
    /// Records made durable.
    pub records: u64,
    /// `fdatasync` calls for them.
    pub syncs: u64,
    /// Packs made.
    pub packs: u64,
    /// Bytes of zeros written ahead of the records ([`PackConfig::ahead_bytes`]).
    pub ahead_written: u64,
    /// Bytes of records written while they arrived
    /// ([`PackConfig::write_while_arriving`]).
    pub written_while_arriving: u64,
    /// Groups written (each one write per pack it reaches, one sync per pack).
    pub groups: u64,
    /// How long appends waited for a writer, in all: from being queued to their group's
    /// writing.
    pub queued: Duration,
    /// How long the groups' writes took, in all.
    pub writing: Duration,
    /// How long the groups' syncs took, in all.
    pub syncing: Duration,
}

/// Reads a log's [`PackStats`] for as long as the log is open, without keeping it open
/// ([`PackLog::stats_reader`]): for figures read elsewhere, such as `/metrics`.
#[derive(Clone, Debug)]
pub struct PackStatsReader(std::sync::Weak<Shared>);

impl PackStatsReader {
    /// The log's figures now; `None` once it is closed.
    pub fn stats(&self) -> Option<PackStats> {
        self.0.upgrade().map(|shared| stats_of(&shared))
    }
}

fn stats_of(shared: &Shared) -> PackStats {
    let time = |nanos: &AtomicU64| Duration::from_nanos(nanos.load(Ordering::Relaxed));
    PackStats {
        records: shared.records.load(Ordering::Relaxed),
        syncs: shared.syncs.load(Ordering::Relaxed),
        packs: shared.packs.load(Ordering::Relaxed),
        ahead_written: shared.ahead_written.load(Ordering::Relaxed),
        written_while_arriving: shared.written_while_arriving.load(Ordering::Relaxed),
        groups: shared.groups.load(Ordering::Relaxed),
        queued: time(&shared.queued_nanos),
        writing: time(&shared.writing_nanos),
        syncing: time(&shared.syncing_nanos),
    }
}

struct Append {
    /// The room the record was lent, its blocks from the second on submitted up to the
    /// lease's `submitted` — their writes possibly still in flight from `record`, reaped by
    /// the writer with the record's ends. Declared first, so that an append dropped
    /// unwritten waits for them before its buffer goes.
    lease: LeaseInFlight,
    /// The record as it goes into its pack, laid out by the appender: [`FRAME_HEAD_LEN`]
    /// bytes for its frame's head (the writer fills them in once it knows the pack), its
    /// header, its body, zeros up to the next multiple of [`RECORD_ALIGN`]. The writer writes
    /// it as it is: copying the records of a group was its work before, in series.
    record: AlignedBuffer,
    /// Bytes it takes in its pack: its frame and the zeros after it (checked when appended).
    record_len: usize,
    header_len: usize,
    body_len: u64,
    body_hash: BodyHash,
    reply: tokio::sync::oneshot::Sender<Result<Appended, JournalError>>,
    /// When it was queued for a writer.
    queued: Instant,
}

/// A lent record's lease while it is appended. The writer takes it out to write the record;
/// dropped with it still inside (an append never written), it waits for the lease's writes
/// in flight, which read from the record's buffer.
struct LeaseInFlight(Option<lease::Lease>);

impl Drop for LeaseInFlight {
    fn drop(&mut self) {
        if let Some(lent) = &self.0 {
            let _ = lease::lock(lent).wait();
        }
    }
}

impl Append {
    fn frame_len(&self) -> u64 {
        // Bounded when the append was taken.
        frame_len(self.header_len, self.body_len).unwrap_or(u64::MAX)
    }
}

/// The pack log. Cheap to clone.
#[derive(Clone)]
pub struct PackLog {
    shared: Arc<Shared>,
    lead: Arc<writer::Lead>,
}

impl std::fmt::Debug for PackLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A record laid out as its body arrives, for [`PackLog::append_record`]: its header placed
/// when it is made ([`PackLog::record`]), each piece of its body copied in as it comes, into
/// the aligned buffer the pack is written from (so that appending copies nothing, and each
/// piece is copied while it is still in the processor's cache).
#[derive(Debug)]
pub struct PackRecord {
    /// Before `buffer`: dropped first, it waits for the writes from it.
    lease: RecordLease,
    /// Counts the record among those laid out until it is written or dropped.
    _laid_out: LaidOutCount,
    buffer: AlignedBuffer,
    header_len: usize,
    /// At most `max_body`.
    body_len: u64,
    max_body: u64,
    /// Bytes of the last [`PackRecord::room`] given (what [`PackRecord::grow`] may take).
    room: usize,
}

/// A [`PackRecord`]'s body would grow past the pack log's largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a record's body would grow past {max} bytes")]
pub struct BodyTooLarge {
    /// The largest body the pack log takes.
    pub max: u64,
}

/// Counts a record among those laid out while it lives (see `Shared::laid_out`).
#[derive(Debug)]
struct LaidOutCount(Arc<Shared>);

impl Drop for LaidOutCount {
    fn drop(&mut self) {
        self.0.laid_out.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A record's lease, if it has one; dropped with the record before it is appended, the
/// lease is cancelled (its writes waited for, its blocks zeroed, its room given back).
#[derive(Debug)]
struct RecordLease {
    shared: Arc<Shared>,
    lease: Option<lease::Lease>,
}

impl RecordLease {
    /// Its bytes the lease has room for.
    fn room(&self) -> usize {
        self.lease.as_ref().map_or(0, |l| {
            usize::try_from(lease::lock(l).len).unwrap_or(usize::MAX)
        })
    }

    /// Cancels the lease now, if it is still out (see [`lease::cancel`]).
    fn cancel(&mut self) {
        let Some(lent) = self.lease.take() else {
            return;
        };
        let mut state = self.shared.lock();
        if state.lease.as_ref().is_some_and(|l| Arc::ptr_eq(l, &lent)) {
            state.lease = None;
            lease::cancel(&mut state, &lent, &self.shared.aio_contexts);
        }
        drop(state);
        // Cancelled earlier by someone else: its writes were waited for then.
    }

    /// Hands the lease over for appending, its last writes possibly still in flight (the
    /// writer reaps them together with the record's ends, and writes the record again whole
    /// if one failed): `None` if it was cancelled meanwhile.
    fn for_append(&mut self) -> Option<lease::Lease> {
        let lent = self.lease.take()?;
        let open = lease::lock(&lent).state == lease::LeaseState::Open;
        open.then_some(lent)
    }
}

impl Drop for RecordLease {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl PackRecord {
    /// Submits the whole chunks of a lent record's bytes so far.
    fn write_arrived(&mut self) {
        if let Some(lent) = &self.lease.lease {
            let end = FRAME_HEAD_LEN + self.header_len + self.body_len as usize;
            let ready = end / lease::CHUNK * lease::CHUNK;
            let mut locked = lease::lock(lent);
            if ready > locked.submitted {
                let before = locked.submitted;
                locked.submit(self.buffer.bytes(ready), ready);
                let written = (locked.submitted - before) as u64;
                self.lease
                    .shared
                    .written_while_arriving
                    .fetch_add(written, Ordering::Relaxed);
            }
        }
    }

    /// The record's bytes will reach `end`: past its lease's room, the lease is cancelled
    /// first (the buffer may move when it grows, and the record no longer fits).
    fn before_growing_to(&mut self, end: usize) {
        if self.lease.lease.is_some() && end > self.lease.room() {
            self.lease.cancel();
        }
    }

    /// Copies `bytes` in after the body so far; refused (the record unchanged) if the body
    /// would outgrow the log's largest.
    pub fn extend(&mut self, bytes: &[u8]) -> Result<(), BodyTooLarge> {
        let body_len = u64::try_from(bytes.len())
            .ok()
            .and_then(|len| self.body_len.checked_add(len))
            .filter(|&len| len <= self.max_body)
            .ok_or(BodyTooLarge { max: self.max_body })?;
        // The largest record's length is a `usize` ([`PackLog::record`]).
        let start = FRAME_HEAD_LEN + self.header_len + self.body_len as usize;
        self.before_growing_to(start + bytes.len());
        self.buffer.bytes_mut(start + bytes.len())[start..].copy_from_slice(bytes);
        self.body_len = body_len;
        self.room = 0;
        self.write_arrived();
        Ok(())
    }

    /// Room for `len` more bytes after the body, to be read into (straight from a socket,
    /// say) and then taken by [`PackRecord::grow`]; what it holds before is whatever the
    /// buffer held. Refused if the body would outgrow the log's largest with all of them.
    pub fn room(&mut self, len: usize) -> Result<&mut [u8], BodyTooLarge> {
        u64::try_from(len)
            .ok()
            .and_then(|len| self.body_len.checked_add(len))
            .filter(|&end| end <= self.max_body)
            .ok_or(BodyTooLarge { max: self.max_body })?;
        // The largest record's length is a `usize` ([`PackLog::record`]).
        let start = FRAME_HEAD_LEN + self.header_len + self.body_len as usize;
        self.before_growing_to(start + len);
        self.room = len;
        Ok(&mut self.buffer.bytes_mut(start + len)[start..])
    }

    /// The first `n` bytes of the last [`PackRecord::room`] are the body's next bytes; the
    /// room is used up (the next bytes go into a room of their own). Refused (the record
    /// unchanged) for more than that room held, or without a room.
    pub fn grow(&mut self, n: usize) -> Result<(), BodyTooLarge> {
        if n > self.room {
            return Err(BodyTooLarge { max: self.max_body });
        }
        // Within the room, which was within `max_body`.
        self.body_len += n as u64;
        self.room = 0;
        self.write_arrived();
        Ok(())
    }

    /// The body so far.
    pub fn body(&self) -> &[u8] {
        let start = FRAME_HEAD_LEN + self.header_len;
        &self.buffer.bytes(start + self.body_len as usize)[start..]
    }

    /// Its body's length.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }
}

/// Where a laid-out record's parts end in its buffer.
struct LaidOut {
    /// The record's length, zeros to the next multiple of [`RECORD_ALIGN`] included.
    record_len: usize,
    header_len: usize,
    body_len: u64,
}

impl PackLog {
    /// Opens the packs in `dir` (which must exist and whose name must be durable) and returns
    /// the records after the last checkpoint, to be applied again before anything else.
    ///
    /// A pack made but cut off before its header was durable (no longer than its header
    /// page, after the checkpoint) is removed: nothing was acknowledged from it. A checkpoint
    /// file that does not check is an error: which records to replay is then unknown.
    pub fn open(dir: &Path, config: PackConfig) -> Result<(PackLog, Replay), JournalError> {
        config.check()?;
        if !dir.is_dir() {
            return Err(JournalError::Config(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        let from = read_checkpoint(dir)?.unwrap_or(Position {
            generation: 0,
            offset: 0,
        });
        let mut last_generation = from.generation;
        let mut replay = Vec::new();
        let mut removed = false;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == CHECKPOINT_STAGED {
                std::fs::remove_file(entry.path())?;
                continue;
            }
            let Some(generation) = pack_generation(name) else {
                continue;
            };
            last_generation = last_generation.max(generation);
            if generation < from.generation {
                continue;
            }
            let file = segment::open_existing(&entry.path())?;
            let len = file.metadata()?.len();
            let header = if len >= SEGMENT_HEADER_LEN as u64 {
                parse_pack_header(&segment::read_header(&file)?)
            } else {
                None
            };
            let align = match header {
                Some((written, align)) if written == generation => align,
                _ if generation > from.generation && len <= SEGMENT_HEADER_BYTES => {
                    std::fs::remove_file(entry.path())?;
                    removed = true;
                    continue;
                }
                _ => {
                    return Err(JournalError::Config(format!(
                        "pack {name} in {} has no valid header but may hold records",
                        dir.display()
                    )))
                }
            };
            let start = if generation == from.generation {
                from.offset.max(SEGMENT_HEADER_BYTES)
            } else {
                SEGMENT_HEADER_BYTES
            };
            replay.push(ReplaySegment {
                file: Arc::new(file),
                bytes: len,
                generation,
                start,
                align,
            });
        }
        // The last pack may end in zeros written ahead: cut off after its records, or removed
        // if it has none (made ahead, never appended to).
        if let Some(last) = replay.iter_mut().max_by_key(|s| s.generation) {
            let end = records_end(last, config.max_body_bytes)?;
            if end <= SEGMENT_HEADER_BYTES && last.generation > from.generation {
                let generation = last.generation;
                replay.retain(|s| s.generation != generation);
                std::fs::remove_file(dir.join(pack_file_name(generation)))?;
                removed = true;
            } else if end < last.bytes {
                open_for_writes(&dir.join(pack_file_name(last.generation)))?.set_len(end)?;
                last.file.sync_all()?;
                last.bytes = end;
            }
        }
        if removed {
            segment::sync_dir(dir)?;
        }
        let mut next_generation = generation_after(last_generation)?;
        // Records to replay: the next checkpoint covers them (appends go to a new pack).
        let end = if replay.is_empty() {
            from
        } else {
            Position {
                generation: next_generation,
                offset: 0,
            }
        };
        // With space written ahead the first pack is made now, to be written ahead while the
        // log waits for its first records.
        let mut active = None;
        if config.ahead_bytes > 0 {
            let file = writer::make_pack(dir, next_generation)?;
            active = Some(Active::new(next_generation, file));
            next_generation = generation_after(next_generation)?;
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(State {
                active,
                next_generation,
                end,
                epoch: 0,
                in_flight: BTreeMap::new(),
                since_checkpoint: 0,
                reserved: 0,
                lease: None,
            }),
            changed: tokio::sync::Notify::new(),
            filled: std::sync::Condvar::new(),
            checkpointed: Mutex::new(from),
            checkpointing: tokio::sync::Mutex::new(()),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            queued_nanos: AtomicU64::new(0),
            writing_nanos: AtomicU64::new(0),
            syncing_nanos: AtomicU64::new(0),
            packs: AtomicU64::new(u64::from(config.ahead_bytes > 0)),
            ahead_written: AtomicU64::new(0),
            #[cfg(test)]
            fail_next_write: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            fail_next_ends: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            panic_after_next_write: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            last_writer: Mutex::new(None),
            record_buffers: Mutex::new(Vec::new()),
            laid_out: std::sync::atomic::AtomicUsize::new(0),
            reserving: Mutex::new(()),
            aio_contexts: Mutex::new(Vec::new()),
            written_while_arriving: AtomicU64::new(0),
        });
        if config.ahead_bytes > 0 {
            ahead::spawn(Arc::downgrade(&shared))?;
        }
        let lead = Arc::new(writer::Lead::new());
        Ok((
            PackLog { shared, lead },
            Replay::new(replay, config.max_body_bytes),
        ))
    }

    /// The directory of the packs.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The largest body [`PackLog::append`] takes.
    pub fn max_body_bytes(&self) -> u64 {
        self.shared.config.max_body_bytes
    }

    /// A record with `header`, to be given its body piece by piece as it arrives
    /// ([`PackRecord::extend`]) and appended with [`PackLog::append_record`].
    pub fn record(&self, header: &[u8]) -> Result<PackRecord, JournalError> {
        let max_body = self.shared.config.max_body_bytes;
        let too_large = JournalError::TooLarge {
            header: header.len(),
            body: max_body,
        };
        if header.len() > MAX_HEADER_BYTES {
            return Err(too_large);
        }
        // The largest record must have a length in memory: then every smaller one has.
        frame_len(header.len(), max_body)
            .and_then(|len| len.checked_next_multiple_of(RECORD_ALIGN))
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(too_large)?;
        let alone = self.shared.laid_out.fetch_add(1, Ordering::Relaxed) == 0;
        let laid_out = LaidOutCount(self.shared.clone());
        let mut buffer = self.shared.record_buffer();
        let end = FRAME_HEAD_LEN + header.len();
        buffer.bytes_mut(end)[FRAME_HEAD_LEN..].copy_from_slice(header);
        let lease = RecordLease {
            shared: self.shared.clone(),
            lease: if alone && self.shared.config.write_while_arriving {
                self.lend(&mut buffer, header.len())
            } else {
                None
            },
        };
        Ok(PackRecord {
            lease,
            _laid_out: laid_out,
            buffer,
            header_len: header.len(),
            body_len: 0,
            max_body,
            room: 0,
        })
    }

    /// Lends room at the end of the active pack to a record with a header of `header_len`
    /// bytes laid out in `buffer` (see [`lease`]); `None` where AIO is not to be had.
    fn lend(&self, buffer: &mut AlignedBuffer, header_len: usize) -> Option<lease::Lease> {
        let body = lease::LEASE_BODY_BYTES.min(self.shared.config.max_body_bytes);
        let len = frame_len(header_len, body)
            .and_then(|len| len.checked_next_multiple_of(RECORD_ALIGN))
            .filter(|len| usize::try_from(*len).is_ok())?;
        let context = self
            .shared
            .aio_contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let context = match context.map_or_else(lease::Context::new, Ok) {
            Ok(context) => context,
            Err(e) => {
                tracing::debug!(error = %e, "no AIO context: the record is written once it has arrived");
                return None;
            }
        };
        // The buffer never moves while writes from it are in flight: it has the whole
        // room now, and the lease is cancelled before the record outgrows it.
        buffer.bytes_mut(len as usize);
        // Lending is an offer: where no room can be had now (a full disk making the next
        // pack), the record is appended the ordinary way, and meets the error then.
        match writer::lend(&self.shared, len, context) {
            Ok(lent) => Some(lent),
            Err(e) => {
                tracing::debug!(error = %e, "no room lent: the record is written once it has arrived");
                None
            }
        }
    }

    /// [`PackLog::append`] for a record laid out as its body arrived.
    pub async fn append_record(
        &self,
        record: PackRecord,
        body_hash: impl Into<BodyHash>,
    ) -> Result<Appended, JournalError> {
        let PackRecord {
            mut lease,
            _laid_out,
            mut buffer,
            header_len,
            body_len,
            max_body: _,
            room: _,
        } = record;
        let lease = lease.for_append();
        // Within the largest record's length, which [`PackLog::record`] checked.
        let frame_end = FRAME_HEAD_LEN + header_len + body_len as usize;
        let record_len = frame_end.next_multiple_of(RECORD_ALIGN as usize);
        buffer.bytes_mut(record_len)[frame_end..].fill(0);
        let laid_out = LaidOut {
            record_len,
            header_len,
            body_len,
        };
        let appended = self
            .append_laid_out(buffer, laid_out, body_hash.into(), lease)
            .await;
        // Laid out until written: a record made meanwhile is not alone.
        drop(_laid_out);
        appended
    }

    /// Appends a record and returns once it is durable, with where it is. `body_hash` is the
    /// hash of the body's bytes ([`BodyHash`]; replay checks it).
    pub async fn append(
        &self,
        header: Vec<u8>,
        body: Vec<Bytes>,
        body_hash: impl Into<BodyHash>,
    ) -> Result<Appended, JournalError> {
        let body_len: u64 = body.iter().map(|b| b.len() as u64).sum();
        if header.len() > MAX_HEADER_BYTES || body_len > self.shared.config.max_body_bytes {
            return Err(JournalError::TooLarge {
                header: header.len(),
                body: body_len,
            });
        }
        // Both bounded above: the record's length fits comfortably.
        let record_len = frame_len(header.len(), body_len)
            .and_then(|len| len.checked_next_multiple_of(RECORD_ALIGN))
            .and_then(|len| usize::try_from(len).ok())
            .ok_or(JournalError::TooLarge {
                header: header.len(),
                body: body_len,
            })?;
        let mut record = self.shared.record_buffer();
        let bytes = record.bytes_mut(record_len);
        let mut at = FRAME_HEAD_LEN;
        for part in std::iter::once(&header[..]).chain(body.iter().map(|b| &b[..])) {
            bytes[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        bytes[at..].fill(0);
        drop(body);
        let laid_out = LaidOut {
            record_len,
            header_len: header.len(),
            body_len,
        };
        self.append_laid_out(record, laid_out, body_hash.into(), None)
            .await
    }

    /// Queues a record laid out in its buffer (room for the frame's head, header, body,
    /// zeros up to the next multiple of [`RECORD_ALIGN`]) and waits for its answer.
    async fn append_laid_out(
        &self,
        record: AlignedBuffer,
        laid_out: LaidOut,
        body_hash: BodyHash,
        lease: Option<lease::Lease>,
    ) -> Result<Appended, JournalError> {
        let LaidOut {
            record_len,
            header_len,
            body_len,
        } = laid_out;
        let (reply, answer) = tokio::sync::oneshot::channel();
        writer::append(
            &self.shared,
            &self.lead,
            Append {
                record,
                record_len,
                header_len,
                body_len,
                body_hash,
                reply,
                lease: LeaseInFlight(lease),
                queued: Instant::now(),
            },
        );
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Waits until a checkpoint's worth of bytes ([`PackConfig::checkpoint_bytes`]) has been
    /// appended since the last one.
    pub async fn checkpoint_wanted(&self) {
        loop {
            let changed = self.shared.changed.notified();
            if self.shared.lock().since_checkpoint >= self.shared.config.checkpoint_bytes {
                return;
            }
            changed.await;
        }
    }

    /// The position of the last checkpoint: records before it are not replayed.
    pub fn checkpointed(&self) -> Position {
        self.shared.checkpointed()
    }

    /// Checkpoints every record appended before the call: waits until each has been applied,
    /// runs `make_durable`, then moves the checkpoint past them. Returns the new checkpoint,
    /// or `None` when nothing was appended since the last one.
    pub async fn checkpoint<F, Fut, E>(
        &self,
        make_durable: F,
    ) -> Result<Option<Position>, JournalError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let _one_at_a_time = self.shared.checkpointing.lock().await;
        let previous = self.shared.checkpointed();
        let (epoch, position) = {
            let mut state = self.shared.lock();
            // Nothing is reserved after a lease: the checkpoint must not pass room that
            // goes back.
            if let Some(lent) = state.lease.take() {
                lease::cancel(&mut state, &lent, &self.shared.aio_contexts);
            }
            if state.end == previous {
                return Ok(None);
            }
            let epoch = state.epoch;
            state.epoch += 1;
            state.since_checkpoint = 0;
            (epoch, state.end)
        };
        loop {
            let changed = self.shared.changed.notified();
            if self
                .shared
                .lock()
                .in_flight
                .range(..=epoch)
                .next()
                .is_none()
            {
                break;
            }
            changed.await;
        }
        make_durable()
            .await
            .map_err(|e| JournalError::MakeDurable(e.to_string()))?;
        let dir = self.shared.dir.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            write_checkpoint(&dir, position)?;
            drop_cached(&dir, previous, position);
            Ok(())
        })
        .await
        .map_err(|e| JournalError::Io(io::Error::other(e)))??;
        *self
            .shared
            .checkpointed
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = position;
        Ok(Some(position))
    }

    /// What the log has done since it was opened.
    pub fn stats(&self) -> PackStats {
        stats_of(&self.shared)
    }

    /// A reader of [`PackLog::stats`] that does not keep the log open.
    pub fn stats_reader(&self) -> PackStatsReader {
        PackStatsReader(Arc::downgrade(&self.shared))
    }
}
