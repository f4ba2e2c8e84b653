//! `radport-bench-qido`: QIDO-RS searches through the DICOMweb engine (query string → catalog
//! search → DICOM JSON) over the SQLite catalog `radport-bench-catalog` seeds (100 000 series,
//! cached between runs; seeded here if missing). Prints p50 / p95 / max of each query. Run
//! through `bench/qido.sh`.

use std::time::Instant;

use anyhow::Result;
use radport_catalog::{Catalog, DuplicatePolicy, InstanceRecord, Route, SeriesFilter};
use radport_dicomweb::{qido, DicomWeb, Level, Scope, Target};

const MODALITIES: &[&str] = &["CT", "MR", "PT", "CR", "US", "SEG"];
const BODY_PARTS: &[&str] = &["CHEST", "HEAD", "ABDOMEN", "PELVIS", "KNEE"];

/// The same records as `radport-bench-catalog` (one instance per series, three series per study).
fn record(i: usize) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: format!("2.25.7{i}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        series_instance_uid: format!("2.25.8{i}"),
        study_instance_uid: format!("2.25.9{}", i / 3),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        patient_id: Some(format!("PAT{:05}", i / 7)),
        patient_name: Some(format!("Name{}^Given{}", i % 997, i % 13)),
        study_date: Some(format!(
            "20{:02}{:02}{:02}",
            10 + i % 15,
            1 + i % 12,
            1 + i % 28
        )),
        study_description: Some(format!("Study {}", i % 50)),
        series_description: Some(format!("Series {} {}", i % 40, MODALITIES[i % 6])),
        modality: Some(MODALITIES[i % MODALITIES.len()].into()),
        body_part_examined: Some(BODY_PARTS[i % BODY_PARTS.len()].into()),
        instance_number: Some(1),
        size: 1000,
        checksum: format!("blake3:{i:064}"),
        object_key: format!("instances/bench/{i}.dcm"),
        metadata_json: "{}".into(),
        source: "bench".into(),
        ..Default::default()
    }
}

fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%5C", "\\")))
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let count: usize = std::env::var("BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = std::path::PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp/radport-bench-catalog".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let url = format!(
        "sqlite://{}",
        dir.join(format!("catalog-{count}.db")).display()
    );
    let catalog = Catalog::connect(&url).await?;
    let filter = SeriesFilter {
        limit: Some(0),
        ..Default::default()
    };
    let existing = catalog.list_series("admin", &filter).await?.total as usize;
    if existing < count {
        let t = Instant::now();
        for i in existing..count {
            let route = Route {
                project: "admin".into(),
                dataset: format!("dataset{}", i % 20),
            };
            catalog
                .record_instance(&record(i), &route, DuplicatePolicy::KeepFirst)
                .await?;
        }
        eprintln!(
            "seeded {} series in {:.1} s",
            count - existing,
            t.elapsed().as_secs_f64()
        );
    }
    let archive = radport_archive::Archive::local(&dir.join("archive"))?;
    let engine = DicomWeb::new(radport_ingest::Ingestor::new(
        archive,
        catalog.clone(),
        DuplicatePolicy::KeepFirst,
    ));
    let study = "2.25.91234".to_string();
    let cases: Vec<(&str, Level, Target, String)> = vec![
        (
            "studies, first page (limit=101, as OHIF's list)",
            Level::Study,
            Target::default(),
            "limit=101".into(),
        ),
        (
            "studies?PatientName=name42*",
            Level::Study,
            Target::default(),
            "PatientName=name42*&limit=101".into(),
        ),
        (
            "studies?PatientID=PAT01234",
            Level::Study,
            Target::default(),
            "PatientID=PAT01234".into(),
        ),
        (
            "studies?StudyDate=20210101-20211231",
            Level::Study,
            Target::default(),
            "StudyDate=20210101-20211231&limit=101".into(),
        ),
        (
            "studies?ModalitiesInStudy=MR",
            Level::Study,
            Target::default(),
            "ModalitiesInStudy=MR&limit=101".into(),
        ),
        (
            "studies?AccessionNumber=none",
            Level::Study,
            Target::default(),
            "AccessionNumber=none".into(),
        ),
        (
            "series, first page (limit=100)",
            Level::Series,
            Target::default(),
            "limit=100".into(),
        ),
        (
            "series?Modality=CT (limit=100)",
            Level::Series,
            Target::default(),
            "Modality=CT&limit=100".into(),
        ),
        (
            "series?Modality=CT (limit=1000)",
            Level::Series,
            Target::default(),
            "Modality=CT".into(),
        ),
        (
            "series?SeriesDescription=*12*",
            Level::Series,
            Target::default(),
            "SeriesDescription=*12*&limit=100".into(),
        ),
        (
            "series?PatientID=PAT01234",
            Level::Series,
            Target::default(),
            "PatientID=PAT01234".into(),
        ),
        (
            "series of one study (OHIF opens a study)",
            Level::Series,
            Target {
                study: Some(study.clone()),
                ..Target::default()
            },
            String::new(),
        ),
        (
            "instances of one study",
            Level::Instance,
            Target {
                study: Some(study),
                ..Target::default()
            },
            String::new(),
        ),
    ];
    println!(
        "QIDO-RS through the DICOMweb engine, SQLite, {count} series ({} studies), release build\n",
        count / 3
    );
    println!("| query | answers | p50 | p95 | max | catalog search alone, p50 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, level, target, query) in cases {
        let parsed = qido::parse(level, &target, &params(&query), Scope::All)?;
        let mut times = Vec::with_capacity(runs);
        let mut catalog_times = Vec::with_capacity(runs);
        let mut answers = 0;
        for _ in 0..runs {
            let t = Instant::now();
            std::hint::black_box(catalog.search(&parsed.search).await?);
            catalog_times.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let answer = engine
                .search(&parsed, "http://localhost:8080/dicomweb")
                .await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let parsed: serde_json::Value = serde_json::from_slice(&answer.body)?;
            answers = parsed.as_array().map_or(0, Vec::len);
        }
        times.sort_by(f64::total_cmp);
        catalog_times.sort_by(f64::total_cmp);
        let catalog_p50 = catalog_times[catalog_times.len() / 2];
        let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).saturating_sub(1)];
        println!(
            "| {name} | {answers} | {:.1} ms | {:.1} ms | {:.1} ms | {catalog_p50:.1} ms |",
            at(0.5),
            at(0.95),
            times[times.len() - 1]
        );
    }
    println!("\n({runs} runs each; target: series search at 10⁵ series p95 < 50 ms)");
    Ok(())
}
