//! Group commit of new instances: the instances recorded at the same time, in one statement.
//!
//! Every statement is a round trip: to the server on PostgreSQL, to the connection's worker
//! thread on SQLite (sqlx runs SQLite on a thread of its own per connection; the hand-offs,
//! not SQLite, were the cost). Recording a new instance statement by statement costs eleven
//! on PostgreSQL and four on SQLite. Here a group — one instance or many — is written by one
//! call: it creates the datasets, upserts every patient, study and series, inserts every
//! instance and adds every membership, each table's rows read from one JSON parameter
//! (`json_to_recordset` on PostgreSQL, in data-modifying CTEs of one statement, committed on
//! its own; `json_each` on SQLite, in one multi-statement call inside the write transaction).
//!
//! It is optimistic: it presumes every instance new, and one already recorded fails it as a
//! whole (unique violation on the instance, nothing kept). The group then goes the careful
//! way: on PostgreSQL a transaction that looks its instances up (and locks them), writes the
//! new ones with the same statement and records the others one by one; on SQLite every
//! record of the group by the one-by-one path, in one transaction.
//!
//! On PostgreSQL the call runs on a connection of the group committer's own (taken out of the
//! pool once, so not pinged before every use); on SQLite on the writer's.
//!
//! What several instances of the group share is merged here first, in arrival order, exactly
//! as recording them one after the other would leave it: the latest non-empty value of each
//! attribute wins, series counters add up. Rows are written in key order, so two groups in
//! flight lock shared rows in the same order.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;
use sqlx::{AnyConnection, Connection, Row};

use super::{opt, trace_recorded, Attempt, Keys, PendingRecord};
use crate::error::is_unique_violation;
use crate::schema::search_text;
use crate::{
    now, Catalog, CatalogError, Dialect, InstanceRecord, RecordOutcome, Writer, ADMIN_PROJECT,
};

/// `$1` the group's SOP Instance UIDs (a JSON array). Returns those already recorded, locked
/// until the commit.
const SQL_LOOKUP: &str = "SELECT sop_instance_uid FROM instances \
     WHERE sop_instance_uid IN (SELECT json_array_elements_text($1::json)) FOR UPDATE";

/// Everything the new instances of a group write, in one statement: `$1` patients, `$2`
/// studies, `$3` series, `$4` instances, `$5` project and `$6` dataset memberships, `$8` the
/// datasets (JSON arrays of the rows below), `$7` now. The upserts are those of the
/// one-by-one path. Foreign keys are checked at the end of the statement, when every row of
/// it is there; an unknown project fails the dataset's.
const SQL_RECORD_NEW: &str = concat!(
    "WITH datasets_created AS (\
     INSERT INTO datasets (project_key, name_key, name, created_at) \
     SELECT r.project_key, r.name_key, r.name, $7 \
     FROM json_to_recordset($8::json) AS r(project_key text, name_key text, name text) \
     ORDER BY r.project_key, r.name_key \
     ON CONFLICT (project_key, name_key) DO NOTHING), patients_upserted AS (",
    upsert_patient!(
        "SELECT r.patient_id, r.patient_name, r.birth_date, r.sex, $7, $7 \
         FROM json_to_recordset($1::json) \
         AS r(patient_id text, patient_name text, birth_date text, sex text) \
         ORDER BY r.patient_id"
    ),
    "), studies_upserted AS (",
    upsert_study!(
        "SELECT ",
        "r.study_uid",
        "r.patient_id",
        "r.patient_name",
        "r.patient_birth_date",
        "r.patient_sex",
        "r.study_date",
        "r.study_time",
        "r.study_description",
        "r.accession_number",
        "r.study_id",
        "$7",
        "r.referring_physician_name",
        " FROM json_to_recordset($2::json) AS r(study_uid text, patient_id text, \
         patient_name text, patient_birth_date text, patient_sex text, study_date text, \
         study_time text, study_description text, accession_number text, study_id text, \
         referring_physician_name text) ORDER BY r.study_uid"
    ),
    "), series_upserted AS (",
    upsert_series!(
        "SELECT ",
        "r.series_uid",
        "r.study_uid",
        "r.modality",
        "r.body_part_examined",
        "r.series_description",
        "r.series_number",
        "r.series_date",
        "r.instance_count",
        "r.total_size",
        "$7",
        "r.patient_id",
        "r.patient_name",
        "r.study_date",
        "r.study_description",
        "r.accession_number",
        " FROM json_to_recordset($3::json) AS r(series_uid text, study_uid text, \
         modality text, body_part_examined text, series_description text, \
         series_number bigint, series_date text, instance_count bigint, total_size bigint, \
         patient_id text, patient_name text, study_date text, study_description text, \
         accession_number text) ORDER BY r.series_uid"
    ),
    "), instances_inserted AS (\
     INSERT INTO instances \
     (sop_instance_uid, series_uid, sop_class_uid, transfer_syntax_uid, instance_number, \
      n_rows, n_columns, number_of_frames, size, checksum, object_key, metadata_json, source, \
      received_at) \
     SELECT r.sop_instance_uid, r.series_uid, r.sop_class_uid, r.transfer_syntax_uid, \
      r.instance_number, r.n_rows, r.n_columns, r.number_of_frames, r.size, r.checksum, \
      r.object_key, r.metadata_json, r.source, $7 \
     FROM json_to_recordset($4::json) AS r(sop_instance_uid text, series_uid text, \
      sop_class_uid text, transfer_syntax_uid text, instance_number bigint, n_rows bigint, \
      n_columns bigint, number_of_frames bigint, size bigint, checksum text, object_key text, \
      metadata_json text, source text) \
     ORDER BY r.sop_instance_uid), projects_added AS (",
    add_projects!(
        "SELECT r.series_uid, r.project_key, $7 \
         FROM json_to_recordset($5::json) AS r(series_uid text, project_key text) \
         ORDER BY r.series_uid, r.project_key"
    ),
    "), datasets_added AS (",
    add_dataset!(
        "SELECT ",
        "r.series_uid",
        "r.project_key",
        "r.dataset_key",
        "$7",
        " FROM json_to_recordset($6::json) \
         AS r(series_uid text, project_key text, dataset_key text) \
         ORDER BY r.series_uid, r.project_key, r.dataset_key"
    ),
    ") SELECT 1"
);

/// SQLite, a group's series — new ones inserted whole; of those already there only the
/// counters and the last arrival change here. SQLite rewrites the entries of every index on a
/// column an `UPDATE` names, changed or not: the series upsert of the one-by-one path rewrote
/// eleven index pages into the WAL for every instance of a series. `$rows` is a query of the
/// rows, with the columns of [`series_rows_json!`] (and `now`).
macro_rules! sqlite_series_counted {
    ($rows:expr) => {
        concat!(
            "INSERT INTO series \
             (series_uid, study_uid, modality, body_part_examined, series_description, \
              series_number, series_date, instance_count, total_size, first_arrival, \
              last_arrival, patient_id, patient_name, study_date, study_description, \
              accession_number, search_text) \
             SELECT r.series_uid, r.study_uid, r.modality, r.body_part_examined, \
              r.series_description, r.series_number, r.series_date, r.instance_count, \
              r.total_size, r.now, r.now, r.patient_id, r.patient_name, r.study_date, \
              r.study_description, r.accession_number, ",
            $crate::schema::search_text!(
                "r.patient_id",
                "r.patient_name",
                "r.study_description",
                "r.series_description",
                "r.accession_number"
            ),
            " FROM (",
            $rows,
            ") AS r WHERE true ON CONFLICT (series_uid) DO UPDATE SET \
               instance_count = series.instance_count + excluded.instance_count, \
               total_size = series.total_size + excluded.total_size, \
               last_arrival = excluded.last_arrival"
        )
    };
}
pub(super) use sqlite_series_counted;

/// SQLite, the rest of the series upsert for series already there: the latest non-empty
/// attributes, `search_text` from them, and the pipeline to run again — only where one of
/// them changes (a new series' row already has them). `$rows` as for
/// [`sqlite_series_counted!`].
macro_rules! sqlite_series_attributes {
    ($rows:expr) => {
        concat!(
            "UPDATE series SET \
               modality = COALESCE(r.modality, series.modality), \
               body_part_examined = COALESCE(r.body_part_examined, series.body_part_examined), \
               series_description = COALESCE(r.series_description, series.series_description), \
               series_number = COALESCE(r.series_number, series.series_number), \
               series_date = COALESCE(r.series_date, series.series_date), \
               patient_id = COALESCE(r.patient_id, series.patient_id), \
               patient_name = COALESCE(r.patient_name, series.patient_name), \
               study_date = COALESCE(r.study_date, series.study_date), \
               study_description = COALESCE(r.study_description, series.study_description), \
               accession_number = COALESCE(r.accession_number, series.accession_number), \
               pipeline_pending = 1, \
               search_text = ",
            $crate::schema::search_text!(
                "COALESCE(r.patient_id, series.patient_id)",
                "COALESCE(r.patient_name, series.patient_name)",
                "COALESCE(r.study_description, series.study_description)",
                "COALESCE(r.series_description, series.series_description)",
                "COALESCE(r.accession_number, series.accession_number)"
            ),
            " FROM (",
            $rows,
            ") AS r WHERE series.series_uid = r.series_uid AND (series.pipeline_pending <> 1 \
               OR COALESCE(r.modality, series.modality) IS DISTINCT FROM series.modality \
               OR COALESCE(r.body_part_examined, series.body_part_examined) IS DISTINCT FROM series.body_part_examined \
               OR COALESCE(r.series_description, series.series_description) IS DISTINCT FROM series.series_description \
               OR COALESCE(r.series_number, series.series_number) IS DISTINCT FROM series.series_number \
               OR COALESCE(r.series_date, series.series_date) IS DISTINCT FROM series.series_date \
               OR COALESCE(r.patient_id, series.patient_id) IS DISTINCT FROM series.patient_id \
               OR COALESCE(r.patient_name, series.patient_name) IS DISTINCT FROM series.patient_name \
               OR COALESCE(r.study_date, series.study_date) IS DISTINCT FROM series.study_date \
               OR COALESCE(r.study_description, series.study_description) IS DISTINCT FROM series.study_description \
               OR COALESCE(r.accession_number, series.accession_number) IS DISTINCT FROM series.accession_number)"
        )
    };
}
pub(super) use sqlite_series_attributes;

/// The group's series rows from the JSON parameter `$3` (`now` is `$7`).
macro_rules! series_rows_json {
    () => {
        "SELECT value ->> 'series_uid' AS series_uid, value ->> 'study_uid' AS study_uid, \
         value ->> 'modality' AS modality, \
         value ->> 'body_part_examined' AS body_part_examined, \
         value ->> 'series_description' AS series_description, \
         value ->> 'series_number' AS series_number, \
         value ->> 'series_date' AS series_date, \
         value ->> 'instance_count' AS instance_count, \
         value ->> 'total_size' AS total_size, value ->> 'patient_id' AS patient_id, \
         value ->> 'patient_name' AS patient_name, value ->> 'study_date' AS study_date, \
         value ->> 'study_description' AS study_description, \
         value ->> 'accession_number' AS accession_number, $7 AS now FROM json_each($3)"
    };
}

/// SQLite: what [`SQL_RECORD_NEW`] writes, statement by statement (SQLite has no
/// data-modifying CTEs; foreign keys are checked statement by statement, hence the order).
/// The parameters are the same, bound by number in each statement. `WHERE true` keeps
/// SQLite from reading `ON CONFLICT` as a join's `ON`.
const SQL_SQLITE_RECORD_NEW_STATEMENTS: [&str; 8] = [
    "INSERT INTO datasets (project_key, name_key, name, created_at) \
     SELECT value ->> 'project_key', value ->> 'name_key', value ->> 'name', $7 \
     FROM json_each($8) WHERE true ON CONFLICT (project_key, name_key) DO NOTHING",
    upsert_patient!(
        "SELECT value ->> 'patient_id', value ->> 'patient_name', value ->> 'birth_date', \
         value ->> 'sex', $7, $7 FROM json_each($1) WHERE true"
    ),
    upsert_study!(
        "SELECT ",
        "value ->> 'study_uid'",
        "value ->> 'patient_id'",
        "value ->> 'patient_name'",
        "value ->> 'patient_birth_date'",
        "value ->> 'patient_sex'",
        "value ->> 'study_date'",
        "value ->> 'study_time'",
        "value ->> 'study_description'",
        "value ->> 'accession_number'",
        "value ->> 'study_id'",
        "$7",
        "value ->> 'referring_physician_name'",
        " FROM json_each($2) WHERE true"
    ),
    sqlite_series_counted!(series_rows_json!()),
    sqlite_series_attributes!(series_rows_json!()),
    "INSERT INTO instances \
     (sop_instance_uid, series_uid, sop_class_uid, transfer_syntax_uid, instance_number, \
      n_rows, n_columns, number_of_frames, size, checksum, object_key, metadata_json, source, \
      received_at) \
     SELECT value ->> 'sop_instance_uid', value ->> 'series_uid', \
      value ->> 'sop_class_uid', value ->> 'transfer_syntax_uid', \
      value ->> 'instance_number', value ->> 'n_rows', value ->> 'n_columns', \
      value ->> 'number_of_frames', value ->> 'size', value ->> 'checksum', \
      value ->> 'object_key', value ->> 'metadata_json', value ->> 'source', $7 \
     FROM json_each($4)",
    add_projects!(
        "SELECT value ->> 'series_uid', value ->> 'project_key', $7 \
         FROM json_each($5) WHERE true"
    ),
    add_dataset!(
        "SELECT ",
        "value ->> 'series_uid'",
        "value ->> 'project_key'",
        "value ->> 'dataset_key'",
        "$7",
        " FROM json_each($6) WHERE true"
    ),
];

/// [`SQL_SQLITE_RECORD_NEW_STATEMENTS`] as one multi-statement call (for sqlx, which binds the
/// parameters by number in each).
static SQL_SQLITE_RECORD_NEW: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| SQL_SQLITE_RECORD_NEW_STATEMENTS.join("; "));

/// SQLite, a group of new instances whose durability the ingest journal provides
/// ([`crate::Durability::Deferred`]): [`SQL_SQLITE_RECORD_NEW`] in its own transaction with the
/// WAL left unsynced, and `synchronous` restored, as one call on the writer's connection — one
/// hand-off to SQLite's worker thread instead of five (pragma, begin, record, commit, pragma).
static SQL_SQLITE_RECORD_NEW_DEFERRED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "{}; BEGIN IMMEDIATE; {}; COMMIT; {}",
            crate::durability::SQLITE_DEFERRED,
            SQL_SQLITE_RECORD_NEW.as_str(),
            crate::durability::SQLITE_SYNCED
        )
    });

#[derive(Serialize)]
struct DatasetRow<'a> {
    project_key: &'a str,
    name_key: &'a str,
    name: &'a str,
}

#[derive(Default, Serialize)]
pub(super) struct PatientRow<'a> {
    pub(super) patient_id: &'a str,
    pub(super) patient_name: Option<&'a str>,
    pub(super) birth_date: Option<&'a str>,
    pub(super) sex: Option<&'a str>,
}

#[derive(Default, Serialize)]
pub(super) struct StudyRow<'a> {
    pub(super) study_uid: &'a str,
    pub(super) patient_id: Option<&'a str>,
    pub(super) patient_name: Option<&'a str>,
    pub(super) patient_birth_date: Option<&'a str>,
    pub(super) patient_sex: Option<&'a str>,
    pub(super) study_date: Option<&'a str>,
    pub(super) study_time: Option<&'a str>,
    pub(super) study_description: Option<&'a str>,
    pub(super) accession_number: Option<&'a str>,
    pub(super) study_id: Option<&'a str>,
    pub(super) referring_physician_name: Option<&'a str>,
}

#[derive(Default, Serialize)]
pub(super) struct SeriesRow<'a> {
    pub(super) series_uid: &'a str,
    pub(super) study_uid: &'a str,
    pub(super) modality: Option<&'a str>,
    pub(super) body_part_examined: Option<&'a str>,
    pub(super) series_description: Option<&'a str>,
    pub(super) series_number: Option<i64>,
    pub(super) series_date: Option<&'a str>,
    pub(super) instance_count: i64,
    pub(super) total_size: i64,
    pub(super) patient_id: Option<&'a str>,
    pub(super) patient_name: Option<&'a str>,
    pub(super) study_date: Option<&'a str>,
    pub(super) study_description: Option<&'a str>,
    pub(super) accession_number: Option<&'a str>,
}

#[derive(Serialize)]
pub(super) struct InstanceRow<'a> {
    pub(super) sop_instance_uid: &'a str,
    pub(super) series_uid: &'a str,
    pub(super) sop_class_uid: &'a str,
    pub(super) transfer_syntax_uid: &'a str,
    pub(super) instance_number: Option<i64>,
    pub(super) n_rows: Option<i64>,
    pub(super) n_columns: Option<i64>,
    pub(super) number_of_frames: Option<i64>,
    pub(super) size: i64,
    pub(super) checksum: &'a str,
    pub(super) object_key: &'a str,
    pub(super) metadata_json: &'a str,
    pub(super) source: &'a str,
}

#[derive(Serialize)]
struct ProjectMembershipRow<'a> {
    series_uid: &'a str,
    project_key: &'a str,
}

#[derive(Serialize)]
struct DatasetMembershipRow<'a> {
    series_uid: &'a str,
    project_key: &'a str,
    dataset_key: &'a str,
}

/// A later non-empty value replaces an earlier one, as a later upsert's `COALESCE` would.
fn latest<'a>(slot: &mut Option<&'a str>, value: &'a Option<String>) {
    if let Some(v) = opt(value) {
        *slot = Some(v);
    }
}

/// The rows the new instances of a group write, merged per key.
#[derive(Default)]
pub(super) struct GroupRows<'a> {
    pub(super) patients: BTreeMap<&'a str, PatientRow<'a>>,
    pub(super) studies: BTreeMap<&'a str, StudyRow<'a>>,
    pub(super) series: BTreeMap<&'a str, SeriesRow<'a>>,
    pub(super) instances: Vec<InstanceRow<'a>>,
    pub(super) projects: BTreeSet<(&'a str, &'a str)>,
    pub(super) datasets: BTreeSet<(&'a str, &'a str, &'a str)>,
}

impl<'a> GroupRows<'a> {
    pub(super) fn add(&mut self, rec: &'a InstanceRecord, keys: &'a Keys) {
        if let Some(patient_id) = opt(&rec.patient_id) {
            let row = self.patients.entry(patient_id).or_default();
            row.patient_id = patient_id;
            latest(&mut row.patient_name, &rec.patient_name);
            latest(&mut row.birth_date, &rec.patient_birth_date);
            latest(&mut row.sex, &rec.patient_sex);
        }
        let study = self.studies.entry(&rec.study_instance_uid).or_default();
        study.study_uid = &rec.study_instance_uid;
        latest(&mut study.patient_id, &rec.patient_id);
        latest(&mut study.patient_name, &rec.patient_name);
        latest(&mut study.patient_birth_date, &rec.patient_birth_date);
        latest(&mut study.patient_sex, &rec.patient_sex);
        latest(&mut study.study_date, &rec.study_date);
        latest(&mut study.study_time, &rec.study_time);
        latest(&mut study.study_description, &rec.study_description);
        latest(&mut study.accession_number, &rec.accession_number);
        latest(&mut study.study_id, &rec.study_id);
        latest(
            &mut study.referring_physician_name,
            &rec.referring_physician_name,
        );
        let series = self.series.entry(&rec.series_instance_uid).or_default();
        series.series_uid = &rec.series_instance_uid;
        // The upsert never changes a series' study: the first instance's stays.
        if series.study_uid.is_empty() {
            series.study_uid = &rec.study_instance_uid;
        }
        latest(&mut series.modality, &rec.modality);
        latest(&mut series.body_part_examined, &rec.body_part_examined);
        latest(&mut series.series_description, &rec.series_description);
        if rec.series_number.is_some() {
            series.series_number = rec.series_number;
        }
        latest(&mut series.series_date, &rec.series_date);
        series.instance_count += 1;
        series.total_size = series.total_size.saturating_add(rec.size);
        latest(&mut series.patient_id, &rec.patient_id);
        latest(&mut series.patient_name, &rec.patient_name);
        latest(&mut series.study_date, &rec.study_date);
        latest(&mut series.study_description, &rec.study_description);
        latest(&mut series.accession_number, &rec.accession_number);
        self.instances.push(InstanceRow {
            sop_instance_uid: &rec.sop_instance_uid,
            series_uid: &rec.series_instance_uid,
            sop_class_uid: &rec.sop_class_uid,
            transfer_syntax_uid: &rec.transfer_syntax_uid,
            instance_number: rec.instance_number,
            n_rows: rec.rows,
            n_columns: rec.columns,
            number_of_frames: rec.number_of_frames,
            size: rec.size,
            checksum: &rec.checksum,
            object_key: &rec.object_key,
            metadata_json: &rec.metadata_json,
            source: &rec.source,
        });
        self.projects
            .insert((&rec.series_instance_uid, &keys.project));
        self.projects
            .insert((&rec.series_instance_uid, ADMIN_PROJECT));
        self.datasets
            .insert((&rec.series_instance_uid, &keys.project, &keys.dataset));
    }
}

fn json<T: Serialize>(rows: T) -> Result<String, CatalogError> {
    serde_json::to_string(&rows)
        .map_err(|e| CatalogError::Invalid(format!("cannot encode a catalog group: {e}")))
}

fn attempt_error(a: Attempt) -> CatalogError {
    match a {
        Attempt::Retry(e) | Attempt::Fail(e) => e,
    }
}

/// The JSON parameters of [`SQL_RECORD_NEW`] for the new instances of a group.
pub(super) struct RecordNewParams {
    patients: String,
    studies: String,
    series: String,
    instances: String,
    projects: String,
    datasets_of_series: String,
    datasets: String,
}

impl RecordNewParams {
    fn of(group: &[&PendingRecord]) -> Result<RecordNewParams, CatalogError> {
        Self::of_records(group.iter().map(|p| (&p.rec, &p.keys)))
    }

    /// The parameters for the records of a group, in arrival order.
    fn of_records<'a>(
        group: impl Iterator<Item = (&'a InstanceRecord, &'a Keys)>,
    ) -> Result<RecordNewParams, CatalogError> {
        let mut rows = GroupRows::default();
        let mut datasets = BTreeSet::new();
        for (rec, keys) in group {
            rows.add(rec, keys);
            datasets.insert((
                keys.project.as_str(),
                keys.dataset.as_str(),
                keys.dataset_name.as_str(),
            ));
        }
        Ok(RecordNewParams {
            patients: json(rows.patients.values().collect::<Vec<_>>())?,
            studies: json(rows.studies.values().collect::<Vec<_>>())?,
            series: json(rows.series.values().collect::<Vec<_>>())?,
            instances: json(&rows.instances)?,
            projects: json(
                rows.projects
                    .iter()
                    .map(|&(series_uid, project_key)| ProjectMembershipRow {
                        series_uid,
                        project_key,
                    })
                    .collect::<Vec<_>>(),
            )?,
            datasets_of_series: json(
                rows.datasets
                    .iter()
                    .map(
                        |&(series_uid, project_key, dataset_key)| DatasetMembershipRow {
                            series_uid,
                            project_key,
                            dataset_key,
                        },
                    )
                    .collect::<Vec<_>>(),
            )?,
            datasets: json(
                datasets
                    .into_iter()
                    .map(|(project_key, name_key, name)| DatasetRow {
                        project_key,
                        name_key,
                        name,
                    })
                    .collect::<Vec<_>>(),
            )?,
        })
    }

    /// Runs [`SQL_RECORD_NEW`] (in a transaction or, alone, as its own) or, on SQLite,
    /// [`SQL_SQLITE_RECORD_NEW`] (in the caller's transaction).
    async fn execute(
        &self,
        conn: &mut AnyConnection,
        dialect: Dialect,
        now: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = match dialect {
            Dialect::Postgres => SQL_RECORD_NEW,
            Dialect::Sqlite => SQL_SQLITE_RECORD_NEW.as_str(),
        };
        self.execute_sql(conn, sql, now).await
    }

    async fn execute_sql(
        &self,
        conn: &mut AnyConnection,
        sql: &'static str,
        now: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql)
            .bind(&self.patients)
            .bind(&self.studies)
            .bind(&self.series)
            .bind(&self.instances)
            .bind(&self.projects)
            .bind(&self.datasets_of_series)
            .bind(now)
            .bind(&self.datasets)
            .execute(conn)
            .await
            .map(|_| ())
    }
}

impl Catalog {
    /// SQLite: every record of the group in one transaction (write lock held); any failure
    /// rolls all of them back (the caller then records each alone). Outcomes in the group's
    /// order.
    pub(super) async fn record_group_sqlite(
        &self,
        writer: &mut Writer,
        group: &[PendingRecord],
    ) -> Result<Vec<RecordOutcome>, CatalogError> {
        let mut uids = HashSet::new();
        if group
            .iter()
            .all(|p| uids.insert(p.rec.sop_instance_uid.as_str()))
        {
            let all: Vec<&PendingRecord> = group.iter().collect();
            let params = RecordNewParams::of(&all)?;
            let now = now();
            let mut tx = writer.begin().await?;
            match params.execute(&mut tx, Dialect::Sqlite, &now).await {
                Ok(()) => {
                    tx.commit().await?;
                    for p in group {
                        trace_recorded(&p.rec, &RecordOutcome::Stored);
                    }
                    return Ok(group.iter().map(|_| RecordOutcome::Stored).collect());
                }
                // An instance of the group is already recorded: roll back, the careful way.
                Err(e) if is_unique_violation(&e) => tx.rollback().await?,
                Err(e) => return Err(e.into()),
            }
        }
        self.record_together(writer, group).await
    }

    /// SQLite, a group of deferred records only, all of new instances: recorded in one call
    /// ([`SQL_SQLITE_RECORD_NEW_DEFERRED`]; write lock held). Whether it was; if not, nothing
    /// of it is (a transaction it began is rolled back) and `synchronous` is as before, so
    /// the caller takes the careful way.
    pub(super) async fn record_new_deferred_sqlite(
        &self,
        writer: &mut Writer,
        group: &[PendingRecord],
    ) -> bool {
        let mut uids = HashSet::new();
        if !group
            .iter()
            .all(|p| uids.insert(p.rec.sop_instance_uid.as_str()))
        {
            return false;
        }
        let all: Vec<&PendingRecord> = group.iter().collect();
        let Ok(params) = RecordNewParams::of(&all) else {
            return false;
        };
        let Ok(Some(connection)) = writer.own_connection_mut().await else {
            return false;
        };
        let now = now();
        match params
            .execute_sql(connection, SQL_SQLITE_RECORD_NEW_DEFERRED.as_str(), &now)
            .await
        {
            Ok(()) => {
                for p in group {
                    trace_recorded(&p.rec, &RecordOutcome::Stored);
                }
                true
            }
            Err(e) => {
                if !is_unique_violation(&e) {
                    tracing::debug!(error = %e, "deferred group in one call failed");
                }
                // Cut short after BEGIN: undo it (an error here means none was open).
                let _ = sqlx::query("ROLLBACK").execute(&mut *connection).await;
                writer.end_deferred().await;
                false
            }
        }
    }

    /// PostgreSQL: every record of the group, committed together; any failure rolls all of
    /// them back (the caller then records each alone). Outcomes in the group's order.
    pub(super) async fn record_group_postgres(
        &self,
        group: &[PendingRecord],
    ) -> Result<Vec<RecordOutcome>, CatalogError> {
        let idle = lock_idle(&self.group_connections).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            // Detached: not pinged before each use, not counted in the pool's size.
            None => self.pool.acquire().await?.detach(),
        };
        let result = self.record_group_on(&mut conn, group).await;
        // An error the server answered leaves the connection usable (a failed transaction
        // is rolled back on its next use); after any other it may be broken (a restarted
        // server): let it go.
        let usable = match &result {
            Ok(_) => true,
            Err(CatalogError::Database(e)) => matches!(e, sqlx::Error::Database(_)),
            Err(_) => false,
        };
        if usable {
            lock_idle(&self.group_connections).push(conn);
        }
        result
    }

    async fn record_group_on(
        &self,
        conn: &mut AnyConnection,
        group: &[PendingRecord],
    ) -> Result<Vec<RecordOutcome>, CatalogError> {
        let now = now();
        let mut uids = HashSet::new();
        if group
            .iter()
            .all(|p| uids.insert(p.rec.sop_instance_uid.as_str()))
        {
            let all: Vec<&PendingRecord> = group.iter().collect();
            match RecordNewParams::of(&all)?
                .execute(conn, Dialect::Postgres, &now)
                .await
            {
                Ok(()) => {
                    for p in group {
                        trace_recorded(&p.rec, &RecordOutcome::Stored);
                    }
                    return Ok(group.iter().map(|_| RecordOutcome::Stored).collect());
                }
                // An instance of the group is already recorded: nothing was written.
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.record_group_checked(conn, group, &now).await
    }

    /// The careful way: look the group's instances up first, in one transaction.
    async fn record_group_checked(
        &self,
        conn: &mut AnyConnection,
        group: &[PendingRecord],
        now: &str,
    ) -> Result<Vec<RecordOutcome>, CatalogError> {
        let uids: Vec<&str> = group
            .iter()
            .map(|p| p.rec.sop_instance_uid.as_str())
            .collect();
        let mut tx = conn.begin().await?;
        let existing: HashSet<String> = sqlx::query(SQL_LOOKUP)
            .bind(json(&uids)?)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?;

        // New instances together; those already recorded, or twice in the group, one by one
        // after them.
        let mut new = Vec::new();
        let mut seen = HashSet::new();
        let mut one_by_one = Vec::new();
        for (i, p) in group.iter().enumerate() {
            let uid = p.rec.sop_instance_uid.as_str();
            if existing.contains(uid) || !seen.insert(uid) {
                one_by_one.push(i);
            } else {
                new.push(p);
            }
        }
        if !new.is_empty() {
            RecordNewParams::of(&new)?
                .execute(&mut tx, Dialect::Postgres, now)
                .await?;
        }
        let mut outcomes: Vec<Option<RecordOutcome>> = group.iter().map(|_| None).collect();
        for i in one_by_one {
            let p = &group[i];
            let outcome = self
                .record_in(&mut tx, &p.rec, &p.keys, p.policy)
                .await
                .map_err(attempt_error)?;
            outcomes[i] = Some(outcome);
        }
        tx.commit().await?;
        Ok(group
            .iter()
            .zip(outcomes)
            .map(|(p, outcome)| {
                outcome.unwrap_or_else(|| {
                    trace_recorded(&p.rec, &RecordOutcome::Stored);
                    RecordOutcome::Stored
                })
            })
            .collect())
    }
}

/// The idle connections of the group committers; a panic while it was held cannot leave it
/// inconsistent (push and pop only), so a poisoned lock is used as is.
fn lock_idle(
    idle: &std::sync::Mutex<Vec<AnyConnection>>,
) -> std::sync::MutexGuard<'_, Vec<AnyConnection>> {
    idle.lock().unwrap_or_else(|e| e.into_inner())
}
