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
}

/// Parts opened ahead of the one being sent: a cold read of the next files overlaps the
/// sending of this one (an open part holds at most its first read piece in memory).
pub(crate) const OPEN_AHEAD: usize = 8;

/// The answer of `parts` in order, each opened at most [`OPEN_AHEAD`] parts before it is sent.
pub(crate) fn related(boundary: String, parts: Vec<LazyPart>) -> Body {
    let closing = close(&boundary);
    let body = stream::iter(parts)
        .map(move |part| {
            let header = part_header(&boundary, &part.content_type, part.length);
            async move { (header, part.open.await) }
        })
        .buffered(OPEN_AHEAD)
        .flat_map(|(header, content)| {
            let content = match content {
                Ok(content) => content,
                Err(e) => stream::once(async move { Err(e) }).boxed(),
            };
            stream::once(async move { Ok(header) })
                .chain(content)
                .chain(stream::once(async { Ok(part_end()) }))
        })
        .chain(stream::once(async move { Ok(closing) }));
    body.boxed()
}
