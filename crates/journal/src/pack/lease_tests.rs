//! Records written while they arrive ([`super::lease`]): lent room, cancelled leases and
//! what they leave behind.

use std::path::Path;

use super::*;
use crate::frame::encode_frame_head;

/// Packs written while records arrive, bodies of up to 2 MiB (the ingest's geometry).
const LENT: PackConfig = PackConfig {
    pack_bytes: 64 << 20,
    max_body_bytes: 2 << 20,
    checkpoint_bytes: 64 << 20,
    ahead_bytes: 0,
    write_while_arriving: true,
};

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_add((i / 7) as u8).wrapping_mul(31))
        .collect()
}

/// A record made now with `header`, fed `body` in 64 KiB pieces.
fn fed(log: &PackLog, header: &[u8], body: &[u8]) -> PackRecord {
    let mut record = log.record(header).unwrap();
    for piece in body.chunks(64 << 10) {
        record.extend(piece).unwrap();
    }
    record
}

async fn append_fed(log: &PackLog, record: PackRecord, body: &[u8]) -> Position {
    log.append_record(record, blake3::hash(body))
        .await
        .unwrap()
        .position
}

fn body_at(dir: &Path, position: Position) -> Vec<u8> {
    let record = open_record(dir, position, LENT.max_body_bytes)
        .unwrap()
        .expect("a record there");
    let mut out = vec![0u8; record.body_len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&record.file, &mut out, record.body_offset).unwrap();
    out
}

fn replayed_headers(dir: &Path) -> Vec<Vec<u8>> {
    let (_log, mut replay) = PackLog::open(dir, LENT).unwrap();
    let mut out = Vec::new();
    while let Some((_, record)) = replay.next_placed().unwrap() {
        out.push(record.header);
    }
    out
}

fn pack_bytes(dir: &Path, generation: u64) -> Vec<u8> {
    std::fs::read(dir.join(pack_file_name(generation))).unwrap()
}

/// The length a record of `header_len` and `body_len` takes in an aligned pack.
fn record_len(header_len: usize, body_len: usize) -> u64 {
    frame_len(header_len, body_len as u64)
        .unwrap()
        .next_multiple_of(RECORD_ALIGN)
}

/// Appends a record `two` after `one` (the record `one`, its body `first`) and checks that it
/// follows right where `one` ends — the room `one`'s lease did not use went back — and that
/// both bodies read back whole.
async fn append_two_after(log: &PackLog, dir: &Path, one: Position, first: &[u8]) {
    let second = bytes(2, 300_000);
    let record = fed(log, b"two", &second);
    let two = append_fed(log, record, &second).await;
    assert_eq!(two.generation, one.generation);
    assert_eq!(two.offset, one.offset + record_len(3, first.len()));
    assert_eq!(body_at(dir, one), first);
    assert_eq!(body_at(dir, two), second);
}

#[tokio::test]
async fn a_record_made_alone_is_written_while_it_arrives_and_replayed_there() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), LENT).unwrap();
    let first = bytes(1, 600_000);
    let record = fed(&log, b"one", &first);
    let written = log.stats().written_while_arriving;
    assert!(
        written >= 4 * (128 << 10) - 4096,
        "{written} bytes written while it arrived"
    );
    let one = append_fed(&log, record, &first).await;
    append_two_after(&log, dir.path(), one, &first).await;
    assert!(log.stats().written_while_arriving > written);
    drop(log);
    assert_eq!(
        replayed_headers(dir.path()),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
}

#[tokio::test]
async fn a_lent_record_whose_last_writes_failed_is_written_again_whole_in_its_room() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), LENT).unwrap();
    let first = bytes(3, 600_000);
    let record = fed(&log, b"one", &first);
    assert!(log.stats().written_while_arriving > 0);
    // Its first block (the frame's head) and its last piece are not written by the lease:
    // only writing it again whole makes it readable.
    log.shared.fail_next_ends.store(true, Ordering::Relaxed);
    let one = append_fed(&log, record, &first).await;
    assert!(
        !log.shared.fail_next_ends.load(Ordering::Relaxed),
        "the record was appended through its lease"
    );
    append_two_after(&log, dir.path(), one, &first).await;
    drop(log);
    assert_eq!(
        replayed_headers(dir.path()),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
}

#[tokio::test]
async fn a_dropped_lent_record_leaves_zeros_and_no_frame_it_held_is_ever_read() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), LENT).unwrap();
    // A first record, to know the pack's generation.
    let first = bytes(1, 10_000);
    let record = fed(&log, b"first", &first);
    let generation = append_fed(&log, record, &first).await.generation;

    // A real frame of this pack, hidden in a sender's body at every block of its record.
    let hidden_body = b"forged instance".to_vec();
    let hidden_header = b"route: another project".to_vec();
    let mut frame = encode_frame_head(
        generation,
        &hidden_header,
        hidden_body.len() as u64,
        &blake3::hash(&hidden_body).into(),
    )
    .to_vec();
    frame.extend_from_slice(&hidden_header);
    frame.extend_from_slice(&hidden_body);
    let header = b"hostile";
    let start = FRAME_HEAD_LEN + header.len();
    let mut hostile = vec![0x5Au8; 700_000];
    let mut block = RECORD_ALIGN as usize;
    while block + frame.len() < start + hostile.len() {
        hostile[block - start..block - start + frame.len()].copy_from_slice(&frame);
        block += RECORD_ALIGN as usize;
    }
    let record = fed(&log, header, &hostile);
    assert!(
        log.stats().written_while_arriving > 0,
        "its blocks went out"
    );
    let file_len = std::fs::metadata(dir.path().join(pack_file_name(generation)))
        .unwrap()
        .len();
    drop(record);

    // Its blocks are zeros now, and the room went back: the next record goes there.
    let after = bytes(3, 5_000);
    let record = fed(&log, b"after", &after);
    let next = append_fed(&log, record, &after).await;
    assert_eq!(
        next.offset,
        SEGMENT_HEADER_BYTES + record_len(5, first.len())
    );
    let pack = pack_bytes(dir.path(), generation);
    assert!(pack.len() as u64 >= file_len);
    let tail_from = (next.offset + record_len(5, after.len())) as usize;
    assert!(
        pack[tail_from..].iter().all(|b| *b == 0),
        "the dropped record's blocks were not all zeroed"
    );
    assert!(
        !pack.windows(frame.len()).any(|w| w == frame),
        "a hidden frame is still in the pack"
    );
    drop(log);
    assert_eq!(
        replayed_headers(dir.path()),
        vec![b"first".to_vec(), b"after".to_vec()]
    );
}

#[tokio::test]
async fn another_record_cancels_a_lease_and_both_are_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), LENT).unwrap();
    let lent_body = bytes(1, 500_000);
    let mut lent = log.record(b"lent").unwrap();
    lent.extend(&lent_body[..300_000]).unwrap();
    assert!(log.stats().written_while_arriving > 0);

    // Another record, made while the first is on its way, is appended first: it takes the
    // lease's place.
    let other_body = bytes(2, 200_000);
    let other = fed(&log, b"other", &other_body);
    let other_at = append_fed(&log, other, &other_body).await;
    assert_eq!(other_at.offset, SEGMENT_HEADER_BYTES);

    // The first goes on arriving (no longer written as it does) and is appended after it.
    let written = log.stats().written_while_arriving;
    lent.extend(&lent_body[300_000..]).unwrap();
    assert_eq!(log.stats().written_while_arriving, written);
    let lent_at = append_fed(&log, lent, &lent_body).await;
    assert_eq!(
        lent_at.offset,
        other_at.offset + record_len(5, other_body.len())
    );
    assert_eq!(body_at(dir.path(), other_at), other_body);
    assert_eq!(body_at(dir.path(), lent_at), lent_body);
    drop(log);
    assert_eq!(
        replayed_headers(dir.path()),
        vec![b"other".to_vec(), b"lent".to_vec()]
    );
}

#[tokio::test]
async fn a_checkpoint_cancels_a_lease_and_never_passes_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), LENT).unwrap();
    let before = bytes(1, 50_000);
    let record = fed(&log, b"before", &before);
    let before_at = append_fed(&log, record, &before).await;

    let lent_body = bytes(2, 400_000);
    let mut lent = log.record(b"lent").unwrap();
    lent.extend(&lent_body[..200_000]).unwrap();
    // The checkpoint takes the lease back: it ends after the first record, not the room.
    let checkpoint = log
        .checkpoint(|| async { Ok::<(), std::io::Error>(()) })
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(
        checkpoint.offset,
        before_at.offset + record_len(6, before.len())
    );
    lent.extend(&lent_body[200_000..]).unwrap();
    let lent_at = append_fed(&log, lent, &lent_body).await;
    assert_eq!(lent_at.offset, checkpoint.offset);
    assert_eq!(body_at(dir.path(), lent_at), lent_body);
    drop(log);
    // After a crash it is replayed: it lies after the checkpoint.
    assert_eq!(replayed_headers(dir.path()), vec![b"lent".to_vec()]);
}

#[tokio::test]
async fn a_record_that_outgrows_its_lease_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), LENT).unwrap();
    let large = bytes(4, (1 << 20) + 300_000);
    let record = fed(&log, b"large", &large);
    let at = append_fed(&log, record, &large).await;
    assert_eq!(at.offset, SEGMENT_HEADER_BYTES);
    assert_eq!(body_at(dir.path(), at), large);
    let next_body = bytes(5, 1000);
    let record = fed(&log, b"next", &next_body);
    let next = append_fed(&log, record, &next_body).await;
    assert_eq!(next.offset, at.offset + record_len(5, large.len()));
    drop(log);
    assert_eq!(
        replayed_headers(dir.path()),
        vec![b"large".to_vec(), b"next".to_vec()]
    );
}
