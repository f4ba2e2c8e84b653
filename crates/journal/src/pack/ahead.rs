//! Space written ahead: while no one appends, a thread of the log writes zeros into the
//! active pack past its records (up to [`PackConfig::ahead_bytes`](super::PackConfig)), a
//! piece at a time, each synced. A record placed there then overwrites blocks that are
//! allocated, written and inside the file's size, so the `fdatasync` after it has no metadata
//! to write — on this development VM's ext4 that sync's inode and allocation writes were a
//! fifth to a third of an instance's latency, and `radport-bench-floor` took 0.5 MB messages
//! 1.5–1.9× as fast into written space as into a growing file (docs/performance.md,
//! session 24). Space that is only allocated (`fallocate`) measured no better than growing.
//!
//! The price is a second write of each byte, which is why it happens only while the log is
//! idle: zeros written while instances arrive measured slower than none (and p99 latencies
//! of 5–10 ms). A burst longer than the space written ahead goes on as packs grow.
//!
//! Zeros never take the room other files need: a piece is written only while at least
//! [`PackConfig::ahead_bytes`](super::PackConfig) stay free after it.
//!
//! Invariants (with `reserve` in `writer`):
//! - Zeros are only written at or past the active pack's `used`: never over a record, not
//!   even one reserved and not yet written.
//! - A frame is not reserved over a piece being written (`Active::filling`); its reservation
//!   waits for the piece (at most [`PIECE_BYTES`]).
//! - Nothing depends on the zeros for durability: every record is still synced after it is
//!   written. Zeros past the last record end replay as a torn tail does; opening the log cuts
//!   them off the last pack.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Duration;

use super::direct::{write_all_at, AlignedBuffer};
use super::Shared;

/// Zeros are written in pieces of this many bytes, each synced.
pub(super) const PIECE_BYTES: u64 = 4 << 20;

/// How often the writer of space ahead looks whether the log is idle: it writes once no
/// frame was reserved between two looks.
const IDLE_LOOK: Duration = Duration::from_millis(10);

/// Tests: milliseconds between claiming a piece and writing it, so that appends meet it.
#[cfg(test)]
pub(super) static PIECE_DELAY_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// After a piece could not be written (a full disk), the next try waits this long.
const AFTER_FAILURE: Duration = Duration::from_secs(10);

/// Starts the writer of space ahead for the log of `shared`; it ends once the log is dropped.
pub(super) fn spawn(shared: Weak<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("radport-pack-ahead".into())
        .spawn(move || write_ahead_while_open(&shared))
        .map(drop)
}

/// Bytes free for an unprivileged writer on the file system of `dir`.
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stats` room for the answer, both alive
    // for the call; the answer is read only if the call succeeded.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stats.assume_init()
    };
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn write_ahead_while_open(shared: &Weak<Shared>) {
    let mut zeros = AlignedBuffer::new();
    zeros.bytes_mut(PIECE_BYTES as usize).fill(0);
    let mut last_seen = None;
    loop {
        std::thread::sleep(IDLE_LOOK);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // Pieces one after the other while no frame is reserved meanwhile.
        loop {
            match write_piece(&shared, &zeros, &mut last_seen) {
                Piece::Written => continue,
                Piece::NotNow => break,
                Piece::Failed(e) => {
                    tracing::warn!(error = %e, "pack space could not be written ahead");
                    drop(shared);
                    std::thread::sleep(AFTER_FAILURE);
                    break;
                }
            }
        }
    }
}

enum Piece {
    Written,
    /// Appends came since the last look, no pack is active, or enough is written ahead.
    NotNow,
    Failed(std::io::Error),
}

/// Writes the next piece of zeros into the active pack if the log was idle since
/// `last_seen` (the count of frames reserved at the last look, updated here).
fn write_piece(shared: &Shared, zeros: &AlignedBuffer, last_seen: &mut Option<u64>) -> Piece {
    let (file, generation, from, to) = {
        let mut state = shared.lock();
        let reserved = state.reserved;
        if last_seen.replace(reserved) != Some(reserved) {
            return Piece::NotNow;
        }
        let ahead_bytes = shared.config.ahead_bytes;
        let pack_bytes = shared.config.pack_bytes;
        let Some(active) = &mut state.active else {
            return Piece::NotNow;
        };
        let from = active.ahead.max(active.used);
        let to = active
            .used
            .saturating_add(ahead_bytes)
            .min(pack_bytes)
            .min(from.saturating_add(PIECE_BYTES));
        // Whole blocks only (direct I/O); `from` is one, as every record's end is.
        let to = to - to % super::RECORD_ALIGN;
        if to <= from {
            return Piece::NotNow;
        }
        // Zeros never take the room files need: a piece is written only while as much as
        // the whole space ahead stays free after it (on a nearly full disk, none is).
        let room = available_bytes(&shared.dir).unwrap_or(0);
        if room.saturating_sub(to - from) < ahead_bytes {
            return Piece::NotNow;
        }
        active.ahead = from;
        active.filling = Some(to);
        (active.file.clone(), active.generation, from, to)
    };
    /// Ends the piece however writing it ends (a panic included): a frame waiting for it
    /// would otherwise wait for good.
    struct Claimed<'a> {
        shared: &'a Shared,
        generation: u64,
        /// Set once the piece's zeros are written and synced: the space ahead ends there.
        written_to: Option<u64>,
    }
    impl Drop for Claimed<'_> {
        fn drop(&mut self) {
            let mut state = self.shared.lock();
            if let Some(active) = state
                .active
                .as_mut()
                .filter(|a| a.generation == self.generation)
            {
                active.filling = None;
                if let Some(to) = self.written_to {
                    active.ahead = to;
                }
            }
            drop(state);
            self.shared.filled.notify_all();
        }
    }
    let mut claimed = Claimed {
        shared,
        generation,
        written_to: None,
    };
    #[cfg(test)]
    std::thread::sleep(Duration::from_millis(
        PIECE_DELAY_MS.load(Ordering::Relaxed),
    ));
    // Below `PIECE_BYTES`: fits a usize.
    let len = (to - from) as usize;
    let result = write_all_at(&file, &[zeros.bytes(len)], from).and_then(|()| file.sync_data());
    if result.is_ok() {
        claimed.written_to = Some(to);
    }
    drop(claimed);
    match result {
        Ok(()) => {
            shared
                .ahead_written
                .fetch_add(len as u64, Ordering::Relaxed);
            Piece::Written
        }
        Err(e) => Piece::Failed(e),
    }
}
