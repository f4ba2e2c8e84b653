//! Packs are written with direct I/O (`O_DIRECT`): a group's records go from the writer's
//! buffer to the disk, without a copy into fresh page-cache pages and a writeback of them
//! inside the `fdatasync`. Measured here (docs/performance.md, session 18): appending 0.5 MB
//! records to a growing file with an `fdatasync` each took 0.19 ms of CPU per record through
//! the page cache and 0.11–0.12 ms direct, and ran 15–20 % faster.
//!
//! Direct I/O wants the buffer's address, the file offset and the length to be multiples of
//! the device's logical block size: every record of an aligned pack starts at a multiple of
//! [`RECORD_ALIGN`] (its header says so), and each record is laid out by its appender in a
//! buffer of its own aligned to it, with zeros up to the next record; a group's records, one
//! after the other in their pack, go in one `pwritev` ([`write_all_at`]). A file system that
//! does not take direct I/O (tmpfs) gets the same layout through the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::frame::RECORD_ALIGN;

/// One page of an aligned buffer.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; RECORD_ALIGN as usize]);

/// A record buffer kept above this is given back after its record was written (records of
/// up to 1 MiB, `radport_ingest`'s limit, keep theirs).
const KEPT_BUFFER_BYTES: usize = (1 << 20) + 2 * RECORD_ALIGN as usize;

/// At most this many written records' buffers are kept for the next appends (about 16 MiB
/// with 1 MiB records; more appenders at once make new ones).
pub(super) const KEPT_RECORD_BUFFERS: usize = 16;

/// A buffer whose address is a multiple of [`RECORD_ALIGN`]: a record laid out as it goes
/// into its pack, reused from record to record.
pub(super) struct AlignedBuffer {
    pages: Vec<Page>,
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuffer")
            .field("bytes", &(self.pages.len() * RECORD_ALIGN as usize))
            .finish()
    }
}

impl AlignedBuffer {
    pub(super) fn new() -> Self {
        Self { pages: Vec::new() }
    }

    /// The first `len` bytes (a multiple of [`RECORD_ALIGN`]), to be overwritten whole: what
    /// an earlier group left there is not cleared.
    pub(super) fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        let pages = len.div_ceil(RECORD_ALIGN as usize);
        if self.pages.len() < pages {
            self.pages.resize(pages, Page([0; RECORD_ALIGN as usize]));
        }
        let all = self.pages.as_mut_slice();
        // SAFETY: `Page` is plain bytes with no padding (size = alignment = 4096), so
        // `pages.len() * 4096` initialised bytes start at the slice's pointer, borrowed
        // mutably for as long as the returned slice.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                all.as_mut_ptr().cast::<u8>(),
                all.len() * RECORD_ALIGN as usize,
            )
        };
        &mut bytes[..len]
    }

    /// The bytes of [`AlignedBuffer::bytes_mut`]'s last `len`, to be written.
    pub(super) fn bytes(&self, len: usize) -> &[u8] {
        // SAFETY: as in `bytes_mut`, borrowed immutably.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.pages.as_ptr().cast::<u8>(),
                self.pages.len() * RECORD_ALIGN as usize,
            )
        };
        &bytes[..len]
    }

    /// Gives memory back after a large record.
    pub(super) fn trim(&mut self) {
        if self.pages.len() * RECORD_ALIGN as usize > KEPT_BUFFER_BYTES {
            self.pages
                .truncate(KEPT_BUFFER_BYTES / RECORD_ALIGN as usize);
            self.pages.shrink_to_fit();
        }
    }
}

/// Writes `parts`, one after the other, at `offset` of `file`: `pwritev` (at most `IOV_MAX`
/// parts a call), again for what a short write left.
pub(super) fn write_all_at(file: &File, parts: &[&[u8]], mut offset: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    /// Linux's `IOV_MAX`.
    const MAX_PARTS: usize = 1024;
    let mut slices: Vec<io::IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| io::IoSlice::new(p))
        .collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let count = slices.len().min(MAX_PARTS);
        let at = libc::off_t::try_from(offset).map_err(io::Error::other)?;
        // SAFETY: `IoSlice` is ABI-compatible with `iovec` (std guarantees it on Unix); the
        // `count` slices are valid for reads for the duration of the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast::<libc::iovec>(),
                count as libc::c_int,
                at,
            )
        };
        let written = match usize::try_from(written) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => written,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
        };
        offset += written as u64;
        io::IoSlice::advance_slices(&mut slices, written);
    }
    Ok(())
}

/// Opens the pack at `path` for direct writes or, where its file system does not take
/// them, for ordinary ones.
pub(super) fn open_for_writes(path: &Path) -> io::Result<File> {
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => Ok(file),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!(path = %path.display(), "no direct I/O here; packs go through the page cache");
            std::fs::OpenOptions::new().write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_keep_their_length() {
        let mut buffer = AlignedBuffer::new();
        for len in [4096, 3 * 4096, 4096] {
            let bytes = buffer.bytes_mut(len);
            assert_eq!(bytes.len(), len);
            assert_eq!(bytes.as_ptr() as usize % RECORD_ALIGN as usize, 0);
            bytes.fill(7);
        }
        buffer.bytes_mut(16 << 20);
        buffer.trim();
        assert!(buffer.pages.len() * 4096 <= KEPT_BUFFER_BYTES);
        assert_eq!(buffer.bytes(4096), &[7u8; 4096][..]);
    }

    /// More parts than one `pwritev` takes (`IOV_MAX`), empty ones among them, land one after
    /// the other at the offset, through the same direct I/O as a pack.
    #[test]
    fn parts_are_written_one_after_the_other_in_as_many_calls_as_needed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("parts");
        std::fs::write(&path, vec![0xEEu8; 8192]).unwrap();
        let file = open_for_writes(&path).unwrap();
        let mut buffers: Vec<AlignedBuffer> = Vec::new();
        for i in 0..2500usize {
            let mut buffer = AlignedBuffer::new();
            buffer.bytes_mut(4096).fill((i % 251) as u8);
            buffers.push(buffer);
        }
        let parts: Vec<&[u8]> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if i % 7 == 3 {
                    &b.bytes(4096)[..0]
                } else {
                    b.bytes(4096)
                }
            })
            .collect();
        write_all_at(&file, &parts, 4096).unwrap();
        drop(file);
        let written = std::fs::read(&path).unwrap();
        let expected: Vec<u8> = [&[0xEEu8; 4096][..]]
            .into_iter()
            .chain(parts.iter().copied())
            .flatten()
            .copied()
            .collect();
        assert_eq!(written.len(), expected.len());
        assert!(written == expected, "the parts did not land in order");
    }
}
