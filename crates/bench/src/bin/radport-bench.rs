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

    let (seg_frames, seg_ms) = seg_validation()?;

    println!("Pipeline steps, release build, synthetic CT {count} × 512×512 16-bit, one thread\n");
    println!("| step | time | target |");
    println!("|---|---:|---:|");
    println!(
        "| thumbnail of the series (median of 20) | {:.1} ms | ≤ 100 ms |",
        median(thumb_ms)
    );
    println!("| validation per instance | {per_instance_ms:.2} ms | ≤ 5 ms |");
    println!("| series consistency check ({count} instances) | {series_ms:.1} ms | |");
    println!(
        "| validation of a {seg_frames}-frame SEG (functional groups per frame) | {seg_ms:.1} ms | |"
    );
    println!("\nfindings: {findings} on instances, {series_findings} on the series");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Validation time of a multi-frame SEG written by radport-convert: a 256×256×120 CT with
/// three spherical segments, so several hundred frames, each with its per-frame functional
/// groups. Returns (frames, median ms).
fn seg_validation() -> Result<(usize, f64)> {
    use radport_convert::{
        labels_to_seg, volume_to_series, GeometrySource, SegOptions, Segment, SeriesOptions,
        Volume, VoxelData,
    };
    let dims = [256usize, 256, 120];
    let volume = |data| Volume {
        dims,
        data,
        scl_slope: 1.0,
        scl_inter: 0.0,
        affine: [
            [-0.8, 0.0, 0.0, 100.0],
            [0.0, 0.8, 0.0, -100.0],
            [0.0, 0.0, 1.5, -90.0],
        ],
        geometry_source: GeometrySource::Sform,
        nifti_version: 1,
        description: String::new(),
    };
    let n = dims[0] * dims[1] * dims[2];
    let mut image = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    let centres = [(0.3, 0.4, 0.4), (0.6, 0.5, 0.5), (0.5, 0.7, 0.6)];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let p = (
                    i as f64 / dims[0] as f64,
                    j as f64 / dims[1] as f64,
                    k as f64 / dims[2] as f64,
                );
                image.push(((i * 7 + j * 3 + k) % 1000) as i16);
                let label = centres.iter().position(|c| {
                    (p.0 - c.0).powi(2) + (p.1 - c.1).powi(2) + (p.2 - c.2).powi(2) < 0.06
                });
                labels.push(label.map_or(0, |l| l as u8 + 1));
            }
        }
    }
    let image = volume(VoxelData::I16(image));
    let labels = volume(VoxelData::U8(labels));
    let series = volume_to_series(&image, &SeriesOptions::new("CT", "bench-study", "bench-ct"))?;
    let segments: Vec<Segment> = ["liver", "spleen", "kidney"]
        .iter()
        .enumerate()
        .map(|(s, name)| Segment::from_seg_info(s as u32 + 1, name, "bench"))
        .collect();
    let seg = labels_to_seg(
        &labels,
        &series,
        &image,
        &segments,
        &SegOptions::new("bench-seg"),
    )?;
    let obj = dicom_object::OpenFileOptions::new()
        .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
        .from_reader(&seg[128..])?;
    let frames: usize = obj
        .element(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)?
        .to_int::<u32>()? as usize;
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let v = radport_validate::validate_file(&seg)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(v);
    }
    Ok((frames, median(times)))
}

fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("radport-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
