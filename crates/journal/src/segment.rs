//! Segment files: made once, filled with zeros and synced, so that later writes into them
//! change no file metadata and an `fdatasync` writes only the data (on this project's
//! machines a preallocated but unwritten file, `fallocate`, synced at less than half the
//! rate: the extents are converted at every sync).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::frame::{SEGMENT_HEADER_BYTES, SEGMENT_HEADER_LEN};

/// The file of segment `index`.
pub(crate) fn segment_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("segment-{index:03}.journal"))
}

/// The index of a segment file's name, if it is one.
pub(crate) fn segment_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix("segment-")?.strip_suffix(".journal")?;
    if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Makes segment `index` of `bytes` zeros under a temporary name, syncs it and renames it
/// into place. The caller syncs the directory once all are made.
pub(crate) fn create_zeroed(dir: &Path, index: usize, bytes: u64) -> io::Result<File> {
    let path = segment_path(dir, index);
    let staged = dir.join(format!("segment-{index:03}.journal.new"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&staged)?;
    let zeros = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < bytes {
        let n = (bytes - offset).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset)?;
        offset += n as u64;
    }
    file.sync_all()?;
    std::fs::rename(&staged, &path)?;
    Ok(file)
}

/// Opens an existing segment for reading and writing.
pub(crate) fn open_existing(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}

/// Syncs a directory, so that the names made in it survive a power cut.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads a segment's header bytes.
pub(crate) fn read_header(file: &File) -> io::Result<[u8; SEGMENT_HEADER_LEN]> {
    let mut out = [0u8; SEGMENT_HEADER_LEN];
    file.read_exact_at(&mut out, 0)?;
    Ok(out)
}

/// The generation and size a segment file of `len` bytes is in use by, if its header checks
/// (else it is free).
pub(crate) fn in_use(file: &File, len: u64) -> io::Result<Option<(u64, u64)>> {
    if len < SEGMENT_HEADER_BYTES {
        return Ok(None);
    }
    Ok(crate::frame::parse_segment_header(&read_header(file)?))
}

/// Makes a segment free: its header zeroed and synced (its records are then never replayed).
pub(crate) fn clear_header(file: &File) -> io::Result<()> {
    file.write_all_at(&[0u8; SEGMENT_HEADER_BYTES as usize], 0)?;
    file.sync_data()
}

/// Writes zeros over `start..end` of a segment; returns the bytes written.
pub(crate) fn zero_range(file: &File, start: u64, end: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut offset = start;
    while offset < end {
        let len = usize::try_from(end - offset).map_or(CHUNK, |left| left.min(CHUNK));
        file.write_all_at(&zeros[..len], offset)?;
        offset += len as u64;
    }
    Ok(end.saturating_sub(start))
}

/// Writes `buffers` one after the other from `offset`, with as few `pwritev` calls as the
/// kernel's `IOV_MAX` allows.
pub(crate) fn pwritev_all(file: &File, buffers: &[&[u8]], mut offset: u64) -> io::Result<()> {
    const IOV_MAX: usize = 1024;
    let mut index = 0;
    let mut skip = 0usize; // bytes of buffers[index] already written
    while index < buffers.len() {
        let iovecs: Vec<libc::iovec> = buffers[index..]
            .iter()
            .take(IOV_MAX)
            .enumerate()
            .map(|(i, b)| {
                let b = if i == 0 { &b[skip..] } else { b };
                libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                }
            })
            .collect();
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
        // SAFETY: every iovec points into a slice borrowed for the duration of the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iovecs.as_ptr(),
                iovecs.len() as libc::c_int,
                off,
            )
        };
        if written < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "pwritev wrote nothing",
            ));
        }
        let mut written = written as usize;
        offset += written as u64;
        while written > 0 && index < buffers.len() {
            let left = buffers[index].len() - skip;
            if written >= left {
                written -= left;
                index += 1;
                skip = 0;
            } else {
                skip += written;
                written = 0;
            }
        }
        while index < buffers.len() && buffers[index].len() == skip {
            index += 1;
            skip = 0;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pwritev_all_writes_every_buffer_in_order_even_beyond_iov_max() {
        let dir = tempfile::tempdir().unwrap();
        let file = create_zeroed(dir.path(), 0, 1 << 20).unwrap();
        let parts: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| vec![(i % 251) as u8; (i % 7) as usize])
            .collect();
        let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
        pwritev_all(&file, &refs, 100).unwrap();
        let expected: Vec<u8> = parts.concat();
        let mut read = vec![0u8; expected.len()];
        file.read_exact_at(&mut read, 100).unwrap();
        assert_eq!(read, expected);
        assert_eq!(file.metadata().unwrap().len(), 1 << 20, "no growth");
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_index("segment-007.journal"), Some(7));
        for bad in [
            "segment-7.journal",
            "segment-007.journal.new",
            "x",
            "segment-0a7.journal",
        ] {
            assert_eq!(segment_index(bad), None, "{bad}");
        }
        let dir = Path::new("/d");
        let name = segment_path(dir, 12);
        assert_eq!(
            segment_index(name.file_name().unwrap().to_str().unwrap()),
            Some(12)
        );
    }
}
