//! End to end: no PHI in the info log of a full run.
//!
//! A series whose patient name and ID are distinctive goes in through `dcmsend` and through an
//! uploaded zip (whose own name and entry names carry the patient's name, as real uploads often
//! do), is imported, thumbnailed and validated, and downloaded; then the server's info-level log
//! (what `RADPORT_LOG=info` writes, the default) must not contain any of those strings.

use crate::common::*;
use radport_testkit::{series_uid, write_series, SeriesSpec};

/// Strings that must never reach the info log: the patient's name (both parts, as they could
/// be logged separately), the patient ID, and the names the user gave the upload and its entries.
const PATIENT_FAMILY: &str = "Zyxwvutsr";
const PATIENT_GIVEN: &str = "Qponmlkj";
const PATIENT_ID: &str = "PHI-ID-88421";
const UPLOAD_NAME: &str = "Zyxwvutsr_Qponmlkj_scans.zip";
const ENTRY_FOLDER: &str = "Zyxwvutsr-Qponmlkj-ct";
const BROKEN_ENTRY: &str = "Qponmlkj-notes.dcm";

fn spec(seed: &str) -> SeriesSpec {
    SeriesSpec {
        count: 3,
        patient_name: format!("{PATIENT_FAMILY}^{PATIENT_GIVEN}"),
        patient_id: PATIENT_ID.into(),
        uid_seed: seed.into(),
        ..Default::default()
    }
}

#[test]
fn the_info_log_of_a_full_run_names_no_patient_and_no_uploaded_file() {
    let server = Server::start(&["--stable-after", "1"]);
    server.create_project("phi");
    let tmp = tempfile::tempdir().unwrap();

    // DIMSE.
    let sent = spec("8801");
    let dir = tmp.path().join("sent");
    write_series(&dir, &sent).unwrap();
    let out = server.dcmsend("kp-phiset", "kp-phi", &dir);
    assert!(out.status.success(), "{}", output_text(&out));

    // Upload + import, with one entry that is not DICOM (an item error names the entry).
    let zipped = spec("8802");
    let mut entries: Vec<(String, Vec<u8>)> = write_series(&tmp.path().join("z"), &zipped)
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                format!(
                    "{ENTRY_FOLDER}/{}",
                    p.file_name().unwrap().to_str().unwrap()
                ),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    entries.push((BROKEN_ENTRY.into(), b"no DICOM here".to_vec()));
    let zip = tmp.path().join("upload.zip");
    zip_of(&zip, &entries);
    server.upload(&zip, UPLOAD_NAME);
    let out = server.cli(&[
        "workflow",
        "run",
        "import-dicoms-from-data-upload",
        "-p",
        &format!("file={UPLOAD_NAME}"),
        "-p",
        "project=phi",
        "--json",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["state"], "succeeded", "{run}");
    // The run itself (visible to its users) does name the entry: only the log must not.
    assert!(run["errors"].to_string().contains(BROKEN_ENTRY), "{run}");

    // The pipeline runs on both series; a download reads them back.
    for s in [&sent, &zipped] {
        let uid = series_uid(s);
        server.wait_for(60, "thumbnail and validation", || {
            let jobs = server.jobs_of(&uid);
            let done = jobs.len() >= 2 && jobs.iter().all(|j| j["state"] == "succeeded");
            done.then_some(())
        });
        let bytes = server.get_bytes(&format!("/api/series/{uid}/download"));
        assert!(bytes.len() > 1000);
    }
    let files = server.get_json("/api/files");
    assert!(files.to_string().contains(UPLOAD_NAME), "{files}");

    let log = server.log();
    assert!(
        log.contains("association accepted"),
        "the log is the server's: {log}"
    );
    // Written to a file, the log is plain text: no terminal colour codes around fields.
    assert!(!log.contains('\x1b'), "escape codes in the log file");
    assert!(
        log.lines()
            .any(|l| l.contains("association accepted") && l.contains(" calling_ae=")),
        "fields as name=value: {log}"
    );
    for phi in [
        PATIENT_FAMILY,
        PATIENT_GIVEN,
        PATIENT_ID,
        UPLOAD_NAME,
        ENTRY_FOLDER,
        BROKEN_ENTRY,
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(phi)).collect();
        assert!(
            lines.is_empty(),
            "{phi:?} appears in the info log:\n{}",
            lines.join("\n")
        );
    }
}

#[test]
fn json_logs_are_one_object_per_line_and_name_no_patient() {
    let server = Server::start_with_env(
        &["--stable-after", "1", "--log-format", "json"],
        &[("RADPORT_LOG", "info")],
    );
    let tmp = tempfile::tempdir().unwrap();
    let sent = spec("8811");
    write_series(&tmp.path().join("sent"), &sent).unwrap();
    let out = server.dcmsend("kp-jsonlog", "kp-admin", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    // A job run in a child process (whose own lines the server logs as its events).
    let uid = series_uid(&sent);
    server.wait_for(60, "the thumbnail", || {
        let jobs = server.jobs_of(&uid);
        jobs.iter()
            .any(|j| j["kind"] == "thumbnail" && j["state"] == "succeeded")
            .then_some(())
    });
    let log = server.log();
    let mut messages = Vec::new();
    // The log is standard output; standard error (in the same file here) has only the few
    // indented lines for the person who started the server (its address, a first password).
    let for_people: Vec<&str> = log.lines().filter(|l| l.starts_with("  ")).collect();
    assert!(for_people.len() <= 4, "{for_people:#?}");
    for line in log
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("  "))
    {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line}\n{log}"));
        for key in ["timestamp", "level", "target"] {
            assert!(event[key].is_string(), "{key} missing: {line}");
        }
        let message = event["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fields.message: {line}"));
        messages.push(message.to_string());
    }
    assert!(
        messages.iter().any(|m| m.contains("radport is running")),
        "{messages:#?}"
    );
    assert!(
        messages.iter().any(|m| m == "association accepted"),
        "{messages:#?}"
    );
    for phi in [PATIENT_FAMILY, PATIENT_GIVEN, PATIENT_ID] {
        assert!(!log.contains(phi), "{phi} in the log:\n{log}");
    }
}
