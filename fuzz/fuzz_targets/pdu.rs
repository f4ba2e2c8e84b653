//! dicom-ul's PDU reader on arbitrary bytes, with the limits radport reads PDUs with: 64 KiB for
//! the A-ASSOCIATE-RQ of a refused association, the receiver's maximum PDU length (256 KiB)
//! after it, both non-strict (`strict(false)`: larger PDUs from the peer are tolerated).
//!
//! Contract: no panic; nothing allocated beyond what the bytes hold; a PDU is returned only
//! when all of its declared bytes are there; and the streaming reader radport's association
//! uses (`read_pdu_from_wire`) agrees with the one-shot reader.
#![no_main]

use std::io::Cursor;

use bytes::{Buf, BytesMut};
use libfuzzer_sys::fuzz_target;
use radport_fuzz::{assert_allocates_at_most, honest};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

/// `refuse_busy` reads the A-ASSOCIATE-RQ with 64 KiB; associations use the receiver's
/// `max_pdu_length` (`ReceiverConfig::default()`).
const LIMITS: [u32; 2] = [65_536, 262_144];

fuzz_target!(|data: &[u8]| {
    let default_max = radport_dimse::ReceiverConfig::default().max_pdu_length;
    assert_eq!(
        default_max, LIMITS[1],
        "the receiver's default changed: update LIMITS"
    );
    for max in LIMITS {
        let bound = honest(data.len());
        let mut buf = data;
        let read = assert_allocates_at_most("read_pdu", bound, || {
            dicom_ul::read_pdu(&mut buf, max, false)
        });
        let consumed = data.len() - buf.remaining();
        if let Ok(Some(_)) = &read {
            let declared = u32::from_be_bytes([data[2], data[3], data[4], data[5]]) as usize;
            assert_eq!(
                consumed,
                6 + declared,
                "a PDU was returned without consuming exactly its declared length"
            );
        }

        // The streaming reader: a BufReader over the socket, a buffer that grows until a
        // whole PDU is there.
        let mut wire = Cursor::new(data);
        let mut read_buffer = BytesMut::new();
        let streamed = assert_allocates_at_most("read_pdu_from_wire", bound, || {
            dicom_ul::association::read_pdu_from_wire(&mut wire, &mut read_buffer, max, false)
        });
        match (&read, &streamed) {
            (Ok(Some(a)), Ok(b)) => assert_eq!(a, b, "the two readers disagree"),
            (Ok(Some(a)), Err(e)) => panic!("one-shot read {a:?}, streamed failed: {e}"),
            (Ok(None) | Err(_), Ok(b)) => {
                panic!("one-shot read {read:?}, streamed read a PDU: {b:?}")
            }
            _ => {}
        }
    }
});
