//! The series counts the writes keep (totals and facets under dataset, modality, body part and
//! validation filters) agree with counting the series, after every kind of change and under
//! concurrent writers.

use std::sync::Arc;

use radport_catalog::{Facets, Placement};

use crate::*;

both!(kept_counts_follow_every_change);
both!(kept_counts_under_concurrent_writers);

/// The filters whose totals and facets come from the kept counts.
fn countable_filters() -> Vec<SeriesFilter> {
    let f = |modality: Option<&str>,
             dataset: Option<&str>,
             body_part: Option<&str>,
             errors: Option<bool>,
             validated: Option<bool>| SeriesFilter {
        modality: modality.map(Into::into),
        dataset: dataset.map(Into::into),
        body_part: body_part.map(Into::into),
        has_errors: errors,
        validated,
        ..Default::default()
    };
    let dated = |from: Option<&str>, to: Option<&str>, modality: Option<&str>| SeriesFilter {
        study_date_from: from.map(Into::into),
        study_date_to: to.map(Into::into),
        modality: modality.map(Into::into),
        ..Default::default()
    };
    vec![
        // Date ranges: edge months only, months between the edges, open at either end,
        // within one month (counted by a scan), with another filter.
        dated(Some("20240101"), Some("20240228"), None),
        dated(Some("2023-11-15"), Some("20240331"), None),
        dated(Some("20240111"), None, None),
        dated(None, Some("20240131"), None),
        dated(Some("20240105"), Some("20240120"), None),
        dated(Some("20231201"), Some("20240229"), Some("CT")),
        SeriesFilter {
            dataset: Some("d2".into()),
            body_part: Some("HEAD".into()),
            ..dated(Some("2023-11-15"), Some("20240315"), None)
        },
        // Whole months at the edges: read from the counts unless the month has malformed
        // dates (January 2024 has).
        dated(Some("20231201"), Some("20231231"), None),
        dated(Some("20240101"), Some("20240131"), None),
        dated(Some("20231101"), Some("20240331"), None),
        dated(Some("20240201"), None, None),
        dated(None, Some("20231231"), None),
        all(),
        f(Some("ct"), None, None, None, None),
        f(Some("MR"), None, None, None, None),
        f(None, Some("d1"), None, None, None),
        f(None, Some("D2"), Some("head"), None, None),
        f(None, None, Some("CHEST"), None, None),
        f(None, None, None, Some(true), None),
        f(None, None, None, Some(false), None),
        f(None, None, None, None, Some(false)),
        f(Some("CT"), Some("d1"), Some("CHEST"), None, Some(true)),
    ]
}

fn sorted(mut facets: Facets) -> Facets {
    for values in [
        &mut facets.modality,
        &mut facets.dataset,
        &mut facets.body_part,
        &mut facets.validation,
    ] {
        values.sort_by(|a, b| a.value.cmp(&b.value));
    }
    facets
}

/// The dataset keys on every series row (what the dataset facet of a scan groups by) list
/// exactly its memberships.
async fn assert_dataset_keys_agree(c: &Catalog, when: &str) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut on_rows: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT series_uid, dataset_keys FROM series")
        .fetch_all(c.pool())
        .await
        .expect("series");
    for (series, keys) in rows {
        assert!(
            keys.starts_with(' ') && keys.ends_with(' '),
            "{when}: {series} has {keys:?}"
        );
        let entries: Vec<String> = keys.split_whitespace().map(String::from).collect();
        let set: BTreeSet<String> = entries.iter().cloned().collect();
        assert_eq!(entries.len(), set.len(), "{when}: {series} has {keys:?}");
        on_rows.insert(series, set);
    }
    let mut memberships: BTreeMap<String, BTreeSet<String>> = on_rows
        .keys()
        .map(|s| (s.clone(), BTreeSet::new()))
        .collect();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT series_uid, project_key, dataset_key FROM series_datasets")
            .fetch_all(c.pool())
            .await
            .expect("memberships");
    for (series, project, dataset) in rows {
        memberships
            .entry(series)
            .or_default()
            .insert(format!("{project}/{dataset}"));
    }
    assert_eq!(
        on_rows, memberships,
        "{when}: dataset keys on the series rows"
    );
}

/// Totals and facets of every project under every countable filter equal a scan's, before
/// and after folding the counts.
async fn assert_counts_agree(c: &Catalog, projects: &[&str], when: &str) {
    assert_dataset_keys_agree(c, when).await;
    for fold in [false, true] {
        if fold {
            c.fold_series_counts().await.expect("fold");
        }
        for project in projects {
            for filter in countable_filters() {
                let page = c.list_series(project, &filter).await.expect("list");
                let listed = SeriesFilter {
                    limit: Some(1000),
                    ..filter.clone()
                };
                let items = c.list_series(project, &listed).await.expect("list").items;
                assert_eq!(
                    page.total,
                    items.len() as i64,
                    "{when}: total of {project} under {filter:?} (folded: {fold})"
                );
                let kept = sorted(c.series_facets(project, &filter).await.expect("facets"));
                let scanned = sorted(
                    c.series_facets_by_scan(project, &filter)
                        .await
                        .expect("scanned facets"),
                );
                let what = format!("{when}: facets of {project} under {filter:?} (folded: {fold})");
                assert_eq!(kept.modality, scanned.modality, "{what}");
                assert_eq!(kept.dataset, scanned.dataset, "{what}");
                assert_eq!(kept.body_part, scanned.body_part, "{what}");
                assert_eq!(kept.validation, scanned.validation, "{what}");
            }
        }
    }
}

fn instance(
    series: &str,
    n: u32,
    modality: Option<&str>,
    body_part: Option<&str>,
) -> InstanceRecord {
    let mut r = rec(&format!("{series}.0"), series, &format!("{series}.{n}"));
    // Study dates over several months, one series in six without.
    let last = series.bytes().last().map_or(0, |b| b % 6);
    r.study_date = [
        "20231130", "20231215", "20240110", "20240131", "20240214", "",
    ]
    .get(usize::from(last))
    .filter(|d| !d.is_empty())
    .map(|d| d.to_string());
    r.modality = modality.map(Into::into);
    r.body_part_examined = body_part.map(Into::into);
    r
}

fn finding(severity: &str) -> StoredFinding {
    StoredFinding {
        sop_instance_uid: None,
        severity: severity.into(),
        tag_path: "(0008,0060)".into(),
        keyword: "Modality".into(),
        module: None,
        message: "checked".into(),
    }
}

async fn kept_counts_follow_every_change(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    for p in ["p", "q"] {
        c.create_project(p).await.expect("project");
    }
    let projects = ["admin", "p", "q"];
    let keep = DuplicatePolicy::KeepFirst;
    record(
        &c,
        &instance("1.1", 1, Some("CT"), Some("CHEST")),
        &route("p", "d1"),
        keep,
    )
    .await;
    record(
        &c,
        &instance("1.1", 2, Some("CT"), Some("CHEST")),
        &route("p", "d1"),
        keep,
    )
    .await;
    record(
        &c,
        &instance("1.2", 1, Some("MR"), Some("HEAD")),
        &route("p", "d2"),
        keep,
    )
    .await;
    record(&c, &instance("1.3", 1, None, None), &route("q", "d1"), keep).await;
    record(
        &c,
        &instance("1.4", 1, Some("CT"), None),
        &route("admin", "d1"),
        keep,
    )
    .await;
    // The same series into a second dataset of the same project, and into another project.
    record(
        &c,
        &instance("1.2", 2, Some("MR"), Some("HEAD")),
        &route("p", "d1"),
        keep,
    )
    .await;
    record(
        &c,
        &instance("1.2", 3, Some("MR"), Some("HEAD")),
        &route("q", "d2"),
        keep,
    )
    .await;
    assert_counts_agree(&c, &projects, "recorded").await;
    let p = c.list_series("p", &all()).await.expect("list");
    assert_eq!(p.total, 2, "p holds two series");
    let first_quarter = SeriesFilter {
        study_date_from: Some("20240101".into()),
        study_date_to: Some("20240331".into()),
        ..all()
    };
    let dated = c.list_series("admin", &first_quarter).await.expect("list");
    assert_eq!(
        dated.total, 3,
        "1.2, 1.3 and 1.4 are dated in the first quarter"
    );

    // Columns that change: a body part arrives late, the modality changes, validation.
    record(
        &c,
        &instance("1.4", 2, Some("CT"), Some("HEAD")),
        &route("admin", "d1"),
        keep,
    )
    .await;
    record(
        &c,
        &instance("1.3", 2, Some("SEG"), Some("CHEST")),
        &route("q", "d1"),
        keep,
    )
    .await;
    // A study date that arrives late, and one that changes month.
    let mut dated = instance("1.5", 1, Some("MR"), None);
    record(&c, &dated, &route("p", "d1"), keep).await;
    dated.sop_instance_uid = "1.5.2".into();
    dated.study_date = Some("20240301".into());
    record(&c, &dated, &route("p", "d1"), keep).await;
    // Malformed study dates sort among the months by their text, as the filter compares them.
    for (uid, date) in [
        ("1.6", "2024011"),
        ("1.7", "2024"),
        ("1.8", "2024-01-20"),
        ("1.9", "20240132"),
    ] {
        let mut odd = instance(uid, 1, Some("CT"), None);
        odd.study_date = Some(date.into());
        record(&c, &odd, &route("p", "d2"), keep).await;
    }
    let mut moved = instance("1.1", 3, Some("CT"), Some("CHEST"));
    moved.study_date = Some("20240105".into());
    record(&c, &moved, &route("p", "d1"), keep).await;
    c.store_validation("1.1", 2, &[], "reports/1.1.html", &[finding("error")])
        .await
        .expect("validation");
    c.store_validation("1.2", 3, &[], "reports/1.2.html", &[finding("warning")])
        .await
        .expect("validation");
    c.store_validation("1.3", 2, &[], "reports/1.3.html", &[])
        .await
        .expect("validation");
    assert_counts_agree(&c, &projects, "changed").await;
    c.store_validation("1.1", 2, &[], "reports/1.1.html", &[])
        .await
        .expect("validated again");
    assert_counts_agree(&c, &projects, "validated again").await;

    // Placement: copy, move, take out.
    c.place_series(&Placement {
        series_uid: "1.1",
        from: "p",
        to: "q",
        dataset: None,
        remove_from_source: false,
    })
    .await
    .expect("copy");
    assert_counts_agree(&c, &projects, "copied").await;
    c.place_series(&Placement {
        series_uid: "1.4",
        from: "admin",
        to: "p",
        dataset: Some("d2"),
        remove_from_source: false,
    })
    .await
    .expect("copy from admin");
    c.place_series(&Placement {
        series_uid: "1.2",
        from: "q",
        to: "p",
        dataset: Some("d3"),
        remove_from_source: true,
    })
    .await
    .expect("move 1.2 to a dataset of p, which holds it already");
    c.place_series(&Placement {
        series_uid: "1.3",
        from: "q",
        to: "p",
        dataset: Some("d3"),
        remove_from_source: true,
    })
    .await
    .expect("move");
    assert_counts_agree(&c, &projects, "moved").await;
    assert!(c
        .remove_series_from_project("1.1", "q")
        .await
        .expect("remove"));
    assert_counts_agree(&c, &projects, "taken out").await;

    // Erasure and a deleted project.
    c.erase_series(&["1.2".to_string()]).await.expect("erase");
    assert_counts_agree(&c, &projects, "erased").await;
    c.delete_project("q").await.expect("delete q");
    assert_counts_agree(&c, &["admin", "p"], "project deleted").await;
    let admin = c.list_series("admin", &all()).await.expect("list");
    assert_eq!(admin.total, 8, "1.1, 1.3, 1.4, 1.5 and 1.6-1.9 are left");
}

/// Writers on many connections at once (PostgreSQL commits them concurrently): new series in
/// several projects and datasets, columns changing while memberships are added, placement and
/// validation in between. The counts end up exactly the scan's.
async fn kept_counts_under_concurrent_writers(url: &str) {
    let c = Arc::new(Catalog::connect(url).await.expect("connect"));
    for p in ["p", "q"] {
        c.create_project(p).await.expect("project");
    }
    let modalities = [Some("CT"), Some("MR"), None];
    let body_parts = [Some("CHEST"), None, Some("HEAD"), Some("KNEE")];
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..24u32 {
                // Series shared between writers: the same series arrives through several
                // routes at once, and its later instances change modality or body part.
                let series = format!("2.{}", i % 12);
                let n = w * 100 + i;
                let r = instance(
                    &series,
                    n,
                    modalities[((w + i) % 3) as usize],
                    body_parts[((w * 3 + i) % 4) as usize],
                );
                let to = route(
                    ["admin", "p", "q"][(w % 3) as usize],
                    &format!("d{}", w % 2),
                );
                c.record_instance(&r, &to, DuplicatePolicy::KeepFirst)
                    .await
                    .expect("record");
                if i % 5 == 4 {
                    let findings = if w % 2 == 0 {
                        vec![]
                    } else {
                        vec![finding("error")]
                    };
                    c.store_validation(&series, 1, &[], "reports/r.html", &findings)
                        .await
                        .expect("validation");
                }
                if i % 7 == 3 {
                    c.fold_series_counts().await.expect("fold while writing");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    assert_counts_agree(&c, &["admin", "p", "q"], "concurrent writers").await;
}
