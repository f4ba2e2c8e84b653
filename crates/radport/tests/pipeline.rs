//! End to end: series become stable, their jobs run in `radport serve`, thumbnails appear.

use crate::common::*;
use radport_testkit::{series_uid, write_series, SeriesSpec};

fn spec(seed: &str, count: usize) -> SeriesSpec {
    SeriesSpec {
        count,
        rows: 128,
        columns: 128,
        uid_seed: seed.into(),
        ..Default::default()
    }
}

fn state_counts(jobs: &[serde_json::Value], kind: &str, state: &str) -> usize {
    jobs.iter()
        .filter(|j| j["kind"] == kind && j["state"] == state)
        .count()
}

#[test]
fn thumbnail_appears_once_the_series_is_stable() {
    let server = Server::start(&["--stable-after", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("201", 9);
    write_series(tmp.path(), &s).unwrap();
    assert!(server
        .dcmsend("kp-thumbs", "kp-admin", tmp.path())
        .status
        .success());
    let uid = series_uid(&s);
    let path = format!("/api/series/{uid}/thumbnail");

    let (status, body) = server.get_status(&path);
    assert_eq!(status, 404, "not yet stable: {body}");
    let png = server.wait_for(30, "the thumbnail", || {
        let r = reqwest::blocking::get(server.url(&path)).ok()?;
        if r.status() != 200 {
            return None;
        }
        assert_eq!(r.headers()["content-type"], "image/png");
        assert!(r.headers().contains_key("etag"));
        Some(r.bytes().ok()?.to_vec())
    });
    let image = image::load_from_memory(&png).expect("a PNG").to_luma8();
    assert_eq!(
        (image.width(), image.height()),
        (256, 256),
        "gallery size, square pixels"
    );
    // The middle slice shows the bright disc in the centre on a dark background.
    let centre = image.get_pixel(128, 128)[0];
    let corner = image.get_pixel(3, 3)[0];
    // Disc: raw 1100..1140, rescaled -1024 → 76..116 HU, window 40/400 → (HU + 160) / 400.
    assert!((145..=185).contains(&centre), "centre {centre}");
    assert!(corner < 10, "air is black: corner {corner}");

    // Revalidation by ETag.
    let etag = reqwest::blocking::get(server.url(&path)).unwrap().headers()["etag"].clone();
    let again = reqwest::blocking::Client::new()
        .get(server.url(&path))
        .header("if-none-match", etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);

    let jobs = server.jobs_of(&uid);
    assert_eq!(state_counts(&jobs, "thumbnail", "succeeded"), 1, "{jobs:?}");
    let detail = server.get_json(&format!("/api/series/{uid}"));
    assert_eq!(detail["completeness"]["instance_count"], 9);
    assert_eq!(detail["completeness"]["missing_count"], 0);
}

#[test]
fn a_late_instance_reopens_the_series() {
    let server = Server::start(&["--stable-after", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("202", 6);
    let files = write_series(&tmp.path().join("all"), &s).unwrap();
    // First 1, 2, 3 and 5; Instance Number 4 and 6 come later.
    let first = tmp.path().join("first");
    let late = tmp.path().join("late");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&late).unwrap();
    for (i, f) in files.iter().enumerate() {
        let to = if i == 3 || i == 5 { &late } else { &first };
        std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
    }
    let uid = series_uid(&s);
    assert!(server
        .dcmsend("kp-late", "kp-admin", &first)
        .status
        .success());
    server.wait_for(30, "the first thumbnail job", || {
        (state_counts(&server.jobs_of(&uid), "thumbnail", "succeeded") == 1).then_some(())
    });
    let detail = server.get_json(&format!("/api/series/{uid}"));
    assert_eq!(
        detail["completeness"]["missing_instance_numbers"],
        serde_json::json!([4])
    );
    assert_eq!(detail["completeness"]["max_instance_number"], 5);

    assert!(server
        .dcmsend("kp-late", "kp-admin", &late)
        .status
        .success());
    server.wait_for(30, "the thumbnail job of the re-opened series", || {
        (state_counts(&server.jobs_of(&uid), "thumbnail", "succeeded") == 2).then_some(())
    });
    let detail = server.get_json(&format!("/api/series/{uid}"));
    assert_eq!(detail["completeness"]["instance_count"], 6);
    assert_eq!(detail["completeness"]["missing_count"], 0);
}

#[test]
fn a_failing_job_is_retried_and_its_error_kept() {
    // A file per instance, to be taken away.
    let server = Server::start(&[
        "--stable-after",
        "1",
        "--job-attempts",
        "2",
        "--ingest-durability",
        "direct",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("203", 3);
    write_series(tmp.path(), &s).unwrap();
    assert!(server
        .dcmsend("kp-fail", "kp-admin", tmp.path())
        .status
        .success());
    // Take the stored files away before the series is stable: the job cannot read them.
    for f in server.archived_files() {
        std::fs::remove_file(f).unwrap();
    }
    let uid = series_uid(&s);
    let job = server.wait_for(40, "the job to fail for good", || {
        server
            .jobs_of(&uid)
            .into_iter()
            .find(|j| j["kind"] == "thumbnail" && j["state"] == "failed")
    });
    assert_eq!(job["attempts"], 2, "retried once: {job}");
    let error = job["last_error"].as_str().unwrap();
    assert!(error.contains("not found"), "{error}");
    let (status, _) = server.get_status(&format!("/api/series/{uid}/thumbnail"));
    assert_eq!(status, 404);
}

#[test]
fn restart_in_the_middle_of_the_queue_loses_no_job() {
    // No workers: jobs are queued and wait.
    let mut server = Server::start(&["--stable-after", "0.5", "--workers", "0"]);
    let tmp = tempfile::tempdir().unwrap();
    let specs: Vec<SeriesSpec> = (0..3).map(|i| spec(&format!("21{i}"), 2)).collect();
    for (i, s) in specs.iter().enumerate() {
        write_series(&tmp.path().join(format!("s{i}")), s).unwrap();
    }
    assert!(server
        .dcmsend("kp-q", "kp-admin", tmp.path())
        .status
        .success());
    server.wait_for(30, "three queued jobs", || {
        let v = server.get_json("/api/jobs?state=queued&kind=thumbnail");
        (v["total"] == 3).then_some(())
    });
    server.restart_with(&["--stable-after", "0.5", "--workers", "2"]);
    server.wait_for(30, "every queued job to run after the restart", || {
        let v = server.get_json("/api/jobs?state=succeeded&kind=thumbnail");
        (v["total"] == 3).then_some(())
    });
    for s in &specs {
        let bytes = server.get_bytes(&format!("/api/series/{}/thumbnail", series_uid(s)));
        assert_eq!(&bytes[1..4], b"PNG");
    }
    // The CLI shows the same queue.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_radport"))
        .args([
            "jobs",
            "list",
            "--url",
            &server.url(""),
            "--state",
            "succeeded",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(text.matches("thumbnail").count(), 3, "{text}");
}

#[test]
fn series_are_validated_with_searchable_findings_and_an_escaped_report() {
    let server = Server::start(&["--stable-after", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let good = spec("221", 3);
    let bad = SeriesSpec {
        patient_id: "BAD".into(),
        ..spec("222", 3)
    };
    write_series(&tmp.path().join("good"), &good).unwrap();
    write_series(&tmp.path().join("bad"), &bad).unwrap();
    // Defects in every file of the bad series: a malformed date, and a name made of markup.
    for entry in std::fs::read_dir(tmp.path().join("bad")).unwrap() {
        run_ok(
            std::process::Command::new(dcmtk("dcmodify"))
                .arg("-nb")
                .args(["-m", "(0008,0020)=2024-01-02"])
                .args(["-m", "(0010,0010)=<script>alert(1)</script>"])
                .arg(entry.unwrap().path()),
        );
    }
    assert!(server
        .dcmsend("kp-v", "kp-admin", tmp.path())
        .status
        .success());

    let validation = |s: &SeriesSpec| {
        let uid = series_uid(s);
        server.wait_for(30, "the validation", || {
            let (status, v) = server.get_status(&format!("/api/series/{uid}/validation"));
            (status == 200).then_some(v)
        })
    };
    let bad_v = validation(&bad);
    let good_v = validation(&good);
    assert_eq!(bad_v["instances_checked"], 3);
    assert_eq!(bad_v["iods"], serde_json::json!(["CT Image"]));
    let findings = bad_v["findings"].as_array().unwrap();
    let date_errors = findings
        .iter()
        .filter(|f| f["keyword"] == "StudyDate" && f["severity"] == "error")
        .count();
    assert_eq!(date_errors, 3, "one per instance: {bad_v}");
    assert!(bad_v["errors"].as_i64().unwrap() > good_v["errors"].as_i64().unwrap());
    assert!(
        !good_v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["keyword"] == "StudyDate"),
        "{good_v}"
    );

    // The series list carries the counts and filters on them.
    let with_errors = server.series("admin", "has_errors=true");
    let uids: Vec<&str> = with_errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["series_instance_uid"].as_str().unwrap())
        .collect();
    assert!(uids.contains(&series_uid(&bad).as_str()), "{with_errors}");
    let bad_item = server.series("admin", "patient_id=BAD")["items"][0].clone();
    assert_eq!(bad_item["validation_errors"], bad_v["errors"]);

    // The HTML report: escaped values, scripts forbidden by policy.
    let r = reqwest::blocking::get(server.url(&format!(
        "/api/series/{}/validation/report",
        series_uid(&bad)
    )))
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let html = r.text().unwrap();
    assert!(
        html.contains("StudyDate") || html.contains("Study Date"),
        "{html}"
    );
    assert!(!html.contains("<script>alert(1)"), "values are escaped");
    // The jobs ran once each.
    let jobs = server.jobs_of(&series_uid(&bad));
    assert_eq!(state_counts(&jobs, "validate", "succeeded"), 1, "{jobs:?}");
}

/// Runs the overlay fixture script of the pipeline crate (highdicom) into `out`.
fn seg_fixtures(out: &std::path::Path) -> std::path::PathBuf {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../pipeline/tests/fixtures/make_seg.py");
    let o = std::process::Command::new("python3")
        .arg(script)
        .arg(out)
        .output()
        .expect("python3 runs");
    assert!(
        o.status.success(),
        "the SEG fixtures need highdicom (pip install highdicom): {}",
        output_text(&o)
    );
    out.join("64x48")
}

fn count_red(png: &[u8]) -> usize {
    let img = image::load_from_memory(png).unwrap().to_rgb8();
    img.pixels()
        .filter(|p| p[0] > 100 && u16::from(p[0]) > 3 * u16::from(p[1]).max(u16::from(p[2])))
        .count()
}

#[test]
fn a_segmentation_is_drawn_over_its_image_once_that_arrives() {
    let server = Server::start(&["--stable-after", "0.5"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = seg_fixtures(tmp.path());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let seg_dir = tmp.path().join("seg-only");
    let ct_dir = tmp.path().join("ct-only");
    std::fs::create_dir_all(&seg_dir).unwrap();
    std::fs::create_dir_all(&ct_dir).unwrap();
    std::fs::copy(dir.join("seg-binary.dcm"), seg_dir.join("seg.dcm")).unwrap();
    for i in 0..4 {
        std::fs::copy(
            dir.join(format!("ct-{i}.dcm")),
            ct_dir.join(format!("ct-{i}.dcm")),
        )
        .unwrap();
    }
    // The segmentation first: drawn alone.
    assert!(server
        .dcmsend("kp-seg", "kp-admin", &seg_dir)
        .status
        .success());
    let seg_uid = server.series("admin", "modality=SEG")["items"][0]["series_instance_uid"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/series/{seg_uid}/thumbnail");
    let alone = server.wait_for(30, "the SEG thumbnail", || {
        let r = reqwest::blocking::get(server.url(&path)).ok()?;
        (r.status() == 200).then(|| r.bytes().unwrap().to_vec())
    });
    assert!(count_red(&alone) > 100, "the red square is drawn alone");
    // Then its CT: the SEG thumbnail is redone over the image.
    assert!(server
        .dcmsend("kp-seg", "kp-admin", &ct_dir)
        .status
        .success());
    let ct_uid = manifest["ct_series_uid"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            server.series("admin", "modality=CT")["items"][0]["series_instance_uid"]
                .as_str()
                .unwrap()
                .to_string()
        });
    server.wait_for(30, "the SEG thumbnail to be redone", || {
        let jobs = server.jobs_of(&seg_uid);
        (state_counts(&jobs, "thumbnail", "succeeded") >= 2).then_some(())
    });
    let over = server.get_bytes(&path);
    assert_ne!(over, alone, "redrawn once the referenced series arrived");
    assert!(count_red(&over) > 100, "the square is still there");
    let img = image::load_from_memory(&over).unwrap().to_rgb8();
    let grey = img
        .pixels()
        .filter(|p| p[0] == p[1] && p[1] == p[2] && p[0] > 20)
        .count();
    assert!(
        grey > 1000,
        "the CT image is under the overlay ({grey} grey pixels)"
    );
    let _ = ct_uid;
}

/// Sends a series of five instances (`series` in its UIDs) and checks that `series verify`
/// finds them intact, as received. Its UID.
fn send_five_verified_intact(server: &Server, series: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(series, 5);
    write_series(tmp.path(), &s).unwrap();
    assert!(server
        .dcmsend("kp-verify", "kp-admin", tmp.path())
        .status
        .success());
    let uid = series_uid(&s);
    let out = server.cli(&["series", "verify", &uid]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(text.contains("every stored file matches"), "{text}");
    uid
}

/// `series verify` of the five instances of `uid` fails on one whose bytes changed and one
/// that went missing.
fn assert_verify_finds_one_changed_one_missing(server: &Server, uid: &str) {
    let out = server.cli(&["series", "verify", uid]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(text.contains("2 of 5 instances differ"), "{text}");
    assert!(text.contains("missing from the archive"), "{text}");
    assert!(text.contains("checksum differs"), "{text}");
}

/// Verification in packs (the default): a record altered in its body's last byte, another's
/// frame overwritten so that no record starts there any more.
#[test]
fn verification_finds_packed_records_that_changed_or_went_missing() {
    use radport_journal::pack::{open_record, pack_generation};
    use radport_journal::Position;
    use std::os::unix::fs::FileExt;
    let server = Server::start(&[]);
    let uid = send_five_verified_intact(&server, "232");

    let held = server.archived_instances();
    assert_eq!(held.len(), 5, "{held:?}");
    let packs = server.data_dir.join("archive/packs");
    let record = |name: &str| {
        let (file, offset) = name
            .strip_prefix("packs/")
            .and_then(|rest| rest.split_once('@'))
            .unwrap();
        let position = Position {
            generation: pack_generation(file).unwrap(),
            offset: offset.parse().unwrap(),
        };
        let record = open_record(&packs, position, u64::MAX).unwrap().unwrap();
        (record, position)
    };
    let writable = |position: Position| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(packs.join(radport_journal::pack::pack_file_name(position.generation)))
            .unwrap()
    };
    let (altered, position) = record(&held[0]);
    let last = altered.body_offset + altered.body_len - 1;
    let mut byte = [0u8];
    altered.file.read_exact_at(&mut byte, last).unwrap();
    writable(position)
        .write_all_at(&[byte[0] ^ 0xFF], last)
        .unwrap();
    let (_, position) = record(&held[1]);
    writable(position)
        .write_all_at(&[0u8; 64], position.offset)
        .unwrap();

    assert_verify_finds_one_changed_one_missing(&server, &uid);
}

#[test]
fn verification_finds_stored_files_that_changed_or_went_missing() {
    // A file per instance, to be changed and taken away (for packs see
    // `verification_finds_packed_records_that_changed_or_went_missing`).
    let server = Server::start(&["--ingest-durability", "direct"]);
    let uid = send_five_verified_intact(&server, "231");

    // One file altered in its last byte, another deleted, behind radport's back.
    let files = server.archived_files();
    assert_eq!(files.len(), 5, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&files[0], &bytes).unwrap();
    std::fs::remove_file(&files[1]).unwrap();

    assert_verify_finds_one_changed_one_missing(&server, &uid);

    // Both runs are jobs in the queue: one succeeded, one failed once (no retries).
    let jobs = server.get_json(&format!("/api/jobs?kind=verify&series={uid}"));
    let items = jobs["items"].as_array().unwrap();
    assert_eq!(state_counts(items, "verify", "succeeded"), 1, "{jobs}");
    assert_eq!(state_counts(items, "verify", "failed"), 1, "{jobs}");
    let failed = items.iter().find(|j| j["state"] == "failed").unwrap();
    assert_eq!(failed["attempts"], 1, "{failed}");

    // A series the catalog does not have.
    let (status, body) = server.post_json("/api/series/1.2.3.4/verify", serde_json::json!({}));
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("1.2.3.4"),
        "{body}"
    );
}
