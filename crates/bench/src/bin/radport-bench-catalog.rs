//! `radport-bench-catalog`: seeds an SQLite catalog with 100 000 series (cached between runs)
//! and times what the gallery asks for: the first page, facet counts, and filter changes.
//! Prints a table. Run through `bench/catalog.sh`.

use std::time::Instant;

use anyhow::Result;
use radport_catalog::{Catalog, DuplicatePolicy, InstanceRecord, Route, SeriesFilter};

const MODALITIES: &[&str] = &["CT", "MR", "PT", "CR", "US", "SEG"];
const BODY_PARTS: &[&str] = &["CHEST", "HEAD", "ABDOMEN", "PELVIS", "KNEE"];

fn record(i: usize) -> InstanceRecord {
    let study = format!("2.25.9{}", i / 3);
    let series = format!("2.25.8{i}");
    InstanceRecord {
        sop_instance_uid: format!("2.25.7{i}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        series_instance_uid: series,
        study_instance_uid: study,
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

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let count: usize = std::env::var("BENCH_SERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = std::path::PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp/radport-bench-catalog".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let db = dir.join(format!("catalog-{count}.db"));
    let url = format!("sqlite://{}", db.display());
    let catalog = Catalog::connect(&url).await?;
    let existing = catalog
        .list_series(
            "admin",
            &SeriesFilter {
                limit: Some(0),
                ..Default::default()
            },
        )
        .await?
        .total as usize;
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

    let cases = radport_bench::gallery_cases("dataset7");
    println!("Catalog queries of the gallery, SQLite, {count} series, release build\n");
    println!("| query | series page (50) | facets | page + facets |");
    println!("|---|---:|---:|---:|");
    for (name, filter) in cases {
        let mut page_ms = Vec::new();
        let mut facet_ms = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let page = catalog.list_series("admin", &filter).await?;
            page_ms.push(ms(t));
            std::hint::black_box(page);
            let t = Instant::now();
            let facets = catalog.series_facets("admin", &filter).await?;
            facet_ms.push(ms(t));
            std::hint::black_box(facets);
        }
        page_ms.sort_by(f64::total_cmp);
        facet_ms.sort_by(f64::total_cmp);
        let (p, f) = (page_ms[2], facet_ms[2]);
        println!("| {name} | {p:.1} ms | {f:.1} ms | {:.1} ms |", p + f);
    }
    println!("\n(median of 5; targets: gallery first paint < 300 ms, filter change < 100 ms)");
    Ok(())
}
