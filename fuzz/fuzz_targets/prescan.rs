//! `radport_prescan` on arbitrary bytes (a Part-10 body: "DICM", file meta group, data set),
//! then, whatever it passes, the dicom-rs parser the way radport calls it behind each check.
//!
//! Contract (crates/prescan): the walk never panics and allocates nothing beyond the bytes
//! (beyond the inflated data set for the deflated syntaxes); what it passes, the parser reads
//! without allocating beyond the bytes either (parser panics are caught where radport parses,
//! so they are tolerated here); and the verdicts agree with each other:
//! - `check_head` asks for more bytes only of a strict prefix of the file;
//! - a prefix that is `Ok` stays `Ok` when the head grows to the whole file (but for a deflate
//!   stream corrupt after Pixel Data, which the parser too reads only as a shorter head), and
//!   one that is `Malformed` ("no prefix, however long, is safe") does not become `Ok`;
//! - a whole file that `check_file` passes passes `check_head` too (what the thumbnail renderer
//!   accepts, ingest accepts).
#![no_main]

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::file::ReadPreamble;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use libfuzzer_sys::fuzz_target;
use radport_fuzz::{assert_allocates_at_most, honest};
use radport_prescan::{check_dataset, check_file, check_head, Encoding, HeadCheck, PrescanError};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

fn parse_whole(body: &[u8]) -> bool {
    std::panic::catch_unwind(|| {
        OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .from_reader(body)
            .is_ok()
    })
    .unwrap_or(false)
}

fn parse_head(head: &[u8]) -> bool {
    std::panic::catch_unwind(|| {
        OpenFileOptions::new()
            .read_preamble(ReadPreamble::Never)
            .read_until(tags::PIXEL_DATA)
            .from_reader(head)
            .is_ok()
    })
    .unwrap_or(false)
}

fn parse_dataset(bytes: &[u8], ts_uid: &str) -> bool {
    let Some(ts) = TransferSyntaxRegistry.get(ts_uid) else {
        return false;
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        InMemDicomObject::read_dataset_with_ts(bytes, ts).is_ok()
    }))
    .unwrap_or(false)
}

/// Whether the bytes may name a deflated transfer syntax (its data set may then inflate).
fn maybe_deflated(data: &[u8]) -> bool {
    let window = &data[..data.len().min(4096)];
    [&b"1.2.840.10008.1.2.1.99"[..], b"1.2.840.10008.1.2.8.1"]
        .iter()
        .any(|uid| window.windows(uid.len()).any(|w| w == *uid))
}

fuzz_target!(init: radport_fuzz::allow_caught_panics(), |data: &[u8]| {
    // Deflate compresses at most 1032:1.
    let deflated = maybe_deflated(data);
    let bound = if deflated {
        honest(data.len().saturating_mul(1032))
    } else {
        honest(data.len())
    };
    let len = data.len() as u64;

    let whole = assert_allocates_at_most("check_file", bound, || check_file(data));
    if whole.is_ok() {
        assert_allocates_at_most("the parser after check_file", bound, || parse_whole(data));
    }

    // The head: all of the file, and prefixes of it (a third, two thirds).
    let full = assert_allocates_at_most("check_head", bound, || check_head(data, len));
    assert_ne!(full, HeadCheck::NeedMoreBytes, "more bytes asked of the whole file");
    if full.is_ok() {
        assert_allocates_at_most("the parser after check_head", bound, || parse_head(data));
    }
    if let Ok(scan) = &whole {
        assert_eq!(
            full,
            HeadCheck::Ok(*scan),
            "check_file passes what check_head refuses, or they see the file differently"
        );
    }
    for cut in [data.len() / 3, 2 * data.len() / 3] {
        let head = &data[..cut];
        let prefix =
            assert_allocates_at_most("check_head (prefix)", bound, || check_head(head, len));
        match &prefix {
            HeadCheck::Ok(_) => {
                assert_allocates_at_most("the parser after check_head (prefix)", bound, || {
                    parse_head(head)
                });
                // Except a deflate stream corrupt after Pixel Data: see prescan's test
                // `fuzz_a_deflate_stream_corrupt_after_pixel_data_passes_only_as_a_shorter_head`.
                let corrupt_tail = deflated
                    && matches!(full, HeadCheck::Malformed(PrescanError::Inflate(_)))
                    && whole.is_err();
                if !corrupt_tail {
                    assert!(full.is_ok(), "a prefix passes, the whole file does not");
                }
            }
            HeadCheck::NeedMoreBytes => assert!(cut < data.len()),
            HeadCheck::Malformed(e) => assert!(
                !full.is_ok(),
                "a {cut}-byte prefix is malformed ({e}), the whole file passes"
            ),
        }
    }

    // A bare data set (a DIMSE command set, say) in each encoding.
    for (encoding, ts) in [
        (Encoding::ImplicitVrLittleEndian, "1.2.840.10008.1.2"),
        (Encoding::ExplicitVrLittleEndian, "1.2.840.10008.1.2.1"),
        (Encoding::ExplicitVrBigEndian, "1.2.840.10008.1.2.2"),
    ] {
        let bound = honest(data.len());
        let checked =
            assert_allocates_at_most("check_dataset", bound, || check_dataset(data, encoding));
        if checked.is_ok() {
            assert_allocates_at_most("the parser after check_dataset", bound, || {
                parse_dataset(data, ts)
            });
        }
    }
});
