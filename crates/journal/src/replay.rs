//! Reading back the records a journal holds when it is opened: those whose effects may not
//! have been made durable before the process ended.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::frame::{
    decode_frame_head, frame_checks, frame_len, FRAME_HEAD_LEN, SEGMENT_HEADER_BYTES,
};
use crate::{BodyHash, JournalError, Position, MAX_HEADER_BYTES};

/// One record read back: the header and body its appender gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The header (the appender's own encoding).
    pub header: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

/// A segment to read: its file, size and generation, and where its first record to replay
/// starts.
pub(crate) struct ReplaySegment {
    pub file: Arc<File>,
    pub bytes: u64,
    pub generation: u64,
    pub start: u64,
    /// Records start at multiples of this (1: one right after the other).
    pub align: u64,
}

/// Where a segment's bytes are read from: its file, or (for the fuzz target) memory.
pub(crate) trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .filter(|end| *end <= self.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(&self[start..end]);
        Ok(())
    }
}

/// The records of a segment's bytes in memory (header page included), as replay reads them
/// from a file of generation `generation`: for the fuzz target (`fuzz/`).
#[doc(hidden)]
pub fn records_of_segment(bytes: &[u8], generation: u64, max_body_bytes: u64) -> Vec<Recovered> {
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Ok(Some((record, len))) = read_frame(
        bytes,
        bytes.len() as u64,
        generation,
        offset,
        max_body_bytes,
    ) {
        out.push(record);
        offset += len;
    }
    out
}

/// The records of the segments in use when the journal was opened, oldest generation first,
/// in the order they were appended. One record is in memory at a time.
pub struct Replay {
    segments: Vec<ReplaySegment>,
    max_body_bytes: u64,
    current: usize,
    offset: u64,
}

impl Replay {
    pub(crate) fn new(mut segments: Vec<ReplaySegment>, max_body_bytes: u64) -> Self {
        segments.sort_by_key(|s| s.generation);
        let offset = segments.first().map_or(SEGMENT_HEADER_BYTES, |s| s.start);
        Self {
            segments,
            max_body_bytes,
            current: 0,
            offset,
        }
    }

    /// How many segments hold records to replay.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// The next record, or `None` after the last. A frame that does not check ends its
    /// segment's records (it was being written when the process ended, and was therefore
    /// never acknowledged); only failing reads are errors.
    pub fn next_record(&mut self) -> Result<Option<Recovered>, JournalError> {
        Ok(self.next_placed()?.map(|(_, record)| record))
    }

    /// [`Replay::next_record`], with where its frame is: for [packs](crate::pack), whose
    /// records are read again there.
    pub fn next_placed(&mut self) -> Result<Option<(Position, Recovered)>, JournalError> {
        while let Some(segment) = self.segments.get(self.current) {
            let file: &File = &segment.file;
            match read_frame(
                file,
                segment.bytes,
                segment.generation,
                self.offset,
                self.max_body_bytes,
            )? {
                Some((record, len)) => {
                    let position = Position {
                        generation: segment.generation,
                        offset: self.offset,
                    };
                    // A frame that checked is bounded far below u64::MAX.
                    self.offset = (self.offset + len)
                        .checked_next_multiple_of(segment.align)
                        .unwrap_or(u64::MAX);
                    return Ok(Some((position, record)));
                }
                None => {
                    self.current += 1;
                    self.offset = self
                        .segments
                        .get(self.current)
                        .map_or(SEGMENT_HEADER_BYTES, |s| s.start);
                }
            }
        }
        Ok(None)
    }
}

/// Where a record's parts are in its segment (see [`read_span`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// Bytes of the whole frame, from its offset.
    pub frame_len: u64,
    /// Where the body starts.
    pub body_offset: u64,
    /// Bytes of the body.
    pub body_len: u64,
    /// The hash of the body, as written.
    pub body_hash: BodyHash,
}

/// Where the parts of the frame at `offset` are, if a frame of `generation` that fits in the
/// segment's `segment_bytes` starts there and its head and header check (its body is not
/// read: [`read_frame`] checks that too).
pub(crate) fn read_span<R: ReadAt + ?Sized>(
    source: &R,
    segment_bytes: u64,
    generation: u64,
    offset: u64,
    max_body_bytes: u64,
) -> Result<Option<Span>, JournalError> {
    let room = segment_bytes.saturating_sub(offset);
    if room < FRAME_HEAD_LEN as u64 {
        return Ok(None);
    }
    let mut head = [0u8; FRAME_HEAD_LEN];
    read_at(source, &mut head, offset)?;
    let Some(fields) = decode_frame_head(&head) else {
        return Ok(None);
    };
    // Every length is checked before it is used: a torn or hostile frame ends the records.
    if fields.generation != generation
        || fields.header_len as usize > MAX_HEADER_BYTES
        || fields.body_len > max_body_bytes
    {
        return Ok(None);
    }
    let Some(len) = frame_len(fields.header_len as usize, fields.body_len) else {
        return Ok(None);
    };
    if len > room {
        return Ok(None);
    }
    let mut header = vec![0u8; fields.header_len as usize];
    read_at(source, &mut header, offset + FRAME_HEAD_LEN as u64)?;
    if !frame_checks(&head, &header) {
        return Ok(None);
    }
    Ok(Some(Span {
        frame_len: len,
        body_offset: offset + FRAME_HEAD_LEN as u64 + fields.header_len as u64,
        body_len: fields.body_len,
        body_hash: fields.body_hash,
    }))
}

/// Reads the frame at `offset`: the record and the frame's length, or `None` where the
/// segment's records end.
fn read_frame<R: ReadAt + ?Sized>(
    source: &R,
    segment_bytes: u64,
    generation: u64,
    offset: u64,
    max_body_bytes: u64,
) -> Result<Option<(Recovered, u64)>, JournalError> {
    let Some(span) = read_span(source, segment_bytes, generation, offset, max_body_bytes)? else {
        return Ok(None);
    };
    let header_offset = offset + FRAME_HEAD_LEN as u64;
    // The header's length was checked by `read_span` (at most MAX_HEADER_BYTES).
    let mut header = vec![0u8; (span.body_offset - header_offset) as usize];
    read_at(source, &mut header, header_offset)?;
    // body_len <= max_body_bytes, which the journal bounds to what fits in memory.
    let mut body = vec![0u8; span.body_len as usize];
    read_at(source, &mut body, span.body_offset)?;
    if !span.body_hash.matches(&[&body]) {
        return Ok(None);
    }
    Ok(Some((Recovered { header, body }, span.frame_len)))
}

fn read_at<R: ReadAt + ?Sized>(
    source: &R,
    buf: &mut [u8],
    offset: u64,
) -> Result<(), JournalError> {
    source.read_exact_at(buf, offset).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            JournalError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a journal segment is shorter than its header says",
            ))
        } else {
            JournalError::Io(e)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame_head, segment_header};

    /// A segment file of `bytes` with a header of generation 1 and `frames` written after it.
    fn segment_with(dir: &std::path::Path, bytes: u64, frames: &[Vec<u8>]) -> ReplaySegment {
        let file = crate::segment::create_zeroed(dir, 0, bytes).unwrap();
        file.write_all_at(&segment_header(1, bytes), 0).unwrap();
        let mut offset = SEGMENT_HEADER_BYTES;
        for frame in frames {
            file.write_all_at(frame, offset).unwrap();
            offset += frame.len() as u64;
        }
        ReplaySegment {
            file: Arc::new(file),
            bytes,
            generation: 1,
            start: SEGMENT_HEADER_BYTES,
            align: 1,
        }
    }

    fn frame(generation: u64, header: &[u8], body: &[u8], declared_body: u64) -> Vec<u8> {
        let hash = BodyHash::from(blake3::hash(body));
        let mut out = encode_frame_head(generation, header, declared_body, &hash).to_vec();
        out.extend_from_slice(header);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn declared_lengths_are_checked_before_anything_is_read_or_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let good = frame(1, b"h", b"body", 4);
        // Frames that check but declare what cannot be: each ends the records after `good`.
        let hostile = [
            frame(1, b"h", b"", u64::MAX),
            frame(1, b"h", b"", 1 << 40),
            frame(1, b"h", b"", 70_000), // beyond max_body_bytes
            frame(1, b"h", b"", 63_000), // beyond the segment
            frame(2, b"h", b"body", 4),  // another generation
            frame(1, b"h", b"bodY", 4),  // a body that does not hash to its hash
        ];
        for (i, bad) in hostile.iter().enumerate() {
            let mut bad = bad.clone();
            if i == 5 {
                // Same head as a good frame of body "body", with other body bytes.
                let good_head = frame(1, b"h", b"body", 4);
                bad[..FRAME_HEAD_LEN].copy_from_slice(&good_head[..FRAME_HEAD_LEN]);
            }
            let segment = segment_with(dir.path(), 64 * 1024, &[good.clone(), bad, good.clone()]);
            let mut replay = Replay::new(vec![segment], 65_536);
            let first = replay.next_record().unwrap().expect("the good frame");
            assert_eq!(first.body, b"body");
            assert_eq!(replay.next_record().unwrap(), None, "hostile frame {i}");
        }
    }

    /// The fuzz target's seeds, written by an encoder of the format in Python (blake3 from
    /// PyPI): a second implementation of `frame`'s layout agrees with this one.
    #[test]
    fn frames_written_from_the_documented_format_are_read() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/seeds/journal_records");
        let read = |name: &str| {
            let bytes = std::fs::read(seeds.join(name)).unwrap();
            // Selector, generation, then the frames after the header page.
            let mut segment = vec![0u8; SEGMENT_HEADER_BYTES as usize];
            segment.extend_from_slice(&bytes[2..]);
            records_of_segment(&segment, bytes[1].into(), 64 * 1024)
        };
        let records = read("segment-three-frames");
        assert_eq!(records.len(), 3);
        assert!(records[0].header.starts_with(b"RI1"));
        assert_eq!(records[2].body.len(), 610);
        assert_eq!(
            read("segment-torn").len(),
            2,
            "the torn last frame ends the records"
        );
        // XXH3-128 frames (xxhash from PyPI) beside a BLAKE3 one, then an XXH3 frame whose
        // body no longer hashes to its hash.
        let mixed = read("segment-xxh3-frames");
        let headers: Vec<&[u8]> = mixed.iter().map(|r| &r.header[..]).collect();
        assert_eq!(headers, [&b"RI1-xxh3-a"[..], b"RI1-blake3", b"RI1-xxh3-b"]);
        assert_eq!(mixed[0].body.len(), 768);
        assert_eq!(mixed[2].body, vec![b'x'; 1000]);
    }

    #[test]
    fn segments_are_replayed_oldest_generation_first() {
        let dir = tempfile::tempdir().unwrap();
        let older = dir.path().join("a");
        let newer = dir.path().join("b");
        std::fs::create_dir(&older).unwrap();
        std::fs::create_dir(&newer).unwrap();
        let mut a = segment_with(&older, 64 * 1024, &[frame(5, b"old", b"1", 1)]);
        a.generation = 5;
        a.file
            .write_all_at(&segment_header(5, 64 * 1024), 0)
            .unwrap();
        let mut b = segment_with(&newer, 64 * 1024, &[frame(9, b"new", b"2", 1)]);
        b.generation = 9;
        let mut replay = Replay::new(vec![b, a], 1024);
        assert_eq!(replay.segments(), 2);
        assert_eq!(replay.next_record().unwrap().unwrap().header, b"old");
        assert_eq!(replay.next_record().unwrap().unwrap().header, b"new");
        assert_eq!(replay.next_record().unwrap(), None);
    }
}
