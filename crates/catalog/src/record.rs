//! The hot path: recording one received instance.

use std::time::Duration;

use sqlx::{AnyConnection, Row};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::schema::search_text;

use crate::error::{is_foreign_key_violation, is_transient_db, is_unique_violation};
use crate::{
    name_key, now, Catalog, CatalogError, Dialect, DuplicatePolicy, Durability, InstanceRecord,
    RecordOutcome, Route, Writer, ADMIN_PROJECT, MAX_WRITE_ATTEMPTS,
};

// Every statement below is a static string, so sqlx prepares it once per connection and
// keeps it in the connection's statement cache.

const SQL_ENSURE_DATASET: &str = "INSERT INTO datasets (project_key, name_key, name, created_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (project_key, name_key) DO NOTHING";

/// PostgreSQL: lock the row so concurrent overwrites of one instance see each other's key.
const SQL_LOOKUP_INSTANCE_FOR_UPDATE: &str = "SELECT series_uid, checksum, object_key, size \
     FROM instances WHERE sop_instance_uid = $1 FOR UPDATE";

// The writes of a new instance exist twice: as separate statements with their own
// parameters (every database), and fused into one multi-statement call (SQLite). The macros
// below write each statement once; the two forms differ only in their parameter numbers.

/// The patient upsert after its `VALUES (…)` / `SELECT …` row. Like the study's, it writes
/// only when a value changes: SQLite rewrites every index of a column a `SET` names, changed
/// or not (each instance of a study rewrote its study's index pages into the WAL).
macro_rules! upsert_patient {
    ($row:expr) => {
        concat!(
            "INSERT INTO patients \
             (patient_id, patient_name, birth_date, sex, created_at, updated_at) ",
            $row,
            " ON CONFLICT (patient_id) DO UPDATE SET \
               patient_name = COALESCE(excluded.patient_name, patients.patient_name), \
               birth_date = COALESCE(excluded.birth_date, patients.birth_date), \
               sex = COALESCE(excluded.sex, patients.sex), \
               updated_at = excluded.updated_at \
             WHERE COALESCE(excluded.patient_name, patients.patient_name) \
                 IS DISTINCT FROM patients.patient_name \
               OR COALESCE(excluded.birth_date, patients.birth_date) \
                 IS DISTINCT FROM patients.birth_date \
               OR COALESCE(excluded.sex, patients.sex) IS DISTINCT FROM patients.sex"
        )
    };
}

/// The study upsert; the arguments are the expressions of its columns, in order, between
/// `$open` and `$close` (`"VALUES ("` and `")"` for one row, or a `SELECT` over many).
macro_rules! upsert_study {
    ($open:expr, $uid:expr, $pid:expr, $pname:expr, $birth:expr, $sex:expr, $date:expr,
     $time:expr, $desc:expr, $acc:expr, $id:expr, $now:expr, $referring:expr, $close:expr) => {
        concat!(
            "INSERT INTO studies \
             (study_uid, patient_id, patient_name, patient_birth_date, patient_sex, study_date, \
              study_time, study_description, accession_number, study_id, created_at, \
              updated_at, referring_physician_name) ",
            $open,
            $uid, ", ", $pid, ", ", $pname, ", ", $birth, ", ", $sex, ", ", $date, ", ",
            $time, ", ", $desc, ", ", $acc, ", ", $id, ", ", $now, ", ", $now, ", ", $referring,
            $close,
            " ON CONFLICT (study_uid) DO UPDATE SET \
               patient_id = COALESCE(excluded.patient_id, studies.patient_id), \
               patient_name = COALESCE(excluded.patient_name, studies.patient_name), \
               patient_birth_date = COALESCE(excluded.patient_birth_date, \
                 studies.patient_birth_date), \
               patient_sex = COALESCE(excluded.patient_sex, studies.patient_sex), \
               study_date = COALESCE(excluded.study_date, studies.study_date), \
               study_time = COALESCE(excluded.study_time, studies.study_time), \
               study_description = COALESCE(excluded.study_description, \
                 studies.study_description), \
               accession_number = COALESCE(excluded.accession_number, \
                 studies.accession_number), \
               study_id = COALESCE(excluded.study_id, studies.study_id), \
               referring_physician_name = COALESCE(excluded.referring_physician_name, \
                 studies.referring_physician_name), \
               updated_at = excluded.updated_at \
             WHERE COALESCE(excluded.patient_id, studies.patient_id) IS DISTINCT FROM studies.patient_id \
               OR COALESCE(excluded.patient_name, studies.patient_name) IS DISTINCT FROM studies.patient_name \
               OR COALESCE(excluded.patient_birth_date, studies.patient_birth_date) IS DISTINCT FROM studies.patient_birth_date \
               OR COALESCE(excluded.patient_sex, studies.patient_sex) IS DISTINCT FROM studies.patient_sex \
               OR COALESCE(excluded.study_date, studies.study_date) IS DISTINCT FROM studies.study_date \
               OR COALESCE(excluded.study_time, studies.study_time) IS DISTINCT FROM studies.study_time \
               OR COALESCE(excluded.study_description, studies.study_description) IS DISTINCT FROM studies.study_description \
               OR COALESCE(excluded.accession_number, studies.accession_number) IS DISTINCT FROM studies.accession_number \
               OR COALESCE(excluded.study_id, studies.study_id) IS DISTINCT FROM studies.study_id \
               OR COALESCE(excluded.referring_physician_name, studies.referring_physician_name) IS DISTINCT FROM studies.referring_physician_name"
        )
    };
}

/// The series upsert. `$count`/`$size` are the deltas applied to the series counters (the
/// initial values on insert); patient ID/name, study date/description and accession are the
/// study's attributes the gallery filters on (copied so a list reads one table), from which
/// `search_text` is derived. `$open`/`$close` as for `upsert_study!`.
macro_rules! upsert_series {
    ($open:expr, $uid:expr, $study:expr, $modality:expr, $body:expr, $desc:expr,
     $number:expr, $date:expr, $count:expr, $size:expr, $now:expr, $pid:expr, $pname:expr,
     $study_date:expr, $study_desc:expr, $acc:expr, $close:expr) => {
        concat!(
            "INSERT INTO series \
             (series_uid, study_uid, modality, body_part_examined, series_description, \
              series_number, series_date, instance_count, total_size, first_arrival, \
              last_arrival, patient_id, patient_name, study_date, study_description, \
              accession_number, search_text) ",
            $open,
            $uid,
            ", ",
            $study,
            ", ",
            $modality,
            ", ",
            $body,
            ", ",
            $desc,
            ", ",
            $number,
            ", ",
            $date,
            ", ",
            $count,
            ", ",
            $size,
            ", ",
            $now,
            ", ",
            $now,
            ", ",
            $pid,
            ", ",
            $pname,
            ", ",
            $study_date,
            ", ",
            $study_desc,
            ", ",
            $acc,
            ", ",
            search_text!($pid, $pname, $study_desc, $desc, $acc),
            $close,
            " ON CONFLICT (series_uid) DO UPDATE SET \
               modality = COALESCE(excluded.modality, series.modality), \
               body_part_examined = COALESCE(excluded.body_part_examined, \
                 series.body_part_examined), \
               series_description = COALESCE(excluded.series_description, \
                 series.series_description), \
               series_number = COALESCE(excluded.series_number, series.series_number), \
               series_date = COALESCE(excluded.series_date, series.series_date), \
               instance_count = series.instance_count + excluded.instance_count, \
               total_size = series.total_size + excluded.total_size, \
               last_arrival = excluded.last_arrival, \
               pipeline_pending = 1, \
               patient_id = COALESCE(excluded.patient_id, series.patient_id), \
               patient_name = COALESCE(excluded.patient_name, series.patient_name), \
               study_date = COALESCE(excluded.study_date, series.study_date), \
               study_description = COALESCE(excluded.study_description, \
                 series.study_description), \
               accession_number = COALESCE(excluded.accession_number, \
                 series.accession_number), \
               search_text = ",
            search_text!(
                "COALESCE(excluded.patient_id, series.patient_id)",
                "COALESCE(excluded.patient_name, series.patient_name)",
                "COALESCE(excluded.study_description, series.study_description)",
                "COALESCE(excluded.series_description, series.series_description)",
                "COALESCE(excluded.accession_number, series.accession_number)"
            )
        )
    };
}

macro_rules! insert_instance {
    () => {
        "INSERT INTO instances \
         (sop_instance_uid, series_uid, sop_class_uid, transfer_syntax_uid, instance_number, \
          n_rows, n_columns, number_of_frames, size, checksum, object_key, metadata_json, source, \
          received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    };
}

/// Memberships of series in projects, after their rows (`VALUES …` or a `SELECT`).
macro_rules! add_projects {
    ($rows:expr) => {
        concat!(
            "INSERT INTO series_projects (series_uid, project_key, added_at) ",
            $rows,
            " ON CONFLICT (series_uid, project_key) DO NOTHING"
        )
    };
}

/// Memberships of series in datasets; `$open`/`$close` as for `upsert_study!`.
macro_rules! add_dataset {
    ($open:expr, $series:expr, $project:expr, $dataset:expr, $now:expr, $close:expr) => {
        concat!(
            "INSERT INTO series_datasets \
             (series_uid, project_key, dataset_key, added_at, last_arrival) ",
            $open,
            $series,
            ", ",
            $project,
            ", ",
            $dataset,
            ", ",
            $now,
            ", ",
            $now,
            $close,
            " ON CONFLICT (series_uid, project_key, dataset_key) DO UPDATE SET \
               last_arrival = excluded.last_arrival"
        )
    };
}

const SQL_UPSERT_PATIENT: &str = upsert_patient!("VALUES ($1, $2, $3, $4, $5, $5)");

const SQL_UPSERT_STUDY: &str = upsert_study!(
    "VALUES (", "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", ")"
);

const SQL_UPSERT_SERIES: &str = upsert_series!(
    "VALUES (", "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13",
    "$14", "$15", ")"
);

const SQL_SERIES_REMOVE_INSTANCE: &str = "UPDATE series SET \
     instance_count = instance_count - 1, total_size = total_size - $2 WHERE series_uid = $1";

const SQL_INSERT_INSTANCE: &str = insert_instance!();

const SQL_REPLACE_INSTANCE: &str = "UPDATE instances SET \
     series_uid = $2, sop_class_uid = $3, transfer_syntax_uid = $4, instance_number = $5, \
     n_rows = $6, n_columns = $7, number_of_frames = $8, size = $9, checksum = $10, \
     object_key = $11, metadata_json = $12, source = $13, received_at = $14 \
     WHERE sop_instance_uid = $1";

const SQL_ADD_PROJECT_AND_ADMIN: &str = add_projects!("VALUES ($1, $2, $3), ($1, $4, $3)");

const SQL_ADD_PROJECT: &str = add_projects!("VALUES ($1, $2, $3)");

const SQL_ADD_DATASET: &str = add_dataset!("VALUES (", "$1", "$2", "$3", "$4", ")");

/// SQLite: dataset creation and the duplicate lookup in one call (one hand-off to the
/// connection's worker thread instead of two).
const SQL_SQLITE_ENSURE_DATASET_AND_LOOKUP: &str = "INSERT INTO datasets \
     (project_key, name_key, name, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (project_key, name_key) DO NOTHING; \
     SELECT series_uid, checksum, object_key, size FROM instances WHERE sop_instance_uid = $5";

/// SQLite: everything a new instance writes, in one call. sqlx runs the statements of a
/// multi-statement query one after the other on the connection's worker thread and binds
/// numbered parameters by number in each, so one argument list serves all six:
/// `$1..$14` are the instance columns in [`bind_instance`] order (`$9` size, `$14` now),
/// `$15..$24` study and patient, `$25..$29` series, `$30` project, `$31` dataset, `$32` admin,
/// `$33` Referring Physician's Name (added in version 7).
/// The statements are those of the portable path, renumbered; `catalog` tests run both.
/// PostgreSQL cannot prepare several statements at once, and does not need this.
const SQL_SQLITE_NEW_INSTANCE: &str = concat!(
    upsert_patient!("SELECT $16, $17, $18, $19, $14, $14 WHERE $16 IS NOT NULL"),
    "; ",
    upsert_study!(
        "VALUES (", "$15", "$16", "$17", "$18", "$19", "$20", "$21", "$22", "$23", "$24", "$14",
        "$33", ")"
    ),
    "; ",
    upsert_series!(
        "VALUES (", "$2", "$15", "$25", "$26", "$27", "$28", "$29", "1", "$9", "$14", "$16", "$17",
        "$20", "$22", "$23", ")"
    ),
    "; ",
    insert_instance!(),
    "; ",
    add_projects!("VALUES ($2, $30, $14), ($2, $32, $14)"),
    "; ",
    add_dataset!("VALUES (", "$2", "$30", "$31", "$14", ")")
);

pub(crate) mod committer;
mod group;
pub(crate) mod recorder;
mod repeats;
pub(crate) mod wal_batch;

/// Why one attempt of the transaction failed.
enum Attempt {
    /// Transient: roll back and run the whole transaction again.
    Retry(CatalogError),
    /// Permanent.
    Fail(CatalogError),
}

fn db(e: sqlx::Error) -> Attempt {
    if is_transient_db(&e) {
        Attempt::Retry(e.into())
    } else {
        Attempt::Fail(e.into())
    }
}

/// `Some("")` (an empty DICOM value) counts as absent, so it never overwrites a known value.
fn opt(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|s| !s.is_empty())
}

fn require(field: &str, value: &str) -> Result<(), CatalogError> {
    if value.trim().is_empty() {
        Err(CatalogError::Invalid(format!(
            "instance record without {field}"
        )))
    } else {
        Ok(())
    }
}

fn validate(rec: &InstanceRecord) -> Result<(), CatalogError> {
    require("SOP Instance UID", &rec.sop_instance_uid)?;
    require("SOP Class UID", &rec.sop_class_uid)?;
    require("Series Instance UID", &rec.series_instance_uid)?;
    require("Study Instance UID", &rec.study_instance_uid)?;
    require("transfer syntax UID", &rec.transfer_syntax_uid)?;
    require("object key", &rec.object_key)?;
    require("checksum", &rec.checksum)?;
    if rec.size < 0 {
        return Err(CatalogError::Invalid("negative object size".to_string()));
    }
    Ok(())
}

/// Route names as catalog keys, and as given (for messages and new datasets).
#[derive(Clone, Debug)]
struct Keys {
    project: String,
    project_name: String,
    dataset: String,
    dataset_name: String,
}

impl Keys {
    fn of(route: &Route) -> Result<Keys, CatalogError> {
        Ok(Keys {
            project: name_key("project", &route.project)?,
            project_name: route.project.clone(),
            dataset: name_key("dataset", &route.dataset)?,
            dataset_name: route.dataset.clone(),
        })
    }
}

/// An instance waiting for the next SQLite group commit, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct PendingRecord {
    rec: InstanceRecord,
    keys: Keys,
    policy: DuplicatePolicy,
    durability: Durability,
    reply: oneshot::Sender<Result<RecordOutcome, CatalogError>>,
}

/// Most instances one group commit takes (bounds the transaction, not the waiting).
const MAX_GROUP_COMMIT: usize = 64;

/// PostgreSQL: groups committing at once, each on a connection of its own (so a node holds
/// this many connections beyond its pool). Fewer than the writers, so that records queue up
/// behind the groups in flight and go together; two rather than one, so that the server
/// works on one while the other's commit is flushed (measured in docs/performance.md).
pub(crate) const POSTGRES_GROUPS_IN_FLIGHT: usize = 2;

impl Catalog {
    /// The hot path: duplicate lookup by SOP Instance UID, policy decision, upsert of
    /// patient/study/series (latest non-empty values win), insert or replace of the instance,
    /// dataset creation on first use, and memberships: `series_projects` for `route.project`
    /// and `admin`, `series_datasets` for (project, dataset). Committed before it returns.
    ///
    /// Instances recorded at the same time (several associations) are committed together
    /// (group commit): each caller queues its record, and whoever may commit next takes
    /// everything queued — on SQLite the holder of the write lock, in one transaction and so
    /// one WAL fsync; on PostgreSQL one of [`POSTGRES_GROUPS_IN_FLIGHT`] committers, in one
    /// statement (`group.rs`). If the group fails, each record is retried alone, so
    /// one bad record never fails another.
    ///
    /// Returns what happened so the caller can delete the object that is no longer
    /// referenced (see [`RecordOutcome::object_to_delete`]). When the instance already exists
    /// and is kept, the memberships are added to the series of the stored instance.
    /// Errors: `NotFound` if the project does not exist, `Invalid` for a malformed record or
    /// dataset name. Transient database conditions are retried internally.
    pub async fn record_instance(
        &self,
        rec: &InstanceRecord,
        route: &Route,
        policy: DuplicatePolicy,
    ) -> Result<RecordOutcome, CatalogError> {
        self.record_instance_with(rec, route, policy, Durability::Synced)
            .await
    }

    /// [`Catalog::record_instance`], durable as `durability` says: a deferred record is
    /// visible when this returns and durable at the next [`Catalog::sync`].
    pub async fn record_instance_with(
        &self,
        rec: &InstanceRecord,
        route: &Route,
        policy: DuplicatePolicy,
        durability: Durability,
    ) -> Result<RecordOutcome, CatalogError> {
        validate(rec)?;
        let keys = Keys::of(route)?;
        if let Some(committer) = &self.committer {
            if committer.record_new(rec, route, durability).await {
                return Ok(RecordOutcome::Stored);
            }
        }
        let (reply, mut outcome) = oneshot::channel();
        lock_pending(&self.pending_records).push(PendingRecord {
            rec: rec.clone(),
            keys,
            policy,
            durability,
            reply,
        });
        loop {
            tokio::select! {
                biased;
                result = &mut outcome => return result.unwrap_or_else(|_| Err(unanswered())),
                (mut writer, permit) = self.group_committer() => {
                    let batch: Vec<PendingRecord> = {
                        let mut pending = lock_pending(&self.pending_records);
                        let n = pending.len().min(MAX_GROUP_COMMIT);
                        pending.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        // Another caller took ours: its reply comes with that group's end.
                        // Waited for alone — on PostgreSQL a place is free at once while
                        // that group commits, and looping back to take one spun until then
                        // (session 36: 1.4 ms of CPU per instance from a lone sender whose
                        // instances are recorded behind, in batches).
                        drop((writer, permit));
                        return outcome.await.unwrap_or_else(|_| Err(unanswered()));
                    }
                    // In a task of its own: cancelling this caller must not drop the others'
                    // records. The write lock is released when the batch is done.
                    let catalog = self.clone();
                    let _ = tokio::spawn(async move {
                        catalog.commit_group(&mut writer, batch).await;
                        drop(permit);
                    })
                    .await;
                }
            }
        }
    }

    /// The right to commit the next group: on SQLite the write lock; on PostgreSQL one of
    /// [`POSTGRES_GROUPS_IN_FLIGHT`] places (fewer than the writers, so that records queue up
    /// behind the groups in flight and go together).
    async fn group_committer(&self) -> (Writer, Option<OwnedSemaphorePermit>) {
        let permit = match self.dialect {
            Dialect::Sqlite => None,
            Dialect::Postgres => self.group_commit_places.clone().acquire_owned().await.ok(),
        };
        (self.writer().await, permit)
    }

    /// Records a batch (SQLite: write lock held): together, else each alone. On SQLite a
    /// batch of deferred records only is committed without syncing the WAL.
    async fn commit_group(&self, writer: &mut Writer, batch: Vec<PendingRecord>) {
        let deferred_on_sqlite = self.dialect == Dialect::Sqlite
            && batch.iter().all(|p| p.durability == Durability::Deferred);
        if deferred_on_sqlite && self.record_new_deferred_sqlite(writer, &batch).await {
            tracing::debug!(instances = batch.len(), "group commit");
            for pending in batch {
                let _ = pending.reply.send(Ok(RecordOutcome::Stored));
            }
            return;
        }
        let deferred = deferred_on_sqlite && writer.begin_deferred().await;
        self.commit_group_as_set(writer, batch).await;
        if deferred {
            writer.end_deferred().await;
        }
    }

    async fn commit_group_as_set(&self, writer: &mut Writer, batch: Vec<PendingRecord>) {
        let together = match self.dialect {
            Dialect::Sqlite => self.record_group_sqlite(writer, &batch).await,
            Dialect::Postgres => self.record_group_postgres(&batch).await,
        };
        match together {
            Ok(outcomes) => {
                tracing::debug!(instances = batch.len(), "group commit");
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = pending.reply.send(Ok(outcome));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, instances = batch.len(),
                    "group commit failed; recording each instance alone");
            }
        }
        for pending in batch {
            let result = self
                .record_alone(writer, &pending.rec, &pending.keys, pending.policy)
                .await;
            let _ = pending.reply.send(result);
        }
    }

    /// Every record of the batch in one transaction; any failure rolls all of them back.
    async fn record_together(
        &self,
        writer: &mut Writer,
        batch: &[PendingRecord],
    ) -> Result<Vec<RecordOutcome>, CatalogError> {
        let mut tx = writer.begin().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        for p in batch {
            match self.record_in(&mut tx, &p.rec, &p.keys, p.policy).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(Attempt::Retry(e)) | Err(Attempt::Fail(e)) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// One record in its own transaction, retried on transient conditions. On SQLite the
    /// caller holds the write lock.
    async fn record_alone(
        &self,
        writer: &mut Writer,
        rec: &InstanceRecord,
        keys: &Keys,
        policy: DuplicatePolicy,
    ) -> Result<RecordOutcome, CatalogError> {
        // SQLite's busy handler has already waited up to 30 s before reporting SQLITE_BUSY,
        // so only one more attempt there; PostgreSQL deadlocks and insert races retry sooner.
        let max_attempts = match self.dialect {
            Dialect::Sqlite => 2,
            Dialect::Postgres => MAX_WRITE_ATTEMPTS,
        };
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = writer.begin().await.map_err(db)?;
                let outcome = self.record_in(&mut tx, rec, keys, policy).await?;
                tx.commit().await.map_err(db)?;
                Ok(outcome)
            };
            match result.await {
                Ok(outcome) => return Ok(outcome),
                Err(Attempt::Retry(e)) if attempt < max_attempts => {
                    tracing::debug!(attempt, error = %e, "retrying catalog transaction");
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
                Err(Attempt::Retry(e)) | Err(Attempt::Fail(e)) => return Err(e),
            }
        }
    }

    /// The statements of one record inside an open transaction.
    async fn record_in(
        &self,
        conn: &mut AnyConnection,
        rec: &InstanceRecord,
        keys: &Keys,
        policy: DuplicatePolicy,
    ) -> Result<RecordOutcome, Attempt> {
        let now = now();
        // The dataset row references the project: a foreign-key violation means the project
        // does not exist. An existing dataset implies an existing project (cascade delete).
        let existing = match self.dialect {
            Dialect::Sqlite => {
                sqlx::query(SQL_SQLITE_ENSURE_DATASET_AND_LOOKUP)
                    .bind(&keys.project)
                    .bind(&keys.dataset)
                    .bind(&keys.dataset_name)
                    .bind(&now)
                    .bind(&rec.sop_instance_uid)
                    // Not `fetch_optional`: through `Any` it looks at the first statement's
                    // result only, which is the INSERT's.
                    .fetch_all(&mut *conn)
                    .await
                    .map(|rows| rows.into_iter().next())
            }
            Dialect::Postgres => {
                match sqlx::query(SQL_ENSURE_DATASET)
                    .bind(&keys.project)
                    .bind(&keys.dataset)
                    .bind(&keys.dataset_name)
                    .bind(&now)
                    .execute(&mut *conn)
                    .await
                {
                    Ok(_) => {
                        sqlx::query(SQL_LOOKUP_INSTANCE_FOR_UPDATE)
                            .bind(&rec.sop_instance_uid)
                            .fetch_optional(&mut *conn)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        let existing = existing.map_err(|e| {
            if is_foreign_key_violation(&e) {
                Attempt::Fail(CatalogError::NotFound(format!(
                    "project {:?}",
                    keys.project_name
                )))
            } else {
                db(e)
            }
        })?;

        if existing.is_none() && self.dialect == Dialect::Sqlite {
            bind_instance(sqlx::query(SQL_SQLITE_NEW_INSTANCE), rec, &now)
                .bind(&rec.study_instance_uid)
                .bind(opt(&rec.patient_id))
                .bind(opt(&rec.patient_name))
                .bind(opt(&rec.patient_birth_date))
                .bind(opt(&rec.patient_sex))
                .bind(opt(&rec.study_date))
                .bind(opt(&rec.study_time))
                .bind(opt(&rec.study_description))
                .bind(opt(&rec.accession_number))
                .bind(opt(&rec.study_id))
                .bind(opt(&rec.modality))
                .bind(opt(&rec.body_part_examined))
                .bind(opt(&rec.series_description))
                .bind(rec.series_number)
                .bind(opt(&rec.series_date))
                .bind(&keys.project)
                .bind(&keys.dataset)
                .bind(ADMIN_PROJECT)
                .bind(opt(&rec.referring_physician_name))
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            trace_recorded(rec, &RecordOutcome::Stored);
            return Ok(RecordOutcome::Stored);
        }

        let (outcome, member_series) = match existing {
            None => {
                upsert_hierarchy(&mut *conn, rec, &now, 1, rec.size).await?;
                if let Err(e) = bind_instance(sqlx::query(SQL_INSERT_INSTANCE), rec, &now)
                    .execute(&mut *conn)
                    .await
                {
                    // PostgreSQL: another transaction inserted it after our lookup; the retry
                    // takes the duplicate path.
                    return Err(if is_unique_violation(&e) {
                        Attempt::Retry(e.into())
                    } else {
                        db(e)
                    });
                }
                (RecordOutcome::Stored, rec.series_instance_uid.clone())
            }
            Some(row) => {
                let old_series: String = row.try_get("series_uid").map_err(db)?;
                let old_checksum: String = row.try_get("checksum").map_err(db)?;
                let old_key: String = row.try_get("object_key").map_err(db)?;
                let old_size: i64 = row.try_get("size").map_err(db)?;
                let overwrite = match policy {
                    DuplicatePolicy::KeepFirst => false,
                    DuplicatePolicy::Overwrite => true,
                    DuplicatePolicy::OverwriteIfDifferent => {
                        // A checksum of another algorithm (recorded before version 3) cannot tell:
                        // the bytes count as different.
                        !old_checksum.eq_ignore_ascii_case(&rec.checksum)
                    }
                };
                if !overwrite {
                    (
                        RecordOutcome::DuplicateKept {
                            existing_key: old_key,
                        },
                        old_series,
                    )
                } else {
                    if old_series == rec.series_instance_uid {
                        upsert_hierarchy(&mut *conn, rec, &now, 0, rec.size - old_size).await?;
                    } else {
                        // The same SOP Instance UID in another series: move it.
                        upsert_hierarchy(&mut *conn, rec, &now, 1, rec.size).await?;
                        sqlx::query(SQL_SERIES_REMOVE_INSTANCE)
                            .bind(&old_series)
                            .bind(old_size)
                            .execute(&mut *conn)
                            .await
                            .map_err(db)?;
                    }
                    bind_instance(sqlx::query(SQL_REPLACE_INSTANCE), rec, &now)
                        .execute(&mut *conn)
                        .await
                        .map_err(db)?;
                    (
                        RecordOutcome::Replaced { old_key },
                        rec.series_instance_uid.clone(),
                    )
                }
            }
        };

        let projects = if keys.project == ADMIN_PROJECT {
            sqlx::query(SQL_ADD_PROJECT)
                .bind(&member_series)
                .bind(&keys.project)
                .bind(&now)
        } else {
            sqlx::query(SQL_ADD_PROJECT_AND_ADMIN)
                .bind(&member_series)
                .bind(&keys.project)
                .bind(&now)
                .bind(ADMIN_PROJECT)
        };
        projects.execute(&mut *conn).await.map_err(db)?;
        sqlx::query(SQL_ADD_DATASET)
            .bind(&member_series)
            .bind(&keys.project)
            .bind(&keys.dataset)
            .bind(&now)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        trace_recorded(rec, &outcome);
        Ok(outcome)
    }
}

fn trace_recorded(rec: &InstanceRecord, outcome: &RecordOutcome) {
    tracing::debug!(
        sop_instance_uid = %rec.sop_instance_uid,
        series_instance_uid = %rec.series_instance_uid,
        outcome = ?outcome,
        "instance recorded"
    );
}

/// The queue of pending records; a panic while it was held cannot leave it inconsistent
/// (pushes and drains only), so a poisoned lock is used as is.
fn lock_pending(
    pending: &std::sync::Mutex<Vec<PendingRecord>>,
) -> std::sync::MutexGuard<'_, Vec<PendingRecord>> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a record gets whose group commit ended without an answer (it panicked): a failure of
/// the database side, not of the record; a retry may succeed.
fn unanswered() -> CatalogError {
    CatalogError::Database(sqlx::Error::WorkerCrashed)
}

/// Upserts patient (if it has an ID), study and series; adds the deltas to the series counters.
async fn upsert_hierarchy(
    conn: &mut AnyConnection,
    rec: &InstanceRecord,
    now: &str,
    count_delta: i64,
    size_delta: i64,
) -> Result<(), Attempt> {
    if let Some(patient_id) = opt(&rec.patient_id) {
        sqlx::query(SQL_UPSERT_PATIENT)
            .bind(patient_id)
            .bind(opt(&rec.patient_name))
            .bind(opt(&rec.patient_birth_date))
            .bind(opt(&rec.patient_sex))
            .bind(now)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    sqlx::query(SQL_UPSERT_STUDY)
        .bind(&rec.study_instance_uid)
        .bind(opt(&rec.patient_id))
        .bind(opt(&rec.patient_name))
        .bind(opt(&rec.patient_birth_date))
        .bind(opt(&rec.patient_sex))
        .bind(opt(&rec.study_date))
        .bind(opt(&rec.study_time))
        .bind(opt(&rec.study_description))
        .bind(opt(&rec.accession_number))
        .bind(opt(&rec.study_id))
        .bind(now)
        .bind(opt(&rec.referring_physician_name))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    sqlx::query(SQL_UPSERT_SERIES)
        .bind(&rec.series_instance_uid)
        .bind(&rec.study_instance_uid)
        .bind(opt(&rec.modality))
        .bind(opt(&rec.body_part_examined))
        .bind(opt(&rec.series_description))
        .bind(rec.series_number)
        .bind(opt(&rec.series_date))
        .bind(count_delta)
        .bind(size_delta)
        .bind(now)
        .bind(opt(&rec.patient_id))
        .bind(opt(&rec.patient_name))
        .bind(opt(&rec.study_date))
        .bind(opt(&rec.study_description))
        .bind(opt(&rec.accession_number))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Binds the 14 instance columns in the order shared by insert and replace.
fn bind_instance<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    rec: &InstanceRecord,
    now: &str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(&rec.sop_instance_uid)
        .bind(&rec.series_instance_uid)
        .bind(&rec.sop_class_uid)
        .bind(&rec.transfer_syntax_uid)
        .bind(rec.instance_number)
        .bind(rec.rows)
        .bind(rec.columns)
        .bind(rec.number_of_frames)
        .bind(rec.size)
        .bind(&rec.checksum)
        .bind(&rec.object_key)
        .bind(&rec.metadata_json)
        .bind(&rec.source)
        .bind(now)
}
