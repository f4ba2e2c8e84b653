//! The PDU guard: every PDU's declared length is checked against what we allow for its type
//! from its 6-byte header (type, reserved, u32 big-endian length), before its body is waited
//! for or buffered.
//!
//! dicom-ul 0.10 reads a PDU by growing its read buffer until the declared length has arrived;
//! without its strict mode it has no bound at all, and strict mode allows the one announced
//! maximum to every PDU type, the A-ASSOCIATE-RQ included. [`PduGuard`] sits between dicom-ul's
//! reader and the socket: it looks at the bytes as they come off the socket, follows the PDU
//! boundaries (a header every `6 + length` bytes) and fails the read with an I/O error as soon
//! as a header declares more than its type may carry. The data path pays one bounds check per
//! read and six bytes of bookkeeping per PDU; the bytes themselves are not copied or touched.
//!
//! Before an association exists, dicom-ul (`establish_async`) reads straight from the
//! `TcpStream`, so the A-ASSOCIATE-RQ's header is checked by peeking at it
//! ([`check_associate_rq`]) before dicom-ul is handed the socket.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// Length of a PDU header: type, reserved, 32-bit length.
pub const PDU_HEADER_LENGTH: usize = 6;

/// PDU types (PS3.8 9.3).
pub mod pdu_type {
    /// A-ASSOCIATE-RQ.
    pub const ASSOCIATE_RQ: u8 = 0x01;
    /// A-ASSOCIATE-AC.
    pub const ASSOCIATE_AC: u8 = 0x02;
    /// A-ASSOCIATE-RJ.
    pub const ASSOCIATE_RJ: u8 = 0x03;
    /// P-DATA-TF.
    pub const P_DATA_TF: u8 = 0x04;
    /// A-RELEASE-RQ.
    pub const RELEASE_RQ: u8 = 0x05;
    /// A-RELEASE-RP.
    pub const RELEASE_RP: u8 = 0x06;
    /// A-ABORT.
    pub const ABORT: u8 = 0x07;
}

/// Largest length an A-RELEASE-RQ/RP or A-ABORT may declare. The standard fixes all three at
/// 4; a little slack costs nothing.
pub const SMALL_PDU_LIMIT: u32 = 64;

/// The largest length field allowed per PDU type once an association is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PduLimits {
    /// P-DATA-TF: the maximum length we announced (PS3.8 D.1: the limit applies to the
    /// variable field, which is exactly what the PDU length field counts).
    pub p_data: u32,
}

impl PduLimits {
    /// The largest length a PDU of `pdu_type` may declare inside an association. Every type
    /// other than P-DATA-TF carries at most a few bytes there (A-RELEASE, A-ABORT); the
    /// association-phase types and unknown types are protocol errors and get the same tiny
    /// limit, so they are refused from their header whatever they declare.
    pub fn limit_for(&self, pdu_type: u8) -> u32 {
        match pdu_type {
            pdu_type::P_DATA_TF => self.p_data,
            _ => SMALL_PDU_LIMIT,
        }
    }
}

/// A PDU header declared more than its type may carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PDU of type 0x{pdu_type:02X} declares {length} bytes, more than the {limit} allowed")]
pub struct PduTooLong {
    /// The PDU type of the header.
    pub pdu_type: u8,
    /// The length the header declares.
    pub length: u32,
    /// The most this type may declare here.
    pub limit: u32,
}

/// Follows PDU boundaries in a byte stream and checks each header against [`PduLimits`].
#[derive(Debug)]
pub struct PduTracker {
    limits: PduLimits,
    header: [u8; PDU_HEADER_LENGTH],
    /// Bytes of the current header seen so far (0 while inside a body).
    header_fill: usize,
    /// Body bytes of the current PDU still to come.
    body_left: u64,
    /// The first violation; once set, every further read fails.
    violation: Option<PduTooLong>,
}

impl PduTracker {
    /// A tracker positioned at a PDU boundary.
    pub fn new(limits: PduLimits) -> Self {
        Self {
            limits,
            header: [0; PDU_HEADER_LENGTH],
            header_fill: 0,
            body_left: 0,
            violation: None,
        }
    }

    /// The limits it checks against.
    pub fn limits(&self) -> PduLimits {
        self.limits
    }

    /// The violation that failed a read, if any.
    pub fn violation(&self) -> Option<&PduTooLong> {
        self.violation.as_ref()
    }

    /// Accounts for `bytes`, the next bytes of the stream. Work is per PDU header, not per
    /// byte: a body is skipped by arithmetic.
    pub fn observe(&mut self, mut bytes: &[u8]) -> Result<(), PduTooLong> {
        if let Some(v) = &self.violation {
            return Err(v.clone());
        }
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skip = usize::try_from(self.body_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.body_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (PDU_HEADER_LENGTH - self.header_fill).min(bytes.len());
            self.header[self.header_fill..self.header_fill + take].copy_from_slice(&bytes[..take]);
            self.header_fill += take;
            bytes = &bytes[take..];
            if self.header_fill == PDU_HEADER_LENGTH {
                self.header_fill = 0;
                let (pdu_type, length) = parse_header(&self.header);
                let limit = self.limits.limit_for(pdu_type);
                if length > limit {
                    let v = PduTooLong {
                        pdu_type,
                        length,
                        limit,
                    };
                    self.violation = Some(v.clone());
                    return Err(v);
                }
                self.body_left = u64::from(length);
            }
        }
        Ok(())
    }
}

/// Type and declared length of a PDU header.
pub fn parse_header(header: &[u8; PDU_HEADER_LENGTH]) -> (u8, u32) {
    (
        header[0],
        u32::from_be_bytes([header[2], header[3], header[4], header[5]]),
    )
}

/// What is wrong with the first PDU header of a connection, which must be an A-ASSOCIATE-RQ of
/// at most `limit` bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirstPduError {
    /// Another PDU type (its code) where an A-ASSOCIATE-RQ must come.
    #[error("the first PDU is of type 0x{0:02X}, not an A-ASSOCIATE-RQ")]
    NotAnAssociateRq(u8),
    /// An A-ASSOCIATE-RQ declaring more than the limit.
    #[error(transparent)]
    TooLong(#[from] PduTooLong),
}

/// Checks the header of a connection's first PDU.
pub fn check_associate_rq(
    header: &[u8; PDU_HEADER_LENGTH],
    limit: u32,
) -> Result<u32, FirstPduError> {
    let (pdu_type, length) = parse_header(header);
    if pdu_type != pdu_type::ASSOCIATE_RQ {
        return Err(FirstPduError::NotAnAssociateRq(pdu_type));
    }
    if length > limit {
        return Err(PduTooLong {
            pdu_type,
            length,
            limit,
        }
        .into());
    }
    Ok(length)
}

/// An [`AsyncRead`] over a socket that fails as soon as a PDU header read through it declares
/// more than allowed (see the module documentation).
pub struct PduGuard<'a, S> {
    inner: &'a mut S,
    tracker: &'a mut PduTracker,
}

impl<'a, S> PduGuard<'a, S> {
    /// Reads `inner` through `tracker`.
    pub fn new(inner: &'a mut S, tracker: &'a mut PduTracker) -> Self {
        Self { inner, tracker }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PduGuard<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(v) = this.tracker.violation() {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, v.clone())));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut *this.inner).poll_read(cx, buf))?;
        let fresh = buf.filled().get(before..).unwrap_or_default();
        Poll::Ready(
            this.tracker
                .observe(fresh)
                .map_err(|v| io::Error::new(io::ErrorKind::InvalidData, v)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pdu_type: u8, length: u32) -> Vec<u8> {
        let mut h = vec![pdu_type, 0];
        h.extend_from_slice(&length.to_be_bytes());
        h
    }

    const LIMITS: PduLimits = PduLimits { p_data: 1000 };

    #[test]
    fn bodies_are_skipped_and_every_header_is_checked() {
        let mut t = PduTracker::new(LIMITS);
        let mut stream = header(4, 1000);
        stream.extend_from_slice(&[0xAA; 1000]);
        stream.extend_from_slice(&header(5, 4));
        stream.extend_from_slice(&[0; 4]);
        stream.extend_from_slice(&header(4, 1001));
        // Any split of the stream finds the third header too long, and only that one.
        for chunk in [1, 3, 6, 7, 500, 5000] {
            let mut t2 = PduTracker::new(LIMITS);
            let mut result = Ok(());
            let mut at = 0;
            for piece in stream.chunks(chunk) {
                result = t2.observe(piece);
                at += piece.len();
                if result.is_err() {
                    break;
                }
            }
            let err = result.expect_err("third header refused");
            assert_eq!((err.pdu_type, err.length, err.limit), (4, 1001, 1000));
            // Refused by the read that completed the bad header, the stream's last byte.
            assert_eq!(at, stream.len(), "chunk {chunk}");
        }
        // Up to the limit passes; the violation sticks.
        assert!(t.observe(&stream[..stream.len() - 6]).is_ok());
        assert!(t.observe(&stream[stream.len() - 6..]).is_err());
        assert!(t.observe(&[]).is_err());
    }

    #[test]
    fn other_pdu_types_get_a_tiny_limit_inside_an_association() {
        for pdu_type in [1u8, 2, 3, 5, 6, 7, 8, 0xFF] {
            let mut t = PduTracker::new(LIMITS);
            assert!(t.observe(&header(pdu_type, SMALL_PDU_LIMIT)).is_ok());
            let mut t = PduTracker::new(LIMITS);
            assert!(
                t.observe(&header(pdu_type, u32::MAX)).is_err(),
                "{pdu_type}"
            );
        }
    }

    #[test]
    fn the_first_pdu_must_be_a_small_enough_associate_rq() {
        let h = |t, l| -> [u8; 6] { header(t, l).try_into().unwrap() };
        assert_eq!(check_associate_rq(&h(1, 300), 65_536), Ok(300));
        assert!(matches!(
            check_associate_rq(&h(1, u32::MAX), 65_536),
            Err(FirstPduError::TooLong(_))
        ));
        assert_eq!(
            check_associate_rq(&h(5, 4), 65_536),
            Err(FirstPduError::NotAnAssociateRq(5))
        );
    }

    #[tokio::test]
    async fn the_guard_fails_the_read_that_brings_a_bad_header() {
        use tokio::io::AsyncReadExt;
        let mut stream = header(4, 10);
        stream.extend_from_slice(&[1; 10]);
        stream.extend_from_slice(&header(4, 5000));
        let mut source: &[u8] = &stream;
        let mut tracker = PduTracker::new(LIMITS);
        let mut guard = PduGuard::new(&mut source, &mut tracker);
        let mut out = vec![0u8; 16];
        guard.read_exact(&mut out).await.expect("first PDU passes");
        let err = guard.read_exact(&mut out[..6]).await.expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(tracker.violation().is_some());
    }
}
