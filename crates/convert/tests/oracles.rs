//! Conversions checked by external oracles: dcm2niix (round trip), dciodvfy (IOD validity), highdicom (SEG).
//! Missing tools make the tests fail with an install hint.

#![allow(clippy::needless_range_loop)]

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use radport_convert::*;

/// A volume with a unique value per voxel (so any flip or transposition shows), as NIfTI-1 int16.
fn unique_i16(nx: usize, ny: usize, nz: usize, affine: Affine) -> Vec<u8> {
    let v: Vec<i16> = (0..nx * ny * nz).map(|n| n as i16 - 700).collect();
    Nii::new(&[nx, ny, nz], 4, le_bytes(&v, i16::to_le_bytes))
        .with_sform(affine)
        .bytes()
}

fn float_volume(nx: usize, ny: usize, nz: usize, affine: Affine) -> Vec<u8> {
    let v: Vec<f32> = (0..nx * ny * nz)
        .map(|n| ((n as f32) * 0.37).sin() * 3.5 + (n as f32) * 1e-3 - 0.25)
        .collect();
    Nii::new(&[nx, ny, nz], 16, le_bytes(&v, f32::to_le_bytes))
        .with_sform(affine)
        .gz()
}

fn write_series(dir: &Path, s: &ConvertedSeries) {
    std::fs::create_dir_all(dir).unwrap();
    for (k, f) in s.files.iter().enumerate() {
        std::fs::write(dir.join(format!("IM{k:04}.dcm")), f).unwrap();
    }
}

/// NIfTI → our DICOM → dcm2niix → NIfTI; compare voxel values and world positions.
fn dcm2niix_roundtrip(name: &str, nii: &[u8], modality: &str) -> ConvertedSeries {
    let dcm2niix = tool("dcm2niix", "apt-get install dcm2niix");
    let v = read_nifti(nii).unwrap();
    let mut opts = SeriesOptions::new(modality, "study-seed", name);
    opts.series_description = name.to_string();
    let s = volume_to_series(&v, &opts).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (inp, out) = (tmp.path().join("in"), tmp.path().join("out"));
    write_series(&inp, &s);
    std::fs::create_dir_all(&out).unwrap();
    let o = Command::new(&dcm2niix)
        .args(["-b", "n", "-z", "n", "-f", "out", "-o"])
        .arg(&out)
        .arg(&inp)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{name}: dcm2niix failed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let niis: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nii"))
        .collect();
    assert_eq!(
        niis.len(),
        1,
        "{name}: dcm2niix wrote {niis:?}\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let back = read_nifti(&std::fs::read(&niis[0]).unwrap()).unwrap();
    assert_eq!(
        back.voxel_count(),
        v.voxel_count(),
        "{name}: {:?} vs {:?}",
        back.dims,
        v.dims
    );

    // world-coordinate comparison
    let a = v.affine;
    let inv = inv3(std::array::from_fn(|r| [a[r][0], a[r][1], a[r][2]]));
    let range = {
        let mut b = Vec::new();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for k in 0..v.dims[2] {
            v.slice_values(k, &mut b);
            b.iter().for_each(|&x| {
                lo = lo.min(x);
                hi = hi.max(x);
            });
        }
        hi - lo
    };
    let tol = s.max_abs_error * 1.001 + (range + s.rescale_intercept.abs()) * 2e-7;
    let [bx, by, bz] = back.dims;
    let mut worst_mm = 0.0f64;
    let mut worst_val = 0.0f64;
    for k in 0..bz {
        for j in 0..by {
            for i in 0..bx {
                let w = back.world([i as f64, j as f64, k as f64]);
                let d = [w[0] - a[0][3], w[1] - a[1][3], w[2] - a[2][3]];
                let f: [f64; 3] =
                    std::array::from_fn(|r| inv[r][0] * d[0] + inv[r][1] * d[1] + inv[r][2] * d[2]);
                let idx = f.map(|x| x.round());
                assert!(
                    idx.iter()
                        .zip(v.dims)
                        .all(|(&x, n)| x >= 0.0 && x < n as f64),
                    "{name}: output voxel ({i},{j},{k}) maps outside the input ({f:?})"
                );
                let wi = v.world(idx);
                let mm = ((wi[0] - w[0]).powi(2) + (wi[1] - w[1]).powi(2) + (wi[2] - w[2]).powi(2))
                    .sqrt();
                worst_mm = worst_mm.max(mm);
                let (x, y) = (
                    back.value(i, j, k),
                    v.value(idx[0] as usize, idx[1] as usize, idx[2] as usize),
                );
                worst_val = worst_val.max((x - y).abs());
            }
        }
    }
    assert!(
        worst_mm < 1e-3,
        "{name}: world positions differ by up to {worst_mm} mm"
    );
    assert!(
        worst_val <= tol,
        "{name}: values differ by up to {worst_val} (tolerance {tol}, note {:?})",
        s.precision_note
    );
    if v.data.is_colour() {
        // packed R + 256·G + 65536·B on both sides: colour must come back exactly
        assert!(
            back.data.is_colour(),
            "{name}: dcm2niix wrote {}",
            back.data.type_name()
        );
        assert_eq!(worst_val, 0.0, "{name}: colours differ");
    }
    s
}

#[test]
fn dcm2niix_ras_las_lps_oblique_2d() {
    let (nx, ny, nz) = (23, 19, 7);
    let cases: Vec<(&str, Affine)> = vec![
        ("ras", diag(0.75, 0.8, 2.0, [-10.0, 20.0, -30.0])),
        ("las", diag(-0.75, 0.8, 2.0, [10.0, -20.0, 30.5])),
        ("lps", diag(-0.7, -0.9, 3.0, [100.0, 80.0, -5.0])),
        ("ras_neg_k", diag(1.0, 1.0, -2.5, [0.0, 0.0, 40.0])),
        ("oblique", oblique()),
    ];
    for (name, aff) in cases {
        for modality in ["CT", "MR"] {
            let s = dcm2niix_roundtrip(
                &format!("{name}_{modality}"),
                &unique_i16(nx, ny, nz, aff),
                modality,
            );
            assert!(s.precision_note.is_none());
            assert_eq!(s.files.len(), nz);
        }
    }
    // 2-D
    for (name, aff) in [
        ("2d_ras", diag(0.5, 0.6, 1.0, [1.0, 2.0, 3.0])),
        ("2d_oblique", oblique()),
    ] {
        dcm2niix_roundtrip(name, &unique_i16(31, 17, 1, aff), "MR");
        let v: Vec<i16> = (0..31 * 17).map(|n| n as i16).collect();
        let two_d = Nii::new(&[31, 17], 4, le_bytes(&v, i16::to_le_bytes))
            .with_sform(aff)
            .bytes();
        let s = dcm2niix_roundtrip(&format!("{name}_dim2"), &two_d, "CT");
        assert_eq!(s.files.len(), 1);
    }
}

#[test]
fn dcm2niix_float_and_wide_ints() {
    // float32 → uint16 with rescale, error reported and respected
    let s = dcm2niix_roundtrip(
        "float_las",
        &float_volume(21, 18, 6, diag(-1.2, 1.1, 2.0, [5.0, 6.0, 7.0])),
        "MR",
    );
    let note = s
        .precision_note
        .clone()
        .expect("float data needs a precision note");
    assert!(note.contains("max abs error"), "{note}");
    assert!(
        s.max_abs_error > 0.0
            && s.max_abs_error <= s.rescale_slope * 0.5 * 1.0001
            && s.rescale_slope < 10.0 / 65535.0,
        "{}",
        s.max_abs_error
    );
    // float data that are integers in the int16 range: stored exactly
    let v: Vec<f32> = (0..12 * 11 * 3).map(|n| n as f32 - 200.0).collect();
    let f = Nii::new(&[12, 11, 3], 16, le_bytes(&v, f32::to_le_bytes))
        .with_sform(oblique())
        .bytes();
    assert!(dcm2niix_roundtrip("float_integral", &f, "CT")
        .precision_note
        .is_none());
    // int32 beyond int16 but with a range < 65536: exact with an intercept
    let v: Vec<i32> = (0..12 * 11 * 3).map(|n: i32| 100_000 + n * 150).collect();
    let f = Nii::new(&[12, 11, 3], 8, le_bytes(&v, i32::to_le_bytes))
        .with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]))
        .bytes();
    let s = dcm2niix_roundtrip("int32_offset", &f, "CT");
    assert!(s.precision_note.is_none(), "{:?}", s.precision_note);
    assert_eq!(s.rescale_intercept, 100_000.0);
    // uint16 over 32767 (Kaapana's int16 cast breaks these): stored as uint16 as is
    let v: Vec<u16> = (0..12 * 11 * 3).map(|n| 65535 - n as u16 * 97).collect();
    let f = Nii::new(&[12, 11, 3], 512, le_bytes(&v, u16::to_le_bytes))
        .with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]))
        .bytes();
    assert!(dcm2niix_roundtrip("uint16_high", &f, "MR")
        .precision_note
        .is_none());
    // scl_slope/scl_inter on int16 data
    let v: Vec<i16> = (0..12 * 11 * 3).map(|n| n as i16 * 3 - 500).collect();
    let mut n = Nii::new(&[12, 11, 3], 4, le_bytes(&v, i16::to_le_bytes))
        .with_sform(diag(2.0, 2.0, 2.0, [0.0; 3]));
    n.scl_slope = 0.25;
    n.scl_inter = -10.0;
    dcm2niix_roundtrip("scl", &n.bytes(), "MR");
}

/// dciodvfy: no "Error" lines.
fn dciodvfy_errors(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
    let dciodvfy = tool("dciodvfy", "apt-get install dicom3tools");
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), bytes).unwrap();
    let o = Command::new(dciodvfy).arg(tmp.path()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // dciodvfy really judged the file: it named the IOD it checked (a line of its own), found
    // one, and exited 0 exactly when it printed no error; else "no Error lines" could pass on
    // an empty output.
    assert!(
        text.lines().any(|l| !l.trim().is_empty()
            && !l.starts_with("Error")
            && !l.starts_with("Warning")
            && !l.contains(" - ")),
        "dciodvfy named no IOD: {text}"
    );
    assert!(!text.contains("Information Object Not found"), "{text}");
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("Error"))
        .map(String::from)
        .collect();
    assert_eq!(
        o.status.success(),
        errors.is_empty(),
        "dciodvfy exit {}: {text}",
        o.status
    );
    let warnings = text
        .lines()
        .filter(|l| l.starts_with("Warning"))
        .map(String::from)
        .collect();
    (errors, warnings)
}

fn small_case() -> (Volume, ConvertedSeries, Volume, Vec<Segment>) {
    // 13 × 7 (= 91 pixels: not a multiple of 8) × 6 slices, LAS
    let (nx, ny, nz) = (13, 7, 6);
    let aff = diag(-0.9, 1.1, 2.5, [20.0, -15.0, 3.0]);
    let img = read_nifti(&unique_i16(nx, ny, nz, aff)).unwrap();
    let mut opts = SeriesOptions::new("CT", "seg-study", "seg-image");
    opts.patient_id = Some("P-42".into());
    opts.patient_name = Some("Doe^Jane".into());
    let series = volume_to_series(&img, &opts).unwrap();
    let mut lab = vec![0u8; nx * ny * nz];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let v = match k {
                    0 => 0,                                         // empty slice
                    1 => u8::from((i + j) % 3 == 0),                // label 1 only
                    2 | 3 => [0, 1, 2, 7][(i * 5 + j * 3 + k) % 4], // 1, 2, 7
                    4 => {
                        if i > 9 {
                            7
                        } else {
                            0
                        }
                    }
                    _ => {
                        if i == 12 && j == 6 {
                            2
                        } else {
                            0
                        }
                    } // last pixel only
                };
                lab[i + nx * (j + ny * k)] = v;
            }
        }
    }
    let labels = read_nifti(&Nii::new(&[nx, ny, nz], 2, lab).with_sform(aff).gz()).unwrap();
    let segs = vec![
        Segment::from_seg_info(1, "liver", "Ground truth"),
        Segment::from_seg_info(2, "Kidney_Left", "nnU-Net 3d_fullres"),
        Segment::from_seg_info(7, "tumor core", "nnU-Net 3d_fullres"),
    ];
    (img, series, labels, segs)
}

#[test]
fn dciodvfy_series_and_seg() {
    let img = read_nifti(&unique_i16(17, 11, 3, oblique())).unwrap();
    let fimg = read_nifti(&float_volume(17, 11, 3, oblique())).unwrap();
    let mut report = Vec::new();
    for (modality, v) in [
        ("CT", &img),
        ("MR", &img),
        ("CT", &fimg),
        ("MR", &fimg),
        ("OT", &img),
        ("PT", &fimg),
    ] {
        let mut opts = SeriesOptions::new(modality, "s", modality);
        opts.extra_tags = vec![
            (parse_tag_key("0008|103e").unwrap(), "I am unique".into()),
            (parse_tag_key("0010|0040").unwrap(), "F".into()),
            (parse_tag_key("0008|0020").unwrap(), "20240102".into()),
        ];
        let s = volume_to_series(v, &opts).unwrap();
        for f in [&s.files[0], s.files.last().unwrap()] {
            let (errors, warnings) = dciodvfy_errors(f);
            assert!(
                errors.is_empty(),
                "{modality}: dciodvfy errors: {errors:#?}"
            );
            report.push(format!("{modality}: {warnings:?}"));
        }
    }
    let (_, series, labels, segs) = small_case();
    let img = read_nifti(&unique_i16(
        13,
        7,
        6,
        diag(-0.9, 1.1, 2.5, [20.0, -15.0, 3.0]),
    ))
    .unwrap();
    let seg = labels_to_seg(&labels, &series, &img, &segs, &SegOptions::new("seg")).unwrap();
    let (errors, warnings) = dciodvfy_errors(&seg);
    assert!(errors.is_empty(), "SEG: dciodvfy errors: {errors:#?}");
    report.push(format!("SEG: {warnings:?}"));
    eprintln!("dciodvfy warnings:\n{}", report.join("\n"));
}

#[test]
fn highdicom_reads_seg_back() {
    let py = python(&["highdicom", "numpy"]);
    let (img, series, labels, segs) = small_case();
    let seg = labels_to_seg(&labels, &series, &img, &segs, &SegOptions::new("seg")).unwrap();
    // deterministic UIDs: a second conversion gives the same SOP Instance UID
    let again = labels_to_seg(&labels, &series, &img, &segs, &SegOptions::new("seg")).unwrap();
    let uid = |b: &[u8]| {
        dicom_object::from_reader(&b[128..])
            .unwrap()
            .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(uid(&seg), uid(&again));

    let tmp = tempfile::tempdir().unwrap();
    let seg_path = tmp.path().join("seg.dcm");
    std::fs::write(&seg_path, &seg).unwrap();
    let uids_path = tmp.path().join("uids.json");
    std::fs::write(
        &uids_path,
        serde_json::to_vec(&series.sop_instance_uids).unwrap(),
    )
    .unwrap();
    let o = Command::new(py)
        .arg(fixture("seg_read.py"))
        .arg(&seg_path)
        .arg(&uids_path)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "highdicom failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

    // segment descriptions
    let sd = &j["segments"];
    assert_eq!(sd["1"]["label"], "liver");
    assert_eq!(sd["1"]["algorithm_type"], "MANUAL");
    assert_eq!(sd["1"]["type_code"], "10200004");
    assert_eq!(sd["2"]["label"], "Kidney_Left");
    assert_eq!(sd["2"]["algorithm_type"], "AUTOMATIC");
    assert_eq!(sd["2"]["algorithm_name"], "nnU-Net 3d_fullres");
    assert_eq!(sd["2"]["type_code"], "18639004");
    assert_eq!(sd["3"]["label"], "tumor core");
    assert_eq!(sd["3"]["type_code"], "85756007");
    assert_eq!(sd["3"]["category_code"], "91723000");
    assert_eq!(j["rows"], 7);
    assert_eq!(j["columns"], 13);
    // every source instance referenced, empty frames omitted
    assert_eq!(j["referenced"].as_array().unwrap().len(), 6);
    // frames: seg1 in slices 1,2,3 ; seg2 in 2,3,5 ; seg7 in 2,3,4
    assert_eq!(j["frames"], 9);

    // voxel for voxel
    let seg_value = |n: u64| -> u32 { [0, 1, 2, 7][n as usize] };
    let px = j["pixels"].as_array().unwrap();
    assert_eq!(px.len(), 6);
    let mut checked = 0;
    for (k, sl) in px.iter().enumerate() {
        for (r, row) in sl.as_array().unwrap().iter().enumerate() {
            for (c, v) in row.as_array().unwrap().iter().enumerate() {
                let expect = labels.value(c, r, k) as u32;
                assert_eq!(
                    seg_value(v.as_u64().unwrap()),
                    expect,
                    "voxel ({c},{r},{k})"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 13 * 7 * 6);
}

#[test]
fn seg_geometry_matches_source_slices() {
    // per-frame positions and references agree with the source instances (read with dicom-object)
    use dicom_dictionary_std::tags;
    let (img, series, labels, segs) = small_case();
    let seg = labels_to_seg(&labels, &series, &img, &segs, &SegOptions::new("seg")).unwrap();
    let obj = dicom_object::from_reader(&seg[128..]).unwrap();
    assert_eq!(
        obj.element(tags::FRAME_OF_REFERENCE_UID)
            .unwrap()
            .to_str()
            .unwrap(),
        series.frame_of_reference_uid
    );
    assert_eq!(
        obj.element(tags::STUDY_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap(),
        series.study_uid
    );
    assert_eq!(
        obj.element(tags::PATIENT_ID).unwrap().to_str().unwrap(),
        "P-42"
    );
    let pixel_len = obj
        .element(tags::PIXEL_DATA)
        .unwrap()
        .to_bytes()
        .unwrap()
        .len();
    assert_eq!(
        pixel_len,
        (9 * 91usize).div_ceil(8) + ((9 * 91usize).div_ceil(8) % 2)
    );
    let frames = obj
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .to_vec();
    for f in frames {
        let d = &f
            .element(tags::DERIVATION_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        let s = &d
            .element(tags::SOURCE_IMAGE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        let uid = s
            .element(tags::REFERENCED_SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let k = series
            .sop_instance_uids
            .iter()
            .position(|u| *u == uid)
            .unwrap();
        let src = dicom_object::from_reader(&series.files[k][128..]).unwrap();
        let pos = &f
            .element(tags::PLANE_POSITION_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()[0];
        assert_eq!(
            pos.element(tags::IMAGE_POSITION_PATIENT)
                .unwrap()
                .to_str()
                .unwrap(),
            src.element(tags::IMAGE_POSITION_PATIENT)
                .unwrap()
                .to_str()
                .unwrap()
        );
    }
}

/// Expected colour of voxel (i, j, k) of the files `rgb_write.py` makes.
fn rgb_pattern(i: usize, j: usize, k: usize) -> [u8; 4] {
    [
        ((3 * i + 5 * j + 7 * k) % 256) as u8,
        ((11 * i + 2 * j + 13 * k + 100) % 256) as u8,
        ((i * j + 17 * k) % 256) as u8,
        if (i + j + k) % 2 == 0 { 255 } else { 128 },
    ]
}

/// A colour NIfTI written by nibabel.
fn nibabel_rgb(dims: [usize; 3], affine: Affine, kind: &str, version: u8, gz: bool) -> Vec<u8> {
    let py = python(&["nibabel", "numpy"]);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(if gz { "rgb.nii.gz" } else { "rgb.nii" });
    let spec =
        serde_json::json!({"shape": dims, "affine": affine, "kind": kind, "version": version});
    let o = Command::new(py)
        .arg(fixture("rgb_write.py"))
        .arg(&path)
        .arg(spec.to_string())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rgb_write.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::read(path).unwrap()
}

/// pydicom's view of some of our files (pixel attributes and `pixel_array`).
fn pydicom_pixels(files: &[&[u8]]) -> Vec<serde_json::Value> {
    let py = python(&["pydicom", "numpy"]);
    let tmp = tempfile::tempdir().unwrap();
    let paths: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(n, b)| {
            let p = tmp.path().join(format!("{n}.dcm"));
            std::fs::write(&p, b).unwrap();
            p
        })
        .collect();
    let o = Command::new(py)
        .arg(fixture("dicom_pixels.py"))
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "dicom_pixels.py: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn rgb_nifti_to_dicom() {
    // (name, dims, affine, kind, NIfTI version, gzip, modality); 7 × 5 → 105 bytes per frame: odd length
    type Case = (
        &'static str,
        [usize; 3],
        Affine,
        &'static str,
        u8,
        bool,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "rgb_ras",
            [7, 5, 4],
            diag(0.75, 0.8, 2.0, [-10.0, 20.0, -30.0]),
            "rgb",
            1,
            true,
            "OT",
        ),
        (
            "rgb_oblique_ct",
            [7, 5, 3],
            oblique(),
            "rgb",
            2,
            false,
            "CT",
        ),
        (
            "rgba_las_mr",
            [6, 9, 3],
            diag(-1.0, 1.2, 2.5, [5.0, 6.0, 7.0]),
            "rgba",
            1,
            false,
            "MR",
        ),
        (
            "rgba_2d_pt",
            [8, 6, 1],
            diag(0.5, 0.5, 1.0, [0.0; 3]),
            "rgba",
            2,
            true,
            "PT",
        ),
    ];
    let mut report = Vec::new();
    for (name, dims, aff, kind, version, gz, modality) in cases {
        let nii = nibabel_rgb(dims, aff, kind, version, gz);
        let v = read_nifti(&nii).unwrap();
        assert_eq!(v.dims, dims, "{name}");
        assert_eq!(
            v.data.type_name(),
            if kind == "rgb" { "rgb24" } else { "rgba32" }
        );
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let p = rgb_pattern(i, j, k);
                    assert_eq!(
                        v.rgb(i, j, k),
                        Some([p[0], p[1], p[2]]),
                        "{name} ({i},{j},{k})"
                    );
                }
            }
        }
        // same geometry as the scalar path: a scalar volume on the same grid gives the same geometry attributes
        let grey = Volume::new(
            dims,
            VoxelData::U8(vec![1; dims.iter().product()]),
            v.affine,
        )
        .unwrap();
        let grey_s = volume_to_series(&grey, &SeriesOptions::new(modality, "s", name)).unwrap();

        // our DICOM, read back with pydicom
        let s = dcm2niix_roundtrip(name, &nii, modality);
        assert_eq!(s.sop_class_uid, "1.2.840.10008.5.1.4.1.1.7", "{name}");
        assert_eq!(s.files.len(), dims[2]);
        match kind {
            "rgba" => {
                let note = s.precision_note.clone().unwrap_or_default();
                assert!(note.contains("alpha channel dropped"), "{name}: {note}");
            }
            _ => assert!(s.precision_note.is_none(), "{name}: {:?}", s.precision_note),
        }
        let files: Vec<&[u8]> = s.files.iter().map(Vec::as_slice).collect();
        let px = pydicom_pixels(&files);
        for (k, f) in px.iter().enumerate() {
            assert_eq!(f["photometric"], "RGB", "{name}");
            assert_eq!(f["samples"], 3);
            assert_eq!(f["planar"], 0);
            assert_eq!(f["bits_allocated"], 8);
            assert_eq!(f["modality"], modality);
            assert!(f["rescale_slope"].is_null() && f["rescale_intercept"].is_null());
            assert_eq!(f["rows"], dims[1]);
            assert_eq!(f["columns"], dims[0]);
            for (r, row) in f["pixels"].as_array().unwrap().iter().enumerate() {
                for (c, p) in row.as_array().unwrap().iter().enumerate() {
                    let e = rgb_pattern(c, r, k);
                    let got: Vec<u64> = p
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_u64().unwrap())
                        .collect();
                    assert_eq!(
                        got,
                        vec![e[0] as u64, e[1] as u64, e[2] as u64],
                        "{name} slice {k} ({r},{c})"
                    );
                }
            }
        }
        // geometry attributes identical to the scalar path's
        use dicom_dictionary_std::tags;
        for k in [0, dims[2] - 1] {
            let a = dicom_object::from_reader(&s.files[k][128..]).unwrap();
            let b = dicom_object::from_reader(&grey_s.files[k][128..]).unwrap();
            for t in [
                tags::IMAGE_POSITION_PATIENT,
                tags::IMAGE_ORIENTATION_PATIENT,
                tags::PIXEL_SPACING,
                tags::SLICE_THICKNESS,
                tags::SPACING_BETWEEN_SLICES,
                tags::SLICE_LOCATION,
            ] {
                assert_eq!(
                    a.element(t).unwrap().to_str().unwrap(),
                    b.element(t).unwrap().to_str().unwrap(),
                    "{name} {t}"
                );
            }
        }
        // dciodvfy
        for f in [&s.files[0], s.files.last().unwrap()] {
            let (errors, warnings) = dciodvfy_errors(f);
            assert!(errors.is_empty(), "{name}: dciodvfy errors: {errors:#?}");
            report.push(format!("{name}: {warnings:?}"));
        }
        // a colour volume is no label map
        let e = labels_to_seg(
            &v,
            &s,
            &v,
            &[Segment::from_seg_info(1, "liver", "x")],
            &SegOptions::new("s"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }
    eprintln!("dciodvfy warnings:\n{}", report.join("\n"));
}

#[test]
fn pet_image_storage() {
    use dicom_dictionary_std::tags;
    let str_of =
        |o: &dicom_object::InMemDicomObject, t| o.element(t).unwrap().to_str().unwrap().to_string();
    // positive floats (uint16, slope only), mixed-sign floats (int16, slope only), int16 as is, int32 with an
    // offset (an intercept elsewhere; slope only here), int16 with scl_slope/scl_inter
    let mixed: Vec<f32> = (0..15 * 12 * 5)
        .map(|n| ((n as f32) * 0.21).cos() * 40.0 - 3.0)
        .collect();
    let wide: Vec<i32> = (0..12 * 11 * 3).map(|n: i32| 100_000 + n * 150).collect();
    let scl_v: Vec<i16> = (0..12 * 11 * 3).map(|n| n as i16 * 3 - 500).collect();
    let mut scl = Nii::new(&[12, 11, 3], 4, le_bytes(&scl_v, i16::to_le_bytes))
        .with_sform(diag(2.0, 2.0, 2.0, [0.0; 3]));
    scl.scl_slope = 0.25;
    scl.scl_inter = -10.0;
    let positive: Vec<f32> = (0..14 * 9 * 4)
        .map(|n| ((n as f32) * 0.37).sin().abs() * 12000.0 + 0.5)
        .collect();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "pet_int16_ras",
            unique_i16(17, 11, 4, diag(2.0, 2.0, 3.0, [-100.0, -80.0, 20.0])),
            true,
        ),
        ("pet_int16_oblique", unique_i16(13, 9, 3, oblique()), true),
        (
            "pet_float_positive_las",
            Nii::new(&[14, 9, 4], 16, le_bytes(&positive, f32::to_le_bytes))
                .with_sform(diag(-1.2, 1.1, 2.0, [5.0, 6.0, 7.0]))
                .gz(),
            false,
        ),
        (
            "pet_float_mixed_sign",
            Nii::new(&[15, 12, 5], 16, le_bytes(&mixed, f32::to_le_bytes))
                .with_sform(oblique())
                .bytes(),
            false,
        ),
        (
            "pet_int32_offset",
            Nii::new(&[12, 11, 3], 8, le_bytes(&wide, i32::to_le_bytes))
                .with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]))
                .bytes(),
            false,
        ),
        // scl_inter / scl_slope = -40: stored = raw - 40 with slope 0.25, exact
        ("pet_scl", scl.bytes(), true),
    ];
    let mut report = Vec::new();
    for (name, nii, exact) in cases {
        // dcm2niix gives back the values (within the stated rescale error) and the geometry
        let s = dcm2niix_roundtrip(name, &nii, "PT");
        assert_eq!(s.sop_class_uid, "1.2.840.10008.5.1.4.1.1.128", "{name}");
        assert_eq!(
            s.rescale_intercept, 0.0,
            "{name}: PET needs Rescale Intercept 0"
        );
        assert_eq!(
            s.precision_note.is_none(),
            exact,
            "{name}: {:?}",
            s.precision_note
        );
        if !exact {
            assert!(
                s.max_abs_error <= s.rescale_slope * 0.5 * 1.0001,
                "{name}: {} vs slope {}",
                s.max_abs_error,
                s.rescale_slope
            );
            let note = s.precision_note.clone().unwrap_or_default();
            assert!(
                note.contains("intercept must be 0") || s.max_abs_error == 0.0,
                "{note}"
            );
        }
        let nz = s.files.len();
        for (k, f) in s.files.iter().enumerate() {
            let o = dicom_object::from_reader(&f[128..]).unwrap();
            assert_eq!(str_of(&o, tags::RESCALE_INTERCEPT), "0");
            assert_eq!(str_of(&o, tags::MODALITY), "PT");
            assert_eq!(str_of(&o, tags::UNITS), "CNTS");
            assert_eq!(str_of(&o, tags::DECAY_CORRECTION), "NONE");
            assert_eq!(str_of(&o, tags::SERIES_TYPE), "STATIC\\IMAGE");
            assert_eq!(
                o.element(tags::IMAGE_INDEX)
                    .unwrap()
                    .to_int::<usize>()
                    .unwrap(),
                k + 1
            );
            assert_eq!(
                o.element(tags::NUMBER_OF_SLICES)
                    .unwrap()
                    .to_int::<usize>()
                    .unwrap(),
                nz
            );
            assert_eq!(str_of(&o, tags::SERIES_DATE).len(), 8);
        }
        // pydicom applies the same rescale
        let px = pydicom_pixels(&[&s.files[0]]);
        assert_eq!(px[0]["photometric"], "MONOCHROME2");
        assert_eq!(px[0]["rescale_intercept"], 0.0);
        // dciodvfy: no errors
        for f in [&s.files[0], s.files.last().unwrap()] {
            let (errors, warnings) = dciodvfy_errors(f);
            assert!(errors.is_empty(), "{name}: dciodvfy errors: {errors:#?}");
            report.push(format!("{name}: {warnings:?}"));
        }
    }

    // meta_data.json tags: Units, decay correction with its factor, series and study dates
    let v = read_nifti(&unique_i16(9, 8, 3, oblique())).unwrap();
    let mut opts = SeriesOptions::new("PT", "pet", "bqml");
    opts.extra_tags = [
        ("0054|1001", "BQML"),
        ("0054|1102", "START"),
        ("0054|1321", "1.0233"),
        ("0028|0051", "DECY\\ATTN"),
        ("0008|0020", "20240102"),
        ("0008|0030", "101500"),
        ("0008|0021", "20240103"),
    ]
    .iter()
    .map(|(k, v)| (parse_tag_key(k).unwrap(), v.to_string()))
    .collect();
    let s = volume_to_series(&v, &opts).unwrap();
    let o = dicom_object::from_reader(&s.files[1][128..]).unwrap();
    assert_eq!(str_of(&o, tags::UNITS), "BQML");
    assert_eq!(str_of(&o, tags::CORRECTED_IMAGE), "DECY\\ATTN");
    assert_eq!(str_of(&o, tags::SERIES_DATE), "20240103");
    assert_eq!(str_of(&o, tags::SERIES_TIME), "101500"); // falls back to the study's
    let (errors, warnings) = dciodvfy_errors(&s.files[1]);
    assert!(errors.is_empty(), "BQML: dciodvfy errors: {errors:#?}");
    report.push(format!("pet_bqml: {warnings:?}"));
    eprintln!("dciodvfy warnings:\n{}", report.join("\n"));
}
