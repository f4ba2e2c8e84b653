//! `multipart/related` answers (RFC 2387) built part by part as the client reads them.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use radport_archive::ArchiveError;

/// A byte stream of an answer.
pub(crate) type Body = BoxStream<'static, Result<Bytes, ArchiveError>>;

/// A fresh boundary: no stored byte sequence is likely to contain it.
pub(crate) fn boundary() -> String {
    format!("radport-{}", uuid::Uuid::new_v4().simple())
}

/// The header of a part (after the previous part or the start).
pub(crate) fn part_header(boundary: &str, content_type: &str, length: Option<u64>) -> Bytes {
    let mut header = format!("--{boundary}\r\nContent-Type: {content_type}\r\n");
    if let Some(length) = length {
        header.push_str(&format!("Content-Length: {length}\r\n"));
    }
    header.push_str("\r\n");
    Bytes::from(header)
}

/// The line ending a part's content.
pub(crate) fn part_end() -> Bytes {
    Bytes::from_static(b"\r\n")
}

/// The close delimiter.
pub(crate) fn close(boundary: &str) -> Bytes {
    Bytes::from(format!("--{boundary}--\r\n"))
}

/// One part whose content is read only when the client gets to it.
pub(crate) struct LazyPart {
    pub content_type: String,
    pub length: Option<u64>,
    pub open: futures::future::BoxFuture<'static, Result<Body, ArchiveError>>,
    /// Bytes `open` reads before the part is sent (its first piece), held against the
    /// [`ReadAhead`] budget from then until that piece is handed to the connection; 0 for
    /// content already in memory.
    pub read_ahead: u64,
}

/// Default of the bytes that all answers together hold read ahead of their clients
/// ([`crate::DicomWeb::with_read_ahead_budget`]).
pub const DEFAULT_READ_AHEAD_BUDGET: u64 = 64 * 1024 * 1024;

/// Bytes one answer reads ahead of the part it is sending: the parts opened ahead are as
/// many as fit (with 0.5 MB CT slices, 32; objects of 1 MiB and more, 16).
pub(crate) const READ_AHEAD_PER_ANSWER: u64 = 16 * 1024 * 1024;

/// Most parts one answer opens ahead, however small.
pub(crate) const MAX_PARTS_AHEAD: usize = 64;

/// The read-ahead budget shared by all answers of a server, counted in KiB.
///
/// A cold series is read fastest with many files in flight (32 parts ahead gave 10 % more
/// than 8, `docs/performance.md`), but a part read ahead is memory held until the client
/// takes it: 512 slow clients each holding 16 MiB would be 8 GiB. So every part read ahead
/// first takes its size from this budget, and gives it back once its first piece is handed
/// to the connection. Parts of one answer take it in order, and the semaphore is fair
/// (first come, first served), so the part an answer must send next is never waiting behind
/// its own later parts: every answer makes progress as its client reads.
#[derive(Clone, Debug)]
pub(crate) struct ReadAhead {
    kib: std::sync::Arc<tokio::sync::Semaphore>,
    total_kib: u32,
}

impl ReadAhead {
    pub(crate) fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from(bytes / 1024)
            .unwrap_or(u32::MAX)
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS as u32);
        Self {
            kib: std::sync::Arc::new(tokio::sync::Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// KiB of the budget that `bytes` take (never more than the whole budget).
    fn kib_of(&self, bytes: u64) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib)
    }

    /// KiB of the budget not taken (tests).
    #[cfg(test)]
    pub(crate) fn available_kib(&self) -> usize {
        self.kib.available_permits()
    }
}

/// The answer of `parts` in order, parts opened ahead of the one being sent as
/// [`READ_AHEAD_PER_ANSWER`] and the shared `budget` allow.
pub(crate) fn related(boundary: String, parts: Vec<LazyPart>, budget: &ReadAhead) -> Body {
    let closing = close(&boundary);
    let largest = parts.iter().map(|p| p.read_ahead).max().unwrap_or(0).max(1);
    let ahead = usize::try_from(READ_AHEAD_PER_ANSWER / largest)
        .unwrap_or(MAX_PARTS_AHEAD)
        .clamp(1, MAX_PARTS_AHEAD);
    let budget = budget.clone();
    let body = stream::iter(parts)
        .map(move |part| {
            let header = part_header(&boundary, &part.content_type, part.length);
            let budget = budget.clone();
            async move {
                let permit = if part.read_ahead > 0 {
                    let kib = budget.kib_of(part.read_ahead);
                    budget.kib.clone().acquire_many_owned(kib).await.ok()
                } else {
                    None
                };
                (header, part.open.await, permit)
            }
        })
        .buffered(ahead)
        .flat_map(|(header, content, permit)| {
            let content = match content {
                Ok(content) => content,
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            };
            // The budget taken for the piece read ahead goes back once it is handed on.
            let mut permit = permit;
            let content = content.map(move |piece| {
                drop(permit.take());
                piece
            });
            stream::once(async move { Ok(header) })
                .chain(content)
                .chain(stream::once(async { Ok(part_end()) }))
        })
        .chain(stream::once(async move { Ok(closing) }));
    body.boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const MIB: u64 = 1024 * 1024;

    /// `count` parts of one MiB each, counting how many were opened.
    fn parts(count: usize, opened: &Arc<AtomicUsize>) -> Vec<LazyPart> {
        (0..count)
            .map(|n| {
                let opened = opened.clone();
                LazyPart {
                    content_type: "application/dicom".into(),
                    length: Some(MIB),
                    read_ahead: MIB,
                    open: async move {
                        opened.fetch_add(1, Ordering::SeqCst);
                        let content = Bytes::from(vec![n as u8; MIB as usize]);
                        Ok(stream::once(async move { Ok(content) }).boxed())
                    }
                    .boxed(),
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn parts_read_ahead_stay_within_the_shared_budget() {
        let budget = ReadAhead::new(3 * MIB);
        let opened = Arc::new(AtomicUsize::new(0));
        let mut body = related("b".into(), parts(20, &opened), &budget);
        // The first part's header, then its content: a client that stops reading here.
        assert!(body.next().await.unwrap().unwrap().starts_with(b"--b\r\n"));
        assert_eq!(body.next().await.unwrap().unwrap().len(), MIB as usize);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // 16 would be opened by the answer's own limit; the budget lets 3 be held (and the
        // piece already handed on gave its share back).
        let opened_now = opened.load(Ordering::SeqCst);
        assert!(opened_now <= 4, "{opened_now} parts opened ahead");
        let rest: Vec<Bytes> = body.map(|item| item.unwrap()).collect().await;
        let total: usize = rest.iter().map(Bytes::len).sum();
        assert!(total > 19 * MIB as usize);
        assert_eq!(
            budget.available_kib(),
            3 * 1024,
            "all of the budget given back"
        );
    }

    #[tokio::test]
    async fn answers_sharing_a_small_budget_all_finish() {
        let budget = ReadAhead::new(2 * MIB);
        let opened = Arc::new(AtomicUsize::new(0));
        let answers: Vec<Body> = (0..4)
            .map(|_| related("b".into(), parts(10, &opened), &budget))
            .collect();
        let read = futures::future::join_all(answers.into_iter().map(|body| async move {
            let pieces: Vec<Bytes> = body.map(|item| item.unwrap()).collect().await;
            pieces.iter().filter(|p| p.len() == MIB as usize).count()
        }));
        let counts = tokio::time::timeout(std::time::Duration::from_secs(20), read)
            .await
            .expect("every answer finishes");
        assert_eq!(counts, vec![10; 4]);
        assert_eq!(budget.available_kib(), 2 * 1024);
    }
}
