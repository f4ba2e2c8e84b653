//! How both import workflows read the layout of an uploaded zip (crates/workflows): the NIfTI
//! import's plan (basic or nnU-Net v2 layout, cases, refused names) and the DICOM import's
//! entries (items, skipped and refused names), with the default `ImportLimits`.
//!
//! Input: a zip (starting with `PK`), or a list of names, one a line, from which a zip is made
//! (JSON files named like the import's get a valid example, the rest a few bytes; a name
//! ending in `/` is a folder) — so that the layout logic, not the zip reader, gets most of the
//! mutations.
//!
//! Contract: no panic, no allocation beyond 64 MiB at once; every file a case reads, and every
//! DICOM item opened, is a name of the zip that stays inside it (relative, no `..` part, no
//! backslash, no drive letter); no file is read by two cases.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use radport_fuzz::assert_allocates_at_most;
use radport_workflows::fuzzing::{dicom_entries, nifti_plan};
use radport_workflows::ImportLimits;

#[global_allocator]
static PROBE: radport_fuzz::Probe = radport_fuzz::Probe;

const META: &str =
    r#"{"global_tags": {"0008|0060": "MR"}, "series_tags": {"Case00.nii": {"0008|103e": "x"}}}"#;
const SEG_INFO: &str =
    r#"{"algorithm": "Ground truth", "seg_info": [{"label_name": "a", "label_int": "1"}]}"#;
const DATASET: &str = r#"{"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "a": 1}, "file_ending": ".nii.gz"}"#;

fn zip_of(names: &[&str]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for name in names {
        if name.ends_with('/') {
            let _ = zip.add_directory(*name, options);
            continue;
        }
        if zip.start_file(*name, options).is_err() {
            continue;
        }
        let base = name
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let content: &[u8] = match base.as_str() {
            "meta_data.json" | "meta-data.json" => META.as_bytes(),
            "seg_info.json" | "seg-info.json" => SEG_INFO.as_bytes(),
            "dataset.json" => DATASET.as_bytes(),
            _ if base.ends_with(".json") => b"{}",
            _ => b"not a volume",
        };
        let _ = zip.write_all(content);
    }
    zip.finish().map(|c| c.into_inner()).unwrap_or_default()
}

/// What every path an import reads must be.
fn assert_inside(path: &str, what: &str) {
    assert!(
        !path.starts_with('/')
            && !path.contains('\\')
            && path.as_bytes().get(1) != Some(&b':')
            && !path.split('/').any(|p| p == ".."),
        "{what} reads {path:?}, which leaves the zip's folder"
    );
}

/// A name of the zip with its `.` and empty parts dropped (as the NIfTI import does).
fn normalised(name: &str) -> String {
    name.split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fuzz_target!(|data: &[u8]| {
    let (bytes, names) = if data.starts_with(b"PK") {
        (data.to_vec(), None)
    } else {
        let text = String::from_utf8_lossy(data);
        let names: Vec<&str> = text.lines().filter(|l| !l.is_empty()).take(200).collect();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        (zip_of(&refs), Some(names))
    };
    let path = std::env::temp_dir().join(format!("radport-fuzz-layout-{}.zip", std::process::id()));
    std::fs::write(&path, &bytes).expect("writing the zip");
    let limits = ImportLimits::default();

    let plan = assert_allocates_at_most("nifti plan", 64 << 20, || nifti_plan(&path, &limits));
    if let Ok((_layout, cases, _refused)) = &plan {
        let mut read: Vec<String> = Vec::new();
        for (case, entries) in cases {
            for entry in entries {
                // The entry's name as the import reads it (`.` parts dropped); the paths the
                // plan keeps below a wrapping folder are no paths of their own
                // (`upload/:c.nii.gz` is no drive letter; found by this target).
                let file = normalised(entry);
                assert_inside(&file, &format!("case {case:?}"));
                // `normalised` reads a backslash as a separator: the entry itself has none.
                assert_inside(entry, &format!("case {case:?}"));
                // Found by this target: `Case00.nii.gz` and `./Case00.nii.gz` were two cases
                // (fixed; crates/workflows/tests/fuzz_regressions.rs).
                assert!(!read.contains(&file), "{file:?} is read by two cases");
                if let Some(names) = &names {
                    assert!(
                        names.contains(entry),
                        "case {case:?} reads {entry:?}, which is no name of the zip"
                    );
                }
                read.push(file);
            }
        }
    }

    for extension in ["", ".dcm"] {
        let entries = assert_allocates_at_most("dicom entries", 64 << 20, || {
            dicom_entries(&path, extension, &limits)
        });
        for (kind, name) in &entries {
            if *kind == "begin" {
                assert_inside(name, "the DICOM import");
                if let Some(names) = &names {
                    assert!(
                        names.contains(name),
                        "the DICOM import opens {name:?}, no name of the zip"
                    );
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
});
