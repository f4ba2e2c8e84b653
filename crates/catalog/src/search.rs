//! Searches at the four levels of the DICOM information model (patient, study, series,
//! instance) with DICOM's matching rules, for every query interface: DICOMweb's QIDO-RS and
//! DIMSE C-FIND (and the instance lists of WADO-RS, C-GET and C-MOVE) read through here, so
//! the matching semantics live in one place.
//!
//! The matching (PS3.4 C.2.2.2): single value (`=`; Person Name ignoring case), wildcard
//! (`*`, `?`; ignoring case), list of values (`a\b`), range (dates and times as text of the
//! same form; numbers), universal (an empty value: no condition). Attributes of a higher
//! level may be matched at a lower one (series across studies with a Patient ID). Everything
//! is answered from the catalog's rows: patients, studies, series and instances with the
//! columns below, and the computed attributes (numbers of related studies, series and
//! instances, Modalities in Study) counted over what the [`Scope`] lets the caller see.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{name_key, Catalog, CatalogError, ADMIN_PROJECT};

/// The level of a search: what one answer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// One answer per patient (Patient Root).
    Patient,
    /// One answer per study.
    Study,
    /// One answer per series.
    Series,
    /// One answer per instance.
    Instance,
}

/// An attribute the catalog keeps and matches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attribute {
    /// (0010,0020) Patient ID.
    PatientId,
    /// (0010,0010) Patient's Name.
    PatientName,
    /// (0010,0030) Patient's Birth Date.
    PatientBirthDate,
    /// (0010,0040) Patient's Sex.
    PatientSex,
    /// (0020,000D) Study Instance UID.
    StudyInstanceUid,
    /// (0008,0020) Study Date.
    StudyDate,
    /// (0008,0030) Study Time.
    StudyTime,
    /// (0008,0050) Accession Number.
    AccessionNumber,
    /// (0020,0010) Study ID.
    StudyId,
    /// (0008,1030) Study Description.
    StudyDescription,
    /// (0008,0090) Referring Physician's Name.
    ReferringPhysicianName,
    /// (0008,0061) Modalities in Study (computed; matches a study with a series of any of
    /// the values).
    ModalitiesInStudy,
    /// (0020,000E) Series Instance UID.
    SeriesInstanceUid,
    /// (0008,0060) Modality.
    Modality,
    /// (0020,0011) Series Number.
    SeriesNumber,
    /// (0008,103E) Series Description.
    SeriesDescription,
    /// (0018,0015) Body Part Examined.
    BodyPartExamined,
    /// (0008,0021) Series Date.
    SeriesDate,
    /// (0008,0018) SOP Instance UID.
    SopInstanceUid,
    /// (0008,0016) SOP Class UID.
    SopClassUid,
    /// (0020,0013) Instance Number.
    InstanceNumber,
}

/// How a value is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Text compared exactly (wildcards ignore case).
    Text,
    /// A Person Name: compared ignoring case.
    PersonName,
    /// A UID: exact, lists allowed, no wildcards.
    Uid,
    /// A date or time: exact or a range, as text of the same form.
    DateTime,
    /// An integer (IS): exact, list or range.
    Integer,
}

impl Attribute {
    /// The level the attribute belongs to.
    pub fn level(self) -> Level {
        use Attribute::*;
        match self {
            PatientId | PatientName | PatientBirthDate | PatientSex => Level::Patient,
            StudyInstanceUid
            | StudyDate
            | StudyTime
            | AccessionNumber
            | StudyId
            | StudyDescription
            | ReferringPhysicianName
            | ModalitiesInStudy => Level::Study,
            SeriesInstanceUid | Modality | SeriesNumber | SeriesDescription | BodyPartExamined
            | SeriesDate => Level::Series,
            SopInstanceUid | SopClassUid | InstanceNumber => Level::Instance,
        }
    }

    /// The attribute with this tag (group, element), if the catalog keeps it.
    pub fn from_tag(group: u16, element: u16) -> Option<Attribute> {
        use Attribute::*;
        Some(match (group, element) {
            (0x0010, 0x0020) => PatientId,
            (0x0010, 0x0010) => PatientName,
            (0x0010, 0x0030) => PatientBirthDate,
            (0x0010, 0x0040) => PatientSex,
            (0x0020, 0x000D) => StudyInstanceUid,
            (0x0008, 0x0020) => StudyDate,
            (0x0008, 0x0030) => StudyTime,
            (0x0008, 0x0050) => AccessionNumber,
            (0x0020, 0x0010) => StudyId,
            (0x0008, 0x1030) => StudyDescription,
            (0x0008, 0x0090) => ReferringPhysicianName,
            (0x0008, 0x0061) => ModalitiesInStudy,
            (0x0020, 0x000E) => SeriesInstanceUid,
            (0x0008, 0x0060) => Modality,
            (0x0020, 0x0011) => SeriesNumber,
            (0x0008, 0x103E) => SeriesDescription,
            (0x0018, 0x0015) => BodyPartExamined,
            (0x0008, 0x0021) => SeriesDate,
            (0x0008, 0x0018) => SopInstanceUid,
            (0x0008, 0x0016) => SopClassUid,
            (0x0020, 0x0013) => InstanceNumber,
            _ => return None,
        })
    }

    fn kind(self) -> Kind {
        use Attribute::*;
        match self {
            PatientName | ReferringPhysicianName => Kind::PersonName,
            StudyInstanceUid | SeriesInstanceUid | SopInstanceUid | SopClassUid => Kind::Uid,
            PatientBirthDate | StudyDate | StudyTime | SeriesDate => Kind::DateTime,
            SeriesNumber | InstanceNumber => Kind::Integer,
            _ => Kind::Text,
        }
    }

    /// The SQL column holding it, for a search at `level` (`p` patients, `st` studies, `s`
    /// series, `i` instances). `None`: computed (Modalities in Study).
    fn column(self, level: Level) -> Option<&'static str> {
        use Attribute::*;
        let patient_level = level == Level::Patient;
        Some(match self {
            PatientId if patient_level => "p.patient_id",
            PatientName if patient_level => "p.patient_name",
            PatientBirthDate if patient_level => "p.birth_date",
            PatientSex if patient_level => "p.sex",
            PatientId => "st.patient_id",
            PatientName => "st.patient_name",
            PatientBirthDate => "st.patient_birth_date",
            PatientSex => "st.patient_sex",
            StudyInstanceUid => "st.study_uid",
            StudyDate => "st.study_date",
            StudyTime => "st.study_time",
            AccessionNumber => "st.accession_number",
            StudyId => "st.study_id",
            StudyDescription => "st.study_description",
            ReferringPhysicianName => "st.referring_physician_name",
            ModalitiesInStudy => return None,
            SeriesInstanceUid => "s.series_uid",
            Modality => "s.modality",
            SeriesNumber => "s.series_number",
            SeriesDescription => "s.series_description",
            BodyPartExamined => "s.body_part_examined",
            SeriesDate => "s.series_date",
            SopInstanceUid => "i.sop_instance_uid",
            SopClassUid => "i.sop_class_uid",
            InstanceNumber => "i.instance_number",
        })
    }
}

/// A matching key's value, as DICOM writes it (PS3.4 C.2.2.2): empty (universal), a single
/// value, `*`/`?` wildcards, `a\b` a list, `from-to` a range (dates, times, numbers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// The attribute.
    pub attribute: Attribute,
    /// Its value in the query.
    pub value: String,
}

/// What the caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every series (administrators; project `admin`).
    All,
    /// The series of these projects (names).
    Projects(Vec<String>),
}

impl Scope {
    /// The series of one project (`admin`: every series).
    pub fn project(name: &str) -> Scope {
        if name.eq_ignore_ascii_case(ADMIN_PROJECT) {
            Scope::All
        } else {
            Scope::Projects(vec![name.to_string()])
        }
    }
}

/// A search.
#[derive(Clone, Debug)]
pub struct Search {
    /// What one answer is.
    pub level: Level,
    /// Conditions, all of which must hold (attributes above `level` allowed, below refused).
    pub conditions: Vec<Condition>,
    /// What the caller may see.
    pub scope: Scope,
    /// At most this many answers ([`MAX_SEARCH_RESULTS`] at most).
    pub limit: u32,
    /// Skipped answers before the first.
    pub offset: u64,
}

/// Series UIDs per `IN (…)` list when the series of a page of instances are read.
const IN_LIST_CHUNK: usize = 500;

/// The largest page of one search.
pub const MAX_SEARCH_RESULTS: u32 = 10_000;

/// Longest value of a matching key, in bytes (a list of UIDs included).
pub const MAX_CONDITION_LENGTH: usize = 64 * 1024;

/// Most values in a list of a matching key.
pub const MAX_LIST_VALUES: usize = 1000;

/// A patient's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatientAttributes {
    /// Patient ID.
    pub id: Option<String>,
    /// Patient's Name.
    pub name: Option<String>,
    /// Patient's Birth Date.
    pub birth_date: Option<String>,
    /// Patient's Sex.
    pub sex: Option<String>,
}

/// A study's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StudyAttributes {
    /// Study Instance UID.
    pub uid: String,
    /// Study Date.
    pub date: Option<String>,
    /// Study Time.
    pub time: Option<String>,
    /// Accession Number.
    pub accession_number: Option<String>,
    /// Study ID.
    pub id: Option<String>,
    /// Study Description.
    pub description: Option<String>,
    /// Referring Physician's Name.
    pub referring_physician_name: Option<String>,
}

/// A series' attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesAttributes {
    /// Series Instance UID.
    pub uid: String,
    /// Modality.
    pub modality: Option<String>,
    /// Series Number.
    pub number: Option<i64>,
    /// Series Description.
    pub description: Option<String>,
    /// Body Part Examined.
    pub body_part_examined: Option<String>,
    /// Series Date.
    pub date: Option<String>,
}

/// An instance's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceAttributes {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Instance Number.
    pub number: Option<i64>,
    /// Rows.
    pub rows: Option<i64>,
    /// Columns.
    pub columns: Option<i64>,
    /// Number of Frames.
    pub number_of_frames: Option<i64>,
    /// The transfer syntax it is stored in.
    pub transfer_syntax_uid: String,
    /// Its object in the archive.
    pub object_key: String,
    /// Its size in bytes.
    pub size: i64,
}

/// Counts over what the scope lets the caller see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RelatedCounts {
    /// Number of Patient Related Studies (patient level).
    pub studies: Option<i64>,
    /// Number of … Related Series (patient and study level).
    pub series: Option<i64>,
    /// Number of … Related Instances (patient, study and series level).
    pub instances: Option<i64>,
    /// Modalities in Study (study level), sorted.
    pub modalities: Vec<String>,
}

/// One answer: the attributes of its level and of the levels above (the patient's as the
/// study keeps them), and the computed counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// The patient.
    pub patient: PatientAttributes,
    /// The study (study level and below).
    pub study: Option<StudyAttributes>,
    /// The series (series level and below).
    pub series: Option<SeriesAttributes>,
    /// The instance (instance level).
    pub instance: Option<InstanceAttributes>,
    /// Computed attributes.
    pub counts: RelatedCounts,
}

enum Arg {
    Text(String),
    Int(i64),
}

/// Conditions and their arguments, numbered as they are added.
#[derive(Default)]
struct Sql {
    conditions: Vec<String>,
    args: Vec<Arg>,
}

impl Sql {
    fn arg(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        format!("${}", self.args.len())
    }

    fn text(&mut self, s: &str) -> String {
        self.arg(Arg::Text(s.to_string()))
    }
}

fn invalid(message: String) -> CatalogError {
    CatalogError::Invalid(message)
}

/// `*`/`?` wildcards → a `LIKE … ESCAPE '\'` pattern (the LIKE wildcards of the value escaped).
fn like_from_wildcards(value: &str) -> String {
    let mut pattern = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => pattern.push('%'),
            '?' => pattern.push('_'),
            '\\' | '%' | '_' => {
                pattern.push('\\');
                pattern.push(c);
            }
            c => pattern.push(c),
        }
    }
    pattern
}

/// Whether `value` is a valid date (`YYYYMMDD`), time (`HHMMSS.FFFFFF`, any prefix of it) or
/// integer, as a bound of a range or a single value.
fn check_bound(attribute: Attribute, kind: Kind, bound: &str) -> Result<(), CatalogError> {
    let ok = match kind {
        Kind::Integer => bound.trim().parse::<i64>().is_ok(),
        Kind::DateTime if matches!(attribute, Attribute::StudyTime) => {
            let (whole, fraction) = bound.split_once('.').unwrap_or((bound, ""));
            !whole.is_empty()
                && whole.len() <= 6
                && whole.len() % 2 == 0
                && whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.len() <= 6
                && fraction.bytes().all(|b| b.is_ascii_digit())
        }
        Kind::DateTime => bound.len() == 8 && bound.bytes().all(|b| b.is_ascii_digit()),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{attribute:?}: {bound:?} is not a valid {}",
            match kind {
                Kind::Integer => "integer",
                _ if attribute == Attribute::StudyTime => "time (HHMMSS.FFFFFF)",
                _ => "date (YYYYMMDD)",
            }
        )))
    }
}

/// The SQL condition of one matching key on `column`, or `None` for universal matching.
fn condition_sql(
    sql: &mut Sql,
    attribute: Attribute,
    column: &str,
    value: &str,
) -> Result<Option<String>, CatalogError> {
    if value.len() > MAX_CONDITION_LENGTH {
        return Err(invalid(format!(
            "{attribute:?}: the value is longer than {MAX_CONDITION_LENGTH} bytes"
        )));
    }
    let kind = attribute.kind();
    let value = value.trim_matches(|c: char| c == ' ' || c == '\0');
    // `*` alone matches everything, as an empty value does (PS3.4 C.2.2.2.4).
    if value.is_empty() || value == "*" {
        return Ok(None);
    }
    if value.contains('\\') {
        let values: Vec<&str> = value
            .split('\\')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if values.len() > MAX_LIST_VALUES {
            return Err(invalid(format!(
                "{attribute:?}: more than {MAX_LIST_VALUES} values in a list"
            )));
        }
        let mut alternatives = Vec::with_capacity(values.len());
        for v in values {
            if let Some(c) = condition_sql(sql, attribute, column, v)? {
                alternatives.push(c);
            } else {
                return Ok(None);
            }
        }
        if alternatives.is_empty() {
            return Ok(None);
        }
        return Ok(Some(format!("({})", alternatives.join(" OR "))));
    }
    match kind {
        Kind::Uid => {
            if value.contains(['*', '?']) {
                return Err(invalid(format!(
                    "{attribute:?}: a UID is matched by single values or a list, not wildcards"
                )));
            }
            let p = sql.text(value);
            Ok(Some(format!("{column} = {p}")))
        }
        Kind::Integer => {
            if let Some((from, to)) = value.split_once('-').filter(|(f, _)| !f.is_empty()) {
                let mut parts = Vec::new();
                for (bound, op) in [(from, ">="), (to, "<=")] {
                    if !bound.is_empty() {
                        check_bound(attribute, kind, bound)?;
                        let p = sql.arg(Arg::Int(bound.trim().parse().unwrap_or_default()));
                        parts.push(format!("{column} {op} {p}"));
                    }
                }
                return Ok(Some(parts.join(" AND ")));
            }
            check_bound(attribute, kind, value)?;
            let p = sql.arg(Arg::Int(value.trim().parse().unwrap_or_default()));
            Ok(Some(format!("{column} = {p}")))
        }
        Kind::DateTime => {
            if let Some((from, to)) = value.split_once('-') {
                let mut parts = vec![format!("{column} IS NOT NULL")];
                for (bound, op) in [(from, ">="), (to, "<=")] {
                    let bound = bound.trim();
                    if bound.is_empty() {
                        continue;
                    }
                    check_bound(attribute, kind, bound)?;
                    // A time's upper bound covers its fractions and unstated digits:
                    // "-1015" includes 101559.9.
                    let bound = if op == "<=" && attribute == Attribute::StudyTime {
                        format!("{bound}~")
                    } else {
                        bound.to_string()
                    };
                    let p = sql.text(&bound);
                    parts.push(format!("{column} {op} {p}"));
                }
                if from.trim().is_empty() && to.trim().is_empty() {
                    return Err(invalid(format!("{attribute:?}: a range needs a bound")));
                }
                return Ok(Some(parts.join(" AND ")));
            }
            check_bound(attribute, kind, value)?;
            let p = sql.text(value);
            if attribute == Attribute::StudyTime {
                // A time matches the same time with more digits ("1015" matches "101530").
                let upper = sql.text(&format!("{value}~"));
                return Ok(Some(format!("({column} >= {p} AND {column} <= {upper})")));
            }
            Ok(Some(format!("{column} = {p}")))
        }
        Kind::Text | Kind::PersonName => {
            if value.contains(['*', '?']) {
                let p = sql.text(&like_from_wildcards(value));
                Ok(Some(format!("lower({column}) LIKE lower({p}) ESCAPE '\\'")))
            } else if kind == Kind::PersonName {
                let p = sql.text(value);
                Ok(Some(format!("lower({column}) = lower({p})")))
            } else {
                let p = sql.text(value);
                Ok(Some(format!("{column} = {p}")))
            }
        }
    }
}

/// The condition that a series `s` is in the scope (`None`: everything is).
fn scope_sql(sql: &mut Sql, scope: &Scope) -> Result<Option<String>, CatalogError> {
    match scope {
        Scope::All => Ok(None),
        Scope::Projects(names) => {
            let mut keys = Vec::with_capacity(names.len());
            for name in names {
                let key = name_key("project", name)?;
                if key == ADMIN_PROJECT {
                    return Ok(None);
                }
                keys.push(key);
            }
            if keys.is_empty() {
                return Ok(Some("1 = 0".to_string()));
            }
            let placeholders: Vec<String> = keys.iter().map(|k| sql.text(k)).collect();
            Ok(Some(format!(
                "EXISTS (SELECT 1 FROM series_projects sp WHERE sp.series_uid = s.series_uid \
                 AND sp.project_key IN ({}))",
                placeholders.join(", ")
            )))
        }
    }
}

/// Checks a search's conditions as [`Catalog::search`] reads them — each value of its
/// attribute's form, lists within their limit, no attribute below the level — without running
/// it (a query interface refuses a bad query before it reaches the database).
pub fn check(search: &Search) -> Result<(), CatalogError> {
    let mut sql = Sql::default();
    for c in &search.conditions {
        let (attribute, column) = match c.attribute {
            Attribute::ModalitiesInStudy if search.level >= Level::Study => {
                (Attribute::Modality, "s.modality")
            }
            Attribute::ModalitiesInStudy => {
                return Err(invalid(
                    "ModalitiesInStudy is not a matching key of the Patient level".into(),
                ))
            }
            a if a.level() > search.level => {
                return Err(invalid(format!(
                    "{a:?} is not a matching key of the {:?} level",
                    search.level
                )))
            }
            a => (a, a.column(search.level).unwrap_or("x")),
        };
        condition_sql(&mut sql, attribute, column, &c.value)?;
    }
    Ok(())
}

fn bind_args<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &[Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::Text(s) => query.bind(s.clone()),
            Arg::Int(i) => query.bind(*i),
        };
    }
    query
}

const STUDY_COLUMNS: &str = "st.study_uid, st.patient_id, st.patient_name, \
     st.patient_birth_date, st.patient_sex, st.study_date, st.study_time, \
     st.accession_number, st.study_id, st.study_description, st.referring_physician_name";
const SERIES_COLUMNS: &str = "s.series_uid, s.modality, s.series_number, \
     s.series_description, s.body_part_examined, s.series_date, s.instance_count";
const INSTANCE_COLUMNS: &str = "i.sop_instance_uid, i.sop_class_uid, i.instance_number, \
     i.n_rows, i.n_columns, i.number_of_frames, i.transfer_syntax_uid, i.object_key, i.size";

fn study_from_row(row: &AnyRow) -> Result<(PatientAttributes, StudyAttributes), sqlx::Error> {
    Ok((
        PatientAttributes {
            id: row.try_get("patient_id")?,
            name: row.try_get("patient_name")?,
            birth_date: row.try_get("patient_birth_date")?,
            sex: row.try_get("patient_sex")?,
        },
        StudyAttributes {
            uid: row.try_get("study_uid")?,
            date: row.try_get("study_date")?,
            time: row.try_get("study_time")?,
            accession_number: row.try_get("accession_number")?,
            id: row.try_get("study_id")?,
            description: row.try_get("study_description")?,
            referring_physician_name: row.try_get("referring_physician_name")?,
        },
    ))
}

fn series_from_row(row: &AnyRow) -> Result<SeriesAttributes, sqlx::Error> {
    Ok(SeriesAttributes {
        uid: row.try_get("series_uid")?,
        modality: row.try_get("modality")?,
        number: row.try_get("series_number")?,
        description: row.try_get("series_description")?,
        body_part_examined: row.try_get("body_part_examined")?,
        date: row.try_get("series_date")?,
    })
}

fn instance_from_row(row: &AnyRow) -> Result<InstanceAttributes, sqlx::Error> {
    Ok(InstanceAttributes {
        sop_instance_uid: row.try_get("sop_instance_uid")?,
        sop_class_uid: row.try_get("sop_class_uid")?,
        number: row.try_get("instance_number")?,
        rows: row.try_get("n_rows")?,
        columns: row.try_get("n_columns")?,
        number_of_frames: row.try_get("number_of_frames")?,
        transfer_syntax_uid: row.try_get("transfer_syntax_uid")?,
        object_key: row.try_get("object_key")?,
        size: row.try_get("size")?,
    })
}

impl Catalog {
    /// The answers of a search, in a stable order: studies newest first (Study Date, then
    /// UID), series of one study by Series Number and across studies newest arrival first,
    /// instances by Instance Number. Errors: `Invalid` for a malformed value or an attribute
    /// below the level.
    pub async fn search(&self, search: &Search) -> Result<Vec<Found>, CatalogError> {
        let level = search.level;
        let mut sql = Sql::default();
        let mut in_study = false;
        // Conditions on the series of a study/patient (Modalities in Study, at levels above
        // series) go into the EXISTS that checks the scope.
        let mut series_conditions = Vec::new();
        for c in &search.conditions {
            if c.attribute.level() > level && c.attribute != Attribute::ModalitiesInStudy {
                return Err(invalid(format!(
                    "{:?} is not a matching key of the {level:?} level",
                    c.attribute
                )));
            }
            if c.attribute == Attribute::ModalitiesInStudy {
                if level < Level::Study {
                    return Err(invalid(
                        "ModalitiesInStudy is not a matching key of the Patient level".into(),
                    ));
                }
                let column = if level == Level::Study {
                    "s.modality"
                } else {
                    "s2.modality"
                };
                let Some(cond) = condition_sql(&mut sql, Attribute::Modality, column, &c.value)?
                else {
                    continue;
                };
                if level == Level::Study {
                    series_conditions.push(cond);
                } else {
                    sql.conditions.push(format!(
                        "EXISTS (SELECT 1 FROM series s2 WHERE s2.study_uid = s.study_uid \
                         AND {cond})"
                    ));
                }
                continue;
            }
            let Some(column) = c.attribute.column(level) else {
                continue;
            };
            if let Some(cond) = condition_sql(&mut sql, c.attribute, column, &c.value)? {
                if c.attribute == Attribute::StudyInstanceUid && !c.value.contains('\\') {
                    in_study = true;
                }
                sql.conditions.push(cond);
            }
        }
        let scope = scope_sql(&mut sql, &search.scope)?;
        let limit = i64::from(search.limit.min(MAX_SEARCH_RESULTS));
        let offset =
            i64::try_from(search.offset).map_err(|_| invalid("offset is too large".to_string()))?;
        let conditions = |extra: Vec<String>, sql: &Sql| -> String {
            let all: Vec<String> = sql.conditions.iter().cloned().chain(extra).collect();
            if all.is_empty() {
                "1 = 1".to_string()
            } else {
                all.join(" AND ")
            }
        };
        let series_exists = |join_study: &str, extra: &[String], scope: &Option<String>| {
            let inner: Vec<String> = scope.iter().cloned().chain(extra.iter().cloned()).collect();
            let inner = if inner.is_empty() {
                String::new()
            } else {
                format!(" AND {}", inner.join(" AND "))
            };
            format!("EXISTS (SELECT 1 FROM series s{join_study}{inner})")
        };
        let (statement, counts_needed) = match level {
            Level::Patient => {
                let exists = series_exists(
                    " JOIN studies st ON st.study_uid = s.study_uid WHERE st.patient_id = p.patient_id",
                    &series_conditions,
                    &scope,
                );
                (
                    format!(
                        "SELECT p.patient_id AS patient_id, p.patient_name AS patient_name, \
                         p.birth_date AS birth_date, p.sex AS sex FROM patients p \
                         WHERE {} ORDER BY p.patient_id LIMIT {limit} OFFSET {offset}",
                        conditions(vec![exists], &sql)
                    ),
                    true,
                )
            }
            Level::Study => {
                let exists = series_exists(
                    " WHERE s.study_uid = st.study_uid",
                    &series_conditions,
                    &scope,
                );
                (
                    format!(
                        "SELECT {STUDY_COLUMNS} FROM studies st WHERE {} \
                         ORDER BY st.study_date DESC NULLS LAST, st.study_uid \
                         LIMIT {limit} OFFSET {offset}",
                        conditions(vec![exists], &sql)
                    ),
                    true,
                )
            }
            Level::Series => {
                let order = if in_study {
                    "s.series_number NULLS LAST, s.series_uid"
                } else {
                    "s.first_arrival DESC, s.series_uid"
                };
                (
                    format!(
                        "SELECT {STUDY_COLUMNS}, {SERIES_COLUMNS} FROM series s \
                         JOIN studies st ON st.study_uid = s.study_uid WHERE {} \
                         ORDER BY {order} LIMIT {limit} OFFSET {offset}",
                        conditions(scope.iter().cloned().collect(), &sql)
                    ),
                    false,
                )
            }
            Level::Instance => {
                let in_series = search.conditions.iter().any(|c| {
                    c.attribute == Attribute::SeriesInstanceUid && !c.value.contains('\\')
                });
                let order = if in_series {
                    "i.instance_number NULLS LAST, i.sop_instance_uid"
                } else {
                    "i.sop_instance_uid"
                };
                (
                    format!(
                        "SELECT i.series_uid AS of_series, {INSTANCE_COLUMNS} \
                         FROM instances i JOIN series s ON s.series_uid = i.series_uid \
                         JOIN studies st ON st.study_uid = s.study_uid WHERE {} \
                         ORDER BY {order} LIMIT {limit} OFFSET {offset}",
                        conditions(scope.iter().cloned().collect(), &sql)
                    ),
                    false,
                )
            }
        };
        let rows = bind_args(
            sqlx::query(AssertSqlSafe(statement)).persistent(false),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await?;
        if level == Level::Instance {
            return self.instances_with_their_series(&rows).await;
        }
        let mut found = Vec::with_capacity(rows.len());
        for row in &rows {
            found.push(match level {
                Level::Patient => Found {
                    patient: PatientAttributes {
                        id: row.try_get("patient_id")?,
                        name: row.try_get("patient_name")?,
                        birth_date: row.try_get("birth_date")?,
                        sex: row.try_get("sex")?,
                    },
                    ..Found::default()
                },
                Level::Study => {
                    let (patient, study) = study_from_row(row)?;
                    Found {
                        patient,
                        study: Some(study),
                        ..Found::default()
                    }
                }
                Level::Series | Level::Instance => {
                    let (patient, study) = study_from_row(row)?;
                    let series = series_from_row(row)?;
                    let instance_count: i64 = row.try_get("instance_count")?;
                    Found {
                        patient,
                        study: Some(study),
                        series: Some(series),
                        counts: RelatedCounts {
                            instances: Some(instance_count),
                            ..RelatedCounts::default()
                        },
                        instance: None,
                    }
                }
            });
        }
        if counts_needed && !found.is_empty() {
            self.count_related(level, &search.scope, &mut found).await?;
        }
        Ok(found)
    }

    /// Answers of the instance level from rows of instance columns: the patient, study and
    /// series attributes, the same for every instance of a series, are read once per series
    /// (a retrieval of 500 slices decodes 500 × 9 values instead of 500 × 27; see
    /// `docs/performance.md`, WADO-RS). An instance whose series went away in between is
    /// left out, as if it had been deleted before the search.
    async fn instances_with_their_series(
        &self,
        rows: &[AnyRow],
    ) -> Result<Vec<Found>, CatalogError> {
        let mut wanted: Vec<String> = Vec::new();
        let mut instances = Vec::with_capacity(rows.len());
        for row in rows {
            let series_uid: String = row.try_get("of_series")?;
            if wanted.last() != Some(&series_uid) {
                wanted.push(series_uid.clone());
            }
            instances.push((series_uid, instance_from_row(row)?));
        }
        wanted.sort();
        wanted.dedup();
        let mut series_of: std::collections::HashMap<String, Found> =
            std::collections::HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(IN_LIST_CHUNK) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let statement = format!(
                "SELECT {STUDY_COLUMNS}, {SERIES_COLUMNS} FROM series s \
                 JOIN studies st ON st.study_uid = s.study_uid \
                 WHERE s.series_uid IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(statement)).persistent(false);
            for uid in chunk {
                query = query.bind(uid.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                let (patient, study) = study_from_row(&row)?;
                let series = series_from_row(&row)?;
                series_of.insert(
                    series.uid.clone(),
                    Found {
                        patient,
                        study: Some(study),
                        series: Some(series),
                        ..Found::default()
                    },
                );
            }
        }
        Ok(instances
            .into_iter()
            .filter_map(|(series_uid, instance)| {
                let mut found = series_of.get(&series_uid)?.clone();
                found.instance = Some(instance);
                Some(found)
            })
            .collect())
    }

    /// The computed attributes of a page of patients or studies, over the scope.
    async fn count_related(
        &self,
        level: Level,
        scope: &Scope,
        found: &mut [Found],
    ) -> Result<(), CatalogError> {
        let mut sql = Sql::default();
        let keys: Vec<String> = found
            .iter()
            .map(|f| match level {
                Level::Patient => f.patient.id.clone().unwrap_or_default(),
                _ => f.study.as_ref().map(|s| s.uid.clone()).unwrap_or_default(),
            })
            .collect();
        let placeholders: Vec<String> = keys.iter().map(|k| sql.text(k)).collect();
        let scope = scope_sql(&mut sql, scope)?;
        let scope = scope.map(|c| format!(" AND {c}")).unwrap_or_default();
        let (key, from) = match level {
            Level::Patient => (
                "st.patient_id",
                "series s JOIN studies st ON st.study_uid = s.study_uid",
            ),
            _ => ("s.study_uid", "series s"),
        };
        let statement = format!(
            "SELECT {key} AS k, COUNT(DISTINCT s.study_uid) AS studies, COUNT(*) AS series, \
             CAST(SUM(s.instance_count) AS BIGINT) AS instances FROM {from} \
             WHERE {key} IN ({}){scope} GROUP BY {key}",
            placeholders.join(", ")
        );
        let mut counts: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        for row in bind_args(
            sqlx::query(AssertSqlSafe(statement)).persistent(false),
            &sql.args,
        )
        .fetch_all(&self.pool)
        .await?
        {
            counts.insert(
                row.try_get("k")?,
                (
                    row.try_get("studies")?,
                    row.try_get("series")?,
                    row.try_get::<Option<i64>, _>("instances")?.unwrap_or(0),
                ),
            );
        }
        let mut modalities: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if level == Level::Study {
            let statement = format!(
                "SELECT DISTINCT s.study_uid AS k, s.modality AS modality FROM series s \
                 WHERE s.study_uid IN ({}){scope} AND s.modality IS NOT NULL",
                placeholders.join(", ")
            );
            for row in bind_args(
                sqlx::query(AssertSqlSafe(statement)).persistent(false),
                &sql.args,
            )
            .fetch_all(&self.pool)
            .await?
            {
                modalities
                    .entry(row.try_get("k")?)
                    .or_default()
                    .push(row.try_get("modality")?);
            }
        }
        for (f, key) in found.iter_mut().zip(&keys) {
            let (studies, series, instances) = counts.get(key).copied().unwrap_or_default();
            f.counts.studies = (level == Level::Patient).then_some(studies);
            f.counts.series = Some(series);
            f.counts.instances = Some(instances);
            if let Some(mut m) = modalities.remove(key) {
                m.sort();
                m.dedup();
                f.counts.modalities = m;
            }
        }
        Ok(())
    }

    /// One instance of each of these series (`Level::Series`) or studies (`Level::Study`): the
    /// one with the smallest SOP Instance UID, by series or study UID; for what a search
    /// answers from an instance's stored attributes (DICOMweb's `includefield`).
    pub async fn representative_instances(
        &self,
        level: Level,
        uids: &[String],
    ) -> Result<BTreeMap<String, String>, CatalogError> {
        let mut out = BTreeMap::new();
        let (key, from) = match level {
            Level::Series => ("i.series_uid", "instances i"),
            Level::Study => (
                "s.study_uid",
                "instances i JOIN series s ON s.series_uid = i.series_uid",
            ),
            _ => {
                return Err(invalid(format!(
                    "no representative instances of a {level:?}"
                )))
            }
        };
        for chunk in uids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let statement = format!(
                "SELECT {key} AS k, MIN(i.sop_instance_uid) AS sop FROM {from} \
                 WHERE {key} IN ({}) GROUP BY {key}",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(statement)).persistent(false);
            for uid in chunk {
                query = query.bind(uid.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                out.insert(row.try_get("k")?, row.try_get("sop")?);
            }
        }
        Ok(out)
    }

    /// The stored DICOM JSON of instances (PS3.18 F.2, without bulk data), by SOP Instance
    /// UID; absent UIDs are left out.
    pub async fn instance_metadata(
        &self,
        sop_instance_uids: &[String],
    ) -> Result<BTreeMap<String, String>, CatalogError> {
        let mut out = BTreeMap::new();
        for chunk in sop_instance_uids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
            let statement = format!(
                "SELECT sop_instance_uid, metadata_json FROM instances \
                 WHERE sop_instance_uid IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(statement)).persistent(false);
            for uid in chunk {
                query = query.bind(uid.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                out.insert(
                    row.try_get("sop_instance_uid")?,
                    row.try_get("metadata_json")?,
                );
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql_of(attribute: Attribute, value: &str) -> Option<String> {
        let mut sql = Sql::default();
        condition_sql(&mut sql, attribute, "c", value)
            .ok()
            .flatten()
    }

    #[test]
    fn matching_forms() {
        assert_eq!(sql_of(Attribute::PatientId, ""), None);
        assert_eq!(sql_of(Attribute::PatientId, "*"), None);
        assert_eq!(
            sql_of(Attribute::PatientId, "P1").as_deref(),
            Some("c = $1")
        );
        assert_eq!(
            sql_of(Attribute::PatientName, "doe*").as_deref(),
            Some("lower(c) LIKE lower($1) ESCAPE '\\'")
        );
        assert_eq!(
            sql_of(Attribute::PatientName, "Doe^John").as_deref(),
            Some("lower(c) = lower($1)")
        );
        assert_eq!(
            sql_of(Attribute::StudyInstanceUid, "1.2\\1.3").as_deref(),
            Some("(c = $1 OR c = $2)")
        );
        assert_eq!(
            sql_of(Attribute::StudyDate, "20200101-").as_deref(),
            Some("c IS NOT NULL AND c >= $1")
        );
        assert_eq!(
            sql_of(Attribute::StudyDate, "-20200101").as_deref(),
            Some("c IS NOT NULL AND c <= $1")
        );
        assert_eq!(
            sql_of(Attribute::SeriesNumber, "2-5").as_deref(),
            Some("c >= $1 AND c <= $2")
        );
        let mut sql = Sql::default();
        assert!(condition_sql(&mut sql, Attribute::StudyDate, "c", "2020-01-01").is_err());
        assert!(condition_sql(&mut sql, Attribute::StudyInstanceUid, "c", "1.2*").is_err());
        assert!(condition_sql(&mut sql, Attribute::SeriesNumber, "c", "x").is_err());
        assert!(condition_sql(&mut sql, Attribute::StudyTime, "c", "1").is_err());
    }

    #[test]
    fn wildcards_escape_like() {
        assert_eq!(like_from_wildcards("a%b_c*d?"), "a\\%b\\_c%d_");
    }
}
