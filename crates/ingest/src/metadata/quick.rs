//! The attributes of an ordinary data set read in one pass over its bytes: the same
//! [`InstanceRecord`] and byte for byte the same DICOM JSON as dicom-rs (`dicom-object`'s
//! parse, `dicom-json`'s writer) give in [`super::extract_record`] — 5.7 µs instead of 27 for
//! a CT slice, the prescan included (that parse and its JSON were 6–14 % of the receiver's
//! CPU per instance, `docs/performance.md`).
//!
//! "Ordinary": explicit VR little endian, not deflated; tags ascending in every data set;
//! every length defined except those of sequences and items; (0008,0005) absent, empty, or
//! one of the character sets whose decoding is trivial (the default repertoire and ISO-IR 100,
//! both read as ISO-8859-1 by dicom-rs, and ISO-IR 192, UTF-8 — valid UTF-8 only), and only
//! at the top level; numbers of whole units and finite; value representations known; the
//! catalog's attributes of the value representations they have. Anything else returns `None`
//! and is read by dicom-rs, which also decides every error: this reader only ever succeeds.
//!
//! The rules mirrored from dicom-rs (0.10), each where it is applied: text split at `\`
//! before it is decoded, each value trimmed of trailing spaces and NULs; AE, AS and CS
//! decoded in the default repertoire whatever the character set (UR not: it is read as one
//! text); DS and IS kept as strings; an element whose dictionary VR is "US or SS" read as SS
//! once Pixel Representation (0028,0103) says the pixels are signed; person names split at
//! `=` into their three groups; binary values as base64; nothing past the top level's Pixel
//! Data. Debug builds check every instance read here against dicom-rs
//! ([`super::extract_record`]), so every test that stores an instance checks this reader too.

use std::borrow::Cow;

use base64::Engine;
use dicom_core::dictionary::{DataDictionary, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use radport_catalog::InstanceRecord;
use radport_prescan::has_short_length;

use super::{is_bulk, JSON_INLINE_BINARY_LIMIT};

const PIXEL_DATA: u32 = 0x7FE0_0010;
const ICON_IMAGE_SEQUENCE: u32 = 0x0088_0200;
const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;
const PIXEL_REPRESENTATION: u32 = 0x0028_0103;
const ITEM: u32 = 0xFFFE_E000;
const ITEM_DELIMITATION: u32 = 0xFFFE_E00D;
const SEQUENCE_DELIMITATION: u32 = 0xFFFE_E0DD;
const UNDEFINED: u32 = u32::MAX;

/// The attributes of the Part-10 bytes `head` (preamble included), whose data set is explicit
/// VR little endian and not deflated (the prescan's verdict), or `None` when they are not an
/// ordinary data set (module doc). `truncated`: the file goes on past `head`.
pub(super) fn read(head: &[u8], truncated: bool) -> Option<InstanceRecord> {
    // The meta group's length, (0002,0000) UL, first: the data set follows the group.
    let [0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, l0, l1, l2, l3] = *head.get(132..144)? else {
        return None;
    };
    let start = usize::try_from(u32::from_le_bytes([l0, l1, l2, l3]))
        .ok()?
        .checked_add(144)?;
    if !meta_group_as_dicom_rs_takes_it(head, start) {
        return None;
    }
    let mut reader = Reader {
        bytes: head,
        utf8: false,
        signed_pixels: None,
        json: Vec::with_capacity(2048),
        fields: Fields::default(),
    };
    reader.json.push(b'{');
    reader.data_set(start, Extent::TopLevel { truncated }, 0)?;
    reader.json.push(b'}');
    reader.record()
}

/// Whether dicom-rs's reading of the meta group (`FileMetaTable`) takes the group from 144 to
/// `start` — elements of group 0002 only, of defined lengths, ending at `start` — with what
/// it checks: (0002,0001) of 2 bytes, the UIDs it keeps of digits, dots, NULs and white space,
/// the AE titles and version name of at most 16 bytes, the creator UID of at most 64, a
/// Transfer Syntax UID; Private Information (0002,0102) is left to it.
fn meta_group_as_dicom_rs_takes_it(head: &[u8], start: usize) -> bool {
    let mut transfer_syntax = false;
    let mut pos = 144;
    while pos < start {
        let Some(element) = meta_element(head, pos) else {
            return false;
        };
        let (tag, value, end) = element;
        let fits = match tag {
            0x0002_0001 => value.len() == 2,
            0x0002_0002 | 0x0002_0003 | 0x0002_0010 | 0x0002_0012 => {
                transfer_syntax |= tag == 0x0002_0010;
                value
                    .iter()
                    .all(|&b| b == b'.' || b == 0 || b.is_ascii_digit() || b.is_ascii_whitespace())
            }
            0x0002_0013 | 0x0002_0016 | 0x0002_0017 | 0x0002_0018 => value.len() <= 16,
            0x0002_0100 => value.len() <= 64,
            0x0002_0102 => false,
            _ => tag >> 16 == 0x0002,
        };
        if !fits {
            return false;
        }
        pos = end;
    }
    pos == start && transfer_syntax
}

/// The meta group's element at `pos`: its tag, its value, the offset past it.
fn meta_element(head: &[u8], pos: usize) -> Option<(u32, &[u8], usize)> {
    let tag = tag_at(head, pos)?;
    let vr = VR::from_binary(head.get(pos + 4..pos + 6)?.try_into().ok()?)?;
    let (length, value_at) = if has_short_length(vr) {
        (u32::from(u16_at(head, pos + 6)?), pos + 8)
    } else {
        (u32_at(head, pos + 8)?, pos + 12)
    };
    if length == UNDEFINED {
        return None;
    }
    let end = value_at.checked_add(usize::try_from(length).ok()?)?;
    Some((tag, head.get(value_at..end)?, end))
}

/// Where a data set ends.
#[derive(Clone, Copy)]
enum Extent {
    /// The top level: at Pixel Data (or any later tag) or at the end of the bytes, which must
    /// be the end of the file.
    TopLevel { truncated: bool },
    /// An item of defined length: at this offset.
    At(usize),
    /// An item of undefined length: at its Item Delimitation Item.
    Delimited,
}

/// The catalog's attributes, as found at the top level: value representation and value bytes.
#[derive(Default)]
struct Fields<'a> {
    found: [Option<(VR, &'a [u8])>; FIELD_TAGS.len()],
}

/// The top-level attributes the catalog keeps, in [`Fields::found`]'s order.
const FIELD_TAGS: [u32; 23] = [
    0x0008_0016, // 0 SOP Class UID
    0x0008_0018, // 1 SOP Instance UID
    0x0020_000E, // 2 Series Instance UID
    0x0020_000D, // 3 Study Instance UID
    0x0010_0020, // 4 Patient ID
    0x0010_0010, // 5 Patient's Name
    0x0010_0030, // 6 Patient's Birth Date
    0x0010_0040, // 7 Patient's Sex
    0x0008_0020, // 8 Study Date
    0x0008_0030, // 9 Study Time
    0x0008_1030, // 10 Study Description
    0x0008_0050, // 11 Accession Number
    0x0020_0010, // 12 Study ID
    0x0008_0090, // 13 Referring Physician's Name
    0x0008_0060, // 14 Modality
    0x0018_0015, // 15 Body Part Examined
    0x0008_103E, // 16 Series Description
    0x0020_0011, // 17 Series Number (integer)
    0x0008_0021, // 18 Series Date
    0x0020_0013, // 19 Instance Number (integer)
    0x0028_0010, // 20 Rows (integer)
    0x0028_0011, // 21 Columns (integer)
    0x0028_0008, // 22 Number of Frames (integer)
];

struct Reader<'a> {
    bytes: &'a [u8],
    /// Text in the declared character set is UTF-8 (ISO-IR 192), else ISO-8859-1.
    utf8: bool,
    /// dicom-rs's "pixels are signed", from the last Pixel Representation read.
    signed_pixels: Option<bool>,
    json: Vec<u8>,
    fields: Fields<'a>,
}

/// How a value representation's value is read (dicom-rs's `read_value_preserved`).
enum Kind {
    /// Text split at `\`; `declared`: in the declared character set.
    Texts {
        declared: bool,
    },
    /// One text in the declared character set (LT, ST, UR, UT).
    Text {
        declared: bool,
    },
    Numbers,
    Tags,
    Binary,
}

fn kind(vr: VR) -> Kind {
    match vr {
        VR::AE | VR::AS | VR::CS => Kind::Texts { declared: false },
        VR::PN | VR::SH | VR::LO | VR::UC | VR::UI | VR::IS | VR::DS | VR::DA | VR::TM | VR::DT => {
            Kind::Texts { declared: true }
        }
        VR::UT | VR::ST | VR::LT | VR::UR => Kind::Text { declared: true },
        VR::US | VR::SS | VR::UL | VR::SL | VR::FL | VR::FD | VR::SV | VR::UV => Kind::Numbers,
        VR::AT => Kind::Tags,
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN | VR::SQ => Kind::Binary,
    }
}

/// Bytes per value of a binary or numeric value representation (1 for the others).
fn unit(vr: VR) -> usize {
    radport_prescan::number_size(vr) as usize
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn tag_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some((u32::from(u16_at(bytes, at)?) << 16) | u32::from(u16_at(bytes, at + 2)?))
}

/// `bytes` as text: ISO-8859-1 (each byte its code point), or UTF-8 (`None` if invalid:
/// dicom-rs replaces such bytes with escapes; that is left to it).
fn decode(bytes: &[u8], utf8: bool) -> Option<Cow<'_, str>> {
    if bytes.is_ascii() || utf8 {
        return std::str::from_utf8(bytes).ok().map(Cow::Borrowed);
    }
    Some(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
}

fn trim_value(text: &str) -> &str {
    text.trim_end_matches([' ', '\0'])
}

impl<'a> Reader<'a> {
    /// Reads the data set from `pos` to its end, writing its elements into the JSON object
    /// already opened; the offset past it (past an item's delimiter).
    fn data_set(&mut self, mut pos: usize, extent: Extent, depth: usize) -> Option<usize> {
        if depth > radport_prescan::MAX_DEPTH {
            return None;
        }
        let bytes = self.bytes;
        let mut previous: Option<u32> = None;
        let mut first = true;
        loop {
            match extent {
                Extent::TopLevel { truncated } if pos >= bytes.len() => {
                    return (pos == bytes.len() && !truncated).then_some(pos);
                }
                Extent::At(end) if pos >= end => return (pos == end).then_some(pos),
                _ => {}
            }
            let tag = tag_at(bytes, pos)?;
            if let Extent::Delimited = extent {
                if tag == ITEM_DELIMITATION {
                    return (u32_at(bytes, pos + 4)? == 0).then_some(pos + 8);
                }
            }
            if tag >> 16 == 0xFFFE || previous.is_some_and(|p| p >= tag) {
                return None;
            }
            previous = Some(tag);
            let file_vr = VR::from_binary(bytes.get(pos + 4..pos + 6)?.try_into().ok()?)?;
            let (length, value_at) = if has_short_length(file_vr) {
                (u32::from(u16_at(bytes, pos + 6)?), pos + 8)
            } else {
                (u32_at(bytes, pos + 8)?, pos + 12)
            };
            if matches!(extent, Extent::TopLevel { .. }) && tag >= PIXEL_DATA {
                // dicom-rs stops here once it has read this element's header.
                return Some(pos);
            }
            let vr = self.effective_vr(tag, file_vr);
            let top = matches!(extent, Extent::TopLevel { .. });
            let mark = self.json.len();
            if !first {
                self.json.push(b',');
            }
            self.json.push(b'"');
            self.json.extend_from_slice(format_tag(tag).as_slice());
            self.json.extend_from_slice(b"\":{\"vr\":\"");
            self.json.extend_from_slice(vr.to_string().as_bytes());
            self.json.push(b'"');
            if vr == VR::SQ {
                pos = self.sequence(value_at, length, depth)?;
            } else {
                if length == UNDEFINED {
                    return None;
                }
                let end = value_at.checked_add(usize::try_from(length).ok()?)?;
                let value = bytes.get(value_at..end)?;
                pos = end;
                self.element(tag, vr, value, top)?;
            }
            self.json.push(b'}');
            if top && tag == ICON_IMAGE_SEQUENCE {
                // Left out of the stored JSON whole (the icon's pixels are bulk data).
                self.json.truncate(mark);
                continue;
            }
            first = false;
        }
    }

    /// What an element of a primitive value changes in the reading, and its value's JSON.
    fn element(&mut self, tag: u32, vr: VR, value: &'a [u8], top: bool) -> Option<()> {
        if value.is_empty() {
            // dicom-rs's `Empty`: no value, nothing changed.
            if top {
                self.field(tag, vr, value);
            }
            return Some(());
        }
        if !matches!(kind(vr), Kind::Texts { .. } | Kind::Text { .. })
            && !value.len().is_multiple_of(unit(vr))
        {
            return None;
        }
        if tag == SPECIFIC_CHARACTER_SET {
            if !top || vr != VR::CS {
                return None;
            }
            // dicom-rs takes the first value, trimmed of trailing whitespace only.
            self.utf8 = match decode(value, false)?.trim_end() {
                "Default" | "ISO_IR_6" | "ISO_IR 6" | "ISO 2022 IR 6" | "ISO_IR_100"
                | "ISO_IR 100" | "ISO 2022 IR 100" => false,
                "ISO_IR_192" | "ISO_IR 192" => true,
                _ => return None,
            };
        }
        if tag == PIXEL_REPRESENTATION && matches!(vr, VR::US | VR::OW) {
            self.signed_pixels = Some(u16_at(value, 0)? != 0);
        }
        if top {
            self.field(tag, vr, value);
            if is_bulk(vr) && value.len() > JSON_INLINE_BINARY_LIMIT as usize {
                // Bulk data: the element stays, without its value.
                return Some(());
            }
        }
        self.value(vr, value)
    }

    /// Keeps a top-level element's value if the catalog reads it.
    fn field(&mut self, tag: u32, vr: VR, value: &'a [u8]) {
        if let Some(i) = FIELD_TAGS.iter().position(|&t| t == tag) {
            self.fields.found[i] = Some((vr, value));
        }
    }

    /// The value representation dicom-rs reads an element as.
    fn effective_vr(&self, tag: u32, vr: VR) -> VR {
        if self.signed_pixels == Some(true)
            && StandardDataDictionary
                .by_tag(Tag((tag >> 16) as u16, tag as u16))
                .map(|e| e.vr)
                == Some(VirtualVr::Xs)
        {
            VR::SS
        } else {
            vr
        }
    }

    /// Writes `,"Value":[…]` or `,"InlineBinary":"…"` for a non-empty value.
    fn value(&mut self, vr: VR, value: &[u8]) -> Option<()> {
        match kind(vr) {
            Kind::Texts { declared } => {
                self.json.extend_from_slice(b",\"Value\":[");
                for (i, part) in value.split(|&b| b == b'\\').enumerate() {
                    if i > 0 {
                        self.json.push(b',');
                    }
                    let text = decode(part, declared && self.utf8)?;
                    let text = trim_value(&text);
                    if vr == VR::PN {
                        self.person_name(text);
                    } else {
                        write_json(&mut self.json, text);
                    }
                }
                self.json.push(b']');
            }
            Kind::Text { declared } => {
                self.json.extend_from_slice(b",\"Value\":[");
                write_json(
                    &mut self.json,
                    trim_value(&decode(value, declared && self.utf8)?),
                );
                self.json.push(b']');
            }
            Kind::Numbers => {
                self.json.extend_from_slice(b",\"Value\":[");
                for (i, chunk) in value.chunks_exact(unit(vr)).enumerate() {
                    if i > 0 {
                        self.json.push(b',');
                    }
                    self.number(vr, chunk)?;
                }
                self.json.push(b']');
            }
            Kind::Tags => {
                self.json.extend_from_slice(b",\"Value\":[");
                for (i, chunk) in value.chunks_exact(4).enumerate() {
                    if i > 0 {
                        self.json.push(b',');
                    }
                    let tag = (u32::from(u16_at(chunk, 0)?) << 16) | u32::from(u16_at(chunk, 2)?);
                    self.json.push(b'"');
                    self.json.extend_from_slice(format_tag(tag).as_slice());
                    self.json.push(b'"');
                }
                self.json.push(b']');
            }
            Kind::Binary => {
                self.json.extend_from_slice(b",\"InlineBinary\":\"");
                let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                self.json.extend_from_slice(encoded.as_bytes());
                self.json.push(b'"');
            }
        }
        Some(())
    }

    /// One number of `vr` from its little-endian bytes, as `dicom-json` writes it.
    fn number(&mut self, vr: VR, bytes: &[u8]) -> Option<()> {
        let out = &mut self.json;
        match vr {
            VR::US => write_json(out, &u16::from_le_bytes(bytes.try_into().ok()?)),
            VR::SS => write_json(out, &i16::from_le_bytes(bytes.try_into().ok()?)),
            VR::UL => write_json(out, &u32::from_le_bytes(bytes.try_into().ok()?)),
            VR::SL => write_json(out, &i32::from_le_bytes(bytes.try_into().ok()?)),
            VR::FL => {
                let n = f32::from_le_bytes(bytes.try_into().ok()?);
                if !n.is_finite() {
                    return None;
                }
                write_json(out, &n);
            }
            VR::FD => {
                let n = f64::from_le_bytes(bytes.try_into().ok()?);
                if !n.is_finite() {
                    return None;
                }
                write_json(out, &n);
            }
            // 64-bit integers: as a number when an i32 holds them, else as a string.
            VR::SV => {
                let n = i64::from_le_bytes(bytes.try_into().ok()?);
                match i32::try_from(n) {
                    Ok(n) => write_json(out, &n),
                    Err(_) => write_json(out, &n.to_string()),
                }
            }
            VR::UV => {
                let n = u64::from_le_bytes(bytes.try_into().ok()?);
                match i32::try_from(n) {
                    Ok(n) => write_json(out, &n),
                    Err(_) => write_json(out, &n.to_string()),
                }
            }
            _ => return None,
        }
        Some(())
    }

    /// A person name's groups (`Alphabetic=Ideographic=Phonetic`), the empty ones left out.
    fn person_name(&mut self, name: &str) {
        let mut groups = name.split('=');
        self.json.push(b'{');
        let mut first = true;
        for key in ["Alphabetic", "Ideographic", "Phonetic"] {
            let group = groups.next().unwrap_or("");
            if group.is_empty() {
                continue;
            }
            if !first {
                self.json.push(b',');
            }
            first = false;
            write_json(&mut self.json, key);
            self.json.push(b':');
            write_json(&mut self.json, group);
        }
        self.json.push(b'}');
    }

    /// A sequence's items from `pos` (its value), as `,"Value":[{…},…]`; the offset past it.
    fn sequence(&mut self, mut pos: usize, length: u32, depth: usize) -> Option<usize> {
        let bytes = self.bytes;
        let end = if length == UNDEFINED {
            None
        } else {
            Some(pos.checked_add(usize::try_from(length).ok()?)?)
        };
        self.json.extend_from_slice(b",\"Value\":[");
        let mut first = true;
        loop {
            if let Some(end) = end {
                if pos >= end {
                    if pos != end {
                        return None;
                    }
                    break;
                }
            }
            let tag = tag_at(bytes, pos)?;
            let item_length = u32_at(bytes, pos + 4)?;
            pos += 8;
            if end.is_none() && tag == SEQUENCE_DELIMITATION {
                if item_length != 0 {
                    return None;
                }
                break;
            }
            if tag != ITEM {
                return None;
            }
            if !first {
                self.json.push(b',');
            }
            first = false;
            self.json.push(b'{');
            let extent = if item_length == UNDEFINED {
                Extent::Delimited
            } else {
                Extent::At(pos.checked_add(usize::try_from(item_length).ok()?)?)
            };
            if let (Extent::At(item_end), Some(end)) = (extent, end) {
                if item_end > end {
                    return None;
                }
            }
            pos = self.data_set(pos, extent, depth + 1)?;
            self.json.push(b'}');
        }
        self.json.push(b']');
        Some(pos)
    }

    /// The catalog's record from the attributes found; `None` if the study or series has no
    /// UID (dicom-rs says which error) or an attribute has a value representation the catalog
    /// does not read it as.
    fn record(self) -> Option<InstanceRecord> {
        let found = &self.fields.found;
        let utf8 = self.utf8;
        let text = |i: usize| -> Option<Option<String>> {
            let Some((vr, value)) = found[i] else {
                return Some(None);
            };
            let joined = match kind(vr) {
                Kind::Texts { declared } => {
                    let mut joined = String::new();
                    for (n, part) in value.split(|&b| b == b'\\').enumerate() {
                        if n > 0 {
                            joined.push('\\');
                        }
                        joined.push_str(trim_value(&decode(part, declared && utf8)?));
                    }
                    joined
                }
                Kind::Text { declared } => {
                    trim_value(&decode(value, declared && utf8)?).to_string()
                }
                _ => return None,
            };
            let trimmed = joined.trim_matches(|c: char| c == ' ' || c == '\0').trim();
            Some((!trimmed.is_empty()).then(|| trimmed.to_string()))
        };
        let integer = |i: usize| -> Option<Option<i64>> {
            let Some((vr, value)) = found[i] else {
                return Some(None);
            };
            if value.is_empty() {
                return Some(None);
            }
            let whitespace_or_null = |c: char| c.is_whitespace() || c == '\0';
            Some(match kind(vr) {
                Kind::Texts { declared } => {
                    let part = value.split(|&b| b == b'\\').next().unwrap_or_default();
                    decode(part, declared && utf8)?
                        .trim_matches(whitespace_or_null)
                        .parse()
                        .ok()
                }
                Kind::Text { declared } => decode(value, declared && utf8)?
                    .trim_matches(whitespace_or_null)
                    .parse()
                    .ok(),
                _ => match vr {
                    VR::US => Some(i64::from(u16_at(value, 0)?)),
                    VR::SS => Some(i64::from(u16_at(value, 0)? as i16)),
                    VR::UL => Some(i64::from(u32_at(value, 0)?)),
                    VR::SL => Some(i64::from(u32_at(value, 0)? as i32)),
                    _ => return None,
                },
            })
        };
        let series_instance_uid = text(2)??;
        let study_instance_uid = text(3)??;
        Some(InstanceRecord {
            sop_class_uid: text(0)?.unwrap_or_default(),
            sop_instance_uid: text(1)?.unwrap_or_default(),
            series_instance_uid,
            study_instance_uid,
            transfer_syntax_uid: String::new(),
            patient_id: text(4)?,
            patient_name: text(5)?,
            patient_birth_date: text(6)?,
            patient_sex: text(7)?,
            study_date: text(8)?,
            study_time: text(9)?,
            study_description: text(10)?,
            accession_number: text(11)?,
            study_id: text(12)?,
            referring_physician_name: text(13)?,
            modality: text(14)?,
            body_part_examined: text(15)?,
            series_description: text(16)?,
            series_number: integer(17)?,
            series_date: text(18)?,
            instance_number: integer(19)?,
            rows: integer(20)?,
            columns: integer(21)?,
            number_of_frames: integer(22)?,
            size: 0,
            checksum: String::new(),
            object_key: String::new(),
            metadata_json: String::from_utf8(self.json).ok()?,
            source: String::new(),
        })
    }
}

/// A tag as DICOM JSON names it: eight upper-case hexadecimal digits.
fn format_tag(tag: u32) -> [u8; 8] {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = [0u8; 8];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((tag >> (28 - 4 * i)) & 0xF) as usize];
    }
    out
}

/// `value` as serde_json writes it (the escaping and number formats of `dicom-json`'s output).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    // Writing into a Vec cannot fail, and these values always serialize.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{extract, extract_record, Reader};

    /// An explicit VR little endian element.
    fn element(tag: u32, vr: &str, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        out.extend_from_slice(&(tag as u16).to_le_bytes());
        out.extend_from_slice(vr.as_bytes());
        let vr = VR::from_binary(vr.as_bytes().try_into().unwrap());
        if vr.is_some_and(has_short_length) {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(value);
        out
    }

    /// A sequence of `items` (each the bytes of a data set), of defined or undefined length,
    /// its items likewise.
    fn sequence(tag: u32, items: &[Vec<u8>], defined: bool, items_defined: bool) -> Vec<u8> {
        let mut body = Vec::new();
        for item in items {
            body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            if items_defined {
                body.extend_from_slice(&(item.len() as u32).to_le_bytes());
                body.extend_from_slice(item);
            } else {
                body.extend_from_slice(&UNDEFINED.to_le_bytes());
                body.extend_from_slice(item);
                body.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        out.extend_from_slice(&(tag as u16).to_le_bytes());
        out.extend_from_slice(b"SQ\0\0");
        if defined {
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&body);
        } else {
            out.extend_from_slice(&UNDEFINED.to_le_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        }
        out
    }

    fn uid(text: &str) -> Vec<u8> {
        let mut bytes = text.as_bytes().to_vec();
        if bytes.len() % 2 == 1 {
            bytes.push(0);
        }
        bytes
    }

    /// A Part-10 file: preamble, meta group (explicit VR little endian unless `ts` says
    /// otherwise), the elements given (in the order given) and a small Pixel Data.
    fn part10(elements: &[Vec<u8>], ts: &str) -> Vec<u8> {
        let mut meta = Vec::new();
        meta.extend(element(0x0002_0001, "OB", &[0, 1]));
        meta.extend(element(
            0x0002_0002,
            "UI",
            &uid("1.2.840.10008.5.1.4.1.1.2"),
        ));
        meta.extend(element(0x0002_0003, "UI", &uid("1.2.3.4.5")));
        meta.extend(element(0x0002_0010, "UI", &uid(ts)));
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        file.extend(element(
            0x0002_0000,
            "UL",
            &(meta.len() as u32).to_le_bytes(),
        ));
        file.extend(meta);
        for e in elements {
            file.extend_from_slice(e);
        }
        file.extend(element(0x7FE0_0010, "OW", &[0; 8]));
        file
    }

    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

    fn tag_of(element: &[u8]) -> (u16, u16) {
        (
            u16::from_le_bytes([element[0], element[1]]),
            u16::from_le_bytes([element[2], element[3]]),
        )
    }

    /// `elements` and the identifying attributes every case has, in tag order.
    fn with_identity(mut elements: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        elements.extend([
            element(0x0008_0016, "UI", &uid("1.2.840.10008.5.1.4.1.1.2")),
            element(0x0008_0018, "UI", &uid("1.2.3.4.5")),
            element(0x0020_000D, "UI", &uid("1.2.3.1")),
            element(0x0020_000E, "UI", &uid("1.2.3.2")),
        ]);
        elements.sort_by_key(|e| tag_of(e));
        elements
    }

    /// The quick reader reads `file`, and reads it as dicom-rs does.
    fn assert_read_alike(name: &str, file: &[u8]) {
        let size = file.len() as u64;
        let quick = read(file, false).unwrap_or_else(|| panic!("{name}: not read quickly"));
        let parsed = extract(file, size, Reader::DicomRs).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{quick:?}"), format!("{parsed:?}"), "{name}");
        // And through the front door (which checks the two again in debug builds).
        let record = extract_record(file, size).unwrap();
        assert_eq!(record.metadata_json, parsed.metadata_json, "{name}");
    }

    fn le16(values: &[u16]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn ordinary_data_sets_are_read_quickly_as_dicom_rs_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let spec = radport_testkit::SeriesSpec {
            count: 1,
            rows: 64,
            columns: 64,
            ..Default::default()
        };
        let paths = radport_testkit::write_series(dir.path(), &spec).unwrap();
        assert_read_alike("testkit CT", &std::fs::read(&paths[0]).unwrap());

        let every_vr = with_identity(vec![
            element(0x0008_0000, "UL", &100u32.to_le_bytes()),
            element(0x0008_0008, "CS", b"ORIGINAL\\PRIMARY \\\\AXIAL"),
            element(0x0008_0012, "DA", b"20240102"),
            element(0x0008_0013, "TM", b"101500.123 "),
            element(0x0008_002A, "DT", b"20240102101500"),
            element(0x0008_0050, "SH", b""),
            element(0x0008_0054, "AE", b"STORESCU  "),
            element(0x0008_0060, "CS", b"CT"),
            element(0x0008_0090, "PN", b""),
            element(0x0008_0092, "ST", b"a\\b street  "),
            element(0x0008_0100, "SH", b" padded "),
            element(0x0008_0104, "LO", b"first\\second\0"),
            element(0x0008_0120, "UR", b"http://example.org/a\\b "),
            element(0x0008_0301, "US", &le16(&[1, 65535])),
            element(0x0008_1030, "LO", b"Study \"quoted\" </script>"),
            element(
                0x0008_1050,
                "PN",
                b"Doe^John=Ideo^Gram=Pho^Netic\\Smith^Jane\\=Only^Ideo",
            ),
            element(0x0008_1090, "LO", b"\t\x01control\x1f"),
            element(0x0010_0010, "PN", b"Test^Patient "),
            element(0x0010_0020, "LO", b" PAT-1 "),
            element(0x0010_0030, "DA", b""),
            element(0x0010_1010, "AS", b"045Y"),
            element(0x0010_1020, "DS", b" 1.75\\-2e3 "),
            element(0x0010_2000, "LT", b"line one\r\nline two  \0"),
            element(0x0010_21B0, "LT", b""),
            element(0x0018_0050, "DS", b"1.0 "),
            element(0x0018_1020, "LO", b"1\\2\\3"),
            element(0x0018_9345, "UC", b"unlimited\\characters "),
            element(0x0018_9346, "SQ", b""),
        ]);
        let mut tail = vec![
            element(0x0020_0011, "IS", b" +12 "),
            element(0x0020_0013, "IS", b"7\\8"),
            element(0x0020_0032, "DS", b"-100\\-100\\0.0"),
            element(0x0020_4000, "LT", b"comments"),
            element(0x0028_0008, "IS", b"3 "),
            element(0x0028_0010, "US", &le16(&[512])),
            element(0x0028_0011, "US", &le16(&[256])),
            element(0x0028_0103, "US", &le16(&[0])),
            element(0x0028_0106, "US", &le16(&[65535])),
            element(0x0028_1052, "DS", b"-1024"),
            element(0x0029_0010, "LO", b"PRIVATE CREATOR"),
            element(0x0029_1001, "OB", &[1, 2, 3]),
            element(0x0029_1002, "OW", &le16(&[1, 2])),
            element(0x0029_1003, "OB", &vec![7; 1025]),
            element(0x0029_1004, "UN", &vec![9; 2000]),
            element(0x0029_1005, "UN", &[1, 2, 3, 4, 5]),
            element(0x0029_1006, "OF", &1.5f32.to_le_bytes()),
            element(0x0029_1007, "OD", &0.1f64.to_le_bytes()),
            element(0x0029_1008, "OL", &7u32.to_le_bytes()),
            element(0x0029_1009, "OV", &7u64.to_le_bytes()),
            element(0x0029_100A, "SS", &[0xFF, 0xFF, 5, 0]),
            element(0x0029_100B, "SL", &(-70000i32).to_le_bytes()),
            element(
                0x0029_100C,
                "FL",
                &[1.5f32, -0.1, 3e38]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
            element(
                0x0029_100D,
                "FD",
                &[1e300f64, 0.1, -0.0]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
            element(
                0x0029_100E,
                "SV",
                &[5i64, 1 << 40, -(1 << 40)]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
            element(
                0x0029_100F,
                "UV",
                &[5u64, u64::MAX]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<_>>(),
            ),
            element(0x0029_1010, "AT", &le16(&[0x0010, 0x0010, 0x7FE0, 0x0010])),
            element(0x0029_1011, "UL", b""),
            element(0x0029_1012, "UT", b"one\\text "),
        ];
        let mut elements = every_vr;
        elements.append(&mut tail);
        elements.sort_by_key(|e| tag_of(e));
        assert_read_alike("every VR", &part10(&elements, EXPLICIT_LE));

        let item = |n: u8| {
            let mut item = element(0x0008_1150, "UI", &uid("1.2.840.10008.5.1.4.1.1.2"));
            item.extend(element(0x0008_1155, "UI", &uid(&format!("1.2.3.{n}"))));
            item
        };
        let mut nested = element(0x0008_0100, "SH", b"T-D1100");
        nested.extend(sequence(0x0008_0121, &[item(9), Vec::new()], true, false));
        let sequences = with_identity(vec![
            sequence(0x0008_1115, &[], true, true),
            sequence(0x0008_1140, &[item(1), item(2)], false, false),
            sequence(0x0008_2112, &[item(3), item(4)], true, true),
            sequence(0x0008_2218, &[nested.clone()], false, true),
            sequence(0x0040_0275, &[Vec::new(), nested], true, false),
        ]);
        assert_read_alike("sequences", &part10(&sequences, EXPLICIT_LE));

        let mut icon = element(0x0028_0010, "US", &le16(&[2]));
        icon.extend(element(0x0028_0011, "US", &le16(&[2])));
        icon.extend(element(0x7FE0_0010, "OW", &le16(&[1, 2, 3, 4])));
        let with_icon = with_identity(vec![
            sequence(0x0088_0200, &[icon], false, false),
            element(0x0088_0904, "LO", b"after the icon"),
        ]);
        assert_read_alike("icon image sequence", &part10(&with_icon, EXPLICIT_LE));

        let signed = with_identity(vec![
            element(0x0028_0103, "US", &le16(&[1])),
            element(0x0028_0106, "US", &le16(&[0xFFFF])),
            element(0x0028_0107, "US", &le16(&[0x7FFF])),
            element(0x0028_0120, "US", &le16(&[0x8000])),
            element(0x0028_0301, "CS", b"NO"),
        ]);
        assert_read_alike("signed pixels", &part10(&signed, EXPLICIT_LE));

        let latin1 = with_identity(vec![
            element(0x0008_0005, "CS", b"ISO_IR 100"),
            element(0x0008_0080, "LO", b"H\xf4pital \xa0"),
            element(0x0008_0070, "LO", b"\x85\x9f\xff "),
            element(0x0010_0010, "PN", b"M\xfcller^J\xf6rg=\xe9"),
        ]);
        assert_read_alike("ISO-IR 100", &part10(&latin1, EXPLICIT_LE));
        let default_high = with_identity(vec![
            element(0x0010_0010, "PN", b"M\xfcller^J\xf6rg"),
            element(0x0008_0054, "AE", b"\xe9AE"),
        ]);
        assert_read_alike(
            "default repertoire, bytes past ASCII",
            &part10(&default_high, EXPLICIT_LE),
        );
        let utf8 = with_identity(vec![
            element(0x0008_0005, "CS", b"ISO_IR 192"),
            element(0x0008_0080, "LO", "Hôpital 山田 ".as_bytes()),
            element(0x0010_0010, "PN", "Müller^Jörg=山田^太郎 ".as_bytes()),
        ]);
        assert_read_alike("ISO-IR 192", &part10(&utf8, EXPLICIT_LE));

        // Encapsulated pixels: the data set is explicit VR little endian all the same.
        let mut jpeg = part10(&with_identity(vec![]), "1.2.840.10008.1.2.4.50");
        jpeg.truncate(jpeg.len() - 20);
        jpeg.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        jpeg.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        jpeg.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_read_alike("JPEG baseline", &jpeg);

        // No Pixel Data: the data set ends with the file.
        let mut no_pixels = part10(
            &with_identity(vec![element(0x0040_A730, "SQ", b"")]),
            EXPLICIT_LE,
        );
        no_pixels.truncate(no_pixels.len() - 20);
        assert_read_alike("no Pixel Data", &no_pixels);
    }

    #[test]
    fn unusual_data_sets_are_left_to_dicom_rs() {
        let base = || with_identity(vec![element(0x0010_0010, "PN", b"Doe^John")]);
        let mut cases: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
        let mut swapped = base();
        swapped.swap(0, 1);
        cases.push(("tags out of order", swapped));
        let mut twice = base();
        twice.insert(1, twice[0].clone());
        cases.push(("a tag twice", twice));
        for (name, charset) in [
            ("another character set", &b"ISO_IR 144"[..]),
            ("ISO 2022 code extensions", b"\\ISO 2022 IR 87"),
            ("a character set padded with NUL", b"ISO_IR 192\0"),
        ] {
            let mut e = base();
            e.insert(0, element(0x0008_0005, "CS", charset));
            cases.push((name, e));
        }
        let mut odd = base();
        odd.push(element(0x0028_0010, "US", &[1, 2, 3]));
        cases.push(("a US of three bytes", odd));
        let mut nan = base();
        nan.push(element(0x0029_1001, "FL", &f32::NAN.to_le_bytes()));
        cases.push(("a float that is not a number", nan));
        let mut bad_utf8 = base();
        bad_utf8.insert(0, element(0x0008_0005, "CS", b"ISO_IR 192"));
        bad_utf8.push(element(0x0010_1001, "PN", b"\xff\xfe"));
        cases.push(("bytes that are not UTF-8 under ISO-IR 192", bad_utf8));
        let mut unknown_vr = base();
        unknown_vr.push(element(0x0029_1001, "ZZ", b"??"));
        cases.push(("an unknown VR", unknown_vr));
        let mut charset_in_item = base();
        charset_in_item.push(sequence(
            0x0040_0275,
            &[element(0x0008_0005, "CS", b"ISO_IR 100")],
            false,
            false,
        ));
        cases.push(("a character set in an item", charset_in_item));
        let mut fragments_in_item = base();
        let mut item = element(0x0028_0010, "US", &le16(&[1]));
        item.extend_from_slice(&[
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        item.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        fragments_in_item.push(sequence(0x0088_0200, &[item], false, false));
        cases.push(("encapsulated pixels in an item", fragments_in_item));
        let mut no_series = base();
        no_series.retain(|e| e[..4] != [0x20, 0x00, 0x0E, 0x00]);
        cases.push(("no Series Instance UID", no_series));
        let mut rows_as_text = base();
        rows_as_text.push(element(0x0028_0010, "FL", &1.0f32.to_le_bytes()));
        cases.push(("Rows as a float", rows_as_text));

        for (name, elements) in cases {
            let file = part10(&elements, EXPLICIT_LE);
            assert!(read(&file, false).is_none(), "{name}: read quickly");
            // dicom-rs's answer, whatever it is, is extract_record's.
            let by_dicom_rs = format!("{:?}", extract(&file, file.len() as u64, Reader::DicomRs));
            let extracted = format!("{:?}", extract_record(&file, file.len() as u64));
            assert_eq!(extracted, by_dicom_rs, "{name}");
        }
        // A meta group dicom-rs refuses (found by the `ingest_attributes` fuzz target: a
        // letter in a UID of the meta group), and one without a Transfer Syntax UID.
        let mut file = part10(&base(), EXPLICIT_LE);
        let at = file.windows(9).position(|w| w == b"1.2.3.4.5").unwrap();
        file[at + 8] = b'x';
        let mut no_syntax = part10(&base(), EXPLICIT_LE);
        let at = no_syntax
            .windows(4)
            .position(|w| w == [0x02, 0x00, 0x10, 0x00])
            .unwrap();
        no_syntax[at + 2] = 0x11;
        for (name, file) in [
            ("a letter in a UID", file),
            ("no transfer syntax", no_syntax),
        ] {
            assert!(read(&file, false).is_none(), "{name}: read quickly");
            assert_eq!(
                format!("{:?}", extract_record(&file, file.len() as u64)),
                format!("{:?}", extract(&file, file.len() as u64, Reader::DicomRs)),
                "{name}"
            );
        }
        // A meta group whose length ends inside its last element.
        let mut file = part10(&base(), EXPLICIT_LE);
        let length = u32::from_le_bytes(file[140..144].try_into().unwrap());
        file[140..144].copy_from_slice(&(length - 2).to_le_bytes());
        assert!(
            read(&file, false).is_none(),
            "a meta group out of step: read quickly"
        );
        assert_eq!(
            format!("{:?}", extract_record(&file, file.len() as u64)),
            format!("{:?}", extract(&file, file.len() as u64, Reader::DicomRs))
        );
    }

    /// Random data sets from the value representations, characters and nestings above: each
    /// one the quick reader reads, it reads as dicom-rs does.
    #[test]
    fn random_data_sets_are_read_as_dicom_rs_reads_them() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const TEXT: &[u8] = b"aZ09 .^=\\\0-+e\xe9\xc3\xa9\t";
        const VRS: [&str; 31] = [
            "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD",
            "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SS", "ST", "SV", "TM", "UC", "UI", "UL",
            "UN", "UR", "US",
        ];
        fn data_set(next: &mut dyn FnMut() -> u64, depth: u32, top: bool) -> Vec<Vec<u8>> {
            let count = next() % 8;
            let mut tags: Vec<u32> = (0..count)
                .map(|_| {
                    let groups = [0x0008u32, 0x0010, 0x0018, 0x0028, 0x0029, 0x0040];
                    let group = groups[(next() % groups.len() as u64) as usize];
                    let elements = [0x0010u32, 0x0020, 0x0103, 0x0106, 0x1001, 0x1150, 0x0200];
                    (group << 16) | elements[(next() % elements.len() as u64) as usize]
                })
                .collect();
            tags.sort_unstable();
            tags.dedup();
            let mut out = Vec::new();
            for tag in tags {
                if top && (tag == 0x0020_000D || tag == 0x0020_000E) {
                    continue;
                }
                if depth < 3 && next().is_multiple_of(6) {
                    let items: Vec<Vec<u8>> = (0..next() % 3)
                        .map(|_| data_set(next, depth + 1, false).concat())
                        .collect();
                    out.push(sequence(
                        tag,
                        &items,
                        next().is_multiple_of(2),
                        next().is_multiple_of(2),
                    ));
                    continue;
                }
                let vr = VRS[(next() % VRS.len() as u64) as usize];
                let len = (next() % 12) as usize * if next().is_multiple_of(9) { 200 } else { 1 };
                let value: Vec<u8> = match VR::from_binary(vr.as_bytes().try_into().unwrap()) {
                    Some(v) if matches!(kind(v), Kind::Texts { .. } | Kind::Text { .. }) => (0
                        ..len)
                        .map(|_| TEXT[(next() % TEXT.len() as u64) as usize])
                        .collect(),
                    Some(v) => {
                        let n = len.div_ceil(unit(v)) * unit(v);
                        (0..n).map(|_| next() as u8).collect()
                    }
                    None => unreachable!(),
                };
                out.push(element(tag, vr, &value));
            }
            out
        }
        let mut quick = 0;
        let total = 6000;
        for _ in 0..total {
            let mut middle = data_set(&mut next, 0, true);
            if next() % 4 == 0 {
                let charset: &[u8] =
                    [&b"ISO_IR 100"[..], b"ISO_IR 192", b""][(next() % 3) as usize];
                middle.insert(0, element(0x0008_0005, "CS", charset));
            }
            let elements = with_identity(middle);
            let file = part10(&elements, EXPLICIT_LE);
            let size = file.len() as u64;
            if read(&file, false).is_some() {
                quick += 1;
            }
            let by_dicom_rs = format!("{:?}", extract(&file, size, Reader::DicomRs));
            assert_eq!(
                format!("{:?}", extract(&file, size, Reader::QuickWhereOrdinary)),
                by_dicom_rs,
                "{file:?}"
            );
        }
        assert!(quick > total / 2, "only {quick} of {total} read quickly");
    }
}
