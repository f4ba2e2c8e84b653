//! NIfTI reading (hand-written NIfTI-1/2 files, nibabel's sample files as an oracle) and bad input.

#![allow(clippy::needless_range_loop)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use radport_convert::*;

fn ramp(n: usize) -> Vec<f64> {
    (0..n)
        .map(|x| (x % 97) as f64 * if x % 2 == 0 { 1.0 } else { -1.0 })
        .collect()
}

#[test]
fn every_datatype_both_versions_both_endians_gz() {
    let dims = [5usize, 4, 3];
    let n = 60;
    let vals = ramp(n);
    let cases: Vec<(i16, Vec<u8>, Vec<f64>)> = vec![
        (
            2,
            vals.iter().map(|&x| x.abs() as u8).collect(),
            vals.iter().map(|x| x.abs()).collect(),
        ),
        (
            256,
            vals.iter().map(|&x| x as i8 as u8).collect(),
            vals.clone(),
        ),
        (
            4,
            le_bytes(
                &vals.iter().map(|&x| x as i16 * 300).collect::<Vec<_>>(),
                i16::to_le_bytes,
            ),
            vals.iter().map(|x| x * 300.0).collect(),
        ),
        (
            512,
            le_bytes(
                &vals
                    .iter()
                    .map(|&x| x.abs() as u16 * 600)
                    .collect::<Vec<_>>(),
                u16::to_le_bytes,
            ),
            vals.iter().map(|x| x.abs() * 600.0).collect(),
        ),
        (
            8,
            le_bytes(
                &vals.iter().map(|&x| x as i32 * 100_000).collect::<Vec<_>>(),
                i32::to_le_bytes,
            ),
            vals.iter().map(|x| x * 100_000.0).collect(),
        ),
        (
            768,
            le_bytes(
                &vals
                    .iter()
                    .map(|&x| x.abs() as u32 * 70_000)
                    .collect::<Vec<_>>(),
                u32::to_le_bytes,
            ),
            vals.iter().map(|x| x.abs() * 70_000.0).collect(),
        ),
        (
            1024,
            le_bytes(
                &vals
                    .iter()
                    .map(|&x| x as i64 * 1_000_000_007)
                    .collect::<Vec<_>>(),
                i64::to_le_bytes,
            ),
            vals.iter().map(|x| x * 1_000_000_007.0).collect(),
        ),
        (
            1280,
            le_bytes(
                &vals.iter().map(|&x| x.abs() as u64 * 3).collect::<Vec<_>>(),
                u64::to_le_bytes,
            ),
            vals.iter().map(|x| x.abs() * 3.0).collect(),
        ),
        (
            16,
            le_bytes(
                &vals.iter().map(|&x| x as f32 * 0.125).collect::<Vec<_>>(),
                f32::to_le_bytes,
            ),
            vals.iter().map(|x| x * 0.125).collect(),
        ),
        (
            64,
            le_bytes(
                &vals.iter().map(|&x| x * 1e-3).collect::<Vec<_>>(),
                f64::to_le_bytes,
            ),
            vals.iter().map(|x| x * 1e-3).collect(),
        ),
    ];
    let aff = diag(-0.5, 0.7, 1.5, [1.0, 2.0, 3.0]);
    for (dt, data, expect) in cases {
        for version in [1u8, 2] {
            for be in [false, true] {
                for gz in [false, true] {
                    let mut nii = Nii::new(&dims, dt, data.clone()).with_sform(aff);
                    nii.version = version;
                    nii.big_endian = be;
                    let bytes = if gz { nii.gz() } else { nii.bytes() };
                    let v = read_nifti(&bytes)
                        .unwrap_or_else(|e| panic!("dt {dt} v{version} be {be} gz {gz}: {e}"));
                    assert_eq!(v.dims, dims);
                    assert_eq!(v.nifti_version, version);
                    assert_eq!(v.geometry_source, GeometrySource::Sform);
                    for (idx, &e) in expect.iter().enumerate() {
                        let (i, j, k) = (idx % 5, (idx / 5) % 4, idx / 20);
                        assert_eq!(
                            v.value(i, j, k),
                            e,
                            "dt {dt} v{version} be {be} voxel {idx}"
                        );
                    }
                    for r in 0..3 {
                        for c in 0..4 {
                            assert!((v.affine[r][c] - aff[r][c]).abs() < 1e-6);
                        }
                    }
                    // and every one converts
                    let s = volume_to_series(&v, &SeriesOptions::new("MR", "a", "b")).unwrap();
                    assert_eq!(s.files.len(), 3);
                }
            }
        }
    }
}

#[test]
fn scl_qform_and_pixdim_fallback() {
    let data = le_bytes(&[1i16, 2, 3, 4, 5, 6, 7, 8], i16::to_le_bytes);
    let mut nii = Nii::new(&[2, 2, 2], 4, data);
    nii.scl_slope = 0.5;
    nii.scl_inter = 10.0;
    nii.pixdim = [1.0, 2.0, 3.0, 4.0];
    // 90° about z: quaternion (a=cos45, b=0, c=0, d=sin45), qfac -1
    let s = std::f64::consts::FRAC_1_SQRT_2;
    nii.qform = Some(([0.0, 0.0, s], [10.0, 20.0, 30.0], -1.0));
    for version in [1u8, 2] {
        nii.version = version;
        let v = read_nifti(&nii.bytes()).unwrap();
        assert_eq!(v.geometry_source, GeometrySource::Qform);
        assert_eq!(v.value(1, 1, 1), 14.0);
        let expect = [
            [0.0, -3.0, 0.0, 10.0],
            [2.0, 0.0, 0.0, 20.0],
            [0.0, 0.0, -4.0, 30.0],
        ];
        for r in 0..3 {
            for c in 0..4 {
                assert!(
                    (v.affine[r][c] - expect[r][c]).abs() < 1e-5,
                    "v{version}: {:?}",
                    v.affine
                );
            }
        }
        let series = volume_to_series(&v, &SeriesOptions::new("CT", "a", "b")).unwrap();
        assert!(
            series.precision_note.is_none(),
            "values 10.5..14 in steps of .5: {:?}",
            series.precision_note
        );
    }
    nii.qform = None;
    nii.scl_slope = 0.0; // = no scaling
    let v = read_nifti(&nii.bytes()).unwrap();
    assert_eq!(v.geometry_source, GeometrySource::Pixdim);
    assert_eq!(v.value(1, 1, 1), 8.0);
    assert_eq!(
        v.affine,
        [
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 3.0, 0.0, 0.0],
            [0.0, 0.0, 4.0, 0.0]
        ]
    );
}

#[test]
fn four_d_refused_or_split() {
    let v: Vec<u8> = (0..2 * 3 * 4 * 3).map(|x| x as u8).collect();
    let nii = Nii::new(&[2, 3, 4, 3], 2, v).with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]));
    let e = read_nifti(&nii.gz()).unwrap_err();
    assert!(
        e.to_string().contains("4-D volume") && e.to_string().contains("split it by channel"),
        "{e}"
    );
    let c = read_nifti_with(
        &nii.gz(),
        &ReadOptions {
            channel: Some(2),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(c.dims, [2, 3, 4]);
    assert_eq!(c.value(0, 0, 0), 48.0);
    let e = read_nifti_with(
        &nii.bytes(),
        &ReadOptions {
            channel: Some(3),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("channel 3"), "{e}");
}

#[test]
fn bad_input_gives_clear_errors() {
    let data: Vec<u8> = (0..10 * 10 * 10).map(|x| x as u8).collect();
    let nii = Nii::new(&[10, 10, 10], 2, data.clone()).with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]));

    // truncated .nii.gz
    let gz = nii.gz();
    let e = read_nifti(&gz[..gz.len() / 2]).unwrap_err();
    assert!(matches!(e, ConvertError::Truncated(_)), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    // truncated gz in the header
    let e = read_nifti(&gz[..20]).unwrap_err();
    assert!(
        e.to_string().to_lowercase().contains("truncated") || e.to_string().contains("too short"),
        "{e}"
    );

    // header whose dims exceed the data
    let mut lying = nii.clone();
    lying.dims = vec![10, 10, 11];
    let mut b = lying.bytes();
    b.truncate(352 + 1000);
    let e = read_nifti(&b).unwrap_err();
    assert!(
        matches!(e, ConvertError::Truncated(_)) && e.to_string().contains("1100"),
        "{e}"
    );
    let e = read_nifti(&gzip(&b)).unwrap_err();
    assert!(matches!(e, ConvertError::Truncated(_)), "{e}");
    // NIfTI-2 lying about its size (64-bit dims)
    let mut lying2 = nii.clone();
    lying2.version = 2;
    lying2.dims = vec![1 << 20, 1 << 20, 4];
    let e = read_nifti(&lying2.bytes()).unwrap_err();
    assert!(
        matches!(e, ConvertError::TooLarge(_)) && e.to_string().contains("exceed"),
        "{e}"
    );

    // garbage
    let garbage: Vec<u8> = (0..5000u32)
        .map(|x| (x.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let e = read_nifti(&garbage).unwrap_err();
    assert!(e.to_string().contains("not a NIfTI"), "{e}");
    assert!(read_nifti(&[]).is_err());
    assert!(read_nifti(&[0x1f, 0x8b]).is_err());
    let e = read_nifti(&gzip(&garbage)).unwrap_err();
    assert!(e.to_string().contains("not a NIfTI"), "{e}");

    // complex and float128 refused clearly (the header's datatype is all that is read)
    for (dt, what) in [
        (32, "complex"),
        (1792, "complex"),
        (2048, "complex"),
        (1536, "float128"),
    ] {
        let mut b = Nii::new(&[2, 2, 1], 2, vec![0; 4]).bytes();
        b[70..72].copy_from_slice(&(dt as i16).to_le_bytes());
        b.extend(vec![0; 64]);
        let e = read_nifti(&b).unwrap_err();
        assert!(
            matches!(e, ConvertError::Unsupported(_)) && e.to_string().contains(what),
            "{dt}: {e}"
        );
        if what == "complex" {
            assert!(e.to_string().contains("no image representation"), "{e}");
        }
    }
    // RGB24 read (hand-written; the nibabel-written files are in tests/oracles.rs), scl_* ignored for colour
    let mut rgb = Nii::new(&[2, 2, 1], 128, (0..12).collect());
    rgb.scl_slope = 2.0;
    let v = read_nifti(&rgb.bytes()).unwrap();
    assert_eq!(v.rgb(1, 0, 0), Some([3, 4, 5]));
    assert_eq!(v.value(1, 1, 0), (9 + 256 * 10 + 65536 * 11) as f64);
    assert!(!v.is_scaled() && v.data.is_colour() && !v.data.is_integer());
    let rgba = Nii::new(&[2, 1, 1], 2304, (0..8).collect());
    let v = read_nifti(&rgba.gz()).unwrap();
    assert_eq!(v.rgb(1, 0, 0), Some([4, 5, 6]));
    assert_eq!(v.data.type_name(), "rgba32");
    // truncated colour data
    let e = read_nifti(&rgb.bytes()[..352 + 11]).unwrap_err();
    assert!(matches!(e, ConvertError::Truncated(_)), "{e}");

    // label map of another shape
    let img = read_nifti(&nii.bytes()).unwrap();
    let series = volume_to_series(&img, &SeriesOptions::new("CT", "x", "y")).unwrap();
    let other = read_nifti(
        &Nii::new(&[10, 10, 9], 2, data[..900].to_vec())
            .with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]))
            .bytes(),
    )
    .unwrap();
    let segs = [Segment::from_seg_info(1, "liver", "Ground truth")];
    let e = labels_to_seg(&other, &series, &img, &segs, &SegOptions::new("s")).unwrap_err();
    assert!(e.to_string().contains("shape [10, 10, 9] differs"), "{e}");
    // … or another geometry
    let shifted = read_nifti(
        &Nii::new(&[10, 10, 10], 2, data.clone())
            .with_sform(diag(1.0, 1.0, 1.0, [5.0, 0.0, 0.0]))
            .bytes(),
    )
    .unwrap();
    let e = labels_to_seg(&shifted, &series, &img, &segs, &SegOptions::new("s")).unwrap_err();
    assert!(e.to_string().contains("geometry"), "{e}");
    // labels not described
    let e = labels_to_seg(&img, &series, &img, &segs, &SegOptions::new("s")).unwrap_err();
    assert!(e.to_string().contains("not described"), "{e}");
    let mut lenient = SegOptions::new("s");
    lenient.ignore_unlisted_labels = true;
    assert!(labels_to_seg(&img, &series, &img, &segs, &lenient).is_ok());
    // non-integer labels
    let fl: Vec<f32> = (0..1000).map(|x| x as f32 * 0.5).collect();
    let fl = read_nifti(
        &Nii::new(&[10, 10, 10], 16, le_bytes(&fl, f32::to_le_bytes))
            .with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]))
            .bytes(),
    )
    .unwrap();
    let e = labels_to_seg(&fl, &series, &img, &segs, &SegOptions::new("s")).unwrap_err();
    assert!(e.to_string().contains("non-negative integers"), "{e}");

    // bad tag keys and values
    let e = parse_tag_key("0008-103e").unwrap_err();
    assert!(
        e.to_string().contains("0008-103e") && e.to_string().contains("gggg|eeee"),
        "{e}"
    );
    for (key, val, what) in [
        ("7fe0|0010", "x", "set by the converter"),
        ("0028|0010", "5", "set by the converter"),
        ("0009|0010", "x", "private tags"),
        ("0018|fff1", "x", "not in the DICOM standard dictionary"),
        ("0020|0011", "twelve", "not a valid IS"),
        ("0020|000d", "1.2.abc", "not a valid UID"),
    ] {
        let mut o = SeriesOptions::new("CT", "x", "y");
        o.extra_tags = vec![(parse_tag_key(key).unwrap(), val.into())];
        let e = volume_to_series(&img, &o).unwrap_err();
        assert!(e.to_string().contains(what), "{key}: {e}");
    }

    // sheared affine
    let sheared = read_nifti(
        &Nii::new(&[10, 10, 10], 2, data)
            .with_sform([
                [1.0, 0.5, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ])
            .bytes(),
    )
    .unwrap();
    let e = volume_to_series(&sheared, &SeriesOptions::new("CT", "x", "y")).unwrap_err();
    assert!(e.to_string().contains("sheared"), "{e}");
}

#[test]
fn extra_tags_and_deterministic_uids() {
    use dicom_dictionary_std::tags;
    let data: Vec<u8> = (0..4 * 4 * 2).map(|x| x as u8).collect();
    let img = read_nifti(
        &Nii::new(&[4, 4, 2], 2, data)
            .with_sform(diag(1.0, 1.0, 1.0, [0.0; 3]))
            .bytes(),
    )
    .unwrap();
    let mut o = SeriesOptions::new("CT", "upload-1", "Case00.nii.gz");
    o.extra_tags = vec![
        (parse_tag_key("0008|0060").unwrap(), "MR".into()), // meta_data.json global_tags example
        (parse_tag_key("0008|103e").unwrap(), "I am unique".into()),
        (parse_tag_key("0010|1010").unwrap(), "042Y".into()),
        (parse_tag_key("0018|0087").unwrap(), "3".into()), // DS
    ];
    let a = volume_to_series(&img, &o).unwrap();
    let b = volume_to_series(&img, &o).unwrap();
    assert_eq!(a.files, b.files, "same input, same bytes");
    assert_eq!(
        a.sop_class_uid, "1.2.840.10008.5.1.4.1.1.4",
        "Modality from extra tags picks MR Image Storage"
    );
    let f = dicom_object::from_reader(&a.files[1][128..]).unwrap();
    assert_eq!(
        f.element(tags::SERIES_DESCRIPTION)
            .unwrap()
            .to_str()
            .unwrap(),
        "I am unique"
    );
    assert_eq!(
        f.element(tags::PATIENT_AGE).unwrap().to_str().unwrap(),
        "042Y"
    );
    assert_eq!(
        f.element(tags::MAGNETIC_FIELD_STRENGTH).unwrap().vr(),
        dicom_core::VR::DS
    );
    assert_eq!(
        f.element(tags::INSTANCE_NUMBER)
            .unwrap()
            .to_int::<i32>()
            .unwrap(),
        2
    );
    assert_eq!(
        f.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap(),
        a.sop_instance_uids[1]
    );
    assert!(a.series_uid.starts_with("2.25.") && a.study_uid.starts_with("2.25."));
    let mut o2 = o.clone();
    o2.series_uid_seed = "Case02.nii.gz".into();
    let c = volume_to_series(&img, &o2).unwrap();
    assert_eq!(c.study_uid, a.study_uid);
    assert_ne!(c.series_uid, a.series_uid);
    assert_ne!(c.frame_of_reference_uid, a.frame_of_reference_uid);
}

fn nibabel_data_dir() -> PathBuf {
    let py = python(&["nibabel"]);
    let o = Command::new(py)
        .args(["-c", "import nibabel, os; print(os.path.join(os.path.dirname(nibabel.__file__), 'tests', 'data'))"])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

#[test]
fn nibabel_sample_files() {
    let dir = nibabel_data_dir();
    let py = python(&["nibabel", "numpy"]);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".nii") || n.ends_with(".nii.gz")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 4, "nibabel sample files missing in {dir:?}");
    let mut report = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let o = Command::new(&py)
            .arg(fixture("nib_info.py"))
            .arg(f)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let r = read_nifti(&std::fs::read(f).unwrap());
        let spatial = shape.len() <= 3 || shape[3..].iter().all(|&s| s == 1);
        if info.get("affine").is_none() {
            // CIFTI and other non-image NIfTI: must be refused clearly
            let e = r.expect_err(&name);
            report.push(format!("{name}: refused: {e}"));
            continue;
        }
        if !spatial {
            let e = r.expect_err(&name);
            assert!(
                e.to_string().contains("4-D volume")
                    && e.to_string().contains("split it by channel"),
                "{name}: {e}"
            );
            report.push(format!("{name}: refused: {e}"));
            // and the split works
            let c = read_nifti_with(
                &std::fs::read(f).unwrap(),
                &ReadOptions {
                    channel: Some(1),
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(c.dims.to_vec(), shape[..3].to_vec());
            volume_to_series(&c, &SeriesOptions::new("MR", "nib", &name)).unwrap();
            continue;
        }
        let v = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut dims3 = shape.clone();
        dims3.resize(3, 1);
        assert_eq!(v.dims.to_vec(), dims3[..3].to_vec(), "{name}");
        if v.geometry_source != GeometrySource::Pixdim {
            let aff = info["affine"].as_array().unwrap();
            for rr in 0..3 {
                for c in 0..4 {
                    let e = aff[rr][c].as_f64().unwrap();
                    assert!(
                        (v.affine[rr][c] - e).abs() < 1e-4,
                        "{name}: affine {:?} vs {aff:?}",
                        v.affine
                    );
                }
            }
        }
        // values
        let mut sum = 0.0;
        let mut nan = 0u64;
        let mut buf = Vec::new();
        for k in 0..v.dims[2] {
            v.slice_values(k, &mut buf);
            for &x in &buf {
                if x.is_nan() {
                    nan += 1
                } else {
                    sum += x
                }
            }
        }
        assert_eq!(nan, info["nan_count"].as_u64().unwrap(), "{name}");
        let esum = info["sum"].as_f64().unwrap();
        assert!(
            (sum - esum).abs() <= 1e-6 * esum.abs().max(1.0),
            "{name}: sum {sum} vs {esum}"
        );
        for s in info["samples"].as_array().unwrap() {
            let idx: Vec<usize> = s[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            let got = v.value(idx[0], idx[1], idx[2]);
            match s[1].as_f64() {
                Some(e) => assert!(
                    (got - e).abs() <= 1e-6 * e.abs().max(1.0),
                    "{name} {idx:?}: {got} vs {e}"
                ),
                None => assert!(got.is_nan(), "{name} {idx:?}"),
            }
        }
        let s = volume_to_series(&v, &SeriesOptions::new("MR", "nib", &name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s.files.len(), v.dims[2]);
        report.push(format!(
            "{name}: {} slices, note {:?}",
            s.files.len(),
            s.precision_note
        ));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn no_panic_on_any_truncation_or_bit_flip() {
    let data: Vec<u8> = (0..6 * 5 * 4).map(|x| x as u8).collect();
    for version in [1u8, 2] {
        let mut nii = Nii::new(&[6, 5, 4], 2, data.clone()).with_sform(oblique());
        nii.version = version;
        let raw = nii.bytes();
        let gz = nii.gz();
        // Whole, both read as the volume they are.
        let whole = read_nifti(&raw).expect("the whole file");
        assert_eq!(whole.dims, [6, 5, 4]);
        assert_eq!(whole.data.len(), data.len());
        assert_eq!(read_nifti(&gz).expect("the whole .gz").data, whole.data);
        // Cut anywhere, a file is an error with a message, or — only once every voxel is in,
        // reading stops there (the end of a gzip stream is never needed) — the whole volume;
        // never a partial one.
        for b in [&raw, &gz] {
            for len in 0..b.len() {
                match read_nifti(&b[..len]) {
                    Ok(v) => assert!(
                        v.dims == whole.dims && v.data == whole.data,
                        "v{version}: {len} of {} bytes read as {:?}",
                        b.len(),
                        v.dims
                    ),
                    Err(e) => assert!(!e.to_string().is_empty()),
                }
            }
            assert!(read_nifti(&b[..b.len() - 10 - data.len() / 2]).is_err());
        }
        // Each header byte flipped: an error, or a volume whose voxels match its dimensions
        // and that converts (or is refused) without a panic.
        let mut refused = 0;
        for pos in 0..raw.len().min(560) {
            let mut m = raw.clone();
            m[pos] ^= 0xA5;
            match read_nifti(&m) {
                Ok(v) => {
                    assert_eq!(
                        v.data.len(),
                        v.dims.iter().product::<usize>(),
                        "v{version}: byte {pos} flipped"
                    );
                    let _ = volume_to_series(&v, &SeriesOptions::new("CT", "f", "f"));
                }
                Err(_) => refused += 1,
            }
        }
        // The magic, sizeof_hdr, dim and datatype bytes alone are enough to be refused.
        assert!(refused >= 10, "v{version}: only {refused} flips refused");
    }
}
