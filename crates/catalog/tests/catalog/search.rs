//! Searches at the four levels with DICOM matching (the query side of DICOMweb and C-FIND).

use radport_catalog::search::{Attribute, Condition, Found, Level, Scope, Search};

use super::*;

both!(searching);
both!(scoping);

/// PID-1 Doe^John: study S1 (2024-01-10 10:15, CT series A with 3 instances numbered 3,1,2;
/// SEG series B) and S2 (2023-05-01, MR series C); PID-2 Roe^Jane: study S3 (no date, CT
/// series D). A and B in project lung, C in heart, D in lung and heart.
async fn fixture(c: &Catalog) {
    c.create_project("lung").await.expect("project");
    c.create_project("heart").await.expect("project");
    let mut records = Vec::new();
    for (sop, number) in [("a3", 3), ("a1", 1), ("a2", 2)] {
        let mut r = rec("S1", "A", sop);
        r.instance_number = Some(number);
        r.series_number = Some(2);
        r.study_time = Some("101530.25".into());
        r.referring_physician_name = Some("House^Gregory".into());
        r.accession_number = Some("ACC-1".into());
        r.study_description = Some("Chest CT".into());
        r.series_description = Some("Lung 1mm".into());
        records.push((r, "lung"));
    }
    let mut b = rec("S1", "B", "b1");
    b.modality = Some("SEG".into());
    b.series_number = Some(1);
    b.sop_class_uid = "1.2.840.10008.5.1.4.1.1.66.4".into();
    records.push((b, "lung"));
    let mut cr = rec("S2", "C", "c1");
    cr.modality = Some("MR".into());
    cr.study_date = Some("20230501".into());
    records.push((cr, "heart"));
    let mut d = rec("S3", "D", "d1");
    d.patient_id = Some("PID-2".into());
    d.patient_name = Some("Roe^Jane".into());
    d.study_date = None;
    records.push((d.clone(), "lung"));
    records.push((d, "heart"));
    for (r, project) in records {
        record(c, &r, &route(project, "d"), DuplicatePolicy::KeepFirst).await;
    }
}

fn search(level: Level, conditions: &[(Attribute, &str)], scope: Scope) -> Search {
    Search {
        level,
        conditions: conditions
            .iter()
            .map(|(attribute, value)| Condition {
                attribute: *attribute,
                value: value.to_string(),
            })
            .collect(),
        scope,
        limit: 100,
        offset: 0,
    }
}

fn studies(found: &[Found]) -> Vec<String> {
    found
        .iter()
        .map(|f| f.study.as_ref().expect("study").uid.clone())
        .collect()
}

fn series(found: &[Found]) -> Vec<String> {
    found
        .iter()
        .map(|f| f.series.as_ref().expect("series").uid.clone())
        .collect()
}

async fn find(c: &Catalog, level: Level, conditions: &[(Attribute, &str)]) -> Vec<Found> {
    c.search(&search(level, conditions, Scope::All))
        .await
        .expect("search")
}

async fn searching(url: &str) {
    use Attribute::*;
    let c = Catalog::connect(url).await.expect("connect");
    fixture(&c).await;

    // Studies newest first, undated last; computed attributes.
    let all = find(&c, Level::Study, &[]).await;
    assert_eq!(studies(&all), ["S1", "S2", "S3"]);
    assert_eq!(all[0].counts.series, Some(2));
    assert_eq!(all[0].counts.instances, Some(4));
    assert_eq!(all[0].counts.modalities, ["CT", "SEG"]);
    let s1 = all[0].study.as_ref().expect("study");
    assert_eq!(
        s1.referring_physician_name.as_deref(),
        Some("House^Gregory")
    );
    assert_eq!(all[0].patient.name.as_deref(), Some("Doe^John"));

    // Person names: wildcards and single values ignore case.
    let by_name = |v: &'static str| {
        let c = &c;
        async move { studies(&find(c, Level::Study, &[(PatientName, v)]).await) }
    };
    assert_eq!(by_name("doe*").await, ["S1", "S2"]);
    assert_eq!(by_name("DOE^JOHN").await, ["S1", "S2"]);
    assert_eq!(by_name("?oe^*").await, ["S1", "S2", "S3"]);
    assert_eq!(by_name("doe").await, Vec::<String>::new());
    assert_eq!(
        studies(&find(&c, Level::Study, &[(ReferringPhysicianName, "house*")]).await),
        ["S1"]
    );

    // Dates and times: single values and ranges.
    let by_date = |v: &'static str| {
        let c = &c;
        async move { studies(&find(c, Level::Study, &[(StudyDate, v)]).await) }
    };
    assert_eq!(by_date("20240110").await, ["S1"]);
    assert_eq!(by_date("20230101-20231231").await, ["S2"]);
    assert_eq!(by_date("20230502-").await, ["S1"]);
    assert_eq!(by_date("-20240110").await, ["S1", "S2"]);
    assert_eq!(
        studies(&find(&c, Level::Study, &[(StudyTime, "1000-1015")]).await),
        ["S1"]
    );
    assert_eq!(
        studies(&find(&c, Level::Study, &[(StudyTime, "1016-")]).await),
        Vec::<String>::new()
    );
    assert!(c
        .search(&search(
            Level::Study,
            &[(StudyDate, "2024-01-10")],
            Scope::All
        ))
        .await
        .is_err());

    // Lists, modalities in study, accession, descriptions.
    assert_eq!(
        studies(&find(&c, Level::Study, &[(StudyInstanceUid, "S3\\S2")]).await),
        ["S2", "S3"]
    );
    assert_eq!(
        studies(&find(&c, Level::Study, &[(ModalitiesInStudy, "SEG")]).await),
        ["S1"]
    );
    assert_eq!(
        studies(&find(&c, Level::Study, &[(ModalitiesInStudy, "MR\\SEG")]).await),
        ["S1", "S2"]
    );
    assert_eq!(
        studies(&find(&c, Level::Study, &[(AccessionNumber, "ACC-1")]).await),
        ["S1"]
    );
    assert_eq!(
        studies(&find(&c, Level::Study, &[(StudyDescription, "*chest*")]).await),
        ["S1"]
    );

    // Series of a study by number; across studies with study-level keys.
    let in_s1 = find(&c, Level::Series, &[(StudyInstanceUid, "S1")]).await;
    assert_eq!(series(&in_s1), ["B", "A"]);
    assert_eq!(in_s1[1].counts.instances, Some(3));
    let mut ct = series(&find(&c, Level::Series, &[(Modality, "CT")]).await);
    ct.sort();
    assert_eq!(ct, ["A", "D"]);
    let mut of_pid1 = series(&find(&c, Level::Series, &[(PatientId, "PID-1")]).await);
    of_pid1.sort();
    assert_eq!(of_pid1, ["A", "B", "C"]);
    assert_eq!(
        series(&find(&c, Level::Series, &[(SeriesDescription, "lung*")]).await),
        ["A"]
    );
    assert_eq!(
        series(&find(&c, Level::Series, &[(SeriesNumber, "2")]).await),
        ["A"]
    );

    // Instances by number; keys of every level above.
    let in_a = find(&c, Level::Instance, &[(SeriesInstanceUid, "A")]).await;
    let sops: Vec<&str> = in_a
        .iter()
        .map(|f| {
            f.instance
                .as_ref()
                .expect("instance")
                .sop_instance_uid
                .as_str()
        })
        .collect();
    assert_eq!(sops, ["a1", "a2", "a3"]);
    assert_eq!(
        in_a[0].instance.as_ref().expect("instance").object_key,
        "objects/a1"
    );
    let numbered = find(
        &c,
        Level::Instance,
        &[(StudyInstanceUid, "S1"), (InstanceNumber, "2-3")],
    )
    .await;
    assert_eq!(numbered.len(), 2);
    let segs = find(
        &c,
        Level::Instance,
        &[(SopClassUid, "1.2.840.10008.5.1.4.1.1.66.4")],
    )
    .await;
    assert_eq!(segs.len(), 1);

    // Patients with their counts.
    let patients = find(&c, Level::Patient, &[]).await;
    let ids: Vec<Option<&str>> = patients.iter().map(|f| f.patient.id.as_deref()).collect();
    assert_eq!(ids, [Some("PID-1"), Some("PID-2")]);
    assert_eq!(patients[0].counts.studies, Some(2));
    assert_eq!(patients[0].counts.series, Some(3));
    assert_eq!(patients[0].counts.instances, Some(5));
    assert_eq!(
        find(&c, Level::Patient, &[(PatientName, "roe*")])
            .await
            .len(),
        1
    );

    // A key below the level is refused; paging.
    assert!(c
        .search(&search(Level::Study, &[(Modality, "CT")], Scope::All))
        .await
        .is_err());
    let mut page = search(Level::Study, &[], Scope::All);
    page.limit = 1;
    page.offset = 1;
    assert_eq!(studies(&c.search(&page).await.expect("page")), ["S2"]);

    // The stored DICOM JSON of instances.
    let json = c
        .instance_metadata(&["a1".to_string(), "nope".to_string()])
        .await
        .expect("metadata");
    assert_eq!(json.len(), 1);
    assert!(json["a1"].contains("a1"));
}

async fn scoping(url: &str) {
    use Attribute::*;
    let c = Catalog::connect(url).await.expect("connect");
    fixture(&c).await;
    let in_scope = |scope: Scope, level: Level| {
        let c = &c;
        async move { c.search(&search(level, &[], scope)).await.expect("search") }
    };
    let heart = Scope::project("heart");
    let found = in_scope(heart.clone(), Level::Study).await;
    assert_eq!(studies(&found), ["S2", "S3"]);
    assert_eq!(found[0].counts.series, Some(1));
    let mut heart_series = series(&in_scope(heart.clone(), Level::Series).await);
    heart_series.sort();
    assert_eq!(heart_series, ["C", "D"]);
    // S1's series in lung only: its counts in lung; not visible from heart.
    let lung = in_scope(Scope::project("lung"), Level::Study).await;
    assert_eq!(studies(&lung), ["S1", "S3"]);
    assert_eq!(lung[0].counts.series, Some(2));
    assert!(c
        .search(&search(
            Level::Instance,
            &[(SeriesInstanceUid, "A")],
            heart.clone()
        ))
        .await
        .expect("search")
        .is_empty());
    // Patients with something visible only; counted over what is visible.
    let patients = in_scope(heart, Level::Patient).await;
    assert_eq!(patients.len(), 2);
    assert_eq!(patients[0].counts.series, Some(1));
    // Both projects: nothing counted twice.
    let both = Scope::Projects(vec!["lung".into(), "heart".into()]);
    let found = in_scope(both, Level::Study).await;
    assert_eq!(studies(&found), ["S1", "S2", "S3"]);
    assert_eq!(found[2].counts.series, Some(1));
    assert!(in_scope(Scope::Projects(vec![]), Level::Study)
        .await
        .is_empty());
    assert_eq!(Scope::project("ADMIN"), Scope::All);
}
