//! Integration tests against a real SQLite file in a temporary directory and against a fresh
//! database on the PostgreSQL server of `RADPORT_TEST_POSTGRES_URL` (required: without it the
//! PostgreSQL variants fail; scripts/test.sh starts a server).
//! Every test body is a function taking a URL; `both!` generates one test per backend.

use std::collections::BTreeSet;
use std::time::Duration;

use radport_catalog::{
    Catalog, CatalogError, CatalogOptions, Dialect, DuplicatePolicy, InstanceRecord, RecordOutcome,
    Route, SeriesFilter, StoredFinding, SCHEMA_VERSION,
};

// ----- harness -----------------------------------------------------------------------------

struct SqliteDb {
    _dir: tempfile::TempDir,
    url: String,
}

impl SqliteDb {
    fn new() -> SqliteDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
        SqliteDb { _dir: dir, url }
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = super::SqliteDb::new();
                super::$name(&db.url).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = radport_testkit::postgres::TestDatabase::create(stringify!($name)).await;
                super::$name(&db.url).await;
                db.drop_database().await;
            }
        }
    };
}

both!(projects);
both!(visibility);
both!(datasets);
both!(duplicate_policies);
both!(memberships_without_new_instance);
both!(series_filters);
both!(series_detail);
both!(invalid_records);
both!(concurrent_recording);
both!(concurrent_failures_do_not_fail_others);
both!(job_queue);
both!(stable_series_scheduling);
both!(two_schedulers_schedule_an_arrival_once);
both!(validation_results);
both!(series_references);
both!(facets_and_sorting);
both!(migrates_a_version_2_catalog);
both!(dead_workers_use_their_attempts);
both!(failed_workflow_jobs_fail_their_run);
both!(lease_renewal);

// ----- helpers -----------------------------------------------------------------------------

fn rec(study: &str, series: &str, sop: &str) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: sop.to_string(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".to_string(),
        series_instance_uid: series.to_string(),
        study_instance_uid: study.to_string(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".to_string(),
        patient_id: Some("PID-1".to_string()),
        patient_name: Some("Doe^John".to_string()),
        modality: Some("CT".to_string()),
        study_date: Some("20240110".to_string()),
        size: 1000,
        checksum: format!("blake3:{sop}"),
        object_key: format!("objects/{sop}"),
        metadata_json: format!(r#"{{"00080018":{{"vr":"UI","Value":["{sop}"]}}}}"#),
        source: "test".to_string(),
        ..Default::default()
    }
}

fn route(project: &str, dataset: &str) -> Route {
    Route {
        project: project.to_string(),
        dataset: dataset.to_string(),
    }
}

fn all() -> SeriesFilter {
    SeriesFilter::default()
}

async fn uids(c: &Catalog, project: &str, filter: SeriesFilter) -> Vec<String> {
    c.list_series(project, &filter)
        .await
        .expect("list_series")
        .items
        .into_iter()
        .map(|s| s.series_instance_uid)
        .collect()
}

async fn record(c: &Catalog, r: &InstanceRecord, to: &Route, p: DuplicatePolicy) -> RecordOutcome {
    c.record_instance(r, to, p).await.expect("record_instance")
}

// ----- test bodies -------------------------------------------------------------------------

async fn projects(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    assert_eq!(
        c.dialect(),
        if url.starts_with("sqlite") {
            Dialect::Sqlite
        } else {
            Dialect::Postgres
        }
    );
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    assert_eq!(
        c.find_project("ADMIN").await.expect("find").map(|p| p.name),
        Some("admin".to_string())
    );

    let p = c.create_project("Lung-CT").await.expect("create");
    assert_eq!(
        (p.name.as_str(), p.series_count, p.dataset_count),
        ("Lung-CT", 0, 0)
    );
    let found = c
        .find_project("lung-ct")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(found.name, "Lung-CT");
    assert!(matches!(
        c.create_project("LUNG-ct").await,
        Err(CatalogError::Conflict(_))
    ));
    assert!(c.find_project("lung").await.expect("find").is_none());
    assert!(c
        .find_project("no such/name")
        .await
        .expect("find")
        .is_none());

    let too_long = "x".repeat(65);
    for bad in ["", "a b", "a/b", "é", "..", "semi;colon", too_long.as_str()] {
        assert!(
            matches!(c.create_project(bad).await, Err(CatalogError::Invalid(_))),
            "{bad:?} accepted"
        );
    }
    assert!(c.create_project(&"y".repeat(64)).await.is_ok());

    assert!(matches!(
        c.delete_project("admin").await,
        Err(CatalogError::Invalid(_))
    ));
    assert!(matches!(
        c.delete_project("Admin").await,
        Err(CatalogError::Invalid(_))
    ));
    assert!(matches!(
        c.delete_project("nope").await,
        Err(CatalogError::NotFound(_))
    ));
    assert!(matches!(
        c.list_datasets("nope").await,
        Err(CatalogError::NotFound(_))
    ));

    record(
        &c,
        &rec("1.1", "1.1.1", "1.1.1.1"),
        &route("lung-ct", "ds1"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let listed = c.list_projects().await.expect("list");
    let names: Vec<_> = listed.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["admin", "Lung-CT", "y".repeat(64).as_str()]);
    let admin = &listed[0];
    assert_eq!((admin.series_count, admin.dataset_count), (1, 0));
    let lung = &listed[1];
    assert_eq!((lung.series_count, lung.dataset_count), (1, 1));

    // Deleting removes datasets and memberships, not series or instances.
    c.delete_project("LUNG-CT").await.expect("delete");
    assert!(c.find_project("Lung-CT").await.expect("find").is_none());
    assert!(matches!(
        c.delete_project("Lung-CT").await,
        Err(CatalogError::NotFound(_))
    ));
    assert_eq!(uids(&c, "admin", all()).await, ["1.1.1"]);
    let detail = c.get_series("1.1.1").await.expect("get").expect("series");
    assert_eq!(detail.projects, ["admin"]);
    assert!(detail.dataset_memberships.is_empty());
    assert!(c
        .get_instance("1.1.1", "1.1.1.1")
        .await
        .expect("get")
        .is_some());

    c.create_project("lung-ct").await.expect("re-create");
    assert!(uids(&c, "Lung-CT", all()).await.is_empty());
    assert!(c
        .list_datasets("lung-ct")
        .await
        .expect("datasets")
        .is_empty());

    // Reconnecting runs the idempotent schema again and keeps the data.
    c.close().await;
    let c = Catalog::connect_with(
        url,
        &CatalogOptions {
            max_connections: Some(2),
            ..Default::default()
        },
    )
    .await
    .expect("reconnect");
    assert_eq!(c.schema_version().await.expect("version"), SCHEMA_VERSION);
    // A process started by a server only checks the version: no write transaction.
    let checked = Catalog::connect_with(
        url,
        &CatalogOptions {
            max_connections: Some(1),
            schema_already_set_up: true,
        },
    )
    .await
    .expect("connect to a set-up catalog");
    assert_eq!(
        checked.schema_version().await.expect("version"),
        SCHEMA_VERSION
    );
    checked.close().await;
    assert_eq!(c.list_projects().await.expect("list").len(), 3);
    assert_eq!(uids(&c, "admin", all()).await, ["1.1.1"]);
}

async fn visibility(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p1").await.expect("create");
    c.create_project("p2").await.expect("create");

    let r = rec("2.1", "2.1.1", "2.1.1.1");
    assert_eq!(
        record(&c, &r, &route("P1", "d1"), DuplicatePolicy::KeepFirst).await,
        RecordOutcome::Stored
    );
    let page = c.list_series("p1", &all()).await.expect("list");
    assert_eq!(page.total, 1);
    let s = &page.items[0];
    assert_eq!(s.series_instance_uid, "2.1.1");
    assert_eq!(s.study_instance_uid, "2.1");
    assert_eq!(s.datasets, ["d1"]);
    assert_eq!((s.instance_count, s.total_size), (1, 1000));
    assert_eq!(s.patient_name.as_deref(), Some("Doe^John"));
    assert_eq!(s.first_arrival, s.last_arrival);

    let admin = c.list_series("admin", &all()).await.expect("list");
    assert_eq!(admin.total, 1);
    assert_eq!(
        admin.items[0].datasets,
        ["d1"],
        "admin sees the datasets of every project"
    );
    let by_dataset = SeriesFilter {
        dataset: Some("d1".into()),
        ..all()
    };
    assert_eq!(
        c.list_series("admin", &by_dataset)
            .await
            .expect("list")
            .total,
        1
    );
    let admin_datasets = c.list_datasets("admin").await.expect("datasets");
    assert_eq!(admin_datasets.len(), 1);
    assert_eq!(admin_datasets[0].name, "d1");
    assert_eq!(admin_datasets[0].series_count, 1);
    assert_eq!(c.list_series("p2", &all()).await.expect("list").total, 0);
    assert!(matches!(
        c.list_series("p3", &all()).await,
        Err(CatalogError::NotFound(_))
    ));

    // Unknown project: nothing is recorded.
    let r2 = rec("2.2", "2.2.1", "2.2.1.1");
    assert!(matches!(
        c.record_instance(&r2, &route("p3", "d"), DuplicatePolicy::KeepFirst)
            .await,
        Err(CatalogError::NotFound(_))
    ));
    assert!(c
        .get_instance("2.2.1", "2.2.1.1")
        .await
        .expect("get")
        .is_none());
    assert!(c.get_series("2.2.1").await.expect("get").is_none());
    assert_eq!(c.list_series("admin", &all()).await.expect("list").total, 1);

    // Routing straight to admin works and gives admin a dataset.
    record(
        &c,
        &r2,
        &route("admin", "direct"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let admin = c.list_series("admin", &all()).await.expect("list");
    assert_eq!(admin.total, 2);
    let direct = admin
        .items
        .iter()
        .find(|s| s.series_instance_uid == "2.2.1")
        .expect("2.2.1");
    assert_eq!(direct.datasets, ["direct"]);
    assert_eq!(c.list_series("p1", &all()).await.expect("list").total, 1);
}

async fn datasets(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("proj").await.expect("create");
    assert!(c.list_datasets("proj").await.expect("list").is_empty());

    record(
        &c,
        &rec("3.1", "3.1.1", "3.1.1.1"),
        &route("proj", "Batch-1"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let ds = c.list_datasets("PROJ").await.expect("list");
    assert_eq!(ds.len(), 1);
    assert_eq!(
        (ds[0].name.as_str(), ds[0].project.as_str()),
        ("Batch-1", "proj")
    );
    assert_eq!(ds[0].series_count, 1);
    let first_arrival = ds[0].last_arrival.clone().expect("last arrival");

    tokio::time::sleep(Duration::from_millis(5)).await;
    // Same dataset under another spelling: appended, not duplicated.
    record(
        &c,
        &rec("3.1", "3.1.1", "3.1.1.2"),
        &route("proj", "batch-1"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    record(
        &c,
        &rec("3.1", "3.1.2", "3.1.2.1"),
        &route("proj", "BATCH-1"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let ds = c.list_datasets("proj").await.expect("list");
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].name, "Batch-1");
    assert_eq!(ds[0].series_count, 2);
    assert!(ds[0].last_arrival.clone().expect("last arrival") > first_arrival);

    record(
        &c,
        &rec("3.1", "3.1.3", "3.1.3.1"),
        &route("proj", "other"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let names: Vec<_> = c
        .list_datasets("proj")
        .await
        .expect("list")
        .into_iter()
        .map(|d| (d.name, d.series_count))
        .collect();
    assert_eq!(
        names,
        [("Batch-1".to_string(), 2), ("other".to_string(), 1)]
    );
    let p = c.find_project("proj").await.expect("find").expect("exists");
    assert_eq!((p.series_count, p.dataset_count), (3, 2));
    assert_eq!(
        uids(
            &c,
            "proj",
            SeriesFilter {
                dataset: Some("batch-1".into()),
                ..all()
            }
        )
        .await
        .into_iter()
        .collect::<BTreeSet<_>>(),
        BTreeSet::from(["3.1.1".to_string(), "3.1.2".to_string()])
    );

    assert!(matches!(
        c.record_instance(
            &rec("3.1", "3.1.4", "3.1.4.1"),
            &route("proj", "a b"),
            DuplicatePolicy::KeepFirst
        )
        .await,
        Err(CatalogError::Invalid(_))
    ));
    assert_eq!(c.list_datasets("proj").await.expect("list").len(), 2);
}

async fn duplicate_policies(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p").await.expect("create");
    let to = route("p", "d");
    let series = "4.1.1";

    let mut a = rec("4.1", series, "4.1.1.1");
    a.object_key = "k1".into();
    a.checksum = "blake3:s1".into();
    a.size = 100;
    a.study_description = Some("First".into());
    assert_eq!(
        record(&c, &a, &to, DuplicatePolicy::KeepFirst).await,
        RecordOutcome::Stored
    );
    assert_eq!(RecordOutcome::Stored.object_to_delete(&a), None);

    // KeepFirst: the stored row is untouched.
    let mut b = a.clone();
    b.object_key = "k2".into();
    b.checksum = "blake3:s2".into();
    b.size = 200;
    b.study_description = Some("Second".into());
    let outcome = record(&c, &b, &to, DuplicatePolicy::KeepFirst).await;
    assert_eq!(
        outcome,
        RecordOutcome::DuplicateKept {
            existing_key: "k1".into()
        }
    );
    assert_eq!(outcome.object_to_delete(&b), Some("k2"));
    let row = c
        .get_instance(series, "4.1.1.1")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (row.object_key.as_str(), row.checksum.as_str(), row.size),
        ("k1", "blake3:s1", 100)
    );
    let s = c
        .get_series(series)
        .await
        .expect("get")
        .expect("series")
        .series;
    assert_eq!((s.instance_count, s.total_size), (1, 100));
    assert_eq!(
        s.study_description.as_deref(),
        Some("First"),
        "kept duplicate changes nothing"
    );

    // Overwrite: row, counters and metadata follow the new object.
    let mut o = a.clone();
    o.object_key = "k3".into();
    o.checksum = "blake3:s3".into();
    o.size = 300;
    o.rows = Some(512);
    o.study_description = None; // absent values do not erase known ones
    o.metadata_json = r#"{"marker":"overwritten"}"#.into();
    let outcome = record(&c, &o, &to, DuplicatePolicy::Overwrite).await;
    assert_eq!(
        outcome,
        RecordOutcome::Replaced {
            old_key: "k1".into()
        }
    );
    assert_eq!(outcome.object_to_delete(&o), Some("k1"));
    let row = c
        .get_instance(series, "4.1.1.1")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (row.object_key.as_str(), row.checksum.as_str(), row.size),
        ("k3", "blake3:s3", 300)
    );
    assert_eq!(row.rows, Some(512));
    let detail = c.get_series(series).await.expect("get").expect("series");
    assert_eq!(
        (detail.series.instance_count, detail.series.total_size),
        (1, 300)
    );
    assert_eq!(detail.series.study_description.as_deref(), Some("First"));
    assert_eq!(detail.metadata["marker"], "overwritten");

    // Overwrite with the same key: nothing to delete.
    let outcome = record(&c, &o, &to, DuplicatePolicy::Overwrite).await;
    assert_eq!(
        outcome,
        RecordOutcome::Replaced {
            old_key: "k3".into()
        }
    );
    assert_eq!(outcome.object_to_delete(&o), None);

    // OverwriteIfDifferent, same hash: kept.
    let mut same = o.clone();
    same.object_key = "k4".into();
    let outcome = record(&c, &same, &to, DuplicatePolicy::OverwriteIfDifferent).await;
    assert_eq!(
        outcome,
        RecordOutcome::DuplicateKept {
            existing_key: "k3".into()
        }
    );
    assert_eq!(
        c.get_instance(series, "4.1.1.1")
            .await
            .expect("get")
            .expect("row")
            .object_key,
        "k3"
    );

    // OverwriteIfDifferent, different hash: replaced, size adjusted.
    let mut diff = o.clone();
    diff.object_key = "k5".into();
    diff.checksum = "blake3:s5".into();
    diff.size = 50;
    diff.study_description = Some("Fifth".into());
    let outcome = record(&c, &diff, &to, DuplicatePolicy::OverwriteIfDifferent).await;
    assert_eq!(
        outcome,
        RecordOutcome::Replaced {
            old_key: "k3".into()
        }
    );
    let s = c
        .get_series(series)
        .await
        .expect("get")
        .expect("series")
        .series;
    assert_eq!((s.instance_count, s.total_size), (1, 50));
    assert_eq!(s.study_description.as_deref(), Some("Fifth"));

    // A second instance, then an overwrite that moves it to another series.
    let mut second = rec("4.1", series, "4.1.1.2");
    second.size = 10;
    record(&c, &second, &to, DuplicatePolicy::KeepFirst).await;
    let s = c
        .get_series(series)
        .await
        .expect("get")
        .expect("series")
        .series;
    assert_eq!((s.instance_count, s.total_size), (2, 60));
    let mut moved = second.clone();
    moved.series_instance_uid = "4.1.2".into();
    moved.object_key = "moved".into();
    moved.size = 7;
    let outcome = record(&c, &moved, &to, DuplicatePolicy::Overwrite).await;
    assert_eq!(
        outcome,
        RecordOutcome::Replaced {
            old_key: "objects/4.1.1.2".into()
        }
    );
    let old = c.get_series(series).await.expect("get").expect("series");
    assert_eq!((old.series.instance_count, old.series.total_size), (1, 50));
    assert_eq!(old.instances.len(), 1);
    let new = c.get_series("4.1.2").await.expect("get").expect("series");
    assert_eq!((new.series.instance_count, new.series.total_size), (1, 7));
    assert!(c
        .get_instance("4.1.2", "4.1.1.2")
        .await
        .expect("get")
        .is_some());
    assert!(c
        .get_instance(series, "4.1.1.2")
        .await
        .expect("get")
        .is_none());
    assert_eq!(uids(&c, "p", all()).await.len(), 2);
}

async fn memberships_without_new_instance(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p1").await.expect("create");
    c.create_project("p2").await.expect("create");
    c.create_project("p3").await.expect("create");
    let x = rec("5.1", "5.1.1", "5.1.1.1");

    assert_eq!(
        record(&c, &x, &route("p1", "d1"), DuplicatePolicy::KeepFirst).await,
        RecordOutcome::Stored
    );
    assert!(uids(&c, "p2", all()).await.is_empty());
    let kept = RecordOutcome::DuplicateKept {
        existing_key: x.object_key.clone(),
    };
    assert_eq!(
        record(&c, &x, &route("p2", "d2"), DuplicatePolicy::KeepFirst).await,
        kept
    );
    assert_eq!(
        record(&c, &x, &route("p1", "d3"), DuplicatePolicy::KeepFirst).await,
        kept
    );
    // Content-addressed key: same key, nothing to delete.
    assert_eq!(kept.object_to_delete(&x), None);

    let p2 = c.list_series("p2", &all()).await.expect("list");
    assert_eq!(p2.total, 1);
    assert_eq!(p2.items[0].datasets, ["d2"]);
    assert_eq!(p2.items[0].instance_count, 1);
    let p1 = c.list_series("p1", &all()).await.expect("list");
    assert_eq!(p1.items[0].datasets, ["d1", "d3"]);

    // The overwrite path adds memberships too.
    let mut y = x.clone();
    y.object_key = "other".into();
    assert_eq!(
        record(&c, &y, &route("p3", "d4"), DuplicatePolicy::Overwrite).await,
        RecordOutcome::Replaced {
            old_key: x.object_key.clone()
        }
    );
    assert_eq!(uids(&c, "p3", all()).await, ["5.1.1"]);

    let detail = c.get_series("5.1.1").await.expect("get").expect("series");
    assert_eq!(detail.projects, ["admin", "p1", "p2", "p3"]);
    assert_eq!(detail.series.datasets, ["d1", "d2", "d3", "d4"]);
    let memberships: Vec<_> = detail
        .dataset_memberships
        .iter()
        .map(|m| format!("{}/{}", m.project, m.dataset))
        .collect();
    assert_eq!(memberships, ["p1/d1", "p1/d3", "p2/d2", "p3/d4"]);
    assert_eq!(
        (detail.series.instance_count, detail.instances.len()),
        (1, 1)
    );
    assert_eq!(c.list_series("admin", &all()).await.expect("list").total, 1);
    let counts: Vec<_> = c
        .list_datasets("p1")
        .await
        .expect("list")
        .into_iter()
        .map(|d| (d.name, d.series_count))
        .collect();
    assert_eq!(counts, [("d1".to_string(), 1), ("d3".to_string(), 1)]);
}

async fn series_filters(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p").await.expect("create");
    c.create_project("q").await.expect("create");

    struct S {
        series: &'static str,
        modality: &'static str,
        date: Option<&'static str>,
        pid: &'static str,
        name: &'static str,
        study_desc: &'static str,
        series_desc: &'static str,
        accession: &'static str,
        dataset: &'static str,
    }
    let all_series = [
        S {
            series: "6.1",
            modality: "CT",
            date: Some("20240110"),
            pid: "P1",
            name: "Doe^John",
            study_desc: "Chest CT",
            series_desc: "Axial 1mm",
            accession: "ACC1",
            dataset: "a",
        },
        S {
            series: "6.2",
            modality: "MR",
            date: Some("20240215"),
            pid: "P2",
            name: "Smith^Anna",
            study_desc: "Brain MRI",
            series_desc: "T1 MPRAGE",
            accession: "ACC2",
            dataset: "b",
        },
        S {
            series: "6.3",
            modality: "CT",
            date: Some("20240301"),
            pid: "P1",
            name: "Doe^John",
            study_desc: "Abdomen",
            series_desc: "Portal venous",
            accession: "ACC3",
            dataset: "a",
        },
        S {
            series: "6.4",
            modality: "CT",
            date: None,
            pid: "P3",
            name: "Roe^Richard",
            study_desc: "100% test_x",
            series_desc: "Scout",
            accession: "ACC4",
            dataset: "b",
        },
    ];
    for s in &all_series {
        let mut r = rec(
            &format!("{}.0", s.series),
            s.series,
            &format!("{}.1", s.series),
        );
        r.modality = Some(s.modality.into());
        r.study_date = s.date.map(Into::into);
        r.patient_id = Some(s.pid.into());
        r.patient_name = Some(s.name.into());
        r.study_description = Some(s.study_desc.into());
        r.series_description = Some(s.series_desc.into());
        r.accession_number = Some(s.accession.into());
        record(&c, &r, &route("p", s.dataset), DuplicatePolicy::KeepFirst).await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    record(
        &c,
        &rec("6.9.0", "6.9", "6.9.1"),
        &route("q", "a"),
        DuplicatePolicy::KeepFirst,
    )
    .await;

    let f = |modify: fn(&mut SeriesFilter)| {
        let mut filter = all();
        modify(&mut filter);
        filter
    };
    // Most recent arrival first.
    assert_eq!(uids(&c, "p", all()).await, ["6.4", "6.3", "6.2", "6.1"]);
    assert_eq!(uids(&c, "admin", all()).await.len(), 5);
    assert_eq!(uids(&c, "q", all()).await, ["6.9"]);

    assert_eq!(
        uids(&c, "p", f(|f| f.modality = Some("ct".into()))).await,
        ["6.4", "6.3", "6.1"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.modality = Some("MR".into()))).await,
        ["6.2"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.modality = Some("".into())))
            .await
            .len(),
        4
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.dataset = Some("A".into()))).await,
        ["6.3", "6.1"]
    );
    assert!(uids(&c, "p", f(|f| f.dataset = Some("none".into())))
        .await
        .is_empty());
    assert_eq!(
        uids(&c, "q", f(|f| f.dataset = Some("a".into()))).await,
        ["6.9"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.patient_id = Some("P1".into()))).await,
        ["6.3", "6.1"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.study_date_from = Some("20240201".into()))).await,
        ["6.3", "6.2"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.study_date_to = Some("2024-02-15".into()))).await,
        ["6.2", "6.1"]
    );
    assert_eq!(
        uids(
            &c,
            "p",
            f(|f| {
                f.study_date_from = Some("20240111".into());
                f.study_date_to = Some("20240228".into());
            })
        )
        .await,
        ["6.2"]
    );
    assert!(matches!(
        c.list_series("p", &f(|f| f.study_date_from = Some("2024".into())))
            .await,
        Err(CatalogError::Invalid(_))
    ));

    assert_eq!(
        uids(&c, "p", f(|f| f.q = Some("john".into()))).await,
        ["6.3", "6.1"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.q = Some("mprage".into()))).await,
        ["6.2"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.q = Some("acc2".into()))).await,
        ["6.2"]
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.q = Some("CHEST".into()))).await,
        ["6.1"]
    );
    assert_eq!(uids(&c, "p", f(|f| f.q = Some("p3".into()))).await, ["6.4"]);
    assert_eq!(
        uids(&c, "p", f(|f| f.q = Some("%".into()))).await,
        ["6.4"],
        "% is literal"
    );
    assert_eq!(
        uids(&c, "p", f(|f| f.q = Some("_".into()))).await,
        ["6.4"],
        "_ is literal"
    );
    assert!(uids(&c, "p", f(|f| f.q = Some("nothing".into())))
        .await
        .is_empty());
    assert_eq!(
        uids(
            &c,
            "p",
            f(|f| {
                f.q = Some("doe".into());
                f.modality = Some("CT".into());
                f.dataset = Some("a".into());
            })
        )
        .await,
        ["6.3", "6.1"]
    );

    let page = c
        .list_series("p", &f(|f| f.limit = Some(2)))
        .await
        .expect("list");
    assert_eq!(page.total, 4);
    let first: Vec<_> = page
        .items
        .iter()
        .map(|s| s.series_instance_uid.as_str())
        .collect();
    assert_eq!(first, ["6.4", "6.3"]);
    let page = c
        .list_series(
            "p",
            &f(|f| {
                f.limit = Some(2);
                f.offset = Some(2);
            }),
        )
        .await
        .expect("list");
    let second: Vec<_> = page
        .items
        .iter()
        .map(|s| s.series_instance_uid.as_str())
        .collect();
    assert_eq!((page.total, second), (4, vec!["6.2", "6.1"]));
    let page = c
        .list_series("p", &f(|f| f.offset = Some(4)))
        .await
        .expect("list");
    assert_eq!((page.total, page.items.len()), (4, 0));
    let page = c
        .list_series("p", &f(|f| f.limit = Some(0)))
        .await
        .expect("list");
    assert_eq!((page.total, page.items.len()), (4, 0));
    let page = c
        .list_series(
            "p",
            &f(|f| {
                f.limit = Some(1);
                f.modality = Some("CT".into());
            }),
        )
        .await
        .expect("list");
    assert_eq!((page.total, page.items.len()), (3, 1));
    assert_eq!(
        c.list_series("p", &f(|f| f.limit = Some(100_000)))
            .await
            .expect("list")
            .items
            .len(),
        4
    );
    assert!(matches!(
        c.list_series("p", &f(|f| f.limit = Some(-1))).await,
        Err(CatalogError::Invalid(_))
    ));
    assert!(matches!(
        c.list_series("p", &f(|f| f.offset = Some(-1))).await,
        Err(CatalogError::Invalid(_))
    ));
    assert!(matches!(
        c.list_series("p", &f(|f| f.dataset = Some("bad name".into())))
            .await,
        Err(CatalogError::Invalid(_))
    ));

    let page = c
        .list_series("p", &f(|f| f.patient_id = Some("P2".into())))
        .await
        .expect("list");
    let s = &page.items[0];
    assert_eq!(s.datasets, ["b"]);
    assert_eq!(s.study_description.as_deref(), Some("Brain MRI"));
    assert_eq!(s.accession_number.as_deref(), Some("ACC2"));
    assert_eq!(s.study_date.as_deref(), Some("20240215"));
}

async fn series_detail(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p").await.expect("create");
    let to = route("p", "d");
    // (SOP UID, instance number): numeric order differs from string order.
    let instances = [
        ("7.1.1.9", Some(10)),
        ("7.1.1.10", Some(1)),
        ("7.1.1.3", None),
        ("7.1.1.2", Some(3)),
        ("7.1.1.8", Some(2)),
        ("7.1.1.1", None),
    ];
    let mut total = 0;
    for (i, (sop, number)) in instances.iter().enumerate() {
        let mut r = rec("7.1", "7.1.1", sop);
        r.instance_number = *number;
        r.size = 100 + i as i64;
        r.rows = Some(256);
        r.columns = Some(128);
        r.number_of_frames = Some(1);
        r.metadata_json = format!(r#"{{"marker":"{sop}"}}"#);
        total += r.size;
        record(&c, &r, &to, DuplicatePolicy::KeepFirst).await;
    }
    let detail = c.get_series("7.1.1").await.expect("get").expect("series");
    let order: Vec<_> = detail
        .instances
        .iter()
        .map(|i| (i.sop_instance_uid.as_str(), i.instance_number))
        .collect();
    assert_eq!(
        order,
        [
            ("7.1.1.10", Some(1)),
            ("7.1.1.8", Some(2)),
            ("7.1.1.2", Some(3)),
            ("7.1.1.9", Some(10)),
            ("7.1.1.1", None),
            ("7.1.1.3", None),
        ]
    );
    // Middle of six is index 3.
    assert_eq!(detail.metadata["marker"], "7.1.1.9");
    assert_eq!(
        (detail.series.instance_count, detail.series.total_size),
        (6, total)
    );
    assert_eq!(detail.projects, ["admin", "p"]);
    assert_eq!(detail.series.datasets, ["d"]);
    assert!(detail.series.first_arrival <= detail.series.last_arrival);
    let json = serde_json::to_value(&detail).expect("serialize");
    assert!(
        json["instances"][0].get("object_key").is_none(),
        "object_key is not serialized"
    );
    assert_eq!(json["instances"][0]["sop_instance_uid"], "7.1.1.10");

    let row = c
        .get_instance("7.1.1", "7.1.1.2")
        .await
        .expect("get")
        .expect("row");
    assert_eq!(
        (row.rows, row.columns, row.number_of_frames),
        (Some(256), Some(128), Some(1))
    );
    assert_eq!(row.object_key, "objects/7.1.1.2");
    assert_eq!(row.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    assert!(c
        .get_instance("7.1.2", "7.1.1.2")
        .await
        .expect("get")
        .is_none());
    assert!(c
        .get_instance("7.1.1", "7.1.1.99")
        .await
        .expect("get")
        .is_none());
    assert!(c.get_series("7.9").await.expect("get").is_none());

    // Unparseable stored metadata gives Null rather than an error.
    let mut bad = rec("7.2", "7.2.1", "7.2.1.1");
    bad.metadata_json = "not json".into();
    record(&c, &bad, &to, DuplicatePolicy::KeepFirst).await;
    let detail = c.get_series("7.2.1").await.expect("get").expect("series");
    assert!(detail.metadata.is_null());
}

async fn invalid_records(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p").await.expect("create");
    let to = route("p", "d");
    let good = rec("8.1", "8.1.1", "8.1.1.1");
    let cases: [fn(&mut InstanceRecord); 5] = [
        |r| r.sop_instance_uid.clear(),
        |r| r.series_instance_uid = "  ".into(),
        |r| r.study_instance_uid.clear(),
        |r| r.object_key.clear(),
        |r| r.size = -1,
    ];
    for modify in cases {
        let mut r = good.clone();
        modify(&mut r);
        assert!(matches!(
            c.record_instance(&r, &to, DuplicatePolicy::KeepFirst).await,
            Err(CatalogError::Invalid(_))
        ));
    }
    assert!(matches!(
        c.record_instance(&good, &route("bad name", "d"), DuplicatePolicy::KeepFirst)
            .await,
        Err(CatalogError::Invalid(_))
    ));
    assert_eq!(c.list_series("admin", &all()).await.expect("list").total, 0);

    // Empty optional values count as absent.
    let mut r = good.clone();
    r.study_description = Some("Desc".into());
    record(&c, &r, &to, DuplicatePolicy::KeepFirst).await;
    let mut r2 = rec("8.1", "8.1.1", "8.1.1.2");
    r2.study_description = Some(String::new());
    r2.patient_name = Some(String::new());
    record(&c, &r2, &to, DuplicatePolicy::KeepFirst).await;
    let s = c
        .get_series("8.1.1")
        .await
        .expect("get")
        .expect("series")
        .series;
    assert_eq!(s.study_description.as_deref(), Some("Desc"));
    assert_eq!(s.patient_name.as_deref(), Some("Doe^John"));
}

/// 8 tasks × 200 instances at once. Every 10th SOP UID is shared by all tasks (one Stored,
/// seven DuplicateKept each); tasks spread over two projects and four datasets.
/// Writers that fail (unknown project) interleaved with writers that succeed: on SQLite the
/// instances arriving together share a transaction (group commit); a failing one must roll
/// back nothing but itself.
async fn concurrent_failures_do_not_fail_others(url: &str) {
    const TASKS: usize = 6;
    const PER_TASK: usize = 60;
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("real").await.expect("create");
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            let good = t % 2 == 0;
            let to = route(if good { "real" } else { "ghost" }, "ds");
            let mut results = Vec::new();
            for i in 0..PER_TASK {
                let r = rec(
                    &format!("7.{t}"),
                    &format!("7.{t}.1"),
                    &format!("7.{t}.{i}"),
                );
                results.push((
                    good,
                    c.record_instance(&r, &to, DuplicatePolicy::KeepFirst).await,
                ));
            }
            results
        }));
    }
    let mut stored = 0;
    for handle in handles {
        for (good, result) in handle.await.expect("task") {
            match (good, result) {
                (true, Ok(RecordOutcome::Stored)) => stored += 1,
                (false, Err(CatalogError::NotFound(message))) => {
                    assert!(message.contains("ghost"), "{message}")
                }
                (good, other) => panic!("good={good}: unexpected {other:?}"),
            }
        }
    }
    assert_eq!(stored, TASKS / 2 * PER_TASK);
    let page = c.list_series("real", &all()).await.expect("list");
    assert_eq!(page.total as usize, TASKS / 2);
    assert!(page
        .items
        .iter()
        .all(|s| s.instance_count as usize == PER_TASK));
}

async fn concurrent_recording(url: &str) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 200;
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("even").await.expect("create");
    c.create_project("odd").await.expect("create");

    let mut handles = Vec::new();
    for t in 0..TASKS {
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            let project = if t % 2 == 0 { "even" } else { "odd" };
            let to = route(project, &format!("ds{}", t % 4));
            let mut outcomes = Vec::new();
            for i in 0..PER_TASK {
                let r = if i % 10 == 0 {
                    rec("9.0", "9.0.shared", &format!("9.0.shared.{i}"))
                } else {
                    rec(
                        &format!("9.{t}"),
                        &format!("9.{t}.{}", i % 3),
                        &format!("9.{t}.{i}"),
                    )
                };
                let outcome = c
                    .record_instance(&r, &to, DuplicatePolicy::KeepFirst)
                    .await
                    .unwrap_or_else(|e| panic!("task {t} instance {i}: {e}"));
                outcomes.push(outcome);
            }
            outcomes
        }));
    }
    let mut stored = 0;
    let mut kept = 0;
    for handle in handles {
        for outcome in handle.await.expect("task") {
            match outcome {
                RecordOutcome::Stored => stored += 1,
                RecordOutcome::DuplicateKept { .. } => kept += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let shared = PER_TASK / 10;
    let unique = TASKS * (PER_TASK - shared) + shared;
    assert_eq!(stored, unique);
    assert_eq!(kept, shared * (TASKS - 1));

    let page = c
        .list_series(
            "admin",
            &SeriesFilter {
                limit: Some(1000),
                ..all()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.total as usize, 1 + TASKS * 3);
    let instances: i64 = page.items.iter().map(|s| s.instance_count).sum();
    let bytes: i64 = page.items.iter().map(|s| s.total_size).sum();
    assert_eq!(instances as usize, unique);
    assert_eq!(bytes as usize, unique * 1000);
    let shared_series = page
        .items
        .iter()
        .find(|s| s.series_instance_uid == "9.0.shared")
        .expect("shared series");
    assert_eq!(shared_series.instance_count as usize, shared);
    let detail = c
        .get_series("9.0.shared")
        .await
        .expect("get")
        .expect("series");
    assert_eq!(detail.projects, ["admin", "even", "odd"]);
    assert_eq!(detail.series.datasets, ["ds0", "ds1", "ds2", "ds3"]);
    assert_eq!(detail.instances.len(), shared);

    assert_eq!(
        c.list_series("even", &all()).await.expect("list").total as usize,
        1 + 4 * 3
    );
    assert_eq!(
        c.list_series("odd", &all()).await.expect("list").total as usize,
        1 + 4 * 3
    );
    let ds = c.list_datasets("even").await.expect("datasets");
    let names: Vec<_> = ds
        .iter()
        .map(|d| (d.name.as_str(), d.series_count))
        .collect();
    assert_eq!(names, [("ds0", 7), ("ds2", 7)]);
}

// ----- SQLite specifics ----------------------------------------------------------------------

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
    use sqlx::Connection;
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
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.expect("raw");
    for statement in [
        "DROP INDEX idx_series_study_date",
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
    ] {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    conn.close().await.expect("close");

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
    use sqlx::Connection;
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
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("raw");
    for statement in [
        "ALTER TABLE instances RENAME COLUMN checksum TO sha256",
        "UPDATE instances SET sha256 = 'ab12'",
        "DELETE FROM schema_version",
        "INSERT INTO schema_version (version, applied_at) VALUES (2, '2026-01-01T00:00:00Z')",
    ] {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    conn.close().await.expect("close");

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

// ----- job queue -------------------------------------------------------------------------

fn job(kind: &str, series: &str, max_attempts: i64) -> radport_catalog::NewJob {
    radport_catalog::NewJob {
        kind: kind.to_string(),
        series_uid: Some(series.to_string()),
        payload: serde_json::json!({"n": 1}),
        max_attempts,
    }
}

async fn job_queue(url: &str) {
    use radport_catalog::{JobFilter, JobState};
    let c = Catalog::connect(url).await.expect("connect");
    let lease = Duration::from_secs(60);
    let id = c
        .enqueue_job(&job("thumbnail", "9.1", 2))
        .await
        .expect("enqueue");
    assert!(id.is_some());
    // A second queued job of the same kind for the same series stands for the first.
    assert_eq!(
        c.enqueue_job(&job("thumbnail", "9.1", 2))
            .await
            .expect("enqueue"),
        None
    );
    assert!(c
        .enqueue_job(&job("validate", "9.1", 2))
        .await
        .expect("enqueue")
        .is_some());

    // Claims respect kinds; a claimed job is not claimed twice.
    let claimed = c
        .claim_job(&["thumbnail"], "w1", lease)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(claimed.kind, "thumbnail");
    assert_eq!(claimed.state, JobState::Running);
    assert_eq!(claimed.attempts, 1);
    assert_eq!(claimed.payload["n"], 1);
    assert!(c
        .claim_job(&["thumbnail"], "w2", lease)
        .await
        .expect("claim")
        .is_none());
    // While it runs, new arrivals may queue another one for the same series.
    assert!(c
        .enqueue_job(&job("thumbnail", "9.1", 2))
        .await
        .expect("enqueue")
        .is_some());

    // Failure: back to queued with a backoff and the error kept, then failed for good.
    let state = c
        .fail_job(&claimed.id, "w1", "decoder exploded")
        .await
        .expect("fail");
    assert_eq!(state, JobState::Queued);
    let listed = c
        .list_jobs(&JobFilter {
            kind: Some("thumbnail".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(listed.total, 2);
    let failed_once = listed
        .items
        .iter()
        .find(|j| j.id == claimed.id)
        .expect("listed");
    assert_eq!(failed_once.last_error.as_deref(), Some("decoder exploded"));
    assert!(
        failed_once.run_after > failed_once.updated_at,
        "retry waits"
    );
    // Not due yet: the other (new) thumbnail job is claimed instead.
    let other = c
        .claim_job(&["thumbnail"], "w2", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_ne!(other.id, claimed.id);
    c.complete_job(&other.id, "w2").await.expect("complete");

    // A worker whose lease ran out loses the job; completing it then changes nothing.
    let v = c
        .claim_job(&["validate"], "w3", Duration::from_millis(1))
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = c
        .claim_job(&["validate"], "w4", lease)
        .await
        .expect("claim")
        .expect("expired job");
    assert_eq!(again.id, v.id);
    assert_eq!(again.attempts, 2);
    c.complete_job(&v.id, "w3").await.expect("stale complete");
    let state_of = |jobs: &radport_catalog::JobPage, id: &str| {
        jobs.items.iter().find(|j| j.id == id).map(|j| j.state)
    };
    let all_jobs = c.list_jobs(&JobFilter::default()).await.expect("list");
    assert_eq!(
        state_of(&all_jobs, &v.id),
        Some(JobState::Running),
        "w3 no longer holds it"
    );
    c.complete_job(&v.id, "w4").await.expect("complete");

    // Restart: running jobs go back to the queue.
    let r = c
        .enqueue_job(&job("thumbnail", "9.2", 3))
        .await
        .expect("enqueue")
        .expect("id");
    let _ = c
        .claim_job(&["thumbnail"], "dead", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(c.requeue_running_jobs().await.expect("requeue").requeued, 1);
    let after = c
        .claim_job(&["thumbnail"], "w5", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(after.id, r);

    // Filters.
    let succeeded = c
        .list_jobs(&JobFilter {
            state: Some("succeeded".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(succeeded.total, 2);
    let by_series = c
        .list_jobs(&JobFilter {
            series: Some("9.2".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(by_series.total, 1);
    assert!(matches!(
        c.list_jobs(&JobFilter {
            state: Some("sleeping".into()),
            ..Default::default()
        })
        .await,
        Err(CatalogError::Invalid(_))
    ));
    // max_attempts reached: failed.
    let f = c
        .enqueue_job(&job("once", "9.3", 1))
        .await
        .expect("enqueue")
        .expect("id");
    let j = c
        .claim_job(&["once"], "w6", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(j.id, f);
    assert_eq!(
        c.fail_job(&f, "w6", "boom").await.expect("fail"),
        JobState::Failed
    );
    assert!(c
        .claim_job(&["once"], "w6", lease)
        .await
        .expect("claim")
        .is_none());
}

/// Two nodes' schedulers on one catalog, while workers claim and finish jobs as fast as they
/// can: every arrival gets exactly one job per kind (a scheduler that read a series as due
/// must not schedule it again once the other node did and its job already started).
async fn two_schedulers_schedule_an_arrival_once(url: &str) {
    const SERIES: usize = 40;
    let a = Catalog::connect(url).await.expect("connect a");
    let b = Catalog::connect(url).await.expect("connect b");
    let kinds = ["thumbnail", "validate"];
    for i in 0..SERIES {
        record(
            &a,
            &rec("13.1", &format!("13.1.{i}"), &format!("13.1.{i}.1")),
            &route("admin", "d"),
            DuplicatePolicy::KeepFirst,
        )
        .await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in [a.clone(), b.clone()] {
        let scheduler_stop = stop.clone();
        let scheduler = c.clone();
        tasks.push(tokio::spawn(async move {
            while !scheduler_stop.load(std::sync::atomic::Ordering::Relaxed) {
                scheduler
                    .schedule_stable_series(Duration::ZERO, &kinds, 3)
                    .await
                    .expect("schedule");
            }
        }));
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(j) = c
                    .claim_job(&kinds, "w", Duration::from_secs(60))
                    .await
                    .expect("claim")
                {
                    c.complete_job(&j.id, "w").await.expect("complete");
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.expect("task");
    }
    let jobs = a
        .list_jobs(&radport_catalog::JobFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(
        jobs.total as usize,
        SERIES * kinds.len(),
        "one job per kind and series"
    );
}

async fn stable_series_scheduling(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    let kinds = ["thumbnail", "validate"];
    record(
        &c,
        &rec("8.1", "8.1.1", "8.1.1.1"),
        &route("admin", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    // Not idle long enough yet.
    let none = c
        .schedule_stable_series(Duration::from_secs(3600), &kinds, 3)
        .await
        .expect("schedule");
    assert!(none.is_empty());
    // Idle (zero idle time): scheduled once, with one job per kind.
    let due = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert_eq!(due, ["8.1.1"]);
    let again = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert!(again.is_empty(), "not scheduled twice for the same arrival");
    let jobs = c
        .list_jobs(&radport_catalog::JobFilter::default())
        .await
        .expect("list");
    assert_eq!(jobs.total, 2);
    // A late instance re-opens the series; its queued jobs still stand for it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    record(
        &c,
        &rec("8.1", "8.1.1", "8.1.1.2"),
        &route("admin", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let reopened = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert_eq!(reopened, ["8.1.1"]);
    assert_eq!(
        c.list_jobs(&radport_catalog::JobFilter::default())
            .await
            .expect("list")
            .total,
        2
    );
    // Once those ran, a further arrival brings new jobs.
    for kind in kinds {
        let j = c
            .claim_job(&[kind], "w", Duration::from_secs(60))
            .await
            .expect("claim")
            .expect("job");
        c.complete_job(&j.id, "w").await.expect("complete");
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    record(
        &c,
        &rec("8.1", "8.1.1", "8.1.1.3"),
        &route("admin", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    assert_eq!(
        c.schedule_stable_series(Duration::ZERO, &kinds, 3)
            .await
            .expect("schedule"),
        ["8.1.1"]
    );
    assert_eq!(
        c.list_jobs(&radport_catalog::JobFilter::default())
            .await
            .expect("list")
            .total,
        4
    );
}

async fn validation_results(url: &str) {
    use radport_catalog::StoredFinding;
    let c = Catalog::connect(url).await.expect("connect");
    for (series, sop) in [
        ("7.1.1", "7.1.1.1"),
        ("7.1.2", "7.1.2.1"),
        ("7.1.3", "7.1.3.1"),
    ] {
        record(
            &c,
            &rec("7.1", series, sop),
            &route("admin", "d"),
            DuplicatePolicy::KeepFirst,
        )
        .await;
    }
    let finding = |severity: &str, keyword: &str| StoredFinding {
        sop_instance_uid: Some("7.1.1.1".into()),
        severity: severity.into(),
        tag_path: "(0008,0060)".into(),
        keyword: keyword.into(),
        module: Some("General Series".into()),
        message: format!("{keyword} is wrong"),
    };
    c.store_validation(
        "7.1.1",
        1,
        &["CT Image".into()],
        "reports/7.1.1.html",
        &[finding("error", "Modality"), finding("warning", "Retired")],
    )
    .await
    .expect("store");
    c.store_validation("7.1.2", 1, &["CT Image".into()], "reports/7.1.2.html", &[])
        .await
        .expect("store");
    let v = c
        .get_validation("7.1.1")
        .await
        .expect("get")
        .expect("validated");
    assert_eq!((v.errors, v.warnings, v.instances_checked), (1, 1, 1));
    assert_eq!(v.findings[0].keyword, "Modality");
    assert_eq!(v.iods, ["CT Image"]);
    assert!(c.get_validation("7.1.3").await.expect("get").is_none());
    // Re-validation replaces.
    c.store_validation(
        "7.1.1",
        2,
        &["CT Image".into()],
        "reports/7.1.1.html",
        &[finding("warning", "Retired")],
    )
    .await
    .expect("store");
    let v = c
        .get_validation("7.1.1")
        .await
        .expect("get")
        .expect("validated");
    assert_eq!((v.errors, v.warnings, v.instances_checked), (0, 1, 2));
    assert_eq!(v.findings.len(), 1);
    // List filters and counts.
    let f = |e: Option<bool>, w: Option<bool>| SeriesFilter {
        has_errors: e,
        has_warnings: w,
        ..all()
    };
    assert_eq!(uids(&c, "admin", f(None, Some(true))).await, ["7.1.1"]);
    assert_eq!(
        uids(&c, "admin", f(Some(false), Some(false))).await,
        ["7.1.2"]
    );
    assert!(uids(&c, "admin", f(Some(true), None)).await.is_empty());
    let not_validated = SeriesFilter {
        validated: Some(false),
        ..all()
    };
    assert_eq!(uids(&c, "admin", not_validated).await, ["7.1.3"]);
    let validated = SeriesFilter {
        validated: Some(true),
        ..all()
    };
    assert_eq!(uids(&c, "admin", validated).await.len(), 2);
    let page = c.list_series("admin", &all()).await.expect("list");
    let by_uid = |u: &str| {
        page.items
            .iter()
            .find(|s| s.series_instance_uid == u)
            .expect("listed")
            .clone()
    };
    assert_eq!(by_uid("7.1.1").validation_warnings, Some(1));
    assert_eq!(by_uid("7.1.3").validation_errors, None, "not validated yet");
}

async fn series_references(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.set_series_references("seg.1", &["ct.1".into(), "ct.2".into()])
        .await
        .expect("set");
    c.set_series_references("seg.2", &["ct.1".into()])
        .await
        .expect("set");
    assert_eq!(
        c.series_referencing("ct.1").await.expect("get"),
        ["seg.1", "seg.2"]
    );
    // Replacing drops the old references.
    c.set_series_references("seg.1", &["ct.3".into()])
        .await
        .expect("set");
    assert_eq!(c.series_referencing("ct.1").await.expect("get"), ["seg.2"]);
    assert!(c.series_referencing("ct.2").await.expect("get").is_empty());
    assert_eq!(c.series_referencing("ct.3").await.expect("get"), ["seg.1"]);
}

async fn facets_and_sorting(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p").await.expect("project");
    let r = |study: &str, series: &str, modality: &str, date: &str| {
        let mut x = rec(study, series, &format!("{series}.1"));
        x.modality = Some(modality.into());
        x.study_date = Some(date.into());
        x.body_part_examined = Some("CHEST".into());
        x
    };
    let a = r("6.1", "6.1.1", "CT", "20200101");
    let b = r("6.2", "6.2.1", "CT", "20240101");
    let m = r("6.3", "6.3.1", "MR", "20220101");
    record(&c, &a, &route("p", "d1"), DuplicatePolicy::KeepFirst).await;
    record(&c, &b, &route("p", "d2"), DuplicatePolicy::KeepFirst).await;
    record(&c, &m, &route("p", "d1"), DuplicatePolicy::KeepFirst).await;
    c.store_validation("6.1.1", 1, &[], "r", &[])
        .await
        .expect("validation");
    let f = c.series_facets("p", &all()).await.expect("facets");
    let counts = |v: &[radport_catalog::FacetValue]| {
        v.iter()
            .map(|x| (x.value.clone(), x.count))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        counts(&f.modality),
        [("CT".to_string(), 2), ("MR".to_string(), 1)]
    );
    assert_eq!(
        counts(&f.dataset),
        [("d1".to_string(), 2), ("d2".to_string(), 1)]
    );
    assert_eq!(counts(&f.body_part), [("CHEST".to_string(), 3)]);
    assert_eq!(
        counts(&f.validation),
        [("unvalidated".to_string(), 2), ("valid".to_string(), 1)]
    );
    // A filter narrows the other facets but not its own.
    let ct = SeriesFilter {
        modality: Some("CT".into()),
        ..all()
    };
    let f = c.series_facets("p", &ct).await.expect("facets");
    assert_eq!(
        counts(&f.modality),
        [("CT".to_string(), 2), ("MR".to_string(), 1)]
    );
    assert_eq!(
        counts(&f.dataset),
        [("d1".to_string(), 1), ("d2".to_string(), 1)]
    );
    // Sorting by study date, newest first.
    let by_date = SeriesFilter {
        sort: Some("study_date".into()),
        ..all()
    };
    assert_eq!(uids(&c, "p", by_date).await, ["6.2.1", "6.3.1", "6.1.1"]);
    let bad = SeriesFilter {
        sort: Some("colour".into()),
        ..all()
    };
    assert!(matches!(
        c.list_series("p", &bad).await,
        Err(CatalogError::Invalid(_))
    ));
    let chest = SeriesFilter {
        body_part: Some("chest".into()),
        ..all()
    };
    assert_eq!(uids(&c, "p", chest).await.len(), 3);
}

/// A worker that dies (the process restarts, or its lease runs out) has used its attempt: the
/// job is queued again while it has attempts left, then parked `failed` with the reason, and
/// never claimed again — restart after restart.
async fn dead_workers_use_their_attempts(url: &str) {
    use radport_catalog::{JobFilter, JobState, Reaped};
    let c = Catalog::connect(url).await.expect("connect");
    let lease = Duration::from_secs(60);
    let id = c
        .enqueue_job(&job("thumbnail", "20.1", 2))
        .await
        .expect("enqueue")
        .expect("id");
    let get = |id: String| {
        let c = c.clone();
        async move { c.get_job(&id).await.expect("get").expect("job") }
    };
    // Attempt 1 dies with the process.
    let first = c
        .claim_job(&["thumbnail"], "dead", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(first.attempts, 1);
    assert_eq!(
        c.requeue_running_jobs().await.expect("requeue"),
        Reaped {
            requeued: 1,
            failed: 0
        }
    );
    let j = get(id.clone()).await;
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(
        j.last_error.as_deref(),
        Some("worker died during attempt 1 (process restarted)")
    );
    // Attempt 2, its last, dies too: failed, not queued.
    let second = c
        .claim_job(&["thumbnail"], "dead", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!((second.id.as_str(), second.attempts), (id.as_str(), 2));
    assert_eq!(
        c.requeue_running_jobs().await.expect("requeue"),
        Reaped {
            requeued: 0,
            failed: 1
        }
    );
    let j = get(id.clone()).await;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.last_error.as_deref(),
        Some("worker died during attempt 2 (process restarted)")
    );
    assert!(j.finished_at.is_some());
    // Further restarts change nothing, and nobody claims it.
    assert_eq!(
        c.requeue_running_jobs().await.expect("requeue"),
        Reaped::default()
    );
    assert!(c
        .claim_job(&["thumbnail"], "w", lease)
        .await
        .expect("claim")
        .is_none());

    // Lease expiry: the same, found by any worker's claim (even of another kind).
    let once = c
        .enqueue_job(&job("validate", "20.2", 1))
        .await
        .expect("enqueue")
        .expect("id");
    c.claim_job(&["validate"], "lost", Duration::from_millis(1))
        .await
        .expect("claim")
        .expect("job");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(c
        .claim_job(&["thumbnail"], "w", lease)
        .await
        .expect("claim")
        .is_none());
    let j = get(once.clone()).await;
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.last_error.as_deref(),
        Some("worker died during attempt 1 (lease expired)")
    );
    // Its worker, back from the dead, cannot record anything any more.
    c.complete_job(&once, "lost").await.expect("complete");
    assert_eq!(
        c.fail_job(&once, "lost", "late").await.expect("fail"),
        JobState::Running,
        "not the worker's any more"
    );
    assert_eq!(get(once).await.state, JobState::Failed);
    let failed = c
        .list_jobs(&JobFilter {
            state: Some("failed".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(failed.total, 2);
}

/// A workflow job that fails for good leaves its run failed with the reason; a retried
/// attempt leaves a line in the run's log.
async fn failed_workflow_jobs_fail_their_run(url: &str) {
    use radport_catalog::{JobState, NewJob, WORKFLOW_JOB_KIND};
    let c = Catalog::connect(url).await.expect("connect");
    let lease = Duration::from_secs(60);
    let new_run = |id: &'static str| {
        let c = c.clone();
        async move {
            c.create_workflow_run(id, "import", &serde_json::json!({}))
                .await
                .expect("run");
            c.enqueue_job(&NewJob {
                kind: WORKFLOW_JOB_KIND.into(),
                series_uid: None,
                payload: serde_json::json!({ "run": id }),
                max_attempts: 2,
            })
            .await
            .expect("enqueue")
            .expect("id")
        }
    };
    // Attempt 1 fails (the worker reports it), attempt 2 dies with the process.
    let id = new_run("run1").await;
    c.claim_job(&[WORKFLOW_JOB_KIND], "w", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(
        c.fail_job(&id, "w", "killed by signal 9 (SIGKILL)")
            .await
            .expect("fail"),
        JobState::Queued
    );
    let run = c.get_workflow_run("run1").await.expect("get").expect("run");
    assert_eq!(run.state, "queued");
    assert_eq!(
        run.log.last().map(String::as_str),
        Some("attempt 1 failed: killed by signal 9 (SIGKILL); it will be retried")
    );
    // Reaping at a restart leaves queued jobs (and their backoff) alone.
    c.requeue_running_jobs().await.expect("requeue");
    let job = c.get_job(&id).await.expect("get").expect("job");
    assert_eq!(job.state, JobState::Queued);
    assert!(job.run_after > job.updated_at, "backoff kept");
    // Attempt 2 succeeds (the run's own state is the workflow's business then).
    tokio::time::sleep(retry_wait(&job.run_after)).await;
    let retry = c
        .claim_job(&[WORKFLOW_JOB_KIND], "w", lease)
        .await
        .expect("claim")
        .expect("retry due");
    assert_eq!((retry.id.as_str(), retry.attempts), (id.as_str(), 2));
    c.complete_job(&id, "w").await.expect("complete");

    let id2 = new_run("run2").await;
    let claimed = c
        .claim_job(&[WORKFLOW_JOB_KIND], "w", lease)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(claimed.id, id2);
    c.fail_job(&id2, "w", "out of memory").await.expect("fail");
    // Make the retry due now, claim it, and let the process "die".
    let due = c.get_job(&id2).await.expect("get").expect("job");
    assert_eq!(due.state, JobState::Queued);
    tokio::time::sleep(retry_wait(&due.run_after)).await;
    let again = c
        .claim_job(&[WORKFLOW_JOB_KIND], "w", lease)
        .await
        .expect("claim")
        .expect("retry due");
    assert_eq!((again.id.as_str(), again.attempts), (id2.as_str(), 2));
    let reaped = c.requeue_running_jobs().await.expect("requeue");
    assert_eq!(reaped.failed, 1);
    let run = c.get_workflow_run("run2").await.expect("get").expect("run");
    assert_eq!(run.state, "failed");
    assert!(run.finished_at.is_some());
    assert_eq!(
        run.log.last().map(String::as_str),
        Some("failed: worker died during attempt 2 (process restarted)")
    );

    // A run that succeeded stays so even if its job's bookkeeping fails afterwards.
    let id3 = new_run("run3").await;
    let mut run = c.get_workflow_run("run3").await.expect("get").expect("run");
    tokio::time::sleep(retry_wait(&run.created_at)).await;
    c.claim_job(&[WORKFLOW_JOB_KIND], "w", lease)
        .await
        .expect("claim")
        .expect("job");
    run.state = "succeeded".into();
    c.update_workflow_run(&run).await.expect("update");
    let _ = c.fail_job(&id3, "w", "late").await.expect("fail");
    let run = c.get_workflow_run("run3").await.expect("get").expect("run");
    assert_eq!(run.state, "succeeded");
}

/// How long until an RFC 3339 time has passed (plus a little).
fn retry_wait(t: &str) -> Duration {
    let t = chrono::DateTime::parse_from_rfc3339(t).expect("time");
    let left = t.with_timezone(&chrono::Utc) - chrono::Utc::now();
    left.to_std().unwrap_or_default() + Duration::from_millis(20)
}

/// A renewed lease keeps the job its worker's; a renewal by anyone else, or after the job was
/// taken over, says so.
async fn lease_renewal(url: &str) {
    use radport_catalog::JobState;
    let c = Catalog::connect(url).await.expect("connect");
    let id = c
        .enqueue_job(&job("thumbnail", "21.1", 3))
        .await
        .expect("enqueue")
        .expect("id");
    let short = Duration::from_millis(300);
    c.claim_job(&["thumbnail"], "w1", short)
        .await
        .expect("claim")
        .expect("job");
    assert!(!c.renew_job_lease(&id, "w2", short).await.expect("renew"));
    // Renewed every 100 ms for 0.9 s: nobody takes it over.
    for _ in 0..9 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(c.renew_job_lease(&id, "w1", short).await.expect("renew"));
        assert!(c
            .claim_job(&["thumbnail"], "w2", short)
            .await
            .expect("claim")
            .is_none());
    }
    // Not renewed: the lease runs out, another worker takes the job, and w1's renewal fails.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = c
        .claim_job(&["thumbnail"], "w2", short)
        .await
        .expect("claim")
        .expect("job taken over");
    assert_eq!((taken.id.as_str(), taken.attempts), (id.as_str(), 2));
    assert!(!c.renew_job_lease(&id, "w1", short).await.expect("renew"));
    assert!(c.renew_job_lease(&id, "w2", short).await.expect("renew"));
    c.complete_job(&id, "w2").await.expect("complete");
    assert!(!c.renew_job_lease(&id, "w2", short).await.expect("renew"));
    assert_eq!(
        c.get_job(&id).await.expect("get").expect("job").state,
        JobState::Succeeded
    );
}
