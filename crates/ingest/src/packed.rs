//! Ingest into packs (`radport_journal::pack`), for a local archive: an instance of up to
//! [`JOURNALED_MAX_BYTES`] is held in memory as it arrives (as behind the journal); at its
//! end it is appended to the pack log — one `fdatasync` shared with every instance arriving
//! meanwhile — and that record *is* the archive's copy: its key names the record
//! (`packs/<generation>.pack@<offset>`). It is then recorded in the catalog without syncing
//! ([`Durability::Deferred`]): on SQLite on a file behind its answer, together with the
//! instances arriving within a few milliseconds (`recorded_behind`, when the caller answers
//! on durability: [`Ingestor::finish_durable`]); else by its appender, before its answer.
//! No file is made for it, nor written a second time.
//!
//! A checkpoint ([`Ingestor::checkpoint`]) waits until every instance appended before it is
//! recorded, syncs the catalog and moves the pack log's checkpoint past them; then the
//! records that are no longer referenced (a duplicate kept, a copy replaced, a commit that
//! failed) are punched out of their packs. After a crash, [`Ingestor::recover`] records again
//! every instance after the checkpoint that the catalog lacks under its key.
//!
//! Larger instances go straight into the archive as files (file `fsync`, rename, directory
//! `fsync`, synced commit).
//!
//! Invariants (besides the crate's):
//! - An instance's record is durable in its pack before its catalog row is committed, and
//!   before success is answered; a row that a crash may lose is after the checkpoint, so it
//!   is recorded again from its record.
//! - A record is punched only behind the checkpoint (the archive refuses earlier), so every
//!   record replay needs is whole.
//! - A refused instance (malformed, a header that cannot be written) is not appended. One
//!   whose commit fails after its record was appended is answered with a failure if it was
//!   not answered yet, but recorded after a crash, as behind the journal.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use radport_archive::{keys, ArchiveError, StoredObject};
use radport_catalog::{Durability, InstanceRecord, Route};
use radport_journal::pack::PackLog;
use radport_journal::{Position, Recovered, Replay};

use tokio::sync::oneshot;

use crate::journal_record::RecordHeader;
use crate::journaled::{Held, Recovery};
use crate::recorded_behind::{Pending, PendingRecord, RecordBehind};
use crate::{
    extract_record, extract_record_from_bytes, fill_record, Announced, DurableInstance, Finished,
    Head, IngestError, IngestOutcome, Ingestor, MetadataError, JOURNALED_MAX_BYTES,
};

/// At most this many unreferenced records wait for a checkpoint to be punched (beyond, they
/// are logged and left in their packs).
const MAX_WAITING_PUNCHES: usize = 1 << 16;

/// The pack log an ingestor appends to, and the keys of records to punch once a checkpoint
/// has passed them.
#[derive(Clone, Debug)]
pub(crate) struct Packs {
    log: PackLog,
    to_punch: Arc<Mutex<Vec<String>>>,
    /// Records instances in the catalog after they are answered (`recorded_behind`);
    /// `None`: the catalog has no group recorder (PostgreSQL), or this is that thread's own.
    behind: Option<RecordBehind>,
}

impl Packs {
    pub(crate) fn log(&self) -> &PackLog {
        &self.log
    }

    /// Keeps `key` to be punched after the next checkpoint; whether it was kept.
    pub(crate) fn punch_later(&self, key: &str) -> bool {
        let mut waiting = self.to_punch.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.len() >= MAX_WAITING_PUNCHES {
            return false;
        }
        waiting.push(key.to_string());
        true
    }
}

impl Ingestor {
    /// Keeps instances in the packs of `log` (see the module doc). Local archives only; not
    /// together with a journal.
    pub fn with_packs(mut self, log: PackLog) -> Result<Self, IngestError> {
        if log.max_body_bytes() < JOURNALED_MAX_BYTES {
            return Err(IngestError::Storage(format!(
                "the pack log takes bodies of up to {} bytes; ingest packs up to {}",
                log.max_body_bytes(),
                JOURNALED_MAX_BYTES
            )));
        }
        if self.archive.packs_dir().as_deref() != Some(log.dir()) {
            return Err(IngestError::Storage(
                "the pack log must keep its packs in the archive's packs directory".to_string(),
            ));
        }
        if self.journal.is_some() {
            return Err(IngestError::Storage(
                "instances go through a journal or into packs, not both".to_string(),
            ));
        }
        let packs = Packs {
            log,
            to_punch: Arc::default(),
            behind: None,
        };
        let runtime = tokio::runtime::Handle::try_current().ok();
        // Where the catalog cannot record behind (in memory), each instance is recorded before
        // its answer.
        let behind = match (runtime, self.catalog.behind_recording()) {
            (Some(runtime), Some(way)) => {
                let careful = Ingestor {
                    packs: Some(packs.clone()),
                    ..self.clone()
                };
                let behind = RecordBehind::spawn(way, careful, runtime).map_err(|e| {
                    IngestError::Storage(format!("cannot start the recording thread: {e}"))
                })?;
                Some(behind)
            }
            _ => None,
        };
        self.packs = Some(Packs { behind, ..packs });
        Ok(self)
    }

    /// The pack log, if instances are kept in packs.
    pub fn pack_log(&self) -> Option<&PackLog> {
        self.packs.as_ref().map(|p| &p.log)
    }

    /// Finishes a packed instance: appends its record (durable when this returns) and
    /// records it — behind, unless no thread records behind (an in-memory catalog); then
    /// here, the careful way. `waited_for`: the caller waits for the rows before it answers (they do
    /// not linger for others').
    pub(crate) async fn finish_packed(
        &self,
        held: Held<radport_journal::pack::PackRecord>,
        head: &mut Head,
        route: Route,
        source: String,
        announced: Announced,
        waited_for: bool,
    ) -> Result<(Finished, u64), IngestError> {
        let Some(packs) = &self.packs else {
            return Err(IngestError::Storage("no packs".to_string()));
        };
        let (laid_out, hash, size) = held.into_parts();
        let attributes = match head.early.take(laid_out.body()) {
            Some(record) => Ok(record),
            None => extract_record_from_bytes(laid_out.body(), size),
        };
        let mut record = match attributes {
            Ok(record) => record,
            // The whole instance is in the head: its attributes do not end.
            Err(e) => return Err(IngestError::Malformed(e.to_string())),
        };

        // The key is the record's position, known once it is appended.
        let stored = StoredObject {
            key: String::new(),
            size,
            checksum: radport_archive::checksum_of(&hash),
        };
        let channel = crate::channel_of(&source);
        fill_record(&mut record, &announced, &stored, source);
        let started = Instant::now();
        let body_hash = crate::journaled::body_hash(&hash);
        let appended = packs.log.append_record(laid_out, body_hash).await?;
        record.object_key = keys::packed(appended.position);
        let store_time = started.elapsed();
        let (record, route, durable) = match &packs.behind {
            Some(behind) => {
                let (reply, pending) = oneshot::channel();
                let sop_instance_uid = record.sop_instance_uid.clone();
                let series_instance_uid = record.series_instance_uid.clone();
                let sent = behind.send(Pending {
                    record,
                    route,
                    durable: appended.durable,
                    waited_for,
                    reply,
                });
                match sent {
                    Ok(()) => {
                        let durable = DurableInstance {
                            sop_instance_uid,
                            series_instance_uid,
                            store_time,
                            pending: PendingRecord {
                                reply: pending,
                                channel,
                                size,
                            },
                        };
                        return Ok((Finished::Durable(durable), size));
                    }
                    // The thread is gone (it panicked): here, then.
                    Err(back) => (back.record, back.route, back.durable),
                }
            }
            None => (record, route, appended.durable),
        };
        let recorded = self.record_here(record, &route, store_time).await;
        drop(durable);
        recorded.map(|o| (Finished::Recorded(o), size))
    }

    /// Records a packed instance the careful way, on the caller's task.
    async fn record_here(
        &self,
        record: InstanceRecord,
        route: &Route,
        store_time: std::time::Duration,
    ) -> Result<IngestOutcome, IngestError> {
        let started = Instant::now();
        let disposition = self
            .commit(&record, route, self.policy, Durability::Deferred)
            .await?;
        Ok(IngestOutcome {
            sop_instance_uid: record.sop_instance_uid,
            series_instance_uid: record.series_instance_uid,
            disposition,
            store_time,
            catalog_time: started.elapsed(),
        })
    }

    /// The header of an instance's pack record (the record's position is its key).
    pub(crate) fn pack_header(
        &self,
        route: &Route,
        source: &str,
        announced: &Announced,
    ) -> Result<Vec<u8>, IngestError> {
        RecordHeader {
            route: route.clone(),
            source: source.to_string(),
            policy: self.policy,
            object_key: String::new(),
            sop_class_uid: announced.sop_class_uid.clone(),
            sop_instance_uid: announced.sop_instance_uid.clone(),
            transfer_syntax_uid: announced.transfer_syntax_uid.clone(),
        }
        .encode()
        .ok_or_else(|| IngestError::Malformed("an identifier too long to journal".into()))
    }

    /// [`Ingestor::recover`] for packs: every record after the checkpoint that the catalog
    /// lacks under its key is recorded again.
    pub(crate) async fn recover_packed(&self, mut replay: Replay) -> Result<Recovery, IngestError> {
        let mut recovery = Recovery::default();
        loop {
            let (back, next) = tokio::task::spawn_blocking(move || {
                let next = replay.next_placed();
                (replay, next)
            })
            .await
            .map_err(|e| IngestError::Storage(format!("pack replay: {e}")))?;
            replay = back;
            let Some((position, recovered)) =
                next.map_err(|e| IngestError::Storage(e.to_string()))?
            else {
                break;
            };
            recovery.records += 1;
            match self.redo_packed(position, recovered).await {
                Ok(true) => recovery.recorded_again += 1,
                Ok(false) => {}
                Err(e) => {
                    recovery.failed += 1;
                    tracing::warn!(error = %e, "a packed instance could not be recorded again");
                }
            }
        }
        self.settle().await?;
        Ok(recovery)
    }

    /// Records the instance of one record unless the catalog has it under its key. Whether
    /// it had to be recorded.
    async fn redo_packed(
        &self,
        position: Position,
        recovered: Recovered,
    ) -> Result<bool, IngestError> {
        let header = RecordHeader::decode(&recovered.header)
            .map_err(|e| IngestError::Malformed(e.to_string()))?;
        let size = recovered.body.len() as u64;
        let mut record = match extract_record(&recovered.body, size) {
            Ok(record) => record,
            Err(MetadataError::NeedMoreBytes) => {
                return Err(IngestError::Malformed(
                    "a packed instance ends early".into(),
                ))
            }
            Err(e) => return Err(IngestError::Malformed(e.to_string())),
        };
        let stored = StoredObject {
            key: keys::packed(position),
            size,
            checksum: radport_archive::checksum(&recovered.body),
        };
        let announced = Announced {
            sop_class_uid: header.sop_class_uid,
            sop_instance_uid: header.sop_instance_uid,
            transfer_syntax_uid: header.transfer_syntax_uid,
            source_ae_title: None,
        };
        fill_record(&mut record, &announced, &stored, header.source);
        let recorded = self
            .catalog
            .get_instance(&record.series_instance_uid, &record.sop_instance_uid)
            .await?;
        if recorded.is_some_and(|row| row.object_key == stored.key) {
            return Ok(false);
        }
        self.commit(&record, &header.route, header.policy, Durability::Deferred)
            .await?;
        Ok(true)
    }

    /// Checkpoints the pack log (the catalog synced first), then punches what waited for it.
    /// Whether a checkpoint was made.
    pub(crate) async fn checkpoint_packs(&self, packs: &Packs) -> Result<bool, IngestError> {
        let made = packs
            .log
            .checkpoint(|| self.catalog.sync())
            .await
            .map_err(|e| IngestError::Storage(e.to_string()))?;
        let waiting =
            std::mem::take(&mut *packs.to_punch.lock().unwrap_or_else(|e| e.into_inner()));
        for key in waiting {
            match self.archive.delete(&key).await {
                Ok(()) => {}
                // Appended after the checkpoint began: the next one.
                Err(ArchiveError::NotYet(_)) => {
                    packs.punch_later(&key);
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "could not punch an unreferenced record")
                }
            }
        }
        Ok(made.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorded_behind::RETRY_EVERY;
    use crate::Disposition;
    use crate::{test_route as route, test_series as series};
    use radport_archive::Archive;
    use radport_catalog::{Catalog, DuplicatePolicy};
    use radport_journal::pack::{self, PackConfig};

    const CONFIG: PackConfig = PackConfig {
        pack_bytes: 4 * 1024 * 1024,
        max_body_bytes: 2 * 1024 * 1024,
        checkpoint_bytes: 1024 * 1024,
        // Space written ahead while idle: the tests' records land in it too.
        ahead_bytes: 1024 * 1024,
        // Records written while they arrive, as in the product.
        write_while_arriving: true,
    };

    struct Setup {
        dir: tempfile::TempDir,
        catalog: Catalog,
        archive: Archive,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (archive, catalog) = crate::local_store(dir.path()).await;
        std::fs::create_dir(archive.packs_dir().unwrap()).unwrap();
        Setup {
            dir,
            catalog,
            archive,
        }
    }

    impl Setup {
        fn ingestor(&self) -> (Ingestor, Replay) {
            let (log, replay) = PackLog::open(&self.archive.packs_dir().unwrap(), CONFIG).unwrap();
            let ingestor = Ingestor::new(
                self.archive.clone(),
                self.catalog.clone(),
                DuplicatePolicy::KeepFirst,
            )
            .with_packs(log)
            .unwrap();
            (ingestor, replay)
        }

        async fn rows(&self, series_uid: &str) -> Vec<radport_catalog::InstanceRow> {
            let mut rows = self
                .catalog
                .get_series(series_uid)
                .await
                .unwrap()
                .expect("the series is recorded")
                .instances;
            rows.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
            rows
        }

        /// Every record the packs hold, checkpoint or not (read from a copy without it).
        fn all_positions(&self) -> Vec<Position> {
            let copy = self.dir.path().join("packs-copy");
            std::fs::create_dir(&copy).unwrap();
            for entry in std::fs::read_dir(self.archive.packs_dir().unwrap()).unwrap() {
                let entry = entry.unwrap();
                if pack::pack_generation(entry.file_name().to_str().unwrap()).is_some() {
                    std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
                }
            }
            let (_, mut replay) = PackLog::open(&copy, CONFIG).unwrap();
            let mut out = Vec::new();
            while let Some((position, _)) = replay.next_placed().unwrap() {
                out.push(position);
            }
            std::fs::remove_dir_all(&copy).unwrap();
            out
        }
    }

    /// Finishes `file` as the DICOM receiver does: answered once durable.
    async fn finish_durable(ingestor: &Ingestor, route: Route, file: &[u8]) -> Finished {
        let (announced, offset) = crate::metadata::read_file_meta(file).unwrap();
        let mut incoming = ingestor
            .begin(route, "dimse:TEST".into(), announced)
            .await
            .unwrap();
        incoming
            .write(bytes::Bytes::copy_from_slice(&file[offset..]))
            .await
            .unwrap();
        ingestor.finish_durable(incoming).await.unwrap()
    }

    fn durable(finished: Finished) -> crate::DurableInstance {
        match finished {
            Finished::Durable(durable) => durable,
            Finished::Recorded(outcome) => panic!("recorded before it was answered: {outcome:?}"),
        }
    }

    /// An instance answered once durable is recorded behind, on SQLite and on PostgreSQL:
    /// new ones together, a duplicate the careful way (the first copy kept, the second's
    /// record punched after the checkpoint); one the catalog refuses for good (its project
    /// gone) is not kept and does not hold up the checkpoint.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answered_instances_are_recorded_behind() {
        let s = setup().await;
        answered_instances_are_recorded_behind_in(&s).await;

        let database = radport_testkit::postgres::TestDatabase::create("packs_behind").await;
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(&dir.path().join("archive")).unwrap();
        std::fs::create_dir(archive.packs_dir().unwrap()).unwrap();
        let on_postgres = Setup {
            dir,
            catalog: Catalog::connect(&database.url).await.unwrap(),
            archive,
        };
        answered_instances_are_recorded_behind_in(&on_postgres).await;
        drop(on_postgres);
        database.drop_database().await;
    }

    async fn answered_instances_are_recorded_behind_in(s: &Setup) {
        let (ingestor, _) = s.ingestor();
        let files = series(s.dir.path(), "61", 4, 64);
        let mut pending = Vec::new();
        for file in files.iter().chain(std::iter::once(&files[0])) {
            pending.push(durable(finish_durable(&ingestor, route(), file).await));
        }
        let gone = Route {
            project: "gone".into(),
            dataset: "d".into(),
        };
        let other = series(s.dir.path(), "62", 1, 64);
        let refused = durable(finish_durable(&ingestor, gone, &other[0]).await);
        let series_uid = pending[0].series_instance_uid.clone();
        let mut dispositions = Vec::new();
        for p in pending {
            dispositions.push(p.pending.recorded().await.unwrap());
        }
        use Disposition::{DuplicateKept, Stored};
        assert_eq!(
            dispositions,
            [Stored, Stored, Stored, Stored, DuplicateKept]
        );
        assert!(refused.pending.recorded().await.is_err());
        let rows = s.rows(&series_uid).await;
        assert_eq!(rows.len(), 4);
        for row in &rows {
            assert!(keys::parse_packed(&row.object_key).is_some(), "{row:?}");
        }
        // The duplicate's and the refused instance's records are punched at the checkpoint;
        // the four recorded stay.
        assert_eq!(s.all_positions().len(), 6);
        assert_eq!(ingestor.checkpoint().await.unwrap(), 1);
        let mut left = s.all_positions();
        left.sort();
        let mut referenced: Vec<Position> = rows
            .iter()
            .map(|row| keys::parse_packed(&row.object_key).unwrap())
            .collect();
        referenced.sort();
        assert_eq!(left, referenced);
    }

    /// An answered instance whose rows the database will not take for now (here a trigger
    /// that fails every insert into `instances`, put in by another connection) is not let
    /// go: its record is not punched, the checkpoint waits for it, and it is recorded at a
    /// retry once the database takes rows again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answered_instance_the_database_fails_to_take_is_retried_until_recorded() {
        let s = setup().await;
        let (ingestor, _) = s.ingestor();
        let files = series(s.dir.path(), "63", 1, 64);
        let pool = s.catalog.pool().clone();
        sqlx::query(
            "CREATE TRIGGER failing_inserts BEFORE INSERT ON instances \
             BEGIN SELECT RAISE(ABORT, 'the disk is failing'); END",
        )
        .execute(&pool)
        .await
        .unwrap();
        let answered = durable(finish_durable(&ingestor, route(), &files[0]).await);
        let series_uid = answered.series_instance_uid.clone();
        let error = answered.pending.recorded().await.unwrap_err();
        assert!(error.to_string().contains("the disk is failing"), "{error}");

        // Held: the checkpoint does not pass it, through more than one retry.
        let checkpoint = tokio::spawn({
            let ingestor = ingestor.clone();
            async move { ingestor.checkpoint().await }
        });
        tokio::time::sleep(RETRY_EVERY * 5 / 2).await;
        assert!(
            !checkpoint.is_finished(),
            "the checkpoint passed a stuck instance"
        );
        assert!(s.catalog.get_series(&series_uid).await.unwrap().is_none());

        sqlx::query("DROP TRIGGER failing_inserts")
            .execute(&pool)
            .await
            .unwrap();
        let made = tokio::time::timeout(RETRY_EVERY * 10, checkpoint)
            .await
            .expect("recorded at a retry, the checkpoint goes on")
            .unwrap()
            .unwrap();
        assert_eq!(made, 1);
        let rows = s.rows(&series_uid).await;
        assert_eq!(rows.len(), 1);
        let position = keys::parse_packed(&rows[0].object_key).unwrap();
        assert_eq!(s.all_positions(), [position], "its record is kept");
        let bytes = s.archive.get(&rows[0].object_key).await.unwrap();
        // The same data set (the file meta group is the receiver's own).
        let data_set = |file: &[u8]| {
            let (_, offset) = crate::metadata::read_file_meta(file).unwrap();
            file[offset..].to_vec()
        };
        assert!(data_set(&bytes) == data_set(&files[0]));
    }

    #[tokio::test]
    async fn instances_live_in_packs_and_what_a_crash_lost_of_the_catalog_is_recorded_again() {
        let s = setup().await;
        let files = series(s.dir.path(), "51", 10, 128);
        let (ingestor, replay) = s.ingestor();
        assert_eq!(ingestor.recover(replay).await.unwrap(), Recovery::default());
        let series_uid = crate::test_ingest_stored(&ingestor, &files)
            .await
            .pop()
            .unwrap()
            .series_instance_uid;
        let log = ingestor.pack_log().unwrap().clone();
        assert_eq!(log.stats().records, 10);
        assert!(log.stats().syncs <= 10);
        // Recorded by a group recorder (behind, SQLite on a file), not the careful way.
        assert_eq!(s.catalog.committer_recorded(), Some(10));
        let rows = s.rows(&series_uid).await;
        assert_eq!(rows.len(), 10);
        for row in &rows {
            assert!(
                keys::parse_packed(&row.object_key).is_some(),
                "{}",
                row.object_key
            );
            let bytes = s.archive.get(&row.object_key).await.unwrap();
            assert_eq!(row.checksum, radport_archive::checksum(&bytes));
            assert_eq!(row.size, bytes.len() as i64);
            assert_eq!(&bytes[128..132], b"DICM");
            // The frame's body hash is the checksum's XXH3-128: each byte hashed once.
            let position = keys::parse_packed(&row.object_key).unwrap();
            let packs = s.archive.packs_dir().unwrap();
            let record = radport_journal::pack::open_record(&packs, position, 2 << 20)
                .unwrap()
                .unwrap();
            let mut checksummer = radport_archive::Checksummer::new();
            checksummer.update(&bytes);
            assert_eq!(
                record.body_hash,
                crate::journaled::body_hash(&checksummer.finish())
            );
        }
        // The received files' data sets are what the archive gives back, after our meta.
        let sent_tail = &files[0][files[0].len() - 5000..];
        let mut found = false;
        for row in &rows {
            found |= s
                .archive
                .get(&row.object_key)
                .await
                .unwrap()
                .ends_with(sent_tail);
        }
        assert!(found);
        // No file of its own for any instance.
        assert!(s.archive.list("instances/").await.unwrap().is_empty());

        // A power cut before any checkpoint: the deferred catalog rows are gone.
        drop((ingestor, log));
        s.catalog
            .erase_series(std::slice::from_ref(&series_uid))
            .await
            .unwrap();
        let (ingestor, replay) = s.ingestor();
        let recovery = ingestor.recover(replay).await.unwrap();
        assert_eq!(
            recovery,
            Recovery {
                records: 10,
                recorded_again: 10,
                failed: 0
            }
        );
        let again = s.rows(&series_uid).await;
        for (a, b) in again.iter().zip(&rows) {
            assert_eq!(
                (&a.object_key, &a.checksum, a.size),
                (&b.object_key, &b.checksum, b.size),
                "recorded again where it was"
            );
        }
        // Recovery checkpointed: nothing is redone twice.
        drop(ingestor);
        let (ingestor, replay) = s.ingestor();
        assert_eq!(ingestor.recover(replay).await.unwrap().records, 0);
    }

    /// An instance held in its pack record as it arrives, until it outgrows what packs take:
    /// then it goes into the archive as a file of its own, whole, its attributes read from
    /// what the record held.
    #[tokio::test]
    async fn an_instance_outgrowing_its_pack_record_goes_whole_into_the_archive() {
        let s = setup().await;
        // 1024² of 16 bits: 2 MiB, beyond JOURNALED_MAX_BYTES.
        let files = series(s.dir.path(), "54", 1, 1024);
        let file = &files[0];
        assert!(file.len() as u64 > JOURNALED_MAX_BYTES);
        let (ingestor, replay) = s.ingestor();
        ingestor.recover(replay).await.unwrap();
        let (announced, offset) = crate::metadata::read_file_meta(file).unwrap();
        let mut incoming = ingestor
            .begin(route(), "test".into(), announced)
            .await
            .unwrap();
        // In pieces of 300 kB: the first few held in the record, then the archive.
        for piece in file[offset..].chunks(300_000) {
            incoming
                .write(bytes::Bytes::copy_from_slice(piece))
                .await
                .unwrap();
        }
        let outcome = ingestor.finish(incoming).await.unwrap();
        assert_eq!(outcome.disposition, Disposition::Stored);
        assert_eq!(ingestor.pack_log().unwrap().stats().records, 0);
        let rows = s.rows(&outcome.series_instance_uid).await;
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert!(keys::parse_packed(&row.object_key).is_none());
        let bytes = s.archive.get(&row.object_key).await.unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        assert!(bytes.ends_with(&file[offset..]));
        assert_eq!(row.checksum, radport_archive::checksum(&bytes));
        assert_eq!(row.size, bytes.len() as i64);
        assert_eq!((row.rows, row.columns), (Some(1024), Some(1024)));
    }

    /// Bytes read straight into the record's room (as the receiver reads them from its
    /// socket), between pieces written the usual way, make the instance the bytes make:
    /// stored, checksummed and its attributes read as if written whole. Past the room, or
    /// when the instance would outgrow its record, there is no room: `write` takes over.
    #[tokio::test]
    async fn bytes_read_into_the_records_room_are_the_instance() {
        let s = setup().await;
        let files = series(s.dir.path(), "55", 1, 256);
        let file = &files[0];
        let (ingestor, replay) = s.ingestor();
        ingestor.recover(replay).await.unwrap();
        let (announced, offset) = crate::metadata::read_file_meta(file).unwrap();
        let mut incoming = ingestor
            .begin(route(), "test".into(), announced)
            .await
            .unwrap();
        let data = &file[offset..];
        // A first piece written, then rooms filled in part (as a read returns less), one
        // piece written between them, and the rest through rooms.
        incoming
            .write(bytes::Bytes::copy_from_slice(&data[..1000]))
            .await
            .unwrap();
        let mut at = 1000;
        let mut step = 0;
        while at < data.len() {
            step += 1;
            if step == 3 {
                let end = (at + 7000).min(data.len());
                incoming
                    .write(bytes::Bytes::copy_from_slice(&data[at..end]))
                    .await
                    .unwrap();
                at = end;
                continue;
            }
            let room = incoming.room(40_000).unwrap();
            room.fill(0xEE);
            let put = (data.len() - at).min(25_000);
            room[..put].copy_from_slice(&data[at..at + put]);
            incoming.grow(put).unwrap();
            at += put;
        }
        assert!(incoming.grow(1).is_err(), "no room given");
        assert!(
            incoming.room(JOURNALED_MAX_BYTES as usize).is_none(),
            "beyond what a record holds"
        );
        let outcome = ingestor.finish(incoming).await.unwrap();
        assert_eq!(outcome.disposition, Disposition::Stored);
        let rows = s.rows(&outcome.series_instance_uid).await;
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert!(keys::parse_packed(&row.object_key).is_some());
        let bytes = s.archive.get(&row.object_key).await.unwrap();
        assert!(bytes.ends_with(data));
        assert_eq!(row.checksum, radport_archive::checksum(&bytes));
        assert_eq!(row.size, bytes.len() as i64);
        assert_eq!((row.rows, row.columns), (Some(256), Some(256)));
    }

    #[tokio::test]
    async fn a_duplicate_kept_is_punched_out_of_its_pack_after_the_checkpoint() {
        let s = setup().await;
        let files = series(s.dir.path(), "52", 3, 64);
        let (ingestor, replay) = s.ingestor();
        ingestor.recover(replay).await.unwrap();
        for file in &files {
            ingestor
                .ingest_part10(route(), "test".into(), file)
                .await
                .unwrap();
        }
        let dup = ingestor
            .ingest_part10(route(), "test".into(), &files[0])
            .await
            .unwrap();
        assert_eq!(dup.disposition, Disposition::DuplicateKept);
        // The stage could not record the duplicate: the careful way kept the first.
        assert_eq!(s.catalog.committer_recorded(), Some(3));
        let positions = s.all_positions();
        assert_eq!(positions.len(), 4);
        let dir = s.archive.packs_dir().unwrap();
        let present = |positions: &[Position]| {
            positions
                .iter()
                .filter(|p| pack::open_record(&dir, **p, u64::MAX).unwrap().is_some())
                .count()
        };
        assert_eq!(
            present(&positions),
            4,
            "nothing punched ahead of the checkpoint"
        );
        assert_eq!(ingestor.checkpoint().await.unwrap(), 1);
        assert_eq!(present(&positions), 3, "the duplicate's record punched");
        let rows = s.rows(&dup.series_instance_uid).await;
        assert_eq!(rows.len(), 3);
        for row in &rows {
            let bytes = s.archive.get(&row.object_key).await.unwrap();
            assert_eq!(row.checksum, radport_archive::checksum(&bytes));
        }
        // Nothing new: no checkpoint.
        assert_eq!(ingestor.checkpoint().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn packs_and_a_journal_exclude_each_other_and_packs_live_in_the_archive() {
        let s = setup().await;
        let (ingestor, _) = s.ingestor();
        std::fs::create_dir(s.dir.path().join("journal")).unwrap();
        let (journal, _) = radport_journal::Journal::open(
            &s.dir.path().join("journal"),
            radport_journal::JournalConfig {
                segment_bytes: 4 << 20,
                segments: 2,
                max_body_bytes: 2 << 20,
            },
        )
        .unwrap();
        assert!(ingestor.with_journal(journal).is_err());
        let elsewhere = s.dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let (log, _) = PackLog::open(&elsewhere, CONFIG).unwrap();
        let plain = Ingestor::new(
            s.archive.clone(),
            s.catalog.clone(),
            DuplicatePolicy::KeepFirst,
        );
        assert!(plain.with_packs(log).is_err());
    }
}
