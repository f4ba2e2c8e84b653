//! The journal on real files: group commit, replay after reopening, checkpoints, torn and
//! stale frames, a full ring.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use radport_journal::{Journal, JournalConfig, JournalError, Recovered};

/// Segments of 256 KiB, bodies up to 32 KiB.
const SMALL: JournalConfig = JournalConfig {
    segment_bytes: 256 * 1024,
    segments: 3,
    max_body_bytes: 32 * 1024,
};

/// A body of `len` bytes for record `n`, in chunks of up to 1000 bytes.
fn body(n: u32, len: usize) -> Vec<Bytes> {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u32 ^ n.wrapping_mul(131)) as u8)
        .collect();
    bytes.chunks(1000).map(Bytes::copy_from_slice).collect()
}

fn hash(chunks: &[Bytes]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    for chunk in chunks {
        hasher.update(chunk);
    }
    hasher.finalize()
}

async fn append(journal: &Journal, n: u32, len: usize) -> radport_journal::Durable {
    let chunks = body(n, len);
    let h = hash(&chunks);
    journal
        .append(n.to_le_bytes().to_vec(), chunks, h)
        .await
        .expect("append")
}

fn replayed(dir: &Path, config: JournalConfig) -> (Journal, Vec<Recovered>) {
    let (journal, mut replay) = Journal::open(dir, config).unwrap();
    let mut out = Vec::new();
    while let Some(record) = replay.next_record().unwrap() {
        out.push(record);
    }
    (journal, out)
}

fn record_number(record: &Recovered) -> u32 {
    u32::from_le_bytes(record.header[..4].try_into().unwrap())
}

fn assert_intact(record: &Recovered) {
    let n = record_number(record);
    let expected: Vec<u8> = body(n, record.body.len()).concat();
    assert_eq!(record.body, expected, "record {n}");
}

fn no_op() -> std::future::Ready<Result<(), String>> {
    std::future::ready(Ok(()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_syncs_and_are_replayed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_bytes: 4 * 1024 * 1024,
        segments: 2,
        max_body_bytes: 64 * 1024,
    };
    let (journal, first) = replayed(dir.path(), config);
    assert!(first.is_empty());
    let mut tasks = Vec::new();
    for task in 0..8u32 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u32 {
                let n = task * 1000 + i;
                // Kept: nothing is applied, so the records stay to be replayed.
                std::mem::forget(append(&journal, n, 100 + (n as usize * 37) % 9000).await);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = journal.stats();
    assert_eq!(stats.records, 200);
    assert!(
        stats.syncs < stats.records,
        "groups formed: {} syncs for {} records",
        stats.syncs,
        stats.records
    );
    drop(journal);
    let (_journal, records) = replayed(dir.path(), config);
    assert_eq!(records.len(), 200);
    for record in &records {
        assert_intact(record);
    }
    // Each task's records in the order it appended them.
    for task in 0..8u32 {
        let mine: Vec<u32> = records
            .iter()
            .map(record_number)
            .filter(|n| n / 1000 == task)
            .collect();
        assert_eq!(mine, (0..25).map(|i| task * 1000 + i).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_checkpoint_frees_full_segments_once_their_records_are_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    // 30 KiB bodies: eight to a 256 KiB segment.
    let mut held = Vec::new();
    for n in 0..8 {
        held.push(append(&journal, n, 30 * 1024).await);
    }
    let ninth = append(&journal, 8, 30 * 1024).await; // starts the second segment
    drop(ninth);
    // The first segment is full, but its records are not applied yet.
    assert_eq!(journal.checkpoint(no_op).await.unwrap(), 0);
    let called = std::sync::atomic::AtomicBool::new(false);
    drop(held);
    let freed = journal
        .checkpoint(|| {
            called.store(true, std::sync::atomic::Ordering::SeqCst);
            no_op()
        })
        .await
        .unwrap();
    assert_eq!(freed, 1);
    assert!(called.load(std::sync::atomic::Ordering::SeqCst));
    // A failing make_durable frees nothing.
    for n in 9..20 {
        drop(append(&journal, n, 30 * 1024).await);
    }
    let failed = journal
        .checkpoint(|| std::future::ready(Err::<(), _>("disk gone")))
        .await;
    assert!(matches!(failed, Err(JournalError::MakeDurable(m)) if m == "disk gone"));
    drop(journal);
    // Records 8.. are replayed (their segments were not freed), 0..8 are not.
    let (journal, records) = replayed(dir.path(), SMALL);
    let numbers: Vec<u32> = records.iter().map(record_number).collect();
    assert_eq!(numbers, (8..20).collect::<Vec<_>>());
    // Replayed and applied, then checkpointed: nothing left.
    assert!(journal.checkpoint_all(no_op).await.unwrap() >= 1);
    drop(journal);
    let (_journal, records) = replayed(dir.path(), SMALL);
    assert!(records.is_empty(), "{} replayed again", records.len());
}

#[tokio::test]
async fn a_full_ring_holds_appends_until_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    for n in 0..24 {
        drop(append(&journal, n, 30 * 1024).await);
    }
    // Three segments of eight: the next append needs a free one.
    let waiting = {
        let journal = journal.clone();
        tokio::spawn(async move { append(&journal, 24, 30 * 1024).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "appended into a full ring");
    assert!(journal.checkpoint(no_op).await.unwrap() >= 1);
    let durable = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the append goes on after the checkpoint")
        .unwrap();
    drop(durable);
}

#[tokio::test]
async fn a_torn_frame_ends_the_replay_of_its_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    for n in 0..5 {
        std::mem::forget(append(&journal, n, 10_000).await);
    }
    drop(journal);
    // The fourth record's body, as a write cut off by a power cut would leave it.
    let frame = (Journal::FRAME_OVERHEAD + 4 + 10_000) as u64;
    let fourth_body = 4096 + 3 * frame + Journal::FRAME_OVERHEAD as u64 + 4;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("segment-000.journal"))
        .unwrap();
    file.write_all_at(&[0u8; 500], fourth_body + 4000).unwrap();
    drop(file);
    let (_journal, records) = replayed(dir.path(), SMALL);
    let numbers: Vec<u32> = records.iter().map(record_number).collect();
    assert_eq!(numbers, vec![0, 1, 2]);
    records.iter().for_each(assert_intact);
}

#[tokio::test]
async fn records_of_a_segments_earlier_use_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    for n in 0..7 {
        drop(append(&journal, n, 30 * 1024).await);
    }
    assert_eq!(journal.checkpoint_all(no_op).await.unwrap(), 1);
    // The first free segment is the same file again: two records over seven old ones.
    for n in 100..102 {
        std::mem::forget(append(&journal, n, 30 * 1024).await);
    }
    drop(journal);
    let (_journal, records) = replayed(dir.path(), SMALL);
    let numbers: Vec<u32> = records.iter().map(record_number).collect();
    assert_eq!(numbers, vec![100, 101]);
}

#[tokio::test]
async fn whether_a_journal_holds_records_is_told_without_opening_it() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    assert!(!Journal::has_records(dir.path()).unwrap());
    drop(append(&journal, 1, 100).await);
    assert!(Journal::has_records(dir.path()).unwrap());
    journal.checkpoint_all(no_op).await.unwrap();
    assert!(!Journal::has_records(dir.path()).unwrap());
}

#[tokio::test]
async fn what_does_not_fit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    let chunks = body(1, 32 * 1024 + 1);
    let h = hash(&chunks);
    assert!(matches!(
        journal.append(vec![], chunks, h).await,
        Err(JournalError::TooLarge { body: 32769, .. })
    ));
    let chunks = body(1, 10);
    let h = hash(&chunks);
    assert!(matches!(
        journal.append(vec![0; 64 * 1024 + 1], chunks, h).await,
        Err(JournalError::TooLarge { .. })
    ));
    for bad in [
        JournalConfig {
            segments: 1,
            ..SMALL
        },
        JournalConfig {
            segment_bytes: 1024,
            ..SMALL
        },
        JournalConfig {
            max_body_bytes: 250 * 1024,
            ..SMALL
        },
    ] {
        assert!(matches!(
            Journal::open(dir.path(), bad),
            Err(JournalError::Config(_))
        ));
    }
    assert!(matches!(
        Journal::open(&dir.path().join("missing"), SMALL),
        Err(JournalError::Config(_))
    ));
}

#[tokio::test]
async fn the_ring_is_resized_only_when_it_holds_no_records() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    std::mem::forget(append(&journal, 1, 1000).await);
    drop(journal);
    let bigger = JournalConfig {
        segments: 4,
        segment_bytes: 512 * 1024,
        ..SMALL
    };
    // Records to replay: the old ring is kept.
    let (journal, records) = replayed(dir.path(), bigger);
    assert_eq!(records.len(), 1);
    assert_eq!(
        std::fs::metadata(dir.path().join("segment-000.journal"))
            .unwrap()
            .len(),
        256 * 1024
    );
    assert!(!dir.path().join("segment-003.journal").exists());
    journal.checkpoint_all(no_op).await.unwrap();
    drop(journal);
    // Empty now: made as configured.
    let (_journal, records) = replayed(dir.path(), bigger);
    assert!(records.is_empty());
    for i in 0..4 {
        let path = dir.path().join(format!("segment-{i:03}.journal"));
        assert_eq!(std::fs::metadata(path).unwrap().len(), 512 * 1024);
    }
}

/// Whether `needle` occurs anywhere in the segment files of `dir`.
fn segments_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test]
async fn a_scrub_leaves_nothing_of_freed_records_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = replayed(dir.path(), SMALL);
    let secret = b"PATIENT^TO^ERASE^0123456789";
    let record = |n: u32| {
        let mut bytes = secret.to_vec();
        bytes.extend_from_slice(&n.to_le_bytes());
        vec![Bytes::from(bytes)]
    };
    // Records in two uses of the ring: some freed by a checkpoint, some still held.
    for n in 0..10 {
        let chunks = record(n);
        let h = hash(&chunks);
        drop(journal.append(vec![0; 4], chunks, h).await.unwrap());
        drop(append(&journal, 1000 + n, 30 * 1024).await);
    }
    assert!(segments_contain(dir.path(), secret));
    journal.checkpoint_all(no_op).await.unwrap();
    // Freed, but their bytes are still on disk until the scrub.
    assert!(segments_contain(dir.path(), secret));
    let scrubbed = journal.scrub().await.unwrap();
    assert!(scrubbed > 0);
    assert!(
        !segments_contain(dir.path(), secret),
        "a freed record survived the scrub"
    );
    // Nothing stale is left: a second scrub has nothing to do.
    assert_eq!(journal.scrub().await.unwrap(), 0);
    // The journal goes on: records appended afterwards are replayed.
    for n in 200..203 {
        std::mem::forget(append(&journal, n, 1000).await);
    }
    drop(journal);
    let (journal, records) = replayed(dir.path(), SMALL);
    let numbers: Vec<u32> = records.iter().map(record_number).collect();
    assert_eq!(numbers, vec![200, 201, 202]);
    records.iter().for_each(assert_intact);
    // Opened again, the segments it did not make count as wholly stale.
    journal.checkpoint_all(no_op).await.unwrap();
    assert_eq!(journal.scrub().await.unwrap(), 3 * (256 * 1024 - 4096));
}
