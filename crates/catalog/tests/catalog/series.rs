//! Reading series: filters, detail, validation results, references, facets and sorting.

use super::*;

both!(series_filters);
both!(pages_follow_their_cursors);
both!(series_detail);
both!(validation_results);
both!(series_references);
both!(facets_and_sorting);

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
    // A filter of another kind narrows modality, body part and validation (grouped by
    // expressions then, which PostgreSQL checks strictly).
    let d1 = SeriesFilter {
        dataset: Some("d1".into()),
        ..all()
    };
    let f = c.series_facets("p", &d1).await.expect("facets by dataset");
    let named = |v: &[(&str, i64)]| {
        v.iter()
            .map(|(value, count)| (value.to_string(), *count))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&f.modality), named(&[("CT", 1), ("MR", 1)]));
    assert_eq!(counts(&f.dataset), named(&[("d1", 2), ("d2", 1)]));
    assert_eq!(counts(&f.body_part), named(&[("CHEST", 2)]));
    assert_eq!(
        counts(&f.validation),
        named(&[("unvalidated", 1), ("valid", 1)])
    );
    let text = SeriesFilter {
        q: Some("doe".into()),
        study_date_from: Some("20210101".into()),
        ..all()
    };
    let f = c.series_facets("p", &text).await.expect("facets by text");
    assert_eq!(counts(&f.modality), named(&[("CT", 1), ("MR", 1)]));
    assert_eq!(counts(&f.dataset), named(&[("d1", 1), ("d2", 1)]));
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

/// Walking a list page by page with `next` cursors gives exactly the list read in one page,
/// in both orders (study dates missing, equal and different; several series per study), with
/// a filter, and with a series arriving meanwhile (after the cursor: not in the walk). A cursor
/// of the other order, or garbage, is refused.
async fn pages_follow_their_cursors(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    c.create_project("p").await.expect("create");
    let dates = [
        Some("20240110"),
        None,
        Some("20240110"),
        Some("20230505"),
        None,
        Some("20250101"),
        Some(""),
    ];
    for (study, date) in dates.iter().enumerate() {
        for series in 0..2 {
            let mut r = rec(
                &format!("7.{study}"),
                &format!("7.{study}.{series}"),
                &format!("7.{study}.{series}.1"),
            );
            r.study_date = date.map(String::from);
            r.modality = Some(if series == 0 { "CT" } else { "MR" }.into());
            record(&c, &r, &route("p", "d"), DuplicatePolicy::KeepFirst).await;
        }
    }
    for sort in [None, Some("arrival"), Some("study_date")] {
        for modality in [None, Some("CT")] {
            let filter = SeriesFilter {
                sort: sort.map(String::from),
                modality: modality.map(String::from),
                ..all()
            };
            let whole = uids(
                &c,
                "p",
                SeriesFilter {
                    limit: Some(100),
                    ..filter.clone()
                },
            )
            .await;
            for size in [1, 2, 3, 5] {
                let mut walked = Vec::new();
                let mut after = None;
                loop {
                    let page = c
                        .list_series(
                            "p",
                            &SeriesFilter {
                                limit: Some(size),
                                after: after.clone(),
                                ..filter.clone()
                            },
                        )
                        .await
                        .expect("page");
                    assert_eq!(page.total, whole.len() as i64);
                    assert!(page.items.len() as i64 <= size);
                    walked.extend(page.items.into_iter().map(|s| s.series_instance_uid));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                    assert!(walked.len() <= whole.len(), "the walk does not end");
                }
                assert_eq!(
                    walked, whole,
                    "sort {sort:?}, modality {modality:?}, pages of {size}"
                );
            }
        }
    }
    // A series arriving after the first page is newer than the cursor: not in the rest.
    let first = c
        .list_series(
            "p",
            &SeriesFilter {
                limit: Some(3),
                ..all()
            },
        )
        .await
        .expect("first");
    record(
        &c,
        &rec("7.9", "7.9.0", "7.9.0.1"),
        &route("p", "d"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let rest = uids(
        &c,
        "p",
        SeriesFilter {
            limit: Some(100),
            after: first.next.clone(),
            ..all()
        },
    )
    .await;
    assert_eq!(rest.len(), dates.len() * 2 - 3);
    assert!(!rest.contains(&"7.9.0".to_string()));
    for bad in [
        first.next.clone().expect("next"),
        "zz".into(),
        "61".repeat(2000),
    ] {
        let by_date = SeriesFilter {
            sort: Some("study_date".into()),
            after: Some(bad),
            ..all()
        };
        assert!(matches!(
            c.list_series("p", &by_date).await,
            Err(CatalogError::Invalid(_))
        ));
    }
}
