//! The writer thread: takes every append waiting, reserves their frames in the active segment
//! (starting the next free one when it is full, waiting for a checkpoint when none is free),
//! writes them with one `pwritev` per segment and syncs once; then answers each.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use bytes::Bytes;

use crate::frame::{
    encode_frame_head, frame_len, segment_header, FRAME_HEAD_LEN, SEGMENT_HEADER_BYTES,
    SEGMENT_HEADER_LEN,
};
use crate::{segment, BodyHash, Durable, JournalError, Phase, Segment, Shared};

/// A group is cut at this many bytes (the rest waits for the next sync).
pub(crate) const MAX_GROUP_BYTES: u64 = 64 * 1024 * 1024;

/// One record to append, and where to answer.
pub(crate) struct Append {
    pub header: Vec<u8>,
    pub body: Vec<Bytes>,
    pub body_len: u64,
    pub body_hash: BodyHash,
    pub reply: tokio::sync::oneshot::Sender<Result<Durable, JournalError>>,
}

impl Append {
    fn frame_len(&self) -> u64 {
        // Checked when the append was taken: header and body are bounded.
        frame_len(self.header.len(), self.body_len).unwrap_or(u64::MAX)
    }
}

/// Starts the writer thread.
pub(crate) fn spawn(shared: Arc<Shared>) -> std::io::Result<Sender<Append>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("journal-writer".into())
        .spawn(move || run(&shared, receiver))?;
    Ok(sender)
}

fn run(shared: &Arc<Shared>, receiver: Receiver<Append>) {
    while let Some(group) = next_group(&receiver, Append::frame_len) {
        write_group(shared, group);
    }
}

/// The next group to write: the first append to arrive (waiting for it) and every one already
/// waiting behind it, up to [`MAX_GROUP_BYTES`] of frames; `None` once every sender is gone.
/// The ring's writer and the packs' share it.
pub(crate) fn next_group<A>(receiver: &Receiver<A>, frame_len: fn(&A) -> u64) -> Option<Vec<A>> {
    let first = receiver.recv().ok()?;
    let mut bytes = frame_len(&first);
    let mut group = vec![first];
    while bytes < MAX_GROUP_BYTES {
        match receiver.try_recv() {
            Ok(append) => {
                bytes = bytes.saturating_add(frame_len(&append));
                group.push(append);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

/// A record placed in a segment, with the bytes that go before its header.
struct Placed {
    append: Append,
    head: [u8; FRAME_HEAD_LEN],
    durable: Durable,
}

/// The records of a group that go into one segment, from `offset` on.
struct Run {
    segment: usize,
    offset: u64,
    /// The segment's header, when the run starts the segment.
    header: Option<[u8; SEGMENT_HEADER_LEN]>,
    records: Vec<Placed>,
}

fn write_group(shared: &Arc<Shared>, group: Vec<Append>) {
    let mut runs: Vec<Run> = Vec::new();
    for append in group {
        let len = append.frame_len();
        let (segment, offset, generation, header) = reserve(shared, len);
        let durable = Durable {
            shared: shared.clone(),
            segment,
        };
        let head = encode_frame_head(
            generation,
            &append.header,
            append.body_len,
            &append.body_hash,
        );
        let placed = Placed {
            append,
            head,
            durable,
        };
        match runs.last_mut() {
            Some(run) if run.segment == segment && header.is_none() => run.records.push(placed),
            _ => runs.push(Run {
                segment,
                offset,
                header,
                records: vec![placed],
            }),
        }
    }
    for run in runs {
        let file = &shared.files[run.segment];
        let result = (|| {
            if let Some(header) = &run.header {
                file.write_all_at(header, 0)?;
            }
            let mut buffers: Vec<&[u8]> = Vec::new();
            for placed in &run.records {
                buffers.push(&placed.head);
                buffers.push(&placed.append.header);
                buffers.extend(placed.append.body.iter().map(|b| &b[..]));
            }
            segment::pwritev_all(file, &buffers, run.offset)?;
            file.sync_data()
        })();
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                shared
                    .records
                    .fetch_add(run.records.len() as u64, Ordering::Relaxed);
                for placed in run.records {
                    // An appender that went away drops the guard with the answer.
                    let _ = placed.append.reply.send(Ok(placed.durable));
                }
            }
            Err(e) => {
                // What follows a failed write would be unreadable behind it: seal the segment.
                tracing::error!(error = %e, segment = run.segment, "the journal could not write a group");
                seal_segment(shared, run.segment);
                let (kind, message) = (e.kind(), e.to_string());
                for placed in run.records {
                    drop(placed.durable);
                    let _ = placed.append.reply.send(Err(JournalError::Write {
                        kind,
                        message: message.clone(),
                    }));
                }
            }
        }
    }
}

/// Reserves `len` bytes for a frame: in the active segment if it has room, else in the next
/// free segment (waiting for a checkpoint to free one). Returns the segment, the frame's
/// offset, the segment's generation and, for the first frame of a segment, its header.
fn reserve(shared: &Shared, len: u64) -> (usize, u64, u64, Option<[u8; SEGMENT_HEADER_LEN]>) {
    let mut state = shared.lock();
    let mut header = None;
    loop {
        if let Some(active) = state.active {
            let segment = &mut state.segments[active];
            if segment.phase == Phase::Active
                && segment.used.saturating_add(len) <= shared.segment_bytes
            {
                let offset = segment.used;
                segment.used += len;
                segment.in_flight += 1;
                return (active, offset, segment.generation, header.take());
            }
            // Full (or sealed): the next append goes to another segment.
            if segment.phase == Phase::Active {
                segment.phase = Phase::Full;
            }
            state.active = None;
            shared.changed.notify_waiters();
        }
        if let Some(free) = state.segments.iter().position(|s| s.phase == Phase::Free) {
            let generation = state.next_generation;
            state.next_generation += 1;
            state.segments[free] = Segment {
                phase: Phase::Active,
                generation,
                used: SEGMENT_HEADER_BYTES,
                in_flight: 0,
                stale: state.segments[free].stale,
            };
            state.active = Some(free);
            header = Some(segment_header(generation, shared.segment_bytes));
            continue;
        }
        tracing::debug!("the journal waits for a checkpoint to free a segment");
        state = shared.freed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

fn seal_segment(shared: &Shared, index: usize) {
    let mut state = shared.lock();
    if state.segments[index].phase == Phase::Active {
        state.segments[index].phase = Phase::Full;
    }
    if state.active == Some(index) {
        state.active = None;
    }
    drop(state);
    shared.changed.notify_waiters();
}
