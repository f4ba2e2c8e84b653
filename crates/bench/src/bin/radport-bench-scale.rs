//! `radport-bench-scale`: the catalog at hospital scale. Records `BENCH_INSTANCES` instances
//! (default 1 000 000; `BENCH_PER_SERIES` per series, default 10) through the receiver's hot
//! path, `Catalog::record_instance`, from `BENCH_WRITERS` concurrent tasks (default 4, as four
//! associations), each with a DICOM JSON document of a CT slice's size; prints the rate of
//! every tenth of the way (is it flat?). Then, on the full catalog, times what users and the
//! server ask of it: the gallery's page + facets under each filter (p50/p95 of 20), a series'
//! detail (20 series), and the stable-series scheduler's tick (nothing pending, one series
//! pending); and prints the database's size per instance. Run through `bench/scale.sh`.
//!
//! The catalog is kept between runs (`BENCH_CATALOG_URL`, default an SQLite file under
//! `BENCH_DIR`); a run resumes recording where the last one stopped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use radport_bench::metadata_json;
use radport_catalog::{Catalog, DuplicatePolicy, InstanceRecord, JobKind, Route, SeriesFilter};

const MODALITIES: &[&str] = &["CT", "MR", "PT", "CR", "US", "SEG"];
const BODY_PARTS: &[&str] = &["CHEST", "HEAD", "ABDOMEN", "PELVIS", "KNEE"];

/// Instance `n` of series `s`: five series a study, two studies a patient; modality, body
/// part, dates and names vary as the gallery's filters need.
fn record(s: usize, n: usize, per_series: usize) -> InstanceRecord {
    let study = s / 5;
    let i = s * per_series + n;
    InstanceRecord {
        sop_instance_uid: format!("2.25.7{i}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        series_instance_uid: format!("2.25.8{s}"),
        study_instance_uid: format!("2.25.9{study}"),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        patient_id: Some(format!("PAT{:07}", study / 2)),
        patient_name: Some(format!("Name{}^Given{}", study % 997, study % 13)),
        patient_birth_date: Some("19700101".into()),
        patient_sex: Some(if study.is_multiple_of(2) { "F" } else { "M" }.into()),
        study_date: Some(format!(
            "20{:02}{:02}{:02}",
            10 + study % 15,
            1 + study % 12,
            1 + study % 28
        )),
        study_time: Some("101010".into()),
        study_description: Some(format!("Study {}", study % 50)),
        accession_number: Some(format!("ACC{study}")),
        study_id: Some("1".into()),
        series_description: Some(format!("Series {} {}", s % 40, MODALITIES[s % 6])),
        modality: Some(MODALITIES[s % MODALITIES.len()].into()),
        body_part_examined: Some(BODY_PARTS[s % BODY_PARTS.len()].into()),
        series_number: Some((s % 7) as i64 + 1),
        instance_number: Some(n as i64 + 1),
        rows: Some(512),
        columns: Some(512),
        size: 525_000,
        checksum: format!("blake3:{i:064}"),
        object_key: format!("instances/bench/{i}.dcm"),
        metadata_json: metadata_json(i),
        source: "dimse:BENCH".into(),
        ..Default::default()
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Median and 95th percentile (nearest rank) of `samples`, in ms.
fn p50_p95(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        ms(samples[rank - 1])
    };
    (at(0.5), at(0.95))
}

/// Records series `from..to` with `writers` tasks; returns the time it took.
async fn record_series(
    catalog: &Arc<Catalog>,
    from: usize,
    to: usize,
    per_series: usize,
    writers: usize,
) -> Result<Duration> {
    let next = Arc::new(AtomicUsize::new(from));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (catalog, next) = (catalog.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let route = Route {
                project: "admin".into(),
                dataset: format!("dataset{w}"),
            };
            loop {
                let s = next.fetch_add(1, Ordering::Relaxed);
                if s >= to {
                    return anyhow::Ok(());
                }
                for n in 0..per_series {
                    catalog
                        .record_instance(
                            &record(s, n, per_series),
                            &route,
                            DuplicatePolicy::KeepFirst,
                        )
                        .await?;
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// Bytes the database takes: SQLite's files, or PostgreSQL's `pg_database_size`.
async fn database_bytes(url: &str) -> Result<u64> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            if let Ok(meta) = std::fs::metadata(format!("{path}{suffix}")) {
                total += meta.len();
            }
        }
        return Ok(total);
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await?;
    let bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&pool)
        .await?;
    Ok(bytes as u64)
}

#[tokio::main]
async fn main() -> Result<()> {
    let instances = env_usize("BENCH_INSTANCES", 1_000_000);
    let per_series = env_usize("BENCH_PER_SERIES", 10).max(1);
    let writers = env_usize("BENCH_WRITERS", 4).max(1);
    let series = instances / per_series;
    let dir = std::path::PathBuf::from(
        std::env::var("BENCH_DIR").unwrap_or_else(|_| "/tmp/radport-bench-scale".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let url = std::env::var("BENCH_CATALOG_URL").unwrap_or_else(|_| {
        format!(
            "sqlite://{}",
            dir.join(format!("scale-{instances}.db")).display()
        )
    });
    let backend = if url.starts_with("sqlite") {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    let opened = Instant::now();
    let catalog = Arc::new(Catalog::connect(&url).await.context("catalog")?);
    // An older catalog is upgraded here (schema 10 counts every series once).
    eprintln!("catalog opened in {:.1} s", opened.elapsed().as_secs_f64());
    let total_series = |c: Arc<Catalog>| async move {
        anyhow::Ok(
            c.list_series(
                "admin",
                &SeriesFilter {
                    limit: Some(0),
                    ..Default::default()
                },
            )
            .await?
            .total as usize,
        )
    };
    // Resume a little before where the last run stopped: its last series may be partial (a
    // second copy of an instance is a kept duplicate, not a second row).
    let existing = total_series(catalog.clone()).await?;
    let resume = existing.saturating_sub(writers).min(series);
    println!(
        "Catalog at scale, {backend}, {instances} instances in {series} series ({per_series} \
         each), {writers} concurrent writers, release build\n"
    );
    if resume < series {
        println!("| recorded (instances) | instances/s over this tenth | µs per instance |");
        println!("|---:|---:|---:|");
        let tenth = series.div_ceil(10).max(1);
        let mut from = resume;
        while from < series {
            let to = ((from / tenth + 1) * tenth).min(series);
            let took = record_series(&catalog, from, to, per_series, writers).await?;
            let count = (to - from) * per_series;
            println!(
                "| {} | {:.0} | {:.0} |",
                to * per_series,
                count as f64 / took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / count as f64
            );
            from = to;
        }
        println!();
    } else {
        println!("(recorded by an earlier run: {existing} series)\n");
    }

    // What each node's scheduler does every pass: fold the counts the writes appended.
    let fold = Instant::now();
    let folded = catalog.fold_series_counts().await?;
    println!(
        "counts folded in {:.0} ms ({folded} count rows)\n",
        ms(fold.elapsed())
    );

    // The gallery: page of 50 + facets, under each filter.
    let mut cases = radport_bench::gallery_cases("dataset1");
    cases.insert(
        5,
        (
            "patient".to_string(),
            SeriesFilter {
                patient_id: Some(format!("PAT{:07}", series / 20)),
                ..Default::default()
            },
        ),
    );
    // The page after 50 000 series, reached as a client paging forward does: by the cursor
    // of the page before it (read once, not timed).
    let before = catalog
        .list_series(
            "admin",
            &SeriesFilter {
                offset: Some(49_950),
                ..Default::default()
            },
        )
        .await?;
    if let Some(next) = before.next {
        cases.push((
            "page 1001 by its cursor (after 50 000)".to_string(),
            SeriesFilter {
                after: Some(next),
                ..Default::default()
            },
        ));
    }
    println!("| gallery query | page + facets p50 | p95 | target p95 |");
    println!("|---|---:|---:|---:|");
    for (name, filter) in cases {
        let mut samples = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            std::hint::black_box(catalog.list_series("admin", &filter).await?);
            std::hint::black_box(catalog.series_facets("admin", &filter).await?);
            samples.push(t.elapsed());
        }
        let (p50, p95) = p50_p95(samples);
        println!("| {name} | {p50:.1} ms | {p95:.1} ms | < 100 ms |");
    }

    let mut samples = Vec::new();
    for k in 0..20 {
        let s = (k * 7919 + 13) % series;
        let t = Instant::now();
        let detail = catalog.get_series(&format!("2.25.8{s}")).await?;
        samples.push(t.elapsed());
        anyhow::ensure!(detail.is_some(), "series {s} missing");
    }
    let (p50, p95) = p50_p95(samples);
    println!("| series detail ({per_series} instances) | {p50:.1} ms | {p95:.1} ms | < 50 ms |");

    // The scheduler: first everything recorded is scheduled (no jobs: only the flags are
    // cleared), then ticks with nothing pending, then a tick that finds one arrival.
    let drain = Instant::now();
    let mut ticks = 0;
    while !catalog
        .schedule_stable_series(Duration::ZERO, &[], 3)
        .await?
        .is_empty()
    {
        ticks += 1;
    }
    eprintln!(
        "scheduled the backlog in {ticks} ticks, {:.1} s",
        drain.elapsed().as_secs_f64()
    );
    let kinds = [JobKind::Thumbnail, JobKind::Validate];
    let mut idle = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let found = catalog
            .schedule_stable_series(Duration::ZERO, &kinds, 3)
            .await?;
        idle.push(t.elapsed());
        anyhow::ensure!(found.is_empty(), "nothing should be pending");
    }
    let (p50, p95) = p50_p95(idle);
    println!("| scheduler tick, nothing pending | {p50:.2} ms | {p95:.2} ms | < 10 ms |");
    let mut one = Vec::new();
    // New UIDs in every run (a copy of an earlier run's instance is a kept duplicate).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for k in 0..5 {
        // A late instance reopens a series.
        let s = (k * 104_729 + 1) % series;
        let mut late = record(s, per_series + k, per_series);
        late.sop_instance_uid = format!("2.25.6{s}.{k}.{run}");
        catalog
            .record_instance(
                &late,
                &Route {
                    project: "admin".into(),
                    dataset: "late".into(),
                },
                DuplicatePolicy::KeepFirst,
            )
            .await?;
        let t = Instant::now();
        let found = catalog
            .schedule_stable_series(Duration::ZERO, &kinds, 3)
            .await?;
        one.push(t.elapsed());
        anyhow::ensure!(found.len() == 1, "one series pending, found {found:?}");
    }
    let (p50, p95) = p50_p95(one);
    println!(
        "| scheduler tick, one series pending (2 jobs) | {p50:.2} ms | {p95:.2} ms | < 10 ms |"
    );

    let bytes = database_bytes(&url).await?;
    let recorded = series * per_series;
    println!(
        "\nDatabase: {:.2} GB, {:.0} bytes per instance (DICOM JSON of 3.4 KB each included).",
        bytes as f64 / 1e9,
        bytes as f64 / recorded as f64
    );
    Ok(())
}
