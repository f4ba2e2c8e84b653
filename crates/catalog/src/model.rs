//! Plain data types exchanged with the catalog.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// SQL dialect of the connected database, derived from the connection URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// Embedded SQLite (`sqlite:` URLs).
    Sqlite,
    /// PostgreSQL (`postgres:` / `postgresql:` URLs).
    Postgres,
}

/// Where an instance goes: a project (by name, matched case-insensitively) and a dataset in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Project name (canonical or any case); the project must exist.
    pub project: String,
    /// Dataset name within the project; created on first use.
    pub dataset: String,
}

/// What to do when an instance with the same SOP Instance UID is already catalogued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicatePolicy {
    /// Keep the stored instance; the new object is discarded (memberships are still added).
    #[default]
    KeepFirst,
    /// Replace the stored instance with the new object.
    Overwrite,
    /// Replace only if the content hash differs, otherwise behave like `KeepFirst`.
    OverwriteIfDifferent,
}

impl DuplicatePolicy {
    /// The configuration name: `keep-first`, `overwrite` or `overwrite-if-different`.
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicatePolicy::KeepFirst => "keep-first",
            DuplicatePolicy::Overwrite => "overwrite",
            DuplicatePolicy::OverwriteIfDifferent => "overwrite-if-different",
        }
    }
}

impl fmt::Display for DuplicatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when parsing an unknown [`DuplicatePolicy`] name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown duplicate policy {0:?} (expected keep-first, overwrite or overwrite-if-different)"
)]
pub struct ParseDuplicatePolicyError(pub String);

impl FromStr for DuplicatePolicy {
    type Err = ParseDuplicatePolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "keep-first" => Ok(DuplicatePolicy::KeepFirst),
            "overwrite" => Ok(DuplicatePolicy::Overwrite),
            "overwrite-if-different" => Ok(DuplicatePolicy::OverwriteIfDifferent),
            other => Err(ParseDuplicatePolicyError(other.to_string())),
        }
    }
}

/// Result of [`Catalog::record_instance`](crate::Catalog::record_instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// New instance; `rec.object_key` is now referenced.
    Stored,
    /// The instance existed and was kept; memberships were added. The caller deletes the new
    /// object (`rec.object_key`) — unless it equals `existing_key` (content-addressed storage).
    DuplicateKept {
        /// Object key of the instance that stays catalogued.
        existing_key: String,
    },
    /// The row now points at `rec.object_key`; the caller deletes `old_key` after the commit
    /// (only if it differs from `rec.object_key`).
    Replaced {
        /// Object key the instance pointed at before.
        old_key: String,
    },
}

impl RecordOutcome {
    /// The object key the caller should delete now that the catalog committed, if any
    /// (never a key that is still referenced by this instance).
    pub fn object_to_delete<'a>(&'a self, rec: &'a InstanceRecord) -> Option<&'a str> {
        match self {
            RecordOutcome::Stored => None,
            RecordOutcome::DuplicateKept { existing_key } => {
                (existing_key != &rec.object_key).then_some(rec.object_key.as_str())
            }
            RecordOutcome::Replaced { old_key } => {
                (old_key != &rec.object_key).then_some(old_key.as_str())
            }
        }
    }
}

/// One received instance, as decoded by the ingest pipeline. Optional strings are decoded,
/// trimmed UTF-8 DICOM values; empty strings are treated as absent.
#[derive(Clone, Debug, Default)]
pub struct InstanceRecord {
    /// SOP Instance UID (0008,0018); the catalog key of the instance.
    pub sop_instance_uid: String,
    /// SOP Class UID (0008,0016).
    pub sop_class_uid: String,
    /// Series Instance UID (0020,000E).
    pub series_instance_uid: String,
    /// Study Instance UID (0020,000D).
    pub study_instance_uid: String,
    /// Transfer syntax the object is stored in.
    pub transfer_syntax_uid: String,
    /// Patient ID (0010,0020).
    pub patient_id: Option<String>,
    /// Patient's Name (0010,0010).
    pub patient_name: Option<String>,
    /// Patient's Birth Date (0010,0030).
    pub patient_birth_date: Option<String>,
    /// Patient's Sex (0010,0040).
    pub patient_sex: Option<String>,
    /// Study Date (0008,0020), `YYYYMMDD`.
    pub study_date: Option<String>,
    /// Study Time (0008,0030).
    pub study_time: Option<String>,
    /// Study Description (0008,1030).
    pub study_description: Option<String>,
    /// Accession Number (0008,0050).
    pub accession_number: Option<String>,
    /// Study ID (0020,0010).
    pub study_id: Option<String>,
    /// Referring Physician's Name (0008,0090).
    pub referring_physician_name: Option<String>,
    /// Modality (0008,0060).
    pub modality: Option<String>,
    /// Body Part Examined (0018,0015).
    pub body_part_examined: Option<String>,
    /// Series Description (0008,103E).
    pub series_description: Option<String>,
    /// Series Number (0020,0011).
    pub series_number: Option<i64>,
    /// Series Date (0008,0021).
    pub series_date: Option<String>,
    /// Instance Number (0020,0013).
    pub instance_number: Option<i64>,
    /// Rows (0028,0010).
    pub rows: Option<i64>,
    /// Columns (0028,0011).
    pub columns: Option<i64>,
    /// Number of Frames (0028,0008).
    pub number_of_frames: Option<i64>,
    /// Size of the stored object in bytes.
    pub size: i64,
    /// Checksum of the stored object: algorithm, `:`, hex digest (`xxh128:…`; instances
    /// recorded before 2026-12-05 have `blake3:…`, before schema version 3 `sha256:…`).
    pub checksum: String,
    /// Key of the stored object in the archive.
    pub object_key: String,
    /// DICOM JSON (PS3.18 F.2) of the data set without bulk data.
    pub metadata_json: String,
    /// Where the instance came from, e.g. `dimse:CALLING_AE` or `upload:...`.
    pub source: String,
}

/// A project with its membership counts.
#[derive(Clone, Debug)]
pub struct Project {
    /// Name as created (canonical spelling).
    pub name: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Number of series mapped to the project.
    pub series_count: i64,
    /// Number of datasets in the project.
    pub dataset_count: i64,
}

/// A dataset inside a project.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Name as first used (canonical spelling).
    pub name: String,
    /// Canonical name of the owning project.
    pub project: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Number of series in the dataset.
    pub series_count: i64,
    /// Last time an instance was routed into the dataset (duplicates included), RFC 3339 UTC.
    pub last_arrival: Option<String>,
}

/// A (project, dataset) pair a series belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DatasetRef {
    /// Canonical project name.
    pub project: String,
    /// Canonical dataset name.
    pub dataset: String,
}

/// Filter and paging for [`Catalog::list_series`](crate::Catalog::list_series).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SeriesFilter {
    /// Only series in this dataset of the project (case-insensitive).
    pub dataset: Option<String>,
    /// Only series with this modality (case-insensitive).
    pub modality: Option<String>,
    /// Only series whose study has exactly this Patient ID.
    pub patient_id: Option<String>,
    /// Only studies on or after this date (`YYYYMMDD` or `YYYY-MM-DD`).
    pub study_date_from: Option<String>,
    /// Only studies on or before this date (`YYYYMMDD` or `YYYY-MM-DD`).
    pub study_date_to: Option<String>,
    /// Case-insensitive substring over patient ID/name, study/series description, accession.
    pub q: Option<String>,
    /// Only series with this Body Part Examined (case-insensitive).
    pub body_part: Option<String>,
    /// Order: `arrival` (newest first, the default) or `study_date` (newest first).
    pub sort: Option<String>,
    /// Only series that have (true) or have not yet (false) been validated.
    pub validated: Option<bool>,
    /// Only validated series with (true) or without (false) errors.
    pub has_errors: Option<bool>,
    /// Only validated series with (true) or without (false) warnings.
    pub has_warnings: Option<bool>,
    /// Page size: default 50, at most 1000 (0 returns only the total).
    pub limit: Option<i64>,
    /// Number of series to skip (default 0; after `after`, when both are given).
    pub offset: Option<i64>,
    /// The `next` cursor of the previous page: the page starts after its last series.
    pub after: Option<String>,
}

/// One series as listed.
#[derive(Clone, Debug)]
pub struct SeriesSummary {
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Patient ID of the study.
    pub patient_id: Option<String>,
    /// Patient's Name of the study.
    pub patient_name: Option<String>,
    /// Modality.
    pub modality: Option<String>,
    /// Study Date (`YYYYMMDD`).
    pub study_date: Option<String>,
    /// Study Description.
    pub study_description: Option<String>,
    /// Series Description.
    pub series_description: Option<String>,
    /// Body Part Examined.
    pub body_part_examined: Option<String>,
    /// Accession Number.
    pub accession_number: Option<String>,
    /// Series Number.
    pub series_number: Option<i64>,
    /// Dataset names, sorted: within the listed project for `list_series`, all (distinct)
    /// dataset names for `get_series`.
    pub datasets: Vec<String>,
    /// Number of instances.
    pub instance_count: i64,
    /// Sum of the instances' object sizes in bytes.
    pub total_size: i64,
    /// First time an instance of the series was stored, RFC 3339 UTC.
    pub first_arrival: String,
    /// Last time an instance of the series was stored or replaced, RFC 3339 UTC.
    pub last_arrival: String,
    /// Errors found by the last validation (`None`: not validated yet).
    pub validation_errors: Option<i64>,
    /// Warnings found by the last validation (`None`: not validated yet).
    pub validation_warnings: Option<i64>,
}

/// One page of series plus the total number matching the filter.
#[derive(Clone, Debug)]
pub struct SeriesPage {
    /// Number of series matching the filter (all pages).
    pub total: i64,
    /// The series of this page, most recent arrival first.
    pub items: Vec<SeriesSummary>,
    /// Cursor of the page after this one (`SeriesFilter::after`); `None` on the last page.
    pub next: Option<String>,
}

/// One catalogued instance.
#[derive(Clone, Debug)]
pub struct InstanceRow {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// Instance Number.
    pub instance_number: Option<i64>,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Transfer syntax of the stored object.
    pub transfer_syntax_uid: String,
    /// Object size in bytes.
    pub size: i64,
    /// Checksum of the object: algorithm, `:`, hex digest (`xxh128:…`; `blake3:…` for
    /// instances recorded before 2026-12-05, `sha256:…` before schema version 3).
    pub checksum: String,
    /// Rows.
    pub rows: Option<i64>,
    /// Columns.
    pub columns: Option<i64>,
    /// Number of Frames.
    pub number_of_frames: Option<i64>,
    /// Time the current object was recorded, RFC 3339 UTC.
    pub received_at: String,
    /// Key of the object in the archive.
    pub object_key: String,
}

/// A series with its projects, instances and representative metadata.
#[derive(Clone, Debug)]
pub struct SeriesDetail {
    /// The summary; `datasets` holds all distinct dataset names of the series.
    pub series: SeriesSummary,
    /// Canonical names of all projects the series is mapped to, sorted.
    pub projects: Vec<String>,
    /// Every (project, dataset) membership of the series, sorted.
    pub dataset_memberships: Vec<DatasetRef>,
    /// Instances ordered by instance number (absent last), then SOP Instance UID.
    pub instances: Vec<InstanceRow>,
    /// Parsed DICOM JSON of the middle instance (by the order above), or `Null`.
    pub metadata: serde_json::Value,
    /// Instance count and the gaps in Instance Numbers.
    pub completeness: Completeness,
}

/// How complete a series looks from its Instance Numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completeness {
    /// Instances stored.
    pub instance_count: i64,
    /// Lowest Instance Number, if any instance has one.
    pub min_instance_number: Option<i64>,
    /// Highest Instance Number, if any instance has one.
    pub max_instance_number: Option<i64>,
    /// Instance Numbers between min and max that no instance has (at most 1000 listed).
    pub missing_instance_numbers: Vec<i64>,
    /// Number of missing Instance Numbers between min and max.
    pub missing_count: i64,
    /// Instances without an Instance Number.
    pub without_instance_number: i64,
}

impl Completeness {
    /// Computes completeness from the Instance Numbers of a series' instances.
    pub fn from_numbers(numbers: &[Option<i64>]) -> Completeness {
        let mut present: Vec<i64> = numbers.iter().flatten().copied().collect();
        present.sort_unstable();
        present.dedup();
        let (min, max) = (present.first().copied(), present.last().copied());
        let mut missing = Vec::new();
        let mut missing_count = 0i64;
        if let Some(lo) = min {
            let mut next = lo;
            for &n in &present {
                if n > next {
                    missing_count += n - next;
                    let mut m = next;
                    while m < n && missing.len() < 1000 {
                        missing.push(m);
                        m += 1;
                    }
                }
                next = n + 1;
            }
        }
        Completeness {
            instance_count: numbers.len() as i64,
            min_instance_number: min,
            max_instance_number: max,
            missing_instance_numbers: missing,
            missing_count,
            without_instance_number: numbers.iter().filter(|n| n.is_none()).count() as i64,
        }
    }
}

#[cfg(test)]
mod completeness_tests {
    use super::Completeness;

    #[test]
    fn gaps_are_listed() {
        let c = Completeness::from_numbers(&[Some(1), Some(2), Some(5), None, Some(7), Some(2)]);
        assert_eq!(c.instance_count, 6);
        assert_eq!(
            (c.min_instance_number, c.max_instance_number),
            (Some(1), Some(7))
        );
        assert_eq!(c.missing_instance_numbers, [3, 4, 6]);
        assert_eq!(c.missing_count, 3);
        assert_eq!(c.without_instance_number, 1);
        let empty = Completeness::from_numbers(&[]);
        assert_eq!(empty.missing_count, 0);
        assert_eq!(empty.min_instance_number, None);
    }
}
