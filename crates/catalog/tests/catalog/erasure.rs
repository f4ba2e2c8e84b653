//! Erasing series, studies and patients; copying and moving series between projects.

use radport_catalog::{Placement, Subject};

use super::*;

both!(erasing);
both!(placing);
both!(unshared);

/// Two patients: PID-1 with study S1 (series A: 2 instances, B: 1) and S2 (series C), PID-2
/// with study S3 (series D). Everything in project lung, dataset d1; C also in project heart.
async fn two_patients(c: &Catalog) {
    c.create_project("lung").await.expect("project");
    c.create_project("heart").await.expect("project");
    let lung = route("lung", "d1");
    for (study, series, sop) in [
        ("S1", "A", "a1"),
        ("S1", "A", "a2"),
        ("S1", "B", "b1"),
        ("S2", "C", "c1"),
    ] {
        record(
            c,
            &rec(study, series, sop),
            &lung,
            DuplicatePolicy::KeepFirst,
        )
        .await;
    }
    record(
        c,
        &rec("S2", "C", "c2"),
        &route("heart", "h"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    let mut d = rec("S3", "D", "d1");
    d.patient_id = Some("PID-2".into());
    record(c, &d, &lung, DuplicatePolicy::KeepFirst).await;
}

async fn erasing(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    two_patients(&c).await;
    for series in ["A", "B"] {
        c.enqueue_job(&radport_catalog::NewJob {
            kind: radport_catalog::JobKind::Thumbnail,
            series_uid: Some(series.into()),
            payload: serde_json::json!({}),
            max_attempts: 2,
        })
        .await
        .expect("job");
    }

    assert_eq!(c.series_of(Subject::Series("A")).await.unwrap(), ["A"]);
    assert_eq!(
        c.series_of(Subject::Series("Z")).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(c.series_of(Subject::Study("S1")).await.unwrap(), ["A", "B"]);
    assert_eq!(
        c.series_of(Subject::Patient("PID-1")).await.unwrap(),
        ["A", "B", "C"]
    );
    assert_eq!(
        c.projects_of_series_set(&["A".into(), "C".into()])
            .await
            .unwrap(),
        ["admin", "heart", "lung"]
    );

    // One series: its instances go, its study stays (B is left).
    let erased = c.erase_series(&["A".into()]).await.expect("erase A");
    assert_eq!(erased.series, ["A"]);
    assert_eq!(erased.instances, 2);
    assert_eq!((erased.studies, erased.patients), (0, 0));
    let mut keys = erased.object_keys.clone();
    keys.sort();
    assert_eq!(keys, ["objects/a1", "objects/a2"]);
    assert!(c.get_series("A").await.unwrap().is_none());
    assert!(c.get_instance("A", "a1").await.unwrap().is_none());
    assert!(c.projects_of_series("A").await.unwrap().is_empty());
    assert_eq!(
        uids(&c, "lung", all()).await.len(),
        3,
        "B, C and D are left"
    );
    assert!(c.get_series("B").await.unwrap().is_some());
    let jobs = c.list_jobs(&Default::default()).await.unwrap();
    let series_of_jobs: Vec<_> = jobs
        .items
        .iter()
        .filter_map(|j| j.series_uid.clone())
        .collect();
    assert_eq!(
        series_of_jobs,
        ["B"],
        "the series' pending jobs go with it, B's stay"
    );
    // A validation that finishes after the erasure records nothing.
    assert!(matches!(
        c.store_validation("A", 2, &[], "reports/A.html", &[]).await,
        Err(CatalogError::NotFound(_))
    ));
    assert!(c.get_validation("A").await.unwrap().is_none());
    // Again: nothing left to erase.
    assert_eq!(
        c.erase_series(&["A".into()]).await.unwrap(),
        Default::default()
    );

    // A patient: both of PID-1's studies and the patient row go; PID-2 stays.
    let series = c.series_of(Subject::Patient("PID-1")).await.unwrap();
    assert_eq!(series, ["B", "C"]);
    let erased = c.erase_series(&series).await.expect("erase PID-1");
    assert_eq!(erased.instances, 3);
    assert_eq!((erased.studies, erased.patients), (2, 1));
    assert!(c
        .series_of(Subject::Patient("PID-1"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(uids(&c, "lung", all()).await, ["D"]);
    assert!(uids(&c, "heart", all()).await.is_empty());
    let facets = c.series_facets("admin", &all()).await.unwrap();
    let modality: i64 = facets.modality.iter().map(|v| v.count).sum();
    assert_eq!(modality, 1, "facets count what is left");
    assert_eq!(c.series_of(Subject::Patient("PID-2")).await.unwrap(), ["D"]);

    // A series that arrives again after its erasure is a new series.
    record(
        &c,
        &rec("S1", "A", "a1"),
        &route("lung", "d1"),
        DuplicatePolicy::KeepFirst,
    )
    .await;
    assert_eq!(
        c.get_series("A")
            .await
            .unwrap()
            .expect("back")
            .instances
            .len(),
        1
    );
}

async fn placing(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    two_patients(&c).await;
    c.create_project("brain").await.expect("project");
    let place = |series_uid, from, to, dataset, remove_from_source| Placement {
        series_uid,
        from,
        to,
        dataset,
        remove_from_source,
    };

    // Copy: in both projects, with the dataset it had.
    c.place_series(&place("A", "lung", "brain", None, false))
        .await
        .expect("copy");
    assert_eq!(
        c.projects_of_series("A").await.unwrap(),
        ["admin", "brain", "lung"]
    );
    let ds = c.list_datasets("brain").await.unwrap();
    assert_eq!(
        ds.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["d1"]
    );
    assert_eq!(ds[0].series_count, 1);
    // Move, into a named dataset: out of heart, into brain/moved-here.
    c.place_series(&place("C", "heart", "brain", Some("Moved-Here"), true))
        .await
        .expect("move");
    assert_eq!(
        c.projects_of_series("C").await.unwrap(),
        ["admin", "brain", "lung"]
    );
    assert!(uids(&c, "heart", all()).await.is_empty());
    let in_dataset = SeriesFilter {
        dataset: Some("moved-here".into()),
        ..all()
    };
    assert_eq!(uids(&c, "brain", in_dataset).await, ["C"]);
    assert_eq!(uids(&c, "brain", all()).await.len(), 2);

    // Refusals.
    let refused = [
        (place("A", "lung", "admin", None, false), "into admin"),
        (place("A", "lung", "lung", None, false), "onto itself"),
        (place("A", "admin", "heart", None, true), "out of admin"),
        (
            place("A", "lung", "brain", Some("no/slash"), false),
            "bad dataset",
        ),
    ];
    for (p, what) in refused {
        assert!(
            matches!(c.place_series(&p).await, Err(CatalogError::Invalid(_))),
            "{what}"
        );
    }
    for (p, what) in [
        (place("D", "heart", "brain", None, false), "not in heart"),
        (
            place("A", "lung", "nowhere", None, false),
            "no such project",
        ),
        (place("Z", "lung", "brain", None, false), "no such series"),
    ] {
        assert!(
            matches!(c.place_series(&p).await, Err(CatalogError::NotFound(_))),
            "{what}"
        );
    }
    // Copy out of admin is allowed (an administrator filing a series).
    c.place_series(&place("D", "admin", "heart", None, false))
        .await
        .expect("copy from admin");
    assert_eq!(uids(&c, "heart", all()).await, ["D"]);
    let ds = c.list_datasets("heart").await.unwrap();
    assert!(ds
        .iter()
        .any(|d| d.name == radport_catalog::DEFAULT_PLACED_DATASET));

    // Taking a series out of a project.
    assert!(c.remove_series_from_project("A", "brain").await.unwrap());
    assert!(!c.remove_series_from_project("A", "brain").await.unwrap());
    assert!(matches!(
        c.remove_series_from_project("A", "admin").await,
        Err(CatalogError::Invalid(_))
    ));
    assert_eq!(c.projects_of_series("A").await.unwrap(), ["admin", "lung"]);
}

async fn unshared(url: &str) {
    let c = Catalog::connect(url).await.expect("connect");
    two_patients(&c).await;
    // lung holds A, B, C, D; C is also in heart.
    assert_eq!(c.unshared_series("lung").await.unwrap(), ["A", "B", "D"]);
    assert!(c.unshared_series("heart").await.unwrap().is_empty());
    c.place_series(&Placement {
        series_uid: "A",
        from: "lung",
        to: "heart",
        dataset: None,
        remove_from_source: false,
    })
    .await
    .expect("copy");
    assert_eq!(c.unshared_series("lung").await.unwrap(), ["B", "D"]);
}
