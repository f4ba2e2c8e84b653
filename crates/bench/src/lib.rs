//! What radport's benchmark programs (`src/bin/`) share: the synthetic catalog rows they record
//! and the gallery queries they time. Not part of the product; see bench/.

use radport_catalog::SeriesFilter;

/// A DICOM JSON document of about the size the receiver stores for a CT slice (3.4 KB).
pub fn metadata_json(i: usize) -> String {
    let mut doc = serde_json::Map::new();
    for k in 0..60 {
        doc.insert(
            format!("0018{k:04X}"),
            serde_json::json!({"vr": "LO", "Value": [format!("value {i} {k} ......................")]}),
        );
    }
    serde_json::Value::Object(doc).to_string()
}

/// The gallery's filters as users combine them, each with the name a table prints: no filter,
/// modality, `dataset`, a year of study dates, text search, modality + body part sorted by
/// study date, and a deep page.
pub fn gallery_cases(dataset: &str) -> Vec<(String, SeriesFilter)> {
    let case = |name: &str, filter: SeriesFilter| (name.to_string(), filter);
    vec![
        case("first page, no filter", SeriesFilter::default()),
        case(
            "modality=CT",
            SeriesFilter {
                modality: Some("CT".into()),
                ..Default::default()
            },
        ),
        case(
            &format!("dataset={dataset}"),
            SeriesFilter {
                dataset: Some(dataset.into()),
                ..Default::default()
            },
        ),
        case(
            "study date range (a year)",
            SeriesFilter {
                study_date_from: Some("20210101".into()),
                study_date_to: Some("20211231".into()),
                ..Default::default()
            },
        ),
        case(
            "text search q=Name42",
            SeriesFilter {
                q: Some("Name42".into()),
                ..Default::default()
            },
        ),
        case(
            "modality + body part, sorted by study date",
            SeriesFilter {
                modality: Some("MR".into()),
                body_part: Some("HEAD".into()),
                sort: Some("study_date".into()),
                ..Default::default()
            },
        ),
        case(
            "page 1000 (offset 50 000)",
            SeriesFilter {
                offset: Some(50_000),
                ..Default::default()
            },
        ),
    ]
}
