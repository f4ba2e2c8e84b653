//! PDUs as radport's receiver reads them, on arbitrary bytes: the first PDU of a connection
//! (its header checked by `guard::check_associate_rq`, then read by dicom-ul), and the stream
//! of PDUs of an association (`pdata::read_pdu` through the `PduGuard` — P-DATA-TF read
//! without copies, other types by dicom-ul's `read_pdu_from_wire_async` — with the limits of
//! `ReceiverConfig::default()`, as `receive` in crates/dimse does).
//!
//! Contract: no panic; nothing allocated beyond what the bytes hold; the guard follows PDU
//! boundaries exactly as dicom-ul does: every PDU it lets through declares no more than its
//! type may carry, a stream stops at the first header that declares more, with that header's
//! violation; how the bytes arrive (one at a time, or in large reads) changes nothing but
//! how many PDUs before a refused header are delivered; and `pdata::read_pdu` reads exactly
//! what dicom-ul alone reads from the same stream (the same fragments, the same end). With a
//! `Placement` (data values read straight into a pack record's room, as while an instance is
//! stored into packs) it reads the same values: put back into their fragments, the same PDUs.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll};

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};
use dicom_ul::Pdu;
use libfuzzer_sys::fuzz_target;
use radport_dimse::guard::{
    check_associate_rq, parse_header, PduGuard, PduLimits, PduTooLong, PduTracker,
    PDU_HEADER_LENGTH,
};
use radport_dimse::pdata::{read_pdu, Fragment, MemoryPlacement, Placement, Received};
use radport_dimse::ReceiverConfig;
use radport_fuzz::{assert_allocates_at_most, honest};
use tokio::io::{AsyncRead, ReadBuf};

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

/// The bytes, handed out `chunk` at a time: how a socket may deliver them.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.chunk.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, PartialEq)]
enum End {
    /// The bytes ran out (between or inside PDUs).
    Closed,
    /// The guard refused a header.
    TooLong(PduTooLong),
    /// dicom-ul refused a PDU.
    Broken,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

/// Reads PDUs with `read` (one PDU per call, through the guard) until the stream ends.
fn drive<E>(
    data: &[u8],
    limits: PduLimits,
    chunk: usize,
    read: impl for<'a, 'b> Fn(&mut PduGuard<'a, Chunked<'b>>, &mut BytesMut) -> Result<Received, E>,
) -> (Vec<Received>, End) {
    let mut socket = Chunked { data, chunk };
    let mut tracker = PduTracker::new(limits);
    let mut buffer = BytesMut::new();
    let mut pdus = Vec::new();
    loop {
        let mut guarded = PduGuard::new(&mut socket, &mut tracker);
        match read(&mut guarded, &mut buffer) {
            Ok(pdu) => pdus.push(pdu),
            Err(_) => return (pdus, end_of(&tracker, &socket)),
        }
    }
}

/// Receives PDUs until the stream ends, as `crates/dimse`'s `receive` does.
fn associate(data: &[u8], limits: PduLimits, chunk: usize) -> (Vec<Received>, End) {
    // Room for the largest P-DATA-TF allowed before each header, as `receive` makes.
    let read_ahead = limits.p_data as usize + PDU_HEADER_LENGTH;
    drive(data, limits, chunk, |guarded, buffer| {
        RUNTIME.with(|rt| rt.block_on(read_pdu(guarded, buffer, read_ahead, None)))
    })
}

/// [`associate`] with a placement for every PDU, its values put back into their fragments.
fn associate_placed(data: &[u8], limits: PduLimits, chunk: usize) -> (Vec<Received>, End) {
    let read_ahead = limits.p_data as usize + PDU_HEADER_LENGTH;
    // A pack record's room as the ingest gives it: data values on odd presentation contexts, up
    // to 1 MiB in all (past that they take the fragment path).
    let record = RefCell::new(MemoryPlacement::new(1 << 20, |context| context % 2 == 1));
    let (pdus, end) = drive(data, limits, chunk, |guarded, buffer| {
        let mut record = record.borrow_mut();
        let placement: &mut (dyn Placement + Send) = &mut *record;
        RUNTIME.with(|rt| rt.block_on(read_pdu(guarded, buffer, read_ahead, Some(placement))))
    });
    let placed = record.into_inner().bytes;
    let mut at = 0;
    let pdus = pdus
        .into_iter()
        .map(|pdu| match pdu {
            Received::PData(fragments) => Received::PData(
                fragments
                    .into_iter()
                    .map(|mut f| {
                        if f.placed > 0 {
                            assert!(f.data.is_empty(), "a fragment placed and kept");
                            f.data = Bytes::copy_from_slice(&placed[at..at + f.placed]);
                            at += f.placed;
                            f.placed = 0;
                        }
                        f
                    })
                    .collect(),
            ),
            other => other,
        })
        .collect();
    (pdus, end)
}

/// The same stream read by dicom-ul alone (as radport did before `pdata`), its P-DATA-TF
/// values turned into fragments: the oracle.
fn associate_with_dicom_ul(data: &[u8], limits: PduLimits, chunk: usize) -> (Vec<Received>, End) {
    drive(data, limits, chunk, |guarded, buffer| {
        let pdu = RUNTIME.with(|rt| {
            rt.block_on(dicom_ul::association::read_pdu_from_wire_async(
                guarded,
                buffer,
                dicom_ul::pdu::MAXIMUM_PDU_SIZE,
                false,
            ))
        })?;
        Ok::<_, dicom_ul::association::Error>(match pdu {
            Pdu::PData { data } => Received::PData(data.into_iter().map(Fragment::from).collect()),
            pdu => Received::Other(pdu),
        })
    })
}

fn end_of(tracker: &PduTracker, socket: &Chunked<'_>) -> End {
    match tracker.violation() {
        Some(v) => End::TooLong(v.clone()),
        None if socket.data.is_empty() => End::Closed,
        None => End::Broken,
    }
}

/// The first header (at a PDU boundary, counting every declared length) that declares more
/// than its type may carry, and how many whole PDUs precede it.
fn first_violation(data: &[u8], limits: PduLimits) -> Option<(usize, PduTooLong)> {
    let mut at = 0usize;
    let mut whole = 0;
    while data.len() - at >= PDU_HEADER_LENGTH {
        let header: [u8; PDU_HEADER_LENGTH] = data[at..at + PDU_HEADER_LENGTH].try_into().unwrap();
        let (pdu_type, length) = parse_header(&header);
        let limit = limits.limit_for(pdu_type);
        if length > limit {
            return Some((
                whole,
                PduTooLong {
                    pdu_type,
                    length,
                    limit,
                },
            ));
        }
        at += PDU_HEADER_LENGTH + length as usize;
        if at > data.len() {
            return None;
        }
        whole += 1;
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let config = ReceiverConfig::default();
    let bound = honest(data.len());

    // The first PDU of a connection: its header is peeked at and checked, then dicom-ul
    // (`establish_async`) reads the A-ASSOCIATE-RQ with the receiver's maximum, not strict.
    if let Some(header) = data.get(..PDU_HEADER_LENGTH) {
        let header: [u8; PDU_HEADER_LENGTH] = header.try_into().unwrap();
        if let Ok(length) = check_associate_rq(&header, config.max_associate_rq_length) {
            assert!(length <= config.max_associate_rq_length);
            let mut buf = data;
            let read = assert_allocates_at_most("read_pdu (A-ASSOCIATE-RQ)", bound, || {
                dicom_ul::read_pdu(&mut buf, config.max_pdu_length, false)
            });
            if let Ok(Some(pdu)) = read {
                assert!(
                    matches!(pdu, Pdu::AssociationRQ(_)),
                    "a type-1 PDU read as {pdu:?}"
                );
            }
        }
    }

    // An association's stream.
    let limits = PduLimits {
        p_data: config.max_pdu_length,
    };
    let (pdus, end) = assert_allocates_at_most("receive", bound, || associate(data, limits, 4096));
    // Bytes that arrive with a refused header are never parsed: a large read can drop PDUs
    // that one byte at a time delivers before the refusal, nothing more.
    let (bytewise, bytewise_end) = associate(data, limits, 1);
    // Byte by byte, both readers see the same reads: the same PDUs and the same end. (In large
    // reads a refused header can cut off different numbers of PDUs before it, as below.)
    let (oracle, oracle_end) = associate_with_dicom_ul(data, limits, 1);
    assert_eq!(
        bytewise, oracle,
        "pdata::read_pdu reads other PDUs than dicom-ul"
    );
    assert_eq!(
        bytewise_end, oracle_end,
        "pdata::read_pdu ends otherwise than dicom-ul"
    );
    assert!(
        bytewise.starts_with(&pdus),
        "the PDUs read depend on how the bytes arrive"
    );
    if end != End::Broken && bytewise_end != End::Broken {
        assert_eq!(
            end, bytewise_end,
            "how the stream ends depends on how the bytes arrive"
        );
    }
    // With a placement: the same values, whatever the reads. A malformed item is refused as
    // soon as its header is read (the fragment path reads the whole PDU first), so the two
    // may end one as `Broken`, the other not.
    let (placed_bytewise, placed_bytewise_end) =
        assert_allocates_at_most("placed", bound, || associate_placed(data, limits, 1));
    assert_eq!(
        placed_bytewise, bytewise,
        "values read into a placement differ from the fragments"
    );
    if placed_bytewise_end != End::Broken && bytewise_end != End::Broken {
        assert_eq!(
            placed_bytewise_end, bytewise_end,
            "a placement ends otherwise"
        );
    }
    let (placed, _) = associate_placed(data, limits, 4096);
    assert!(
        bytewise.starts_with(&placed),
        "the PDUs read into a placement depend on how the bytes arrive"
    );
    match (first_violation(data, limits), &end) {
        (Some((before, v)), End::TooLong(seen)) => {
            assert_eq!(&v, seen, "the guard refused another header");
            assert!(
                pdus.len() <= before,
                "a PDU behind a refused header was read"
            );
        }
        (Some((before, v)), End::Closed) => {
            panic!("{v} (after {before} PDUs) was not refused")
        }
        // dicom-ul gave up on an earlier PDU.
        (Some((before, _)), End::Broken) => assert!(pdus.len() <= before),
        (None, End::TooLong(v)) => panic!("the guard refused {v}, which is within its limits"),
        (None, _) => {}
    }
});
