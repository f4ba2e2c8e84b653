//! What the ingest journal reads back at start (crates/journal, crates/ingest): the frames of
//! a segment that survived a crash, or was damaged (`radport_journal::records_of_segment`), and
//! the ingest record header inside each (`radport_ingest::RecordHeader::decode`).
//!
//! Input: a selector byte, then for 0 a generation byte and the segment's bytes after its
//! header page; for 1 the header bytes.
//!
//! Contract: no panic and no allocation beyond the limits (the probe allocator); every record
//! read back has a header of at most `MAX_HEADER_BYTES` and a body of at most the limit given,
//! whose BLAKE3 hash is the one its frame recorded; a header that decodes encodes to the same
//! bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

/// The body limit given to replay (ingest gives it 2 MiB).
const MAX_BODY: u64 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 2 {
        0 => {
            let Some((&generation, frames)) = rest.split_first() else {
                return;
            };
            let mut segment = vec![0u8; 4096];
            segment.extend_from_slice(frames);
            for record in radport_journal::records_of_segment(&segment, generation.into(), MAX_BODY)
            {
                assert!(record.header.len() <= radport_journal::MAX_HEADER_BYTES);
                assert!(record.body.len() as u64 <= MAX_BODY);
            }
        }
        _ => {
            if let Ok(header) = radport_ingest::RecordHeader::decode(rest) {
                assert_eq!(header.encode().as_deref(), Some(rest));
            }
        }
    }
});
