//! Sending one stored instance as a C-STORE-RQ: the sub-operation of C-GET (on the requester's
//! own association) and of C-MOVE (on ours to the destination).
//!
//! The stored file is streamed from the archive: its file meta group is skipped and the data
//! set's bytes go out as they are, in P-DATA fragments of the peer's maximum PDU (at most
//! [`MAX_FRAGMENT`]), so memory per retrieve is one fragment whatever the instance's size.
//! That needs a presentation context for the SOP class in the stored transfer syntax. Failing
//! that, and only for instances of bounded size ([`TranscodeLimits`]), the instance is
//! converted by the [`Transcoder`] the binary plugs in (the pipeline's codecs, so this crate
//! builds none) into a transfer syntax the peer accepted; otherwise the sub-operation fails.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;
use futures::StreamExt;
use radport_archive::{Archive, ArchiveError};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::command::StoreRequest;

/// Largest data fragment sent, whatever the peer accepts (memory per retrieve).
pub const MAX_FRAGMENT: usize = 1024 * 1024;

/// Smallest piece read from the archive at once (one fragment's worth if that is larger).
pub const READ_SIZE: usize = 256 * 1024;

/// Uncompressed transfer syntaxes a [`Transcoder`] is asked for, in order of preference.
pub const UNCOMPRESSED: [&str; 3] = [
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
];

/// Converts a stored Part-10 file into a data set of another transfer syntax (decompressing
/// if it must). Runs on a blocking thread.
pub trait Transcoder: Send + Sync + std::fmt::Debug {
    /// The data set of `file` (a whole Part-10 file) encoded in `transfer_syntax_uid`.
    fn transcode(&self, file: &[u8], transfer_syntax_uid: &str) -> Result<Vec<u8>, String>;
}

/// Which instances may be converted: at most `max_stored_bytes` stored and at most
/// `max_pixel_bytes` of decoded pixels (rows × columns × frames × 4, an upper bound for 16-bit
/// samples and 8-bit colour). Conversions hold the file and its result in memory.
#[derive(Debug, Clone, Copy)]
pub struct TranscodeLimits {
    /// Largest stored file converted.
    pub max_stored_bytes: u64,
    /// Largest decoded pixel data (estimated) converted.
    pub max_pixel_bytes: u64,
}

impl Default for TranscodeLimits {
    fn default() -> Self {
        Self {
            max_stored_bytes: 64 * 1024 * 1024,
            max_pixel_bytes: 256 * 1024 * 1024,
        }
    }
}

/// One instance to send, as the catalog knows it.
#[derive(Debug, Clone)]
pub struct Item {
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Stored transfer syntax.
    pub transfer_syntax_uid: String,
    /// Archive key.
    pub object_key: String,
    /// Stored size.
    pub size: u64,
    /// Rows × columns × frames, if known.
    pub pixels: Option<u64>,
}

/// An accepted presentation context the instance may go over.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Presentation context ID.
    pub id: u8,
    /// Abstract syntax (SOP class).
    pub abstract_syntax: String,
    /// Transfer syntax.
    pub transfer_syntax: String,
}

/// How an instance goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// As stored, on this context.
    AsStored(u8),
    /// Converted to the context's transfer syntax.
    Converted(u8, String),
    /// Not at all; why.
    Impossible(String),
}

/// Picks the context for `item`: one in its stored transfer syntax, else (within the limits)
/// an uncompressed one to convert to.
pub fn plan(
    item: &Item,
    offers: &[Offer],
    transcoder: Option<&Arc<dyn Transcoder>>,
    limits: TranscodeLimits,
) -> Plan {
    let for_class: Vec<&Offer> = offers
        .iter()
        .filter(|o| o.abstract_syntax == item.sop_class_uid)
        .collect();
    if for_class.is_empty() {
        return Plan::Impossible(format!(
            "no presentation context for SOP class {}",
            item.sop_class_uid
        ));
    }
    if let Some(o) = for_class
        .iter()
        .find(|o| o.transfer_syntax == item.transfer_syntax_uid)
    {
        return Plan::AsStored(o.id);
    }
    if transcoder.is_none() {
        return Plan::Impossible("no context in the stored transfer syntax".into());
    }
    let too_big = item.size > limits.max_stored_bytes
        || item
            .pixels
            .is_some_and(|p| p.saturating_mul(4) > limits.max_pixel_bytes);
    if too_big {
        return Plan::Impossible(format!(
            "no context in the stored transfer syntax {} and the instance is too large to \
             convert",
            item.transfer_syntax_uid
        ));
    }
    for ts in UNCOMPRESSED {
        if let Some(o) = for_class.iter().find(|o| o.transfer_syntax == ts) {
            return Plan::Converted(o.id, ts.to_string());
        }
    }
    Plan::Impossible(format!(
        "no context in the stored transfer syntax {} or an uncompressed one",
        item.transfer_syntax_uid
    ))
}

/// Anything P-DATA can be sent on: our server association (C-GET) or client association
/// (C-MOVE).
pub trait PduSink {
    /// Sends one PDU.
    fn send_pdu(
        &mut self,
        pdu: &Pdu,
    ) -> impl std::future::Future<Output = Result<(), dicom_ul::association::Error>> + Send;
}

impl<S> PduSink for dicom_ul::association::AsyncServerAssociation<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), dicom_ul::association::Error> {
        self.send(pdu).await
    }
}

impl<S> PduSink for dicom_ul::association::client::AsyncClientAssociation<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), dicom_ul::association::Error> {
        self.send(pdu).await
    }
}

/// Why an instance was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Before anything went out: the sub-operation failed, the association is intact.
    #[error("{0}")]
    NotSent(String),
    /// Part of the instance went out: the association cannot continue.
    #[error("{0}")]
    Broken(String),
}

/// Where the data set's bytes come from.
enum Body {
    /// Streamed from the archive: the chunks after the file meta group.
    Stored {
        first: Bytes,
        rest: futures::stream::BoxStream<'static, Result<Bytes, ArchiveError>>,
    },
    /// Converted, whole.
    Converted(Bytes),
}

/// Offset of the data set in a Part-10 file: after the preamble, `DICM` and the file meta
/// group (walked element by element, Explicit VR Little Endian). `Ok(None)`: more bytes are
/// needed.
pub fn data_set_offset(head: &[u8]) -> Result<Option<usize>, String> {
    if head.len() < 132 {
        return Ok(None);
    }
    if &head[128..132] != b"DICM" {
        return Err("stored object is not a Part-10 file".into());
    }
    let mut at = 132usize;
    loop {
        let Some(group) = head.get(at..at + 2) else {
            return Ok(None);
        };
        if u16::from_le_bytes([group[0], group[1]]) != 0x0002 {
            return Ok(Some(at));
        }
        let Some(header) = head.get(at..at + 8) else {
            return Ok(None);
        };
        let vr = [header[4], header[5]];
        let long = matches!(
            &vr,
            b"OB"
                | b"OW"
                | b"OF"
                | b"OD"
                | b"OL"
                | b"OV"
                | b"SQ"
                | b"UT"
                | b"UN"
                | b"UC"
                | b"UR"
                | b"SV"
                | b"UV"
        );
        let (length, header_length) = if long {
            let Some(l) = head.get(at + 8..at + 12) else {
                return Ok(None);
            };
            (u32::from_le_bytes([l[0], l[1], l[2], l[3]]), 12usize)
        } else {
            (
                u32::from(u16::from_le_bytes([header[6], header[7]])),
                8usize,
            )
        };
        if length == u32::MAX {
            return Err("file meta element of undefined length".into());
        }
        at = at
            .checked_add(header_length)
            .and_then(|a| a.checked_add(length as usize))
            .ok_or("file meta group overflows")?;
        if at > 64 * 1024 {
            return Err("file meta group longer than 64 KiB".into());
        }
    }
}

/// Opens the stored instance: its data set as stored, or converted. Nothing is sent yet.
async fn open(
    archive: &Archive,
    item: &Item,
    convert_to: Option<&str>,
    transcoder: Option<&Arc<dyn Transcoder>>,
    read_size: usize,
) -> Result<Body, String> {
    let (_, mut stream) = archive
        .get_chunks(&item.object_key, read_size)
        .await
        .map_err(|e| format!("cannot read the stored instance: {e}"))?;
    if let (Some(ts), Some(transcoder)) = (convert_to, transcoder) {
        let limit = usize::try_from(item.size.saturating_add(1)).unwrap_or(usize::MAX);
        let mut file = Vec::with_capacity(limit.min(64 * 1024 * 1024));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("cannot read the stored instance: {e}"))?;
            if file.len() + chunk.len() > limit {
                return Err("stored instance larger than recorded".into());
            }
            file.extend_from_slice(&chunk);
        }
        let transcoder = transcoder.clone();
        let ts = ts.to_string();
        let converted = tokio::task::spawn_blocking(move || transcoder.transcode(&file, &ts))
            .await
            .map_err(|e| format!("conversion failed: {e}"))??;
        return Ok(Body::Converted(Bytes::from(converted)));
    }
    // Enough of the head for the file meta group.
    let mut head = BytesMut::new();
    loop {
        match data_set_offset(&head)? {
            Some(offset) => {
                let first = head.freeze().slice(offset..);
                return Ok(Body::Stored {
                    first,
                    rest: stream,
                });
            }
            None => match stream.next().await {
                Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("cannot read the stored instance: {e}")),
                None => return Err("stored instance ends in its file meta group".into()),
            },
        }
    }
}

async fn send_fragment<A: PduSink>(
    association: &mut A,
    context_id: u8,
    value_type: PDataValueType,
    is_last: bool,
    data: Vec<u8>,
) -> Result<(), SendError> {
    association
        .send_pdu(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: context_id,
                value_type,
                is_last,
                data,
            }],
        })
        .await
        .map_err(|e| SendError::Broken(format!("cannot send: {e}")))
}

/// Sends `item` as a C-STORE-RQ (command, then its data set) on `context_id`, converting it
/// to `convert_to` if given. `max_pdu` is the peer's maximum PDU length (0: unlimited).
#[allow(clippy::too_many_arguments)]
pub async fn send_instance<A: PduSink>(
    association: &mut A,
    archive: &Archive,
    item: &Item,
    context_id: u8,
    convert_to: Option<&str>,
    transcoder: Option<&Arc<dyn Transcoder>>,
    request: &StoreRequest<'_>,
    max_pdu: u32,
) -> Result<(), SendError> {
    // PDV item header: 4 bytes of length, context ID, control header.
    let fragment = match max_pdu {
        0 => MAX_FRAGMENT,
        n => (n as usize).saturating_sub(6).clamp(1, MAX_FRAGMENT),
    };
    // Read in larger pieces than a small PDU (DCMTK's default is 16 KiB): one blocking read
    // per piece on local disk.
    let read_size = fragment.clamp(READ_SIZE, MAX_FRAGMENT);
    let body = open(archive, item, convert_to, transcoder, read_size)
        .await
        .map_err(SendError::NotSent)?;
    let command = request.encode();
    if command.len() > fragment {
        return Err(SendError::NotSent(
            "the peer's maximum PDU is too small for a command".into(),
        ));
    }
    send_fragment(
        association,
        context_id,
        PDataValueType::Command,
        true,
        command,
    )
    .await?;
    match body {
        Body::Converted(bytes) => {
            let mut chunks = bytes.chunks(fragment).peekable();
            if chunks.peek().is_none() {
                return send_fragment(association, context_id, PDataValueType::Data, true, vec![])
                    .await;
            }
            while let Some(chunk) = chunks.next() {
                let last = chunks.peek().is_none();
                send_fragment(
                    association,
                    context_id,
                    PDataValueType::Data,
                    last,
                    chunk.to_vec(),
                )
                .await?;
            }
            Ok(())
        }
        Body::Stored { first, mut rest } => {
            // Fill fragments to the limit; the last one goes out when the stream ends.
            let mut pending = BytesMut::with_capacity(fragment);
            let mut next = Some(first);
            loop {
                let Some(mut chunk) = next.take() else {
                    match rest.next().await {
                        Some(Ok(chunk)) => {
                            next = Some(chunk);
                            continue;
                        }
                        Some(Err(e)) => {
                            return Err(SendError::Broken(format!(
                                "reading the stored instance failed half-way: {e}"
                            )))
                        }
                        None => break,
                    }
                };
                while !chunk.is_empty() {
                    let take = (fragment - pending.len()).min(chunk.len());
                    pending.extend_from_slice(&chunk.split_to(take));
                    if pending.len() == fragment {
                        let data = pending.split().to_vec();
                        send_fragment(association, context_id, PDataValueType::Data, false, data)
                            .await?;
                    }
                }
            }
            send_fragment(
                association,
                context_id,
                PDataValueType::Data,
                true,
                pending.to_vec(),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(class: &str, ts: &str, size: u64) -> Item {
        Item {
            sop_class_uid: class.into(),
            sop_instance_uid: "1.2".into(),
            transfer_syntax_uid: ts.into(),
            object_key: "k".into(),
            size,
            pixels: Some(512 * 512),
        }
    }

    #[derive(Debug)]
    struct Nothing;
    impl Transcoder for Nothing {
        fn transcode(&self, _: &[u8], _: &str) -> Result<Vec<u8>, String> {
            Err("no".into())
        }
    }

    #[test]
    fn plans_prefer_the_stored_syntax_then_conversion_within_limits() {
        let offers = vec![
            Offer {
                id: 1,
                abstract_syntax: "CT".into(),
                transfer_syntax: "1.2.840.10008.1.2".into(),
            },
            Offer {
                id: 3,
                abstract_syntax: "CT".into(),
                transfer_syntax: "1.2.840.10008.1.2.4.70".into(),
            },
        ];
        let t: Arc<dyn Transcoder> = Arc::new(Nothing);
        let limits = TranscodeLimits::default();
        assert_eq!(
            plan(
                &item("CT", "1.2.840.10008.1.2.4.70", 10),
                &offers,
                None,
                limits
            ),
            Plan::AsStored(3)
        );
        assert_eq!(
            plan(
                &item("CT", "1.2.840.10008.1.2.1", 10),
                &offers,
                Some(&t),
                limits
            ),
            Plan::Converted(1, "1.2.840.10008.1.2".into())
        );
        assert!(matches!(
            plan(
                &item("CT", "1.2.840.10008.1.2.1", 10),
                &offers,
                None,
                limits
            ),
            Plan::Impossible(_)
        ));
        assert!(matches!(
            plan(
                &item("CT", "1.2.840.10008.1.2.1", 1 << 40),
                &offers,
                Some(&t),
                limits
            ),
            Plan::Impossible(_)
        ));
        assert!(matches!(
            plan(
                &item("MR", "1.2.840.10008.1.2", 10),
                &offers,
                Some(&t),
                limits
            ),
            Plan::Impossible(_)
        ));
    }

    #[test]
    fn file_meta_is_walked() {
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        // (0002,0000) UL 4
        file.extend_from_slice(&[2, 0, 0, 0, b'U', b'L', 4, 0, 10, 0, 0, 0]);
        // (0002,0001) OB 2
        file.extend_from_slice(&[2, 0, 1, 0, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1]);
        let data_start = file.len();
        file.extend_from_slice(&[8, 0, 0x16, 0]);
        assert_eq!(data_set_offset(&file[..140]), Ok(None));
        assert_eq!(data_set_offset(&file), Ok(Some(data_start)));
        assert!(data_set_offset(&[0u8; 200]).is_err());
    }
}
