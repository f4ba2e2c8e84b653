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

/// A buffer that grows beyond this is moved into memory mapped in 2 MiB transparent huge
/// pages ([`HugeRegion`]): a direct write pins each 4 KiB page of its buffer and builds its
/// request from them, one step per page; from a huge page, one per 2 MiB. Measured with `fio`
/// (0.5 MB `O_DIRECT` writes): 42 µs of system time a write from 4 KiB pages, 27 from huge
/// ones, and 20–30 % more bytes a second. Smaller buffers stay in 4 KiB pages, so that small
/// records do not each hold 2 MiB.
const HUGE_FROM_BYTES: usize = 256 << 10;

/// The size of a transparent huge page on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE_BYTES: usize = 2 << 20;

/// A buffer whose address is a multiple of [`RECORD_ALIGN`]: a record laid out as it goes
/// into its pack, reused from record to record.
pub(super) struct AlignedBuffer {
    storage: Storage,
}

enum Storage {
    /// Up to [`HUGE_FROM_BYTES`].
    Pages(Vec<Page>),
    /// Past it.
    Huge(HugeRegion),
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuffer")
            .field("bytes", &self.capacity())
            .finish()
    }
}

impl AlignedBuffer {
    pub(super) fn new() -> Self {
        Self {
            storage: Storage::Pages(Vec::new()),
        }
    }

    /// Bytes the buffer holds now.
    fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Pages(pages) => pages.len() * RECORD_ALIGN as usize,
            Storage::Huge(region) => region.len,
        }
    }

    /// All the bytes the buffer holds.
    fn all(&self) -> &[u8] {
        match &self.storage {
            // SAFETY: `Page` is plain bytes with no padding (size = alignment = 4096), so
            // `pages.len() * 4096` initialised bytes start at the slice's pointer.
            Storage::Pages(pages) => unsafe {
                std::slice::from_raw_parts(
                    pages.as_ptr().cast::<u8>(),
                    pages.len() * RECORD_ALIGN as usize,
                )
            },
            Storage::Huge(region) => region.bytes(),
        }
    }

    /// The first `len` bytes (a multiple of [`RECORD_ALIGN`]), to be overwritten whole: what
    /// an earlier group left there is not cleared. Growing keeps what the buffer held.
    pub(super) fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        let needed = len.next_multiple_of(RECORD_ALIGN as usize);
        if self.capacity() < needed {
            if needed <= HUGE_FROM_BYTES {
                if let Storage::Pages(pages) = &mut self.storage {
                    pages.resize(
                        needed / RECORD_ALIGN as usize,
                        Page([0; RECORD_ALIGN as usize]),
                    );
                }
            } else {
                match HugeRegion::new(needed) {
                    Ok(mut region) => {
                        let held = self.all();
                        region.bytes_mut()[..held.len()].copy_from_slice(held);
                        self.storage = Storage::Huge(region);
                    }
                    // No mapping to be had: 4 KiB pages, as before (and as the allocator
                    // would fail on the same memory).
                    Err(_) => self.grow_in_pages(needed),
                }
            }
        }
        let all = match &mut self.storage {
            // SAFETY: as in `all`, borrowed mutably for as long as the returned slice.
            Storage::Pages(pages) => unsafe {
                std::slice::from_raw_parts_mut(
                    pages.as_mut_ptr().cast::<u8>(),
                    pages.len() * RECORD_ALIGN as usize,
                )
            },
            Storage::Huge(region) => region.bytes_mut(),
        };
        &mut all[..len]
    }

    /// Grows the buffer to `needed` bytes (a multiple of [`RECORD_ALIGN`]) in 4 KiB pages,
    /// what it held moved there from a huge-page region if it was in one.
    fn grow_in_pages(&mut self, needed: usize) {
        let mut pages = match std::mem::replace(&mut self.storage, Storage::Pages(Vec::new())) {
            Storage::Pages(pages) => pages,
            Storage::Huge(region) => region
                .bytes()
                .chunks_exact(RECORD_ALIGN as usize)
                .map(|chunk| {
                    let mut page = Page([0; RECORD_ALIGN as usize]);
                    page.0.copy_from_slice(chunk);
                    page
                })
                .collect(),
        };
        let wanted = needed / RECORD_ALIGN as usize;
        if pages.len() < wanted {
            pages.resize(wanted, Page([0; RECORD_ALIGN as usize]));
        }
        self.storage = Storage::Pages(pages);
    }

    /// The bytes of [`AlignedBuffer::bytes_mut`]'s last `len`, to be written.
    pub(super) fn bytes(&self, len: usize) -> &[u8] {
        &self.all()[..len]
    }

    /// Gives memory back after a large record (its first bytes stay).
    pub(super) fn trim(&mut self) {
        match &mut self.storage {
            Storage::Pages(pages) => {
                if pages.len() * RECORD_ALIGN as usize > KEPT_BUFFER_BYTES {
                    pages.truncate(KEPT_BUFFER_BYTES / RECORD_ALIGN as usize);
                    pages.shrink_to_fit();
                }
            }
            Storage::Huge(region) => {
                region.shrink_to(KEPT_BUFFER_BYTES.next_multiple_of(HUGE_PAGE_BYTES));
            }
        }
    }
}

/// Anonymous memory mapped for a buffer, in whole huge pages, advised to the kernel as
/// wanting transparent huge pages (`MADV_HUGEPAGE`: the system's setting is often
/// `madvise`). Zeroed when mapped, unmapped when dropped.
struct HugeRegion {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the region is owned by this value alone (nothing else holds its pointer), like a
// `Vec<u8>`'s memory: it may move between threads and be read from several.
unsafe impl Send for HugeRegion {}
// SAFETY: as above; shared references only read.
unsafe impl Sync for HugeRegion {}

impl HugeRegion {
    /// A region of at least `bytes`, in whole huge pages, aligned to one (Linux aligns
    /// anonymous mappings of 2 MiB and more to it; at least [`RECORD_ALIGN`] either way).
    fn new(bytes: usize) -> io::Result<Self> {
        let len = bytes.next_multiple_of(HUGE_PAGE_BYTES);
        // SAFETY: a new private anonymous mapping, no address asked for; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // Advice only: without huge pages the region works all the same.
        // SAFETY: the range is the mapping just made.
        let _ = unsafe { libc::madvise(ptr, len, libc::MADV_HUGEPAGE) };
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        Ok(Self { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` mapped bytes, readable and zero-initialised by the kernel, owned by
        // `self` and borrowed immutably.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Unmaps what lies past `len` (a multiple of the huge page), if anything does.
    fn shrink_to(&mut self, len: usize) {
        if self.len > len {
            // SAFETY: the tail of this mapping, page-aligned (`len` is a multiple of 2 MiB);
            // nothing borrows it (`&mut self`).
            let result = unsafe {
                libc::munmap(
                    self.ptr.as_ptr().add(len).cast::<libc::c_void>(),
                    self.len - len,
                )
            };
            if result == 0 {
                self.len = len;
            }
        }
    }
}

impl Drop for HugeRegion {
    fn drop(&mut self) {
        // SAFETY: the whole mapping, no longer borrowed.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast::<libc::c_void>(), self.len);
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
        assert!(buffer.capacity() <= KEPT_BUFFER_BYTES.next_multiple_of(HUGE_PAGE_BYTES));
        assert_eq!(buffer.bytes(4096), &[7u8; 4096][..]);
    }

    /// Writes the test pattern (byte i is i mod 251) over `bytes`.
    fn write_pattern(bytes: &mut [u8]) {
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = (i % 251) as u8;
        }
    }

    /// Whether `bytes` hold the test pattern up to `held` and zeros after.
    fn holds_pattern_then_zeros(bytes: &[u8], held: usize) -> bool {
        bytes[..held]
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8)
            && bytes[held..].iter().all(|b| *b == 0)
    }

    /// A buffer that grows into huge pages keeps what it held, and what it did not hold is
    /// zeros; it goes on taking lengths after that, and trimming keeps its start.
    #[test]
    fn a_buffer_grown_into_huge_pages_keeps_its_bytes() {
        let mut buffer = AlignedBuffer::new();
        let small = HUGE_FROM_BYTES / 2;
        write_pattern(buffer.bytes_mut(small));
        let large = 3 * HUGE_FROM_BYTES;
        let bytes = buffer.bytes_mut(large);
        assert_eq!(bytes.len(), large);
        assert_eq!(bytes.as_ptr() as usize % RECORD_ALIGN as usize, 0);
        assert!(holds_pattern_then_zeros(bytes, small));
        bytes.fill(9);
        assert!(matches!(buffer.storage, Storage::Huge(_)));
        let past = 3 * HUGE_PAGE_BYTES;
        buffer.bytes_mut(past)[past - 1] = 1;
        assert_eq!(buffer.bytes(large), &vec![9u8; large][..]);
        buffer.trim();
        assert!(buffer.capacity() <= KEPT_BUFFER_BYTES.next_multiple_of(HUGE_PAGE_BYTES));
        assert_eq!(buffer.bytes(large), &vec![9u8; large][..]);
    }

    /// Where no huge-page region can be mapped, a buffer grows in 4 KiB pages and keeps what
    /// it held — also what a huge-page region held.
    #[test]
    fn a_buffer_without_huge_pages_grows_in_pages_and_keeps_its_bytes() {
        let mut buffer = AlignedBuffer::new();
        let large = 3 * HUGE_FROM_BYTES;
        write_pattern(buffer.bytes_mut(large));
        assert!(matches!(buffer.storage, Storage::Huge(_)));
        let larger = HUGE_PAGE_BYTES + RECORD_ALIGN as usize;
        buffer.grow_in_pages(larger);
        assert!(matches!(buffer.storage, Storage::Pages(_)));
        assert_eq!(buffer.capacity(), larger);
        let bytes = buffer.bytes(larger);
        assert_eq!(bytes.as_ptr() as usize % RECORD_ALIGN as usize, 0);
        assert!(holds_pattern_then_zeros(bytes, large));
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
