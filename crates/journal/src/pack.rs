//! Packs: the journal's records kept for good, as the archive's only copy of what they hold.
//!
//! A [`PackLog`] appends records as the ring journal does — one writer thread, one `pwritev`
//! and one `fdatasync` per group of appends from any association — but to pack files that are
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
//! Files grow instead of being filled with zeros first (the ring's way): measured here, an
//! `fdatasync` after appending 0.5 MB records to a growing file ran at 1 200–1 300 records/s
//! one by one and 1 800–2 500 in groups of four, against 1 600 and 3 000 for a file filled
//! beforehand — whose filling costs a second write of every byte.
//!
//! Invariants:
//! - `append` returning `Ok` ⇒ its frame is durable, and so are its pack's name and header
//!   (both synced when the pack was made, before any record went in).
//! - The checkpoint only moves forward, and only past records whose guards were all dropped
//!   and whose effects `make_durable` then made durable.
//! - Only records behind the checkpoint are punched, so replay never meets a hole (one would
//!   end its pack's records early).
//! - Every length read from a pack is checked before use (the ring's frame reading).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::frame::{
    encode_frame_head, frame_len, parse_segment_header, segment_header, FRAME_HEAD_LEN,
    SEGMENT_HEADER_BYTES, SEGMENT_HEADER_LEN,
};
use crate::replay::{read_span, ReplaySegment};
use crate::{segment, JournalError, Position, Replay, MAX_HEADER_BYTES, MIN_SEGMENT_BYTES};

/// The file holding the checkpoint's position.
pub const CHECKPOINT_FILE: &str = "checkpoint";
const CHECKPOINT_STAGED: &str = "checkpoint.new";
const CHECKPOINT_MAGIC: [u8; 8] = *b"RPJCKP01";
const CHECKPOINT_LEN: usize = 8 + 8 + 8 + 16;

/// A group is cut at this many bytes (the rest waits for the next sync).
const MAX_GROUP_BYTES: u64 = 64 * 1024 * 1024;

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
}

impl Default for PackConfig {
    /// Packs of up to 1 GiB; bodies up to 4 MiB; a checkpoint every 64 MiB.
    fn default() -> Self {
        Self {
            pack_bytes: 1 << 30,
            max_body_bytes: 4 * 1024 * 1024,
            checkpoint_bytes: 64 * 1024 * 1024,
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
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    config: PackConfig,
    state: Mutex<State>,
    /// Woken when guards of an epoch are all dropped, or a checkpoint's worth was appended.
    changed: tokio::sync::Notify,
    /// The last checkpoint made durable.
    checkpointed: Mutex<Position>,
    /// One checkpoint at a time.
    checkpointing: tokio::sync::Mutex<()>,
    records: AtomicU64,
    syncs: AtomicU64,
    packs: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a few assignments: still consistent after a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn checkpointed(&self) -> Position {
        *self.checkpointed.lock().unwrap_or_else(|e| e.into_inner())
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
}

struct Append {
    header: Vec<u8>,
    body: Vec<Bytes>,
    body_len: u64,
    body_hash: [u8; 32],
    reply: tokio::sync::oneshot::Sender<Result<Appended, JournalError>>,
}

impl Append {
    fn frame_len(&self) -> u64 {
        // Bounded when the append was taken.
        frame_len(self.header.len(), self.body_len).unwrap_or(u64::MAX)
    }
}

/// The pack log. Cheap to clone; its writer thread ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct PackLog {
    shared: Arc<Shared>,
    sender: Sender<Append>,
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
                parse_segment_header(&segment::read_header(&file)?)
            } else {
                None
            };
            match header {
                Some((written, _)) if written == generation => {}
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
            }
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
            });
        }
        if removed {
            segment::sync_dir(dir)?;
        }
        let next_generation = last_generation
            .checked_add(1)
            .ok_or_else(|| JournalError::Config("pack generations are exhausted".to_string()))?;
        // Records to replay: the next checkpoint covers them (appends go to a new pack).
        let end = if replay.is_empty() {
            from
        } else {
            Position {
                generation: next_generation,
                offset: 0,
            }
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(State {
                active: None,
                next_generation,
                end,
                epoch: 0,
                in_flight: BTreeMap::new(),
                since_checkpoint: 0,
            }),
            changed: tokio::sync::Notify::new(),
            checkpointed: Mutex::new(from),
            checkpointing: tokio::sync::Mutex::new(()),
            records: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            packs: AtomicU64::new(0),
        });
        let (sender, receiver) = std::sync::mpsc::channel();
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("pack-writer".into())
            .spawn(move || run(&writer, receiver))?;
        Ok((
            PackLog { shared, sender },
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

    /// Appends a record and returns once it is durable, with where it is. `body_hash` is the
    /// BLAKE3 hash of the body's bytes (replay checks it).
    pub async fn append(
        &self,
        header: Vec<u8>,
        body: Vec<Bytes>,
        body_hash: blake3::Hash,
    ) -> Result<Appended, JournalError> {
        let body_len: u64 = body.iter().map(|b| b.len() as u64).sum();
        if header.len() > MAX_HEADER_BYTES || body_len > self.shared.config.max_body_bytes {
            return Err(JournalError::TooLarge {
                header: header.len(),
                body: body_len,
            });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender
            .send(Append {
                header,
                body,
                body_len,
                body_hash: *body_hash.as_bytes(),
                reply,
            })
            .map_err(|_| JournalError::Closed)?;
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
        PackStats {
            records: self.shared.records.load(Ordering::Relaxed),
            syncs: self.shared.syncs.load(Ordering::Relaxed),
            packs: self.shared.packs.load(Ordering::Relaxed),
        }
    }
}

fn run(shared: &Arc<Shared>, receiver: Receiver<Append>) {
    while let Ok(first) = receiver.recv() {
        let mut bytes = first.frame_len();
        let mut group = vec![first];
        while bytes < MAX_GROUP_BYTES {
            match receiver.try_recv() {
                Ok(append) => {
                    bytes = bytes.saturating_add(append.frame_len());
                    group.push(append);
                }
                Err(_) => break,
            }
        }
        write_group(shared, group);
    }
}

struct Placed {
    append: Append,
    head: [u8; FRAME_HEAD_LEN],
    appended: Appended,
}

/// The records of a group that go into one pack, one after the other from `offset`.
struct Run {
    file: Arc<File>,
    generation: u64,
    offset: u64,
    records: Vec<Placed>,
}

fn write_group(shared: &Arc<Shared>, group: Vec<Append>) {
    let mut runs: Vec<Run> = Vec::new();
    for append in group {
        let (file, position, epoch) = match reserve(shared, append.frame_len()) {
            Ok(reserved) => reserved,
            Err(e) => {
                let _ = append.reply.send(Err(e));
                continue;
            }
        };
        let head = encode_frame_head(
            position.generation,
            &append.header,
            append.body_len,
            &append.body_hash,
        );
        let placed = Placed {
            append,
            head,
            appended: Appended {
                durable: PackDurable {
                    shared: shared.clone(),
                    epoch,
                },
                position,
            },
        };
        match runs.last_mut() {
            Some(run) if run.generation == position.generation => run.records.push(placed),
            _ => runs.push(Run {
                file,
                generation: position.generation,
                offset: position.offset,
                records: vec![placed],
            }),
        }
    }
    for run in runs {
        let result = (|| {
            let mut buffers: Vec<&[u8]> = Vec::new();
            for placed in &run.records {
                buffers.push(&placed.head);
                buffers.push(&placed.append.header);
                buffers.extend(placed.append.body.iter().map(|b| &b[..]));
            }
            segment::pwritev_all(&run.file, &buffers, run.offset)?;
            run.file.sync_data()
        })();
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                shared
                    .records
                    .fetch_add(run.records.len() as u64, Ordering::Relaxed);
                for placed in run.records {
                    let _ = placed.append.reply.send(Ok(placed.appended));
                }
            }
            Err(e) => {
                // What follows a failed write would be unreadable behind it: the next record
                // starts another pack.
                tracing::error!(error = %e, generation = run.generation, "a pack could not be written");
                let mut state = shared.lock();
                if state
                    .active
                    .as_ref()
                    .is_some_and(|a| a.generation == run.generation)
                {
                    state.active = None;
                }
                drop(state);
                let message = e.to_string();
                for placed in run.records {
                    drop(placed.appended);
                    let _ = placed
                        .append
                        .reply
                        .send(Err(JournalError::Write(message.clone())));
                }
            }
        }
    }
}

/// Reserves `len` bytes for a frame in the active pack, making the next pack when it has
/// no room: the pack's file, the frame's position and its epoch.
fn reserve(shared: &Shared, len: u64) -> Result<(Arc<File>, Position, u64), JournalError> {
    loop {
        let generation = {
            let mut state = shared.lock();
            let pack_bytes = shared.config.pack_bytes;
            if let Some(active) = &mut state.active {
                if active.used.saturating_add(len) <= pack_bytes {
                    let position = Position {
                        generation: active.generation,
                        offset: active.used,
                    };
                    active.used += len;
                    let file = active.file.clone();
                    let end = Position {
                        generation: active.generation,
                        offset: active.used,
                    };
                    state.end = end;
                    let epoch = state.epoch;
                    *state.in_flight.entry(epoch).or_insert(0) += 1;
                    let before = state.since_checkpoint;
                    state.since_checkpoint = before.saturating_add(len);
                    let wanted = before < shared.config.checkpoint_bytes
                        && state.since_checkpoint >= shared.config.checkpoint_bytes;
                    drop(state);
                    if wanted {
                        shared.changed.notify_waiters();
                    }
                    return Ok((file, position, epoch));
                }
            }
            state.active = None;
            let generation = state.next_generation;
            state.next_generation = generation.checked_add(1).ok_or_else(|| {
                JournalError::Config("pack generations are exhausted".to_string())
            })?;
            generation
        };
        // Only this thread makes packs: the lock need not be held meanwhile.
        let file = make_pack(&shared.dir, generation, shared.config.pack_bytes)?;
        shared.packs.fetch_add(1, Ordering::Relaxed);
        shared.lock().active = Some(Active {
            generation,
            file: Arc::new(file),
            used: SEGMENT_HEADER_BYTES,
        });
    }
}

/// Makes the pack of `generation`: its header written and synced, then its directory.
fn make_pack(dir: &Path, generation: u64, pack_bytes: u64) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join(pack_file_name(generation)))?;
    file.write_all_at(&segment_header(generation, pack_bytes), 0)?;
    file.sync_all()?;
    segment::sync_dir(dir)?;
    Ok(file)
}

fn checkpoint_bytes(position: Position) -> [u8; CHECKPOINT_LEN] {
    let mut out = [0u8; CHECKPOINT_LEN];
    out[..8].copy_from_slice(&CHECKPOINT_MAGIC);
    out[8..16].copy_from_slice(&position.generation.to_le_bytes());
    out[16..24].copy_from_slice(&position.offset.to_le_bytes());
    let check = blake3::hash(&out[..24]);
    out[24..].copy_from_slice(&check.as_bytes()[..16]);
    out
}

/// The checkpoint of the packs in `dir`: `None` if none was ever made.
pub fn read_checkpoint(dir: &Path) -> Result<Option<Position>, JournalError> {
    let bytes = match std::fs::read(dir.join(CHECKPOINT_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bad = || {
        JournalError::Config(format!(
            "the pack checkpoint in {} does not check",
            dir.display()
        ))
    };
    let bytes: [u8; CHECKPOINT_LEN] = bytes.try_into().map_err(|_| bad())?;
    let check = blake3::hash(&bytes[..24]);
    if bytes[..8] != CHECKPOINT_MAGIC || bytes[24..] != check.as_bytes()[..16] {
        return Err(bad());
    }
    let field = |range: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[range]);
        u64::from_le_bytes(b)
    };
    Ok(Some(Position {
        generation: field(8..16),
        offset: field(16..24),
    }))
}

fn write_checkpoint(dir: &Path, position: Position) -> io::Result<()> {
    let staged = dir.join(CHECKPOINT_STAGED);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&staged)?;
    file.write_all_at(&checkpoint_bytes(position), 0)?;
    file.sync_all()?;
    std::fs::rename(&staged, dir.join(CHECKPOINT_FILE))?;
    segment::sync_dir(dir)
}

/// Lets the cached pages of the packs' bytes from `from` to `to` go (they are durable and
/// will be read again, if at all, long after): as the archive does for files it wrote.
fn drop_cached(dir: &Path, from: Position, to: Position) {
    for generation in from.generation.max(1)..=to.generation {
        let Ok(file) = File::open(dir.join(pack_file_name(generation))) else {
            continue;
        };
        let start = if generation == from.generation {
            from.offset
        } else {
            0
        };
        let len = if generation == to.generation {
            to.offset.saturating_sub(start)
        } else {
            0 // to the end
        };
        let (Ok(start), Ok(len)) = (libc::off_t::try_from(start), libc::off_t::try_from(len))
        else {
            continue;
        };
        // SAFETY: a system call on a descriptor open for its duration. Advice only.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED) };
    }
}

/// A record's place in its pack, for reading its body ([`open_record`]).
#[derive(Debug)]
pub struct PackedRecord {
    /// The pack, open for reading.
    pub file: File,
    /// Where the body starts in it.
    pub body_offset: u64,
    /// Bytes of the body.
    pub body_len: u64,
    /// Bytes of the whole frame, from the record's position.
    pub frame_len: u64,
    /// The BLAKE3 hash of the body, as appended.
    pub body_hash: [u8; 32],
}

/// Opens the pack of `position` (for writing too if `write`) and finds the record there:
/// `None` if there is no such pack or no frame of its generation starts there whose head
/// and header check (a punched record, a position that was never a record's).
fn locate(
    dir: &Path,
    position: Position,
    max_body_bytes: u64,
    write: bool,
) -> Result<Option<PackedRecord>, JournalError> {
    if position.offset < SEGMENT_HEADER_BYTES {
        return Ok(None);
    }
    let path = dir.join(pack_file_name(position.generation));
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    let Some(span) = read_span(
        &file,
        len,
        position.generation,
        position.offset,
        max_body_bytes,
    )?
    else {
        return Ok(None);
    };
    Ok(Some(PackedRecord {
        file,
        body_offset: span.body_offset,
        body_len: span.body_len,
        frame_len: span.frame_len,
        body_hash: span.body_hash,
    }))
}

/// Opens the record at `position` in the packs of `dir`, for reading its body: `None` if
/// there is none there (see [`Punched::Absent`]). Bodies beyond `max_body_bytes` are refused.
pub fn open_record(
    dir: &Path,
    position: Position,
    max_body_bytes: u64,
) -> Result<Option<PackedRecord>, JournalError> {
    locate(dir, position, max_body_bytes, false)
}

/// What [`punch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Punched {
    /// The record's frame now reads as zeros, durably, and its blocks are freed.
    Punched,
    /// No record is there (already punched, or never one).
    Absent,
    /// The record is not behind the checkpoint yet: replay may still need it. Untouched.
    Ahead,
}

/// Punches the record at `position` out of the packs of `dir` (see [`Punched`]); the pack
/// keeps its size. For erasing an instance, or dropping one no longer referenced.
pub fn punch(dir: &Path, position: Position, max_body_bytes: u64) -> Result<Punched, JournalError> {
    let Some(record) = locate(dir, position, max_body_bytes, true)? else {
        return Ok(Punched::Absent);
    };
    if read_checkpoint(dir)?.is_none_or(|checkpoint| position >= checkpoint) {
        return Ok(Punched::Ahead);
    }
    let (Ok(offset), Ok(len)) = (
        libc::off_t::try_from(position.offset),
        libc::off_t::try_from(record.frame_len),
    ) else {
        return Err(JournalError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a frame beyond off_t",
        )));
    };
    // SAFETY: a system call on a descriptor open for its duration.
    let done = unsafe {
        libc::fallocate(
            record.file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    };
    if done != 0 {
        return Err(io::Error::last_os_error().into());
    }
    record.file.sync_data()?;
    Ok(Punched::Punched)
}

/// The generations of the packs in `dir`, in order.
pub fn generations(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(generation) = entry?.file_name().to_str().and_then(pack_generation) {
            out.push(generation);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A record found by [`records_before`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// Where it is.
    pub position: Position,
    /// Bytes of its body.
    pub body_len: u64,
}

/// The records of the pack of `generation` in `dir` that lie before `until` (the checkpoint,
/// usually), past punched ones: a punched record reads as zeros, and a frame's head never
/// starts with a zero byte, so the walk goes on at the next byte that is not zero. It ends
/// where a frame does not check (a torn tail) or at `until`. For finding records that are
/// no longer referenced; replay never needs it (nothing it reads is punched).
pub fn records_before(
    dir: &Path,
    generation: u64,
    until: Position,
    max_body_bytes: u64,
) -> Result<Vec<Walked>, JournalError> {
    let mut out = Vec::new();
    if generation > until.generation {
        return Ok(out);
    }
    let file = match File::open(dir.join(pack_file_name(generation))) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    let end = if generation == until.generation {
        until.offset.min(len)
    } else {
        len
    };
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset < end {
        match read_span(&file, end, generation, offset, max_body_bytes)? {
            Some(span) => {
                out.push(Walked {
                    position: Position { generation, offset },
                    body_len: span.body_len,
                });
                offset += span.frame_len;
            }
            None => match next_nonzero(&file, offset, end)? {
                Some(next) if next > offset => offset = next,
                // Bytes that are no frame: a torn tail.
                _ => break,
            },
        }
    }
    Ok(out)
}

/// The offset of the first byte from `from` (before `end`) that is not zero, if any; holes
/// are skipped without reading them.
fn next_nonzero(file: &File, from: u64, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: usize = 64 * 1024;
    let mut buffer = vec![0u8; CHUNK];
    let mut offset = from;
    while offset < end {
        let at = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
        // SAFETY: a system call on a descriptor open for its duration.
        let data = unsafe { libc::lseek(file.as_raw_fd(), at, libc::SEEK_DATA) };
        if data < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                return Ok(None); // only a hole up to the end of the file
            }
            return Err(e);
        }
        offset = (data as u64).max(offset);
        if offset >= end {
            return Ok(None);
        }
        let want = usize::try_from(end - offset).map_or(CHUNK, |left| left.min(CHUNK));
        let read = file.read_at(&mut buffer[..want], offset)?;
        if read == 0 {
            return Ok(None);
        }
        if let Some(i) = buffer[..read].iter().position(|b| *b != 0) {
            return Ok(Some(offset + i as u64));
        }
        offset += read as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SMALL: PackConfig = PackConfig {
        pack_bytes: 256 * 1024,
        max_body_bytes: 64 * 1024,
        checkpoint_bytes: 100 * 1024,
    };

    fn body(seed: u8, len: usize) -> Vec<Bytes> {
        let bytes: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
        // Two chunks, as they arrive from a peer.
        let (a, b) = bytes.split_at(len / 3);
        vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]
    }

    async fn append(log: &PackLog, seed: u8, len: usize) -> Appended {
        let chunks = body(seed, len);
        let mut hasher = blake3::Hasher::new();
        chunks.iter().for_each(|c| {
            hasher.update(c);
        });
        log.append(vec![seed; 3], chunks, hasher.finalize())
            .await
            .unwrap()
    }

    fn read_body(dir: &Path, position: Position) -> Option<Vec<u8>> {
        let record = open_record(dir, position, SMALL.max_body_bytes).unwrap()?;
        let mut out = vec![0u8; record.body_len as usize];
        record
            .file
            .read_exact_at(&mut out, record.body_offset)
            .unwrap();
        Some(out)
    }

    fn replayed(replay: &mut Replay) -> Vec<(Position, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((position, record)) = replay.next_placed().unwrap() {
            out.push((position, record.header));
        }
        out
    }

    #[tokio::test]
    async fn records_stay_where_they_were_appended_across_packs_and_are_replayed_there() {
        let dir = tempfile::tempdir().unwrap();
        let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
        assert!(replayed(&mut replay).is_empty());
        let mut positions = Vec::new();
        for seed in 0..12u8 {
            let appended = append(&log, seed, 50_000).await;
            positions.push(appended.position);
        }
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
        let packs: std::collections::BTreeSet<u64> =
            positions.iter().map(|p| p.generation).collect();
        assert!(packs.len() >= 3, "12 × 50 kB in packs of 256 kB: {packs:?}");
        assert_eq!(log.stats().packs, packs.len() as u64);
        for (seed, position) in positions.iter().enumerate() {
            let expected: Vec<u8> = body(seed as u8, 50_000).concat();
            assert_eq!(read_body(dir.path(), *position).unwrap(), expected);
        }
        // Nowhere else does a record start.
        let mut off_by_one = positions[3];
        off_by_one.offset += 1;
        assert!(read_body(dir.path(), off_by_one).is_none());
        assert!(read_body(
            dir.path(),
            Position {
                generation: 999,
                offset: 4096
            }
        )
        .is_none());

        // Without a checkpoint, every record is replayed, where it is.
        drop(log);
        let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
        let again = replayed(&mut replay);
        assert_eq!(again.iter().map(|(p, _)| *p).collect::<Vec<_>>(), positions);
        assert_eq!(again[5].1, vec![5u8; 3]);
        // A checkpoint with nothing appended since the opening covers what was replayed.
        let covered = log
            .checkpoint(|| async { Ok::<(), String>(()) })
            .await
            .unwrap()
            .expect("a checkpoint past the replayed records");
        assert!(covered > *positions.last().unwrap());
        drop(log);
        let (_, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
        assert!(replayed(&mut replay).is_empty());
    }

    #[tokio::test]
    async fn a_checkpoint_waits_for_every_record_before_it_and_replay_starts_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
        let first = append(&log, 1, 1000).await;
        let second = append(&log, 2, 1000).await;
        drop(first.durable);
        // The second record is not applied yet: the checkpoint waits for it.
        let made = Arc::new(AtomicU64::new(0));
        let checkpoint = {
            let log = log.clone();
            let made = made.clone();
            tokio::spawn(async move {
                log.checkpoint(|| async move {
                    made.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), String>(())
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            made.load(Ordering::SeqCst),
            0,
            "waiting for the second record"
        );
        // A record appended meanwhile is not waited for, and stays ahead.
        let third = append(&log, 3, 1000).await;
        drop(second.durable);
        let position = checkpoint.await.unwrap().unwrap().unwrap();
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert_eq!(position, third.position, "just after the second record");
        assert_eq!(read_checkpoint(dir.path()).unwrap(), Some(position));
        // Nothing new since: no checkpoint (the third record's epoch is the next one's).
        drop(third.durable);
        let next = log
            .checkpoint(|| async { Ok::<(), String>(()) })
            .await
            .unwrap();
        assert!(
            next.is_some(),
            "the third record was appended after the first checkpoint"
        );
        assert_eq!(
            log.checkpoint(|| async { Ok::<(), String>(()) })
                .await
                .unwrap(),
            None
        );

        // A failing make_durable moves nothing.
        let fourth = append(&log, 4, 1000).await;
        drop(fourth.durable);
        let failed = log.checkpoint(|| async { Err("catalog down") }).await;
        assert!(matches!(failed, Err(JournalError::MakeDurable(_))));
        drop(log);
        let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
        let again = replayed(&mut replay);
        assert_eq!(again.len(), 1, "only the fourth record: {again:?}");
        assert_eq!(again[0].0, fourth.position);
        // Appends after a reopen go to a new pack, after the replayed ones.
        let fifth = append(&log, 5, 1000).await;
        assert!(fifth.position.generation > fourth.position.generation);
    }

    #[tokio::test]
    async fn checkpoint_wanted_returns_after_a_checkpoints_worth() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
        let wanted = {
            let log = log.clone();
            tokio::spawn(async move { log.checkpoint_wanted().await })
        };
        append(&log, 1, 40_000).await;
        append(&log, 2, 40_000).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!wanted.is_finished(), "80 kB of 100");
        append(&log, 3, 40_000).await;
        tokio::time::timeout(Duration::from_secs(5), wanted)
            .await
            .expect("wanted after 120 kB")
            .unwrap();
    }

    #[tokio::test]
    async fn only_records_behind_the_checkpoint_are_punched_and_then_read_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
        let first = append(&log, 1, 60_000).await;
        let max = SMALL.max_body_bytes;
        assert_eq!(
            punch(dir.path(), first.position, max).unwrap(),
            Punched::Ahead
        );
        drop(first.durable);
        log.checkpoint(|| async { Ok::<(), String>(()) })
            .await
            .unwrap();
        let second = append(&log, 2, 60_000).await;
        assert_eq!(
            punch(dir.path(), second.position, max).unwrap(),
            Punched::Ahead
        );
        assert!(read_body(dir.path(), second.position).is_some());

        let pack = dir.path().join(pack_file_name(first.position.generation));
        let blocks = |path: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(path).unwrap().blocks()
        };
        let (size, before) = (std::fs::metadata(&pack).unwrap().len(), blocks(&pack));
        assert_eq!(
            punch(dir.path(), first.position, max).unwrap(),
            Punched::Punched
        );
        assert!(read_body(dir.path(), first.position).is_none());
        assert_eq!(
            punch(dir.path(), first.position, max).unwrap(),
            Punched::Absent
        );
        assert_eq!(std::fs::metadata(&pack).unwrap().len(), size, "size kept");
        assert!(blocks(&pack) + 100 <= before, "≥ 50 kB freed");
        // Nothing of the frame is left (its header and body were distinctive bytes).
        let mut frame = vec![0u8; 60_000];
        std::fs::File::open(&pack)
            .unwrap()
            .read_exact_at(&mut frame, first.position.offset)
            .unwrap();
        assert!(frame.iter().all(|b| *b == 0));
        // The record after it is intact.
        assert_eq!(
            read_body(dir.path(), second.position).unwrap(),
            body(2, 60_000).concat()
        );
    }

    #[tokio::test]
    async fn a_walk_finds_every_record_before_the_checkpoint_past_punched_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
        let mut positions = Vec::new();
        for seed in 0..6u8 {
            // Sizes that leave frames off block boundaries.
            positions.push(
                append(&log, seed, 10_000 + 777 * seed as usize)
                    .await
                    .position,
            );
        }
        log.checkpoint(|| async { Ok::<(), String>(()) })
            .await
            .unwrap();
        let after = append(&log, 9, 1000).await;
        let until = log.checkpointed();
        let generation = positions[0].generation;
        let walk = |until| {
            records_before(dir.path(), generation, until, SMALL.max_body_bytes)
                .unwrap()
                .iter()
                .map(|w| w.position)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            walk(until),
            positions,
            "the record after the checkpoint is not walked"
        );
        for punched in [1, 2, 4] {
            let max = SMALL.max_body_bytes;
            assert_eq!(
                punch(dir.path(), positions[punched], max).unwrap(),
                Punched::Punched
            );
        }
        assert_eq!(
            walk(until),
            vec![positions[0], positions[3], positions[5]],
            "past the punched ones"
        );
        assert_eq!(generations(dir.path()).unwrap(), vec![generation]);
        let everything = Position {
            generation,
            offset: u64::MAX,
        };
        assert_eq!(walk(everything).last(), Some(&after.position));
    }

    #[tokio::test]
    async fn a_torn_tail_ends_replay_and_an_empty_pack_is_removed_but_a_bad_checkpoint_stops() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
        let kept = append(&log, 1, 1000).await;
        let torn = append(&log, 2, 1000).await;
        drop((kept, torn.durable));
        drop(log);
        // The second record's body half written: its hash no longer matches.
        let pack = dir.path().join(pack_file_name(torn.position.generation));
        let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(len - 10).unwrap();
        file.set_len(len).unwrap();
        // A pack made but cut off before its header was written.
        std::fs::write(dir.path().join(pack_file_name(77)), b"").unwrap();

        let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
        assert_eq!(
            replayed(&mut replay).len(),
            1,
            "the torn record is not replayed"
        );
        assert!(!dir.path().join(pack_file_name(77)).exists());
        let next = append(&log, 3, 1000).await;
        assert_eq!(next.position.generation, 78, "after every pack seen");
        drop((next, log));

        std::fs::write(
            dir.path().join(CHECKPOINT_FILE),
            b"RPJCKP01 and then garbage",
        )
        .unwrap();
        assert!(matches!(
            PackLog::open(dir.path(), SMALL),
            Err(JournalError::Config(_))
        ));
    }

    #[test]
    fn pack_names_round_trip_and_nothing_else_is_one() {
        assert_eq!(pack_generation(&pack_file_name(0x2a)), Some(0x2a));
        assert_eq!(pack_generation(&pack_file_name(u64::MAX)), Some(u64::MAX));
        for bad in [
            "2a.pack",
            "000000000000002A.pack",
            "000000000000002a.pack.new",
            "+00000000000002a.pack",
            "checkpoint",
        ] {
            assert_eq!(pack_generation(bad), None, "{bad}");
        }
        assert!(PackLog::open(Path::new("/nonexistent"), PackConfig::default()).is_err());
        assert!(PackConfig {
            pack_bytes: 1 << 20,
            max_body_bytes: 4 << 20,
            checkpoint_bytes: 1
        }
        .check()
        .is_err());
    }
}
