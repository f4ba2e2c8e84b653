//! `radport-bench`: times the pipeline's per-series and per-instance steps on a synthetic
//! 512×512 CT series and prints a table. Run through `bench/pipeline.sh` (release build).

use std::time::Instant;

use anyhow::Result;
use radport_pipeline::thumbnail::{middle_instance, render_instance, ThumbnailOptions};
use radport_testkit::{write_series, SeriesSpec};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let count: usize = std::env::var("BENCH_SLICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = tempdir()?;
    let spec = SeriesSpec {
        count,
        rows: 512,
        columns: 512,
        uid_seed: "4242".into(),
        ..Default::default()
    };
    let paths = write_series(&dir, &spec)?;
    let files: Vec<Vec<u8>> = paths.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let metadata: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            let obj = dicom_object::OpenFileOptions::new()
                .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
                .from_reader(&f[128..])?;
            // DICOM JSON, as the catalog stores it for each instance.
            Ok(dicom_json::to_value(obj.into_inner())?)
        })
        .collect::<Result<_>>()?;

    // Thumbnail: choose the middle slice, decode, window, resize, encode PNG.
    let options = ThumbnailOptions::default();
    let mut thumb_ms = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let index = middle_instance(&metadata).unwrap_or(count / 2);
        let png = render_instance(&files[index], &options)?;
        thumb_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(png);
    }

    // Validation of every instance, then the series.
    let t = Instant::now();
    let mut findings = 0usize;
    for f in &files {
        findings += radport_validate::validate_file(f)?.findings.len();
    }
    let per_instance_ms = t.elapsed().as_secs_f64() * 1000.0 / count as f64;
    let pairs: Vec<(String, serde_json::Value)> = metadata
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{i}"), m.clone()))
        .collect();
    let t = Instant::now();
    let series_findings = radport_validate::validate_series(&pairs).len();
    let series_ms = t.elapsed().as_secs_f64() * 1000.0;

    println!("Pipeline steps, release build, synthetic CT {count} × 512×512 16-bit, one thread\n");
    println!("| step | time | target |");
    println!("|---|---:|---:|");
    println!(
        "| thumbnail of the series (median of 20) | {:.1} ms | ≤ 100 ms |",
        median(thumb_ms)
    );
    println!("| validation per instance | {per_instance_ms:.2} ms | ≤ 5 ms |");
    println!("| series consistency check ({count} instances) | {series_ms:.1} ms | |");
    println!("\nfindings: {findings} on instances, {series_findings} on the series");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("radport-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
