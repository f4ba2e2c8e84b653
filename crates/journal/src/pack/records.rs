//! Records read where they are: a body for the archive ([`open_record`]), a record punched
//! out ([`punch`]), the records of a pack walked past punched ones ([`records_before`]).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::frame::{parse_pack_header, SEGMENT_HEADER_BYTES};
use crate::replay::read_span;
use crate::{segment, BodyHash, JournalError, Position};

use super::{pack_file_name, pack_generation, read_checkpoint};

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
    /// The hash of the body, as appended.
    pub body_hash: BodyHash,
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
    // In an aligned pack the zeros up to the next record go too, so that the whole block
    // range is freed (a partial block would stay allocated, zeroed).
    let align = parse_pack_header(&segment::read_header(&record.file)?).map_or(1, |(_, a)| a);
    let (Ok(offset), Some(Ok(len))) = (
        libc::off_t::try_from(position.offset),
        record
            .frame_len
            .checked_next_multiple_of(align)
            .map(libc::off_t::try_from),
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
