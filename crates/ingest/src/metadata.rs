//! Reading an instance's attributes from the head of its Part-10 bytes.
//!
//! dicom-rs decodes text values through (0008,0005) Specific Character Set, so every string
//! that reaches the catalog is UTF-8; the stored file itself is never rewritten.
//!
//! dicom-rs allocates every value at its declared length before reading it: bytes reach it only
//! after [`radport_prescan`] has checked them (the head up to Pixel Data; the file meta group).

use std::io::Cursor;

use dicom_core::header::{HasLength, Header};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::meta::FileMetaTable;
use dicom_object::{InMemDicomObject, OpenFileOptions};
use radport_catalog::InstanceRecord;

use crate::Announced;
use radport_prescan::{self as prescan, DataSetEncoding, Encoding, HeadCheck};

mod quick;

/// Why the attributes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The head ended before the attributes did; read further into the file.
    #[error("the attributes extend past the bytes read so far")]
    NeedMoreBytes,
    /// The bytes are not a DICOM data set radport can read (or not safely: a declared length
    /// beyond the end of the file, absurd nesting).
    #[error("{0}")]
    Unreadable(String),
    /// A required identifying attribute is missing or empty.
    #[error("missing required attribute {0}")]
    Missing(&'static str),
}

/// Binary values larger than this are left out of the stored DICOM JSON (bulk data).
const JSON_INLINE_BINARY_LIMIT: u32 = 1024;

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let element = obj.get(tag)?;
    let value = element.to_str().ok()?;
    let trimmed = value.trim_matches(|c: char| c == ' ' || c == '\0').trim();
    if trimmed.is_empty() {
        None
    } else {
        Some(trimmed.to_string())
    }
}

fn integer(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let element = obj.get(tag)?;
    element.to_int::<i64>().ok()
}

fn is_bulk(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN
    )
}

/// Reads the file meta group of a Part-10 file: what it announces and where its data set starts.
pub fn read_file_meta(bytes: &[u8]) -> Result<(Announced, usize), MetadataError> {
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return Err(MetadataError::Unreadable(
            "not a DICOM Part-10 file (no DICM magic at offset 128)".into(),
        ));
    }
    prescan::check_file_meta(&bytes[128..])
        .map_err(|e| MetadataError::Unreadable(format!("bad file meta group: {e}")))?;
    let meta = FileMetaTable::from_reader(Cursor::new(&bytes[128..]))
        .map_err(|e| MetadataError::Unreadable(format!("bad file meta group: {e}")))?;
    let offset = 132 + 12 + meta.information_group_length as usize;
    if offset > bytes.len() {
        return Err(MetadataError::Unreadable(
            "file meta group length exceeds the file".into(),
        ));
    }
    let clean = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
    let announced = Announced {
        sop_class_uid: clean(&meta.media_storage_sop_class_uid),
        sop_instance_uid: clean(&meta.media_storage_sop_instance_uid),
        transfer_syntax_uid: clean(&meta.transfer_syntax),
        source_ae_title: meta.source_application_entity_title.as_deref().map(clean),
    };
    Ok((announced, offset))
}

/// dicom-rs picks the character set from the *first* value of (0008,0005) only. ISO 2022 code
/// extensions are declared as `\ISO 2022 IR 87` (first value empty: ASCII, escapes switch to
/// the others), which it would read as the default repertoire. For parsing only — never for
/// the stored file — a copy of the head gets the first non-empty value moved to the front,
/// padded to the same length, when (0008,0005) is the first element of an uncompressed data set.
fn charset_for_parsing(head: &[u8]) -> Option<Vec<u8>> {
    // Most data sets do not start with (0008,0005): seen from the meta group's length, (0002,0000)
    // UL, before the meta group is parsed.
    if let Some([0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, l0, l1, l2, l3]) = head.get(132..144) {
        let first = usize::try_from(u32::from_le_bytes([*l0, *l1, *l2, *l3]))
            .ok()
            .and_then(|length| length.checked_add(144));
        if first.and_then(|at| head.get(at..at.checked_add(4)?)) != Some(&[0x08, 0x00, 0x05, 0x00])
        {
            return None;
        }
    }
    let (announced, offset) = read_file_meta(head).ok()?;
    let explicit = match prescan::data_set_encoding(&announced.transfer_syntax_uid)? {
        DataSetEncoding { deflated: true, .. } => return None,
        DataSetEncoding { encoding, .. } => match encoding {
            Encoding::ImplicitVrLittleEndian => false,
            Encoding::ExplicitVrLittleEndian => true,
            Encoding::ExplicitVrBigEndian => return None,
        },
    };
    let data = head.get(offset..)?;
    if data.get(0..4)? != [0x08, 0x00, 0x05, 0x00] {
        return None;
    }
    let (value_start, len) = if explicit {
        if data.get(4..6)? != b"CS" {
            return None;
        }
        (8, u16::from_le_bytes([data[6], data[7]]) as usize)
    } else {
        let l = data.get(4..8)?;
        (8, u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
    };
    let value = data.get(value_start..value_start + len)?;
    let text = std::str::from_utf8(value).ok()?;
    let mut values = text.split('\\').map(|v| v.trim());
    let first = values.next()?;
    if !first.is_empty() {
        return None;
    }
    let replacement = values.find(|v| !v.is_empty())?;
    let mut new_value = replacement.as_bytes().to_vec();
    new_value.resize(len, b' ');
    let mut copy = head.to_vec();
    let at = offset + value_start;
    copy[at..at + len].copy_from_slice(&new_value);
    Some(copy)
}

/// Reads the catalog attributes and DICOM JSON from the head of a Part-10 file (preamble
/// included) of `file_size` bytes: `head` is the whole file, or a prefix of it when `file_size`
/// is larger.
///
/// The head is checked by [`prescan::check_head`] before the parser sees it: a length reaching
/// past the head but not past the file gives [`MetadataError::NeedMoreBytes`] (read a longer
/// prefix and call again); one reaching past the file, or sequences nested too deep, give
/// [`MetadataError::Unreadable`].
pub fn extract_record(head: &[u8], file_size: u64) -> Result<InstanceRecord, MetadataError> {
    extract(head, file_size, Reader::QuickWhereOrdinary)
}

/// Who reads a data set's attributes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// [`quick::read`] an ordinary data set, dicom-rs the others.
    QuickWhereOrdinary,
    /// dicom-rs every one (the quick reader's tests compare with it).
    #[cfg_attr(not(test), allow(dead_code))]
    DicomRs,
}

/// [`extract_record`], by `reader`.
fn extract(head: &[u8], file_size: u64, reader: Reader) -> Result<InstanceRecord, MetadataError> {
    let truncated = file_size > head.len() as u64;
    let Some(body) = head.get(128..) else {
        return Err(if truncated {
            MetadataError::NeedMoreBytes
        } else {
            MetadataError::Unreadable("not a DICOM Part-10 file (shorter than a preamble)".into())
        });
    };
    let scan = match prescan::check_head(body, file_size.saturating_sub(128)) {
        HeadCheck::Ok(scan) => scan,
        HeadCheck::NeedMoreBytes => return Err(MetadataError::NeedMoreBytes),
        HeadCheck::Malformed(e) => return Err(MetadataError::Unreadable(e.to_string())),
    };
    let explicit_le = scan.encoding
        == Some(DataSetEncoding {
            encoding: Encoding::ExplicitVrLittleEndian,
            deflated: false,
        });
    if let Some(record) = (reader == Reader::QuickWhereOrdinary && explicit_le)
        .then(|| quick::read(head, truncated))
        .flatten()
    {
        #[cfg(debug_assertions)]
        check_quick(head, file_size, &record);
        return Ok(record);
    }
    parse_record(head, truncated)
}

/// In debug builds (every test), an instance read by [`quick::read`] is read by dicom-rs
/// too: the two must agree to the byte.
#[cfg(debug_assertions)]
fn check_quick(head: &[u8], file_size: u64, quick: &InstanceRecord) {
    let truncated = file_size > head.len() as u64;
    match parse_record(head, truncated) {
        Ok(parsed) => assert_eq!(
            format!("{quick:?}"),
            format!("{parsed:?}"),
            "the quick attribute reader disagrees with dicom-rs"
        ),
        Err(e) => panic!("the quick attribute reader read what dicom-rs refuses: {e}"),
    }
}

/// [`extract_record`] by dicom-rs, on a head the prescan has checked.
fn parse_record(head: &[u8], truncated: bool) -> Result<InstanceRecord, MetadataError> {
    let patched = charset_for_parsing(head);
    let head: &[u8] = patched.as_deref().unwrap_or(head);
    let parsed = std::panic::catch_unwind(|| {
        OpenFileOptions::new()
            .read_preamble(ReadPreamble::Always)
            .read_until(tags::PIXEL_DATA)
            .from_reader(Cursor::new(head))
    });
    let file = match parsed {
        Ok(Ok(file)) => file,
        Ok(Err(_)) if truncated => return Err(MetadataError::NeedMoreBytes),
        Ok(Err(e)) => return Err(MetadataError::Unreadable(e.to_string())),
        Err(_) => {
            return Err(MetadataError::Unreadable(
                "the DICOM parser failed on this data set".into(),
            ))
        }
    };
    let obj = file.into_inner();
    let required = |tag: Tag, name: &'static str| -> Result<String, MetadataError> {
        match text(&obj, tag) {
            Some(v) => Ok(v),
            None if truncated => Err(MetadataError::NeedMoreBytes),
            None => Err(MetadataError::Missing(name)),
        }
    };
    let study_instance_uid = required(tags::STUDY_INSTANCE_UID, "(0020,000D) Study Instance UID")?;
    let series_instance_uid =
        required(tags::SERIES_INSTANCE_UID, "(0020,000E) Series Instance UID")?;

    let mut record = InstanceRecord {
        sop_instance_uid: text(&obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        sop_class_uid: text(&obj, tags::SOP_CLASS_UID).unwrap_or_default(),
        series_instance_uid,
        study_instance_uid,
        transfer_syntax_uid: String::new(),
        patient_id: text(&obj, tags::PATIENT_ID),
        patient_name: text(&obj, tags::PATIENT_NAME),
        patient_birth_date: text(&obj, tags::PATIENT_BIRTH_DATE),
        patient_sex: text(&obj, tags::PATIENT_SEX),
        study_date: text(&obj, tags::STUDY_DATE),
        study_time: text(&obj, tags::STUDY_TIME),
        study_description: text(&obj, tags::STUDY_DESCRIPTION),
        accession_number: text(&obj, tags::ACCESSION_NUMBER),
        study_id: text(&obj, tags::STUDY_ID),
        referring_physician_name: text(&obj, tags::REFERRING_PHYSICIAN_NAME),
        modality: text(&obj, tags::MODALITY),
        body_part_examined: text(&obj, tags::BODY_PART_EXAMINED),
        series_description: text(&obj, tags::SERIES_DESCRIPTION),
        series_number: integer(&obj, tags::SERIES_NUMBER),
        series_date: text(&obj, tags::SERIES_DATE),
        instance_number: integer(&obj, tags::INSTANCE_NUMBER),
        rows: integer(&obj, tags::ROWS),
        columns: integer(&obj, tags::COLUMNS),
        number_of_frames: integer(&obj, tags::NUMBER_OF_FRAMES),
        size: 0,
        checksum: String::new(),
        object_key: String::new(),
        metadata_json: String::new(),
        source: String::new(),
    };
    // The catalog's fields are read; the same object, its bulk data left out, becomes the DICOM
    // JSON (no copy of it).
    let mut json_obj = obj;
    let bulky: Vec<(Tag, VR)> = json_obj
        .iter()
        .filter(|e| {
            e.tag() == tags::ICON_IMAGE_SEQUENCE
                || (is_bulk(e.vr())
                    && e.length()
                        .get()
                        .is_none_or(|l| l > JSON_INLINE_BINARY_LIMIT))
        })
        .map(|e| (e.tag(), e.vr()))
        .collect();
    for (tag, vr) in bulky {
        json_obj.remove_element(tag);
        // A large binary value stays as an element without a value, so that DICOMweb's
        // metadata can point at it with a BulkDataURI.
        if vr != VR::SQ {
            json_obj.put(dicom_core::DataElement::empty(tag, vr));
        }
    }
    record.metadata_json = dicom_json::to_string(&json_obj)
        .map_err(|e| MetadataError::Unreadable(format!("cannot express as DICOM JSON: {e}")))?;

    Ok(record)
}

/// [`extract_record`] on the first bytes of a Part-10 file still arriving (its size unknown):
/// the attributes once `prefix` reaches Pixel Data (or a later top-level tag, or what would
/// be the end); `None` while more is needed, and on any error (the whole file decides then).
pub fn extract_record_early(prefix: &[u8]) -> Option<InstanceRecord> {
    // Any size past the prefix: a length reaching past it asks for more, never errs.
    extract_record(prefix, u64::MAX).ok()
}

/// Whether attributes read by [`extract_record_early`] from the first `prefix_len` bytes of
/// `file` (the whole Part-10 file, now arrived) are what [`extract_record`] reads from that
/// prefix: the prefix checks against the file's real size (a length reaching past the file
/// is malformed). The parse itself does not depend on the size.
pub fn confirm_early(file: &[u8], prefix_len: usize) -> bool {
    let Some(prefix) = file.get(128..prefix_len) else {
        return false;
    };
    matches!(
        prescan::check_head(prefix, file.len() as u64 - 128),
        HeadCheck::Ok(_)
    )
}

/// The value bytes of a top-level element before Pixel Data, read from the head of a Part-10
/// file (preamble included) of `file_size` bytes, as stored (little endian for OB/OW);
/// `Ok(None)` if the data set does not have it. The head is checked by the prescan first.
pub fn element_bytes(
    head: &[u8],
    file_size: u64,
    group: u16,
    element: u16,
) -> Result<Option<Vec<u8>>, MetadataError> {
    let body = head
        .get(128..)
        .ok_or_else(|| MetadataError::Unreadable("shorter than a preamble".into()))?;
    match prescan::check_head(body, file_size.saturating_sub(128)) {
        HeadCheck::Ok(_) => {}
        HeadCheck::NeedMoreBytes => return Err(MetadataError::NeedMoreBytes),
        HeadCheck::Malformed(e) => return Err(MetadataError::Unreadable(e.to_string())),
    }
    let parsed = std::panic::catch_unwind(|| {
        OpenFileOptions::new()
            .read_preamble(ReadPreamble::Always)
            .read_until(tags::PIXEL_DATA)
            .from_reader(Cursor::new(head))
    });
    let file = match parsed {
        Ok(Ok(file)) => file,
        Ok(Err(e)) => return Err(MetadataError::Unreadable(e.to_string())),
        Err(_) => {
            return Err(MetadataError::Unreadable(
                "the DICOM parser failed on this data set".into(),
            ))
        }
    };
    let Some(found) = file.get(Tag(group, element)) else {
        return Ok(None);
    };
    found
        .to_bytes()
        .map(|b| Some(b.into_owned()))
        .map_err(|e| MetadataError::Unreadable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A testkit CT slice as a Part-10 file (preamble included), and where its Pixel Data starts.
    fn ct_file(rows: u16) -> (Vec<u8>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let spec = radport_testkit::SeriesSpec {
            count: 1,
            rows,
            columns: rows,
            ..Default::default()
        };
        let paths = radport_testkit::write_series(dir.path(), &spec).unwrap();
        let bytes = std::fs::read(&paths[0]).unwrap();
        let pixel = bytes
            .windows(6)
            .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00, b'O', b'W'])
            .expect("pixel data");
        (bytes, pixel)
    }

    #[test]
    fn heads_are_checked_before_parsing() {
        let (file, pixel) = ct_file(256);
        let size = file.len() as u64;
        // Whole, or cut inside Pixel Data: read.
        let record = extract_record(&file, size).unwrap();
        assert_eq!(record.modality.as_deref(), Some("CT"));
        assert!(extract_record(&file[..pixel + 1000], size).is_ok());
        // Cut before Pixel Data: more bytes needed.
        assert!(matches!(
            extract_record(&file[..pixel - 10], size),
            Err(MetadataError::NeedMoreBytes)
        ));
        // A length beyond the end of the file, whether the head is all of it or not.
        let mut hostile = file[..pixel].to_vec();
        hostile.extend_from_slice(&[0x29, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        hostile.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        hostile.extend_from_slice(&[0; 16]);
        for size in [hostile.len() as u64, 10 * hostile.len() as u64] {
            match extract_record(&hostile[..pixel + 20], size) {
                Err(MetadataError::Unreadable(e)) => assert!(e.contains("declares"), "{e}"),
                other => panic!("expected Unreadable, got {other:?}"),
            }
        }
        // Sequences nested 1000 deep.
        let mut deep = file[..pixel].to_vec();
        for _ in 0..1000 {
            deep.extend_from_slice(&[0x40, 0x00, 0x30, 0xA7, b'S', b'Q', 0, 0]);
            deep.extend_from_slice(&[0xFF; 4]);
            deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        match extract_record(&deep, deep.len() as u64) {
            Err(MetadataError::Unreadable(e)) => assert!(e.contains("nested"), "{e}"),
            other => panic!("expected Unreadable, got {other:?}"),
        }
    }

    /// Attributes read early, as a file arrives in pieces, and confirmed at its end are what
    /// reading the whole file gives — for a whole file, one cut inside Pixel Data (a length
    /// past its end), one cut before it, and one with a length past any end.
    #[test]
    fn attributes_read_early_and_confirmed_are_those_of_the_whole_file() {
        let (file, pixel) = ct_file(256);
        let mut hostile = file[..pixel].to_vec();
        hostile.extend_from_slice(&[0x29, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        hostile.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        hostile.extend_from_slice(&[0; 16]);
        let cases: [(&str, &[u8]); 4] = [
            ("whole", &file),
            ("cut in Pixel Data", &file[..pixel + 1000]),
            ("cut before Pixel Data", &file[..pixel - 10]),
            ("hostile length", &hostile),
        ];
        let mut confirmed = Vec::new();
        for (name, whole) in cases {
            // As it arrives: tried on prefixes of growing length.
            let mut early = None;
            for len in (4096..whole.len()).step_by(4096).chain([whole.len()]) {
                if let Some(record) = extract_record_early(&whole[..len]) {
                    early = Some((record, len));
                    break;
                }
            }
            let at_end = extract_record(whole, whole.len() as u64);
            match early {
                Some((record, len)) if confirm_early(whole, len) => {
                    confirmed.push(name);
                    let expected = at_end.expect(name);
                    assert_eq!(format!("{record:?}"), format!("{expected:?}"), "{name}");
                }
                // Not read early, or not confirmed: read at the end, as before.
                _ => {}
            }
        }
        // Pixel Data's own length is not checked, early or at the end.
        assert_eq!(confirmed, ["whole", "cut in Pixel Data"]);
        // A prefix that reaches Pixel Data is read early; one that does not, not.
        assert!(extract_record_early(&file[..pixel + 100]).is_some());
        assert!(extract_record_early(&file[..pixel - 10]).is_none());
        assert!(!confirm_early(&file[..100], 200), "a prefix past the file");
    }

    #[test]
    fn iso_2022_code_extensions_are_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let spec = radport_testkit::SeriesSpec {
            count: 1,
            charset: Some("\\ISO 2022 IR 87".into()),
            patient_name: "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B".into(),
            ..Default::default()
        };
        let paths = radport_testkit::write_series(dir.path(), &spec).unwrap();
        let bytes = std::fs::read(&paths[0]).unwrap();
        assert!(
            charset_for_parsing(&bytes).is_some(),
            "the charset is moved for parsing"
        );
        let record = extract_record(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(
            record.patient_name.as_deref(),
            Some("Yamada^Tarou=山田^太郎")
        );
    }
}
