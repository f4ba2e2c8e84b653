//! Instances kept in packs (`radport_journal::pack`), for a local archive whose ingest
//! writes each instance once, into a pack, instead of into a file of its own.
//!
//! Such an instance's key names its record: `packs/<generation as 16 hex digits>.pack@<offset>`
//! ([`keys::packed`](crate::keys::packed)); every read of the archive takes it like any other
//! key and reads the record's body in its pack, after checking the record's head there. No
//! object can be written under `packs/`: that area belongs to the pack log. Deleting such a
//! key punches the record out of its pack, once the pack log's checkpoint is past it (before,
//! [`ArchiveError::NotYet`]).

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::Bytes;
use radport_journal::pack::{self, PackedRecord, Punched};
use radport_journal::Position;

use crate::{Archive, ArchiveError};

/// What of a packed body [`Archive::packed_range`] reads.
pub(crate) enum Wanted {
    /// All of it.
    All,
    /// Its first bytes, up to this many.
    Prefix(u64),
    /// These bytes, which must lie within it.
    Range(Range<u64>),
}

/// Where packs live in a local archive.
pub const PACKS_AREA: &str = "packs";

/// A read in pieces of this size at most (a body is at most a few MiB, `get` aside).
const PIECE_BYTES: u64 = 1024 * 1024;

/// The pieces of [`Archive::get_stream`] on a packed body: what a slow reader (a download)
/// holds per instance is bounded by this, not by the body.
pub(crate) const STREAM_PIECE_BYTES: u64 = 64 * 1024;

/// The key of the record at `position` in the archive's packs.
pub fn key(position: Position) -> String {
    format!(
        "{PACKS_AREA}/{}@{}",
        pack::pack_file_name(position.generation),
        position.offset
    )
}

/// The position a pack key names, if `key` is one (exactly as [`key`] writes it).
pub fn parse_key(key: &str) -> Option<Position> {
    let rest = key.strip_prefix(PACKS_AREA)?.strip_prefix('/')?;
    let (name, offset) = rest.split_once('@')?;
    let generation = pack::pack_generation(name)?;
    if offset.is_empty()
        || !offset.bytes().all(|b| b.is_ascii_digit())
        || (offset.len() > 1 && offset.starts_with('0'))
    {
        return None;
    }
    Some(Position {
        generation,
        offset: offset.parse().ok()?,
    })
}

/// Whether `key` lies in the packs' area (written only by the pack log).
pub(crate) fn in_packs_area(key: &str) -> bool {
    key == PACKS_AREA || key.starts_with("packs/")
}

impl Archive {
    /// Local directory only: where the pack log of this archive keeps its packs.
    pub fn packs_dir(&self) -> Option<PathBuf> {
        Some(self.local_root()?.join(PACKS_AREA))
    }

    fn packs_dir_for(&self, key: &str) -> Result<PathBuf, ArchiveError> {
        self.packs_dir()
            .ok_or_else(|| ArchiveError::NotFound(format!("{key} (packs are kept on local disk)")))
    }

    /// The record a pack key names, opened in a blocking thread.
    async fn open_packed(
        &self,
        key: &str,
        position: Position,
    ) -> Result<PackedRecord, ArchiveError> {
        let dir = self.packs_dir_for(key)?;
        let key = key.to_string();
        tokio::task::spawn_blocking(move || match pack::open_record(&dir, position, u64::MAX) {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(ArchiveError::NotFound(key)),
            Err(e) => Err(ArchiveError::from_journal(e)),
        })
        .await
        .map_err(|e| ArchiveError::Storage(format!("read task failed: {e}")))?
    }

    pub(crate) async fn packed_size(
        &self,
        key: &str,
        position: Position,
    ) -> Result<u64, ArchiveError> {
        Ok(self.open_packed(key, position).await?.body_len)
    }

    /// Bytes `range` of a packed body (all of it for [`Wanted::All`], its first bytes for
    /// [`Wanted::Prefix`]); a range beyond it is an error.
    pub(crate) async fn packed_range(
        &self,
        key: &str,
        position: Position,
        wanted: Wanted,
    ) -> Result<Bytes, ArchiveError> {
        let record = self.open_packed(key, position).await?;
        let range = match wanted {
            Wanted::All => 0..record.body_len,
            Wanted::Prefix(len) => 0..len.min(record.body_len),
            Wanted::Range(range) => range,
        };
        if range.start > range.end || range.end > record.body_len {
            return Err(ArchiveError::storage(format!(
                "{key}: bytes {}..{} asked of a body of {}",
                range.start, range.end, record.body_len
            )));
        }
        let key = key.to_string();
        tokio::task::spawn_blocking(move || read_body(&record, &key, range))
            .await
            .map_err(|e| ArchiveError::Storage(format!("read task failed: {e}")))?
    }

    /// A packed body as a stream of pieces of up to `piece` bytes, and its size.
    pub(crate) async fn packed_stream(
        &self,
        key: &str,
        position: Position,
        piece: u64,
    ) -> Result<
        (
            u64,
            futures::stream::BoxStream<'static, Result<Bytes, ArchiveError>>,
        ),
        ArchiveError,
    > {
        let record = std::sync::Arc::new(self.open_packed(key, position).await?);
        let size = record.body_len;
        let piece = piece.clamp(4096, PIECE_BYTES);
        let key = key.to_string();
        let stream = futures::stream::try_unfold(0u64, move |at| {
            let record = record.clone();
            let key = key.clone();
            async move {
                if at >= record.body_len {
                    return Ok(None);
                }
                let to = at.saturating_add(piece).min(record.body_len);
                let bytes = tokio::task::spawn_blocking(move || read_body(&record, &key, at..to))
                    .await
                    .map_err(|e| ArchiveError::Storage(format!("read task failed: {e}")))??;
                Ok(Some((bytes, to)))
            }
        });
        Ok((size, Box::pin(stream)))
    }

    /// Local directory only (empty elsewhere): the packed records behind the pack log's
    /// checkpoint, as objects (modified when their pack last was), past punched ones. Read
    /// one pack at a time in a blocking thread, so memory is bounded by a pack's records.
    /// For the collector: the records it may punch.
    pub fn list_packed(
        &self,
    ) -> futures::stream::BoxStream<'static, Result<crate::ListedObject, ArchiveError>> {
        use futures::StreamExt;
        let Some(dir) = self.packs_dir().filter(|d| d.is_dir()) else {
            return Box::pin(futures::stream::empty());
        };
        let packs = futures::stream::try_unfold(None, move |state| {
            let dir = dir.clone();
            async move {
                tokio::task::spawn_blocking(move || next_pack_listed(&dir, state))
                    .await
                    .map_err(|e| ArchiveError::Storage(format!("pack listing task failed: {e}")))?
            }
        });
        Box::pin(
            packs
                .map(
                    |pack: Result<Vec<crate::ListedObject>, ArchiveError>| match pack {
                        Ok(objects) => futures::stream::iter(objects.into_iter().map(Ok)).boxed(),
                        Err(e) => futures::stream::iter([Err(e)]).boxed(),
                    },
                )
                .flatten(),
        )
    }

    /// Punches a packed record out (see the module doc).
    pub(crate) async fn delete_packed(
        &self,
        key: &str,
        position: Position,
    ) -> Result<(), ArchiveError> {
        let dir = self.packs_dir_for(key)?;
        let key = key.to_string();
        tokio::task::spawn_blocking(move || match pack::punch(&dir, position, u64::MAX) {
            Ok(Punched::Punched | Punched::Absent) => Ok(()),
            Ok(Punched::Ahead) => Err(ArchiveError::NotYet(key)),
            Err(e) => Err(ArchiveError::from_journal(e)),
        })
        .await
        .map_err(|e| ArchiveError::Storage(format!("punch task failed: {e}")))?
    }
}

/// Where a listing of packs is: the checkpoint and the generations still to list.
type PackListing = (Position, std::collections::VecDeque<u64>);

/// One pack's records as listed objects, and where the listing goes on.
type ListedPack = (Vec<crate::ListedObject>, Option<PackListing>);

/// The records of the next pack behind the checkpoint of the packs in `dir`, as listed
/// objects, and the listing's state after it (`None` at first); `None` after the last.
fn next_pack_listed(
    dir: &std::path::Path,
    state: Option<PackListing>,
) -> Result<Option<ListedPack>, ArchiveError> {
    let (until, mut left) = match state {
        Some(state) => state,
        None => {
            let Some(until) = pack::read_checkpoint(dir).map_err(ArchiveError::from_journal)?
            else {
                return Ok(None);
            };
            let generations = pack::generations(dir).map_err(ArchiveError::from_journal)?;
            let behind = generations
                .into_iter()
                .filter(|g| *g <= until.generation)
                .collect();
            (until, behind)
        }
    };
    while let Some(generation) = left.pop_front() {
        let path = dir.join(pack::pack_file_name(generation));
        let modified: chrono::DateTime<chrono::Utc> = match std::fs::metadata(&path) {
            Ok(meta) => meta.modified().map_err(ArchiveError::from_io)?.into(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ArchiveError::from_io(e)),
        };
        let records = pack::records_before(dir, generation, until, u64::MAX)
            .map_err(ArchiveError::from_journal)?;
        let listed = records
            .into_iter()
            .map(|walked| crate::ListedObject {
                key: key(walked.position),
                size: walked.body_len,
                modified: modified.to_rfc3339(),
            })
            .collect();
        return Ok(Some((listed, Some((until, left)))));
    }
    Ok(None)
}

/// Reads `range` (within the body, checked by the caller) of a packed record's body.
fn read_body(record: &PackedRecord, key: &str, range: Range<u64>) -> Result<Bytes, ArchiveError> {
    let len = usize::try_from(range.end - range.start)
        .map_err(|_| ArchiveError::Storage(format!("{key}: a range too large")))?;
    let mut buffer = vec![0u8; len];
    record
        .file
        .read_exact_at(&mut buffer, record.body_offset + range.start)
        .map_err(ArchiveError::from_io)?;
    Ok(Bytes::from(buffer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use radport_journal::pack::{PackConfig, PackLog};

    #[test]
    fn pack_keys_round_trip_and_nothing_else_parses() {
        let position = Position {
            generation: 0x2a,
            offset: 4096,
        };
        assert_eq!(key(position), "packs/000000000000002a.pack@4096");
        assert_eq!(parse_key(&key(position)), Some(position));
        for bad in [
            "packs/000000000000002a.pack@",
            "packs/000000000000002a.pack@04096",
            "packs/000000000000002a.pack@+4096",
            "packs/000000000000002a.pack@4096/x",
            "packs/000000000000002a.pack@99999999999999999999999",
            "packs/2a.pack@4096",
            "packs/000000000000002a.pack",
            "instances/2026/12/04/x.dcm",
            "xpacks/000000000000002a.pack@4096",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn packed_instances_read_like_any_object_and_are_punched_once_checkpointed() {
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        let packs = archive.packs_dir().unwrap();
        std::fs::create_dir(&packs).unwrap();
        let config = PackConfig {
            pack_bytes: 8 << 20,
            max_body_bytes: 4 << 20,
            checkpoint_bytes: 1 << 20,
            ahead_bytes: 0,
            write_while_arriving: false,
        };
        let (log, _) = PackLog::open(&packs, config).unwrap();
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let appended = log
            .append(
                b"h".to_vec(),
                vec![Bytes::from(body.clone())],
                blake3::hash(&body),
            )
            .await
            .unwrap();
        let key = key(appended.position);

        assert_eq!(archive.get(&key).await.unwrap(), body);
        assert_eq!(archive.size(&key).await.unwrap(), body.len() as u64);
        assert_eq!(archive.get_range(&key, 10..20).await.unwrap(), body[10..20]);
        assert!(archive.get_range(&key, 10..3_000_001).await.is_err());
        assert_eq!(archive.get_prefix(&key, 132).await.unwrap(), body[..132]);
        let (size, stream) = archive.get_stream(&key).await.unwrap();
        assert_eq!(size, body.len() as u64);
        let streamed: Vec<Bytes> = stream.try_collect().await.unwrap();
        assert!(
            streamed
                .iter()
                .all(|piece| piece.len() as u64 <= STREAM_PIECE_BYTES),
            "in pieces no larger than a slow reader should hold"
        );
        assert_eq!(streamed.concat(), body);
        let (_, chunks) = archive.get_chunks(&key, 65536).await.unwrap();
        let chunks: Vec<Bytes> = chunks.try_collect().await.unwrap();
        assert_eq!(chunks.concat(), body);
        let checksum = crate::checksum(&body);
        assert_eq!(
            archive
                .verify(&key, body.len() as u64, &checksum)
                .await
                .unwrap(),
            crate::Verification::Intact
        );

        // Nothing is written into the packs' area but by the pack log.
        assert!(matches!(
            archive.put(&key, Bytes::from_static(b"x")).await,
            Err(ArchiveError::InvalidKey(_))
        ));
        assert!(archive.writer("packs/other").is_err());
        // A key naming no record.
        let mut elsewhere = appended.position;
        elsewhere.offset += 1;
        assert!(matches!(
            archive.get(&super::key(elsewhere)).await,
            Err(ArchiveError::NotFound(_))
        ));

        // Not deleted ahead of the pack log's checkpoint; deleted once behind it.
        assert!(matches!(
            archive.delete(&key).await,
            Err(ArchiveError::NotYet(_))
        ));
        drop(appended.durable);
        log.checkpoint(|| async { Ok::<(), String>(()) })
            .await
            .unwrap();
        let listed: Vec<crate::ListedObject> = archive.list_packed().try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].key.as_str(), listed[0].size),
            (key.as_str(), 3_000_000)
        );
        archive.delete(&key).await.unwrap();
        assert!(matches!(
            archive.get(&key).await,
            Err(ArchiveError::NotFound(_))
        ));
        let listed: Vec<crate::ListedObject> = archive.list_packed().try_collect().await.unwrap();
        assert!(listed.is_empty());
        assert_eq!(
            archive
                .verify(&key, body.len() as u64, &checksum)
                .await
                .unwrap(),
            crate::Verification::Missing
        );
        archive.delete(&key).await.unwrap();

        // Elsewhere than on local disk there are no packs.
        let memory = Archive::with_store(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "memory",
        );
        assert!(matches!(
            memory.get(&key).await,
            Err(ArchiveError::NotFound(_))
        ));
    }
}
