//! The NIfTI-1/2 reader (`radport_convert::read_nifti_with`) on arbitrary bytes, plain and
//! gzip-compressed, with the limits the NIfTI import reads volumes with.
//!
//! Contract: no panic (the import runs it without `catch_unwind`); nothing allocated beyond the
//! bytes, or beyond what they decompress to (a header cannot make the reader allocate what the
//! data does not hold); a volume that is returned is consistent: its voxel count is the product
//! of its dimensions, within the limit, and every voxel and slice can be read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_convert::{read_nifti_from, read_nifti_with, ReadOptions};
use radport_fuzz::{assert_allocates_at_most, honest};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

fuzz_target!(|data: &[u8]| {
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    // Deflate compresses at most 1032:1.
    let bound = honest(if gzip {
        data.len().saturating_mul(1032)
    } else {
        data.len()
    });
    for channel in [None, Some(0), Some(1)] {
        // The import's limits are the defaults.
        let opts = ReadOptions {
            channel,
            ..ReadOptions::default()
        };
        let read =
            assert_allocates_at_most("read_nifti_with", bound, || read_nifti_with(data, &opts));
        // The streaming entry point (zip entries) must agree with the in-memory one.
        let streamed = assert_allocates_at_most("read_nifti_from", bound, || {
            read_nifti_from(std::io::Cursor::new(data), &opts)
        });
        match (&read, &streamed) {
            // NaN voxels differ from themselves: compare what they print as.
            (Ok(a), Ok(b)) => assert!(
                a == b || format!("{a:?}") == format!("{b:?}"),
                "the two entry points read different volumes"
            ),
            (Err(_), Err(_)) => {}
            (Ok(a), Err(e)) => panic!("in memory: {:?} volume; streamed: {e}", a.dims),
            (Err(e), Ok(b)) => panic!("in memory: {e}; streamed: {:?} volume", b.dims),
        }
        let Ok(volume) = read else { continue };
        let [nx, ny, nz] = volume.dims;
        assert!(nx >= 1 && ny >= 1 && nz >= 1, "dims {:?}", volume.dims);
        let count = nx
            .checked_mul(ny)
            .and_then(|n| n.checked_mul(nz))
            .expect("the voxel count overflows");
        assert_eq!(volume.voxel_count(), count);
        assert_eq!(volume.data.len(), count, "dims {:?}", volume.dims);
        assert!(count as u64 <= opts.limits.max_voxels);
        assert!(matches!(volume.nifti_version, 1 | 2));
        for (i, j, k) in [(0, 0, 0), (nx - 1, ny - 1, nz - 1)] {
            let _ = volume.value(i, j, k);
            let _ = volume.rgb(i, j, k);
        }
        let mut out = Vec::new();
        volume.slice_values(nz - 1, &mut out);
        assert_eq!(out.len(), nx * ny);
        let _ = volume.world([0.0, 0.0, 0.0]);
    }
});
