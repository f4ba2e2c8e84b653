//! DICOM JSON (PS3.18 F.2): attributes of the catalog's rows as JSON elements, and the
//! keyword/tag dictionary of query parameters.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_dictionary_std::StandardDataDictionary;
use serde_json::{json, Map, Value};

use radport_catalog::search::{Found, Level};

/// A tag as DICOM JSON keys it: eight upper-case hex digits.
pub(crate) fn key(group: u16, element: u16) -> String {
    format!("{group:04X}{element:04X}")
}

/// The tag a query parameter names: a keyword (`PatientName`) or eight hex digits
/// (`00100010`). Sequence paths (`a.b`) are not supported.
pub(crate) fn tag_of(name: &str) -> Option<(u16, u16)> {
    if name.len() == 8 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
        let group = u16::from_str_radix(&name[..4], 16).ok()?;
        let element = u16::from_str_radix(&name[4..], 16).ok()?;
        return Some((group, element));
    }
    let entry = StandardDataDictionary.by_name(name)?;
    let tag = entry.tag();
    Some((tag.group(), tag.element()))
}

/// An element with a VR and values (no `Value` when there are none).
pub(crate) fn element(vr: &str, values: Vec<Value>) -> Value {
    if values.is_empty() {
        json!({ "vr": vr })
    } else {
        json!({ "vr": vr, "Value": values })
    }
}

fn text(vr: &str, value: Option<&str>) -> Value {
    element(vr, value.map(|v| vec![json!(v)]).unwrap_or_default())
}

/// A Person Name: its component groups as `Alphabetic`, `Ideographic`, `Phonetic`.
fn person_name(value: Option<&str>) -> Value {
    let Some(value) = value else {
        return element("PN", Vec::new());
    };
    let mut name = Map::new();
    for (group, label) in value
        .split('=')
        .zip(["Alphabetic", "Ideographic", "Phonetic"])
    {
        if !group.is_empty() {
            name.insert(label.to_string(), json!(group));
        }
    }
    element("PN", vec![Value::Object(name)])
}

fn integer(vr: &str, value: Option<i64>) -> Value {
    element(vr, value.map(|v| vec![json!(v)]).unwrap_or_default())
}

/// The attributes of an answer at `level` (PS3.18 tables 10.6.3-3 to -5, with those of the
/// levels above, which a search across studies or series returns), keyed by tag.
pub(crate) fn found_attributes(
    found: &Found,
    level: Level,
    retrieve_url: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    let mut put = |group: u16, element: u16, value: Value| {
        out.insert(key(group, element), value);
    };
    let p = &found.patient;
    put(0x0010, 0x0010, person_name(p.name.as_deref()));
    put(0x0010, 0x0020, text("LO", p.id.as_deref()));
    put(0x0010, 0x0030, text("DA", p.birth_date.as_deref()));
    put(0x0010, 0x0040, text("CS", p.sex.as_deref()));
    if level == Level::Patient {
        put(0x0020, 0x1200, integer("IS", found.counts.studies));
        put(0x0020, 0x1202, integer("IS", found.counts.series));
        put(0x0020, 0x1204, integer("IS", found.counts.instances));
        return out;
    }
    if let Some(st) = &found.study {
        put(0x0008, 0x0020, text("DA", st.date.as_deref()));
        put(0x0008, 0x0030, text("TM", st.time.as_deref()));
        put(0x0008, 0x0050, text("SH", st.accession_number.as_deref()));
        put(
            0x0008,
            0x0090,
            person_name(st.referring_physician_name.as_deref()),
        );
        put(0x0008, 0x1030, text("LO", st.description.as_deref()));
        put(0x0020, 0x000D, text("UI", Some(&st.uid)));
        put(0x0020, 0x0010, text("SH", st.id.as_deref()));
    }
    put(0x0008, 0x0056, text("CS", Some("ONLINE")));
    put(0x0008, 0x1190, text("UR", Some(retrieve_url)));
    if level == Level::Study {
        put(
            0x0008,
            0x0061,
            element(
                "CS",
                found.counts.modalities.iter().map(|m| json!(m)).collect(),
            ),
        );
        put(0x0020, 0x1206, integer("IS", found.counts.series));
        put(0x0020, 0x1208, integer("IS", found.counts.instances));
        return out;
    }
    if let Some(se) = &found.series {
        put(0x0008, 0x0060, text("CS", se.modality.as_deref()));
        put(0x0008, 0x0021, text("DA", se.date.as_deref()));
        put(0x0008, 0x103E, text("LO", se.description.as_deref()));
        put(0x0018, 0x0015, text("CS", se.body_part_examined.as_deref()));
        put(0x0020, 0x000E, text("UI", Some(&se.uid)));
        put(0x0020, 0x0011, integer("IS", se.number));
    }
    if level == Level::Series {
        put(0x0020, 0x1209, integer("IS", found.counts.instances));
        return out;
    }
    if let Some(i) = &found.instance {
        put(0x0008, 0x0016, text("UI", Some(&i.sop_class_uid)));
        put(0x0008, 0x0018, text("UI", Some(&i.sop_instance_uid)));
        put(0x0020, 0x0013, integer("IS", i.number));
        put(0x0028, 0x0010, integer("US", i.rows));
        put(0x0028, 0x0011, integer("US", i.columns));
        put(0x0028, 0x0008, integer("IS", i.number_of_frames));
        put(0x0008, 0x3002, text("UI", Some(&i.transfer_syntax_uid)));
    }
    out
}

/// Tags of the patient and study levels that `includefield=all` copies from a stored instance
/// at the study level (besides all of group 0010).
const STUDY_LEVEL_TAGS: &[(u16, u16)] = &[
    (0x0008, 0x0020),
    (0x0008, 0x0030),
    (0x0008, 0x0050),
    (0x0008, 0x0080),
    (0x0008, 0x0090),
    (0x0008, 0x1030),
    (0x0008, 0x1032),
    (0x0008, 0x1060),
    (0x0020, 0x000D),
    (0x0020, 0x0010),
    (0x0032, 0x1032),
    (0x0032, 0x1060),
];

/// Tags of the series level that `includefield=all` copies from a stored instance at the
/// series level.
const SERIES_LEVEL_TAGS: &[(u16, u16)] = &[
    (0x0008, 0x0021),
    (0x0008, 0x0031),
    (0x0008, 0x0060),
    (0x0008, 0x0070),
    (0x0008, 0x1010),
    (0x0008, 0x103E),
    (0x0008, 0x1090),
    (0x0018, 0x0015),
    (0x0018, 0x1030),
    (0x0020, 0x000E),
    (0x0020, 0x0011),
    (0x0020, 0x0052),
    (0x0020, 0x0060),
    (0x0040, 0x0244),
    (0x0040, 0x0245),
    (0x0040, 0x0254),
];

/// Whether `includefield=all` at `level` copies the stored attribute `tag_key` (instance
/// level: every attribute).
pub(crate) fn belongs_to_level(tag_key: &str, level: Level) -> bool {
    let Some((group, element)) = tag_of(tag_key) else {
        return false;
    };
    if level == Level::Instance || group == 0x0010 {
        return true;
    }
    STUDY_LEVEL_TAGS.contains(&(group, element))
        || (level == Level::Series && SERIES_LEVEL_TAGS.contains(&(group, element)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_by_keyword_or_hex() {
        assert_eq!(tag_of("PatientName"), Some((0x0010, 0x0010)));
        assert_eq!(tag_of("0020000d"), Some((0x0020, 0x000D)));
        assert_eq!(tag_of("NoSuchKeyword"), None);
        assert_eq!(key(0x0008, 0x103E), "0008103E");
    }

    #[test]
    fn person_names_split_into_groups() {
        assert_eq!(
            person_name(Some("Yamada^Tarou=山田^太郎")),
            json!({"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}]})
        );
        assert_eq!(person_name(None), json!({"vr": "PN"}));
    }
}
