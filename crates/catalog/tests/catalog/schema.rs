//! The schema: SQLite's connection settings and URLs, and upgrades from earlier versions.

use super::*;

both!(migrates_a_version_2_catalog);
both!(migrates_a_version_5_catalog);
both!(migrates_a_version_6_catalog);
both!(migrates_a_version_7_catalog);
both!(migrates_a_version_10_catalog);

#[tokio::test]
async fn sqlite_connection_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The parent directory does not exist yet: it is created, and so is the file.
    let path = dir.path().join("nested/dir/catalog.db");
    let url = format!("sqlite://{}", path.display());
    let c = Catalog::connect_with(
        &url,
        &CatalogOptions {
            max_connections: Some(3),
            ..Default::default()
        },
    )
    .await
    .expect("connect");
    assert!(path.exists());
    // Hold three connections at once so every pooled connection is checked.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(c.pool().acquire().await.expect("acquire"));
    }
    for conn in &mut conns {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await
            .expect("pragma");
        assert_eq!(journal.to_ascii_lowercase(), "wal");
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await
            .expect("pragma");
        assert_eq!(synchronous, 2, "synchronous=FULL");
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut **conn)
            .await
            .expect("pragma");
        assert_eq!(foreign_keys, 1);
        let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&mut **conn)
            .await
            .expect("pragma");
        assert_eq!(busy, 30_000);
    }
}

#[tokio::test]
async fn sqlite_relative_and_memory_urls() {
    let c = Catalog::connect("sqlite::memory:").await.expect("memory");
    c.create_project("m").await.expect("create");
    // A single shared connection: the project is visible to later queries.
    assert!(c.find_project("m").await.expect("find").is_some());
    record(
        &c,
        &rec("10.1", "10.1.1", "10.1.1.1"),
        &route("m", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    assert_eq!(uids(&c, "m", all()).await, ["10.1.1"]);
    assert!(matches!(
        Catalog::connect("mysql://x/y").await,
        Err(CatalogError::Invalid(_))
    ));
}

/// A catalog written by schema version 1 (no filter columns on `series`) is upgraded at
/// connect: columns added and filled from studies and validation results, so filters and
/// text search find what was recorded before the upgrade.
#[tokio::test]
async fn migrates_a_version_1_catalog() {
    let db = SqliteDb::new();
    {
        let c = Catalog::connect(&db.url).await.expect("connect");
        c.create_project("p").await.expect("create");
        let mut r = rec("12.1", "12.1.1", "12.1.1.1");
        r.study_description = Some("Brain Perfusion".into());
        record(&c, &r, &route("p", "d"), DuplicatePolicy::KeepFirst).await;
        let mut other = rec("12.2", "12.2.1", "12.2.1.1");
        other.patient_id = Some("PID-2".into());
        other.study_date = Some("20190101".into());
        record(&c, &other, &route("p", "d"), DuplicatePolicy::KeepFirst).await;
        let finding = StoredFinding {
            sop_instance_uid: Some("12.1.1.1".into()),
            severity: "error".into(),
            tag_path: "(0008,0060)".into(),
            keyword: "Modality".into(),
            module: None,
            message: "missing".into(),
        };
        c.store_validation("12.1.1", 1, &[], "reports/x.html", &[finding])
            .await
            .expect("validation");
    }
    // Turn it back into a version-1 database.
    run_raw(&db.url, &[
        // Version 10's counts (a version-1 catalog has neither the triggers nor the tables).
        "DROP TRIGGER radport_counts_series_insert",
        "DROP TRIGGER radport_counts_series_update",
        "DROP TRIGGER radport_counts_series_delete",
        "DROP TRIGGER radport_counts_projects_insert",
        "DROP TRIGGER radport_counts_projects_delete",
        "DROP TRIGGER radport_counts_datasets_insert",
        "DROP TRIGGER radport_counts_datasets_delete",
        "DROP VIEW series_counts_now",
        "DROP TABLE series_counts",
        "DROP TABLE series_counted",
        "DROP TABLE series_recount",
        "DROP INDEX idx_series_study_date_first_arrival",
        "DROP INDEX idx_series_modality_study_date",
        "DROP INDEX idx_series_modality_body_study_date",
        "DROP INDEX idx_series_modality_body_first_arrival",
        "DROP INDEX idx_series_body_part",
        "DROP INDEX idx_series_patient",
        "DROP INDEX idx_series_validation_state",
        "DROP INDEX idx_series_facets",
        "ALTER TABLE series DROP COLUMN patient_id",
        "ALTER TABLE series DROP COLUMN patient_name",
        "ALTER TABLE series DROP COLUMN study_date",
        "ALTER TABLE series DROP COLUMN study_description",
        "ALTER TABLE series DROP COLUMN accession_number",
        "ALTER TABLE series DROP COLUMN search_text",
        "ALTER TABLE series DROP COLUMN validation_errors",
        "ALTER TABLE series DROP COLUMN validation_warnings",
        // Version 1 and 2 stored bare SHA-256 hex digests in `sha256`.
        "ALTER TABLE instances RENAME COLUMN checksum TO sha256",
        "UPDATE instances SET sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
        "DELETE FROM schema_version",
        "INSERT INTO schema_version (version, applied_at) VALUES (1, '2026-01-01T00:00:00Z')",
    ])
    .await;

    let c = Catalog::connect(&db.url).await.expect("reconnect");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    let q = |text: &str| SeriesFilter {
        q: Some(text.into()),
        ..all()
    };
    assert_eq!(uids(&c, "p", q("perfusion")).await, ["12.1.1"]);
    assert_eq!(uids(&c, "admin", q("DOE^john")).await.len(), 2);
    let errors = SeriesFilter {
        has_errors: Some(true),
        ..all()
    };
    assert_eq!(uids(&c, "p", errors).await, ["12.1.1"]);
    let unvalidated = SeriesFilter {
        validated: Some(false),
        ..all()
    };
    assert_eq!(uids(&c, "p", unvalidated).await, ["12.2.1"]);
    let by_patient = SeriesFilter {
        patient_id: Some("PID-2".into()),
        ..all()
    };
    assert_eq!(uids(&c, "admin", by_patient).await, ["12.2.1"]);
    let since_2020 = SeriesFilter {
        study_date_from: Some("20200101".into()),
        ..all()
    };
    assert_eq!(uids(&c, "p", since_2020).await, ["12.1.1"]);
    // Checksums recorded before version 3 say their algorithm; a new copy of such an
    // instance cannot be compared with it, so `overwrite-if-different` replaces it.
    let detail = c
        .get_series("12.1.1")
        .await
        .expect("series")
        .expect("found");
    assert_eq!(
        detail.instances[0].checksum,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let again = rec("12.1", "12.1.1", "12.1.1.1");
    assert!(matches!(
        c.record_instance(
            &again,
            &route("p", "d"),
            DuplicatePolicy::OverwriteIfDifferent
        )
        .await
        .expect("record"),
        RecordOutcome::Replaced { .. }
    ));
    // New instances keep the copied columns current.
    let mut late = rec("12.1", "12.1.1", "12.1.1.2");
    late.accession_number = Some("ACC-77".into());
    record(&c, &late, &route("p", "d"), DuplicatePolicy::KeepFirst).await;
    assert_eq!(uids(&c, "p", q("acc-77")).await, ["12.1.1"]);
    assert_eq!(uids(&c, "p", q("perfusion")).await, ["12.1.1"]);
}

/// A version-2 catalog (SHA-256 digests in `instances.sha256`) is upgraded at connect, on either
/// database: the column becomes `checksum` and the old digests say their algorithm; writing and
/// reading go on.
async fn migrates_a_version_2_catalog(url: &str) {
    {
        let c = Catalog::connect(url).await.expect("connect");
        record(
            &c,
            &rec("13.1", "13.1.1", "13.1.1.1"),
            &route("admin", "d"),
            DuplicatePolicy::KeepFirst,
        )
        .await;
        c.close().await;
    }
    run_raw(
        url,
        &[
            "ALTER TABLE instances RENAME COLUMN checksum TO sha256",
            "UPDATE instances SET sha256 = 'ab12'",
            "DELETE FROM schema_version",
            "INSERT INTO schema_version (version, applied_at) VALUES (2, '2026-01-01T00:00:00Z')",
        ],
    )
    .await;

    let c = Catalog::connect(url).await.expect("reconnect");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    let old = c
        .get_series("13.1.1")
        .await
        .expect("series")
        .expect("found");
    assert_eq!(old.instances[0].checksum, "sha256:ab12");
    record(
        &c,
        &rec("13.1", "13.1.1", "13.1.1.2"),
        &route("admin", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let both = c
        .get_series("13.1.1")
        .await
        .expect("series")
        .expect("found");
    let mut checksums: Vec<&str> = both.instances.iter().map(|i| i.checksum.as_str()).collect();
    checksums.sort();
    assert_eq!(checksums, ["blake3:13.1.1.2", "sha256:ab12"]);
    c.close().await;
    // Connecting again changes nothing (the upgrade ran once).
    let c = Catalog::connect(url).await.expect("reconnect");
    let again = c
        .get_series("13.1.1")
        .await
        .expect("series")
        .expect("found");
    assert!(again.instances.iter().any(|i| i.checksum == "sha256:ab12"));
    c.close().await;
}

/// The catalog over TLS to PostgreSQL (`sslmode=verify-full` with the server's CA, as
/// scripts/test.sh sets it up): the connection is encrypted, and a server whose certificate
/// the given CA did not sign is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    let ca = std::env::var("RADPORT_TEST_POSTGRES_CA").unwrap_or_else(|_| {
        panic!(
            "RADPORT_TEST_POSTGRES_CA is not set: this test needs the PostgreSQL server of \
             scripts/test.sh, which serves TLS with that certificate"
        )
    });
    let db = radport_testkit::postgres::TestDatabase::create("tls").await;
    let url = format!("{}?sslmode=verify-full&sslrootcert={ca}", db.url);
    let c = Catalog::connect(&url).await.expect("connect over TLS");
    c.create_project("over-tls").await.expect("write");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "the connection is encrypted");
    pool.close().await;
    c.close().await;

    // Another CA: the server's certificate is not trusted.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.crt");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=someone-else"])
        .arg("-keyout")
        .arg(dir.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl runs");
    assert!(made.status.success());
    let refused = Catalog::connect(&format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        db.url,
        other.display()
    ))
    .await;
    assert!(
        refused.is_err(),
        "a server certificate the CA did not sign is refused"
    );
    db.drop_database().await;
}

/// A version-5 catalog (accounts without the single sign-on columns) is upgraded at connect, on
/// either database: its accounts are local ones, and single sign-on accounts can be made.
async fn migrates_a_version_5_catalog(url: &str) {
    {
        let c = Catalog::connect(url).await.expect("connect");
        c.create_user("alice", Some("$argon2id$x"), true, false)
            .await
            .expect("user");
        c.close().await;
    }
    run_raw(
        url,
        &[
            "DROP INDEX idx_users_oidc",
            "ALTER TABLE users DROP COLUMN oidc_issuer",
            "ALTER TABLE users DROP COLUMN oidc_subject",
            "DELETE FROM schema_version",
            "INSERT INTO schema_version (version, applied_at) VALUES (5, '2026-01-01T00:00:00Z')",
        ],
    )
    .await;

    let c = Catalog::connect(url).await.expect("reconnect");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    let alice = c.get_user("alice").await.expect("get").expect("kept");
    assert_eq!((alice.is_admin, alice.oidc), (true, None));
    let account = radport_catalog::OidcAccount {
        issuer: "https://idp.example".into(),
        subject: "s-1".into(),
    };
    let bob = c
        .sign_in_oidc_user("bob", &account, false, &[])
        .await
        .expect("single sign-on");
    assert_eq!(bob.oidc, Some(account.clone()));
    // The one-account-per-subject index is there.
    assert!(c
        .sign_in_oidc_user("bob2", &account, false, &[])
        .await
        .is_err());
    c.close().await;
}

/// A version-6 catalog (studies without Referring Physician's Name) is upgraded at connect, on
/// either database: the name comes from the stored DICOM JSON of an instance of the study.
async fn migrates_a_version_6_catalog(url: &str) {
    use radport_catalog::search::{Attribute, Condition, Level, Scope, Search};
    {
        let c = Catalog::connect(url).await.expect("connect");
        let mut r = rec("S1", "A", "a1");
        r.metadata_json =
            r#"{"00080090":{"vr":"PN","Value":[{"Alphabetic":"House^Gregory"}]}}"#.into();
        record(&c, &r, &route("admin", "d"), DuplicatePolicy::KeepFirst).await;
        record(
            &c,
            &rec("S2", "B", "b1"),
            &route("admin", "d"),
            DuplicatePolicy::KeepFirst,
        )
        .await;
        c.close().await;
    }
    run_raw(
        url,
        &[
            "DROP INDEX idx_studies_accession",
            "ALTER TABLE studies DROP COLUMN referring_physician_name",
            "DELETE FROM schema_version",
            "INSERT INTO schema_version (version, applied_at) VALUES (6, '2026-01-01T00:00:00Z')",
        ],
    )
    .await;

    let c = Catalog::connect(url).await.expect("reconnect");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    let found = c
        .search(&Search {
            level: Level::Study,
            conditions: vec![Condition {
                attribute: Attribute::ReferringPhysicianName,
                value: "house^gregory".into(),
            }],
            scope: Scope::All,
            limit: 10,
            offset: 0,
        })
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].study.as_ref().map(|s| s.uid.as_str()), Some("S1"));
    c.close().await;
}

/// Version 8 adds the pending flag of the scheduler: a series scheduled for its last arrival
/// is not pending after the upgrade, one with an arrival since is.
async fn migrates_a_version_7_catalog(url: &str) {
    use radport_catalog::JobKind;
    let kinds = [JobKind::Thumbnail];
    {
        let c = Catalog::connect(url).await.expect("connect");
        for (study, series, sop) in [("A", "S1", "s1a"), ("B", "S2", "s2a")] {
            record(
                &c,
                &rec(study, series, sop),
                &route("admin", "d"),
                DuplicatePolicy::KeepFirst,
            )
            .await;
        }
        let mut first = c
            .schedule_stable_series(Duration::ZERO, &kinds, 3)
            .await
            .expect("schedule");
        first.sort();
        assert_eq!(first, ["S1", "S2"]);
        tokio::time::sleep(Duration::from_millis(5)).await;
        record(
            &c,
            &rec("B", "S2", "s2b"),
            &route("admin", "d"),
            DuplicatePolicy::KeepFirst,
        )
        .await;
        c.close().await;
    }
    run_raw(
        url,
        &[
            "DROP INDEX idx_series_pending",
            "ALTER TABLE series DROP COLUMN pipeline_pending",
            // The indexes on what the hot path changes, which version 9 drops.
            "CREATE INDEX idx_series_last_arrival ON series (last_arrival)",
            "CREATE INDEX idx_series_modality_arrival ON series (modality, last_arrival)",
            "CREATE INDEX idx_series_study_date ON series (study_date, last_arrival)",
            "CREATE INDEX idx_instances_series ON instances (series_uid)",
            "DELETE FROM schema_version",
            "INSERT INTO schema_version (version, applied_at) VALUES (7, '2026-01-01T00:00:00Z')",
        ],
    )
    .await;

    let c = Catalog::connect(url).await.expect("reconnect");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    let again = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert_eq!(again, ["S2"], "only the series with an unscheduled arrival");
    assert!(c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule")
        .is_empty());
    let indexes: Vec<String> = sqlx::query_scalar(if url.starts_with("sqlite") {
        "SELECT name FROM sqlite_master WHERE type = 'index'"
    } else {
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema()"
    })
    .fetch_all(c.pool())
    .await
    .expect("indexes");
    for gone in [
        "idx_series_last_arrival",
        "idx_series_modality_arrival",
        "idx_series_study_date",
        "idx_instances_series",
    ] {
        assert!(!indexes.iter().any(|i| i == gone), "{gone} still there");
    }
    for made in [
        "idx_series_first_arrival",
        "idx_series_modality_first_arrival",
        "idx_series_study_date_first_arrival",
        "idx_series_pending",
    ] {
        assert!(indexes.iter().any(|i| i == made), "{made} missing");
    }
    c.close().await;
}

/// Version 11 copies each series' dataset memberships onto its row (what the dataset facet of
/// a text search groups by): filled from the memberships at the upgrade, kept by triggers
/// after it.
async fn migrates_a_version_10_catalog(url: &str) {
    let postgres = url.starts_with("postgres");
    {
        let c = Catalog::connect(url).await.expect("connect");
        c.create_project("p").await.expect("create");
        for (series, dataset) in [("S1", "d1"), ("S2", "d1"), ("S3", "d2")] {
            let mut r = rec("A", series, &format!("{series}.1"));
            r.series_description = Some(format!("Needle {series}"));
            record(&c, &r, &route("p", dataset), DuplicatePolicy::KeepFirst).await;
        }
        let mut r = rec("A", "S1", "S1.2");
        r.series_description = Some("Needle S1".into());
        record(&c, &r, &route("p", "d2"), DuplicatePolicy::KeepFirst).await;
        c.close().await;
    }
    let on = if postgres { " ON series_datasets" } else { "" };
    run_raw(
        url,
        &[
            format!("DROP TRIGGER radport_dataset_keys_insert{on}"),
            format!("DROP TRIGGER radport_dataset_keys_delete{on}"),
            "ALTER TABLE series DROP COLUMN dataset_keys".to_string(),
            "DELETE FROM schema_version".to_string(),
            "INSERT INTO schema_version (version, applied_at) VALUES (10, '2026-01-01T00:00:00Z')"
                .to_string(),
        ],
    )
    .await;

    let c = Catalog::connect(url).await.expect("reconnect");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    let needle = SeriesFilter {
        q: Some("needle".into()),
        ..all()
    };
    let datasets = |facets: radport_catalog::Facets| {
        let mut values: Vec<(String, i64)> = facets
            .dataset
            .into_iter()
            .map(|v| (v.value, v.count))
            .collect();
        values.sort();
        values
    };
    let facets = c.series_facets("p", &needle).await.expect("facets");
    assert_eq!(datasets(facets), [("d1".into(), 2), ("d2".into(), 2)]);
    // The triggers keep it after the upgrade.
    let mut r = rec("A", "S4", "S4.1");
    r.series_description = Some("Needle S4".into());
    record(&c, &r, &route("p", "d3"), DuplicatePolicy::KeepFirst).await;
    let facets = c.series_facets("admin", &needle).await.expect("facets");
    assert_eq!(
        datasets(facets),
        [("d1".into(), 2), ("d2".into(), 2), ("d3".into(), 1)]
    );
}

/// Runs statements on a connection of its own (no catalog), each failure naming its statement:
/// how the tests turn a catalog back into an older version's.
async fn run_raw<S: AsRef<str>>(url: &str, statements: &[S]) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("raw");
    for statement in statements {
        let statement = statement.as_ref();
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    conn.close().await.expect("close");
}
