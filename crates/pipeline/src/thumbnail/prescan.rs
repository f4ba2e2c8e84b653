//! A structural check of a Part-10 file before the DICOM parser sees it.
//!
//! The dicom-rs 0.10 parser allocates and zero-fills every value at its declared length before
//! reading it, and builds nested sequences recursively. A 200-byte file declaring a 3 GB element
//! thus costs 3 GB and tens of seconds, and sequences nested a hundred thousand deep can exhaust
//! the stack (an abort, which `catch_unwind` cannot catch). This walk, over the same bytes the
//! parser will read (inflated first for the deflated transfer syntax), checks that every declared
//! length fits in what remains of its container and bounds the nesting depth. It does not judge
//! anything else: a file it passes may still be rejected by the parser.

use std::io::Read;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

/// Deepest sequence nesting accepted.
const MAX_DEPTH: usize = 24;
/// Largest inflated data set accepted for the deflated transfer syntaxes.
const MAX_INFLATED: u64 = 1 << 30;

const UNDEFINED: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    ExplicitLe,
    ImplicitLe,
    ExplicitBe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    End,
    ItemDelimiter,
    SequenceDelimiter,
}

/// Checks `body`, which starts with the "DICM" magic (the preamble already stripped).
pub(crate) fn check(body: &[u8]) -> Result<(), String> {
    // File meta group: always explicit VR little endian.
    let mut pos = 4usize;
    let mut transfer_syntax = String::new();
    while body.len().saturating_sub(pos) >= 8
        && u16::from_le_bytes([body[pos], body[pos + 1]]) == 0x0002
    {
        let element = u16::from_le_bytes([body[pos + 2], body[pos + 3]]);
        let Some((header, _vr, len)) = explicit_header(body, pos, Encoding::ExplicitLe) else {
            return Ok(()); // truncated: the parser reports it
        };
        pos += header;
        if len == UNDEFINED || len as usize > body.len() - pos {
            return Err(format!(
                "file meta element (0002,{element:04X}) declares {len} bytes, {} remain",
                body.len() - pos
            ));
        }
        if element == 0x0010 {
            transfer_syntax = String::from_utf8_lossy(&body[pos..pos + len as usize])
                .trim_end_matches(['\0', ' '])
                .to_owned();
        }
        pos += len as usize;
    }
    match transfer_syntax.as_str() {
        "1.2.840.10008.1.2" => walk(body, pos, body.len(), Encoding::ImplicitLe, 0).map(drop),
        "1.2.840.10008.1.2.2" => walk(body, pos, body.len(), Encoding::ExplicitBe, 0).map(drop),
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => {
            let mut inflated = Vec::new();
            flate2::read::DeflateDecoder::new(&body[pos..])
                .take(MAX_INFLATED + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| format!("deflated data set: {e}"))?;
            if inflated.len() as u64 > MAX_INFLATED {
                return Err(format!(
                    "deflated data set inflates beyond {MAX_INFLATED} bytes"
                ));
            }
            walk(&inflated, 0, inflated.len(), Encoding::ExplicitLe, 0).map(drop)
        }
        _ => walk(body, pos, body.len(), Encoding::ExplicitLe, 0).map(drop),
    }
}

fn u16_at(buf: &[u8], pos: usize, enc: Encoding) -> u16 {
    let b = [buf[pos], buf[pos + 1]];
    if enc == Encoding::ExplicitBe {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn u32_at(buf: &[u8], pos: usize, enc: Encoding) -> u32 {
    let b = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
    if enc == Encoding::ExplicitBe {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// (header length, VR, value length) of the element at `pos`, if the header is complete.
fn explicit_header(buf: &[u8], pos: usize, enc: Encoding) -> Option<(usize, Option<VR>, u32)> {
    let vr_bytes = buf.get(pos + 4..pos + 6)?;
    let vr = VR::from_binary([vr_bytes[0], vr_bytes[1]]);
    let short = matches!(
        vr,
        Some(
            VR::AE
                | VR::AS
                | VR::AT
                | VR::CS
                | VR::DA
                | VR::DS
                | VR::DT
                | VR::FL
                | VR::FD
                | VR::IS
                | VR::LO
                | VR::LT
                | VR::PN
                | VR::SH
                | VR::SL
                | VR::SS
                | VR::ST
                | VR::TM
                | VR::UI
                | VR::UL
                | VR::US
        )
    );
    if short {
        buf.get(pos + 6..pos + 8)?;
        Some((8, vr, u32::from(u16_at(buf, pos + 6, enc))))
    } else {
        buf.get(pos + 8..pos + 12)?;
        Some((12, vr.or(Some(VR::UN)), u32_at(buf, pos + 8, enc)))
    }
}

fn is_sequence_in_dictionary(tag: Tag) -> bool {
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| e.vr() == VirtualVr::Exact(VR::SQ))
}

/// Walks data elements in `buf[pos..end]`; stops at `end` or after a delimitation item.
fn walk(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    enc: Encoding,
    depth: usize,
) -> Result<(usize, Stop), String> {
    if depth > MAX_DEPTH {
        return Err(format!("sequences nested deeper than {MAX_DEPTH}"));
    }
    while pos < end {
        if end - pos < 8 {
            return Ok((end, Stop::End));
        }
        let group = u16_at(buf, pos, enc);
        let element = u16_at(buf, pos + 2, enc);
        if group == 0xFFFE {
            pos += 8;
            return match element {
                0xE00D => Ok((pos, Stop::ItemDelimiter)),
                0xE0DD => Ok((pos, Stop::SequenceDelimiter)),
                _ => Err(format!(
                    "item (FFFE,{element:04X}) where a data element was expected"
                )),
            };
        }
        let tag = Tag(group, element);
        let (header, vr, len) = match enc {
            Encoding::ImplicitLe => (8, None, u32_at(buf, pos + 4, enc)),
            _ => match explicit_header(buf, pos, enc) {
                Some(h) => h,
                None => return Ok((end, Stop::End)),
            },
        };
        if header > end - pos {
            return Err(format!(
                "element ({group:04X},{element:04X}) crosses its container"
            ));
        }
        pos += header;
        if len == UNDEFINED {
            pos = if tag == Tag(0x7FE0, 0x0010) {
                walk_fragments(buf, pos, end, enc)?
            } else {
                walk_items(buf, pos, end, enc, depth + 1)?
            };
            continue;
        }
        let len = len as usize;
        if len > end - pos {
            return Err(format!(
                "element ({group:04X},{element:04X}) declares {len} bytes, {} remain",
                end - pos
            ));
        }
        let sequence = match enc {
            Encoding::ImplicitLe => is_sequence_in_dictionary(tag),
            _ => vr == Some(VR::SQ),
        };
        if sequence {
            walk_items(buf, pos, pos + len, enc, depth + 1)?;
        }
        pos += len;
    }
    Ok((pos, Stop::End))
}

/// Walks the items of a sequence in `buf[pos..end]`, up to `end` or its delimitation item.
fn walk_items(
    buf: &[u8],
    mut pos: usize,
    end: usize,
    enc: Encoding,
    depth: usize,
) -> Result<usize, String> {
    if depth > MAX_DEPTH {
        return Err(format!("sequences nested deeper than {MAX_DEPTH}"));
    }
    while pos < end {
        if end - pos < 8 {
            return Ok(end);
        }
        let (group, element) = (u16_at(buf, pos, enc), u16_at(buf, pos + 2, enc));
        let len = u32_at(buf, pos + 4, enc);
        pos += 8;
        match (group, element) {
            (0xFFFE, 0xE0DD) => return Ok(pos),
            (0xFFFE, 0xE000) if len == UNDEFINED => {
                let (after, stop) = walk(buf, pos, end, enc, depth)?;
                pos = after;
                if stop == Stop::SequenceDelimiter {
                    return Ok(pos);
                }
            }
            (0xFFFE, 0xE000) => {
                let len = len as usize;
                if len > end - pos {
                    return Err(format!("item declares {len} bytes, {} remain", end - pos));
                }
                walk(buf, pos, pos + len, enc, depth)?;
                pos += len;
            }
            _ => {
                return Err(format!(
                    "({group:04X},{element:04X}) where a sequence item was expected"
                ))
            }
        }
    }
    Ok(pos)
}

/// Walks the fragments of encapsulated pixel data, up to the sequence delimitation item.
fn walk_fragments(buf: &[u8], mut pos: usize, end: usize, enc: Encoding) -> Result<usize, String> {
    while end - pos >= 8 {
        let (group, element) = (u16_at(buf, pos, enc), u16_at(buf, pos + 2, enc));
        let len = u32_at(buf, pos + 4, enc);
        pos += 8;
        match (group, element) {
            (0xFFFE, 0xE0DD) => return Ok(pos),
            (0xFFFE, 0xE000) if len != UNDEFINED && len as usize <= end - pos => {
                pos += len as usize;
            }
            _ => return Err("malformed encapsulated pixel data".to_owned()),
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ts: &str) -> Vec<u8> {
        let mut out = b"DICM".to_vec();
        let mut uid = ts.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        out.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        out.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        out.extend_from_slice(&uid);
        out
    }

    #[test]
    fn rejects_lengths_beyond_the_input() {
        let mut file = meta("1.2.840.10008.1.2.1");
        // (0010,0010) PN of 10 bytes: fine.
        file.extend_from_slice(&[0x10, 0x00, 0x10, 0x00, b'P', b'N', 10, 0]);
        file.extend_from_slice(b"Doe^John  ");
        assert!(check(&file).is_ok());
        // (0011,0010) OB declaring 0xC8C8C8C8 bytes.
        file.extend_from_slice(&[
            0x11, 0x00, 0x10, 0x00, b'O', b'B', 0, 0, 0xC8, 0xC8, 0xC8, 0xC8,
        ]);
        assert!(check(&file).unwrap_err().contains("declares"));
    }

    #[test]
    fn rejects_deep_nesting() {
        let mut file = meta("1.2.840.10008.1.2.1");
        for _ in 0..1000 {
            // (0040,A730) SQ undefined length, then an item of undefined length.
            file.extend_from_slice(&[
                0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            file.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(check(&file).unwrap_err().contains("nested"));
    }

    #[test]
    fn checks_inside_defined_length_sequences_in_implicit_vr() {
        let mut file = meta("1.2.840.10008.1.2");
        // (0008,1115) Referenced Series Sequence (SQ in the dictionary), 20 bytes: one item of
        // 12 bytes holding an element that declares 1 GB.
        file.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, 20, 0, 0, 0]);
        file.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 12, 0, 0, 0]);
        file.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, 0, 0, 0, 0x40, 0, 0, 0, 0]);
        assert!(check(&file).unwrap_err().contains("declares"));
    }
}
