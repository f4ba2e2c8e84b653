//! A shim over SQLite's default VFS for the group recorder's connection: a transaction's
//! WAL frames reach the file in one `pwrite` instead of two each.
//!
//! SQLite appends a frame to the WAL as two writes, its 24-byte header and its page: a
//! group of one instance commits about eight pages, sixteen `pwrite`s, each taking the page
//! cache's per-call path (7 % of the receiver's CPU with one sender, session 23). Here the
//! WAL file's writes that continue one another are gathered in memory and written as one
//! before anything could need them in the file:
//!
//! - at the end of a commit frame (the frame header's database size is not zero: PS3 of
//!   SQLite's WAL format, "for commit records, the size of the database file in pages") —
//!   inside the very `xWrite` that SQLite makes for the commit frame's page, so that a
//!   failure is that write's failure, and before SQLite publishes the commit in the
//!   WAL-index (which it does only after the frames are written);
//! - before any other call on the file that could read or depend on its content or size
//!   (`xRead`, `xSync`, `xFileSize`, `xTruncate`, `xFileControl`, `xFetch`, `xClose`), before a
//!   write that does not continue the gathered bytes (SQLite rewrites a frame of the same
//!   transaction in place), and before the gathered bytes would pass [`MAX_GATHERED`].
//!
//! So SQLite sees the file as if every write had gone through at once, except that a write
//! may report the failure of earlier ones — which SQLite treats as the transaction's failure,
//! as it would any failed frame write. Durability is SQLite's unchanged: every `xSync` flushes
//! first. Only files opened as WAL files are shimmed; the database file and every other file
//! are the default VFS's own.
//!
//! Why written here: no crate offers a write-gathering shim; the SQLite-in-Rust VFS crates
//! implement whole file systems, where this only forwards.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The shim's name, to open a connection with.
pub(crate) const VFS_NAME: &CStr = c"radport-wal-batch";

/// The most bytes gathered into one write: the default (unix) VFS writes at most
/// 128 KiB − 1 in one call (`seekAndWriteFd` masks the length with `0x1ffff`; past that a
/// write comes out short and it reports `SQLITE_FULL`). A transaction larger than this is
/// written in pieces of up to this size.
const MAX_GATHERED: usize = 0x1ffff;

/// Bytes of a WAL frame's header.
const FRAME_HEADER: usize = 24;

thread_local! {
    /// Writes the shim made to WAL files on this thread (each carrying one or more of
    /// SQLite's), and SQLite's writes it was given: what the tests count.
    static WRITES: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// (writes made to WAL files, writes SQLite asked for) through the shim on this thread.
#[cfg(test)]
fn write_counts() -> (u64, u64) {
    WRITES.get()
}

fn count_write(made: u64, given: u64) {
    WRITES.with(|w| {
        let (m, g) = w.get();
        w.set((m + made, g + given));
    });
}

/// Registers the shim once (not as the default VFS). Its name, or SQLite's error code.
pub(crate) fn register() -> Result<&'static CStr, c_int> {
    static REGISTERED: OnceLock<Result<(), c_int>> = OnceLock::new();
    (*REGISTERED.get_or_init(|| {
        // SAFETY: SQLite's VFS registry is thread-safe; the default VFS lives as long as
        // the process, and so does the leaked shim that points to it.
        unsafe {
            let rc = ffi::sqlite3_initialize();
            if rc != ffi::SQLITE_OK {
                return Err(rc);
            }
            let real = ffi::sqlite3_vfs_find(std::ptr::null());
            if real.is_null() {
                return Err(ffi::SQLITE_ERROR);
            }
            let header = shim_header_size();
            let size = c_int::try_from(header)
                .ok()
                .and_then(|h| h.checked_add((*real).szOsFile))
                .ok_or(ffi::SQLITE_ERROR)?;
            let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
                iVersion: 2,
                szOsFile: size,
                mxPathname: (*real).mxPathname,
                pNext: std::ptr::null_mut(),
                zName: VFS_NAME.as_ptr(),
                pAppData: real.cast(),
                xOpen: Some(open),
                xDelete: Some(delete),
                xAccess: Some(access),
                xFullPathname: Some(full_pathname),
                xDlOpen: Some(dl_open),
                xDlError: Some(dl_error),
                xDlSym: Some(dl_sym),
                xDlClose: Some(dl_close),
                xRandomness: Some(randomness),
                xSleep: Some(sleep),
                xCurrentTime: Some(current_time),
                xGetLastError: Some(get_last_error),
                xCurrentTimeInt64: Some(current_time_int64),
                xSetSystemCall: None,
                xGetSystemCall: None,
                xNextSystemCall: None,
            }));
            match ffi::sqlite3_vfs_register(vfs, 0) {
                ffi::SQLITE_OK => Ok(()),
                rc => Err(rc),
            }
        }
    }))
    .map(|()| VFS_NAME)
}

/// A WAL file as the shim opened it: the default VFS's file after it, bytes gathered.
#[repr(C)]
struct WalFile {
    /// What SQLite sees: its methods are [`WAL_METHODS`].
    base: ffi::sqlite3_file,
    /// The default VFS's file, in the same allocation after this header.
    real: *mut ffi::sqlite3_file,
    /// Bytes written by SQLite and not yet to the file, which start at `gathered_at`.
    gathered: Vec<u8>,
    gathered_at: i64,
    /// The last write was the header of a commit frame: its page ends the transaction.
    commit_page_next: bool,
}

/// Bytes before the default VFS's file in a shimmed file's allocation (8-aligned).
fn shim_header_size() -> usize {
    std::mem::size_of::<WalFile>().next_multiple_of(8)
}

/// The default VFS, kept in the shim's `pAppData`.
unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    (*vfs).pAppData.cast()
}

unsafe extern "C" fn open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real = real_vfs(vfs);
    let Some(real_open) = (*real).xOpen else {
        return ffi::SQLITE_ERROR;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Not a WAL file: the default VFS's own file, at the start of the allocation.
        return real_open(real, name, file, flags, out_flags);
    }
    let real_file: *mut ffi::sqlite3_file = file.cast::<u8>().add(shim_header_size()).cast();
    (*real_file).pMethods = std::ptr::null();
    let rc = real_open(real, name, real_file, flags, out_flags);
    if rc != ffi::SQLITE_OK {
        if let Some(close) = (*real_file).pMethods.as_ref().and_then(|m| m.xClose) {
            close(real_file);
        }
        (*file).pMethods = std::ptr::null();
        return rc;
    }
    std::ptr::write(
        file.cast::<WalFile>(),
        WalFile {
            base: ffi::sqlite3_file {
                pMethods: &WAL_METHODS,
            },
            real: real_file,
            gathered: Vec::new(),
            gathered_at: 0,
            commit_page_next: false,
        },
    );
    ffi::SQLITE_OK
}

static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: Some(wal_shm_map),
    xShmLock: Some(wal_shm_lock),
    xShmBarrier: Some(wal_shm_barrier),
    xShmUnmap: Some(wal_shm_unmap),
    xFetch: Some(wal_fetch),
    xUnfetch: Some(wal_unfetch),
};

/// The shim's file behind SQLite's pointer.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> &'a mut WalFile {
    &mut *file.cast::<WalFile>()
}

/// The default VFS's methods of a shimmed file.
unsafe fn methods<'a>(file: &WalFile) -> &'a ffi::sqlite3_io_methods {
    &*(*file.real).pMethods
}

/// Writes what was gathered, if anything.
unsafe fn flush(file: &mut WalFile) -> c_int {
    if file.gathered.is_empty() {
        return ffi::SQLITE_OK;
    }
    let Some(write) = methods(file).xWrite else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // At most MAX_GATHERED plus one write of SQLite's (a page): within c_int.
    let Ok(len) = c_int::try_from(file.gathered.len()) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    count_write(1, 0);
    let rc = write(
        file.real,
        file.gathered.as_ptr().cast(),
        len,
        file.gathered_at,
    );
    file.gathered.clear();
    rc
}

/// Flushes, then runs `then` if that succeeded.
unsafe fn flushed(file: *mut ffi::sqlite3_file, then: impl FnOnce(&mut WalFile) -> c_int) -> c_int {
    let file = wal(file);
    match flush(file) {
        ffi::SQLITE_OK => then(file),
        rc => rc,
    }
}

unsafe extern "C" fn wal_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let file = wal(file);
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    count_write(0, 1);
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
    // Taken before anything is written: a flush below does not change what this write is.
    let ends_commit = file.commit_page_next;
    let gathered_end = i64::try_from(file.gathered.len())
        .ok()
        .and_then(|l| file.gathered_at.checked_add(l));
    let too_many = file.gathered.len().saturating_add(len) > MAX_GATHERED;
    if file.gathered.is_empty() || gathered_end != Some(offset) || too_many {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        file.gathered_at = offset;
        if len > MAX_GATHERED {
            // Larger than one write of the default VFS (SQLite's pages are at most 64 KiB):
            // through as it came.
            count_write(1, 0);
            file.commit_page_next = false;
            return methods(file).xWrite.map_or(ffi::SQLITE_IOERR_WRITE, |w| {
                w(file.real, data, amount, offset)
            });
        }
    }
    file.gathered.extend_from_slice(bytes);
    file.commit_page_next = len == FRAME_HEADER && bytes[4..8] != [0; 4];
    if ends_commit {
        return flush(file);
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let shim = wal(file);
    let flushed = flush(shim);
    let closed = match methods(shim).xClose {
        Some(close) => close(shim.real),
        None => ffi::SQLITE_OK,
    };
    std::ptr::drop_in_place(file.cast::<WalFile>());
    (*file).pMethods = std::ptr::null();
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

unsafe extern "C" fn wal_read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    flushed(file, |f| match methods(f).xRead {
        Some(read) => read(f.real, data, amount, offset),
        None => ffi::SQLITE_IOERR_READ,
    })
}

unsafe extern "C" fn wal_truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flushed(file, |f| match methods(f).xTruncate {
        Some(truncate) => truncate(f.real, size),
        None => ffi::SQLITE_IOERR_TRUNCATE,
    })
}

unsafe extern "C" fn wal_sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flushed(file, |f| match methods(f).xSync {
        Some(sync) => sync(f.real, flags),
        None => ffi::SQLITE_IOERR_FSYNC,
    })
}

unsafe extern "C" fn wal_file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flushed(file, |f| match methods(f).xFileSize {
        Some(file_size) => file_size(f.real, size),
        None => ffi::SQLITE_IOERR_FSTAT,
    })
}

unsafe extern "C" fn wal_file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    flushed(file, |f| match methods(f).xFileControl {
        Some(control) => control(f.real, op, arg),
        None => ffi::SQLITE_NOTFOUND,
    })
}

unsafe extern "C" fn wal_fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    pages: *mut *mut c_void,
) -> c_int {
    flushed(file, |f| match methods(f).xFetch {
        Some(fetch) => fetch(f.real, offset, amount, pages),
        None => {
            *pages = std::ptr::null_mut();
            ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn wal_unfetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    page: *mut c_void,
) -> c_int {
    let f = wal(file);
    match methods(f).xUnfetch {
        Some(unfetch) => unfetch(f.real, offset, page),
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn wal_lock(file: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    let f = wal(file);
    methods(f).xLock.map_or(ffi::SQLITE_OK, |l| l(f.real, lock))
}

unsafe extern "C" fn wal_unlock(file: *mut ffi::sqlite3_file, lock: c_int) -> c_int {
    let f = wal(file);
    methods(f)
        .xUnlock
        .map_or(ffi::SQLITE_OK, |u| u(f.real, lock))
}

unsafe extern "C" fn wal_check_reserved_lock(
    file: *mut ffi::sqlite3_file,
    out: *mut c_int,
) -> c_int {
    let f = wal(file);
    match methods(f).xCheckReservedLock {
        Some(check) => check(f.real, out),
        None => {
            *out = 0;
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let f = wal(file);
    methods(f).xSectorSize.map_or(4096, |s| s(f.real))
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let f = wal(file);
    methods(f).xDeviceCharacteristics.map_or(0, |d| d(f.real))
}

unsafe extern "C" fn wal_shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let f = wal(file);
    match methods(f).xShmMap {
        Some(map) => map(f.real, region, size, extend, out),
        None => ffi::SQLITE_IOERR_SHMMAP,
    }
}

unsafe extern "C" fn wal_shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let f = wal(file);
    match methods(f).xShmLock {
        Some(lock) => lock(f.real, offset, n, flags),
        None => ffi::SQLITE_IOERR_SHMLOCK,
    }
}

unsafe extern "C" fn wal_shm_barrier(file: *mut ffi::sqlite3_file) {
    let f = wal(file);
    if let Some(barrier) = methods(f).xShmBarrier {
        barrier(f.real);
    }
}

unsafe extern "C" fn wal_shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let f = wal(file);
    methods(f)
        .xShmUnmap
        .map_or(ffi::SQLITE_OK, |u| u(f.real, delete))
}

// The VFS's own methods: the default VFS's, given the default VFS.

unsafe extern "C" fn delete(vfs: *mut ffi::sqlite3_vfs, name: *const c_char, sync: c_int) -> c_int {
    let real = real_vfs(vfs);
    (*real)
        .xDelete
        .map_or(ffi::SQLITE_IOERR_DELETE, |d| d(real, name, sync))
}

unsafe extern "C" fn access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    let real = real_vfs(vfs);
    (*real)
        .xAccess
        .map_or(ffi::SQLITE_IOERR_ACCESS, |a| a(real, name, flags, out))
}

unsafe extern "C" fn full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let real = real_vfs(vfs);
    (*real)
        .xFullPathname
        .map_or(ffi::SQLITE_ERROR, |f| f(real, name, n, out))
}

unsafe extern "C" fn dl_open(vfs: *mut ffi::sqlite3_vfs, name: *const c_char) -> *mut c_void {
    let real = real_vfs(vfs);
    (*real)
        .xDlOpen
        .map_or(std::ptr::null_mut(), |o| o(real, name))
}

unsafe extern "C" fn dl_error(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    let real = real_vfs(vfs);
    if let Some(e) = (*real).xDlError {
        e(real, n, out);
    }
}

type DlSymbol = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

unsafe extern "C" fn dl_sym(
    vfs: *mut ffi::sqlite3_vfs,
    handle: *mut c_void,
    symbol: *const c_char,
) -> DlSymbol {
    let real = real_vfs(vfs);
    (*real).xDlSym.and_then(|s| s(real, handle, symbol))
}

unsafe extern "C" fn dl_close(vfs: *mut ffi::sqlite3_vfs, handle: *mut c_void) {
    let real = real_vfs(vfs);
    if let Some(c) = (*real).xDlClose {
        c(real, handle);
    }
}

unsafe extern "C" fn randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    let real = real_vfs(vfs);
    (*real).xRandomness.map_or(0, |r| r(real, n, out))
}

unsafe extern "C" fn sleep(vfs: *mut ffi::sqlite3_vfs, microseconds: c_int) -> c_int {
    let real = real_vfs(vfs);
    (*real).xSleep.map_or(0, |s| s(real, microseconds))
}

unsafe extern "C" fn current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    let real = real_vfs(vfs);
    (*real)
        .xCurrentTime
        .map_or(ffi::SQLITE_ERROR, |c| c(real, out))
}

unsafe extern "C" fn get_last_error(
    vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let real = real_vfs(vfs);
    (*real).xGetLastError.map_or(0, |g| g(real, n, out))
}

unsafe extern "C" fn current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    let real = real_vfs(vfs);
    (*real)
        .xCurrentTimeInt64
        .map_or(ffi::SQLITE_ERROR, |c| c(real, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};

    fn open(path: &std::path::Path, shimmed: bool) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let c = if shimmed {
            Connection::open_with_flags_and_vfs(path, flags, register().unwrap()).unwrap()
        } else {
            Connection::open_with_flags(path, flags).unwrap()
        };
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        if shimmed {
            // As the recorder commits deferred records: no `xSync` at a commit, so nothing
            // but the commit frame makes the shim write.
            c.pragma_update(None, "synchronous", "OFF").unwrap();
        }
        c
    }

    fn schema(c: &Connection) {
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA wal_autocheckpoint = 0;
             CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, key TEXT UNIQUE, body BLOB);
             CREATE INDEX IF NOT EXISTS rows_body ON rows (body);
             CREATE TABLE IF NOT EXISTS total (n INTEGER NOT NULL);
             INSERT INTO total SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM total);",
        )
        .unwrap();
    }

    /// `rows` rows of `size` bytes each, and the total counted, in one transaction, which
    /// reads them back before it commits.
    fn add(c: &mut Connection, first: i64, rows: i64, size: usize) {
        let t = c.transaction().unwrap();
        let before: i64 = t
            .query_row("SELECT coalesce(max(id), 0) FROM rows", [], |r| r.get(0))
            .unwrap();
        for i in first..first + rows {
            let body = vec![(i % 251) as u8; size];
            t.execute(
                "INSERT INTO rows (key, body) VALUES (?1, ?2)",
                (format!("key-{i}"), body),
            )
            .unwrap();
        }
        t.execute("UPDATE total SET n = n + ?1", [rows]).unwrap();
        {
            let mut read = t
                .prepare("SELECT key, body FROM rows WHERE id > ?1 ORDER BY id")
                .unwrap();
            let back: Vec<(String, Vec<u8>)> = read
                .query_map([before], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(back.len() as i64, rows);
            for (i, (key, body)) in (first..).zip(back) {
                assert_eq!(key, format!("key-{i}"));
                assert!(
                    body == vec![(i % 251) as u8; size],
                    "row {i} read back otherwise"
                );
            }
        }
        t.commit().unwrap();
    }

    /// A commit that changes several pages reaches the WAL in one write; SQLite asked for two
    /// per frame.
    #[test]
    fn a_commit_reaches_the_wal_in_one_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("one.db");
        let mut c = open(&path, true);
        schema(&c);
        add(&mut c, 0, 1, 100);
        let (made, given) = write_counts();
        add(&mut c, 1, 6, 1500);
        let (made, given) = (write_counts().0 - made, write_counts().1 - given);
        assert_eq!(made, 1, "{given} writes asked for");
        assert!(given >= 8, "{given} writes asked for");
        // Larger than one write may carry: in pieces, each within the limit.
        let before = write_counts();
        add(&mut c, 7, 200, 1500);
        let made = write_counts().0 - before.0;
        assert!(made >= 3, "{made} writes for more than 300 KiB of frames");
        let n: i64 = c
            .query_row("SELECT n FROM total", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 207);
    }

    /// While the shimmed connection commits (small transactions, large ones written in
    /// pieces and spilling pages it reads back, rolled back ones), a connection of the
    /// default VFS on another thread sees each commit whole or not at all; after the writer
    /// closes without a checkpoint, the WAL it left reads back whole and the database is
    /// intact — with the smallest and the largest page SQLite has too (a 64 KiB page's frame
    /// and the next fill the largest write the shim makes).
    #[test]
    fn readers_see_whole_commits_and_the_wal_reads_back() {
        for page_size in [4096, 512, 65536] {
            readers_see_whole_commits(page_size);
        }
    }

    fn readers_see_whole_commits(page_size: u32) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("readers.db");
        let first = open(&path, false);
        first.pragma_update(None, "page_size", page_size).unwrap();
        schema(&first);
        let size: u32 = first
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .unwrap();
        assert_eq!(size, page_size);
        drop(first);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let c = open(&path, false);
                let mut last = 0i64;
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                    let (count, n): (i64, i64) = c
                        .query_row(
                            "SELECT (SELECT count(*) FROM rows), (SELECT n FROM total)",
                            [],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .unwrap();
                    assert_eq!(count, n, "a commit seen in part");
                    assert!(count >= last, "a commit seen and then not");
                    last = count;
                    reads += 1;
                }
                reads
            })
        };
        let mut c = open(&path, true);
        // A page cache too small for the large transactions: SQLite spills pages into the
        // WAL before the commit and reads them back from it.
        c.pragma_update(None, "cache_size", 8).unwrap();
        let mut next = 0;
        for round in 0..60i64 {
            let (rows, size) = if round % 20 == 19 {
                (120, 2000)
            } else {
                (3, 900)
            };
            add(&mut c, next, rows, size);
            next += rows;
            if round % 7 == 3 {
                let t = c.transaction().unwrap();
                t.execute("INSERT INTO rows (key, body) VALUES ('gone', x'00')", [])
                    .unwrap();
                t.execute("UPDATE total SET n = n + 1", []).unwrap();
                t.rollback().unwrap();
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        // Open across the writer's close, so that the WAL is not merged into the database
        // then: what this connection reads comes from the frames the shim wrote.
        let keeper = open(&path, false);
        drop(c);
        let c = keeper;
        let (count, n): (i64, i64) = c
            .query_row(
                "SELECT (SELECT count(*) FROM rows), (SELECT n FROM total)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((count, n), (next, next));
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
