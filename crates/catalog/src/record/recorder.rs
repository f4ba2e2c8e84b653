//! SQLite on a file: new instances recorded on a connection of their own, by a thread that
//! gathers them into groups — the catalog's committer thread (`committer.rs`), or a caller's
//! own thread that already gathers groups (ingest's recorder behind the packs), each through a
//! [`GroupRecorder`].
//!
//! sqlx runs every SQLite connection on a worker thread of its own: each call is handed to it
//! and each statement's result handed back, and the group commit of `record.rs` adds a task
//! of its own and a hand-off of the write lock. Measured into packs with four senders
//! (docs/performance.md, session 18): recording took 0.4 ms of CPU and 13 context switches
//! per instance, most of it those hand-offs, not SQLite. Here a `rusqlite` connection to the
//! catalog's file records a group under the catalog's write lock (so it never writes beside
//! the sqlx writer), in one transaction: the group's rows merged per key as the group path
//! merges them (`GroupRows`), each table's by one statement prepared once and bound row by row
//! — the one-by-one path's upserts for datasets, patients, studies, instances and
//! memberships, the group path's two series statements over one row. No JSON: encoding the
//! group's rows and SQLite's `json_each` reading them back were 7 % of the receiver's CPU.
//! Statements that would repeat the last groups' with the same values (the dataset, patient,
//! study, series attributes and memberships of a series' 2nd to 300th instance) are left
//! out while no other connection has written (`repeats.rs`): 77 → 67 µs of CPU per instance
//! in groups of one (`radport-bench-record`).
//!
//! Only the common case is done here: every instance of the group new. Anything else — an
//! instance already recorded, an unknown project, any error at all — rolls the group back,
//! and each caller takes the careful way ([`crate::Catalog::record_instance_with`]'s group
//! commit over sqlx), which decides exactly as before. The group is committed with
//! `synchronous = FULL` (the WAL synced) unless every record in it is
//! [`Durability::Deferred`].
//!
//! Why a second SQLite library: sqlx 0.9 does not give a connection's handle through its
//! `Any` driver, and its SQLite connections only run on their worker threads. `rusqlite`
//! 0.39 is built on the same `libsqlite3-sys` (0.37), so both use the one bundled SQLite.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ToSql};
use sqlx::AnyConnection;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::group::{sqlite_series_attributes, sqlite_series_counted, GroupRows};
use super::repeats::{Idempotent, Repeats};
use super::{
    trace_recorded, validate, Keys, SQL_ADD_DATASET, SQL_ADD_PROJECT, SQL_ENSURE_DATASET,
    SQL_INSERT_INSTANCE, SQL_UPSERT_PATIENT, SQL_UPSERT_STUDY,
};
use crate::{Catalog, Durability, InstanceRecord, RecordOutcome, Route};

/// How long a recorder's connection waits for a lock held by another process (the same as
/// the pool's connections, `SQLITE_CONNECTION_PRAGMAS`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a recorder needs of its catalog: the file, the write lock, the count.
#[derive(Clone, Debug)]
pub(crate) struct RecorderSource {
    path: PathBuf,
    write_lock: Arc<Mutex<Option<AnyConnection>>>,
    recorded: Arc<AtomicU64>,
}

impl RecorderSource {
    pub(crate) fn new(path: PathBuf, write_lock: Arc<Mutex<Option<AnyConnection>>>) -> Self {
        Self {
            path,
            write_lock,
            recorded: Arc::default(),
        }
    }

    /// Instances recorded by every recorder of the catalog so far.
    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }
}

/// New instances recorded in groups on the calling thread, which must not be a thread of an
/// asynchronous runtime (it blocks on the catalog's write lock and on SQLite). See
/// [`Catalog::group_recorder`].
pub struct GroupRecorder {
    connection: Connection,
    source: RecorderSource,
    synchronous: Synchronous,
    repeats: Repeats,
}

impl std::fmt::Debug for GroupRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupRecorder")
            .field("path", &self.source.path)
            .finish_non_exhaustive()
    }
}

/// One new instance for [`GroupRecorder::record_new`].
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// The instance, as [`Catalog::record_instance_with`] takes it.
    pub record: InstanceRecord,
    /// Its project and dataset.
    pub route: Route,
    /// How durable its commit must be.
    pub durability: Durability,
}

impl NewInstance {
    /// The instance as [`GroupRecorder::record_new`] takes it.
    pub fn row(&self) -> (&InstanceRecord, &Route, Durability) {
        (&self.record, &self.route, self.durability)
    }
}

/// How a catalog takes the new instances of a thread that records them behind their answers
/// (`radport_ingest`'s packs): the one place that knows which backend can.
pub enum BehindRecording {
    /// SQLite on a file: a group recorder with a connection of its own, one transaction per
    /// batch.
    GroupRecorder(Box<GroupRecorder>),
    /// PostgreSQL: a batch's instances handed over at once through the pool
    /// ([`Catalog::record_instance_with`]), which its group commit takes together.
    GroupCommit,
}

impl Catalog {
    /// How new instances can be recorded behind their answers; `None` where they are
    /// recorded before (an in-memory SQLite catalog, for tests and trials: no connection of
    /// its own, and nothing of it outlives the process to be recorded again after a crash).
    pub fn behind_recording(&self) -> Option<BehindRecording> {
        match self.dialect() {
            crate::Dialect::Postgres => Some(BehindRecording::GroupCommit),
            crate::Dialect::Sqlite => self
                .group_recorder()
                .map(|recorder| BehindRecording::GroupRecorder(Box::new(recorder))),
        }
    }

    /// SQLite on a file: a recorder of new instances with a connection of its own, for a
    /// thread that gathers instances into groups anyway (see [`GroupRecorder`]); `None`
    /// elsewhere (PostgreSQL, in-memory SQLite) or if it cannot be opened.
    pub fn group_recorder(&self) -> Option<GroupRecorder> {
        let source = self.recorder_source.as_ref()?;
        match GroupRecorder::open(source.clone()) {
            Ok(recorder) => Some(recorder),
            Err(e) => {
                tracing::warn!(error = %e, "a catalog group recorder could not be opened");
                None
            }
        }
    }
}

impl GroupRecorder {
    pub(super) fn open(source: RecorderSource) -> Result<GroupRecorder, rusqlite::Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // Its WAL frames written in one write per commit (`wal_batch`); without the shim,
        // two per frame.
        let connection = match super::wal_batch::register() {
            Ok(vfs) => Connection::open_with_flags_and_vfs(&source.path, flags, vfs)?,
            Err(code) => {
                tracing::warn!(
                    code,
                    "the WAL-gathering VFS could not be registered; \
                    the recorder writes each WAL frame as SQLite does"
                );
                Connection::open_with_flags(&source.path, flags)?
            }
        };
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        Ok(GroupRecorder {
            connection,
            source,
            synchronous: Synchronous::Full,
            repeats: Repeats::default(),
        })
    }

    /// Leaves the checkpoints of the catalog's WAL to [`Catalog::sync`], for a caller that runs
    /// it regularly — the pack log, whose checkpoints sync the catalog every 64 MiB appended
    /// and at least every second while instances arrive. By default SQLite checkpoints inside
    /// whichever commit leaves the WAL over 1 000 pages: here the commit of a group whose
    /// senders wait for their answers, on an association's thread, with `fsync`s of its own
    /// (a second of a series' instances from one sender: eight such, and a sync's checkpoint
    /// anyway). The WAL then holds what was committed since the last sync (about 9 pages an
    /// instance). Without it (`wal_autocheckpoint` could not be set), nothing changes.
    pub fn leave_checkpoints_to_sync(&mut self) {
        if let Err(e) = self.connection.pragma_update(None, "wal_autocheckpoint", 0) {
            tracing::warn!(error = %e, "the group recorder checkpoints the catalog's WAL itself");
        }
    }

    /// Records every instance of `group` as new, together, and visible when this returns
    /// (durable as their [`Durability`] says). Whether they were; if not (one already
    /// recorded, an invalid record, an unknown project, any error), none of them was, and
    /// each goes the careful way ([`Catalog::record_instance_with`]).
    pub fn record_new<'a>(
        &mut self,
        group: impl IntoIterator<Item = (&'a InstanceRecord, &'a Route, Durability)>,
    ) -> bool {
        let mut keyed = Vec::new();
        for (record, route, durability) in group {
            match (validate(record), Keys::of(route)) {
                (Ok(()), Ok(keys)) => keyed.push((record, keys, durability)),
                _ => return false,
            }
        }
        // Never beside the sqlx writer (nor a sync's checkpoint); held until committed.
        let _lock = lock_for_writing(&self.source.write_lock);
        let written = self.write_group(&keyed).and_then(|()| {
            self.connection
                .prepare_cached("COMMIT")
                .and_then(|mut c| c.execute([]))
        });
        match written {
            Ok(_) => {
                self.repeats.committed();
                self.source
                    .recorded
                    .fetch_add(keyed.len() as u64, Ordering::Relaxed);
                for (record, _, _) in &keyed {
                    trace_recorded(record, &RecordOutcome::Stored);
                }
                true
            }
            Err(e) => {
                self.abandon();
                if !is_unique_violation(&e) {
                    tracing::debug!(error = %e, instances = keyed.len(),
                        "a group of new instances failed; each goes the careful way");
                }
                false
            }
        }
    }

    /// Rolls back what the connection's transaction holds and forgets the rows it wrote.
    fn abandon(&mut self) {
        self.repeats.rolled_back();
        if !self.connection.is_autocommit() {
            let _ = self.connection.execute_batch("ROLLBACK");
        }
    }

    /// The group's rows in a transaction left open; on any error the caller rolls back.
    fn write_group(
        &mut self,
        group: &[(&InstanceRecord, Keys, Durability)],
    ) -> Result<(), rusqlite::Error> {
        let wanted = if group.iter().all(|(_, _, d)| *d == Durability::Deferred) {
            Synchronous::Normal
        } else {
            Synchronous::Full
        };
        if wanted != self.synchronous {
            let value = match wanted {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            };
            self.connection.pragma_update(None, "synchronous", value)?;
            self.synchronous = wanted;
        }
        let connection = &self.connection;
        connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let data_version = connection
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |row| row.get(0))?;
        self.repeats.begin(data_version);
        write_rows(connection, group, &mut self.repeats)
    }
}

/// The catalog's write lock, for a recorder: at once if it is free; else waited for — on a
/// worker of a multi-threaded runtime (should a caller record on one) through
/// `block_in_place`, so that the worker's other tasks go on meanwhile.
fn lock_for_writing(
    write_lock: &Arc<Mutex<Option<AnyConnection>>>,
) -> OwnedMutexGuard<Option<AnyConnection>> {
    if let Ok(lock) = write_lock.clone().try_lock_owned() {
        return lock;
    }
    let on_worker = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let wait = || write_lock.clone().blocking_lock_owned();
    if on_worker {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// The group's rows, merged per key as the group path merges them ([`GroupRows`]), each
/// table's rows by a statement prepared once and bound row by row (no JSON to write and
/// parse again; the series' statements are the group path's, over one row). The idempotent
/// statements are left out where they would repeat a committed group's (`repeats.rs`).
fn write_rows(
    connection: &Connection,
    group: &[(&InstanceRecord, Keys, Durability)],
    repeats: &mut Repeats,
) -> Result<(), rusqlite::Error> {
    let now = crate::now();
    let mut rows = GroupRows::default();
    let mut datasets = BTreeSet::new();
    for (rec, keys, _) in group {
        rows.add(rec, keys);
        datasets.insert((&keys.project, &keys.dataset, &keys.dataset_name));
    }
    let mut statement = Prepared::new(connection, SQL_ENSURE_DATASET);
    for (project, name_key, name) in datasets {
        let values: [&dyn ToSql; 4] = [&project, &name_key, &name, &now];
        execute_unless_repeat(&mut statement, &values, repeats, Idempotent::EnsureDataset)?;
    }
    let mut statement = Prepared::new(connection, SQL_UPSERT_PATIENT);
    for p in rows.patients.values() {
        let values: [&dyn ToSql; 5] = [&p.patient_id, &p.patient_name, &p.birth_date, &p.sex, &now];
        execute_unless_repeat(&mut statement, &values, repeats, Idempotent::UpsertPatient)?;
    }
    let mut statement = Prepared::new(connection, SQL_UPSERT_STUDY);
    for s in rows.studies.values() {
        let values: [&dyn ToSql; 12] = [
            &s.study_uid,
            &s.patient_id,
            &s.patient_name,
            &s.patient_birth_date,
            &s.patient_sex,
            &s.study_date,
            &s.study_time,
            &s.study_description,
            &s.accession_number,
            &s.study_id,
            &now,
            &s.referring_physician_name,
        ];
        execute_unless_repeat(&mut statement, &values, repeats, Idempotent::UpsertStudy)?;
    }
    let mut counted = connection.prepare_cached(SQL_SERIES_COUNTED_ROW)?;
    let mut attributes = Prepared::new(connection, SQL_SERIES_ATTRIBUTES_ROW);
    for s in rows.series.values() {
        let values: [&dyn ToSql; 15] = [
            &s.series_uid,
            &s.study_uid,
            &s.modality,
            &s.body_part_examined,
            &s.series_description,
            &s.series_number,
            &s.series_date,
            &s.instance_count,
            &s.total_size,
            &s.patient_id,
            &s.patient_name,
            &s.study_date,
            &s.study_description,
            &s.accession_number,
            &now,
        ];
        execute(&mut counted, &values)?;
        execute_unless_repeat(
            &mut attributes,
            &values,
            repeats,
            Idempotent::SeriesAttributes,
        )?;
    }
    let mut statement = connection.prepare_cached(SQL_INSERT_INSTANCE)?;
    for i in &rows.instances {
        execute(
            &mut statement,
            &[
                &i.sop_instance_uid,
                &i.series_uid,
                &i.sop_class_uid,
                &i.transfer_syntax_uid,
                &i.instance_number,
                &i.n_rows,
                &i.n_columns,
                &i.number_of_frames,
                &i.size,
                &i.checksum,
                &i.object_key,
                &i.metadata_json,
                &i.source,
                &now,
            ],
        )?;
    }
    let mut statement = Prepared::new(connection, SQL_ADD_PROJECT);
    for (series_uid, project) in &rows.projects {
        let values: [&dyn ToSql; 3] = [series_uid, project, &now];
        execute_unless_repeat(&mut statement, &values, repeats, Idempotent::AddProject)?;
    }
    let mut statement = connection.prepare_cached(SQL_ADD_DATASET)?;
    for (series_uid, project, dataset) in &rows.datasets {
        execute(&mut statement, &[series_uid, project, dataset, &now])?;
    }
    Ok(())
}

/// One row of a group's series, for the group path's series statements.
macro_rules! series_row {
    () => {
        "SELECT $1 AS series_uid, $2 AS study_uid, $3 AS modality, \
         $4 AS body_part_examined, $5 AS series_description, $6 AS series_number, \
         $7 AS series_date, $8 AS instance_count, $9 AS total_size, $10 AS patient_id, \
         $11 AS patient_name, $12 AS study_date, $13 AS study_description, \
         $14 AS accession_number, $15 AS now"
    };
}

const SQL_SERIES_COUNTED_ROW: &str = sqlite_series_counted!(series_row!());
const SQL_SERIES_ATTRIBUTES_ROW: &str = sqlite_series_attributes!(series_row!());

/// Runs `statement` with `values` unless it ran with the same values in a committed group
/// and no other connection has written since (`repeats.rs`: the key is made from `values`).
fn execute_unless_repeat(
    statement: &mut Prepared<'_>,
    values: &[&dyn ToSql],
    repeats: &mut Repeats,
    idempotent: Idempotent,
) -> Result<(), rusqlite::Error> {
    if repeats.is_repeat(idempotent, values)? {
        return Ok(());
    }
    execute(statement.get()?, values)
}

/// A statement taken from the connection's cache when it first runs: one whose every row
/// repeats is never looked up (the cache hashes the whole SQL text, twice per use).
struct Prepared<'c> {
    connection: &'c Connection,
    sql: &'static str,
    statement: Option<rusqlite::CachedStatement<'c>>,
}

impl<'c> Prepared<'c> {
    fn new(connection: &'c Connection, sql: &'static str) -> Self {
        Prepared {
            connection,
            sql,
            statement: None,
        }
    }

    fn get(&mut self) -> Result<&mut rusqlite::CachedStatement<'c>, rusqlite::Error> {
        let statement = match self.statement.take() {
            Some(statement) => statement,
            None => self.connection.prepare_cached(self.sql)?,
        };
        Ok(self.statement.insert(statement))
    }
}

/// Runs `statement` with `values` bound to its parameters `$1`, `$2`, … (by name: SQLite
/// numbers named parameters in order of first appearance, not by their digits).
fn execute(
    statement: &mut rusqlite::CachedStatement<'_>,
    values: &[&dyn ToSql],
) -> Result<(), rusqlite::Error> {
    for index in 1..=statement.parameter_count() {
        let value = statement
            .parameter_name(index)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|number| number.parse::<usize>().ok())
            .and_then(|number| values.get(number.checked_sub(1)?))
            .ok_or(rusqlite::Error::InvalidParameterCount(
                index,
                statement.parameter_count(),
            ))?;
        statement.raw_bind_parameter(index, *value)?;
    }
    statement.raw_execute()?;
    Ok(())
}

/// The connection's `synchronous` setting, as last set.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Synchronous {
    /// Every commit syncs the WAL.
    Full,
    /// Commits do not sync the WAL (deferred records only; see [`Durability::Deferred`]).
    Normal,
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error().map(|e| e.extended_code),
        Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
    )
}
