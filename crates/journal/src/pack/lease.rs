//! A record written while it arrives. A record made while no other is between being laid
//! out and written is *lent* the end of the active pack: room for the largest record the
//! ingest keeps in packs ([`LEASE_BODY_BYTES`]) is reserved when it is made, and each time
//! [`CHUNK`] more of it have arrived its whole blocks — past the first, which holds the
//! frame's head, known only at the end — are submitted with Linux native AIO (`io_submit`
//! of an `O_DIRECT` write: the association neither blocks nor wakes a thread). Appending it
//! gives back the room it did not use, submits the first block and the rest and waits for
//! them and for the writes still in flight at once, then syncs: after the last data, one
//! round trip to the disk for a few blocks and a sync instead of the whole record's write.
//! A write that failed has the record written again whole in its room. Measured:
//! docs/performance.md, "Writing while the instance arrives, through native AIO".
//!
//! Invariants:
//!
//! - While a lease is out nothing is reserved after it: any other reservation, and every
//!   checkpoint, first *cancels* it ([`cancel`]). So it is always at the end of the active
//!   pack, the room it does not use goes back, and no gap ever lies between records (replay
//!   would take one for the end).
//! - A cancelled lease, and one whose record is dropped before it is appended (an instance
//!   that outgrew the packs, an aborted association), has its writes waited for and zeros
//!   written over its lent blocks before anything is placed after it: those blocks hold the
//!   sender's bytes, and a body can hold what looks like a frame. The zeros are not synced
//!   on their own: the next record placed over or after them is written after they completed,
//!   and its sync covers both.
//! - A crash with a lease out leaves its blocks after the last record of the last pack, whose
//!   tail opening the log cuts off (nothing was acknowledged from them).
//! - Each write carries an `aio_data` of its own, so that the durability proof can tell its
//!   completion from any other (`radport_testkit::strace` counts a write from its reaping).
//!
//! Written here rather than taken from a crate: the AIO system calls are three, their
//! structures two; the crates that wrap them bring a runtime of their own.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::direct::{write_all_at, AlignedBuffer};
use super::State;
use crate::frame::RECORD_ALIGN;
use crate::Position;

/// How much more of a lent record arrives before its next write.
pub(super) const CHUNK: usize = 128 << 10;

/// The largest body a lease has room for: the ingest keeps bodies of up to 1 MiB in packs
/// (`radport_ingest::JOURNALED_MAX_BYTES`); a larger one is appended the ordinary way.
pub(super) const LEASE_BODY_BYTES: u64 = 1 << 20;

/// Writes in flight per AIO context at most (a lent record has at most eight 128 KiB writes).
const CONTEXT_EVENTS: usize = 16;

const IOCB_CMD_PWRITE: u16 = 1;

/// `struct iocb` of `linux/aio_abi.h` (little-endian layout).
#[repr(C)]
#[derive(Default)]
struct Iocb {
    aio_data: u64,
    aio_key: u32,
    aio_rw_flags: i32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

/// `struct io_event`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

/// An AIO context (`io_setup`), destroyed when dropped.
#[derive(Debug)]
pub(super) struct Context(u64);

impl Context {
    pub(super) fn new() -> io::Result<Self> {
        let mut id: u64 = 0;
        // SAFETY: io_setup writes the new context's id into `id`.
        let done = unsafe {
            libc::syscall(
                libc::SYS_io_setup,
                CONTEXT_EVENTS as libc::c_long,
                &mut id as *mut u64,
            )
        };
        if done < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(id))
    }

    /// Submits a write of `bytes` at `offset` of `file`; `bytes` must stay alive and
    /// unchanged until its completion is reaped ([`Context::reap`]). Returns its `aio_data`.
    fn submit(&self, file: &File, bytes: &[u8], offset: u64) -> io::Result<u64> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let fd = u32::try_from(file.as_raw_fd()).map_err(io::Error::other)?;
        let offset = i64::try_from(offset).map_err(io::Error::other)?;
        let data = NEXT.fetch_add(1, Ordering::Relaxed);
        let iocb = Iocb {
            aio_data: data,
            aio_lio_opcode: IOCB_CMD_PWRITE,
            aio_fildes: fd,
            aio_buf: bytes.as_ptr() as u64,
            aio_nbytes: bytes.len() as u64,
            aio_offset: offset,
            ..Iocb::default()
        };
        let mut list = [&iocb as *const Iocb];
        loop {
            // SAFETY: one valid iocb, copied by the kernel during the call; its buffer is
            // the caller's to keep alive until the completion is reaped.
            let done = unsafe {
                libc::syscall(
                    libc::SYS_io_submit,
                    self.0,
                    1 as libc::c_long,
                    list.as_mut_ptr(),
                )
            };
            match done {
                1 => return Ok(data),
                0 => return Err(io::Error::other("io_submit took no write")),
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Waits for `count` completions; the first error, or a write shorter than `expected`
    /// says (by `aio_data`), fails it (every completion is still reaped).
    fn reap(&self, mut count: usize, expected: &[(u64, usize)]) -> io::Result<()> {
        let mut events = [IoEvent::default(); CONTEXT_EVENTS];
        let mut failed = None;
        while count > 0 {
            let want = count.min(CONTEXT_EVENTS) as libc::c_long;
            // SAFETY: `events` has room for `want` events; no timeout.
            let got = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    self.0,
                    want,
                    want,
                    events.as_mut_ptr(),
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            let Ok(got) = usize::try_from(got) else {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                // Nothing more can be reaped from this context: the caller must not reuse
                // the buffers (it drops the context, which waits for what is in flight).
                return Err(e);
            };
            for event in &events[..got] {
                let wanted = expected
                    .iter()
                    .find(|(data, _)| *data == event.data)
                    .map(|(_, len)| *len);
                if event.res < 0 {
                    failed.get_or_insert(io::Error::from_raw_os_error(
                        i32::try_from(-event.res).unwrap_or(libc::EIO),
                    ));
                } else if wanted != usize::try_from(event.res).ok() {
                    failed.get_or_insert(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "a lent record's write was cut short",
                    ));
                }
            }
            count -= got.min(count);
        }
        failed.map_or(Ok(()), Err)
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: a context of ours; io_destroy waits for the writes still in flight.
        unsafe { libc::syscall(libc::SYS_io_destroy, self.0) };
    }
}

/// What a lease is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseState {
    /// Its record may still write into it.
    Open,
    /// Taken back: its blocks are zeros again; its record is appended the ordinary way.
    Cancelled,
    /// Its record is being appended into it.
    Closed,
}

/// A lease: the room of one record at the end of the active pack.
#[derive(Debug)]
pub(super) struct Lent {
    pub(super) file: Arc<File>,
    pub(super) position: Position,
    /// Bytes reserved from `position`.
    pub(super) len: u64,
    context: Option<Context>,
    /// Bytes of the record, from its start, written or being written (the first block is
    /// never: it is written at the end).
    pub(super) submitted: usize,
    /// Writes submitted and not reaped, with their lengths.
    in_flight: Vec<(u64, usize)>,
    pub(super) state: LeaseState,
    /// A write failed: nothing more is submitted, and the record is appended the ordinary
    /// way.
    failed: bool,
}

/// A record's hold on its lease.
pub(super) type Lease = Arc<Mutex<Lent>>;

pub(super) fn lock(lease: &Lease) -> MutexGuard<'_, Lent> {
    // Every change under the lock is a few assignments after a system call: consistent.
    lease.lock().unwrap_or_else(|e| e.into_inner())
}

impl Lent {
    pub(super) fn new(file: Arc<File>, position: Position, len: u64, context: Context) -> Self {
        Self {
            file,
            position,
            len,
            context: Some(context),
            submitted: RECORD_ALIGN as usize,
            in_flight: Vec::new(),
            state: LeaseState::Open,
            failed: false,
        }
    }

    /// Submits the record's whole chunks up to `ready` bytes of `record` (its bytes from its
    /// start), which must stay unchanged until they are reaped.
    pub(super) fn submit(&mut self, record: &[u8], ready: usize) {
        let ready = ready.min(usize::try_from(self.len).unwrap_or(usize::MAX)) / CHUNK * CHUNK;
        if self.state != LeaseState::Open || self.failed || ready <= self.submitted {
            return;
        }
        let Some(context) = &self.context else { return };
        let bytes = &record[self.submitted..ready];
        match context.submit(
            &self.file,
            bytes,
            self.position.offset + self.submitted as u64,
        ) {
            Ok(data) => {
                self.in_flight.push((data, bytes.len()));
                self.submitted = ready;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a record could not be written while it arrived");
                self.failed = true;
            }
        }
    }

    /// Waits for every write in flight. An error leaves the lease failed.
    pub(super) fn wait(&mut self) -> io::Result<()> {
        if self.in_flight.is_empty() {
            return if self.failed {
                Err(io::Error::other("a lent record's write failed"))
            } else {
                Ok(())
            };
        }
        let Some(context) = &self.context else {
            return Err(io::Error::other("a lease without its context"));
        };
        let in_flight = std::mem::take(&mut self.in_flight);
        if let Err(e) = context.reap(in_flight.len(), &in_flight) {
            self.failed = true;
            // Not reused: dropping it waits for whatever it may still have in flight.
            self.context = None;
            return Err(e);
        }
        if self.failed {
            return Err(io::Error::other("a lent record's write failed"));
        }
        Ok(())
    }

    /// Gives the AIO context back to `pool` for a next lease.
    pub(super) fn give_back_context(&mut self, pool: &Mutex<Vec<Context>>) {
        if let Some(context) = self.context.take() {
            if self.in_flight.is_empty() {
                pool.lock().unwrap_or_else(|e| e.into_inner()).push(context);
            }
        }
    }

    /// Writes the record's first block and the rest after its submitted blocks (`record`:
    /// all of its bytes, `len` of them) together, and waits for both and for the writes
    /// still in flight — one wait after the last data. An error (of any of them) leaves the
    /// record to be written again whole.
    pub(super) fn write_ends(&mut self, record: &[u8]) -> io::Result<()> {
        let first = &record[..(RECORD_ALIGN as usize).min(record.len())];
        let rest = record.get(self.submitted..).unwrap_or(&[]);
        let mut expected = std::mem::take(&mut self.in_flight);
        let Some(context) = &self.context else {
            // Without a context nothing is in flight (it is dropped only once reaped).
            write_all_at(&self.file, &[first], self.position.offset)?;
            return write_all_at(
                &self.file,
                &[rest],
                self.position.offset + self.submitted as u64,
            );
        };
        let mut ends = vec![(first, self.position.offset)];
        if !rest.is_empty() {
            ends.push((rest, self.position.offset + self.submitted as u64));
        }
        let mut submitted = Ok(());
        for (bytes, offset) in ends {
            match context.submit(&self.file, bytes, offset) {
                Ok(data) => expected.push((data, bytes.len())),
                Err(e) => {
                    submitted = Err(e);
                    break;
                }
            }
        }
        let reaped = context.reap(expected.len(), &expected);
        if reaped.is_err() {
            // Not reused: dropping it waits for whatever it may still have in flight.
            self.context = None;
        }
        submitted.and(reaped)
    }
}

/// Takes the lease back (see the module doc): waits for its writes, writes zeros over its
/// lent blocks, and gives its room back to the active pack (nothing was reserved after it).
/// Called with the log's state locked, the lease already taken out of it.
pub(super) fn cancel(state: &mut State, lease: &Lease, contexts: &Mutex<Vec<Context>>) {
    let mut lent = lock(lease);
    if lent.state != LeaseState::Open {
        return;
    }
    lent.state = LeaseState::Cancelled;
    let _ = lent.wait();
    if lent.submitted > RECORD_ALIGN as usize {
        let zeros_len = lent.submitted - RECORD_ALIGN as usize;
        // A new buffer's pages are zeros.
        let mut zeros = AlignedBuffer::new();
        let bytes = zeros.bytes_mut(zeros_len.next_multiple_of(RECORD_ALIGN as usize));
        if let Err(e) = write_all_at(
            &lent.file,
            &[&bytes[..zeros_len]],
            lent.position.offset + RECORD_ALIGN,
        ) {
            // The pack is not written after this: what follows a failed write would be
            // unreadable behind it (as after a failed group), and nothing after the lease
            // is replayed, so its blocks are never read.
            tracing::error!(error = %e, "a cancelled lease's blocks could not be zeroed; the next record starts another pack");
            state.active = None;
        }
    }
    lent.give_back_context(contexts);
    give_back_room(state, &lent, lent.position.offset);
}

/// The active pack's reservation ends at `to` again instead of at the lease's end.
pub(super) fn give_back_room(state: &mut State, lent: &Lent, to: u64) {
    let lease_end = lent.position.offset + lent.len;
    if let Some(active) = state
        .active
        .as_mut()
        .filter(|a| a.generation == lent.position.generation && a.used == lease_end)
    {
        active.used = to;
        state.end = Position {
            generation: active.generation,
            offset: to,
        };
        state.since_checkpoint = state.since_checkpoint.saturating_sub(lease_end - to);
    }
}
