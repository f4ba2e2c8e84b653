//! End to end: a zip of DICOM folders uploaded, imported by a workflow run, found in the catalog.

use crate::common::*;
use radport_testkit::{series_uid, write_series, SeriesSpec};

fn series_files(dir: &std::path::Path, spec: &SeriesSpec, folder: &str) -> Vec<(String, Vec<u8>)> {
    write_series(&dir.join(folder), spec)
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                format!("{folder}/{}", p.file_name().unwrap().to_str().unwrap()),
                std::fs::read(p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_zip_of_dicom_folders_is_imported_with_item_errors_reported() {
    let server = Server::start(&["--stable-after", "1"]);
    server.create_project("brain");
    let tmp = tempfile::tempdir().unwrap();
    let a = SeriesSpec {
        count: 4,
        uid_seed: "301".into(),
        ..Default::default()
    };
    let b = SeriesSpec {
        count: 3,
        uid_seed: "302".into(),
        ..Default::default()
    };
    let mut entries = series_files(tmp.path(), &a, "patient1/ct");
    entries.extend(series_files(tmp.path(), &b, "patient2/ct"));
    entries.push(("README.txt".into(), b"not an image".to_vec()));
    entries.push((
        "patient2/broken.dcm".into(),
        b"this is no DICOM file".to_vec(),
    ));
    let evil = entries[0].1.clone();
    entries.push(("../../evil.dcm".into(), evil));
    let zip = tmp.path().join("upload.zip");
    zip_of(&zip, &entries);
    server.upload(&zip, "upload.zip");

    let out = server.cli(&[
        "workflow",
        "run",
        "import-dicoms-from-data-upload",
        "-p",
        "file=upload.zip",
        "-p",
        "project=brain",
        "-p",
        "dataset=zipped",
        "--json",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(
        run["progress"]["total"], 9,
        "7 slices + broken + evil: {run}"
    );
    assert_eq!(run["progress"]["done"], 9);
    let errors = run["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{run}");
    let error_of = |item: &str| {
        errors
            .iter()
            .find(|e| e["item"] == item)
            .map(|e| e["error"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no error for {item}: {run}"))
    };
    assert!(error_of("patient2/broken.dcm").contains("not a DICOM"));
    assert!(error_of("../../evil.dcm").contains("unsafe path"));
    let mut produced: Vec<&str> = run["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    produced.sort();
    let mut expected = vec![series_uid(&a), series_uid(&b)];
    expected.sort();
    assert_eq!(produced, expected);
    assert!(run["log"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains("README.txt")));

    // Imported like DIMSE data: in the project and admin, in the dataset.
    for project in ["brain", "admin"] {
        let list = server.series(project, "dataset=zipped");
        assert_eq!(list["total"], 2, "{project}: {list}");
    }
    assert_eq!(server.instance_total("brain"), 7);
    // With item errors the upload is kept.
    assert_eq!(
        server.get_json("/api/files")["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // And the pipeline picks the series up.
    server.wait_for(30, "thumbnails of imported series", || {
        let (status, _) = server.get_status(&format!("/api/series/{}/thumbnail", series_uid(&a)));
        (status == 200).then_some(())
    });
}

#[test]
fn a_clean_zip_is_imported_by_preamble_and_the_upload_deleted() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let a = SeriesSpec {
        count: 3,
        uid_seed: "311".into(),
        ..Default::default()
    };
    // No extension on the files: the empty extension imports whatever is DICOM by its preamble.
    let entries: Vec<(String, Vec<u8>)> = series_files(tmp.path(), &a, "x")
        .into_iter()
        .map(|(n, b)| (n.trim_end_matches(".dcm").to_string(), b))
        .chain([("notes.txt".to_string(), b"hello".to_vec())])
        .collect();
    let zip = tmp.path().join("noext.zip");
    zip_of(&zip, &entries);
    server.upload(&zip, "noext.zip");
    let (status, run) = server.post_json(
        "/api/workflows/import-dicoms-from-data-upload/runs",
        serde_json::json!({"file": "noext.zip", "extension": ""}),
    );
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        run["params"]["dataset"], "dicomupload",
        "defaults filled in"
    );
    let id = run["id"].as_str().unwrap();
    let done = server.wait_for(30, "the run to end", || {
        let r = server.get_json(&format!("/api/workflow-runs/{id}"));
        matches!(r["state"].as_str(), Some("succeeded") | Some("failed")).then_some(r)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["series"], serde_json::json!([series_uid(&a)]));
    assert_eq!(server.instance_total("admin"), 3);
    assert_eq!(
        server.get_json("/api/files")["items"],
        serde_json::json!([]),
        "deleted"
    );
    let runs = server.get_json("/api/workflow-runs");
    assert_eq!(runs["items"][0]["id"], id);
}

#[test]
fn bad_runs_are_refused_or_fail_clearly() {
    let server = Server::start(&[]);
    let (status, body) = server.post_json(
        "/api/workflows/no-such-workflow/runs",
        serde_json::json!({}),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.post_json(
        "/api/workflows/import-dicoms-from-data-upload/runs",
        serde_json::json!({"project": "admin"}),
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("file"), "{body}");
    let (status, _) = server.post_json(
        "/api/workflows/import-dicoms-from-data-upload/runs",
        serde_json::json!({"file": "x.zip", "colour": "blue"}),
    );
    assert_eq!(status, 400);
    let defs = server.get_json("/api/workflows");
    let params = defs["items"][0]["parameters"].as_array().unwrap();
    assert!(params
        .iter()
        .any(|p| p["name"] == "extension" && p["default"] == ".dcm"));

    // A file that is not there, a file that is not a zip, a zip bomb: runs that say why.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("junk.zip"), b"PK but not really").unwrap();
    server.upload(&tmp.path().join("junk.zip"), "junk.zip");
    let bomb = tmp.path().join("bomb.zip");
    zip_of(&bomb, &[("zeros.dcm", vec![0u8; 64 << 20])]);
    server.upload(&bomb, "bomb.zip");
    for (file, expect) in [
        ("missing.zip", "no uploaded file"),
        ("junk.zip", "not a readable .zip"),
    ] {
        let out = server.cli(&[
            "workflow",
            "run",
            "import-dicoms-from-data-upload",
            "-p",
            &format!("file={file}"),
            "--json",
        ]);
        assert!(!out.status.success());
        let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(run["state"], "failed");
        assert!(run["log"].to_string().contains(expect), "{file}: {run}");
    }
    let out = server.cli(&[
        "workflow",
        "run",
        "import-dicoms-from-data-upload",
        "-p",
        "file=bomb.zip",
        "--json",
    ]);
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(run["errors"].to_string().contains("zip bomb"), "{run}");
    // The server still serves.
    assert_eq!(server.get_json("/api/health")["status"], "ok");
}

/// Import limits reach the process that runs the import (each workflow job runs in a child
/// process of its own): a zip with more entries than `--import-max-entries` fails there.
#[test]
fn import_limits_apply_in_the_job_process() {
    let server = Server::start(&["--import-max-entries", "3"]);
    let tmp = tempfile::tempdir().unwrap();
    let spec = SeriesSpec {
        count: 4,
        uid_seed: "351".into(),
        ..Default::default()
    };
    let zip = tmp.path().join("four.zip");
    zip_of(&zip, &series_files(tmp.path(), &spec, "ct"));
    server.upload(&zip, "four.zip");
    let out = server.cli(&[
        "workflow",
        "run",
        "import-dicoms-from-data-upload",
        "-p",
        "file=four.zip",
        "--json",
    ]);
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["state"], "failed", "{run}");
    assert!(run["log"].to_string().contains("entries"), "{run}");
    assert_eq!(server.instance_total("admin"), 0);
}
