//! The collector against a local archive and a real catalog: SQLite, and PostgreSQL on the
//! server of `RADPORT_TEST_POSTGRES_URL` (a fresh database per test; required).

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use radport_archive::Archive;
use radport_catalog::{Catalog, DuplicatePolicy, InstanceRecord, Route};
use radport_collector::{Collector, CollectorConfig, Report, Scratch};
use radport_testkit::postgres::TestDatabase;

const HOUR: Duration = Duration::from_secs(3600);

/// Sets a file's or directory's modification time to `age` ago.
fn age(path: &Path, age: Duration) {
    let file = if path.is_dir() {
        std::fs::File::open(path)
    } else {
        std::fs::File::options().write(true).open(path)
    }
    .expect("open to age");
    file.set_modified(SystemTime::now() - age)
        .expect("set mtime");
}

fn record(sop: &str, series: &str, key: &str) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: sop.into(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        series_instance_uid: series.into(),
        study_instance_uid: "1.2.3".into(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        size: 4,
        checksum: radport_archive::checksum(b"data"),
        object_key: key.into(),
        metadata_json: "{}".into(),
        source: "test".into(),
        ..Default::default()
    }
}

fn route() -> Route {
    Route {
        project: "admin".into(),
        dataset: "d".into(),
    }
}

/// An archive object, `hours` old.
async fn object(archive: &Archive, root: &Path, key: &str, hours: u64) {
    archive
        .put(key, Bytes::from_static(b"data"))
        .await
        .expect("put");
    age(&root.join(key), HOUR * hours as u32);
}

async fn insert_upload(catalog: &Catalog, id: &str, completed: i64) {
    sqlx::query(
        "INSERT INTO uploads (id, path, length, upload_offset, chunks, metadata, created_at, \
           expires_at, completed) VALUES ($1, $2, 10, 0, 0, '{}', $3, $3, $4)",
    )
    .bind(id)
    .bind(format!("{id}.zip"))
    .bind("2026-01-01T00:00:00.000000Z")
    .bind(completed)
    .execute(catalog.pool())
    .await
    .expect("upload row");
}

async fn insert_run(catalog: &Catalog, id: &str, state: &str) {
    sqlx::query(
        "INSERT INTO workflow_runs (id, workflow, params, state, progress_done, progress_total, \
           errors, log, series, created_at, updated_at) \
         VALUES ($1, 'w', '{}', $2, 0, 0, '[]', '[]', '[]', $3, $3)",
    )
    .bind(id)
    .bind(state)
    .bind("2026-01-01T00:00:00.000000Z")
    .execute(catalog.pool())
    .await
    .expect("run row");
}

fn exists(root: &Path, key: &str) -> bool {
    root.join(key).exists()
}

async fn keeps_what_is_referenced_or_young(url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let archive = Archive::local(&root).expect("archive");
    let catalog = Catalog::connect(url).await.expect("catalog");

    // Instances: one referenced, one orphan, one orphan within the grace.
    let referenced = "instances/2026/01/01/referenced.dcm";
    object(&archive, &root, referenced, 2).await;
    catalog
        .record_instance(
            &record("1.2.3.1", "1.2.3.4", referenced),
            &route(),
            DuplicatePolicy::KeepFirst,
        )
        .await
        .expect("record");
    object(&archive, &root, "instances/2026/01/01/orphan.dcm", 2).await;
    object(&archive, &root, "instances/2026/01/01/young.dcm", 0).await;
    // Staging files: a killed write (old) and one being written (young).
    std::fs::write(root.join("instances/2026/01/01/killed.dcm#1"), b"part").expect("staged");
    age(&root.join("instances/2026/01/01/killed.dcm#1"), 2 * HOUR);
    std::fs::write(root.join("instances/2026/01/01/writing.dcm#1"), b"part").expect("staged");
    // Derived objects of a series that exists and of one that does not.
    object(&archive, &root, "thumbnails/1.2.3.4.png", 2).await;
    object(&archive, &root, "thumbnails/9.9.9.png", 2).await;
    object(&archive, &root, "reports/1.2.3.4.html", 2).await;
    object(&archive, &root, "reports/9.9.9.html", 2).await;
    object(&archive, &root, "thumbnails/not-a-thumbnail.txt", 2).await;
    // Upload chunks: of an open upload, a completed one and one that is gone.
    insert_upload(&catalog, "open", 0).await;
    insert_upload(&catalog, "done", 1).await;
    object(&archive, &root, "upload-parts/open/00000000000000000000", 2).await;
    object(&archive, &root, "upload-parts/done/00000000000000000000", 2).await;
    object(&archive, &root, "upload-parts/gone/00000000000000000000", 2).await;
    // An uploaded file is the user's: never collected.
    object(&archive, &root, "uploads/study.zip", 2).await;

    // Scratch: a dead process's copy, the directory of a running and of a finished run.
    let scratch_dir = dir.path().join("scratch");
    std::fs::create_dir_all(scratch_dir.join("runrunning")).expect("scratch");
    std::fs::create_dir_all(scratch_dir.join("runfinished")).expect("scratch");
    std::fs::write(scratch_dir.join("runfinished/copy.zip"), b"zip").expect("scratch");
    std::fs::write(scratch_dir.join(".tmpDEAD"), b"zip").expect("scratch");
    insert_run(&catalog, "runrunning", "running").await;
    insert_run(&catalog, "runfinished", "failed").await;
    for name in ["runrunning", "runfinished", ".tmpDEAD"] {
        age(&scratch_dir.join(name), 2 * HOUR);
    }
    let scratch = Scratch::claim(&scratch_dir)
        .expect("claim")
        .expect("no other claimant");
    assert!(
        Scratch::claim(&scratch_dir).expect("claim").is_none(),
        "a claimed scratch directory is not claimed twice"
    );
    // Made after the claim: a copy an import holds open is kept however old; one that no
    // process holds (its run-job child was killed) goes once it is older than the grace.
    let live = std::fs::File::create(scratch_dir.join(".tmpLIVE")).expect("scratch");
    age(&scratch_dir.join(".tmpLIVE"), 2 * HOUR);
    std::fs::write(scratch_dir.join(".tmpKILLED"), b"zip").expect("scratch");
    age(&scratch_dir.join(".tmpKILLED"), 2 * HOUR);
    std::fs::write(scratch_dir.join(".tmpCLOSED"), b"zip").expect("scratch");

    let collector = Collector::new(
        archive.clone(),
        catalog.clone(),
        CollectorConfig { grace: HOUR },
    )
    .with_scratch(scratch);
    let report = collector.collect_once().await.expect("collect");
    assert_eq!(
        (
            report.instances,
            report.derived,
            report.upload_parts,
            report.staged,
            report.scratch,
            report.failed
        ),
        (1, 2, 2, 1, 3, 0),
        "{report:?}"
    );
    assert_eq!(report.unknown, 1, "{report:?}");
    for kept in [
        referenced,
        "instances/2026/01/01/young.dcm",
        "instances/2026/01/01/writing.dcm#1",
        "thumbnails/1.2.3.4.png",
        "reports/1.2.3.4.html",
        "thumbnails/not-a-thumbnail.txt",
        "upload-parts/open/00000000000000000000",
        "uploads/study.zip",
    ] {
        assert!(exists(&root, kept), "{kept} is kept");
    }
    for removed in [
        "instances/2026/01/01/orphan.dcm",
        "instances/2026/01/01/killed.dcm#1",
        "thumbnails/9.9.9.png",
        "reports/9.9.9.html",
        "upload-parts/done/00000000000000000000",
        "upload-parts/gone/00000000000000000000",
    ] {
        assert!(!exists(&root, removed), "{removed} is removed");
    }
    assert!(scratch_dir.join("runrunning").exists());
    assert!(scratch_dir.join(".tmpLIVE").exists());
    assert!(scratch_dir.join(".tmpCLOSED").exists(), "within the grace");
    assert!(!scratch_dir.join("runfinished").exists());
    assert!(!scratch_dir.join(".tmpDEAD").exists());
    assert!(!scratch_dir.join(".tmpKILLED").exists());

    // Nothing left to do; once the young ones age, they go too (but not the referenced one).
    let again = collector.collect_once().await.expect("collect");
    assert_eq!(again.removed(), 0, "{again:?}");
    age(&root.join("instances/2026/01/01/young.dcm"), 2 * HOUR);
    age(&root.join("instances/2026/01/01/writing.dcm#1"), 2 * HOUR);
    let later = collector.collect_once().await.expect("collect");
    assert_eq!((later.instances, later.staged), (1, 1), "{later:?}");
    assert!(exists(&root, referenced));

    // Grace zero: everything unreferenced goes at once, still nothing referenced.
    object(&archive, &root, "instances/2026/01/02/fresh.dcm", 0).await;
    let now = Collector::new(
        archive,
        catalog.clone(),
        CollectorConfig {
            grace: Duration::ZERO,
        },
    )
    .collect_once()
    .await
    .expect("collect");
    assert_eq!(now.instances, 1, "{now:?}");
    assert!(exists(&root, referenced));
    assert!(scratch_dir.join(".tmpLIVE").exists(), "still open");
    drop(live);
    catalog.close().await;
}

/// More objects than one batch: each batch is judged on its own, none is lost or kept twice.
async fn judges_many_objects_in_batches(url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let archive = Archive::local(&root).expect("archive");
    let catalog = Catalog::connect(url).await.expect("catalog");
    let total = radport_collector::BATCH * 2 + 100;
    for i in 0..total {
        let key = format!("instances/2026/02/01/{i:05}.dcm");
        object(&archive, &root, &key, 2).await;
        if i % 3 == 0 {
            catalog
                .record_instance(
                    &record(&format!("1.2.9.{i}"), "1.2.9", &key),
                    &route(),
                    DuplicatePolicy::KeepFirst,
                )
                .await
                .expect("record");
        }
    }
    let report = Collector::new(archive.clone(), catalog.clone(), CollectorConfig::default())
        .collect_once()
        .await
        .expect("collect");
    let referenced = total.div_ceil(3) as u64;
    assert_eq!(
        report,
        Report {
            listed: total as u64,
            referenced,
            instances: total as u64 - referenced,
            ..Default::default()
        }
    );
    let left = archive.list("instances").await.expect("list");
    assert_eq!(left.len() as u64, referenced);
    catalog.close().await;
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("catalog.db").display())
}

#[tokio::test]
async fn sqlite_keeps_what_is_referenced_or_young() {
    let dir = tempfile::tempdir().expect("tempdir");
    keeps_what_is_referenced_or_young(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn sqlite_judges_many_objects_in_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    judges_many_objects_in_batches(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn postgres_keeps_what_is_referenced_or_young() {
    let db = TestDatabase::create("collector_keeps").await;
    keeps_what_is_referenced_or_young(&db.url).await;
    db.drop_database().await;
}

#[tokio::test]
async fn postgres_judges_many_objects_in_batches() {
    let db = TestDatabase::create("collector_batches").await;
    judges_many_objects_in_batches(&db.url).await;
    db.drop_database().await;
}

/// Packed records (`--ingest-durability packs`): those behind the pack log's checkpoint that
/// no row references are punched out; the referenced, the young and those ahead stay.
#[tokio::test]
async fn sqlite_punches_unreferenced_packed_records_behind_the_checkpoint() {
    use radport_archive::{keys, ArchiveError};
    use radport_ingest::{PackConfig, PackLog};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let archive = Archive::local(&root).expect("archive");
    let catalog = Catalog::connect(&sqlite_url(&dir)).await.expect("catalog");
    let packs = archive.packs_dir().expect("local");
    std::fs::create_dir(&packs).expect("packs dir");
    let config = PackConfig {
        pack_bytes: 1 << 20,
        max_body_bytes: 64 << 10,
        checkpoint_bytes: 1 << 20,
        ahead_bytes: 0,
        write_while_arriving: false,
    };
    let (log, _) = PackLog::open(&packs, config).expect("pack log");
    let append = |seed: u8| {
        let log = log.clone();
        async move {
            let body = vec![seed; 5000];
            let appended = log
                .append(
                    vec![seed],
                    vec![Bytes::from(body.clone())],
                    blake3::hash(&body),
                )
                .await
                .expect("append");
            (keys::packed(appended.position), appended.durable)
        }
    };
    let (referenced, a) = append(1).await;
    let (orphan, b) = append(2).await;
    drop((a, b));
    log.checkpoint(|| async { Ok::<(), String>(()) })
        .await
        .expect("checkpoint");
    let (ahead, _c) = append(3).await;
    catalog
        .record_instance(
            &record("1.2.3.1", "1.2.3.4", &referenced),
            &route(),
            DuplicatePolicy::KeepFirst,
        )
        .await
        .expect("record");

    // Within the grace (the pack was just written): nothing goes.
    let collector = Collector::new(archive.clone(), catalog.clone(), CollectorConfig::default());
    let report = collector.collect_once().await.expect("collect");
    assert_eq!(report.instances, 0, "{report:?}");
    assert!(report.young >= 2, "{report:?}");

    let pack = packs.join(radport_ingest::pack_file_name(
        keys::parse_packed(&orphan).expect("a pack key").generation,
    ));
    age(&pack, 2 * HOUR);
    let report = collector.collect_once().await.expect("collect");
    assert_eq!(report.instances, 1, "{report:?}");
    assert_eq!(report.referenced, 1, "{report:?}");
    assert!(archive.get(&referenced).await.is_ok());
    assert!(matches!(
        archive.get(&orphan).await,
        Err(ArchiveError::NotFound(_))
    ));
    assert!(archive.get(&ahead).await.is_ok(), "ahead of the checkpoint");
    // Again: nothing more.
    let report = collector.collect_once().await.expect("collect");
    assert_eq!(report.instances, 0, "{report:?}");
}
