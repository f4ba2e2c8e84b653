//! End to end: zips of NIfTI volumes (Kaapana's basic layout, nnU-Net v2) uploaded, converted to
//! DICOM series and SEG by `import-niftis-from-data-upload`, found in the catalog.
//!
//! The NIfTI files are written here by hand (NIfTI-1 header, sform) and gzipped with stored
//! deflate blocks, so the test needs no compression crate.

use crate::common::*;
use radport_testkit::nifti::{gzip_stored, Nii};
use serde_json::{json, Value};

const WORKFLOW: &str = "import-niftis-from-data-upload";

/// Runs the workflow with the CLI and returns the finished run.
fn run(server: &Server, params: &[&str]) -> Value {
    let mut args = vec!["workflow", "run", WORKFLOW, "--json"];
    for p in params {
        args.push("-p");
        args.push(p);
    }
    let out = server.cli(&args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", output_text(&out)))
}

// --- NIfTI-1 files -----------------------------------------------------------------------------

/// A NIfTI-1 file: `dims` (3-D or 4-D), datatype 4 (int16) or 2 (uint8), sform = diag(1, 1, 2)
/// shifted by (-10, -20, 5).
fn nifti(dims: &[usize], datatype: i16, data: &[u8]) -> Vec<u8> {
    Nii::new(dims, datatype, data.to_vec())
        .with_sform([
            [1.0, 0.0, 0.0, -10.0],
            [0.0, 1.0, 0.0, -20.0],
            [0.0, 0.0, 2.0, 5.0],
        ])
        .bytes()
}

/// An int16 image of `dims` (a gradient).
fn image(dims: [usize; 3], seed: i16) -> Vec<u8> {
    let n = dims.iter().product::<usize>();
    let data: Vec<u8> = (0..n)
        .flat_map(|i| (seed + (i % 97) as i16 * 10).to_le_bytes())
        .collect();
    nifti(&dims, 4, &data)
}

/// A uint8 label map of `dims`: label 1 in a block of slice 1, label 2 in a block of slice 2.
fn labels(dims: [usize; 3]) -> Vec<u8> {
    let [nx, ny, nz] = dims;
    let mut data = vec![0u8; nx * ny * nz];
    for k in 0..nz {
        for j in 2..5 {
            for i in 2..6 {
                let v = match k {
                    1 => 1,
                    2 => 2,
                    _ => 0,
                };
                data[i + nx * (j + ny * k)] = v;
            }
        }
    }
    nifti(&dims, 2, &data)
}

const DIMS: [usize; 3] = [8, 8, 4];

fn json_bytes(v: Value) -> Vec<u8> {
    serde_json::to_vec_pretty(&v).unwrap()
}

fn seg_info() -> Vec<u8> {
    json_bytes(json!({
        "task_body_part": "prostate",
        "algorithm": "Ground truth",
        "seg_info": [
            {"label_name": "prostate", "label_int": "1"},
            {"label_name": "lesion", "label_int": 2}
        ]
    }))
}

// --- reading results ---------------------------------------------------------------------------

fn series_of(run: &Value) -> Vec<String> {
    let mut v: Vec<String> = run["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// The items of a project's series list, by series UID.
fn listed(server: &Server, project: &str, query: &str) -> Vec<Value> {
    server.series(project, query)["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Values of `tag` (8 hex digits) in DICOM JSON.
fn values<'a>(obj: &'a Value, tag: &str) -> &'a [Value] {
    obj[tag]["Value"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn segment_labels(metadata: &Value) -> Vec<String> {
    values(metadata, "00620002")
        .iter()
        .map(|s| values(s, "00620005")[0].as_str().unwrap().to_string())
        .collect()
}

fn referenced_series(metadata: &Value) -> Vec<String> {
    values(metadata, "00081115")
        .iter()
        .map(|s| values(s, "0020000E")[0].as_str().unwrap().to_string())
        .collect()
}

fn item_error(run: &Value, item: &str) -> String {
    run["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["item"] == item)
        .map(|e| e["error"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no error for {item}: {run}"))
}

// --- tests -------------------------------------------------------------------------------------

#[test]
fn basic_layout_with_meta_data_and_seg_info_is_imported_and_reimported_identically() {
    let server = Server::start(&[]);
    server.create_project("prostate");
    let tmp = tempfile::tempdir().unwrap();
    let meta = json_bytes(json!({
        "global_tags": {"0008|0060": "MR"},
        "series_tags": {"Case00.nii": {"0008|103e": "I am unique"}}
    }));
    // Label maps beside their case, one folder wrapping everything.
    let a = tmp.path().join("a.zip");
    zip_of(
        &a,
        &[
            ("OnlyMRs/Case00.nii.gz", gzip_stored(&image(DIMS, 100))),
            (
                "OnlyMRs/Case00_segmentation.nii.gz",
                gzip_stored(&labels(DIMS)),
            ),
            ("OnlyMRs/Case01.nii.gz", gzip_stored(&image(DIMS, 200))),
            ("OnlyMRs/meta_data.json", meta.clone()),
            ("OnlyMRs/seg_info.json", seg_info()),
        ],
    );
    server.upload(&a, "a.zip");
    let first = run(
        &server,
        &[
            "file=a.zip",
            "project=prostate",
            "delete_original_file=false",
        ],
    );
    assert_eq!(first["state"], "succeeded", "{first}");
    assert_eq!(first["errors"], json!([]), "{first}");
    assert_eq!(first["progress"], json!({"done": 2, "total": 2}), "{first}");
    assert_eq!(first["params"]["dataset"], "itk2dcm", "{first}");
    let produced = series_of(&first);
    assert_eq!(produced.len(), 3, "2 images + 1 SEG: {first}");

    for project in ["prostate", "admin"] {
        let items = listed(&server, project, "dataset=itk2dcm");
        assert_eq!(items.len(), 3, "{project}: {items:?}");
    }
    let items = listed(&server, "prostate", "");
    let by_description = |d: &str| {
        items
            .iter()
            .find(|s| s["series_description"] == d)
            .unwrap_or_else(|| panic!("no series {d:?}: {items:?}"))
            .clone()
    };
    let case00 = by_description("I am unique");
    assert_eq!(case00["modality"], "MR");
    assert_eq!(case00["patient_id"], "Case00");
    assert_eq!(case00["instance_count"], 4);
    let case01 = by_description("Case01");
    assert_eq!(case01["modality"], "MR");
    assert_ne!(case01["study_instance_uid"], case00["study_instance_uid"]);
    let seg = items
        .iter()
        .find(|s| s["modality"] == "SEG")
        .unwrap_or_else(|| panic!("no SEG: {items:?}"));
    assert_eq!(seg["study_instance_uid"], case00["study_instance_uid"]);
    let seg_uid = seg["series_instance_uid"].as_str().unwrap();
    let detail = server.get_json(&format!("/api/series/{seg_uid}"));
    assert_eq!(
        segment_labels(&detail["metadata"]),
        vec!["prostate", "lesion"],
        "{detail}"
    );
    assert_eq!(
        referenced_series(&detail["metadata"]),
        vec![case00["series_instance_uid"].as_str().unwrap()]
    );
    // Ground truth → MANUAL.
    let first_segment = &values(&detail["metadata"], "00620002")[0];
    assert_eq!(values(first_segment, "00620008")[0], "MANUAL");

    // The same zip again: the same series, nothing new.
    let instances = server.instance_total("admin");
    let again = run(&server, &["file=a.zip", "project=prostate"]);
    assert_eq!(again["state"], "succeeded", "{again}");
    assert_eq!(series_of(&again), produced);
    assert_eq!(listed(&server, "admin", "").len(), 3);
    assert_eq!(server.instance_total("admin"), instances);
    // Everything imported: the upload is deleted this time.
    assert_eq!(server.get_json("/api/files")["items"], json!([]));

    // cases/ and segs/ folders.
    let b = tmp.path().join("b.zip");
    zip_of(
        &b,
        &[
            ("cases/Case10.nii.gz", gzip_stored(&image(DIMS, 300))),
            ("segs/Case10.nii.gz", gzip_stored(&labels(DIMS))),
            ("meta_data.json", meta),
            ("seg_info.json", seg_info()),
        ],
    );
    server.upload(&b, "b.zip");
    let r = run(&server, &["file=b.zip"]);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    let uids = series_of(&r);
    assert_eq!(uids.len(), 2, "{r}");
    let modalities: Vec<String> = uids
        .iter()
        .map(|u| {
            server.get_json(&format!("/api/series/{u}"))["series"]["modality"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(modalities.contains(&"MR".to_string()), "{modalities:?}");
    assert!(modalities.contains(&"SEG".to_string()), "{modalities:?}");
    assert_eq!(listed(&server, "admin", "dataset=itk2dcm").len(), 5);
    assert_eq!(listed(&server, "prostate", "").len(), 3);
}

#[test]
fn nnunet_v2_dataset_gives_one_series_per_channel_and_a_seg_on_channel_0() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let dataset = json_bytes(json!({
        "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "prostate": 1, "lesion": 2},
        "numTraining": 1,
        "file_ending": ".nii.gz",
        "name": "Dataset005_Prostate",
        "description": "test data"
    }));
    let zip = tmp.path().join("nn.zip");
    let d = "Dataset005_Prostate";
    zip_of(
        &zip,
        &[
            (&format!("{d}/dataset.json"), dataset),
            (
                &format!("{d}/imagesTr/prostate_00_0000.nii.gz"),
                gzip_stored(&image(DIMS, 10)),
            ),
            (
                &format!("{d}/imagesTr/prostate_00_0001.nii.gz"),
                gzip_stored(&image(DIMS, 20)),
            ),
            (
                &format!("{d}/labelsTr/prostate_00.nii.gz"),
                gzip_stored(&labels(DIMS)),
            ),
            (
                &format!("{d}/imagesTs/prostate_07_0000.nii.gz"),
                gzip_stored(&image(DIMS, 30)),
            ),
            (
                &format!("{d}/imagesTs/prostate_07_0001.nii.gz"),
                gzip_stored(&image(DIMS, 40)),
            ),
        ]
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect::<Vec<_>>(),
    );
    server.upload(&zip, "nn.zip");
    let r = run(&server, &["file=nn.zip", "dataset=nnunet"]);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["errors"], json!([]), "{r}");
    assert_eq!(r["progress"], json!({"done": 2, "total": 2}), "{r}");
    assert!(r["log"].to_string().contains("nnU-Net"), "{r}");
    assert_eq!(series_of(&r).len(), 5, "2 + 2 images, 1 SEG: {r}");

    let items = listed(&server, "admin", "dataset=nnunet");
    assert_eq!(items.len(), 5);
    let of_case = |pid: &str| -> Vec<Value> {
        items
            .iter()
            .filter(|s| s["patient_id"] == pid)
            .cloned()
            .collect()
    };
    let case = of_case("prostate_00");
    assert_eq!(case.len(), 3, "{case:?}");
    let find = |d: &str| {
        case.iter()
            .find(|s| s["series_description"] == d)
            .unwrap_or_else(|| panic!("no {d}: {case:?}"))
    };
    let (t2, adc) = (find("T2"), find("ADC"));
    assert_eq!(t2["modality"], "MR", "channel names T2/ADC are MR");
    assert_eq!(t2["study_instance_uid"], adc["study_instance_uid"]);
    assert_ne!(t2["series_instance_uid"], adc["series_instance_uid"]);
    let seg = case.iter().find(|s| s["modality"] == "SEG").unwrap();
    assert_eq!(seg["study_instance_uid"], t2["study_instance_uid"]);
    let detail = server.get_json(&format!(
        "/api/series/{}",
        seg["series_instance_uid"].as_str().unwrap()
    ));
    assert_eq!(
        referenced_series(&detail["metadata"]),
        vec![t2["series_instance_uid"].as_str().unwrap()]
    );
    assert_eq!(
        segment_labels(&detail["metadata"]),
        vec!["prostate", "lesion"]
    );
    let test_case = of_case("prostate_07");
    assert_eq!(test_case.len(), 2, "imagesTs: no labels: {test_case:?}");
    assert!(test_case.iter().all(|s| s["modality"] == "MR"));
}

#[test]
fn bad_cases_are_item_errors_and_bad_json_fails_the_run() {
    let server = Server::start(&["--stable-after", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let meta = json_bytes(json!({
        "global_tags": {"0008|0060": "CT"},
        "series_tags": {"BadTag.nii.gz": {"0008-103e": "x"}}
    }));
    let truncated = gzip_stored(&image(DIMS, 0));
    let truncated = truncated[..truncated.len() / 2].to_vec();
    let lying = {
        // The header says 8×8×40 voxels, the data has 8×8×4.
        let mut b = image(DIMS, 0);
        b[46..48].copy_from_slice(&40i16.to_le_bytes());
        b
    };
    let four_d = nifti(&[8, 8, 4, 2], 4, &vec![0u8; 8 * 8 * 4 * 2 * 2]);
    let zip = tmp.path().join("bad.zip");
    zip_of(
        &zip,
        &[
            ("Good.nii.gz", gzip_stored(&image(DIMS, 50))),
            ("Good_segmentation.nii.gz", gzip_stored(&labels(DIMS))),
            ("Truncated.nii.gz", truncated),
            ("Lying.nii", lying),
            ("FourD.nii.gz", gzip_stored(&four_d)),
            ("Shape.nii.gz", gzip_stored(&image(DIMS, 60))),
            ("Shape_segmentation.nii.gz", gzip_stored(&labels([8, 8, 3]))),
            ("BadTag.nii.gz", gzip_stored(&image(DIMS, 70))),
            ("Lonely_segmentation.nii.gz", gzip_stored(&labels(DIMS))),
            ("meta_data.json", meta),
            ("seg_info.json", seg_info()),
        ],
    );
    server.upload(&zip, "bad.zip");
    let r = run(&server, &["file=bad.zip"]);
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["progress"], json!({"done": 7, "total": 7}), "{r}");
    assert_eq!(r["errors"].as_array().unwrap().len(), 6, "{r}");
    assert!(item_error(&r, "Truncated").contains("truncated"), "{r}");
    assert!(item_error(&r, "Lying").contains("truncated"), "{r}");
    assert!(item_error(&r, "FourD").contains("4-D"), "{r}");
    assert!(item_error(&r, "Shape").contains("shape"), "{r}");
    assert!(item_error(&r, "BadTag").contains("gggg|eeee"), "{r}");
    assert!(
        item_error(&r, "Lonely_segmentation.nii.gz").contains("without its image"),
        "{r}"
    );
    // Good: image + SEG; Shape: its image (the label map failed).
    let items = listed(&server, "admin", "");
    let good: Vec<&Value> = items.iter().filter(|s| s["patient_id"] == "Good").collect();
    assert_eq!(good.len(), 2, "{items:?}");
    assert!(good.iter().any(|s| s["modality"] == "CT"));
    let seg = good.iter().find(|s| s["modality"] == "SEG").unwrap();
    assert!(items.iter().any(|s| s["patient_id"] == "Shape"));
    assert_eq!(series_of(&r).len(), 3, "{r}");
    // Not everything imported: the upload stays.
    assert_eq!(
        server.get_json("/api/files")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The SEG is rendered (over its image) by the pipeline.
    let seg_uid = seg["series_instance_uid"].as_str().unwrap();
    server.wait_for(60, "the SEG thumbnail", || {
        let (status, _) = server.get_status(&format!("/api/series/{seg_uid}/thumbnail"));
        (status == 200).then_some(())
    });

    // Broken JSON files stop the run before anything is imported.
    for (name, meta, seg, expect) in [
        (
            "notjson.zip",
            b"{not json".to_vec(),
            seg_info(),
            "meta_data.json is not valid JSON",
        ),
        (
            "badseg.zip",
            json_bytes(json!({})),
            json_bytes(json!({"seg_info": [{"label_name": "x", "label_int": "one"}]})),
            "label_int must be a positive integer",
        ),
        (
            "badglobal.zip",
            json_bytes(json!({"global_tags": {"0008-0060": "MR"}})),
            seg_info(),
            "gggg|eeee",
        ),
    ] {
        let path = tmp.path().join(name);
        zip_of(
            &path,
            &[
                ("X.nii.gz", gzip_stored(&image(DIMS, 1))),
                ("meta_data.json", meta),
                ("seg_info.json", seg),
            ],
        );
        server.upload(&path, name);
        let r = run(&server, &[&format!("file={name}")]);
        assert_eq!(r["state"], "failed", "{name}: {r}");
        assert!(r["log"].to_string().contains(expect), "{name}: {r}");
        assert_eq!(r["series"], json!([]));
    }
    // A zip without NIfTI.
    let path = tmp.path().join("empty.zip");
    zip_of(&path, &[("readme.txt", b"hello".to_vec())]);
    server.upload(&path, "empty.zip");
    let r = run(&server, &["file=empty.zip"]);
    assert_eq!(r["state"], "failed", "{r}");
    assert!(r["log"].to_string().contains("no NIfTI volume"), "{r}");
    let defs = server.get_json("/api/workflows");
    let nifti = defs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == WORKFLOW)
        .unwrap();
    assert!(nifti["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "dataset" && p["default"] == "itk2dcm"));
}
