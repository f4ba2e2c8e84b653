//! Writes made durable later, all at once: for a local archive behind the ingest journal
//! (`radport-journal`), which holds each instance durably before it is written here.
//!
//! [`Archive::put_unsynced`] writes an object straight under its key — no staging name, no
//! `fsync`, no directory `fsync` — and [`Archive::sync_filesystem`] makes every such write
//! durable with one `syncfs`. Nothing references the object until the catalog commits it,
//! after the write is complete; a write cut off by a crash is redone from the journal.

use std::io::Write as _;
use std::path::PathBuf;

use bytes::Bytes;

use crate::{Archive, ArchiveError};

impl Archive {
    /// Whether the archive is a local directory (the journal applies only there).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    fn local_path(&self, key: &str) -> Result<PathBuf, ArchiveError> {
        let local = self.local.as_ref().ok_or_else(|| {
            ArchiveError::Storage("unsynced writes need a local archive".to_string())
        })?;
        local
            .path_to_filesystem(&Self::path(key)?)
            .map_err(ArchiveError::classify)
    }

    /// Local directory only: writes `chunks` as the object `key` (replacing what is there),
    /// without making it durable; see the module doc. The parent directories are made as
    /// needed, also without syncing.
    pub async fn put_unsynced(&self, key: &str, chunks: Vec<Bytes>) -> Result<(), ArchiveError> {
        let path = self.local_path(key)?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let open = || {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
            };
            let mut file = match open() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    open()?
                }
                other => other?,
            };
            let mut slices: Vec<std::io::IoSlice<'_>> =
                chunks.iter().map(|c| std::io::IoSlice::new(c)).collect();
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                let n = file.write_vectored(slices)?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                std::io::IoSlice::advance_slices(&mut slices, n);
            }
            Ok(())
        })
        .await
        .map_err(|e| ArchiveError::Storage(format!("unsynced write: {e}")))?
        .map_err(ArchiveError::from_io)
    }

    /// Makes every write to a local archive durable, those of [`Archive::put_unsynced`] and
    /// the directories they made included: one `syncfs` of its file system. Elsewhere (S3,
    /// memory) a no-op: every write there was durable when it returned.
    pub async fn sync_filesystem(&self) -> Result<(), ArchiveError> {
        let Some(root) = self.local_root() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::os::fd::AsRawFd;
            let dir = std::fs::File::open(&root)?;
            // SAFETY: a system call on a descriptor that is open for its duration.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
        .await
        .map_err(|e| ArchiveError::Storage(format!("syncfs: {e}")))?
        .map_err(ArchiveError::from_io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unsynced_writes_replace_and_read_back_and_need_a_local_archive() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::local(dir.path()).unwrap();
        let key = "instances/2026/12/03/x.dcm";
        archive
            .put_unsynced(
                key,
                vec![Bytes::from_static(b"abc"), Bytes::from_static(b"def")],
            )
            .await
            .unwrap();
        assert_eq!(
            archive.get(key).await.unwrap(),
            Bytes::from_static(b"abcdef")
        );
        // A redo writes the same key again: replaced, not appended.
        archive
            .put_unsynced(key, vec![Bytes::from_static(b"xy")])
            .await
            .unwrap();
        assert_eq!(archive.get(key).await.unwrap(), Bytes::from_static(b"xy"));
        archive.sync_filesystem().await.unwrap();

        let memory = Archive::with_store(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            "memory",
        );
        assert!(!memory.is_local());
        assert!(memory.put_unsynced(key, vec![]).await.is_err());
        memory.sync_filesystem().await.unwrap();
        assert!(matches!(
            archive.put_unsynced("../escape", vec![]).await,
            Err(ArchiveError::InvalidKey(_))
        ));
    }
}
