//! Conversion speed: a 512×512×300 float32 volume plus a 5-label segmentation.
//!
//! `cargo run --release -p radport-convert --example bench` (optional args: nx ny nz)
//!
//! `… --example bench -- --files IMAGE.nii LABELS.nii OUT_DIR`: convert the given files instead (labels 1..=5), and
//! write the series and the SEG to OUT_DIR, timing disk reads and writes too (what `bench/kaapana-compare.sh`
//! compares with SimpleITK + dcmqi on the same files).

use std::time::Instant;

use radport_convert::*;

fn nifti1(
    dims: [usize; 3],
    datatype: i16,
    bitpix: i16,
    data: &[u8],
    affine: [[f64; 4]; 3],
) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    let dim = [
        3i16,
        dims[0] as i16,
        dims[1] as i16,
        dims[2] as i16,
        1,
        1,
        1,
        1,
    ];
    for (a, d) in dim.iter().enumerate() {
        h[40 + 2 * a..42 + 2 * a].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for a in 0..4 {
        h[76 + 4 * a..80 + 4 * a].copy_from_slice(&1f32.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[254..256].copy_from_slice(&2i16.to_le_bytes());
    for (r, row) in affine.iter().enumerate() {
        for (c, x) in row.iter().enumerate() {
            let o = 280 + 16 * r + 4 * c;
            h[o..o + 4].copy_from_slice(&(*x as f32).to_le_bytes());
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    h.extend_from_slice(data);
    h
}

/// Convert files from disk and write the results to disk (every step timed, I/O included).
fn from_files(img: &str, lab: &str, out: &str) {
    let out = std::path::Path::new(out);
    std::fs::create_dir_all(out).unwrap();
    let t0 = Instant::now();
    let v = read_nifti(&std::fs::read(img).unwrap()).unwrap();
    let series =
        volume_to_series(&v, &SeriesOptions::new("CT", "bench-study", "bench-series")).unwrap();
    for (k, f) in series.files.iter().enumerate() {
        std::fs::write(out.join(format!("IM{k:04}.dcm")), f).unwrap();
    }
    let t_series = t0.elapsed();
    let t1 = Instant::now();
    let labels = read_nifti(&std::fs::read(lab).unwrap()).unwrap();
    let segs: Vec<Segment> = ["liver", "spleen", "kidney", "pancreas", "lesion"]
        .iter()
        .enumerate()
        .map(|(s, name)| Segment::from_seg_info(s as u32 + 1, name, "bench"))
        .collect();
    let seg = labels_to_seg(&labels, &series, &v, &segs, &SegOptions::new("bench-seg")).unwrap();
    std::fs::write(out.join("seg.dcm"), &seg).unwrap();
    let t_seg = t1.elapsed();
    println!(
        "series_s={:.3} seg_s={:.3} total_s={:.3} files={} max_abs_error={}",
        t_series.as_secs_f64(),
        t_seg.as_secs_f64(),
        t0.elapsed().as_secs_f64(),
        series.files.len(),
        series.max_abs_error
    );
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, img, lab, out] = &raw[..] {
        if flag == "--files" {
            return from_files(img, lab, out);
        }
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (nx, ny, nz) = match args[..] {
        [a, b, c] => (a, b, c),
        _ => (512, 512, 300),
    };
    let n = nx * ny * nz;
    let aff = [
        [-0.7, 0.0, 0.0, 180.0],
        [0.0, 0.7, 0.0, -150.0],
        [0.0, 0.0, 1.25, -200.0],
    ];
    let mut img = Vec::with_capacity(n * 4);
    let mut lab = Vec::with_capacity(n);
    let centres = [
        (0.3, 0.3, 0.3),
        (0.7, 0.3, 0.5),
        (0.5, 0.7, 0.5),
        (0.3, 0.7, 0.7),
        (0.7, 0.7, 0.2),
    ];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let (x, y, z) = (
                    i as f64 / nx as f64,
                    j as f64 / ny as f64,
                    k as f64 / nz as f64,
                );
                let v = (x * 12.0).sin() * 800.0 + (y * 7.0).cos() * 300.0 + z * 50.0 - 200.25;
                img.extend_from_slice(&(v as f32).to_le_bytes());
                let mut l = 0u8;
                for (s, c) in centres.iter().enumerate() {
                    if (x - c.0).powi(2) + (y - c.1).powi(2) + (z - c.2).powi(2) < 0.015 {
                        l = s as u8 + 1;
                    }
                }
                lab.push(l);
            }
        }
    }
    let img = nifti1([nx, ny, nz], 16, 32, &img, aff);
    let lab = nifti1([nx, ny, nz], 2, 8, &lab, aff);

    let t0 = Instant::now();
    let v = read_nifti(&img).unwrap();
    let t_read = t0.elapsed();
    let t1 = Instant::now();
    let series =
        volume_to_series(&v, &SeriesOptions::new("CT", "bench-study", "bench-series")).unwrap();
    let t_series = t1.elapsed();
    let t2 = Instant::now();
    let labels = read_nifti(&lab).unwrap();
    let segs: Vec<Segment> = ["liver", "spleen", "kidney", "pancreas", "lesion"]
        .iter()
        .enumerate()
        .map(|(s, name)| Segment::from_seg_info(s as u32 + 1, name, "bench"))
        .collect();
    let seg = labels_to_seg(&labels, &series, &v, &segs, &SegOptions::new("bench-seg")).unwrap();
    let t_seg = t2.elapsed();
    let total = t0.elapsed();
    let bytes: usize = series.files.iter().map(Vec::len).sum();
    println!(
        "volume {nx}×{ny}×{nz} float32 ({} MB), 5-label segmentation",
        n * 4 / 1_000_000
    );
    println!(
        "read_nifti (uncompressed):   {:>8.3} s",
        t_read.as_secs_f64()
    );
    println!(
        "volume_to_series:            {:>8.3} s  ({} files, {} MB)",
        t_series.as_secs_f64(),
        series.files.len(),
        bytes / 1_000_000
    );
    println!(
        "read labels + labels_to_seg: {:>8.3} s  (SEG {} KB)",
        t_seg.as_secs_f64(),
        seg.len() / 1000
    );
    println!(
        "total:                       {:>8.3} s",
        total.as_secs_f64()
    );
    println!("precision note: {:?}", series.precision_note);
}
