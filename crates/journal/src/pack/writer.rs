//! Writing packs. Whoever appends while no one is writing leads: it takes every append
//! waiting, reserves their frames in the active pack (making the next pack when it is full;
//! each frame at a multiple of [`RECORD_ALIGN`](crate::frame::RECORD_ALIGN)), fills in their frames' heads and writes
//! their records — laid out by their appenders in aligned buffers of their own — with one
//! direct `pwritev` per pack (`direct`), syncs once, then answers each. Appends that arrive
//! meanwhile wait for the next group.
//!
//! The leader is the appending task's own thread when that is a worker of a multi-threaded
//! runtime, appends come one at a time (the last group had one) and the group is small
//! ([`INLINE_GROUP_BYTES`]): a lone instance is written and synced with no
//! hand-off to another thread and back. That blocks the worker for one direct write and one
//! `fdatasync` (about half a millisecond for a 0.5 MB instance), and a leader never does it
//! twice in a row: what arrives meanwhile is written by a blocking thread
//! (`spawn_blocking`), which leads until nothing waits — the writer thread of before, when
//! many senders keep it busy. Measured (session 19, `bench/ingest-ab.sh`, 5 rounds): 680
//! instances per second from one sender against 602 with a writer thread, 0.70 ms of CPU each
//! against 0.75; four senders 1 272 both. Leading on the worker with several appenders too
//! made four senders 7–11 % slower in `bench/ingest.sh` (a blocked worker holds up the other
//! associations' arrivals).
//!
//! A record that was lent room (`lease`) is placed there (its lease closed, what it did not
//! use given back) before the group's other records are reserved — any other reservation
//! cancels an open lease — and only its ends are written; the runs of one pack share its sync.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::frame::{aligned_pack_header, encode_frame_head, FRAME_HEAD_LEN};
use crate::writer::MAX_GROUP_BYTES;
use crate::{segment, JournalError, Position};

use super::direct::{open_for_writes, write_all_at};
use super::lease::{self, Lease, LeaseState, Lent};
use super::{
    generation_after, pack_file_name, Active, Append, Appended, PackDurable, Shared, State,
};

/// At most this many bytes of frames are written by a leader on a runtime's worker (more go
/// to a blocking thread): the worker is blocked while they are written and synced.
pub(super) const INLINE_GROUP_BYTES: u64 = 4 << 20;

/// Who writes: the appends waiting and whether someone leads.
pub(super) struct Lead {
    queue: Mutex<Queue>,
}

struct Queue {
    waiting: VecDeque<Append>,
    /// Someone writes (and will look at `waiting` again before it stops).
    leading: bool,
    /// Appends in the last group written: more than one, and appenders are many — a worker
    /// blocked by a write would hold up the others' arrivals, so a blocking thread writes.
    last_group: usize,
}

impl Lead {
    pub(super) fn new() -> Self {
        Self {
            queue: Mutex::new(Queue {
                waiting: VecDeque::new(),
                leading: false,
                last_group: 0,
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every change under the lock is a push, a pop or a flag: consistent after a panic.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Queues `append`; if no one leads, the caller does: here, for one group, on a worker of a
/// multi-threaded runtime while appenders come one at a time (the last group had one
/// append); otherwise (and for what waits after that group) a blocking thread.
pub(super) fn append(shared: &Arc<Shared>, lead: &Arc<Lead>, append: Append) {
    let (leads, alone) = {
        let mut queue = lead.queue();
        queue.waiting.push_back(append);
        let leads = !std::mem::replace(&mut queue.leading, true);
        (leads, queue.last_group <= 1)
    };
    if !leads {
        return;
    }
    let runtime = tokio::runtime::Handle::try_current().ok();
    if is_multi_thread(runtime.as_ref()) && alone && !lead_one(shared, lead, INLINE_GROUP_BYTES) {
        return;
    }
    let (shared, lead) = (shared.clone(), lead.clone());
    let go_on = move || while lead_one(&shared, &lead, MAX_GROUP_BYTES) {};
    match runtime {
        Some(runtime) => drop(runtime.spawn_blocking(go_on)),
        None => drop(std::thread::spawn(go_on)),
    }
}

/// Whether `runtime` (the caller's, if any) is multi-threaded: the caller is on one of its
/// workers (or in its `block_on`), where a lone group may be led.
pub(super) fn is_multi_thread(runtime: Option<&tokio::runtime::Handle>) -> bool {
    runtime.is_some_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Writes one group of what waits (up to `max_bytes` of frames, at least one append);
/// whether more waits — then the caller must go on leading, or hand over. When nothing
/// waits (or on a panic) no one leads any more.
fn lead_one(shared: &Arc<Shared>, lead: &Lead, max_bytes: u64) -> bool {
    /// Ends the lead if the group's writing panics, so that the next appender leads.
    struct Unwinding<'a>(&'a Lead);
    impl Drop for Unwinding<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                self.0.queue().leading = false;
            }
        }
    }
    let group = {
        let mut queue = lead.queue();
        let mut group = Vec::new();
        let mut bytes = 0u64;
        while bytes < max_bytes {
            let Some(append) = queue.waiting.pop_front() else {
                break;
            };
            bytes = bytes.saturating_add(append.frame_len());
            group.push(append);
        }
        if group.is_empty() {
            queue.leading = false;
            return false;
        }
        queue.last_group = group.len();
        group
    };
    {
        let _unwinding = Unwinding(lead);
        write_group(shared, group);
    }
    let mut queue = lead.queue();
    if queue.waiting.is_empty() {
        queue.leading = false;
        false
    } else {
        true
    }
}

struct Placed {
    /// Its record's head filled in.
    append: Append,
    /// Bytes it takes in its pack: its frame, then zeros up to the next multiple of
    /// [`RECORD_ALIGN`](crate::frame::RECORD_ALIGN).
    len: usize,
    appended: Appended,
}

/// The records of a group that go into one pack, one after the other from `offset`.
struct Run {
    file: Arc<File>,
    generation: u64,
    offset: u64,
    records: Vec<Placed>,
    /// The run's one record was lent its room: only its ends are left to write.
    lease: Option<Lease>,
}

fn write_group(shared: &Arc<Shared>, mut group: Vec<Append>) {
    let started = Instant::now();
    let queued: Duration = group
        .iter()
        .map(|append| started.saturating_duration_since(append.queued))
        .sum();
    add_nanos(&shared.queued_nanos, queued);
    shared.groups.fetch_add(1, Ordering::Relaxed);
    // A lent record first: any other reservation would cancel its lease.
    group.sort_by_key(|append| append.lease.0.is_none());
    #[cfg(test)]
    {
        *shared.last_writer.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::thread::current().id());
    }
    let mut runs: Vec<Run> = Vec::new();
    for mut append in group {
        let len = append.record_len;
        let lent = append
            .lease
            .0
            .take()
            .and_then(|lease| close_lease(shared, &lease, len as u64).map(|r| (r, lease)));
        let (file, position, epoch, lease) = match lent {
            Some(((file, position, epoch), lease)) => (file, position, epoch, Some(lease)),
            None => match reserve(shared, len as u64) {
                Ok((file, position, epoch)) => (file, position, epoch, None),
                Err(e) => {
                    let _ = append.reply.send(Err(e));
                    continue;
                }
            },
        };
        let record = append.record.bytes_mut(len);
        let head = encode_frame_head(
            position.generation,
            &record[FRAME_HEAD_LEN..FRAME_HEAD_LEN + append.header_len],
            append.body_len,
            &append.body_hash,
        );
        record[..FRAME_HEAD_LEN].copy_from_slice(&head);
        let placed = Placed {
            append,
            len,
            appended: Appended {
                durable: PackDurable {
                    shared: shared.clone(),
                    epoch,
                },
                position,
            },
        };
        match runs.last_mut() {
            Some(run)
                if lease.is_none()
                    && run.lease.is_none()
                    && run.generation == position.generation =>
            {
                run.records.push(placed)
            }
            _ => runs.push(Run {
                file,
                generation: position.generation,
                offset: position.offset,
                records: vec![placed],
                lease,
            }),
        }
    }
    // The runs of one pack (a lent record's run beside the others') share its sync.
    let generations: Vec<u64> = runs.iter().map(|run| run.generation).collect();
    let mut pending: Vec<(
        tokio::sync::oneshot::Sender<Result<Appended, JournalError>>,
        Appended,
    )> = Vec::new();
    let mut written: io::Result<()> = Ok(());
    for (index, run) in runs.into_iter().enumerate() {
        let mut buffers = Vec::with_capacity(run.records.len());
        for placed in run.records {
            buffers.push((placed.append.record, placed.len));
            pending.push((placed.append.reply, placed.appended));
        }
        let parts: Vec<&[u8]> = buffers
            .iter()
            .map(|(record, len)| record.bytes(*len))
            .collect();
        if written.is_ok() {
            let writing = Instant::now();
            let result = match &run.lease {
                Some(lent) => {
                    let mut lent = lease::lock(lent);
                    #[cfg(test)]
                    let done = match shared.fail_next_ends.swap(false, Ordering::Relaxed) {
                        true => lent.wait().and(Err(io::Error::other(
                            "a lent record's ends failed as the test wanted",
                        ))),
                        false => lent.write_ends(parts[0]),
                    };
                    #[cfg(not(test))]
                    let done = lent.write_ends(parts[0]);
                    lent.give_back_context(&shared.aio_contexts);
                    drop(lent);
                    done.or_else(|e| {
                        // Its room is the record's: written there again whole.
                        tracing::warn!(error = %e, "a record written while it arrived is written again whole");
                        write_all_at(&run.file, &parts, run.offset)
                    })
                }
                None => write_all_at(&run.file, &parts, run.offset),
            };
            add_nanos(&shared.writing_nanos, writing.elapsed());
            #[cfg(test)]
            assert!(
                !shared.panic_after_next_write.swap(false, Ordering::Relaxed),
                "the writer panics after a write, as the test wants"
            );
            #[cfg(test)]
            let result = match shared.fail_next_write.swap(false, Ordering::Relaxed) {
                true => Err(io::Error::other("a write failed as the test wanted")),
                false => result,
            };
            written = result;
        }
        drop(parts);
        for (record, _) in buffers {
            shared.give_back(record);
        }
        if generations.get(index + 1) == Some(&run.generation) {
            continue; // the next run is of this pack too: its sync comes after it
        }
        let syncing = Instant::now();
        let result = std::mem::replace(&mut written, Ok(())).and_then(|()| run.file.sync_data());
        add_nanos(&shared.syncing_nanos, syncing.elapsed());
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        let answers = std::mem::take(&mut pending);
        match result {
            Ok(()) => {
                shared
                    .records
                    .fetch_add(answers.len() as u64, Ordering::Relaxed);
                for (reply, appended) in answers {
                    let _ = reply.send(Ok(appended));
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
                let (kind, message) = (e.kind(), e.to_string());
                for (reply, appended) in answers {
                    drop(appended);
                    let _ = reply.send(Err(JournalError::Write {
                        kind,
                        message: message.clone(),
                    }));
                }
            }
        }
    }
}

/// Adds `time` to a total of nanoseconds (one that would overflow stays at its largest).
fn add_nanos(total: &std::sync::atomic::AtomicU64, time: Duration) {
    let nanos = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
    let _ = total.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
        Some(t.saturating_add(nanos))
    });
}

/// Closes a lease for its record's append (`len` bytes): its room, what it did not use given
/// back, becomes the record's reservation — the pack's file, the frame's position and its
/// epoch. `None` if it was cancelled meanwhile: the record is reserved the ordinary way.
fn close_lease(shared: &Shared, lease: &Lease, len: u64) -> Option<(Arc<File>, Position, u64)> {
    let mut state = shared.lock();
    if !state.lease.as_ref().is_some_and(|l| Arc::ptr_eq(l, lease)) {
        return None;
    }
    state.lease = None;
    let mut lent = lease::lock(lease);
    if lent.state != LeaseState::Open || len > lent.len {
        drop(lent);
        lease::cancel(&mut state, lease, &shared.aio_contexts);
        return None;
    }
    lent.state = LeaseState::Closed;
    lease::give_back_room(&mut state, &lent, lent.position.offset + len);
    let epoch = state.epoch;
    *state.in_flight.entry(epoch).or_insert(0) += 1;
    Some((lent.file.clone(), lent.position, epoch))
}

/// Lends `len` bytes at the end of the active pack to a record written while it arrives,
/// through `context` (see [`lease`]).
pub(super) fn lend(
    shared: &Shared,
    len: u64,
    context: lease::Context,
) -> Result<Lease, JournalError> {
    let mut context = Some(context);
    reserve_with(shared, len, |state, file, position| {
        let lent = Arc::new(std::sync::Mutex::new(Lent::new(
            file,
            position,
            len,
            context.take().expect("one reservation"),
        )));
        state.lease = Some(lent.clone());
        lent
    })
}

/// Reserves `len` bytes for a frame in the active pack, making the next pack when it has
/// no room: the pack's file, the frame's position and its epoch.
fn reserve(shared: &Shared, len: u64) -> Result<(Arc<File>, Position, u64), JournalError> {
    reserve_with(shared, len, |state, file, position| {
        let epoch = state.epoch;
        *state.in_flight.entry(epoch).or_insert(0) += 1;
        (file, position, epoch)
    })
}

/// Reserves `len` bytes in the active pack (cancelling a lease out first, making the next
/// pack when it has no room) and hands the pack's file and the position to `reserved`,
/// with the log's state still locked.
fn reserve_with<T>(
    shared: &Shared,
    len: u64,
    mut reserved: impl FnMut(&mut State, Arc<File>, Position) -> T,
) -> Result<T, JournalError> {
    // One reserver at a time (the leader of a group, or a record being lent room), so that
    // only one makes the next pack.
    let _one_at_a_time = shared.reserving.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let generation = {
            let mut state = shared.lock();
            if let Some(lent) = state.lease.take() {
                lease::cancel(&mut state, &lent, &shared.aio_contexts);
            }
            let pack_bytes = shared.config.pack_bytes;
            // Zeros being written ahead where this frame would go: it waits for them (one
            // piece, [`ahead::PIECE_BYTES`]), or they would land on it.
            while state
                .active
                .as_ref()
                .is_some_and(|a| a.filling.is_some() && a.used.saturating_add(len) > a.ahead)
            {
                state = shared.filled.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.reserved = state.reserved.wrapping_add(1);
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
                    let out = reserved(&mut state, file, position);
                    let before = state.since_checkpoint;
                    state.since_checkpoint = before.saturating_add(len);
                    let wanted = before < shared.config.checkpoint_bytes
                        && state.since_checkpoint >= shared.config.checkpoint_bytes;
                    drop(state);
                    if wanted {
                        shared.changed.notify_waiters();
                    }
                    return Ok(out);
                }
            }
            state.active = None;
            let generation = state.next_generation;
            state.next_generation = generation_after(generation)?;
            generation
        };
        // Only this reserver makes packs: the state's lock need not be held meanwhile.
        let file = make_pack(&shared.dir, generation)?;
        shared.packs.fetch_add(1, Ordering::Relaxed);
        shared.lock().active = Some(Active::new(generation, file));
    }
}

/// Makes the pack of `generation`: its header written and synced, then its directory; and
/// opens it for the records' direct writes. A pack that could not be made (a full disk) is
/// removed again, so that retries leave none.
pub(super) fn make_pack(dir: &Path, generation: u64) -> io::Result<File> {
    let path = dir.join(pack_file_name(generation));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let made = file
        .write_all_at(&aligned_pack_header(generation), 0)
        .and_then(|()| file.sync_all())
        .and_then(|()| segment::sync_dir(dir))
        .and_then(|()| open_for_writes(&path));
    match made {
        Ok(for_records) => Ok(for_records),
        Err(e) => {
            drop(file);
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}
