//! Ingest: the one path by which a DICOM instance enters radport, whatever brought it
//! (a DIMSE association, or an import workflow's zip entry or converted NIfTI series).
//!
//! An instance is streamed into the [archive](radport_archive) as a Part-10 file (the sender's
//! data-set bytes, never re-encoded, behind a file meta group we write), its attributes are read
//! from the head of those bytes, and one catalog transaction records it for its project, for
//! `admin` and for its dataset. Only then does [`Ingestor::finish`] return success.
//!
//! On a local archive an instance of up to [`JOURNALED_MAX_BYTES`] can instead be made
//! durable behind the ingest journal (`journaled`: a file written unsynced, a journal record
//! synced with others) or kept in a pack (`packed`: the pack's record is the archive's copy);
//! in both, the catalog commit is deferred to the next checkpoint and redone after a crash.
//!
//! The DICOM receiver answers once an instance is durable ([`Ingestor::finish_durable`]): into
//! packs on SQLite its rows are recorded behind the answer, in batches (`recorded_behind`).
//!
//! Invariants:
//! - `finish` returning `Ok` ⇒ the object is durably stored and its catalog rows are committed.
//! - `finish_durable` returning `Ok` ⇒ the object is durably stored; its rows are committed
//!   when [`Finished::Recorded`], else once its [`PendingRecord`] says so — and a crash
//!   before that records them again from the durable record.
//! - An instance that is aborted, malformed or refused by the catalog leaves no object behind
//!   (best effort delete) and never a catalog row.
//! - Memory per instance is bounded: the archive writer's buffer plus [`HEAD_LIMIT`] bytes (up
//!   to [`SLOW_HEAD_LIMIT`] for the rare instance whose attributes do not fit in that).
//! - Received bytes are not copied on the way to the archive: the chunks are handed on as they
//!   are, and the head is read from those same chunks.
//! - No declared length reaches the DICOM parser unchecked: [`radport_prescan`] walks the bytes first,
//!   so a hostile instance costs what it sent, not what it declares.

#![warn(missing_docs)]

mod journal_record;
mod journaled;
mod metadata;
mod packed;
mod recorded_behind;

use std::borrow::Cow;
use std::io::Write as _;

use bytes::Bytes;

use dicom_object::meta::FileMetaTableBuilder;
pub use journaled::{Recovery, CHECKPOINT_IDLE, JOURNALED_MAX_BYTES};
use radport_archive::{Archive, ArchiveError, ObjectWriter, StoredObject};
use radport_catalog::{
    Catalog, CatalogError, DuplicatePolicy, Durability, InstanceRecord, RecordOutcome, Route,
};
pub use radport_journal::pack::{pack_file_name, PackConfig, PackLog};
pub use radport_journal::{Journal, JournalConfig, JournalError, Replay};
pub use radport_metrics::Channel;
pub use recorded_behind::PendingRecord;

/// For the fuzz targets (fuzz/): the journal record header ingest writes and reads back.
#[doc(hidden)]
pub use journal_record::{HeaderError, RecordHeader};
/// For the fuzz targets (fuzz/): what `ingest_part10` reads first.
#[doc(hidden)]
pub use metadata::read_file_meta;
pub use metadata::{element_bytes, extract_record, MetadataError};

/// How many bytes of the head of each file are kept in memory to read its attributes from.
/// Attributes after this (rare: very large headers) are read back from the archive.
pub const HEAD_LIMIT: usize = 1024 * 1024;

/// The attributes are first read from this much of the head (copied into one buffer), which
/// holds every attribute before Pixel Data of a typical slice; only if they go on is the
/// whole head put together.
pub const QUICK_HEAD_LIMIT: usize = 64 * 1024;

/// How far into a stored file a second, slower attempt at reading its attributes goes.
pub const SLOW_HEAD_LIMIT: u64 = radport_prescan::MAX_INFLATED_HEAD;

/// Why an instance was not ingested. Each kind maps to one DIMSE failure status.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No space left in the archive.
    #[error("out of storage space: {0}")]
    OutOfSpace(String),
    /// The data set could not be parsed or lacks an identifying attribute.
    #[error("cannot understand the data set: {0}")]
    Malformed(String),
    /// The routing target does not exist.
    #[error("unknown project: {0}")]
    UnknownProject(String),
    /// The archive failed for another reason.
    #[error("storage failure: {0}")]
    Storage(String),
    /// The catalog failed.
    #[error("catalog failure: {0}")]
    Catalog(String),
}

impl IngestError {
    /// The reason's name in `radport_instances_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::OutOfSpace(_) => "out_of_space",
            IngestError::Malformed(_) => "malformed",
            IngestError::UnknownProject(_) => "unknown_project",
            IngestError::Storage(_) => "storage",
            IngestError::Catalog(_) => "catalog",
        }
    }
}

/// The channel an instance came by, from the first part of its `source` (`dimse:…`,
/// `dicomweb:…`, `upload:…`), for the figures of `radport-metrics`.
pub fn channel_of(source: &str) -> Channel {
    match source.split(':').next().unwrap_or_default() {
        "dimse" => Channel::Dimse,
        "dicomweb" => Channel::Stow,
        "upload" => Channel::Import,
        _ => Channel::Other,
    }
}

/// Counts an instance that was not stored, and passes the error on.
fn refused(channel: Channel, e: IngestError) -> IngestError {
    radport_metrics::global().instance_refused(channel, e.reason());
    e
}

impl From<ArchiveError> for IngestError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::OutOfSpace(m) => IngestError::OutOfSpace(m),
            other => IngestError::Storage(other.to_string()),
        }
    }
}

impl From<JournalError> for IngestError {
    fn from(e: JournalError) -> Self {
        if e.is_out_of_space() {
            IngestError::OutOfSpace(e.to_string())
        } else {
            IngestError::Storage(e.to_string())
        }
    }
}

impl From<CatalogError> for IngestError {
    fn from(e: CatalogError) -> Self {
        IngestError::Catalog(e.to_string())
    }
}

/// What [`Ingestor::finish`] did with an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    /// SOP Instance UID of the instance.
    pub sop_instance_uid: String,
    /// Series it belongs to.
    pub series_instance_uid: String,
    /// What the catalog did (new, duplicate kept, replaced).
    pub disposition: Disposition,
    /// Time spent making the object durable (flush, fsync, publish), for diagnostics.
    pub store_time: std::time::Duration,
    /// Time spent committing the catalog rows (waiting for the write lock included).
    pub catalog_time: std::time::Duration,
}

/// What [`Ingestor::finish_durable`] did with an instance.
#[derive(Debug)]
pub enum Finished {
    /// Stored durably and recorded in the catalog.
    Recorded(IngestOutcome),
    /// Stored durably (its pack record synced); its catalog rows follow.
    Durable(DurableInstance),
}

/// An instance durable in its pack whose catalog rows are on their way.
#[derive(Debug)]
pub struct DurableInstance {
    /// SOP Instance UID of the instance.
    pub sop_instance_uid: String,
    /// Series it belongs to.
    pub series_instance_uid: String,
    /// Time spent making it durable, for diagnostics.
    pub store_time: std::time::Duration,
    /// Its rows, once committed: what the catalog did with it.
    pub pending: PendingRecord,
}

/// The catalog's decision on an arriving instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A new instance.
    Stored,
    /// The SOP Instance UID was known; the first copy was kept (memberships were added).
    DuplicateKept,
    /// The SOP Instance UID was known; the new copy replaced it.
    Replaced,
}

impl Disposition {
    /// The name shown in figures (`radport_instances_received_total`).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Stored => "stored",
            Disposition::DuplicateKept => "duplicate_kept",
            Disposition::Replaced => "replaced",
        }
    }
}

/// Identity of an instance as announced by its sender, before its bytes are read.
#[derive(Debug, Clone)]
pub struct Announced {
    /// Media Storage SOP Class UID (from the C-STORE request).
    pub sop_class_uid: String,
    /// Media Storage SOP Instance UID (from the C-STORE request).
    pub sop_instance_uid: String,
    /// Transfer syntax of the data-set bytes that will follow.
    pub transfer_syntax_uid: String,
    /// AE title of the sender, recorded as Source Application Entity Title, if any.
    pub source_ae_title: Option<String>,
}

/// The ingest engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Ingestor {
    archive: Archive,
    catalog: Catalog,
    policy: DuplicatePolicy,
    /// Local archive only: instances up to [`JOURNALED_MAX_BYTES`] are made durable here
    /// (see `journaled`).
    journal: Option<journaled::Behind>,
    /// Local archive only, instead of a journal: instances up to [`JOURNALED_MAX_BYTES`] are
    /// kept in packs (see `packed`).
    packs: Option<packed::Packs>,
}

/// Where an instance's bytes go as they arrive.
enum Sink {
    /// Straight into the archive, durable when finished.
    Archive(ObjectWriter),
    /// Kept, the chunks as they came, for the journal; moved to the archive if it grows
    /// beyond [`JOURNALED_MAX_BYTES`].
    Journaled(journaled::Held<journaled::Chunks>),
    /// Copied as it comes into its pack record; moved to the archive if it grows beyond
    /// [`JOURNALED_MAX_BYTES`].
    Packed(journaled::Held<radport_journal::pack::PackRecord>),
}

/// An instance being received: where its bytes go and the head of its bytes.
pub struct IncomingInstance {
    sink: Sink,
    /// The first [`HEAD_LIMIT`] bytes, as the chunks they arrived in (shared, not copied).
    head: Head,
    route: Route,
    source: String,
    announced: Announced,
}

impl IncomingInstance {
    /// Appends data-set bytes as they arrive (a `Vec<u8>` or `Bytes` is taken over, not
    /// copied).
    pub async fn write(&mut self, bytes: impl Into<Bytes>) -> Result<(), IngestError> {
        let bytes = bytes.into();
        // Into packs the bytes are copied as they come: the head is read from there.
        let keeps_head = !matches!(&self.sink, Sink::Packed(_));
        if keeps_head {
            self.head.keep(&bytes);
        }
        let outgrown = match &mut self.sink {
            Sink::Archive(writer) => {
                return writer
                    .write_owned(bytes)
                    .await
                    .map_err(|e| refused(channel_of(&self.source), e.into()))
            }
            Sink::Journaled(held) => held.take(bytes),
            Sink::Packed(held) => {
                let outgrown = held.take(bytes);
                if outgrown.is_none() {
                    self.head.early.try_read(held.body().body());
                }
                outgrown
            }
        };
        let written = match outgrown {
            None => Ok(()),
            // Too large for the journal: into the archive, what came so far first.
            Some((archive, key, chunks)) => {
                if !keeps_head {
                    // Held in a pack record so far: the head is what it held.
                    for chunk in &chunks {
                        self.head.keep(chunk);
                    }
                }
                match archive.writer(&key) {
                    Ok(mut writer) => {
                        let mut result = Ok(());
                        for chunk in chunks {
                            result = writer.write_owned(chunk).await;
                            if result.is_err() {
                                break;
                            }
                        }
                        self.sink = Sink::Archive(writer);
                        result
                    }
                    Err(e) => Err(e),
                }
            }
        };
        written.map_err(|e| refused(channel_of(&self.source), e.into()))
    }

    /// Room for `len` more data-set bytes where they are kept — the instance's pack record
    /// — to be read straight from the connection and then taken by [`IncomingInstance::grow`]
    /// (no copy); `None` where they are not kept that way or would not fit there: then
    /// [`IncomingInstance::write`] takes them.
    pub fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        match &mut self.sink {
            Sink::Packed(held) => held.room(len),
            Sink::Archive(_) | Sink::Journaled(_) => None,
        }
    }

    /// The first `n` bytes of the last [`IncomingInstance::room`] are the data set's next
    /// bytes (the room is used up). An error if they cannot be: more than the room held, or
    /// no room given.
    pub fn grow(&mut self, n: usize) -> Result<(), IngestError> {
        let grown = match &mut self.sink {
            Sink::Packed(held) => held.grow(n).then_some(held),
            Sink::Archive(_) | Sink::Journaled(_) => None,
        };
        let Some(held) = grown else {
            return Err(IngestError::Storage(format!(
                "{n} bytes beyond the room given for them"
            )));
        };
        self.head.early.try_read(held.body().body());
        Ok(())
    }

    /// Bytes received so far (file meta included).
    pub fn size(&self) -> u64 {
        match &self.sink {
            Sink::Archive(writer) => writer.size(),
            Sink::Journaled(held) => held.size(),
            Sink::Packed(held) => held.size(),
        }
    }

    /// Abandons the instance: nothing of it becomes visible.
    pub async fn abort(self) {
        if let Sink::Archive(writer) = self.sink {
            writer.abort().await;
        }
    }
}

/// Reads the attributes from the head chunks: from their first [`QUICK_HEAD_LIMIT`] bytes,
/// then, if the attributes go on, from all of them.
/// The head of an instance's bytes, to read its attributes from: its first [`HEAD_LIMIT`]
/// bytes as the chunks they arrived in (shared, not copied) — or, into packs, where the
/// record holds them, the attributes read early.
#[derive(Default)]
struct Head {
    chunks: Vec<Bytes>,
    len: usize,
    early: EarlyAttributes,
}

impl Head {
    /// Keeps what `bytes` adds to the first [`HEAD_LIMIT`] bytes.
    fn keep(&mut self, bytes: &Bytes) {
        if self.len < HEAD_LIMIT && !bytes.is_empty() {
            let take = (HEAD_LIMIT - self.len).min(bytes.len());
            self.chunks.push(bytes.slice(..take));
            self.len += take;
        }
    }
}

/// An instance's attributes read from its first bytes while the rest still arrives, so that
/// the parse is not between its last data and its answer (it was 8 % of the receiver's CPU,
/// all of it there with one sender). Tried as the bytes held grow (each time they have
/// doubled, up to [`HEAD_LIMIT`]); taken at the end only if the whole instance's size checks
/// the same prefix as [`extract_record`] would have ([`metadata::confirm_early`]), else read
/// again there as before.
#[derive(Default)]
struct EarlyAttributes {
    /// The attributes and the length of the prefix they were read from.
    read: Option<(radport_catalog::InstanceRecord, usize)>,
    /// Held bytes at which to try next (0: at once; `usize::MAX`: no more).
    next_try: usize,
}

impl EarlyAttributes {
    /// Smallest prefix worth a try.
    const FIRST_TRY: usize = 4096;

    fn try_read(&mut self, body: &[u8]) {
        if self.read.is_some() || body.len() < self.next_try.max(Self::FIRST_TRY) {
            return;
        }
        let prefix = &body[..body.len().min(HEAD_LIMIT)];
        match metadata::extract_record_early(prefix) {
            Some(record) => self.read = Some((record, prefix.len())),
            None if prefix.len() == HEAD_LIMIT => self.next_try = usize::MAX,
            None => self.next_try = prefix.len().saturating_mul(2),
        }
    }

    /// The attributes read early, if `body` (the whole instance) confirms them.
    fn take(&mut self, body: &[u8]) -> Option<radport_catalog::InstanceRecord> {
        let (record, prefix_len) = self.read.take()?;
        metadata::confirm_early(body, prefix_len).then_some(record)
    }
}

/// An instance's attributes from its first `available` bytes, `prefix(len)` giving the first
/// `len` of them: read from at most [`QUICK_HEAD_LIMIT`] bytes first, and from up to
/// [`HEAD_LIMIT`] only if that was not enough.
fn extract_record_in_steps<'a>(
    available: usize,
    file_size: u64,
    mut prefix: impl FnMut(usize) -> Cow<'a, [u8]>,
) -> Result<radport_catalog::InstanceRecord, MetadataError> {
    let mut tried = 0;
    for limit in [QUICK_HEAD_LIMIT, HEAD_LIMIT] {
        let len = available.min(limit);
        if len <= tried {
            break;
        }
        match extract_record(&prefix(len), file_size) {
            Err(MetadataError::NeedMoreBytes) => tried = len,
            other => return other,
        }
    }
    Err(MetadataError::NeedMoreBytes)
}

/// [`extract_record_in_steps`] over an instance's first bytes in one piece (no copy).
fn extract_record_from_bytes(
    bytes: &[u8],
    file_size: u64,
) -> Result<radport_catalog::InstanceRecord, MetadataError> {
    extract_record_in_steps(bytes.len(), file_size, |len| Cow::Borrowed(&bytes[..len]))
}

/// [`extract_record_in_steps`] over an instance's first bytes in pieces, each prefix gathered
/// into one.
fn extract_record_from_head(
    head: &[Bytes],
    file_size: u64,
) -> Result<radport_catalog::InstanceRecord, MetadataError> {
    let total = head.iter().map(Bytes::len).sum();
    extract_record_in_steps(total, file_size, |len| {
        let mut bytes = Vec::with_capacity(len);
        for chunk in head {
            let take = (len - bytes.len()).min(chunk.len());
            bytes.extend_from_slice(&chunk[..take]);
            if bytes.len() == len {
                break;
            }
        }
        Cow::Owned(bytes)
    })
}

/// Key of a new instance's object: `instances/YYYY/MM/DD/<uuid>.dcm` (the UTC day it is named:
/// as it arrives, or as it outgrows what is held, or once held whole for the journal).
/// One new directory a day: with fsync on, every directory created costs two more fsyncs,
/// which hash-sharded layouts pay on most instances until every shard exists.
fn object_key_for_new_instance() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let day = chrono::Utc::now().format("%Y/%m/%d");
    format!("instances/{day}/{id}.dcm")
}

/// Completes what was read from an instance's bytes with what its sender announced and
/// where it was stored.
fn fill_record(
    record: &mut InstanceRecord,
    announced: &Announced,
    stored: &StoredObject,
    source: String,
) {
    if record.sop_instance_uid.is_empty() {
        record.sop_instance_uid = announced.sop_instance_uid.clone();
    }
    if record.sop_class_uid.is_empty() {
        record.sop_class_uid = announced.sop_class_uid.clone();
    }
    record.transfer_syntax_uid = announced.transfer_syntax_uid.clone();
    record.size = stored.size as i64;
    record.checksum = stored.checksum.clone();
    record.object_key = stored.key.clone();
    record.source = source;
}

impl Ingestor {
    /// An ingestor over an archive and a catalog with a duplicate policy.
    pub fn new(archive: Archive, catalog: Catalog, policy: DuplicatePolicy) -> Self {
        Self {
            archive,
            catalog,
            policy,
            journal: None,
            packs: None,
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The archive.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }

    /// Resolves a project name (case-insensitively) to its canonical name.
    pub async fn resolve_project(&self, name: &str) -> Result<Option<String>, IngestError> {
        Ok(self.catalog.find_project(name).await?.map(|p| p.name))
    }

    /// Starts receiving an instance: writes the Part-10 preamble and file meta group.
    /// `source` names where it came from (e.g. `dimse:CALLING_AE`), for the catalog.
    pub async fn begin(
        &self,
        route: Route,
        source: String,
        announced: Announced,
    ) -> Result<IncomingInstance, IngestError> {
        let channel = channel_of(&source);
        self.begin_uncounted(route, source, announced)
            .await
            .map_err(|e| refused(channel, e))
    }

    async fn begin_uncounted(
        &self,
        route: Route,
        source: String,
        announced: Announced,
    ) -> Result<IncomingInstance, IngestError> {
        let mut builder = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(announced.sop_class_uid.as_str())
            .media_storage_sop_instance_uid(announced.sop_instance_uid.as_str())
            .transfer_syntax(announced.transfer_syntax_uid.as_str())
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        if let Some(ae) = &announced.source_ae_title {
            if !ae.is_empty() {
                builder = builder.source_application_entity_title(ae.as_str());
            }
        }
        let meta = builder
            .build()
            .map_err(|e| IngestError::Malformed(format!("cannot build file meta group: {e}")))?;
        let mut prologue = Vec::with_capacity(512);
        prologue.extend_from_slice(&[0u8; 128]);
        prologue
            .write_all(b"DICM")
            .map_err(|e| IngestError::Storage(e.to_string()))?;
        meta.write(&mut prologue)
            .map_err(|e| IngestError::Malformed(format!("cannot write file meta group: {e}")))?;
        let sink = if let Some(packs) = &self.packs {
            let header = self.pack_header(&route, &source, &announced)?;
            let record = packs.log().record(&header)?;
            Sink::Packed(journaled::Held::new(self.archive.clone(), record))
        } else if self.journal.is_some() {
            Sink::Journaled(journaled::Held::new(self.archive.clone(), Vec::new()))
        } else {
            Sink::Archive(self.archive.writer(&object_key_for_new_instance())?)
        };
        let mut incoming = IncomingInstance {
            sink,
            head: Head::default(),
            route,
            source,
            announced,
        };
        incoming.write(prologue).await?;
        Ok(incoming)
    }

    /// Completes an instance: stores it durably, reads its attributes, commits its catalog rows.
    pub async fn finish(&self, incoming: IncomingInstance) -> Result<IngestOutcome, IngestError> {
        let channel = channel_of(&incoming.source);
        let (finished, size) = self
            .finish_uncounted(incoming, true)
            .await
            .map_err(|e| refused(channel, e))?;
        let outcome = match finished {
            Finished::Recorded(outcome) => outcome,
            Finished::Durable(mut durable) => {
                let started = std::time::Instant::now();
                let disposition = durable
                    .pending
                    .wait()
                    .await
                    .map_err(|e| refused(channel, e))?;
                IngestOutcome {
                    sop_instance_uid: durable.sop_instance_uid,
                    series_instance_uid: durable.series_instance_uid,
                    disposition,
                    store_time: durable.store_time,
                    catalog_time: started.elapsed(),
                }
            }
        };
        radport_metrics::global().instance_received(channel, outcome.disposition.as_str(), size);
        Ok(outcome)
    }

    /// Completes an instance as [`Ingestor::finish`] does, but returns as soon as it is
    /// durable: a packed instance's catalog rows are recorded behind, together with other
    /// instances' (see `recorded_behind`) — [`PendingRecord::recorded`] says when and how.
    /// Its sender may be answered success at once: the instance is durable, and recorded again
    /// from its pack record after a crash.
    pub async fn finish_durable(
        &self,
        incoming: IncomingInstance,
    ) -> Result<Finished, IngestError> {
        let channel = channel_of(&incoming.source);
        match self.finish_uncounted(incoming, false).await {
            Ok((Finished::Recorded(outcome), size)) => {
                radport_metrics::global().instance_received(
                    channel,
                    outcome.disposition.as_str(),
                    size,
                );
                Ok(Finished::Recorded(outcome))
            }
            // Counted once recorded (`PendingRecord::recorded`).
            Ok((durable, _)) => Ok(durable),
            Err(e) => Err(refused(channel, e)),
        }
    }

    /// [`Ingestor::finish_durable`] without the counting; also gives the stored size.
    /// `waited_for`: the caller waits for the rows before answering (no lingering for others).
    async fn finish_uncounted(
        &self,
        incoming: IncomingInstance,
        waited_for: bool,
    ) -> Result<(Finished, u64), IngestError> {
        let IncomingInstance {
            sink,
            mut head,
            route,
            source,
            announced,
        } = incoming;
        let writer = match sink {
            Sink::Archive(writer) => writer,
            Sink::Packed(held) => {
                return self
                    .finish_packed(held, &mut head, route, source, announced, waited_for)
                    .await;
            }
            Sink::Journaled(held) => {
                return self
                    .finish_journaled(held, &head.chunks, route, source, announced)
                    .await
                    .map(|(outcome, size)| (Finished::Recorded(outcome), size));
            }
        };
        let started = std::time::Instant::now();
        let stored = writer.finish().await?;
        let store_time = started.elapsed();
        let record = match extract_record_from_head(&head.chunks, stored.size) {
            Ok(r) => Ok(r),
            Err(MetadataError::NeedMoreBytes) => {
                match self.archive.get_prefix(&stored.key, SLOW_HEAD_LIMIT).await {
                    Ok(bytes) => extract_record(&bytes, stored.size),
                    Err(e) => {
                        self.discard(&stored.key).await;
                        return Err(e.into());
                    }
                }
            }
            Err(e) => Err(e),
        };
        let mut record = match record {
            Ok(r) => r,
            Err(e) => {
                self.discard(&stored.key).await;
                return Err(IngestError::Malformed(e.to_string()));
            }
        };
        fill_record(&mut record, &announced, &stored, source);
        let started = std::time::Instant::now();
        let disposition = self
            .commit(&record, &route, self.policy, Durability::Synced)
            .await?;
        let catalog_time = started.elapsed();
        Ok((
            Finished::Recorded(IngestOutcome {
                sop_instance_uid: record.sop_instance_uid,
                series_instance_uid: record.series_instance_uid,
                disposition,
                store_time,
                catalog_time,
            }),
            stored.size,
        ))
    }

    /// Records a stored instance in the catalog; deletes the object that is left unreferenced
    /// (this one when refused or a duplicate kept, the old one when replaced).
    async fn commit(
        &self,
        record: &InstanceRecord,
        route: &Route,
        policy: DuplicatePolicy,
        durability: Durability,
    ) -> Result<Disposition, IngestError> {
        match self.commit_keeping(record, route, policy, durability).await {
            Ok(disposition) => Ok(disposition),
            Err(e) => {
                self.discard(&record.object_key).await;
                Err(e.into())
            }
        }
    }

    /// [`Ingestor::commit`], but an instance the catalog refuses keeps its object (an
    /// instance already answered success, recorded behind, is retried).
    async fn commit_keeping(
        &self,
        record: &InstanceRecord,
        route: &Route,
        policy: DuplicatePolicy,
        durability: Durability,
    ) -> Result<Disposition, CatalogError> {
        let outcome = self
            .catalog
            .record_instance_with(record, route, policy, durability)
            .await?;
        if durability == Durability::Synced {
            // Durable and catalogued: its pages need not stay in memory (see `drop_cached`).
            self.archive.drop_cached(&record.object_key);
        }
        Ok(match outcome {
            RecordOutcome::Stored => Disposition::Stored,
            RecordOutcome::DuplicateKept { existing_key } => {
                if existing_key != record.object_key {
                    self.discard(&record.object_key).await;
                }
                Disposition::DuplicateKept
            }
            RecordOutcome::Replaced { old_key } => {
                if old_key != record.object_key {
                    self.discard(&old_key).await;
                }
                Disposition::Replaced
            }
        })
    }

    /// Ingests a whole Part-10 file held in memory (used by import workflows and tests).
    pub async fn ingest_part10(
        &self,
        route: Route,
        source: String,
        bytes: &[u8],
    ) -> Result<IngestOutcome, IngestError> {
        let (announced, dataset_offset) =
            metadata::read_file_meta(bytes).map_err(|e| IngestError::Malformed(e.to_string()))?;
        let mut incoming = self.begin(route, source, announced).await?;
        let written = incoming
            .write(Bytes::copy_from_slice(&bytes[dataset_offset..]))
            .await;
        if let Err(e) = written {
            incoming.abort().await;
            return Err(e);
        }
        self.finish(incoming).await
    }

    async fn discard(&self, key: &str) {
        match self.archive.delete(key).await {
            Ok(()) => {}
            // A packed record ahead of the checkpoint: punched after it.
            Err(ArchiveError::NotYet(_))
                if self.packs.as_ref().is_some_and(|p| p.punch_later(key)) => {}
            Err(e) => {
                tracing::warn!(key, error = %e, "could not delete an object that is no longer referenced")
            }
        }
    }
}

/// Implementation Class UID written into the file meta group of every stored file.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.77260619226653299350047344800576014343";
/// Implementation Version Name written into the file meta group of every stored file.
pub const IMPLEMENTATION_VERSION_NAME: &str = "RADPORT_0_1";

/// For tests: an archive in `dir/archive` and a SQLite catalog in `dir/catalog.db`.
#[cfg(test)]
pub(crate) async fn local_store(dir: &std::path::Path) -> (Archive, Catalog) {
    let archive = Archive::local(&dir.join("archive")).unwrap();
    let catalog = Catalog::connect(&format!("sqlite://{}", dir.join("catalog.db").display()))
        .await
        .unwrap();
    (archive, catalog)
}

/// For tests: the route into `admin`, dataset `d`.
#[cfg(test)]
pub(crate) fn test_route() -> Route {
    Route {
        project: "admin".into(),
        dataset: "d".into(),
    }
}

/// For tests: the Part-10 files of a series of `count` slices of `rows`², made in `dir/seed`.
#[cfg(test)]
pub(crate) fn test_series(
    dir: &std::path::Path,
    seed: &str,
    count: usize,
    rows: u16,
) -> Vec<Vec<u8>> {
    let spec = radport_testkit::SeriesSpec {
        count,
        rows,
        columns: rows,
        uid_seed: seed.into(),
        ..Default::default()
    };
    radport_testkit::write_series(&dir.join(seed), &spec)
        .unwrap()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// For tests: `files` ingested one after the other into `admin`, each newly stored; their
/// outcomes.
#[cfg(test)]
pub(crate) async fn test_ingest_stored(
    ingestor: &Ingestor,
    files: &[Vec<u8>],
) -> Vec<IngestOutcome> {
    let mut outcomes = Vec::with_capacity(files.len());
    for file in files {
        let outcome = ingestor
            .ingest_part10(test_route(), "test".into(), file)
            .await
            .unwrap();
        assert_eq!(outcome.disposition, Disposition::Stored);
        outcomes.push(outcome);
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, Tag, VR};

    /// A CT slice whose attributes before Study/Series Instance UID include a private OB
    /// value of `private_len` bytes, as a Part-10 file.
    fn slice_with_private_bytes(dir: &std::path::Path, private_len: usize) -> Vec<u8> {
        let spec = radport_testkit::SeriesSpec {
            count: 1,
            rows: 16,
            columns: 16,
            uid_seed: format!("7{private_len}"),
            ..Default::default()
        };
        let paths = radport_testkit::write_series(dir, &spec).unwrap();
        let mut obj = dicom_object::open_file(&paths[0]).unwrap();
        obj.put(DataElement::new(
            Tag(0x0009, 0x0010),
            VR::LO,
            PrimitiveValue::from("RADPORT TEST"),
        ));
        obj.put(DataElement::new(
            Tag(0x0009, 0x1001),
            VR::OB,
            PrimitiveValue::from(vec![0xA5u8; private_len]),
        ));
        let out = dir.join(format!("private-{private_len}.dcm"));
        obj.write_to_file(&out).unwrap();
        std::fs::read(out).unwrap()
    }

    /// Attributes are read from the first 64 KiB, from the first 1 MiB, or from the stored
    /// file, whichever holds them all — also when the bytes arrive in small chunks.
    #[tokio::test]
    async fn attributes_beyond_the_quick_head_and_the_head() {
        let dir = tempfile::tempdir().unwrap();
        let (archive, catalog) = local_store(dir.path()).await;
        let ingestor = Ingestor::new(archive, catalog, DuplicatePolicy::KeepFirst);
        for private_len in [10, 200 * 1024, 3 * 1024 * 1024] {
            let file = slice_with_private_bytes(dir.path(), private_len);
            let (announced, offset) = metadata::read_file_meta(&file).unwrap();
            let sop = announced.sop_instance_uid.clone();
            let route = Route {
                project: "admin".into(),
                dataset: "d".into(),
            };
            let mut incoming = ingestor
                .begin(route, "test".into(), announced)
                .await
                .unwrap();
            for chunk in file[offset..].chunks(10_000) {
                incoming.write(chunk.to_vec()).await.unwrap();
            }
            let outcome = ingestor.finish(incoming).await.unwrap();
            assert_eq!(outcome.sop_instance_uid, sop, "{private_len}");
            assert_eq!(outcome.disposition, Disposition::Stored, "{private_len}");
            let series = ingestor
                .catalog()
                .get_series(&outcome.series_instance_uid)
                .await
                .unwrap()
                .expect("series recorded");
            assert_eq!(series.series.modality.as_deref(), Some("CT"));
            let row = &series.instances[0];
            let stored = ingestor.archive().get(&row.object_key).await.unwrap();
            assert_eq!(row.size as usize, stored.len());
            assert!(
                stored.ends_with(&file[offset..]),
                "{private_len}: the data set as sent"
            );
            assert_eq!(row.checksum, radport_archive::checksum(&stored));
        }
    }
}
