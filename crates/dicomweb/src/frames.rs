//! WADO-RS frames and bulk data (PS3.18 10.4.1.1.4, 10.4.1.1.5): pixel data cut out of the
//! stored file without reading all of it.
//!
//! Where Pixel Data starts comes from `radport-prescan`'s walk of the file's head (the same
//! walk that guards every parse). Native pixel data is cut by arithmetic (one range read per
//! frame); encapsulated pixel data by its items: the Basic Offset Table, then the fragments'
//! item headers read one by one (8 bytes each), so only the requested frames' bytes are read
//! whole. Frames are sent as stored (their media type says the transfer syntax), unless the
//! client accepts only native ones (`multipart/related; type="application/octet-stream"`, with
//! no transfer syntax or Explicit VR Little Endian) and they are compressed: then the stored
//! file (at most [`crate::rendered::MAX_DECODE_FILE`] bytes) is decoded by the server's
//! [`crate::rendered::PixelService`], at most [`crate::rendered::MAX_DECODED_BYTES`] of frames
//! per request.

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use futures::FutureExt;

use radport_catalog::search::{InstanceAttributes, Scope};
use radport_prescan::{HeadCheck, PixelDataValue};

use crate::media::{self, MediaRange};
use crate::multipart::{self, LazyPart};
use crate::wado::Streamed;
use crate::{DicomWeb, DicomWebError, Target};

/// The longest head (bytes before Pixel Data) read to find Pixel Data.
pub const MAX_HEAD: u64 = 16 * 1024 * 1024;

/// The most frames one request names.
pub const MAX_FRAMES_PER_REQUEST: usize = 10_000;

/// The most fragments of encapsulated pixel data followed in one file.
pub const MAX_FRAGMENTS: usize = 100_000;

/// The largest 1-bit pixel data (segmentations) read whole to cut a frame out of it.
pub const MAX_PACKED_PIXEL_DATA: u64 = 256 * 1024 * 1024;

const ITEM: [u8; 4] = [0xFE, 0xFF, 0x00, 0xE0];
const SEQUENCE_DELIMITER: [u8; 4] = [0xFE, 0xFF, 0xDD, 0xE0];

/// A frame list of a path (`1,3,5`), each at least 1.
pub fn parse_frame_list(list: &str) -> Result<Vec<u32>, DicomWebError> {
    let mut frames = Vec::new();
    for n in list.split(',') {
        let n: u32 = n.trim().parse().map_err(|_| {
            DicomWebError::BadRequest(format!("{n:?} is not a frame number (1, 2, …)"))
        })?;
        if n == 0 {
            return Err(DicomWebError::BadRequest(
                "frames are numbered from 1".into(),
            ));
        }
        frames.push(n);
        if frames.len() > MAX_FRAMES_PER_REQUEST {
            return Err(DicomWebError::BadRequest(format!(
                "at most {MAX_FRAMES_PER_REQUEST} frames per request"
            )));
        }
    }
    Ok(frames)
}

/// Where an instance's pixel data is and how it is laid out.
struct PixelData {
    key: String,
    transfer_syntax: String,
    value: PixelDataValue,
    /// Offset of the value in the file.
    start: u64,
    file_size: u64,
    number_of_frames: u32,
    /// Bits of one frame (native pixel data).
    frame_bits: u64,
}

impl DicomWeb {
    /// The one instance a path names, for what `scope` may see.
    async fn instance(
        &self,
        target: &Target,
        scope: &Scope,
    ) -> Result<InstanceAttributes, DicomWebError> {
        let found = self.instances(target, scope).await?;
        found
            .into_iter()
            .find_map(|f| f.instance)
            .ok_or_else(|| DicomWebError::NotFound("no such instance".into()))
    }

    /// Finds the Pixel Data of a stored instance.
    async fn pixel_data(&self, instance: &InstanceAttributes) -> Result<PixelData, DicomWebError> {
        let key = instance.object_key.clone();
        let file_size = u64::try_from(instance.size).unwrap_or(0);
        let mut want = 64 * 1024u64;
        let value = loop {
            let head = self.archive.get_prefix(&key, want.min(file_size)).await?;
            let body = head.get(128..).unwrap_or_default();
            match radport_prescan::check_head(body, file_size.saturating_sub(128)) {
                HeadCheck::Ok(scan) => match scan.pixel_data_value {
                    Some(v) => break v,
                    None => {
                        return Err(DicomWebError::NotFound(
                            "this instance has no pixel data radport can cut into frames".into(),
                        ))
                    }
                },
                HeadCheck::NeedMoreBytes if want < MAX_HEAD && want < file_size => want *= 4,
                HeadCheck::NeedMoreBytes => {
                    return Err(DicomWebError::Unreadable(format!(
                        "the attributes before Pixel Data are longer than {MAX_HEAD} bytes"
                    )))
                }
                HeadCheck::Malformed(e) => {
                    return Err(DicomWebError::Unreadable(format!(
                        "the stored file is malformed: {e}"
                    )))
                }
            }
        };
        let stored = self
            .catalog
            .instance_metadata(std::slice::from_ref(&instance.sop_instance_uid))
            .await?;
        let json: serde_json::Value = stored
            .get(&instance.sop_instance_uid)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        let int = |tag: &str| json[tag]["Value"][0].as_u64();
        let number_of_frames = instance
            .number_of_frames
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .unwrap_or(1);
        let rows = instance
            .rows
            .and_then(|r| u64::try_from(r).ok())
            .unwrap_or(0);
        let columns = instance
            .columns
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0);
        let samples = int("00280002").unwrap_or(1);
        let bits = int("00280100").unwrap_or(16);
        let frame_bits = rows
            .checked_mul(columns)
            .and_then(|p| p.checked_mul(samples))
            .and_then(|p| p.checked_mul(bits))
            .ok_or_else(|| DicomWebError::Unreadable("absurd image dimensions".into()))?;
        Ok(PixelData {
            key,
            transfer_syntax: instance.transfer_syntax_uid.clone(),
            start: value.offset + 128,
            value,
            file_size,
            number_of_frames,
            frame_bits,
        })
    }

    /// Frames of an instance as `multipart/related`, one part per frame in the stored
    /// transfer syntax (`application/octet-stream` for native pixel data).
    pub async fn frames(
        &self,
        target: &Target,
        frames: &[u32],
        scope: &Scope,
        accept: &[MediaRange],
    ) -> Result<Streamed, DicomWebError> {
        let instance = self.instance(target, scope).await?;
        let pixel = self.pixel_data(&instance).await?;
        let decode = match check_acceptable(accept, &pixel.transfer_syntax) {
            Ok(()) => false,
            Err(refused) => {
                let compressed =
                    !media::NATIVE_TRANSFER_SYNTAXES.contains(&pixel.transfer_syntax.as_str());
                if !(compressed && self.pixels.is_some() && accepts_native(accept)) {
                    return Err(refused);
                }
                true
            }
        };
        if let Some(n) = frames.iter().find(|n| **n > pixel.number_of_frames) {
            return Err(DicomWebError::BadRequest(format!(
                "frame {n} does not exist: the instance has {} frame(s)",
                pixel.number_of_frames
            )));
        }
        if decode {
            // No codec for the stored syntax: refused as before decoding existed.
            return self
                .decoded_frames(&instance, &pixel, frames)
                .await
                .map_err(|e| match e {
                    DicomWebError::NotImplemented(why) => DicomWebError::NotAcceptable(format!(
                        "the frames are stored in {} and cannot be decoded here ({why}); \
                         accept them as stored (transfer-syntax=*)",
                        pixel.transfer_syntax
                    )),
                    other => other,
                });
        }
        let content_type = format!(
            "{}; transfer-syntax={}",
            media::pixel_media_type(&pixel.transfer_syntax),
            pixel.transfer_syntax
        );
        let contents = self.frame_contents(&pixel, frames).await?;
        let parts = contents
            .into_iter()
            .map(|content| LazyPart {
                content_type: content_type.clone(),
                length: Some(content.len() as u64),
                open: async move { Ok(stream::once(async move { Ok(content) }).boxed()) }.boxed(),
                read_ahead: 0,
            })
            .collect();
        let boundary = multipart::boundary();
        Ok(Streamed {
            content_type: format!(
                "multipart/related; type=\"{}\"; boundary={boundary}",
                media::pixel_media_type(&pixel.transfer_syntax)
            ),
            body: multipart::related(boundary, parts, &self.read_ahead),
        })
    }

    /// Frames of compressed pixel data decoded to Explicit VR Little Endian.
    async fn decoded_frames(
        &self,
        instance: &InstanceAttributes,
        pixel: &PixelData,
        frames: &[u32],
    ) -> Result<Streamed, DicomWebError> {
        let decoded_size = (pixel.frame_bits / 8)
            .checked_mul(frames.len() as u64)
            .filter(|n| *n <= crate::rendered::MAX_DECODED_BYTES)
            .ok_or_else(|| {
                DicomWebError::TooLarge(format!(
                    "the frames asked for decode to more than {} bytes: ask for fewer",
                    crate::rendered::MAX_DECODED_BYTES
                ))
            })?;
        let list = frames.to_vec();
        let contents = self
            .with_file(instance, move |service, file| {
                service.decode_frames(file, &list)
            })
            .await?;
        if contents.len() != frames.len() {
            return Err(DicomWebError::Unreadable(
                "the decoder answered another number of frames than asked".into(),
            ));
        }
        if contents.iter().map(|c| c.len() as u64).sum::<u64>() > decoded_size.saturating_mul(2) {
            return Err(DicomWebError::Unreadable(
                "the decoded frames are larger than the image attributes say".into(),
            ));
        }
        let content_type = format!(
            "application/octet-stream; transfer-syntax={}",
            media::EXPLICIT_VR_LITTLE_ENDIAN
        );
        let parts = contents
            .into_iter()
            .map(|content| {
                let content = Bytes::from(content);
                LazyPart {
                    content_type: content_type.clone(),
                    length: Some(content.len() as u64),
                    open: async move { Ok(stream::once(async move { Ok(content) }).boxed()) }
                        .boxed(),
                    read_ahead: 0,
                }
            })
            .collect();
        let boundary = multipart::boundary();
        Ok(Streamed {
            content_type: format!(
                "multipart/related; type=\"application/octet-stream\"; boundary={boundary}"
            ),
            body: multipart::related(boundary, parts, &self.read_ahead),
        })
    }

    /// The bytes of each requested frame.
    async fn frame_contents(
        &self,
        pixel: &PixelData,
        frames: &[u32],
    ) -> Result<Vec<Bytes>, DicomWebError> {
        let mut out = Vec::with_capacity(frames.len());
        match pixel.value.length {
            Some(length) => {
                let end = pixel.start + u64::from(length);
                if end > pixel.file_size {
                    return Err(DicomWebError::Unreadable(
                        "Pixel Data exceeds the file".into(),
                    ));
                }
                if pixel.frame_bits.is_multiple_of(8) {
                    let frame_bytes = pixel.frame_bits / 8;
                    for n in frames {
                        let from = pixel.start + u64::from(n - 1) * frame_bytes;
                        let to = from + frame_bytes;
                        if to > end {
                            return Err(DicomWebError::Unreadable(format!(
                                "frame {n} lies past the end of Pixel Data"
                            )));
                        }
                        out.push(self.archive.get_range(&pixel.key, from..to).await?);
                    }
                } else {
                    // 1-bit frames are packed without padding between frames.
                    if u64::from(length) > MAX_PACKED_PIXEL_DATA {
                        return Err(DicomWebError::TooLarge(format!(
                            "bit-packed pixel data larger than {MAX_PACKED_PIXEL_DATA} bytes"
                        )));
                    }
                    let all = self.archive.get_range(&pixel.key, pixel.start..end).await?;
                    for n in frames {
                        let first_bit = u64::from(n - 1) * pixel.frame_bits;
                        out.push(Bytes::from(packed_bits(&all, first_bit, pixel.frame_bits)?));
                    }
                }
            }
            None => {
                let fragments = self.fragments(pixel).await?;
                for n in frames {
                    let mut frame = Vec::new();
                    for (from, len) in fragments.frame(*n, pixel.number_of_frames)? {
                        frame.extend_from_slice(
                            &self.archive.get_range(&pixel.key, from..from + len).await?,
                        );
                    }
                    out.push(Bytes::from(frame));
                }
            }
        }
        Ok(out)
    }

    /// The Basic Offset Table and fragment positions of encapsulated pixel data.
    async fn fragments(&self, pixel: &PixelData) -> Result<Fragments, DicomWebError> {
        let unreadable =
            |m: &str| DicomWebError::Unreadable(format!("encapsulated pixel data: {m}"));
        let mut pos = pixel.start;
        let header = |bytes: &Bytes| -> Result<([u8; 4], u32), DicomWebError> {
            let tag: [u8; 4] = bytes
                .get(0..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| unreadable("truncated item header"))?;
            let len = bytes
                .get(4..8)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| unreadable("truncated item header"))?;
            Ok((tag, len))
        };
        let read_header = |pos: u64| {
            let archive = self.archive.clone();
            let key = pixel.key.clone();
            let size = pixel.file_size;
            async move {
                if pos + 8 > size {
                    return Err(unreadable("the items run past the end of the file"));
                }
                Ok::<_, DicomWebError>(archive.get_range(&key, pos..pos + 8).await?)
            }
        };
        let (tag, bot_len) = header(&read_header(pos).await?)?;
        if tag != ITEM {
            return Err(unreadable("no Basic Offset Table item"));
        }
        pos += 8;
        let mut offsets = Vec::new();
        if bot_len > 0 {
            if !bot_len.is_multiple_of(4) || u64::from(bot_len) > 4 * MAX_FRAGMENTS as u64 {
                return Err(unreadable("a Basic Offset Table of an impossible length"));
            }
            let end = pos + u64::from(bot_len);
            if end > pixel.file_size {
                return Err(unreadable("the offset table runs past the end of the file"));
            }
            let table = self.archive.get_range(&pixel.key, pos..end).await?;
            offsets = table
                .chunks_exact(4)
                .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect();
            pos = end;
        }
        let first_fragment = pos;
        let mut fragments = Vec::new();
        loop {
            let (tag, len) = header(&read_header(pos).await?)?;
            if tag == SEQUENCE_DELIMITER {
                break;
            }
            if tag != ITEM {
                return Err(unreadable(
                    "an element that is not an item among the fragments",
                ));
            }
            let value = pos + 8;
            let end = value + u64::from(len);
            if end > pixel.file_size {
                return Err(unreadable("a fragment runs past the end of the file"));
            }
            fragments.push(Fragment {
                item_offset: pos - first_fragment,
                value,
                len: u64::from(len),
            });
            if fragments.len() > MAX_FRAGMENTS {
                return Err(DicomWebError::TooLarge(format!(
                    "more than {MAX_FRAGMENTS} fragments"
                )));
            }
            pos = end;
        }
        Ok(Fragments { offsets, fragments })
    }

    /// Bulk data of an instance: Pixel Data (`7FE00010`: the whole value if native, else its
    /// frames as parts), or another binary attribute left out of the metadata.
    pub async fn bulkdata(
        &self,
        target: &Target,
        tag: &str,
        scope: &Scope,
        accept: &[MediaRange],
    ) -> Result<Streamed, DicomWebError> {
        let instance = self.instance(target, scope).await?;
        if !tag.eq_ignore_ascii_case("7FE00010") {
            return self.attribute_bulkdata(&instance, tag, accept).await;
        }
        let pixel = self.pixel_data(&instance).await?;
        check_acceptable(accept, &pixel.transfer_syntax)?;
        let Some(length) = pixel.value.length else {
            let all: Vec<u32> = (1..=pixel.number_of_frames).collect();
            return self.frames(target, &all, scope, accept).await;
        };
        let end = pixel.start + u64::from(length);
        if end > pixel.file_size {
            return Err(DicomWebError::Unreadable(
                "Pixel Data exceeds the file".into(),
            ));
        }
        let archive = self.archive.clone();
        let key = pixel.key.clone();
        let start = pixel.start;
        let content_type = format!(
            "application/octet-stream; transfer-syntax={}",
            pixel.transfer_syntax
        );
        let part = LazyPart {
            content_type,
            length: Some(u64::from(length)),
            open:
                async move { Ok(archive.get_in_pieces(&key, start..end, crate::wado::READ_PIECE)) }
                    .boxed(),
            read_ahead: u64::from(length).min(crate::wado::READ_PIECE),
        };
        let boundary = multipart::boundary();
        Ok(Streamed {
            content_type: format!(
                "multipart/related; type=\"application/octet-stream\"; boundary={boundary}"
            ),
            body: multipart::related(boundary, vec![part], &self.read_ahead),
        })
    }

    /// A binary attribute before Pixel Data, from the stored file's head.
    async fn attribute_bulkdata(
        &self,
        instance: &InstanceAttributes,
        tag: &str,
        accept: &[MediaRange],
    ) -> Result<Streamed, DicomWebError> {
        if media::multipart_transfer_syntax(accept, &["application/octet-stream"]).is_none() {
            return Err(DicomWebError::NotAcceptable(
                "bulk data is sent as multipart/related; type=\"application/octet-stream\"".into(),
            ));
        }
        let (group, element) = crate::json::tag_of(tag)
            .filter(|_| tag.len() == 8)
            .ok_or_else(|| DicomWebError::BadRequest(format!("{tag:?} is not a tag")))?;
        let file_size = u64::try_from(instance.size).unwrap_or(0);
        let head = self
            .archive
            .get_prefix(&instance.object_key, MAX_HEAD.min(file_size))
            .await?;
        let value = radport_ingest::element_bytes(&head, file_size, group, element)
            .map_err(|e| DicomWebError::Unreadable(e.to_string()))?
            .ok_or_else(|| DicomWebError::NotFound(format!("no bulk data {tag}")))?;
        let content = Bytes::from(value);
        let part = LazyPart {
            content_type: "application/octet-stream".into(),
            length: Some(content.len() as u64),
            open: async move { Ok(stream::once(async move { Ok(content) }).boxed()) }.boxed(),
            read_ahead: 0,
        };
        let boundary = multipart::boundary();
        Ok(Streamed {
            content_type: format!(
                "multipart/related; type=\"application/octet-stream\"; boundary={boundary}"
            ),
            body: multipart::related(boundary, vec![part], &self.read_ahead),
        })
    }
}

/// Frames are sent as stored: refused (406) when the client names another transfer syntax
/// (or asks for `application/octet-stream`, uncompressed, of compressed pixel data).
fn check_acceptable(accept: &[MediaRange], stored: &str) -> Result<(), DicomWebError> {
    let stored_type = media::pixel_media_type(stored);
    let native = media::NATIVE_TRANSFER_SYNTAXES.contains(&stored);
    for range in accept {
        let type_ok = match range.media_type.as_str() {
            "*/*" | "multipart/*" => true,
            "multipart/related" => match range.part_type.as_deref() {
                None | Some("*/*") => true,
                Some("application/octet-stream") => {
                    native || range.transfer_syntax.as_deref() == Some("*")
                }
                Some(t) => t == stored_type,
            },
            _ => false,
        };
        let syntax_ok = match range.transfer_syntax.as_deref() {
            None | Some("*") => true,
            Some(ts) => ts == stored || (native && media::NATIVE_TRANSFER_SYNTAXES.contains(&ts)),
        };
        if type_ok && syntax_ok {
            return Ok(());
        }
    }
    Err(DicomWebError::NotAcceptable(format!(
        "the frames are stored in {stored} ({stored_type}) and radport sends them as stored; \
         accept multipart/related; type=\"{stored_type}\" or transfer-syntax=*"
    )))
}

/// Whether a range accepts frames decoded to native pixel data: `multipart/related` (or a
/// wildcard) of `application/octet-stream` parts, in Explicit VR Little Endian or no transfer
/// syntax named.
fn accepts_native(accept: &[MediaRange]) -> bool {
    accept.iter().any(|range| {
        matches!(
            range.media_type.as_str(),
            "*/*" | "multipart/*" | "multipart/related"
        ) && matches!(
            range.part_type.as_deref(),
            None | Some("*/*") | Some("application/octet-stream")
        ) && range
            .transfer_syntax
            .as_deref()
            .is_none_or(|ts| ts == media::EXPLICIT_VR_LITTLE_ENDIAN)
    })
}

/// `bits` bits from `first_bit` of LSB-first packed data, packed again from bit 0.
fn packed_bits(data: &[u8], first_bit: u64, bits: u64) -> Result<Vec<u8>, DicomWebError> {
    let last = first_bit
        .checked_add(bits)
        .filter(|end| end.div_ceil(8) <= data.len() as u64)
        .ok_or_else(|| {
            DicomWebError::Unreadable("a frame lies past the end of Pixel Data".into())
        })?;
    let mut out = vec![0u8; usize::try_from(bits.div_ceil(8)).unwrap_or(0)];
    for (i, bit) in (first_bit..last).enumerate() {
        let byte = data[(bit / 8) as usize];
        if byte >> (bit % 8) & 1 == 1 {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    Ok(out)
}

struct Fragment {
    /// Offset of its item header from the first fragment's (what the offset table counts).
    item_offset: u64,
    /// Offset of its value in the file.
    value: u64,
    len: u64,
}

struct Fragments {
    offsets: Vec<u64>,
    fragments: Vec<Fragment>,
}

impl Fragments {
    /// The file ranges (offset, length) of frame `n` (1-based) of `frames`.
    fn frame(&self, n: u32, frames: u32) -> Result<Vec<(u64, u64)>, DicomWebError> {
        let all = |f: &Fragment| (f.value, f.len);
        if frames == 1 {
            return Ok(self.fragments.iter().map(all).collect());
        }
        let i = (n - 1) as usize;
        if self.offsets.len() == frames as usize {
            let from = self.offsets[i];
            let to = self.offsets.get(i + 1).copied().unwrap_or(u64::MAX);
            return Ok(self
                .fragments
                .iter()
                .filter(|f| f.item_offset >= from && f.item_offset < to)
                .map(all)
                .collect());
        }
        if self.fragments.len() == frames as usize {
            return Ok(vec![all(&self.fragments[i])]);
        }
        Err(DicomWebError::Unreadable(format!(
            "{} fragments for {frames} frames and no offset table: cannot tell where frame {n} \
             is",
            self.fragments.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(parse_frame_list("1,3, 2").ok(), Some(vec![1, 3, 2]));
        assert!(parse_frame_list("0").is_err());
        assert!(parse_frame_list("a").is_err());
        assert!(parse_frame_list("").is_err());
    }

    #[test]
    fn native_frames_are_asked_for() {
        let asks = |h: &str| accepts_native(&media::accept(&[h]));
        assert!(asks("multipart/related; type=\"application/octet-stream\""));
        assert!(asks(
            "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
        ));
        assert!(!asks(
            "multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50"
        ));
        assert!(!asks("multipart/related; type=\"image/jls\""));
        assert!(!asks("application/json"));
        // As stored wins when it is acceptable: `transfer-syntax=*` never asks for decoding.
        let stored = "1.2.840.10008.1.2.4.80";
        let accept =
            media::accept(&["multipart/related; type=application/octet-stream; transfer-syntax=*"]);
        assert!(check_acceptable(&accept, stored).is_ok());
        let accept = media::accept(&["multipart/related; type=application/octet-stream"]);
        assert!(check_acceptable(&accept, stored).is_err() && accepts_native(&accept));
    }

    #[test]
    fn bit_packed_frames() {
        // Two 2×2 1-bit frames, packed: frame 1 = 1,0,1,1 ; frame 2 = 0,1,1,0.
        let data = [0b0110_1101u8];
        assert_eq!(packed_bits(&data, 0, 4).ok(), Some(vec![0b1101]));
        assert_eq!(packed_bits(&data, 4, 4).ok(), Some(vec![0b0110]));
        assert!(packed_bits(&data, 6, 4).is_err());
    }
}
