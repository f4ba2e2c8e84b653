//! Packs are written with direct I/O (`O_DIRECT`): a group's records go from the writer's
//! buffer to the disk, without a copy into fresh page-cache pages and a writeback of them
//! inside the `fdatasync`. Measured here (docs/performance.md, session 18): appending 0.5 MB
//! records to a growing file with an `fdatasync` each took 0.19 ms of CPU per record through
//! the page cache and 0.11–0.12 ms direct, and ran 15–20 % faster.
//!
//! Direct I/O wants the buffer's address, the file offset and the length to be multiples of
//! the device's logical block size: every record of an aligned pack starts at a multiple of
//! [`RECORD_ALIGN`] (its header says so), and the records of a group are copied into one
//! buffer aligned to it, with zeros up to the next record. A file system that does not take
//! direct I/O (tmpfs) gets the same layout through the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::frame::RECORD_ALIGN;

/// One page of an aligned buffer.
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; RECORD_ALIGN as usize]);

/// An aligned buffer kept above this is given back after its group.
const KEPT_BUFFER_BYTES: usize = 8 << 20;

/// A buffer whose address is a multiple of [`RECORD_ALIGN`], reused from group to group.
pub(super) struct AlignedBuffer {
    pages: Vec<Page>,
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

    /// Gives memory back after a large group.
    pub(super) fn trim(&mut self) {
        if self.pages.len() * RECORD_ALIGN as usize > KEPT_BUFFER_BYTES {
            self.pages
                .truncate(KEPT_BUFFER_BYTES / RECORD_ALIGN as usize);
            self.pages.shrink_to_fit();
        }
    }
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
    }
}
