//! Ingest behind the journal (`radport-journal`), for a local archive: an instance of up to
//! [`JOURNALED_MAX_BYTES`] is held in memory as it arrives; at its end it is written to the
//! archive *without* syncing, its record — route, source, policy, key and its Part-10 bytes —
//! is appended to the journal (one `fdatasync` shared with every instance arriving
//! meanwhile), and only then is it recorded in the catalog, also without syncing
//! ([`Durability::Deferred`]). Success is answered after that: durable through the journal,
//! visible through the catalog.
//!
//! A checkpoint ([`Ingestor::checkpoint`]) makes what was written behind the journal durable
//! — a `syncfs` of the archive's file system, a synced catalog checkpoint — and frees the
//! journal's full segments. After a crash, [`Ingestor::recover`] redoes every record the
//! journal still holds: the file written again from the record, the instance recorded unless
//! the catalog has it under the same key.
//!
//! Larger instances go straight into the archive as before (file `fsync`, rename, directory
//! `fsync`, synced commit), so memory per association stays bounded by
//! [`JOURNALED_MAX_BYTES`].
//!
//! Invariants (besides the crate's):
//! - An instance's record is durable in the journal before its catalog row is committed, and
//!   the row before success is answered. A row whose file may be lost in a crash therefore
//!   always has a record to redo it from until a checkpoint has synced both.
//! - A refused instance (malformed, a header that cannot be written) leaves nothing in the
//!   journal. One whose file cannot be written (the file and the record are written at the
//!   same time) or whose catalog commit fails after its record was appended is answered with
//!   a failure but redone after a crash; its sender sends it again, and the duplicate policy
//!   decides as for any duplicate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use radport_archive::{Archive, Checksummer, Digest, StoredObject};
use radport_catalog::{Durability, Route};
use radport_journal::pack::PackRecord;
use radport_journal::{BodyHash, Journal, Recovered, Replay};

use crate::journal_record::RecordHeader;
use crate::{
    extract_record, extract_record_from_head, fill_record, Announced, Disposition, IngestError,
    IngestOutcome, Ingestor, MetadataError, HEAD_LIMIT,
};

/// The largest instance (Part-10 bytes) made durable through the journal: all of it is also
/// the head its attributes are read from, and it is held in memory until it is complete.
pub const JOURNALED_MAX_BYTES: u64 = HEAD_LIMIT as u64;

/// How long a sealed-off little traffic waits for its checkpoint (see
/// [`Ingestor::run_checkpoints`]).
pub const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);

/// At most this many keys wait for a checkpoint to drop their pages from the cache (beyond,
/// they are simply left to the kernel).
const MAX_KEYS_TO_UNCACHE: usize = 1 << 16;

/// The journal an ingestor writes behind, and the keys written since the last checkpoint.
#[derive(Clone, Debug)]
pub(crate) struct Behind {
    journal: Journal,
    written: Arc<Mutex<Vec<String>>>,
}

/// An instance held for the journal or the packs as it arrives, with its hash: its bytes in
/// a `B` — the chunks as they came for the ring journal ([`Chunks`], written beside the file),
/// or copied as they come into the pack record they go into ([`PackRecord`], its header
/// already placed), so that the chunks go back to the receiver at once and nothing is copied
/// at the end.
///
/// It has no archive key until it needs one: a pack record's key is its position, and only an
/// instance that outgrows what is held goes into a file of its own (no random name drawn and
/// no date formatted for every packed instance).
pub(crate) struct Held<B> {
    archive: Archive,
    body: B,
    hasher: Checksummer,
    size: u64,
}

/// The chunks of a [`Held`] instance as they came.
pub(crate) type Chunks = Vec<Bytes>;

/// Where a [`Held`] instance's bytes are kept.
pub(crate) trait HeldBody {
    /// Keeps `bytes`; whether it could (if not, nothing of them was kept).
    fn keep(&mut self, bytes: &Bytes) -> bool;
    /// Everything kept, as chunks for the archive (what is left behind is dropped).
    fn take_chunks(&mut self) -> Chunks;
}

impl HeldBody for Chunks {
    fn keep(&mut self, bytes: &Bytes) -> bool {
        self.push(bytes.clone());
        true
    }

    fn take_chunks(&mut self) -> Chunks {
        std::mem::take(self)
    }
}

impl HeldBody for PackRecord {
    fn keep(&mut self, bytes: &Bytes) -> bool {
        // The log takes bodies of JOURNALED_MAX_BYTES (`with_packs`).
        self.extend(bytes).is_ok()
    }

    fn take_chunks(&mut self) -> Chunks {
        // Past the packs' limit: a copy, once, for a large instance.
        vec![Bytes::copy_from_slice(self.body())]
    }
}

impl<B: HeldBody> Held<B> {
    /// Held in `body` as it arrives.
    pub(crate) fn new(archive: Archive, body: B) -> Self {
        Self {
            archive,
            body,
            hasher: Checksummer::new(),
            size: 0,
        }
    }

    /// Takes the next chunk. If the instance outgrows the journal, gives back the archive,
    /// a new key and every chunk so far, to be written to the archive instead.
    pub(crate) fn take(&mut self, bytes: Bytes) -> Option<(Archive, String, Chunks)> {
        let size = self.size.saturating_add(bytes.len() as u64);
        if size <= JOURNALED_MAX_BYTES && self.body.keep(&bytes) {
            self.hasher.update(&bytes);
            self.size = size;
            return None;
        }
        let mut chunks = self.body.take_chunks();
        chunks.push(bytes);
        Some((
            self.archive.clone(),
            crate::object_key_for_new_instance(),
            chunks,
        ))
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// What is held so far.
    pub(crate) fn body(&self) -> &B {
        &self.body
    }

    /// The bytes, their checksum and their size.
    pub(crate) fn into_parts(self) -> (B, Digest, u64) {
        (self.body, self.hasher.finish(), self.size)
    }
}

impl Held<PackRecord> {
    /// Room for `len` more bytes read straight into the record, if they fit in it (and in
    /// what is held at most, [`JOURNALED_MAX_BYTES`]).
    pub(crate) fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        let fits = u64::try_from(len)
            .ok()
            .and_then(|len| self.size.checked_add(len))
            .is_some_and(|size| size <= JOURNALED_MAX_BYTES);
        if !fits {
            return None;
        }
        self.body.room(len).ok()
    }

    /// The first `n` bytes of the last room are the instance's next bytes: hashed and held.
    /// Whether they were (not beyond the room).
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        let start = self.body.body().len();
        if self.body.grow(n).is_err() {
            return false;
        }
        self.hasher.update(&self.body.body()[start..]);
        self.size += n as u64;
        true
    }
}

/// A journal frame's body hash for bytes of checksum `digest`: the same XXH3-128 hash, so that
/// every byte is hashed once.
pub(crate) fn body_hash(digest: &Digest) -> BodyHash {
    BodyHash::Xxh3(digest.xxh3_128().to_le_bytes())
}

/// What [`Ingestor::recover`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovery {
    /// Records read back from the journal.
    pub records: u64,
    /// Instances the catalog did not have (their commit was lost) and now has.
    pub recorded_again: u64,
    /// Records that could not be redone (logged); their instances were never acknowledged
    /// or are in the catalog already.
    pub failed: u64,
}

impl Ingestor {
    /// Makes instances durable through `journal` (see the module doc). Local archives only.
    pub fn with_journal(mut self, journal: Journal) -> Result<Self, IngestError> {
        if journal.max_body_bytes() < JOURNALED_MAX_BYTES {
            return Err(IngestError::Storage(format!(
                "the journal takes bodies of up to {} bytes; ingest journals up to {}",
                journal.max_body_bytes(),
                JOURNALED_MAX_BYTES
            )));
        }
        if !self.archive.is_local() {
            return Err(IngestError::Storage(
                "the ingest journal needs a local archive".to_string(),
            ));
        }
        if self.packs.is_some() {
            return Err(IngestError::Storage(
                "instances go through a journal or into packs, not both".to_string(),
            ));
        }
        self.journal = Some(Behind {
            journal,
            written: Arc::default(),
        });
        Ok(self)
    }

    /// The journal, if instances go through one.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref().map(|b| &b.journal)
    }

    pub(crate) async fn finish_journaled(
        &self,
        held: Held<Chunks>,
        head: &[Bytes],
        route: Route,
        source: String,
        announced: Announced,
    ) -> Result<(IngestOutcome, u64), IngestError> {
        let Some(behind) = &self.journal else {
            return Err(IngestError::Storage("no journal".to_string()));
        };
        let Held {
            body: chunks,
            hasher,
            size,
            ..
        } = held;
        let hash = hasher.finish();
        let stored = StoredObject {
            key: crate::object_key_for_new_instance(),
            size,
            checksum: radport_archive::checksum_of(&hash),
        };
        let mut record = match extract_record_from_head(head, size) {
            Ok(record) => record,
            // The whole instance is in the head: its attributes do not end.
            Err(e) => return Err(IngestError::Malformed(e.to_string())),
        };
        fill_record(&mut record, &announced, &stored, source.clone());
        let header = RecordHeader {
            route: route.clone(),
            source,
            policy: self.policy,
            object_key: stored.key.clone(),
            sop_class_uid: announced.sop_class_uid,
            sop_instance_uid: announced.sop_instance_uid,
            transfer_syntax_uid: announced.transfer_syntax_uid,
        }
        .encode()
        .ok_or_else(|| IngestError::Malformed("an identifier too long to journal".into()))?;

        let started = Instant::now();
        // The file and the journal record at the same time: the record's `fdatasync` does not
        // wait for the file's page-cache copy, nor the other way round. The record's guard is
        // held until the row is committed, so no checkpoint passes the file unwritten.
        let (written, appended) = tokio::join!(
            self.archive.put_unsynced(&stored.key, chunks.clone()),
            behind.journal.append(header, chunks, body_hash(&hash)),
        );
        let durable = match (written, appended) {
            (Ok(()), Ok(durable)) => durable,
            (Err(e), _) => {
                self.discard(&stored.key).await;
                return Err(e.into());
            }
            (Ok(()), Err(e)) => {
                self.discard(&stored.key).await;
                return Err(e.into());
            }
        };
        let store_time = started.elapsed();
        let started = Instant::now();
        let disposition = self
            .commit(&record, &route, self.policy, Durability::Deferred)
            .await?;
        let catalog_time = started.elapsed();
        if disposition != Disposition::DuplicateKept {
            let mut written = lock(&behind.written);
            if written.len() < MAX_KEYS_TO_UNCACHE {
                written.push(stored.key.clone());
            }
        }
        drop(durable);
        Ok((
            IngestOutcome {
                sop_instance_uid: record.sop_instance_uid,
                series_instance_uid: record.series_instance_uid,
                disposition,
                store_time,
                catalog_time,
            },
            size,
        ))
    }

    /// Redoes the records a journal held when it was opened (see the module doc), then
    /// checkpoints, so that none of them is redone again. Run before any instance arrives.
    pub async fn recover(&self, mut replay: Replay) -> Result<Recovery, IngestError> {
        if self.packs.is_some() {
            return self.recover_packed(replay).await;
        }
        let mut recovery = Recovery::default();
        loop {
            let (back, next) = tokio::task::spawn_blocking(move || {
                let next = replay.next_record();
                (replay, next)
            })
            .await
            .map_err(|e| IngestError::Storage(format!("journal replay: {e}")))?;
            replay = back;
            let Some(recovered) = next.map_err(|e| IngestError::Storage(e.to_string()))? else {
                break;
            };
            recovery.records += 1;
            match self.redo(recovered).await {
                Ok(true) => recovery.recorded_again += 1,
                Ok(false) => {}
                Err(e) => {
                    recovery.failed += 1;
                    tracing::warn!(error = %e, "a journal record could not be redone");
                }
            }
        }
        self.settle().await?;
        Ok(recovery)
    }

    /// Redoes one record: writes its file again and records it unless the catalog has it
    /// under the same key. Whether it had to be recorded.
    async fn redo(&self, recovered: Recovered) -> Result<bool, IngestError> {
        let header = RecordHeader::decode(&recovered.header)
            .map_err(|e| IngestError::Malformed(e.to_string()))?;
        let size = recovered.body.len() as u64;
        let body = Bytes::from(recovered.body);
        let mut record = match extract_record(&body, size) {
            Ok(record) => record,
            Err(MetadataError::NeedMoreBytes) => {
                return Err(IngestError::Malformed(
                    "a journaled instance ends early".into(),
                ))
            }
            Err(e) => return Err(IngestError::Malformed(e.to_string())),
        };
        let stored = StoredObject {
            key: header.object_key.clone(),
            size,
            checksum: radport_archive::checksum(&body),
        };
        let announced = Announced {
            sop_class_uid: header.sop_class_uid,
            sop_instance_uid: header.sop_instance_uid,
            transfer_syntax_uid: header.transfer_syntax_uid,
            source_ae_title: None,
        };
        fill_record(&mut record, &announced, &stored, header.source);
        // The file first: the catalog may have kept the row while the file's pages were lost.
        self.archive
            .put_unsynced(&stored.key, vec![body])
            .await
            .map_err(IngestError::from)?;
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

    /// Frees the journal's full segments whose instances are all recorded, after making what
    /// was written behind them durable. How many were freed (0 without a journal).
    pub async fn checkpoint(&self) -> Result<usize, IngestError> {
        if let Some(packs) = &self.packs {
            return Ok(usize::from(self.checkpoint_packs(packs).await?));
        }
        let Some(behind) = &self.journal else {
            return Ok(0);
        };
        behind
            .journal
            .checkpoint(|| self.make_durable(behind))
            .await
            .map_err(|e| IngestError::Storage(e.to_string()))
    }

    /// Checkpoints everything appended so far: afterwards no instance recorded before the
    /// call is redone after a crash. For what must not be undone by a redo (erasure), and
    /// at shutdown.
    pub async fn settle(&self) -> Result<(), IngestError> {
        if let Some(packs) = &self.packs {
            return self.checkpoint_packs(packs).await.map(drop);
        }
        let Some(behind) = &self.journal else {
            return Ok(());
        };
        behind
            .journal
            .checkpoint_all(|| self.make_durable(behind))
            .await
            .map_err(|e| IngestError::Storage(e.to_string()))?;
        Ok(())
    }

    /// [`Ingestor::settle`], then overwrites with zeros what the journal's free segments still
    /// hold of the records it freed (`Journal::scrub`): for erasure, whose instances must not
    /// live on in the journal's files. The first one after a start overwrites the whole
    /// journal (`--journal-size`). Into packs, only the settling: erasure then punches the
    /// erased instances' records, which the settling put behind the checkpoint.
    pub async fn settle_and_scrub(&self) -> Result<(), IngestError> {
        self.settle().await?;
        let Some(behind) = &self.journal else {
            return Ok(());
        };
        let bytes = behind
            .journal
            .scrub()
            .await
            .map_err(|e| IngestError::Storage(e.to_string()))?;
        tracing::debug!(bytes, "journal scrubbed");
        Ok(())
    }

    /// Makes every write behind the journal durable, then lets the pages of the instances
    /// written go from the cache (as [`Archive::drop_cached`] does on the direct path).
    async fn make_durable(&self, behind: &Behind) -> Result<(), IngestError> {
        let written = std::mem::take(&mut *lock(&behind.written));
        self.archive.sync_filesystem().await?;
        self.catalog.sync().await?;
        self.archive.drop_all_cached(written);
        Ok(())
    }

    /// Checkpoints for as long as the process runs: whenever a segment is full and its
    /// instances recorded, and after `idle` without one (the active segment is sealed then,
    /// so that little traffic is made durable and its pages dropped within about `idle`).
    pub async fn run_checkpoints(&self, idle: Duration) {
        if let Some(packs) = &self.packs {
            loop {
                tokio::select! {
                    _ = packs.log().checkpoint_wanted() => {}
                    _ = tokio::time::sleep(idle) => {}
                }
                if let Err(e) = self.checkpoint().await {
                    tracing::warn!(error = %e, "pack checkpoint failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let Some(behind) = &self.journal else {
            return;
        };
        loop {
            tokio::select! {
                _ = behind.journal.checkpoint_wanted() => {}
                _ = tokio::time::sleep(idle) => behind.journal.seal(),
            }
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(error = %e, "journal checkpoint failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn lock(keys: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    keys.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{test_route as route, test_series as series};
    use radport_catalog::{Catalog, DuplicatePolicy};
    use radport_journal::JournalConfig;

    const CONFIG: JournalConfig = JournalConfig {
        segment_bytes: 4 * 1024 * 1024,
        segments: 2,
        max_body_bytes: 2 * 1024 * 1024,
    };

    struct Setup {
        dir: tempfile::TempDir,
        catalog: Catalog,
        archive: Archive,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (archive, catalog) = crate::local_store(dir.path()).await;
        std::fs::create_dir(dir.path().join("journal")).unwrap();
        Setup {
            dir,
            catalog,
            archive,
        }
    }

    impl Setup {
        /// The catalog's rows of a series' instances.
        async fn instances(&self, series_uid: &str) -> Vec<radport_catalog::InstanceRow> {
            let series = self.catalog.get_series(series_uid).await.unwrap();
            series.expect("the series is recorded").instances
        }

        fn ingestor(&self) -> (Ingestor, Replay) {
            let (journal, replay) =
                Journal::open(&self.dir.path().join("journal"), CONFIG).unwrap();
            let ingestor = Ingestor::new(
                self.archive.clone(),
                self.catalog.clone(),
                DuplicatePolicy::KeepFirst,
            )
            .with_journal(journal)
            .unwrap();
            (ingestor, replay)
        }
    }

    #[tokio::test]
    async fn what_a_crash_lost_behind_the_journal_is_redone_from_it() {
        let s = setup().await;
        let files = series(s.dir.path(), "41", 12, 128);
        let (ingestor, replay) = s.ingestor();
        assert_eq!(ingestor.recover(replay).await.unwrap(), Recovery::default());
        let outcomes = crate::test_ingest_stored(&ingestor, &files).await;
        let journal = ingestor.journal().unwrap().clone();
        assert_eq!(journal.stats().records, 12);
        let series_uid = outcomes[0].series_instance_uid.clone();
        let detail = s.catalog.get_series(&series_uid).await.unwrap().unwrap();
        assert_eq!(detail.instances.len(), 12);
        let rows = detail.instances.clone();
        for row in &rows {
            let bytes = s.archive.get(&row.object_key).await.unwrap();
            assert_eq!(row.checksum, radport_archive::checksum(&bytes));
        }
        // A power cut before any checkpoint: the unsynced files and catalog rows are gone.
        drop(ingestor);
        drop(journal);
        for row in &rows {
            std::fs::remove_file(s.dir.path().join("archive").join(&row.object_key)).unwrap();
        }
        s.catalog
            .erase_series(std::slice::from_ref(&series_uid))
            .await
            .unwrap();
        assert!(s.catalog.get_series(&series_uid).await.unwrap().is_none());

        let (ingestor, replay) = s.ingestor();
        let recovery = ingestor.recover(replay).await.unwrap();
        assert_eq!(
            recovery,
            Recovery {
                records: 12,
                recorded_again: 12,
                failed: 0
            }
        );
        let detail = s.catalog.get_series(&series_uid).await.unwrap().unwrap();
        let mut again = detail.instances.clone();
        let mut before = rows.clone();
        again.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
        before.sort_by(|a, b| a.sop_instance_uid.cmp(&b.sop_instance_uid));
        for (a, b) in again.iter().zip(&before) {
            assert_eq!(
                (&a.object_key, &a.checksum, a.size),
                (&b.object_key, &b.checksum, b.size)
            );
            let bytes = s.archive.get(&a.object_key).await.unwrap();
            assert_eq!(a.checksum, radport_archive::checksum(&bytes));
        }
        assert_eq!(again.len(), 12);
        // Recovery checkpointed: nothing is redone twice.
        drop(ingestor);
        let (ingestor, replay) = s.ingestor();
        assert_eq!(ingestor.recover(replay).await.unwrap().records, 0);
    }

    #[tokio::test]
    async fn a_redo_of_what_the_catalog_kept_rewrites_the_file_and_records_nothing() {
        let s = setup().await;
        let files = series(s.dir.path(), "42", 3, 64);
        let (ingestor, replay) = s.ingestor();
        ingestor.recover(replay).await.unwrap();
        for file in &files {
            ingestor
                .ingest_part10(route(), "test".into(), file)
                .await
                .unwrap();
        }
        // The same instance again: a duplicate, kept first; its record is in the journal too.
        let dup = ingestor
            .ingest_part10(route(), "test".into(), &files[0])
            .await
            .unwrap();
        assert_eq!(dup.disposition, Disposition::DuplicateKept);
        let series_uid = dup.series_instance_uid.clone();
        let rows = s.instances(&series_uid).await;
        drop(ingestor);
        // The rows survived the crash, one file's pages did not.
        let lost = s.dir.path().join("archive").join(&rows[1].object_key);
        std::fs::remove_file(&lost).unwrap();
        let (ingestor, replay) = s.ingestor();
        let recovery = ingestor.recover(replay).await.unwrap();
        assert_eq!(recovery.records, 4);
        assert_eq!(
            recovery.recorded_again, 1,
            "only the duplicate's record is recorded again"
        );
        assert!(lost.exists(), "written again from the journal");
        let after = s.instances(&series_uid).await;
        assert_eq!(after.len(), 3);
        for row in &after {
            assert!(rows.iter().any(|r| r.object_key == row.object_key));
            let bytes = s.archive.get(&row.object_key).await.unwrap();
            assert_eq!(row.checksum, radport_archive::checksum(&bytes));
        }
        // The duplicate's own file is not left behind.
        let listed = s.archive.list("instances/").await.unwrap();
        assert_eq!(listed.len(), 3, "{listed:?}");
    }

    #[tokio::test]
    async fn instances_beyond_the_journal_go_straight_into_the_archive() {
        let s = setup().await;
        // 1024² of 16 bits: 2 MiB, beyond JOURNALED_MAX_BYTES.
        let files = series(s.dir.path(), "43", 1, 1024);
        assert!(files[0].len() as u64 > JOURNALED_MAX_BYTES);
        let (ingestor, replay) = s.ingestor();
        ingestor.recover(replay).await.unwrap();
        let outcome = ingestor
            .ingest_part10(route(), "test".into(), &files[0])
            .await
            .unwrap();
        assert_eq!(ingestor.journal().unwrap().stats().records, 0);
        let row = &s
            .catalog
            .get_series(&outcome.series_instance_uid)
            .await
            .unwrap()
            .unwrap()
            .instances[0];
        let bytes = s.archive.get(&row.object_key).await.unwrap();
        assert!(bytes.len() as u64 > JOURNALED_MAX_BYTES);
        assert!(bytes.ends_with(&files[0][files[0].len() - 1000..]));
        assert_eq!(row.checksum, radport_archive::checksum(&bytes));
    }
}
