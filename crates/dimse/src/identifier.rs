//! The identifier of a C-FIND, C-GET or C-MOVE request: read into a catalog search (level,
//! matching keys, the keys to return), and the identifiers of C-FIND answers built from what
//! the search found.
//!
//! Matching is the catalog's ([`radport_catalog::search`], shared with QIDO-RS). Keys the
//! catalog does not keep are returned empty (PS3.4 C.2.2.1.1: "zero length" for a return key
//! the SCP has no value of); sequences as matching or return keys are ignored.

use std::io::Cursor;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use radport_catalog::search::{Attribute, Condition, Found, Level};
use radport_prescan as prescan;

/// The information models of the query/retrieve SOP classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// Patient Root: patient, study, series, image levels.
    PatientRoot,
    /// Study Root: study, series, image levels.
    StudyRoot,
}

/// What a query/retrieve SOP class asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// C-FIND.
    Find,
    /// C-GET.
    Get,
    /// C-MOVE.
    Move,
}

/// The model and service of a query/retrieve SOP Class UID; `None` for others (the retired
/// Patient/Study Only model included).
pub fn sop_class(uid: &str) -> Option<(Model, Service)> {
    Some(match uid.trim_end_matches(['\0', ' ']) {
        "1.2.840.10008.5.1.4.1.2.1.1" => (Model::PatientRoot, Service::Find),
        "1.2.840.10008.5.1.4.1.2.1.2" => (Model::PatientRoot, Service::Move),
        "1.2.840.10008.5.1.4.1.2.1.3" => (Model::PatientRoot, Service::Get),
        "1.2.840.10008.5.1.4.1.2.2.1" => (Model::StudyRoot, Service::Find),
        "1.2.840.10008.5.1.4.1.2.2.2" => (Model::StudyRoot, Service::Move),
        "1.2.840.10008.5.1.4.1.2.2.3" => (Model::StudyRoot, Service::Get),
        _ => return None,
    })
}

/// Largest identifier accepted, in bytes (a long list of UIDs fits many times over).
pub const MAX_IDENTIFIER_LENGTH: usize = 1024 * 1024;

/// Why an identifier cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentifierError {
    /// Not decodable in the presentation context's transfer syntax.
    #[error("malformed identifier: {0}")]
    Malformed(String),
    /// No or an unknown Query/Retrieve Level, or one the model does not have.
    #[error("query/retrieve level {0:?} is not one of this information model")]
    Level(String),
    /// A matching key below the query level with a value.
    #[error("{0:?} is not a matching key of the {1:?} level")]
    BelowLevel(Attribute, Level),
}

/// A key the requester asked to have returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReturnKey {
    tag: Tag,
    vr: VR,
}

/// A decoded request identifier.
#[derive(Debug, Clone)]
pub struct Query {
    /// The Query/Retrieve Level.
    pub level: Level,
    /// The matching keys the catalog can match on (universal ones included; the search
    /// ignores them).
    pub conditions: Vec<Condition>,
    keys: Vec<ReturnKey>,
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Patient => "PATIENT",
        Level::Study => "STUDY",
        Level::Series => "SERIES",
        Level::Instance => "IMAGE",
    }
}

impl Query {
    /// Decodes an identifier sent in `transfer_syntax_uid` for `model`. Lengths are walked
    /// by the prescan before dicom-rs parses anything.
    pub fn decode(
        bytes: &[u8],
        transfer_syntax_uid: &str,
        model: Model,
    ) -> Result<Query, IdentifierError> {
        if bytes.len() > MAX_IDENTIFIER_LENGTH {
            return Err(IdentifierError::Malformed(format!(
                "longer than {MAX_IDENTIFIER_LENGTH} bytes"
            )));
        }
        let uid = transfer_syntax_uid.trim_end_matches(['\0', ' ']);
        let encoding = prescan::data_set_encoding(uid)
            .filter(|e| !e.deflated)
            .ok_or_else(|| {
                IdentifierError::Malformed(format!("transfer syntax {uid} is not supported"))
            })?;
        prescan::check_dataset(bytes, encoding.encoding)
            .map_err(|e| IdentifierError::Malformed(e.to_string()))?;
        let ts = TransferSyntaxRegistry
            .get(uid)
            .ok_or_else(|| IdentifierError::Malformed(format!("unknown transfer syntax {uid}")))?;
        let obj = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            InMemDicomObject::read_dataset_with_ts(Cursor::new(bytes), ts)
        }))
        .map_err(|_| IdentifierError::Malformed("parser failure".into()))?
        .map_err(|e| IdentifierError::Malformed(e.to_string()))?;
        let level_value = obj
            .get(tags::QUERY_RETRIEVE_LEVEL)
            .and_then(|e| {
                e.to_str()
                    .ok()
                    .map(|s| s.trim_matches([' ', '\0']).to_string())
            })
            .unwrap_or_default();
        let level = match (level_value.to_ascii_uppercase().as_str(), model) {
            ("PATIENT", Model::PatientRoot) => Level::Patient,
            ("STUDY", _) => Level::Study,
            ("SERIES", _) => Level::Series,
            ("IMAGE", _) => Level::Instance,
            _ => return Err(IdentifierError::Level(level_value)),
        };
        let mut conditions = Vec::new();
        let mut keys = Vec::new();
        for element in obj.iter() {
            let tag = element.header().tag;
            let vr = element.header().vr;
            if tag == tags::QUERY_RETRIEVE_LEVEL
                || tag == tags::SPECIFIC_CHARACTER_SET
                || vr == VR::SQ
                || tag.group() == 0x0002
            {
                continue;
            }
            keys.push(ReturnKey { tag, vr });
            let Some(attribute) = Attribute::from_tag(tag.group(), tag.element()) else {
                continue;
            };
            let value = element
                .to_str()
                .map(|s| s.trim_matches([' ', '\0']).to_string())
                .unwrap_or_default();
            let universal = value.is_empty() || value == "*";
            if attribute.level() > level && attribute != Attribute::ModalitiesInStudy {
                if universal {
                    continue;
                }
                return Err(IdentifierError::BelowLevel(attribute, level));
            }
            if attribute == Attribute::ModalitiesInStudy && level != Level::Study {
                continue;
            }
            conditions.push(Condition { attribute, value });
        }
        Ok(Query {
            level,
            conditions,
            keys,
        })
    }

    /// The identifier of one C-FIND answer, in `transfer_syntax_uid`: the Query/Retrieve
    /// Level, the level's unique key, and every requested key (empty where the catalog has no
    /// value). Non-ASCII values make it UTF-8 (Specific Character Set ISO_IR 192).
    pub fn answer(
        &self,
        found: &Found,
        retrieve_ae_title: &str,
        transfer_syntax_uid: &str,
    ) -> Result<Vec<u8>, IdentifierError> {
        let uid = transfer_syntax_uid.trim_end_matches(['\0', ' ']);
        let ts = TransferSyntaxRegistry
            .get(uid)
            .ok_or_else(|| IdentifierError::Malformed(format!("unknown transfer syntax {uid}")))?;
        let mut obj = InMemDicomObject::new_empty();
        let unique = match self.level {
            Level::Patient => tags::PATIENT_ID,
            Level::Study => tags::STUDY_INSTANCE_UID,
            Level::Series => tags::SERIES_INSTANCE_UID,
            Level::Instance => tags::SOP_INSTANCE_UID,
        };
        let mut wanted: Vec<ReturnKey> = self.keys.clone();
        if !wanted.iter().any(|k| k.tag == unique) {
            wanted.push(ReturnKey {
                tag: unique,
                vr: known_vr(unique).unwrap_or(VR::UI),
            });
        }
        let mut utf8 = false;
        for key in wanted {
            let vr = known_vr(key.tag).unwrap_or(key.vr);
            let value = value_of(key.tag, found, retrieve_ae_title);
            let element = match (vr, value) {
                (VR::US, Some(v)) => match v.parse::<u16>() {
                    Ok(n) => DataElement::new(key.tag, VR::US, PrimitiveValue::from(n)),
                    Err(_) => DataElement::new(key.tag, VR::US, PrimitiveValue::Empty),
                },
                (vr, Some(v)) => {
                    utf8 |= !v.is_ascii();
                    DataElement::new(key.tag, vr, PrimitiveValue::from(padded(&v, vr)))
                }
                (vr, None) => DataElement::new(key.tag, vr, PrimitiveValue::Empty),
            };
            obj.put(element);
        }
        obj.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(padded(level_name(self.level), VR::CS)),
        ));
        let charset = if utf8 {
            obj.put(DataElement::new(
                tags::SPECIFIC_CHARACTER_SET,
                VR::CS,
                PrimitiveValue::from("ISO_IR 192"),
            ));
            SpecificCharacterSet::from_code("ISO_IR 192").unwrap_or_default()
        } else {
            SpecificCharacterSet::default()
        };
        let mut out = Vec::with_capacity(512);
        obj.write_dataset_with_ts_cs(&mut out, ts, charset)
            .map_err(|e| IdentifierError::Malformed(format!("cannot encode an answer: {e}")))?;
        Ok(out)
    }
}

/// A value padded to even length (UIDs with NUL, text with a space).
fn padded(value: &str, vr: VR) -> String {
    let mut v = value.to_string();
    if v.len() % 2 == 1 {
        v.push(if vr == VR::UI { '\0' } else { ' ' });
    }
    v
}

/// The VR of the keys radport fills in.
fn known_vr(tag: Tag) -> Option<VR> {
    Some(match tag {
        tags::PATIENT_ID | tags::STUDY_DESCRIPTION | tags::SERIES_DESCRIPTION => VR::LO,
        tags::PATIENT_NAME | tags::REFERRING_PHYSICIAN_NAME => VR::PN,
        tags::PATIENT_BIRTH_DATE | tags::STUDY_DATE | tags::SERIES_DATE => VR::DA,
        tags::STUDY_TIME => VR::TM,
        tags::PATIENT_SEX
        | tags::MODALITIES_IN_STUDY
        | tags::MODALITY
        | tags::BODY_PART_EXAMINED
        | tags::QUERY_RETRIEVE_LEVEL => VR::CS,
        tags::STUDY_INSTANCE_UID
        | tags::SERIES_INSTANCE_UID
        | tags::SOP_INSTANCE_UID
        | tags::SOP_CLASS_UID => VR::UI,
        tags::ACCESSION_NUMBER | tags::STUDY_ID => VR::SH,
        tags::SERIES_NUMBER
        | tags::INSTANCE_NUMBER
        | tags::NUMBER_OF_FRAMES
        | tags::NUMBER_OF_PATIENT_RELATED_STUDIES
        | tags::NUMBER_OF_PATIENT_RELATED_SERIES
        | tags::NUMBER_OF_PATIENT_RELATED_INSTANCES
        | tags::NUMBER_OF_STUDY_RELATED_SERIES
        | tags::NUMBER_OF_STUDY_RELATED_INSTANCES
        | tags::NUMBER_OF_SERIES_RELATED_INSTANCES => VR::IS,
        tags::ROWS | tags::COLUMNS => VR::US,
        tags::RETRIEVE_AE_TITLE => VR::AE,
        _ => return None,
    })
}

/// The value of a return key in one answer, as text.
fn value_of(tag: Tag, found: &Found, retrieve_ae_title: &str) -> Option<String> {
    let p = &found.patient;
    let st = found.study.as_ref();
    let se = found.series.as_ref();
    let i = found.instance.as_ref();
    let c = &found.counts;
    let n = |v: Option<i64>| v.map(|n| n.to_string());
    match tag {
        tags::PATIENT_ID => p.id.clone(),
        tags::PATIENT_NAME => p.name.clone(),
        tags::PATIENT_BIRTH_DATE => p.birth_date.clone(),
        tags::PATIENT_SEX => p.sex.clone(),
        tags::STUDY_INSTANCE_UID => st.map(|s| s.uid.clone()),
        tags::STUDY_DATE => st.and_then(|s| s.date.clone()),
        tags::STUDY_TIME => st.and_then(|s| s.time.clone()),
        tags::ACCESSION_NUMBER => st.and_then(|s| s.accession_number.clone()),
        tags::STUDY_ID => st.and_then(|s| s.id.clone()),
        tags::STUDY_DESCRIPTION => st.and_then(|s| s.description.clone()),
        tags::REFERRING_PHYSICIAN_NAME => st.and_then(|s| s.referring_physician_name.clone()),
        tags::MODALITIES_IN_STUDY => (!c.modalities.is_empty()).then(|| c.modalities.join("\\")),
        tags::SERIES_INSTANCE_UID => se.map(|s| s.uid.clone()),
        tags::MODALITY => se.and_then(|s| s.modality.clone()),
        tags::SERIES_NUMBER => n(se.and_then(|s| s.number)),
        tags::SERIES_DESCRIPTION => se.and_then(|s| s.description.clone()),
        tags::BODY_PART_EXAMINED => se.and_then(|s| s.body_part_examined.clone()),
        tags::SERIES_DATE => se.and_then(|s| s.date.clone()),
        tags::SOP_INSTANCE_UID => i.map(|i| i.sop_instance_uid.clone()),
        tags::SOP_CLASS_UID => i.map(|i| i.sop_class_uid.clone()),
        tags::INSTANCE_NUMBER => n(i.and_then(|i| i.number)),
        tags::ROWS => n(i.and_then(|i| i.rows)),
        tags::COLUMNS => n(i.and_then(|i| i.columns)),
        tags::NUMBER_OF_FRAMES => n(i.and_then(|i| i.number_of_frames)),
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES => n(c.studies),
        tags::NUMBER_OF_PATIENT_RELATED_SERIES | tags::NUMBER_OF_STUDY_RELATED_SERIES => {
            n(c.series)
        }
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES
        | tags::NUMBER_OF_STUDY_RELATED_INSTANCES
        | tags::NUMBER_OF_SERIES_RELATED_INSTANCES => n(c.instances),
        tags::RETRIEVE_AE_TITLE => Some(retrieve_ae_title.to_string()),
        _ => None,
    }
    .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
    use radport_catalog::search::{PatientAttributes, StudyAttributes};

    const IMPLICIT: &str = "1.2.840.10008.1.2";

    fn identifier(elements: &[(Tag, VR, &str)]) -> Vec<u8> {
        let mut obj = InMemDicomObject::new_empty();
        for (tag, vr, v) in elements {
            obj.put(DataElement::new(
                *tag,
                *vr,
                PrimitiveValue::from(padded(v, *vr)),
            ));
        }
        let mut out = Vec::new();
        obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .unwrap();
        out
    }

    #[test]
    fn levels_keys_and_answers() {
        let bytes = identifier(&[
            (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
            (tags::PATIENT_NAME, VR::PN, "Doe*"),
            (tags::STUDY_DATE, VR::DA, "20240101-"),
            (tags::STUDY_INSTANCE_UID, VR::UI, ""),
            (tags::SERIES_INSTANCE_UID, VR::UI, ""),
            (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
        ]);
        let q = Query::decode(&bytes, IMPLICIT, Model::StudyRoot).unwrap();
        assert_eq!(q.level, Level::Study);
        let attrs: Vec<_> = q.conditions.iter().map(|c| c.attribute).collect();
        assert_eq!(
            attrs,
            vec![
                Attribute::StudyDate,
                Attribute::PatientName,
                Attribute::StudyInstanceUid
            ]
        );
        let found = Found {
            patient: PatientAttributes {
                name: Some("Müller^Jörg".into()),
                ..Default::default()
            },
            study: Some(StudyAttributes {
                uid: "1.2.3".into(),
                ..Default::default()
            }),
            counts: radport_catalog::search::RelatedCounts {
                instances: Some(7),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = q.answer(&found, "RADPORT", IMPLICIT).unwrap();
        let obj = InMemDicomObject::read_dataset_with_ts(
            Cursor::new(&answer),
            &IMPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        let text = |tag| {
            obj.element(tag)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(
            text(tags::STUDY_INSTANCE_UID).trim_end_matches('\0'),
            "1.2.3"
        );
        assert_eq!(text(tags::NUMBER_OF_STUDY_RELATED_INSTANCES), "7");
        assert_eq!(text(tags::SPECIFIC_CHARACTER_SET), "ISO_IR 192");
        assert_eq!(text(tags::QUERY_RETRIEVE_LEVEL), "STUDY");
        assert_eq!(text(tags::PATIENT_NAME), "Müller^Jörg");
    }

    #[test]
    fn wrong_levels_are_refused() {
        let patient = identifier(&[(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "PATIENT")]);
        assert!(Query::decode(&patient, IMPLICIT, Model::StudyRoot).is_err());
        assert!(Query::decode(&patient, IMPLICIT, Model::PatientRoot).is_ok());
        let below = identifier(&[
            (tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
            (tags::SOP_INSTANCE_UID, VR::UI, "1.2"),
        ]);
        assert!(matches!(
            Query::decode(&below, IMPLICIT, Model::StudyRoot),
            Err(IdentifierError::BelowLevel(..))
        ));
        assert!(Query::decode(&[0xff; 9], IMPLICIT, Model::StudyRoot).is_err());
    }
}
