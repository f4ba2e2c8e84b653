//! The JSON files of a NIfTI zip as the import reads them (crates/workflows/src/nifti_zip.rs):
//! `meta_data.json`, `seg_info.json`, `dataset.json`.
//!
//! Input: one byte naming the file (`m`, `s`, `d`; anything else: each of them), then its
//! content.
//!
//! Contract: no panic (the import runs the parsers in its planning thread without
//! `catch_unwind`), no allocation beyond a small multiple of the bytes, and a verdict that
//! does not depend on anything but the bytes (parsing twice gives the same answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_fuzz::{assert_allocates_at_most, honest};
use radport_workflows::fuzzing::parse_json_file;

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

const FILES: [&str; 3] = ["meta_data.json", "seg_info.json", "dataset.json"];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, json)) = data.split_first() else {
        return;
    };
    let files: &[&str] = match kind {
        b'm' => &FILES[..1],
        b's' => &FILES[1..2],
        b'd' => &FILES[2..],
        _ => &FILES,
    };
    for &file in files {
        let first =
            assert_allocates_at_most(file, honest(json.len()), || parse_json_file(file, json));
        assert_eq!(first, parse_json_file(file, json), "{file}: two verdicts");
    }
});
