//! Projects, the visibility of series in them, and datasets.

use super::*;

both!(projects);
both!(visibility);
both!(datasets);

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
    // admin counts the datasets it lists (every project's), not those it owns (none).
    assert_eq!((admin.series_count, admin.dataset_count), (1, 1));
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
    // admin's count is of the datasets it lists: every project's, merged by name (it has none
    // of its own; the series went to it as well, under the same dataset names).
    let admin_listed = c.list_datasets("admin").await.expect("admin datasets");
    assert_eq!(admin_listed.len(), 2);
    let admin = c.find_project("admin").await.expect("find").expect("admin");
    assert_eq!(admin.dataset_count, 2);
    let listed = c.list_projects().await.expect("projects");
    let admin_in_list = listed
        .iter()
        .find(|p| p.name == "admin")
        .expect("admin listed");
    assert_eq!(admin_in_list.dataset_count, 2);
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
