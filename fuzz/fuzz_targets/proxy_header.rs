//! The PROXY protocol header a trusted load balancer sends before a DICOM connection's first
//! PDU (`radport_dimse::proxy::read_header`), on arbitrary bytes.
//!
//! Contract: no panic; nothing allocated beyond the header's own limits (1 KiB of version 2
//! payload, 107 bytes of version 1 line) whatever the bytes declare; and never a byte read
//! past the header: what is left unread is exactly the input after the header's end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radport_dimse::proxy::{read_header, V2_MAX_PAYLOAD};
use radport_fuzz::assert_allocates_at_most;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
}

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    let result = assert_allocates_at_most("a PROXY header", 4 * (16 + V2_MAX_PAYLOAD), || {
        RUNTIME.with(|rt| rt.block_on(read_header(&mut input)))
    });
    if result.is_ok() {
        let consumed = data.len() - input.len();
        let head = &data[..consumed];
        // The header ends where its own framing says: CRLF (version 1) or the declared length.
        if head.starts_with(b"PROXY") {
            assert!(head.ends_with(b"\r\n") && consumed <= 107, "{head:?}");
            assert_eq!(
                head.windows(2).position(|w| w == b"\r\n"),
                Some(consumed - 2),
                "stopped at the first CRLF"
            );
        } else {
            let declared = usize::from(u16::from_be_bytes([head[14], head[15]]));
            assert_eq!(consumed, 16 + declared);
        }
    }
});
