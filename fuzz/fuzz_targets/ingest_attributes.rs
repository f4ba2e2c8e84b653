//! Ingest's attribute extraction on arbitrary bytes, the way `Ingestor::finish` and
//! `ingest_part10` run it: the file meta group read first (`read_file_meta`), then
//! `extract_record` — prescan, then dicom-rs up to Pixel Data, then DICOM JSON — on a prefix of
//! the stored file (the head kept while it arrived), on a longer one if the attributes go on,
//! and on the whole file last.
//!
//! The input is the file after its 128-byte preamble (which nothing reads): a Part-10 body.
//!
//! Contract: no panic escapes (the parser's own are caught); nothing allocated beyond the bytes
//! (beyond the inflated data set for the deflated syntaxes); the whole file never asks for
//! more bytes; and a prefix gives the whole file's answer or asks for more bytes: the receiver
//! decides on the first answer that is not `NeedMoreBytes` (one known exception: a deflate
//! stream corrupt after Pixel Data is read from a head cut before the corruption).
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_fuzz::{assert_allocates_at_most, honest};
use radport_ingest::{extract_record, read_file_meta, MetadataError};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

fn maybe_deflated(data: &[u8]) -> bool {
    let window = &data[..data.len().min(4096)];
    [&b"1.2.840.10008.1.2.1.99"[..], b"1.2.840.10008.1.2.8.1"]
        .iter()
        .any(|uid| window.windows(uid.len()).any(|w| w == *uid))
}

fuzz_target!(init: radport_fuzz::allow_caught_panics(), |body: &[u8]| {
    let mut file = vec![0u8; 128];
    file.extend_from_slice(body);
    let size = file.len() as u64;
    let deflated = maybe_deflated(body);
    let bound = if deflated {
        honest(file.len().saturating_mul(1032))
    } else {
        honest(file.len())
    };

    let meta = assert_allocates_at_most("read_file_meta", bound, || read_file_meta(&file));
    if let Ok((_, offset)) = meta {
        assert!(offset <= file.len(), "the data set starts past the file");
    }

    let whole = assert_allocates_at_most("extract_record", bound, || extract_record(&file, size));
    if let Err(MetadataError::NeedMoreBytes) = whole {
        panic!("the whole file asks for more bytes");
    }
    for cut in [file.len() / 3, 2 * file.len() / 3] {
        let head = &file[..cut];
        let early = assert_allocates_at_most("extract_record (head)", bound, || {
            extract_record(head, size)
        });
        match (&early, &whole) {
            (Err(MetadataError::NeedMoreBytes), _) => {}
            (Ok(a), Ok(b)) => assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "a {cut}-byte head gives another record than the whole file"
            ),
            (Err(_), Err(_)) => {}
            // A deflate stream corrupt after Pixel Data: see prescan's test
            // `fuzz_a_deflate_stream_corrupt_after_pixel_data_passes_only_as_a_shorter_head`.
            (Ok(_), Err(MetadataError::Unreadable(e))) if deflated && e.contains("deflate") => {}
            (a, b) => panic!("a {cut}-byte head gives {a:?}, the whole file {b:?}"),
        }
    }
});
