//! `radport-bench-record`: times the receiver's catalog hot path, `Catalog::record_instance`,
//! alone (no network, no file writes): a fresh SQLite catalog on disk, instances of 300-slice
//! CT series with a realistic DICOM JSON document each, recorded by 1 and by 4 concurrent
//! tasks (as 1 and 4 associations would). Prints a table. Run with
//! `cargo run --release -p radport-bench --bin radport-bench-record`.
//!
//! A second table times what the receiver's pack writer calls instead on SQLite, a
//! `GroupRecorder` recording groups of 1 and of 4 new instances (`Durability::Deferred`), with
//! the recording thread's CPU time per instance: 5 alternating runs of each group size, median
//! and range.
//!
//! `BENCH_INSTANCES` (default 3000) sets the count per run; `BENCH_CATALOG_URL` runs it against
//! another catalog (e.g. a PostgreSQL URL) instead of a fresh SQLite file (the second table is
//! SQLite's only).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use radport_bench::metadata_json;
use radport_catalog::{Catalog, DuplicatePolicy, Durability, InstanceRecord, NewInstance, Route};

fn record(run: &str, i: usize) -> InstanceRecord {
    let series = i / 300;
    InstanceRecord {
        sop_instance_uid: format!("2.25.{run}7{i}"),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        series_instance_uid: format!("2.25.{run}8{series}"),
        study_instance_uid: format!("2.25.{run}9{}", series / 2),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        patient_id: Some(format!("PAT{run}{}", series / 4)),
        patient_name: Some("Doe^Jane".into()),
        patient_birth_date: Some("19700101".into()),
        patient_sex: Some("F".into()),
        study_date: Some("20240102".into()),
        study_time: Some("101010".into()),
        study_description: Some("CT CHEST".into()),
        accession_number: Some("ACC1".into()),
        study_id: Some("1".into()),
        series_description: Some("Axial 1mm".into()),
        modality: Some("CT".into()),
        body_part_examined: Some("CHEST".into()),
        series_number: Some(3),
        instance_number: Some((i % 300) as i64 + 1),
        rows: Some(512),
        columns: Some(512),
        size: 525_000,
        checksum: format!("blake3:{i:064}"),
        object_key: format!("instances/bench/{run}/{i}.dcm"),
        metadata_json: metadata_json(i),
        source: "dimse:BENCH".into(),
        ..Default::default()
    }
}

async fn run(catalog: Arc<Catalog>, run: &str, tasks: usize, count: usize) -> Result<f64> {
    let records: Vec<Vec<InstanceRecord>> = (0..tasks)
        .map(|t| {
            (t * count / tasks..(t + 1) * count / tasks)
                .map(|i| record(run, i))
                .collect()
        })
        .collect();
    let start = Instant::now();
    let mut handles = Vec::new();
    for (t, chunk) in records.into_iter().enumerate() {
        let catalog = catalog.clone();
        handles.push(tokio::spawn(async move {
            let route = Route {
                project: "admin".into(),
                dataset: format!("bench{t}"),
            };
            for rec in &chunk {
                catalog
                    .record_instance(rec, &route, DuplicatePolicy::KeepFirst)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Records `count` new instances in groups of `group` with one `GroupRecorder`, on a thread
/// of its own: (wall seconds, CPU seconds of that thread).
async fn run_groups(
    catalog: &Catalog,
    run: &str,
    group: usize,
    count: usize,
) -> Result<(f64, f64)> {
    let mut recorder = catalog
        .group_recorder()
        .ok_or_else(|| anyhow::anyhow!("no group recorder (SQLite on a file only)"))?;
    let route = Route {
        project: "admin".into(),
        dataset: "bench-groups".into(),
    };
    let instances: Vec<NewInstance> = (0..count)
        .map(|i| NewInstance {
            record: record(run, i),
            route: route.clone(),
            durability: Durability::Deferred,
        })
        .collect();
    tokio::task::spawn_blocking(move || {
        let (start, cpu) = (Instant::now(), thread_cpu_seconds());
        for chunk in instances.chunks(group) {
            anyhow::ensure!(
                recorder.record_new(chunk.iter().map(NewInstance::row)),
                "a group was not recorded"
            );
        }
        Ok((start.elapsed().as_secs_f64(), thread_cpu_seconds() - cpu))
    })
    .await?
}

fn median_and_range(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        values[values.len() / 2],
        values[0],
        values[values.len() - 1],
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    let count: usize = std::env::var("BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let dir = std::env::temp_dir().join(format!("radport-bench-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = std::env::var("BENCH_CATALOG_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.join("catalog.db").display()));
    let catalog = Arc::new(Catalog::connect(&url).await?);
    let stamp = std::process::id().to_string();
    println!(
        "Catalog hot path (record_instance), {count} instances per run, release build, {}\n",
        url.split(':').next().unwrap_or("?")
    );
    println!("| concurrent tasks | instances/s | µs per instance |");
    println!("|---:|---:|---:|");
    for tasks in [1usize, 4] {
        let secs = run(catalog.clone(), &format!("{stamp}{tasks}"), tasks, count).await?;
        println!(
            "| {tasks} | {:.0} | {:.0} |",
            count as f64 / secs,
            secs * 1e6 / count as f64
        );
    }
    if url.starts_with("sqlite") {
        println!(
            "\nThe pack writer's path (GroupRecorder::record_new, deferred durability), \
             {count} instances per run, 5 runs alternating\n"
        );
        println!("| group | instances/s (median, min–max) | µs per instance | CPU µs per instance (median, min–max) |");
        println!("|---:|---:|---:|---:|");
        let groups = [1usize, 4];
        let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); groups.len()];
        for round in 0..5 {
            for (g, &group) in groups.iter().enumerate() {
                let (wall, cpu) =
                    run_groups(&catalog, &format!("{stamp}g{group}r{round}"), group, count).await?;
                results[g].0.push(count as f64 / wall);
                results[g].1.push(cpu * 1e6 / count as f64);
            }
        }
        for (&group, (rates, cpus)) in groups.iter().zip(results) {
            let (rate, rate_min, rate_max) = median_and_range(rates);
            let (cpu, cpu_min, cpu_max) = median_and_range(cpus);
            println!(
                "| {group} | {rate:.0} ({rate_min:.0}–{rate_max:.0}) | {:.0} | {cpu:.1} ({cpu_min:.1}–{cpu_max:.1}) |",
                1e6 / rate
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
