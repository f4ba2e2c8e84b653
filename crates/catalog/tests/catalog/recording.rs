//! Recording instances: duplicate policies, memberships, invalid records, concurrency.

use super::*;

both!(duplicate_policies);
both!(memberships_without_new_instance);
both!(invalid_records);
both!(concurrent_recording);
both!(concurrent_failures_do_not_fail_others);
both!(instances_arriving_together_merge);
both!(deferred_records_are_visible_at_once_and_durable_at_sync);
both!(a_deferred_group_with_a_resent_instance_takes_the_careful_way);
both!(each_backend_says_how_it_records_behind);

/// What ingest's thread behind the answers is given: a group recorder on SQLite on a file,
/// the pool's group commit on PostgreSQL, and nothing for an in-memory catalog (there
/// instances are recorded before their answers).
async fn each_backend_says_how_it_records_behind(url: &str) {
    use radport_catalog::BehindRecording;
    let c = Catalog::connect(url).await.expect("connect");
    match (c.dialect(), c.behind_recording()) {
        (Dialect::Sqlite, Some(BehindRecording::GroupRecorder(_))) => {}
        (Dialect::Postgres, Some(BehindRecording::GroupCommit)) => {}
        (dialect, way) => panic!(
            "{dialect:?}: {}",
            match way {
                None => "none",
                Some(BehindRecording::GroupRecorder(_)) => "a group recorder",
                Some(BehindRecording::GroupCommit) => "group commit",
            }
        ),
    }
    c.close().await;
    let memory = Catalog::connect("sqlite::memory:").await.expect("memory");
    assert!(memory.behind_recording().is_none());
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

/// Instances of one series arriving at once are committed together (a group on PostgreSQL,
/// one transaction on SQLite): what they share must end as recording them one by one leaves
/// it — counters add up, an attribute given by any instance is kept (none of them conflict
/// here, so the order within the group does not matter), and instances already recorded,
/// or twice in the group, take the one-by-one path (overwritten, or kept).
async fn instances_arriving_together_merge(url: &str) {
    const N: i64 = 48;
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p").await.expect("create");
    let to = route("p", "together");
    // All new: the group's one statement.
    let outcomes = futures::future::join_all((0..N).map(|i| {
        let mut r = rec("5", "5.1", &format!("5.1.{i}"));
        r.size = 10 + i;
        r.modality = (i == 3).then(|| "PT".to_string());
        r.body_part_examined = (i == N - 2).then(|| "HEAD".to_string());
        r.patient_name = None;
        let (c, to) = (c.clone(), to.clone());
        async move { c.record_instance(&r, &to, DuplicatePolicy::KeepFirst).await }
    }))
    .await;
    assert!(outcomes
        .into_iter()
        .all(|o| matches!(o, Ok(RecordOutcome::Stored))));
    let detail = c.get_series("5.1").await.expect("get").expect("series");
    assert_eq!(detail.series.instance_count, N);
    assert_eq!(
        detail.series.total_size,
        (0..N).map(|i| 10 + i).sum::<i64>()
    );
    assert_eq!(detail.series.modality.as_deref(), Some("PT"));
    assert_eq!(detail.series.body_part_examined.as_deref(), Some("HEAD"));
    assert_eq!(detail.series.datasets, ["together"]);
    assert_eq!(detail.projects, ["admin", "p"]);
    assert_eq!(detail.instances.len() as i64, N);

    // Two recorded first: re-sent below with other bytes, under Overwrite.
    for i in 0..2 {
        let r = rec("6", "6.1", &format!("6.1.{i}"));
        record(&c, &r, &to, DuplicatePolicy::Overwrite).await;
    }
    let records: Vec<InstanceRecord> = (0..N)
        .map(|i| {
            let mut r = rec("6", "6.1", &format!("6.1.{i}"));
            r.size = 1000 + i;
            r.instance_number = Some(i + 1);
            r.patient_name = (i == 5).then(|| "Late^Given".to_string());
            r.modality = Some(if i % 2 == 0 { "MR" } else { "" }.to_string());
            r.body_part_examined = (i % 3 == 1).then(|| "KNEE".to_string());
            r.study_description = (i == N - 1).then(|| "Knee MRI".to_string());
            r.accession_number = (i == 7).then(|| "ACC-6".to_string());
            r
        })
        .collect();
    // One instance twice at once: one is stored (or overwrites), the other overwrites it.
    let twice = records[10].clone();
    let outcomes = futures::future::join_all(
        records
            .iter()
            .chain(std::iter::once(&twice))
            .map(|r| c.record_instance(r, &to, DuplicatePolicy::Overwrite)),
    )
    .await;
    let mut stored = 0;
    let mut replaced = 0;
    for outcome in outcomes {
        match outcome.expect("recorded") {
            RecordOutcome::Stored => stored += 1,
            RecordOutcome::Replaced { .. } => replaced += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((stored, replaced), (N - 2, 3));

    let detail = c.get_series("6.1").await.expect("get").expect("series");
    let s = &detail.series;
    assert_eq!(s.instance_count, N);
    assert_eq!(s.total_size, (0..N).map(|i| 1000 + i).sum::<i64>());
    assert_eq!(detail.instances.len() as i64, N);
    assert_eq!(s.modality.as_deref(), Some("MR"));
    assert_eq!(s.body_part_examined.as_deref(), Some("KNEE"));
    assert_eq!(s.patient_name.as_deref(), Some("Late^Given"));
    assert_eq!(s.study_description.as_deref(), Some("Knee MRI"));
    assert_eq!(s.accession_number.as_deref(), Some("ACC-6"));
    assert_eq!(s.datasets, ["together"]);
    assert_eq!(detail.projects, ["admin", "p"]);
    assert_eq!(detail.completeness.missing_count, 0);
    // The study and patient rows too.
    let (study_description, accession): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT study_description, accession_number FROM studies WHERE study_uid = '6'",
    )
    .fetch_one(c.pool())
    .await
    .expect("study");
    assert_eq!(study_description.as_deref(), Some("Knee MRI"));
    assert_eq!(accession.as_deref(), Some("ACC-6"));
    let name: Option<String> =
        sqlx::query_scalar("SELECT patient_name FROM patients WHERE patient_id = 'PID-1'")
            .fetch_one(c.pool())
            .await
            .expect("patient");
    assert_eq!(name.as_deref(), Some("Late^Given"));
}

/// Records behind the ingest journal: visible when recorded, in groups with synced ones, and
/// the SQLite writer syncs again after each deferred group.
async fn deferred_records_are_visible_at_once_and_durable_at_sync(url: &str) {
    use radport_catalog::Durability;
    let c = Catalog::connect(url).await.expect("connect");
    let mut handles = Vec::new();
    for t in 0..4usize {
        let c = c.clone();
        handles.push(tokio::spawn(async move {
            let durability = if t == 3 {
                Durability::Synced
            } else {
                Durability::Deferred
            };
            for i in 0..40 {
                let r = rec("9.1", &format!("9.1.{t}"), &format!("9.1.{t}.{i}"));
                let outcome = c
                    .record_instance_with(
                        &r,
                        &route("admin", "d"),
                        DuplicatePolicy::KeepFirst,
                        durability,
                    )
                    .await
                    .expect("recorded");
                assert_eq!(outcome, RecordOutcome::Stored);
                // Visible at once, from another connection.
                let detail = c.get_series(&r.series_instance_uid).await.unwrap().unwrap();
                assert!(detail
                    .instances
                    .iter()
                    .any(|x| x.sop_instance_uid == r.sop_instance_uid));
            }
        }));
    }
    for handle in handles {
        handle.await.expect("task");
    }
    c.sync().await.expect("sync");
    if c.dialect() == Dialect::Sqlite {
        assert_eq!(c.writer_synchronous().await.unwrap(), Some(2), "FULL again");
    }
    let page = c.list_series("admin", &all()).await.unwrap();
    assert_eq!(page.total, 4);
}

/// A deferred group that holds an instance already recorded (a re-send): the one-call path
/// fails on it and leaves nothing; the careful way records the new one and keeps the first
/// copy of the other, and the SQLite writer syncs again afterwards.
async fn a_deferred_group_with_a_resent_instance_takes_the_careful_way(url: &str) {
    use radport_catalog::Durability;
    let c = Catalog::connect(url).await.expect("connect");
    let first = rec("9.2", "9.2.1", "9.2.1.1");
    let record = |r: InstanceRecord| {
        let c = c.clone();
        async move {
            c.record_instance_with(
                &r,
                &route("admin", "d"),
                DuplicatePolicy::KeepFirst,
                Durability::Deferred,
            )
            .await
            .expect("recorded")
        }
    };
    assert_eq!(record(first.clone()).await, RecordOutcome::Stored);
    let mut again = first.clone();
    again.object_key = "instances/again.dcm".into();
    let new = rec("9.2", "9.2.1", "9.2.1.2");
    // Together (they may or may not share a group; either way the outcomes are these).
    let (again_outcome, new_outcome) = tokio::join!(record(again), record(new.clone()));
    assert_eq!(
        again_outcome,
        RecordOutcome::DuplicateKept {
            existing_key: first.object_key.clone()
        }
    );
    assert_eq!(new_outcome, RecordOutcome::Stored);
    let detail = c.get_series("9.2.1").await.unwrap().unwrap();
    assert_eq!(detail.instances.len(), 2);
    if c.dialect() == Dialect::Sqlite {
        assert_eq!(c.writer_synchronous().await.unwrap(), Some(2), "FULL again");
    }
}

/// SQLite on a file: new instances are recorded by the committer thread (its own connection),
/// deferred and synced ones alike, while the sqlx writer writes beside it; a re-send and an
/// unknown project go the careful way, with the outcomes of before; in-memory SQLite has no
/// committer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_committer_records_new_instances_and_leaves_the_rest_to_the_careful_way() {
    use radport_catalog::Durability;
    let db = SqliteDb::new();
    let c = Catalog::connect(&db.url).await.expect("connect");
    c.create_project("p").await.expect("create");
    assert_eq!(c.committer_recorded(), Some(0));
    const N: usize = 24;
    let new = futures::future::join_all((0..N).map(|i| {
        let c = c.clone();
        async move {
            let r = rec("11", &format!("11.{}", i % 3), &format!("11.{}.{i}", i % 3));
            let durability = if i % 2 == 0 {
                Durability::Deferred
            } else {
                Durability::Synced
            };
            c.record_instance_with(&r, &route("p", "d"), DuplicatePolicy::KeepFirst, durability)
                .await
        }
    }));
    // The sqlx writer at the same time: projects made, one by one.
    let beside = async {
        for i in 0..8 {
            c.create_project(&format!("beside{i}"))
                .await
                .expect("project");
        }
    };
    let (outcomes, ()) = tokio::join!(new, beside);
    for outcome in outcomes {
        assert_eq!(outcome.expect("recorded"), RecordOutcome::Stored);
    }
    assert_eq!(c.committer_recorded(), Some(N as u64));
    for s in 0..3 {
        let detail = c.get_series(&format!("11.{s}")).await.unwrap().unwrap();
        assert_eq!(detail.instances.len(), N / 3);
        assert_eq!(detail.series.instance_count, (N / 3) as i64);
        assert_eq!(detail.projects, ["admin", "p"]);
        assert_eq!(detail.series.datasets, ["d"]);
    }
    assert_eq!(c.list_projects().await.unwrap().len(), 1 + 1 + 8);

    // A later instance with new attributes changes its series (and its search text); one
    // without any keeps them.
    let mut late = rec("11", "11.1", "11.1.late");
    late.modality = Some("MR".into());
    late.series_description = Some("Late Knee".into());
    late.accession_number = None;
    record(&c, &late, &route("p", "d"), DuplicatePolicy::KeepFirst).await;
    let mut bare = rec("11", "11.1", "11.1.bare");
    bare.modality = None;
    bare.patient_id = None;
    bare.patient_name = None;
    record(&c, &bare, &route("p", "d"), DuplicatePolicy::KeepFirst).await;
    let detail = c.get_series("11.1").await.unwrap().unwrap();
    assert_eq!(detail.series.modality.as_deref(), Some("MR"));
    assert_eq!(
        detail.series.series_description.as_deref(),
        Some("Late Knee")
    );
    assert_eq!(detail.series.patient_id.as_deref(), Some("PID-1"));
    assert_eq!(detail.series.instance_count, (N / 3 + 2) as i64);
    let found = c
        .list_series(
            "p",
            &SeriesFilter {
                q: Some("late knee".into()),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(c.committer_recorded(), Some(N as u64 + 2));

    // A re-send with other bytes: replaced, by the careful way.
    let mut again = rec("11", "11.0", "11.0.0");
    again.object_key = "objects/again".into();
    again.checksum = "blake3:other".into();
    let outcome = record(&c, &again, &route("p", "d"), DuplicatePolicy::Overwrite).await;
    assert_eq!(
        outcome,
        RecordOutcome::Replaced {
            old_key: "objects/11.0.0".into()
        }
    );
    // An unknown project: refused, by the careful way; nothing of it kept.
    let stray = rec("12", "12.1", "12.1.1");
    let refused = c
        .record_instance(&stray, &route("nosuch", "d"), DuplicatePolicy::KeepFirst)
        .await;
    assert!(
        matches!(refused, Err(CatalogError::NotFound(_))),
        "{refused:?}"
    );
    assert!(c.get_series("12.1").await.unwrap().is_none());
    assert_eq!(c.committer_recorded(), Some(N as u64 + 2));
    assert_eq!(c.writer_synchronous().await.unwrap(), Some(2), "FULL");
    c.close().await;

    let memory = Catalog::connect("sqlite::memory:").await.expect("memory");
    assert_eq!(memory.committer_recorded(), None);
}

/// SQLite on a file: the committer's recorder leaves out a group's statements that would
/// change nothing (the same dataset, patient, study, series attributes and memberships as its
/// last groups), but only while no other connection has written: after the scheduler took a
/// series' arrival, a project removed it and an erasure, the next instance of the series puts
/// back exactly what recording it first would have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recorder_leaves_out_repeats_only_while_nothing_else_wrote() {
    use radport_catalog::JobKind;
    let db = SqliteDb::new();
    let c = Catalog::connect(&db.url).await.expect("connect");
    c.create_project("p").await.expect("create");
    let kinds = [JobKind::Thumbnail];
    let mut next = 0;
    let mut one_more = |c: Catalog| {
        next += 1;
        let r = rec("21", "21.1", &format!("21.1.{next}"));
        async move { record(&c, &r, &route("p", "d"), DuplicatePolicy::KeepFirst).await }
    };
    for _ in 0..3 {
        assert_eq!(one_more(c.clone()).await, RecordOutcome::Stored);
    }
    // The scheduler takes the series' arrival: not pending any more.
    let scheduled = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert_eq!(scheduled, ["21.1"]);
    assert!(c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule")
        .is_empty());
    // A new instance makes it pending again (the attribute update ran, not left out).
    assert_eq!(one_more(c.clone()).await, RecordOutcome::Stored);
    let scheduled = c
        .schedule_stable_series(Duration::ZERO, &kinds, 3)
        .await
        .expect("schedule");
    assert_eq!(scheduled, ["21.1"], "pending again after a new instance");

    // Out of its project, then a new instance: back in it.
    assert!(c.remove_series_from_project("21.1", "p").await.unwrap());
    assert_eq!(
        c.get_series("21.1").await.unwrap().unwrap().projects,
        ["admin"]
    );
    assert_eq!(one_more(c.clone()).await, RecordOutcome::Stored);
    let detail = c.get_series("21.1").await.unwrap().unwrap();
    assert_eq!(detail.projects, ["admin", "p"]);
    assert_eq!(detail.series.instance_count, 5);

    // Erased with its study, patient and dataset rows' series; then a new instance: the
    // series, its study and its memberships are there again, as at first.
    c.erase_series(&["21.1".to_string()]).await.expect("erase");
    assert!(c.get_series("21.1").await.unwrap().is_none());
    assert_eq!(one_more(c.clone()).await, RecordOutcome::Stored);
    let detail = c.get_series("21.1").await.unwrap().unwrap();
    assert_eq!(detail.projects, ["admin", "p"]);
    assert_eq!(detail.series.datasets, ["d"]);
    assert_eq!(detail.series.instance_count, 1);
    assert_eq!(detail.series.patient_id.as_deref(), Some("PID-1"));
    assert_eq!(detail.series.modality.as_deref(), Some("CT"));
    let found = c
        .list_series(
            "p",
            &SeriesFilter {
                q: Some("PID-1".into()),
                ..all()
            },
        )
        .await
        .unwrap();
    assert_eq!(found.total, 1, "search text written again");

    // Another series of the study in the same project: memberships of its own, though the
    // project's name is among the remembered values.
    let other = rec("21", "21.2", "21.2.1");
    assert_eq!(
        record(&c, &other, &route("p", "d"), DuplicatePolicy::KeepFirst).await,
        RecordOutcome::Stored
    );
    let detail = c.get_series("21.2").await.unwrap().unwrap();
    assert_eq!(detail.projects, ["admin", "p"]);
    assert_eq!(detail.series.datasets, ["d"]);
    assert!(c.committer_recorded().unwrap() >= 7, "by the recorder");
    c.close().await;
}

/// SQLite on a file: a recorder's group is recorded whole or not at all — one that fails
/// (here: an instance already recorded) leaves nothing, and the next instance of the same
/// new series records it whole (its dataset and memberships).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recorder_group_is_recorded_whole_and_a_failed_one_leaves_nothing() {
    use radport_catalog::{Durability, NewInstance};
    let db = SqliteDb::new();
    let c = Catalog::connect(&db.url).await.expect("connect");
    c.create_project("p").await.expect("create");
    let mut recorder = c.group_recorder().expect("a recorder on a file");
    let new = |sop: &str, series: &str| NewInstance {
        record: rec("31", series, sop),
        route: route("p", "d"),
        durability: Durability::Deferred,
    };
    fn rows(group: &[NewInstance]) -> impl Iterator<Item = (&InstanceRecord, &Route, Durability)> {
        group.iter().map(NewInstance::row)
    }
    async fn instances(c: &Catalog, series: &str) -> i64 {
        let detail = c.get_series(series).await.unwrap().unwrap();
        detail.series.instance_count
    }

    let first = [new("31.1.1", "31.1"), new("31.1.2", "31.1")];
    assert!(recorder.record_new(rows(&first)));
    let detail = c.get_series("31.1").await.unwrap().unwrap();
    assert_eq!(detail.series.instance_count, 2);
    assert_eq!(detail.projects, ["admin", "p"]);

    // A new series beside an instance already recorded: the group fails, all of it.
    let failing = [new("31.2.1", "31.2"), new("31.1.1", "31.1")];
    assert!(!recorder.record_new(rows(&failing)));
    assert!(c.get_series("31.2").await.unwrap().is_none());
    assert!(c.get_instance("31.2", "31.2.1").await.unwrap().is_none());
    assert_eq!(instances(&c, "31.1").await, 2);
    // The same series again: created with its study row, dataset and memberships.
    let again = [new("31.2.2", "31.2")];
    assert!(recorder.record_new(rows(&again)));
    let detail = c.get_series("31.2").await.unwrap().unwrap();
    assert_eq!(detail.series.instance_count, 1);
    assert_eq!(detail.projects, ["admin", "p"]);
    assert_eq!(detail.series.datasets, ["d"]);
    assert!(recorder.record_new(rows(&[new("31.1.3", "31.1")])));
    assert_eq!(instances(&c, "31.1").await, 3);
    drop(recorder);
    c.close().await;
}

/// SQLite on a file: a recorder that leaves checkpoints to `Catalog::sync` (as the pack
/// log's does) lets the WAL grow past SQLite's 1 000 pages until the next sync, instead of
/// checkpointing inside a group's commit; one that does not keeps it near 1 000 pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_recorder_leaves_checkpoints_to_sync_when_told() {
    use radport_catalog::{Durability, GroupRecorder, NewInstance};
    /// Pages the WAL holds room for (its header, then frames of a header and a page each).
    fn wal_pages(db: &SqliteDb) -> u64 {
        let path = db.url.trim_start_matches("sqlite://").to_string() + "-wal";
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        bytes.saturating_sub(32) / (4096 + 24)
    }
    fn record_groups(recorder: &mut GroupRecorder, from: usize, to: usize) {
        for n in from..to {
            let group = [NewInstance {
                record: rec("41", "41.1", &format!("41.1.{n}")),
                route: route("p", "d"),
                durability: Durability::Deferred,
            }];
            assert!(
                recorder.record_new(group.iter().map(NewInstance::row)),
                "group {n}"
            );
        }
    }
    async fn open(db: &SqliteDb, leave_to_sync: bool) -> (Catalog, GroupRecorder) {
        let c = Catalog::connect(&db.url).await.expect("connect");
        c.create_project("p").await.expect("create");
        let mut recorder = c.group_recorder().expect("a recorder on a file");
        if leave_to_sync {
            recorder.leave_checkpoints_to_sync();
        }
        (c, recorder)
    }

    let default = SqliteDb::new();
    let (c, mut recorder) = open(&default, false).await;
    record_groups(&mut recorder, 0, 600);
    let pages = wal_pages(&default);
    assert!(
        pages < 1_200,
        "checkpointed at 1 000 pages by default: {pages}"
    );
    drop(recorder);
    c.close().await;

    let left = SqliteDb::new();
    let (c, mut recorder) = open(&left, true).await;
    record_groups(&mut recorder, 0, 600);
    let pages = wal_pages(&left);
    assert!(pages > 2_000, "checkpointed by the recorder: {pages}");
    // A sync checkpoints all of it: the groups after it are written from the WAL's start
    // again, so the file does not grow (without the checkpoint it would, by their pages).
    c.sync().await.expect("sync");
    record_groups(&mut recorder, 600, 700);
    assert_eq!(wal_pages(&left), pages, "the WAL grew after a sync");
    let detail = c.get_series("41.1").await.unwrap().unwrap();
    assert_eq!(detail.series.instance_count, 700);
    drop(recorder);
    c.close().await;
}
