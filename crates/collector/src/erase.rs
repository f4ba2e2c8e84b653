//! Erasure: series leave the catalog, then their objects leave the archive.
//!
//! The order keeps the collector's invariant: the catalog rows go first (one transaction),
//! so from then on nothing references the objects, and no reader can find them. Then the
//! instance files, thumbnails and validation reports are deleted. A delete that fails, or a
//! process that dies in between, leaves orphans that the next collection removes once they
//! are older than its grace — erasure never depends on this call finishing.

use futures::StreamExt;
use radport_archive::keys;
use radport_catalog::{CatalogError, Erased};
use radport_ingest::Ingestor;

/// Deletes in flight at once.
const ERASE_CONCURRENCY: usize = 16;

/// What an erasure did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    /// What left the catalog.
    pub erased: Erased,
    /// Archive objects deleted (or already missing).
    pub objects_deleted: u64,
    /// Deletes that failed: orphans for the next collection.
    pub objects_failed: u64,
}

/// Why an erasure did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// The catalog failed (nothing was erased, or the rows were and some objects remain for
    /// the collector).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The ingest journal could not be checkpointed first; nothing was erased.
    #[error("the ingest journal could not be settled before erasing: {0}")]
    Journal(String),
}

/// Erases `series` from the catalog and their objects from the archive.
///
/// First the ingest journal is settled and scrubbed ([`Ingestor::settle_and_scrub`]): a
/// record still in it would otherwise be redone after a crash and bring an erased instance
/// back, and the bytes of freed records would stay in its files until they are reused.
pub async fn erase_series(ingestor: &Ingestor, series: &[String]) -> Result<Erasure, EraseError> {
    ingestor
        .settle_and_scrub()
        .await
        .map_err(|e| EraseError::Journal(e.to_string()))?;
    let (catalog, archive) = (ingestor.catalog(), ingestor.archive());
    let erased = catalog.erase_series(series).await?;
    let derived = erased
        .series
        .iter()
        .flat_map(|uid| [keys::thumbnail(uid), keys::validation_report(uid)]);
    let all: Vec<String> = erased.object_keys.iter().cloned().chain(derived).collect();
    let results: Vec<bool> = futures::stream::iter(all)
        .map(|key| async move {
            archive.drop_cached(&key);
            match archive.delete(&key).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(key, error = %e, "deleting an erased object failed; the collector will");
                    false
                }
            }
        })
        .buffer_unordered(ERASE_CONCURRENCY)
        .collect()
        .await;
    let objects_deleted = results.iter().filter(|ok| **ok).count() as u64;
    Ok(Erasure {
        objects_failed: results.len() as u64 - objects_deleted,
        objects_deleted,
        erased,
    })
}
