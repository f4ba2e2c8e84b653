use std::time::Duration;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::JournalError;

const SMALL: PackConfig = PackConfig {
    pack_bytes: 256 * 1024,
    max_body_bytes: 64 * 1024,
    checkpoint_bytes: 100 * 1024,
    ahead_bytes: 0,
    write_while_arriving: false,
};

fn body(seed: u8, len: usize) -> Vec<Bytes> {
    let bytes: Vec<u8> = (0..len).map(|i| seed.wrapping_add(i as u8)).collect();
    // Two chunks, as they arrive from a peer.
    let (a, b) = bytes.split_at(len / 3);
    vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]
}

async fn append(log: &PackLog, seed: u8, len: usize) -> Appended {
    let chunks = body(seed, len);
    let mut hasher = blake3::Hasher::new();
    chunks.iter().for_each(|c| {
        hasher.update(c);
    });
    log.append(vec![seed; 3], chunks, hasher.finalize())
        .await
        .unwrap()
}

fn read_body(dir: &Path, position: Position) -> Option<Vec<u8>> {
    let record = open_record(dir, position, SMALL.max_body_bytes).unwrap()?;
    let mut out = vec![0u8; record.body_len as usize];
    record
        .file
        .read_exact_at(&mut out, record.body_offset)
        .unwrap();
    Some(out)
}

fn replayed(replay: &mut Replay) -> Vec<(Position, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((position, record)) = replay.next_placed().unwrap() {
        out.push((position, record.header));
    }
    out
}

#[tokio::test]
async fn records_stay_where_they_were_appended_across_packs_and_are_replayed_there() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    assert!(replayed(&mut replay).is_empty());
    let mut positions = Vec::new();
    for seed in 0..12u8 {
        let appended = append(&log, seed, 50_000).await;
        positions.push(appended.position);
    }
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "in order");
    let packs: std::collections::BTreeSet<u64> = positions.iter().map(|p| p.generation).collect();
    assert!(packs.len() >= 3, "12 × 50 kB in packs of 256 kB: {packs:?}");
    assert_eq!(log.stats().packs, packs.len() as u64);
    for (seed, position) in positions.iter().enumerate() {
        let expected: Vec<u8> = body(seed as u8, 50_000).concat();
        assert_eq!(read_body(dir.path(), *position).unwrap(), expected);
    }
    // Nowhere else does a record start.
    let mut off_by_one = positions[3];
    off_by_one.offset += 1;
    assert!(read_body(dir.path(), off_by_one).is_none());
    assert!(read_body(
        dir.path(),
        Position {
            generation: 999,
            offset: 4096
        }
    )
    .is_none());

    // Without a checkpoint, every record is replayed, where it is.
    drop(log);
    let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    let again = replayed(&mut replay);
    assert_eq!(again.iter().map(|(p, _)| *p).collect::<Vec<_>>(), positions);
    assert_eq!(again[5].1, vec![5u8; 3]);
    // A checkpoint with nothing appended since the opening covers what was replayed.
    let covered = log
        .checkpoint(|| async { Ok::<(), String>(()) })
        .await
        .unwrap()
        .expect("a checkpoint past the replayed records");
    assert!(covered > *positions.last().unwrap());
    drop(log);
    let (_, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    assert!(replayed(&mut replay).is_empty());
}

#[tokio::test]
async fn a_checkpoint_waits_for_every_record_before_it_and_replay_starts_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let first = append(&log, 1, 1000).await;
    let second = append(&log, 2, 1000).await;
    drop(first.durable);
    // The second record is not applied yet: the checkpoint waits for it.
    let made = Arc::new(AtomicU64::new(0));
    let checkpoint = {
        let log = log.clone();
        let made = made.clone();
        tokio::spawn(async move {
            log.checkpoint(|| async move {
                made.fetch_add(1, Ordering::SeqCst);
                Ok::<(), String>(())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        made.load(Ordering::SeqCst),
        0,
        "waiting for the second record"
    );
    // A record appended meanwhile is not waited for, and stays ahead.
    let third = append(&log, 3, 1000).await;
    drop(second.durable);
    let position = checkpoint.await.unwrap().unwrap().unwrap();
    assert_eq!(made.load(Ordering::SeqCst), 1);
    assert_eq!(position, third.position, "just after the second record");
    assert_eq!(read_checkpoint(dir.path()).unwrap(), Some(position));
    // Nothing new since: no checkpoint (the third record's epoch is the next one's).
    drop(third.durable);
    let next = log
        .checkpoint(|| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert!(
        next.is_some(),
        "the third record was appended after the first checkpoint"
    );
    assert_eq!(
        log.checkpoint(|| async { Ok::<(), String>(()) })
            .await
            .unwrap(),
        None
    );

    // A failing make_durable moves nothing.
    let fourth = append(&log, 4, 1000).await;
    drop(fourth.durable);
    let failed = log.checkpoint(|| async { Err("catalog down") }).await;
    assert!(matches!(failed, Err(JournalError::MakeDurable(_))));
    drop(log);
    let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    let again = replayed(&mut replay);
    assert_eq!(again.len(), 1, "only the fourth record: {again:?}");
    assert_eq!(again[0].0, fourth.position);
    // Appends after a reopen go to a new pack, after the replayed ones.
    let fifth = append(&log, 5, 1000).await;
    assert!(fifth.position.generation > fourth.position.generation);
}

#[tokio::test]
async fn checkpoint_wanted_returns_after_a_checkpoints_worth() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let wanted = {
        let log = log.clone();
        tokio::spawn(async move { log.checkpoint_wanted().await })
    };
    append(&log, 1, 40_000).await;
    append(&log, 2, 40_000).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!wanted.is_finished(), "80 kB of 100");
    append(&log, 3, 40_000).await;
    tokio::time::timeout(Duration::from_secs(5), wanted)
        .await
        .expect("wanted after 120 kB")
        .unwrap();
}

#[tokio::test]
async fn only_records_behind_the_checkpoint_are_punched_and_then_read_as_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let first = append(&log, 1, 60_000).await;
    let max = SMALL.max_body_bytes;
    assert_eq!(
        punch(dir.path(), first.position, max).unwrap(),
        Punched::Ahead
    );
    drop(first.durable);
    log.checkpoint(|| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    let second = append(&log, 2, 60_000).await;
    assert_eq!(
        punch(dir.path(), second.position, max).unwrap(),
        Punched::Ahead
    );
    assert!(read_body(dir.path(), second.position).is_some());

    let pack = dir.path().join(pack_file_name(first.position.generation));
    let blocks = |path: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks()
    };
    let (size, before) = (std::fs::metadata(&pack).unwrap().len(), blocks(&pack));
    assert_eq!(
        punch(dir.path(), first.position, max).unwrap(),
        Punched::Punched
    );
    assert!(read_body(dir.path(), first.position).is_none());
    assert_eq!(
        punch(dir.path(), first.position, max).unwrap(),
        Punched::Absent
    );
    assert_eq!(std::fs::metadata(&pack).unwrap().len(), size, "size kept");
    assert!(blocks(&pack) + 100 <= before, "≥ 50 kB freed");
    // Nothing of the frame is left (its header and body were distinctive bytes).
    let mut frame = vec![0u8; 60_000];
    std::fs::File::open(&pack)
        .unwrap()
        .read_exact_at(&mut frame, first.position.offset)
        .unwrap();
    assert!(frame.iter().all(|b| *b == 0));
    // The record after it is intact.
    assert_eq!(
        read_body(dir.path(), second.position).unwrap(),
        body(2, 60_000).concat()
    );
}

#[tokio::test]
async fn a_walk_finds_every_record_before_the_checkpoint_past_punched_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let mut positions = Vec::new();
    for seed in 0..6u8 {
        // Sizes that leave frames off block boundaries.
        positions.push(
            append(&log, seed, 10_000 + 777 * seed as usize)
                .await
                .position,
        );
    }
    log.checkpoint(|| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    let after = append(&log, 9, 1000).await;
    let until = log.checkpointed();
    let generation = positions[0].generation;
    let walk = |until| {
        records_before(dir.path(), generation, until, SMALL.max_body_bytes)
            .unwrap()
            .iter()
            .map(|w| w.position)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        walk(until),
        positions,
        "the record after the checkpoint is not walked"
    );
    for punched in [1, 2, 4] {
        let max = SMALL.max_body_bytes;
        assert_eq!(
            punch(dir.path(), positions[punched], max).unwrap(),
            Punched::Punched
        );
    }
    assert_eq!(
        walk(until),
        vec![positions[0], positions[3], positions[5]],
        "past the punched ones"
    );
    assert_eq!(generations(dir.path()).unwrap(), vec![generation]);
    let everything = Position {
        generation,
        offset: u64::MAX,
    };
    assert_eq!(walk(everything).last(), Some(&after.position));
}

#[tokio::test]
async fn a_torn_tail_ends_replay_and_an_empty_pack_is_removed_but_a_bad_checkpoint_stops() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let kept = append(&log, 1, 1000).await;
    let torn = append(&log, 2, 1000).await;
    drop((kept, torn.durable));
    drop(log);
    // The second record's body half written: its hash no longer matches.
    let pack = dir.path().join(pack_file_name(torn.position.generation));
    let file = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    file.write_all_at(&[0u8; 10], torn.position.offset + 500)
        .unwrap();
    // A pack made but cut off before its header was written.
    std::fs::write(dir.path().join(pack_file_name(77)), b"").unwrap();

    let (log, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    assert_eq!(
        replayed(&mut replay).len(),
        1,
        "the torn record is not replayed"
    );
    assert!(!dir.path().join(pack_file_name(77)).exists());
    let next = append(&log, 3, 1000).await;
    assert_eq!(next.position.generation, 78, "after every pack seen");
    drop((next, log));

    std::fs::write(
        dir.path().join(CHECKPOINT_FILE),
        b"RPJCKP01 and then garbage",
    )
    .unwrap();
    assert!(matches!(
        PackLog::open(dir.path(), SMALL),
        Err(JournalError::Config(_))
    ));
}

#[test]
fn pack_names_round_trip_and_nothing_else_is_one() {
    assert_eq!(pack_generation(&pack_file_name(0x2a)), Some(0x2a));
    assert_eq!(pack_generation(&pack_file_name(u64::MAX)), Some(u64::MAX));
    for bad in [
        "2a.pack",
        "000000000000002A.pack",
        "000000000000002a.pack.new",
        "+00000000000002a.pack",
        "checkpoint",
    ] {
        assert_eq!(pack_generation(bad), None, "{bad}");
    }
    assert!(PackLog::open(Path::new("/nonexistent"), PackConfig::default()).is_err());
    assert!(PackConfig {
        pack_bytes: 1 << 20,
        max_body_bytes: 4 << 20,
        checkpoint_bytes: 1,
        ahead_bytes: 0,
        write_while_arriving: false,
    }
    .check()
    .is_err());
}

/// Records start at multiples of the alignment (direct I/O), zeros between; a pack written
/// before records were aligned (frames one right after the other, header "RPJSEG01") is
/// still replayed record by record and read where its records are.
#[tokio::test]
async fn records_are_aligned_and_a_pack_of_unaligned_records_is_still_read() {
    use crate::frame::{encode_frame_head, segment_header, RECORD_ALIGN};
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let mut positions = Vec::new();
    for (seed, len) in [(1u8, 1000usize), (2, 5000), (3, 4096)] {
        let appended = append(&log, seed, len).await;
        assert_eq!(appended.position.offset % RECORD_ALIGN, 0);
        positions.push(appended.position);
        drop(appended.durable);
    }
    assert_eq!(
        positions[1].offset - positions[0].offset,
        RECORD_ALIGN,
        "a 1000-byte record takes one aligned block"
    );
    for (position, seed, len) in [(positions[0], 1u8, 1000usize), (positions[2], 3, 4096)] {
        let expected: Vec<u8> = body(seed, len).concat();
        assert_eq!(read_body(dir.path(), position), Some(expected));
    }
    let (log, mut replay) = {
        drop(log);
        PackLog::open(dir.path(), SMALL).unwrap()
    };
    let again: Vec<Position> = replayed(&mut replay).into_iter().map(|(p, _)| p).collect();
    assert_eq!(again, positions);
    // Punched, a record frees its whole aligned range: data resumes at the next record.
    log.checkpoint(|| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert_eq!(
        punch(dir.path(), positions[0], SMALL.max_body_bytes).unwrap(),
        Punched::Punched
    );
    let pack = File::open(dir.path().join(pack_file_name(positions[0].generation))).unwrap();
    // SAFETY: a system call on a descriptor open for its duration.
    let data = unsafe {
        libc::lseek(
            std::os::unix::io::AsRawFd::as_raw_fd(&pack),
            positions[0].offset as libc::off_t,
            libc::SEEK_DATA,
        )
    };
    assert_eq!(data as u64, positions[1].offset);
    drop(log);

    // An unaligned pack of generation 9, as the first packs were written.
    let old = tempfile::tempdir().unwrap();
    let mut bytes = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    bytes[..SEGMENT_HEADER_LEN].copy_from_slice(&segment_header(9, SMALL.pack_bytes));
    let mut old_positions = Vec::new();
    for seed in [4u8, 5, 6] {
        let body: Vec<u8> = body(seed, 777).concat();
        let header = vec![seed; 3];
        old_positions.push(Position {
            generation: 9,
            offset: bytes.len() as u64,
        });
        bytes.extend_from_slice(&encode_frame_head(
            9,
            &header,
            body.len() as u64,
            &BodyHash::from(blake3::hash(&body)),
        ));
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&body);
    }
    std::fs::write(old.path().join(pack_file_name(9)), &bytes).unwrap();
    let (log, mut replay) = PackLog::open(old.path(), SMALL).unwrap();
    let old_records = replayed(&mut replay);
    assert_eq!(
        old_records.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        old_positions
    );
    assert_eq!(old_records[2].1, vec![6u8; 3]);
    assert_eq!(
        read_body(old.path(), old_positions[1]),
        Some(body(5, 777).concat())
    );
    // New records go into a new, aligned pack.
    let next = append(&log, 7, 100).await;
    assert_eq!(next.position.generation, 10);
    assert_eq!(next.position.offset % RECORD_ALIGN, 0);
}

/// On a multi-threaded runtime an appender that finds no one writing writes its record
/// itself (no hand-off), and appenders that arrive meanwhile are all written, grouped, by
/// whoever leads next; every record is where its appender was told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_appender_writes_its_record_itself_and_concurrent_ones_are_all_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = PackConfig {
        pack_bytes: 1 << 20,
        ..SMALL
    };
    let (log, _) = PackLog::open(dir.path(), config).unwrap();
    let append = |log: PackLog, seed: u8| async move {
        let chunks = body(seed, 5000);
        let mut hasher = blake3::Hasher::new();
        chunks.iter().for_each(|c| {
            hasher.update(c);
        });
        // The leader writes within this call's first poll, on this thread.
        let here = std::thread::current().id();
        let appended = log
            .append(vec![seed; 3], chunks, hasher.finalize())
            .await
            .unwrap();
        let written_by = *log.shared.last_writer.lock().unwrap();
        (seed, appended.position, written_by == Some(here))
    };
    for seed in 0..5u8 {
        let (_, position, itself) = append(log.clone(), seed).await;
        assert!(itself, "a lone append was handed to another thread");
        assert_eq!(
            read_body(dir.path(), position),
            Some(body(seed, 5000).concat())
        );
    }
    let syncs_before = log.stats().syncs;
    let tasks: Vec<_> = (10..74u8)
        .map(|seed| tokio::spawn(append(log.clone(), seed)))
        .collect();
    for task in tasks {
        let (seed, position, _) = task.await.unwrap();
        assert_eq!(
            read_body(dir.path(), position),
            Some(body(seed, 5000).concat())
        );
    }
    let stats = log.stats();
    assert_eq!(stats.records, 5 + 64);
    assert!(stats.syncs - syncs_before <= 64, "{stats:?}");
    // Written, grouped, across packs, and replayed from a fresh open.
    drop(log);
    let (_, mut replay) = PackLog::open(dir.path(), config).unwrap();
    assert_eq!(replayed(&mut replay).len(), 5 + 64);
}

/// Records appended with an XXH3-128 body hash are written in `RJPX` frames, read where they
/// are and replayed, beside BLAKE3 ones; one whose body was damaged is not replayed.
#[tokio::test]
async fn records_with_xxh3_body_hashes_are_read_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let chunks = body(7, 3000);
    let xxh3 = log
        .append(vec![1; 3], chunks.clone(), BodyHash::xxh3_of(&chunks))
        .await
        .unwrap();
    let blake = append(&log, 8, 2000).await;
    let damaged_chunks = body(9, 1000);
    let damaged = log
        .append(
            vec![3; 3],
            damaged_chunks.clone(),
            BodyHash::xxh3_of(&damaged_chunks),
        )
        .await
        .unwrap();
    assert_eq!(read_body(dir.path(), xxh3.position), Some(chunks.concat()));
    assert_eq!(
        read_body(dir.path(), blake.position),
        Some(body(8, 2000).concat())
    );
    let record = open_record(dir.path(), xxh3.position, SMALL.max_body_bytes)
        .unwrap()
        .unwrap();
    assert_eq!(record.body_hash, BodyHash::xxh3_of(&chunks));
    // A byte of the last record's body changed on disk: replay ends before it.
    let damaged_record = open_record(dir.path(), damaged.position, SMALL.max_body_bytes)
        .unwrap()
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(pack_file_name(damaged.position.generation)))
        .unwrap();
    file.write_all_at(b"!", damaged_record.body_offset + 10)
        .unwrap();
    drop((xxh3, blake, damaged, log));
    let (_, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    let replayed = replayed(&mut replay);
    let headers: Vec<Vec<u8>> = replayed.into_iter().map(|(_, header)| header).collect();
    assert_eq!(headers, [vec![1; 3], vec![8; 3]]);
}

/// A record laid out piece by piece as its body arrives is the record `append` writes: read
/// back and replayed the same, beside appended ones; a body past the log's largest is refused
/// piece by piece, leaving the record as it was.
#[tokio::test]
async fn a_record_laid_out_as_it_arrives_is_written_and_replayed_as_an_appended_one() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let mut positions = Vec::new();
    for seed in 0..6u8 {
        if seed % 2 == 0 {
            positions.push(append(&log, seed, 40_000 + seed as usize).await.position);
            continue;
        }
        let expected: Vec<u8> = body(seed, 40_000 + seed as usize).concat();
        let mut record = log.record(&[seed; 3]).unwrap();
        let mut hasher = blake3::Hasher::new();
        // In uneven pieces, one of them empty.
        for piece in [
            &expected[..1],
            &expected[1..1],
            &expected[1..4097],
            &expected[4097..],
        ] {
            record.extend(piece).unwrap();
            hasher.update(piece);
        }
        assert_eq!(record.body(), &expected[..]);
        assert_eq!(record.body_len(), expected.len() as u64);
        let appended = log.append_record(record, hasher.finalize()).await.unwrap();
        positions.push(appended.position);
    }
    for (seed, position) in positions.iter().enumerate() {
        let expected: Vec<u8> = body(seed as u8, 40_000 + seed).concat();
        assert_eq!(
            read_body(dir.path(), *position).unwrap(),
            expected,
            "{seed}"
        );
    }
    drop(log);
    let (reopened, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    let headers: Vec<Vec<u8>> = replayed(&mut replay).into_iter().map(|(_, h)| h).collect();
    let expected: Vec<Vec<u8>> = (0..6u8).map(|seed| vec![seed; 3]).collect();
    assert_eq!(headers, expected);

    let mut record = reopened.record(b"big").unwrap();
    record
        .extend(&vec![1u8; SMALL.max_body_bytes as usize - 1])
        .unwrap();
    assert_eq!(
        record.extend(&[2, 3]),
        Err(BodyTooLarge {
            max: SMALL.max_body_bytes
        })
    );
    assert_eq!(record.body_len(), SMALL.max_body_bytes - 1);
    record.extend(&[4]).unwrap();
    assert!(matches!(
        reopened.record(&vec![0u8; MAX_HEADER_BYTES + 1]),
        Err(JournalError::TooLarge { .. })
    ));
}

/// Bytes read straight into a record's room (as from a socket) and taken by `grow`, between
/// pieces copied in by `extend`, make the same record: written and read back the same. A room
/// past the largest body, and a `grow` past the room, are refused and change nothing.
#[tokio::test]
async fn a_record_read_into_its_room_is_the_record_its_bytes_make() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let expected: Vec<u8> = body(9, 50_000).concat();
    let mut record = log.record(&[9; 3]).unwrap();
    let mut hasher = blake3::Hasher::new();
    hasher.update(&expected);
    record.extend(&expected[..100]).unwrap();
    let mut at = 100;
    // Rooms larger than what is put in them (a read returns less), and one exactly filled.
    for (room, put) in [(8192, 5000), (30_000, 30_000), (20_000, 14_900)] {
        let space = record.room(room).unwrap();
        assert_eq!(space.len(), room);
        // What lies beyond what is put is not the body.
        space.fill(0xEE);
        space[..put].copy_from_slice(&expected[at..at + put]);
        record.grow(put).unwrap();
        at += put;
        assert_eq!(record.body(), &expected[..at]);
    }
    assert_eq!(
        record.grow(1),
        Err(BodyTooLarge {
            max: SMALL.max_body_bytes
        }),
        "no room left to grow into"
    );
    record.room(10).unwrap();
    assert!(record.grow(11).is_err(), "past the room");
    assert_eq!(record.body(), &expected[..at]);
    assert!(record.room(SMALL.max_body_bytes as usize).is_err());
    assert_eq!(record.body(), &expected[..at]);
    assert_eq!(at, expected.len());
    let appended = log.append_record(record, hasher.finalize()).await.unwrap();
    assert_eq!(read_body(dir.path(), appended.position).unwrap(), expected);
    drop(log);
    let (_, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    assert_eq!(replayed(&mut replay).len(), 1);
}

/// Packs of 4 MiB whose space is written ahead by up to `ahead` bytes while idle.
fn ahead_config(ahead: u64) -> PackConfig {
    PackConfig {
        pack_bytes: 4 << 20,
        ahead_bytes: ahead,
        ..SMALL
    }
}

/// Waits (up to ten seconds) until `done` holds.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within ten seconds: {what}");
}

fn pack_len(dir: &Path, generation: u64) -> Option<u64> {
    std::fs::metadata(dir.join(pack_file_name(generation)))
        .ok()
        .map(|m| m.len())
}

/// With space written ahead, the first pack is made when the log opens and written with
/// zeros while no one appends; records then go into that space and read back; reopening
/// replays them all, cuts the pack's zeros off after its last record, and a pack made ahead
/// that never got a record is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_is_written_ahead_while_idle_and_records_go_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = ahead_config(1 << 20);
    let (log, _) = PackLog::open(dir.path(), config).unwrap();
    assert_eq!(generations(dir.path()).unwrap(), vec![1]);
    eventually("a megabyte written ahead", || {
        log.stats().ahead_written >= 1 << 20
    })
    .await;
    assert_eq!(
        pack_len(dir.path(), 1),
        Some(SEGMENT_HEADER_BYTES + (1 << 20))
    );
    let mut positions = Vec::new();
    for seed in 0..40u8 {
        positions.push((seed, append(&log, seed, 20_000).await.position));
        if seed % 10 == 9 {
            // Idle again: more is written ahead of the records.
            let before = log.stats().ahead_written;
            eventually("more written ahead", || log.stats().ahead_written > before).await;
        }
    }
    let last = positions.last().unwrap().1;
    assert_eq!(last.generation, 1);
    let records_end = last.offset + frame_len(3, 20_000).unwrap().next_multiple_of(RECORD_ALIGN);
    eventually("written ahead of the last record", || {
        pack_len(dir.path(), 1) == Some(records_end + (1 << 20))
    })
    .await;
    for (seed, position) in &positions {
        assert_eq!(
            read_body(dir.path(), *position),
            Some(body(*seed, 20_000).concat())
        );
    }
    drop(log);
    // Reopened: every record replayed; the zeros after them are cut off; the next pack is
    // made ahead.
    let (log, mut replay) = PackLog::open(dir.path(), config).unwrap();
    assert_eq!(
        replayed(&mut replay),
        positions
            .iter()
            .map(|(seed, position)| (*position, vec![*seed; 3]))
            .collect::<Vec<_>>()
    );
    assert_eq!(pack_len(dir.path(), 1), Some(records_end));
    assert_eq!(generations(dir.path()).unwrap(), vec![1, 2]);
    eventually("the next pack written ahead", || {
        pack_len(dir.path(), 2) == Some(SEGMENT_HEADER_BYTES + (1 << 20))
    })
    .await;
    drop(log);
    // Pack 2 never got a record: removed at the next open, which makes pack 3.
    let (_log, mut replay) = PackLog::open(dir.path(), config).unwrap();
    assert_eq!(replayed(&mut replay).len(), positions.len());
    assert_eq!(generations(dir.path()).unwrap(), vec![1, 3]);
    assert_eq!(pack_len(dir.path(), 1), Some(records_end));
}

/// Zeros written ahead never land on a record: appenders that pause now and then (so that
/// the log goes idle and zeros are written just past the records) and append in bursts, from
/// several tasks; every record reads back whole where its appender was told, and all are
/// replayed after a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zeros_written_ahead_never_land_on_a_record() {
    let dir = tempfile::tempdir().unwrap();
    // Little written ahead at a time: the zeros are always right behind the records.
    let config = PackConfig {
        pack_bytes: 64 << 20,
        ahead_bytes: 64 << 10,
        max_body_bytes: 64 << 10,
        ..SMALL
    };
    // Each piece waits a little between being claimed and written: appends meet it.
    ahead::PIECE_DELAY_MS.store(5, Ordering::Relaxed);
    let (log, _) = PackLog::open(dir.path(), config).unwrap();
    let pause = Arc::new(tokio::sync::Barrier::new(4));
    let tasks: Vec<_> = (0..4u8)
        .map(|task| {
            let (log, pause) = (log.clone(), pause.clone());
            tokio::spawn(async move {
                let mut appended = Vec::new();
                for i in 0..40u8 {
                    let seed = task.wrapping_mul(64).wrapping_add(i);
                    let len = 1_000 + usize::from(seed) * 97 % 30_000;
                    appended.push((seed, len, append(&log, seed, len).await.position));
                    if i % 4 == 0 {
                        // All pause: the log goes idle, zeros are claimed just past the
                        // records (waited for: a timed pause left a loaded machine's
                        // writer of space ahead no idle moment), and the appends come back
                        // while they are written.
                        if pause.wait().await.is_leader() {
                            let before = log.stats().ahead_written;
                            eventually("zeros claimed past the records", || {
                                let claimed = log
                                    .shared
                                    .lock()
                                    .active
                                    .as_ref()
                                    .is_some_and(|active| active.filling.is_some());
                                claimed || log.stats().ahead_written > before
                            })
                            .await;
                        }
                        pause.wait().await;
                    }
                }
                appended
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert!(log.stats().ahead_written > 0, "{:?}", log.stats());
    for (seed, len, position) in &all {
        assert_eq!(
            read_body(dir.path(), *position),
            Some(body(*seed, *len).concat()),
            "the record at {position:?}"
        );
    }
    drop(log);
    let (_, mut replay) = PackLog::open(dir.path(), config).unwrap();
    let mut got = replayed(&mut replay);
    got.sort();
    let mut expected: Vec<_> = all
        .iter()
        .map(|(seed, _, position)| (*position, vec![*seed; 3]))
        .collect();
    expected.sort();
    assert_eq!(got, expected);
}

/// What a stage was asked to do, in order.
async fn append_seeded(log: &PackLog, seed: u8) -> Result<Position, JournalError> {
    let chunks = body(seed, 20_000);
    let hash = BodyHash::xxh3_of(&chunks);
    log.append(vec![seed; 3], chunks, hash)
        .await
        .map(|appended| appended.position)
}

/// A group whose write fails is told so, and the next record goes into a new pack; a writer
/// that panics after a write leaves its appender told (`Closed`) and the log going on; what
/// was acknowledged is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_or_a_writer_panic_is_told_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    for seed in 0..3u8 {
        let position = append_seeded(&log, seed).await.unwrap();
        assert_eq!(
            read_body(dir.path(), position),
            Some(body(seed, 20_000).concat())
        );
    }
    let before = append_seeded(&log, 3).await.unwrap();

    // A failed write: the appender told, the next record in a new pack.
    log.shared.fail_next_write.store(true, Ordering::Relaxed);
    let failed = append_seeded(&log, 4).await;
    assert!(
        matches!(failed, Err(JournalError::Write { .. })),
        "{failed:?}"
    );
    let after = append_seeded(&log, 5).await.unwrap();
    assert!(after.generation > before.generation, "{before:?} {after:?}");

    // The writer panics after its write: the appender told, the log goes on.
    log.shared
        .panic_after_next_write
        .store(true, Ordering::Relaxed);
    let log2 = log.clone();
    let panicked = tokio::spawn(async move { append_seeded(&log2, 6).await }).await;
    assert!(!matches!(panicked, Ok(Ok(_))), "{panicked:?}");
    let last = append_seeded(&log, 7).await.unwrap();
    assert_eq!(read_body(dir.path(), last), Some(body(7, 20_000).concat()));

    // Every record acknowledged is replayed (those whose appenders were told of a failure may
    // be too, as after a crash before an answer: here their bytes reached the pack).
    drop(log);
    let (_, mut replay) = PackLog::open(dir.path(), SMALL).unwrap();
    let headers: Vec<Vec<u8>> = replayed(&mut replay).into_iter().map(|(_, h)| h).collect();
    for seed in [0u8, 1, 2, 3, 5, 7] {
        assert!(headers.contains(&vec![seed; 3]), "{seed}: {headers:?}");
    }
}

/// The log's figures say how many groups it wrote and how long they waited, wrote and
/// synced; read through a reader, they are there while the log is open and gone after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stats_count_groups_and_their_time_while_the_log_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = PackLog::open(dir.path(), SMALL).unwrap();
    let reader = log.stats_reader();
    assert_eq!(reader.stats(), Some(PackStats::default()));
    for seed in 0..3u8 {
        append_seeded(&log, seed).await.unwrap();
    }
    let stats = reader.stats().expect("the log is open");
    assert_eq!(stats, log.stats());
    assert_eq!(stats.records, 3);
    // One at a time: a group each, a sync each.
    assert_eq!((stats.groups, stats.syncs), (3, 3));
    assert!(stats.writing > Duration::ZERO, "{stats:?}");
    assert!(stats.syncing > Duration::ZERO, "{stats:?}");
    // Many at once: fewer groups than records, and the waits for a writer are counted.
    let tasks: Vec<_> = (10..42u8)
        .map(|seed| {
            let log = log.clone();
            tokio::spawn(async move { append_seeded(&log, seed).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.records, 35);
    assert!(stats.groups < 35, "{stats:?}");
    assert!(stats.queued > Duration::ZERO, "{stats:?}");
    drop(log);
    // A writer thread may still be letting go of it.
    let closed = std::time::Instant::now() + Duration::from_secs(10);
    while reader.stats().is_some() && std::time::Instant::now() < closed {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(reader.stats(), None);
}
