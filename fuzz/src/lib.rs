//! What the fuzz targets share: an allocation probe (the contract of most guards is about how
//! much the parser behind them may allocate) and a panic hook for code that catches panics.
//!
//! Every target installs the probe as its global allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Allocations above this are refused while armed: the process then aborts with "memory
/// allocation of N bytes failed" (a finding), rather than zero-filling gigabytes first.
/// `RADPORT_FUZZ_REFUSE_ABOVE=<bytes>` lowers it, to find where a smaller over-allocation is
/// made (run the input under gdb: the abort's backtrace shows the allocation).
pub const REFUSE_ABOVE: usize = 256 << 20;

static REFUSE: AtomicUsize = AtomicUsize::new(0);

fn refuse_above() -> usize {
    match REFUSE.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("RADPORT_FUZZ_REFUSE_ABOVE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(REFUSE_ABOVE);
            REFUSE.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

/// Armed for the whole process (not per thread): the import workflows read zips in a thread of
/// their own.
static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// Records the largest allocation asked for while armed.
pub struct Probe;

fn note(size: usize) -> bool {
    if !ARMED.load(Ordering::Relaxed) {
        return false;
    }
    LARGEST.fetch_max(size, Ordering::Relaxed);
    size > REFUSE.load(Ordering::Relaxed)
}

unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if note(layout.size()) {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if note(new_size) {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` with the probe armed; returns its result and the largest single allocation it
/// asked for.
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    refuse_above();
    let was = ARMED.swap(true, Ordering::Relaxed);
    let before = LARGEST.swap(0, Ordering::Relaxed);
    let out = f();
    ARMED.store(was, Ordering::Relaxed);
    let largest = LARGEST.fetch_max(before, Ordering::Relaxed);
    (out, largest)
}

/// A generous bound on what parsing `n` bytes may honestly allocate at once: decoded values
/// may be a small factor larger than their bytes, and buffers have a floor.
pub fn honest(n: usize) -> usize {
    16 * n.max(64 * 1024) + (1 << 20)
}

/// Asserts that `f` allocates at most `bound` bytes at once (see [`largest_allocation`]).
pub fn assert_allocates_at_most<T>(what: &str, bound: usize, f: impl FnOnce() -> T) -> T {
    let (out, largest) = largest_allocation(f);
    assert!(
        largest <= bound,
        "{what}: asked for {largest} bytes at once, the bound is {bound}"
    );
    out
}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// For targets whose code catches panics itself (the DICOM parser is run under `catch_unwind`
/// wherever radport uses it): libfuzzer-sys's hook aborts on every panic, caught or not; this
/// one lets a caught panic unwind, printing each distinct panic location once. A panic that
/// escapes the target still aborts (libfuzzer-sys catches it and aborts), so it is a finding.
pub fn allow_caught_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.contains(&at) {
            eprintln!("panic (caught or not: see below) at {at}: {info}");
            seen.push(at);
        }
    }));
}
