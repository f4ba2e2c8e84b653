//! The checkpoint file: the position before which no record is replayed, written aside,
//! synced, renamed into place and its directory synced.
//!
//! ```text
//! "RPJCKP01" | generation u64 | offset u64 | check [16]   (little-endian; the check is the
//! first 16 bytes of the BLAKE3 hash of what precedes it)
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::{segment, JournalError, Position};

use super::pack_file_name;

/// The file holding the checkpoint's position.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Where a checkpoint is written before it is renamed into place.
pub(super) const CHECKPOINT_STAGED: &str = "checkpoint.new";
const CHECKPOINT_MAGIC: [u8; 8] = *b"RPJCKP01";
const CHECKPOINT_LEN: usize = 8 + 8 + 8 + 16;
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

pub(super) fn write_checkpoint(dir: &Path, position: Position) -> io::Result<()> {
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
pub(super) fn drop_cached(dir: &Path, from: Position, to: Position) {
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
