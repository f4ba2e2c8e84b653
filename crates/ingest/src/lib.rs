//! Ingest: the one path by which a DICOM instance enters radport, whatever brought it
//! (a DIMSE association today, an import workflow later).
//!
//! An instance is streamed into the [archive](radport_archive) as a Part-10 file (the sender's
//! data-set bytes, never re-encoded, behind a file meta group we write), its attributes are read
//! from the head of those bytes, and one catalog transaction records it for its project, for
//! `admin` and for its dataset. Only then does [`Ingestor::finish`] return success.
//!
//! Invariants:
//! - `finish` returning `Ok` ⇒ the object is durably stored and its catalog rows are committed.
//! - An instance that is aborted, malformed or refused by the catalog leaves no object behind
//!   (best effort delete) and never a catalog row.
//! - Memory per instance is bounded: the archive writer's buffer plus [`HEAD_LIMIT`] bytes (up
//!   to [`SLOW_HEAD_LIMIT`] for the rare instance whose attributes do not fit in that).
//! - No declared length reaches the DICOM parser unchecked: [`prescan`] walks the bytes first,
//!   so a hostile instance costs what it sent, not what it declares.

mod metadata;
/// The structural check run before the DICOM parser (its own crate, so that every crate that
/// parses untrusted bytes can use it without depending on ingest).
pub use radport_prescan as prescan;

use std::io::Write as _;

use dicom_object::meta::FileMetaTableBuilder;
use radport_archive::{Archive, ArchiveError, ObjectWriter};
use radport_catalog::{Catalog, CatalogError, DuplicatePolicy, RecordOutcome, Route};

pub use metadata::{extract_record, MetadataError};

/// How many bytes of the head of each file are kept in memory to read its attributes from.
/// Attributes after this (rare: very large headers) are read back from the archive.
pub const HEAD_LIMIT: usize = 1024 * 1024;

/// How far into a stored file a second, slower attempt at reading its attributes goes.
pub const SLOW_HEAD_LIMIT: u64 = prescan::MAX_INFLATED_HEAD;

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

impl From<ArchiveError> for IngestError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::OutOfSpace(m) => IngestError::OutOfSpace(m),
            other => IngestError::Storage(other.to_string()),
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
}

/// An instance being received: the archive writer and the head of its bytes.
pub struct IncomingInstance {
    writer: ObjectWriter,
    head: Vec<u8>,
    route: Route,
    source: String,
    announced: Announced,
}

impl IncomingInstance {
    /// Appends data-set bytes as they arrive.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        if self.head.len() < HEAD_LIMIT {
            let take = (HEAD_LIMIT - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        self.writer.write(bytes).await.map_err(IngestError::from)
    }

    /// Bytes received so far (file meta included).
    pub fn size(&self) -> u64 {
        self.writer.size()
    }

    /// Abandons the instance: nothing of it becomes visible.
    pub async fn abort(self) {
        self.writer.abort().await;
    }
}

/// Key of a new instance's object: `instances/YYYY/MM/DD/<uuid>.dcm` (UTC day of arrival).
/// One new directory a day: with fsync on, every directory created costs two more fsyncs,
/// which hash-sharded layouts pay on most instances until every shard exists.
fn object_key_for_new_instance() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let day = chrono::Utc::now().format("%Y/%m/%d");
    format!("instances/{day}/{id}.dcm")
}

impl Ingestor {
    /// An ingestor over an archive and a catalog with a duplicate policy.
    pub fn new(archive: Archive, catalog: Catalog, policy: DuplicatePolicy) -> Self {
        Self {
            archive,
            catalog,
            policy,
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
        let writer = self.archive.writer(&object_key_for_new_instance())?;
        let mut incoming = IncomingInstance {
            writer,
            head: Vec::with_capacity(64 * 1024),
            route,
            source,
            announced,
        };
        incoming.write(&prologue).await?;
        Ok(incoming)
    }

    /// Completes an instance: stores it durably, reads its attributes, commits its catalog rows.
    pub async fn finish(&self, incoming: IncomingInstance) -> Result<IngestOutcome, IngestError> {
        let IncomingInstance {
            writer,
            head,
            route,
            source,
            announced,
        } = incoming;
        let started = std::time::Instant::now();
        let stored = writer.finish().await?;
        let store_time = started.elapsed();
        let record = match extract_record(&head, stored.size) {
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
        let started = std::time::Instant::now();
        let outcome = match self
            .catalog
            .record_instance(&record, &route, self.policy)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                self.discard(&stored.key).await;
                return Err(e.into());
            }
        };
        let catalog_time = started.elapsed();
        let disposition = match outcome {
            RecordOutcome::Stored => Disposition::Stored,
            RecordOutcome::DuplicateKept { .. } => {
                self.discard(&stored.key).await;
                Disposition::DuplicateKept
            }
            RecordOutcome::Replaced { old_key } => {
                if old_key != stored.key {
                    self.discard(&old_key).await;
                }
                Disposition::Replaced
            }
        };
        Ok(IngestOutcome {
            sop_instance_uid: record.sop_instance_uid,
            series_instance_uid: record.series_instance_uid,
            disposition,
            store_time,
            catalog_time,
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
        let written = incoming.write(&bytes[dataset_offset..]).await;
        if let Err(e) = written {
            incoming.abort().await;
            return Err(e);
        }
        self.finish(incoming).await
    }

    async fn discard(&self, key: &str) {
        if let Err(e) = self.archive.delete(key).await {
            tracing::warn!(key, error = %e, "could not delete an object that is no longer referenced");
        }
    }
}

/// Implementation Class UID written into the file meta group of every stored file.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.77260619226653299350047344800576014343";
/// Implementation Version Name written into the file meta group of every stored file.
pub const IMPLEMENTATION_VERSION_NAME: &str = "RADPORT_0_1";
