//! P-DATA-TF PDUs read without copying their values (PS3.8 §9.3.5).
//!
//! dicom-ul reads a PDU by copying it out of its buffer and then copying each presentation
//! data value into a `Vec` of its own: twice 0.5 MB for a CT slice, about a twentieth of the
//! receiver's CPU. Here the PDU is split off the association's buffer (`BytesMut::split_to`,
//! no copy) and each value is a slice of it, which the instance's sink takes over as it is.
//! Every other PDU type is still read by dicom-ul. The PDU's length was checked against its
//! limit by the [`crate::guard`] as its header went past.
//!
//! While an instance is received into a pack record ([`Placement`]), its data values are not
//! read into the association's buffer at all: the PDU's and each item's header are read on
//! their own, and the value straight from the connection into the record's room
//! ([`radport_ingest::IncomingInstance::room`]) — the one copy the kernel makes, instead of
//! that and a second out of the PDU into the record (8 % of the receiver's CPU with one
//! sender). Each read into the room asks for the next headers too (a PDU's and an item's,
//! [`HEADERS_BEHIND`]), so that a PDU still takes about one read; what comes behind the
//! value goes back into the buffer.

use bytes::{Bytes, BytesMut};
use dicom_ul::pdu::PDataValueType;
use dicom_ul::Pdu;

use crate::guard::{pdu_type, PDU_HEADER_LENGTH};

/// A presentation data value as received: a slice of its PDU, not a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// Presentation Context ID.
    pub context_id: u8,
    /// Command or data set.
    pub value_type: PDataValueType,
    /// Whether this is the last fragment of its command or data set.
    pub is_last: bool,
    /// The fragment's bytes (none if they were placed).
    pub data: Bytes,
    /// Bytes of the value read straight into the [`Placement`] instead.
    pub placed: usize,
}

/// Where the data values of a data set being received go straight from the connection: the
/// instance's pack record.
pub trait Placement {
    /// Room for `len` bytes of a data value on presentation context `context_id`, if they
    /// go there.
    fn room(&mut self, context_id: u8, len: usize) -> Option<&mut [u8]>;
    /// The first `n` bytes of the last room given hold the value's next bytes. Whether they
    /// were taken.
    fn placed(&mut self, n: usize) -> bool;
}

/// What a read into a placement's room asks for beyond the value: the next PDU's header and
/// its first item's.
pub const HEADERS_BEHIND: usize = PDU_HEADER_LENGTH + ITEM_HEADER_LENGTH;

/// The most a read takes before a PDU's header is known: a command PDU (a C-STORE-RQ's is
/// about 200 bytes) and the headers behind it, but little of the data set that follows it —
/// what a read brings of a value that goes into a [`Placement`] has to be copied there
/// (with up to a whole PDU read ahead, 6 % of the receiver's CPU with three senders).
const FIRST_READ: usize = 4096;

/// A [`Placement`] in memory, the model of a pack record's room for tests and the fuzz
/// target: data values on the presentation contexts `takes` accepts, up to `capacity` bytes
/// in all; what it was given room for is not zeros until read into.
#[derive(Debug)]
pub struct MemoryPlacement {
    /// The values placed, one after the other.
    pub bytes: Vec<u8>,
    capacity: usize,
    takes: fn(u8) -> bool,
    room: Vec<u8>,
}

impl MemoryPlacement {
    /// Room for values on the contexts `takes` accepts, `capacity` bytes in all.
    pub fn new(capacity: usize, takes: fn(u8) -> bool) -> Self {
        MemoryPlacement {
            bytes: Vec::new(),
            capacity,
            takes,
            room: Vec::new(),
        }
    }
}

impl Placement for MemoryPlacement {
    fn room(&mut self, context_id: u8, len: usize) -> Option<&mut [u8]> {
        if !(self.takes)(context_id) || self.bytes.len().checked_add(len)? > self.capacity {
            return None;
        }
        // (`vec!` fills with one memset, also unoptimised: `resize` would not.)
        self.room = vec![0xEE; len];
        Some(&mut self.room)
    }

    fn placed(&mut self, n: usize) -> bool {
        if n > self.room.len() {
            return false;
        }
        self.bytes.extend_from_slice(&self.room[..n]);
        self.room.clear();
        true
    }
}

impl From<dicom_ul::pdu::PDataValue> for Fragment {
    fn from(pdv: dicom_ul::pdu::PDataValue) -> Self {
        Fragment {
            context_id: pdv.presentation_context_id,
            value_type: pdv.value_type,
            is_last: pdv.is_last,
            data: Bytes::from(pdv.data),
            placed: 0,
        }
    }
}

/// Why a P-DATA-TF could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PDataError {
    /// Fewer bytes left than an item header (length, context, control header).
    #[error("a presentation data value item is cut short")]
    ItemCutShort,
    /// An item length below the two bytes of context ID and control header.
    #[error("a presentation data value item declares fewer than 2 bytes")]
    ItemTooShort,
    /// An item declares more bytes than its PDU has left.
    #[error("a presentation data value item declares more bytes than its PDU holds")]
    ItemBeyondPdu,
}

/// Bytes of an item before its value: length (4), context ID (1), control header (1).
const ITEM_HEADER_LENGTH: usize = 6;

/// An item's header (PS3.8 §9.3.5.1): what its value is and how long.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ItemHeader {
    context_id: u8,
    value_type: PDataValueType,
    is_last: bool,
    value_length: usize,
}

impl ItemHeader {
    /// The header `bytes` of an item that starts `left_in_pdu` bytes before its PDU's end,
    /// and where the item ends, counted from its start: checked against what is left.
    fn parse(
        bytes: &[u8; ITEM_HEADER_LENGTH],
        left_in_pdu: usize,
    ) -> Result<(ItemHeader, usize), PDataError> {
        let item_length = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let (context_id, control) = (bytes[4], bytes[5]);
        let value_length = usize::try_from(item_length)
            .ok()
            .and_then(|l| l.checked_sub(2))
            .ok_or(PDataError::ItemTooShort)?;
        let item_end = ITEM_HEADER_LENGTH
            .checked_add(value_length)
            .filter(|&end| end <= left_in_pdu)
            .ok_or(PDataError::ItemBeyondPdu)?;
        let value_type = if control & 0x01 != 0 {
            PDataValueType::Command
        } else {
            PDataValueType::Data
        };
        let header = ItemHeader {
            context_id,
            value_type,
            is_last: control & 0x02 != 0,
            value_length,
        };
        Ok((header, item_end))
    }

    /// The fragment this item makes with `data` as its bytes and `placed` bytes placed.
    fn fragment(self, data: Bytes, placed: usize) -> Fragment {
        Fragment {
            context_id: self.context_id,
            value_type: self.value_type,
            is_last: self.is_last,
            data,
            placed,
        }
    }
}

/// The first item header of `bytes`, if they hold one.
fn item_header_bytes(bytes: &[u8]) -> Option<&[u8; ITEM_HEADER_LENGTH]> {
    bytes.get(..ITEM_HEADER_LENGTH)?.try_into().ok()
}

/// The fragments of a P-DATA-TF's variable field (the PDU without its 6-byte header).
pub fn fragments(mut body: Bytes) -> Result<Vec<Fragment>, PDataError> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let bytes = item_header_bytes(&body).ok_or(PDataError::ItemCutShort)?;
        let (header, end) = ItemHeader::parse(bytes, body.len())?;
        out.push(header.fragment(body.slice(ITEM_HEADER_LENGTH..end), 0));
        body = body.slice(end..);
    }
    Ok(out)
}

/// A PDU as [`read_pdu`] read it.
#[derive(Debug, PartialEq)]
pub enum Received {
    /// A P-DATA-TF, its values slices of it.
    PData(Vec<Fragment>),
    /// Any other PDU, as dicom-ul reads it.
    Other(Pdu),
}

/// Why [`read_pdu`] read no PDU.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// dicom-ul could not read a PDU of another type (or the connection failed under it).
    #[error(transparent)]
    Ul(dicom_ul::association::Error),
    /// A P-DATA-TF whose items do not add up.
    #[error(transparent)]
    MalformedPData(PDataError),
    /// The connection failed, or ended, inside a P-DATA-TF or before a PDU.
    #[error("connection lost: {0}")]
    Lost(std::io::Error),
    /// The placement did not take what was read into its room.
    #[error("a data value read into its room was not taken")]
    NotPlaced,
}

/// Reads the next PDU from `reader` (the association's stream behind its
/// [`crate::guard::PduGuard`]) into `buffer` (dicom-ul's buffer of the association, which may
/// already hold the start of it). Cancel-safe: what was read stays in `buffer` — except
/// with a `placement`, once a P-DATA-TF's values are read into it (the association is then
/// aborted, as on its idle timeout).
///
/// With a `placement`, reads into `buffer` take no more than the header they wait for, and
/// a P-DATA-TF's data values go into the placement where it has room ([`read_placed`]).
///
/// `read_ahead` is the room made in `buffer` before a PDU's header has arrived: the largest
/// P-DATA-TF allowed, with its header, so that a PDU is read into one allocation. With less,
/// the first read of each PDU lands in a smaller one (64 KiB: what `BytesMut` gives back
/// after a PDU was split off) that has to be grown — and its bytes copied — once the header
/// says how long the PDU is (a twentieth of the receiver's CPU with 256 KiB PDUs). A read
/// takes no more than the rest of the PDU and the next one's headers ([`HEADERS_BEHIND`];
/// [`FIRST_READ`] before the header is there), so that the data set after a command PDU is
/// read straight into the placement its command makes, not into `buffer` and copied.
pub async fn read_pdu<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    read_ahead: usize,
    placement: Option<&mut (dyn Placement + Send)>,
) -> Result<Received, ReadError> {
    use tokio::io::AsyncReadExt;
    if let Some(placement) = placement {
        fill(reader, buffer, PDU_HEADER_LENGTH).await?;
        if buffer[0] == pdu_type::P_DATA_TF {
            let length = u32::from_be_bytes([buffer[2], buffer[3], buffer[4], buffer[5]]);
            let length = usize::try_from(length)
                .map_err(|_| ReadError::MalformedPData(PDataError::ItemBeyondPdu))?;
            return read_placed(reader, buffer, length, placement).await;
        }
    }
    loop {
        // What the next read may take: never past this PDU and the next one's headers.
        let wanted = match buffer.get(..PDU_HEADER_LENGTH) {
            None => {
                buffer.reserve(read_ahead.saturating_sub(buffer.len()));
                FIRST_READ
            }
            Some(header) if header[0] != pdu_type::P_DATA_TF => {
                // Not strict: the guard enforces the per-type limits (strict mode would apply
                // the P-DATA limit to every type); the maximum passed is only range-checked.
                return dicom_ul::association::read_pdu_from_wire_async(
                    reader,
                    buffer,
                    dicom_ul::pdu::MAXIMUM_PDU_SIZE,
                    false,
                )
                .await
                .map(Received::Other)
                .map_err(ReadError::Ul);
            }
            Some(header) => {
                // Behind the guard this length is within the P-DATA limit.
                let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
                let total = usize::try_from(length)
                    .ok()
                    .and_then(|l| l.checked_add(PDU_HEADER_LENGTH))
                    .ok_or(ReadError::MalformedPData(PDataError::ItemBeyondPdu))?;
                if buffer.len() >= total {
                    let pdu = buffer.split_to(total).freeze();
                    return fragments(pdu.slice(PDU_HEADER_LENGTH..))
                        .map(Received::PData)
                        .map_err(ReadError::MalformedPData);
                }
                let wanted = (total - buffer.len()).saturating_add(HEADERS_BEHIND);
                buffer.reserve(wanted);
                wanted
            }
        };
        let limited = &mut (&mut *reader).take(wanted as u64);
        match limited.read_buf(buffer).await {
            Ok(0) => return Err(ReadError::Lost(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Lost(e)),
        }
    }
}

/// Reads from `reader` until `buffer` holds `need` bytes, each read taking no more than
/// what is missing.
async fn fill<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    need: usize,
) -> Result<(), ReadError> {
    use tokio::io::AsyncReadExt;
    while buffer.len() < need {
        let missing = need - buffer.len();
        buffer.reserve(missing);
        let limited = &mut (&mut *reader).take(missing as u64);
        match limited.read_buf(buffer).await {
            Ok(0) => return Err(ReadError::Lost(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Lost(e)),
        }
    }
    Ok(())
}

/// The P-DATA-TF whose header starts `buffer`, its variable field `length` bytes long, read
/// item by item: each item's header into `buffer`, a data value into `placement` where it
/// has room for all of it (first what `buffer` already holds of it, then straight from
/// `reader`), any other value into `buffer` as [`read_pdu`] would.
async fn read_placed<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    length: usize,
    placement: &mut (dyn Placement + Send),
) -> Result<Received, ReadError> {
    use bytes::Buf;
    use tokio::io::AsyncReadExt;
    buffer.advance(PDU_HEADER_LENGTH);
    let mut left_in_pdu = length;
    let mut out = Vec::new();
    while left_in_pdu > 0 {
        if left_in_pdu < ITEM_HEADER_LENGTH {
            return Err(ReadError::MalformedPData(PDataError::ItemCutShort));
        }
        fill(reader, buffer, ITEM_HEADER_LENGTH).await?;
        let bytes =
            item_header_bytes(buffer).ok_or(ReadError::MalformedPData(PDataError::ItemCutShort))?;
        let (header, item_end) =
            ItemHeader::parse(bytes, left_in_pdu).map_err(ReadError::MalformedPData)?;
        buffer.advance(ITEM_HEADER_LENGTH);
        left_in_pdu -= item_end;
        let (context_id, value_length) = (header.context_id, header.value_length);
        let placed = header.value_type == PDataValueType::Data
            && value_length > 0
            && placement.room(context_id, value_length).is_some();
        if !placed {
            fill(reader, buffer, value_length).await?;
            out.push(header.fragment(buffer.split_to(value_length).freeze(), 0));
            continue;
        }
        let mut left = value_length;
        // What an earlier read brought of it already.
        let ahead = buffer.len().min(left);
        if ahead > 0 {
            let room = placement
                .room(context_id, ahead)
                .ok_or(ReadError::NotPlaced)?;
            room.copy_from_slice(&buffer[..ahead]);
            buffer.advance(ahead);
            if !placement.placed(ahead) {
                return Err(ReadError::NotPlaced);
            }
            left -= ahead;
        }
        while left > 0 {
            // With room for the headers behind the value: one read may bring them too.
            let room = match placement.room(context_id, left + HEADERS_BEHIND) {
                Some(room) => room,
                None => placement
                    .room(context_id, left)
                    .ok_or(ReadError::NotPlaced)?,
            };
            let read = match reader.read(room).await {
                Ok(0) => return Err(ReadError::Lost(std::io::ErrorKind::UnexpectedEof.into())),
                Ok(read) => read,
                Err(e) => return Err(ReadError::Lost(e)),
            };
            let value = read.min(left);
            // What came behind the value goes back to the buffer (empty here).
            buffer.extend_from_slice(&room[value..read]);
            if !placement.placed(value) {
                return Err(ReadError::NotPlaced);
            }
            left -= value;
        }
        out.push(header.fragment(Bytes::new(), value_length));
    }
    Ok(Received::PData(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(context: u8, control: u8, value: &[u8]) -> Vec<u8> {
        let mut out = ((value.len() + 2) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&[context, control]);
        out.extend_from_slice(value);
        out
    }

    /// The same fragments as dicom-ul reads from the same PDU, each a slice of the PDU.
    #[test]
    fn fragments_match_dicom_ul_and_share_the_pdus_bytes() {
        let mut body = item(1, 0x03, b"command");
        body.extend(item(3, 0x00, &[7u8; 1000]));
        body.extend(item(3, 0x02, b""));
        let mut pdu = vec![0x04, 0x00];
        pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
        pdu.extend_from_slice(&body);
        let ours = fragments(Bytes::from(body.clone())).unwrap();
        let Some(dicom_ul::pdu::Pdu::PData { data }) =
            dicom_ul::pdu::read_pdu(&pdu[..], dicom_ul::pdu::MAXIMUM_PDU_SIZE, false).unwrap()
        else {
            panic!("dicom-ul read no P-DATA-TF");
        };
        let theirs: Vec<Fragment> = data.into_iter().map(Fragment::from).collect();
        assert_eq!(ours, theirs);
        let body = Bytes::from(body);
        let range = body.as_ptr_range();
        for fragment in fragments(body.clone()).unwrap() {
            let inside = fragment.data.is_empty() || range.contains(&fragment.data.as_ptr());
            assert!(inside, "a fragment was copied");
        }
    }

    /// Gives at most `piece` bytes per read, as a slow peer's segments would arrive.
    struct Pieces<'a> {
        bytes: &'a [u8],
        piece: usize,
    }

    impl tokio::io::AsyncRead for Pieces<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.piece.min(self.bytes.len()).min(buf.remaining());
            buf.put_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn p_data(items: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = items.concat();
        let mut pdu = vec![pdu_type::P_DATA_TF, 0];
        pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
        pdu.extend(body);
        pdu
    }

    /// PDUs back to back (a large P-DATA-TF, an A-RELEASE-RQ, a small P-DATA-TF) read the same
    /// whatever the pieces they arrive in and however much room is made ahead of a header.
    #[tokio::test]
    async fn pdus_read_the_same_in_any_pieces_with_any_read_ahead() {
        let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let first = p_data(&[
            item(1, 0x00, &large[..150_000]),
            item(1, 0x02, &large[150_000..]),
        ]);
        let release = [pdu_type::RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0];
        let last = p_data(&[item(3, 0x03, b"command")]);
        let stream = [&first[..], &release[..], &last[..]].concat();
        for piece in [1, 7, 1 << 16, stream.len()] {
            for read_ahead in [0, PDU_HEADER_LENGTH, 64, 300_012] {
                let mut reader = Pieces {
                    bytes: &stream,
                    piece,
                };
                let mut buffer = BytesMut::new();
                let Received::PData(fragments) =
                    read_pdu(&mut reader, &mut buffer, read_ahead, None)
                        .await
                        .unwrap()
                else {
                    panic!("the first PDU is a P-DATA-TF");
                };
                let values: Vec<u8> = fragments.iter().flat_map(|f| f.data.to_vec()).collect();
                assert_eq!(values, large, "piece {piece}, read ahead {read_ahead}");
                assert_eq!(
                    fragments.iter().map(|f| f.is_last).collect::<Vec<_>>(),
                    [false, true]
                );
                let second = read_pdu(&mut reader, &mut buffer, read_ahead, None)
                    .await
                    .unwrap();
                assert!(
                    matches!(second, Received::Other(Pdu::ReleaseRQ)),
                    "piece {piece}, read ahead {read_ahead}: {second:?}"
                );
                let Received::PData(fragments) =
                    read_pdu(&mut reader, &mut buffer, read_ahead, None)
                        .await
                        .unwrap()
                else {
                    panic!("the last PDU is a P-DATA-TF");
                };
                assert_eq!(fragments.len(), 1);
                assert_eq!(&fragments[0].data[..], b"command");
                assert!(buffer.is_empty());
                assert!(matches!(
                    read_pdu(&mut reader, &mut buffer, read_ahead, None).await,
                    Err(ReadError::Lost(_))
                ));
            }
        }
    }

    /// A command PDU read while its data set has already arrived behind it leaves little of
    /// the data set in the buffer — that is read next, straight into the placement the
    /// command makes — and the next PDU's headers no further than the PDU they start.
    #[tokio::test]
    async fn a_read_takes_little_beyond_its_pdu() {
        let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let command = p_data(&[item(1, 0x03, &[9u8; 200])]);
        let data = p_data(&[item(1, 0x02, &large)]);
        let stream = [&command[..], &data[..]].concat();
        let mut reader = Pieces {
            bytes: &stream,
            piece: stream.len(),
        };
        let mut buffer = BytesMut::new();
        let read_ahead = 300_012;
        let Received::PData(fragments) = read_pdu(&mut reader, &mut buffer, read_ahead, None)
            .await
            .unwrap()
        else {
            panic!("a P-DATA-TF");
        };
        assert_eq!(&fragments[0].data[..], &[9u8; 200][..]);
        assert!(
            buffer.len() <= FIRST_READ - command.len(),
            "{} bytes of the data set read with the command",
            buffer.len()
        );
        let mut record = MemoryPlacement::new(usize::MAX, |context| context == 1);
        let Received::PData(fragments) =
            read_pdu(&mut reader, &mut buffer, read_ahead, Some(&mut record))
                .await
                .unwrap()
        else {
            panic!("a P-DATA-TF");
        };
        assert_eq!(fragments[0].placed, large.len());
        assert!(buffer.is_empty());

        // Without a placement, a PDU whose header is known is read to its end and the next
        // headers, no further.
        let second = p_data(&[item(1, 0x02, &large[..1000])]);
        let stream = [&data[..], &second[..]].concat();
        let mut reader = Pieces {
            bytes: &stream,
            piece: stream.len(),
        };
        let mut buffer = BytesMut::from(&stream[..PDU_HEADER_LENGTH]);
        reader.bytes = &stream[PDU_HEADER_LENGTH..];
        let Received::PData(fragments) = read_pdu(&mut reader, &mut buffer, 0, None).await.unwrap()
        else {
            panic!("a P-DATA-TF");
        };
        assert_eq!(&fragments[0].data[..], &large[..]);
        assert_eq!(buffer.len(), HEADERS_BEHIND);
    }

    /// With a placement, the data values it has room for go there and every other value is
    /// a fragment, whatever the pieces the stream arrives in and what was read ahead: the
    /// values, their order, their flags and the PDUs behind them are those read without it.
    #[tokio::test]
    async fn data_values_go_into_the_placement_as_they_would_be_read() {
        let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let first = p_data(&[
            item(1, 0x00, &large[..150_000]),
            item(3, 0x00, b"other context"),
            item(1, 0x00, &large[150_000..150_010]),
            item(1, 0x00, b""),
            item(1, 0x02, &large[150_010..]),
        ]);
        let release = [pdu_type::RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0];
        let last = p_data(&[item(1, 0x03, b"command"), item(1, 0x02, b"tail")]);
        let stream = [&first[..], &release[..], &last[..]].concat();
        for capacity in [usize::MAX, 200_000] {
            for piece in [1, 7, 4096, 1 << 16, stream.len()] {
                for ahead in [0, 20, 150_020] {
                    let mut reader = Pieces {
                        bytes: &stream,
                        piece,
                    };
                    // As if an earlier read had brought the first `ahead` bytes.
                    let mut buffer = BytesMut::new();
                    let mut record = MemoryPlacement::new(capacity, |context| context == 1);
                    fill(&mut reader, &mut buffer, ahead).await.unwrap();
                    let context = format!("capacity {capacity}, piece {piece}, ahead {ahead}");
                    let Received::PData(fragments) =
                        read_pdu(&mut reader, &mut buffer, 0, Some(&mut record))
                            .await
                            .unwrap()
                    else {
                        panic!("the first PDU is a P-DATA-TF");
                    };
                    let shape: Vec<(u8, bool, usize)> = fragments
                        .iter()
                        .map(|f| (f.context_id, f.is_last, f.data.len() + f.placed))
                        .collect();
                    assert_eq!(
                        shape,
                        [
                            (1, false, 150_000),
                            (3, false, 13),
                            (1, false, 10),
                            (1, false, 0),
                            (1, true, 149_990)
                        ],
                        "{context}"
                    );
                    assert_eq!(&fragments[1].data[..], b"other context", "{context}");
                    // Placed or not, in order, the context's values are the large one.
                    let mut values = Vec::new();
                    let mut placed = record.bytes.as_slice();
                    for f in fragments.iter().filter(|f| f.context_id == 1) {
                        assert!(f.data.is_empty() || f.placed == 0, "{context}");
                        values.extend_from_slice(&f.data);
                        values.extend_from_slice(&placed[..f.placed]);
                        placed = &placed[f.placed..];
                    }
                    assert!(placed.is_empty(), "{context}");
                    assert_eq!(values, large, "{context}");
                    if capacity == usize::MAX {
                        assert_eq!(record.bytes, large, "{context}: all of it placed");
                    } else {
                        assert_eq!(record.bytes, large[..150_010], "{context}: up to the room");
                    }
                    let second = read_pdu(&mut reader, &mut buffer, 0, Some(&mut record))
                        .await
                        .unwrap();
                    assert!(
                        matches!(second, Received::Other(Pdu::ReleaseRQ)),
                        "{context}: {second:?}"
                    );
                    let Received::PData(fragments) =
                        read_pdu(&mut reader, &mut buffer, 0, Some(&mut record))
                            .await
                            .unwrap()
                    else {
                        panic!("the last PDU is a P-DATA-TF");
                    };
                    assert_eq!(&fragments[0].data[..], b"command", "{context}");
                    assert_eq!(fragments[0].value_type, PDataValueType::Command);
                    let tail = fragments[1].data.len() + fragments[1].placed;
                    assert_eq!(tail, 4, "{context}");
                    assert!(buffer.is_empty(), "{context}");
                    assert!(matches!(
                        read_pdu(&mut reader, &mut buffer, 0, Some(&mut record)).await,
                        Err(ReadError::Lost(_))
                    ));
                }
            }
        }
    }

    /// Items that do not add up are refused as without a placement, and a connection that
    /// ends inside a placed value is lost.
    #[tokio::test]
    async fn malformed_items_and_cut_values_are_errors_with_a_placement() {
        let mut record = MemoryPlacement::new(usize::MAX, |context| context == 1);
        let cases: [(&[u8], &str); 4] = [
            (&[4, 0, 0, 0, 0, 5, 0, 0, 0, 2, 1], "cut short"),
            (&[4, 0, 0, 0, 0, 6, 0, 0, 0, 1, 1, 0], "too short"),
            (&[4, 0, 0, 0, 0, 7, 0, 0, 0, 9, 1, 0, 1], "beyond"),
            (&[4, 0, 0, 0, 0, 106, 0, 0, 0, 102, 1, 0, 1, 2, 3], "lost"),
        ];
        for (stream, what) in cases {
            let mut reader = Pieces {
                bytes: stream,
                piece: 3,
            };
            let mut buffer = BytesMut::new();
            let read = read_pdu(&mut reader, &mut buffer, 0, Some(&mut record)).await;
            let matched = match what {
                "cut short" => matches!(
                    read,
                    Err(ReadError::MalformedPData(PDataError::ItemCutShort))
                ),
                "too short" => matches!(
                    read,
                    Err(ReadError::MalformedPData(PDataError::ItemTooShort))
                ),
                "beyond" => matches!(
                    read,
                    Err(ReadError::MalformedPData(PDataError::ItemBeyondPdu))
                ),
                _ => matches!(read, Err(ReadError::Lost(_))),
            };
            assert!(matched, "{what}: {read:?}");
        }
    }

    #[test]
    fn malformed_items_are_errors() {
        assert_eq!(fragments(Bytes::new()).unwrap(), vec![]);
        assert_eq!(
            fragments(Bytes::from_static(&[0, 0, 0, 2, 1])),
            Err(PDataError::ItemCutShort)
        );
        assert_eq!(
            fragments(Bytes::from_static(&[0, 0, 0, 1, 1, 0])),
            Err(PDataError::ItemTooShort)
        );
        assert_eq!(
            fragments(Bytes::from_static(&[0, 0, 0, 9, 1, 0, 1])),
            Err(PDataError::ItemBeyondPdu)
        );
        assert_eq!(
            fragments(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1, 0])),
            Err(PDataError::ItemBeyondPdu)
        );
    }
}
