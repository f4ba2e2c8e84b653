//! Uploads in the catalog: one upload per path, the quota, chunks counted by compare-and-set,
//! the assembly lease, expiry and retention, the files workflow runs use, and the version-4
//! migration. Against SQLite and against the PostgreSQL server of `RADPORT_TEST_POSTGRES_URL`
//! (required: without it the PostgreSQL variants fail).

use super::*;
use radport_catalog::NewUpload;
use radport_catalog::{UploadRefused, KEEP_FOREVER};

both!(upload_rows);
both!(migrates_version_3_uploads);

fn at(seconds_from_now: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds_from_now))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn upload_rows(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    let later = at(3600);
    // Quota 1 MB; every upload counts at least 64 KiB.
    let q = 1_000_000;
    let a = c
        .create_upload(
            &NewUpload {
                id: "a",
                path: "scan.zip",
                length: 100,
                metadata: "",
                expires_at: &later,
                owner: None,
            },
            q,
        )
        .await
        .expect("create")
        .expect("created");
    assert_eq!((a.offset, a.part_keys.len(), a.completed), (0, 0, false));
    // One upload per path.
    assert_eq!(
        c.create_upload(
            &NewUpload {
                id: "b",
                path: "scan.zip",
                length: 100,
                metadata: "",
                expires_at: &later,
                owner: None,
            },
            q,
        )
        .await
        .expect("create")
        .unwrap_err(),
        UploadRefused::PathTaken
    );
    // The quota counts announced lengths of incomplete uploads (at least 64 KiB each).
    assert_eq!(
        c.create_upload(
            &NewUpload {
                id: "c",
                path: "big.zip",
                length: q - 65_535,
                metadata: "",
                expires_at: &later,
                owner: None,
            },
            q,
        )
        .await
        .expect("create")
        .unwrap_err(),
        UploadRefused::OverQuota { used: 65_536 }
    );
    assert_eq!(
        c.create_upload(
            &NewUpload {
                id: "c",
                path: "big.zip",
                length: i64::MAX,
                metadata: "",
                expires_at: &later,
                owner: None,
            },
            i64::MAX,
        )
        .await
        .expect("create")
        .unwrap_err(),
        UploadRefused::OverQuota { used: 65_536 },
        "no overflow"
    );
    c.create_upload(
        &NewUpload {
            id: "c",
            path: "fits.zip",
            length: q - 65_536,
            metadata: "",
            expires_at: &later,
            owner: None,
        },
        q,
    )
    .await
    .expect("create")
    .expect("fits exactly");
    assert_eq!(
        c.create_upload(
            &NewUpload {
                id: "e",
                path: "empty.zip",
                length: 0,
                metadata: "",
                expires_at: &later,
                owner: None,
            },
            q,
        )
        .await
        .expect("create")
        .unwrap_err(),
        UploadRefused::OverQuota { used: q },
        "an empty file counts too"
    );

    // Two chunks at offset 0: the first counted wins; the second is a conflict.
    c.advance_upload("a", 0, 60, "upload-parts/a/0-x", &at(7200))
        .await
        .expect("first");
    let lost = c
        .advance_upload("a", 0, 40, "upload-parts/a/0-y", &at(7200))
        .await;
    assert!(matches!(lost, Err(CatalogError::Conflict(_))), "{lost:?}");
    c.advance_upload("a", 60, 100, "upload-parts/a/60-z", &at(7200))
        .await
        .expect("second");
    let a = c.get_upload("a").await.expect("get").expect("row");
    assert_eq!(a.offset, 100);
    assert_eq!(a.part_keys, ["upload-parts/a/0-x", "upload-parts/a/60-z"]);
    assert!(a.expires_at > later, "a chunk moves the expiry");

    // The assembly lease: one holder at a time; its holder renews; a leased upload is not
    // swept even when it expired.
    let lease = at(60);
    assert!(c.lease_assembly("a", &lease, None).await.expect("lease"));
    assert!(!c.lease_assembly("a", &at(60), None).await.expect("taken"));
    let renewed = at(120);
    assert!(c
        .lease_assembly("a", &renewed, Some(&lease))
        .await
        .expect("renew"));
    assert!(!c
        .lease_assembly("c", &at(60), None)
        .await
        .expect("not all there"));
    c.touch_upload("a", &at(-10)).await.expect("touch");
    c.touch_upload("c", &at(-10)).await.expect("touch");
    let expired: Vec<String> = c
        .expired_uploads()
        .await
        .expect("expired")
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(expired, ["c"], "the upload being assembled is not swept");
    // Claiming: only an expired, unleased row, and only once (several nodes sweep at once).
    assert!(!c.claim_expired_upload("a").await.expect("claim"), "leased");
    c.touch_upload("c", &at(3600)).await.expect("touch");
    assert!(
        !c.claim_expired_upload("c").await.expect("claim"),
        "alive again"
    );
    c.touch_upload("c", &at(-10)).await.expect("touch");
    assert!(c.claim_expired_upload("c").await.expect("claim"));
    assert!(!c.claim_expired_upload("c").await.expect("claim"), "once");
    assert!(c.get_upload("c").await.expect("get").is_none());

    // Completion: retention expiry, no chunks, no lease.
    c.complete_upload("a", &at(-1)).await.expect("complete");
    let a = c.get_upload("a").await.expect("get").expect("row");
    assert!(a.completed && a.part_keys.is_empty() && a.assembly_lease.is_none());
    let files: Vec<String> = c
        .expired_files()
        .await
        .expect("files")
        .into_iter()
        .map(|u| u.path)
        .collect();
    assert_eq!(files, ["scan.zip"]);
    assert_eq!(
        c.upload_at("scan.zip").await.expect("at").map(|u| u.id),
        Some("a".to_string())
    );
    assert_eq!(c.completed_uploads().await.expect("completed").len(), 1);
    assert!(
        !c.claim_expired_upload("a").await.expect("claim"),
        "completed"
    );

    // Files named by queued or running workflow runs.
    c.create_workflow_run("r1", "import", &serde_json::json!({"file": "/scan.zip"}))
        .await
        .expect("run");
    let mut done = c
        .create_workflow_run("r2", "import", &serde_json::json!({"file": "fits.zip"}))
        .await
        .expect("run");
    done.state = radport_catalog::RunState::Succeeded;
    c.update_workflow_run(&done).await.expect("update");
    let in_use = c.files_in_use().await.expect("in use");
    assert!(
        in_use.contains("scan.zip") && !in_use.contains("fits.zip"),
        "{in_use:?}"
    );

    assert!(c.claim_expired_file("a").await.expect("claim"));
    assert!(!c.claim_expired_file("a").await.expect("claim"), "once");
    c.create_upload(
        &NewUpload {
            id: "d",
            path: "scan.zip",
            length: 10,
            metadata: "",
            expires_at: &later,
            owner: None,
        },
        q,
    )
    .await
    .expect("create")
    .expect("the path is free again");
    c.close().await;
}

async fn migrates_version_3_uploads(url: &str) {
    use sqlx::Connection;
    Catalog::connect(url).await.expect("connect").close().await;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("raw");
    for statement in [
        "DROP TABLE uploads",
        "CREATE TABLE uploads (id TEXT NOT NULL PRIMARY KEY, path TEXT NOT NULL, \
           length BIGINT NOT NULL, upload_offset BIGINT NOT NULL, chunks BIGINT NOT NULL, \
           metadata TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL, \
           completed BIGINT NOT NULL)",
        // Two completed uploads of one name (the newer one's file is stored), one incomplete
        // upload of that name, and one other completed upload.
        "INSERT INTO uploads VALUES ('old', 'a.zip', 5, 5, 1, '', '2026-01-01T00:00:00.000000Z', \
           '2026-01-02T00:00:00.000000Z', 1)",
        "INSERT INTO uploads VALUES ('new', 'a.zip', 6, 6, 1, '', '2026-01-03T00:00:00.000000Z', \
           '2026-01-04T00:00:00.000000Z', 1)",
        "INSERT INTO uploads VALUES ('wip', 'a.zip', 7, 0, 0, '', '2026-01-05T00:00:00.000000Z', \
           '2999-01-01T00:00:00.000000Z', 0)",
        "INSERT INTO uploads VALUES ('b', 'b.zip', 8, 8, 1, '', '2026-01-01T00:00:00.000000Z', \
           '2026-01-02T00:00:00.000000Z', 1)",
        "DELETE FROM schema_version",
        "INSERT INTO schema_version (version, applied_at) VALUES (3, '2026-01-01T00:00:00Z')",
    ] {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect(statement);
    }
    conn.close().await.expect("close");

    let c = Catalog::connect(url).await.expect("upgrade");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    assert!(c.get_upload("old").await.expect("get").is_none());
    let new = c.get_upload("new").await.expect("get").expect("kept");
    assert_eq!(new.path, "a.zip");
    assert_eq!(new.expires_at, KEEP_FOREVER, "completed before: kept");
    assert_eq!(
        c.get_upload("b")
            .await
            .expect("get")
            .expect("kept")
            .expires_at,
        KEEP_FOREVER
    );
    let wip = c.get_upload("wip").await.expect("get").expect("kept");
    assert_eq!(wip.path, "a.zip-wip");
    assert!(wip.part_keys.is_empty() && wip.assembly_lease.is_none());
    assert!(c.expired_files().await.expect("files").is_empty());
    assert_eq!(
        c.create_upload(
            &NewUpload {
                id: "x",
                path: "a.zip",
                length: 1,
                metadata: "",
                expires_at: KEEP_FOREVER,
                owner: None,
            },
            1 << 40,
        )
        .await
        .expect("create")
        .unwrap_err(),
        UploadRefused::PathTaken
    );
    c.close().await;
}
