//! End to end in a real browser: the web UI served by `radport serve`, driven by Chromium
//! through playwright-core (`tests/browser/e2e.mjs`), on data sent with DCMTK's `dcmsend` (a
//! chest CT and a head MR, for the gallery's filters and facet counts; the MR's page for the
//! slice viewer, scrolled by keyboard, mouse wheel and range input) and a zip uploaded through
//! the Data Upload wizard; then the harder paths: an upload cut by a network drop (and one by a
//! page reload) that resumes from the server's offset, a folder dropped onto the page (a real
//! drag of a directory) and chosen with the folder picker, and failed workflow runs re-run from
//! the wizard and from the Runs page; at the end, a multi-frame instance and a segmentation
//! (highdicom's), stepped through slice by slice over its CT once that arrives. Screenshots of
//! every page and state go to `target/ui-screenshots/`.
//!
//! Needs `/usr/bin/chromium`, node and `tests/browser/node_modules` (scripts/install-deps.sh).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use radport_testkit::{series_uid, write_multi_frame, write_series, SeriesSpec};

const XSS_NAME: &str = "<script>alert(1)</script>";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn zip_dir(zip_path: &Path, dir: &Path, folder: &str, method: zip::CompressionMethod) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(zip_path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        let name = format!("{folder}/{}", p.file_name().unwrap().to_str().unwrap());
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(&std::fs::read(&p).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

/// Rewrites Body Part Examined (0018,0015) of a Part-10 file.
fn set_body_part(path: &Path, value: &str) {
    let mut obj = dicom_object::open_file(path).unwrap();
    obj.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::BODY_PART_EXAMINED,
        dicom_core::VR::CS,
        dicom_core::PrimitiveValue::from(value),
    ));
    obj.write_to_file(path).unwrap();
}

/// The 64×48 set of `crates/pipeline/tests/fixtures/make_seg.py`: its BINARY SEG (5 frames on
/// the 4 CT slices: a red square on slices 0 to 2, a disc on slices 2 and 3) and its CT, each in
/// a directory of its own, with the points of slice 2 (the one the viewer starts on) to sample,
/// as fractions of the picture's width and height: inside the red square, and on the CT's body
/// away from both segments.
struct SegFixture {
    seg_dir: PathBuf,
    seg_uid: String,
    ct_dir: PathBuf,
    ct_uid: String,
    inside: String,
    outside: String,
}

impl SegFixture {
    fn new(tmp: &Path) -> SegFixture {
        let (dir, _) = radport_testkit::python::run_fixture_script(
            &tmp.join("seg-fixtures"),
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline/tests/fixtures/make_seg.py"),
            "highdicom",
        );
        let dir = dir.join("64x48");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        let (seg_dir, ct_dir) = (tmp.join("seg-only"), tmp.join("seg-ct"));
        std::fs::create_dir_all(&seg_dir).unwrap();
        std::fs::create_dir_all(&ct_dir).unwrap();
        std::fs::copy(dir.join("seg-binary.dcm"), seg_dir.join("seg.dcm")).unwrap();
        for k in 0..4 {
            let name = format!("ct-{k}.dcm");
            std::fs::copy(dir.join(&name), ct_dir.join(&name)).unwrap();
        }
        let seg_uid = dicom_object::open_file(seg_dir.join("seg.dcm"))
            .unwrap()
            .element(dicom_dictionary_std::tags::SERIES_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string();
        let mask = |segment: &str| -> Vec<Vec<u64>> {
            manifest["seg_binary"]["masks"][segment][2]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap())
                        .collect()
                })
                .collect()
        };
        let (square, disc) = (mask("1"), mask("2"));
        let (rows, cols) = (square.len(), square[0].len());
        let on: Vec<(usize, usize)> = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .filter(|(r, c)| square[*r][*c] == 1)
            .collect();
        // The square's centre.
        let r = on.iter().map(|p| p.0).sum::<usize>() / on.len();
        let c = on.iter().map(|p| p.1).sum::<usize>() / on.len();
        assert_eq!(square[r][c], 1);
        let fraction = |r: usize, c: usize| {
            format!(
                "{},{}",
                (c as f64 + 0.5) / cols as f64,
                (r as f64 + 0.5) / rows as f64
            )
        };
        // Mid-height, a fifth of the way across: in the body ellipse, left of both segments.
        let (orow, ocol) = (rows / 2, cols / 5);
        assert!((orow.saturating_sub(2)..=orow + 2).all(|r| {
            (ocol.saturating_sub(2)..=ocol + 2).all(|c| square[r][c] == 0 && disc[r][c] == 0)
        }));
        SegFixture {
            seg_dir,
            seg_uid,
            ct_dir,
            ct_uid: manifest["ct_series_uid"].as_str().unwrap().to_string(),
            inside: fraction(r, c),
            outside: fraction(orow, ocol),
        }
    }
}

#[test]
fn the_web_ui_works_in_a_real_browser() {
    let chromium = Path::new("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "{} is missing: run scripts/install-deps.sh",
        chromium.display()
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/install-deps.sh"
    );

    let server = Server::start(&["--stable-after", "1"]);
    let tmp = tempfile::tempdir().unwrap();

    // Two series over DIMSE into admin/sent: a CT, and an MR whose Patient Name is markup.
    let ct = SeriesSpec {
        count: 6,
        uid_seed: "701".into(),
        patient_id: "PAT-CT-1".into(),
        series_description: "Chest CT".into(),
        ..Default::default()
    };
    let mr = SeriesSpec {
        count: 4,
        uid_seed: "702".into(),
        modality: "MR".into(),
        patient_id: "PAT-XSS".into(),
        patient_name: XSS_NAME.into(),
        series_description: "<img src=x onerror=alert(2)> Brain".into(),
        study_date: "20230315".into(),
        ..Default::default()
    };
    for (spec, folder) in [(&ct, "ct"), (&mr, "mr")] {
        let dir = tmp.path().join(folder);
        let files = write_series(&dir, spec).unwrap();
        // The testkit writes CHEST: the MR is a head, for the body part filter.
        if folder == "mr" {
            for f in &files {
                set_body_part(f, "HEAD");
            }
        }
        let out = server.dcmsend("kp-sent", "kp-admin", &dir);
        assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    }
    // Rendered and validated before the browser looks (the UI copes without, the test is
    // simpler with).
    for spec in [&ct, &mr] {
        let uid = series_uid(spec);
        server.wait_for(60, "thumbnail and validation", || {
            let thumb = server.get_status(&format!("/api/series/{uid}/thumbnail")).0;
            let valid = server
                .get_status(&format!("/api/series/{uid}/validation"))
                .0;
            (thumb == 200 && valid == 200).then_some(())
        });
    }

    // The zip the wizard uploads.
    let zipped = SeriesSpec {
        count: 3,
        uid_seed: "703".into(),
        patient_id: "PAT-ZIP".into(),
        series_description: "Zipped import".into(),
        ..Default::default()
    };
    let zdir = tmp.path().join("zipped");
    write_series(&zdir, &zipped).unwrap();
    let zip_path = tmp.path().join("series.zip");
    zip_dir(
        &zip_path,
        &zdir,
        "patient/ct",
        zip::CompressionMethod::Deflated,
    );

    // A bigger zip (stored, ~1.6 MB) for the uploads that are cut off and resumed.
    let later = SeriesSpec {
        count: 12,
        rows: 256,
        columns: 256,
        uid_seed: "705".into(),
        patient_id: "PAT-LATER".into(),
        series_description: "Resumed upload".into(),
        ..Default::default()
    };
    let ldir = tmp.path().join("later");
    write_series(&ldir, &later).unwrap();
    let later_zip = tmp.path().join("later.zip");
    zip_dir(&later_zip, &ldir, "later", zip::CompressionMethod::Stored);

    // A folder to drop: study/ct/*.dcm with half the slices one level deeper (study/ct/more/),
    // and a system file that must not be packed.
    let folder_spec = SeriesSpec {
        count: 6,
        uid_seed: "704".into(),
        patient_id: "PAT-FOLDER".into(),
        series_description: "Dropped folder".into(),
        ..Default::default()
    };
    let folder = tmp.path().join("drop/study");
    let ct_dir = folder.join("ct");
    write_series(&ct_dir, &folder_spec).unwrap();
    let more = ct_dir.join("more");
    std::fs::create_dir_all(&more).unwrap();
    let mut slices: Vec<PathBuf> = std::fs::read_dir(&ct_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    slices.sort();
    for p in &slices[..slices.len() / 2] {
        std::fs::rename(p, more.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(folder.join(".DS_Store"), b"not DICOM").unwrap();

    // A multi-frame instance (three slices as frames), sent by the browser test itself at its
    // end so that the gallery counts before stay as they are.
    let frames_spec = SeriesSpec {
        count: 3,
        uid_seed: "706".into(),
        patient_id: "PAT-FRAMES".into(),
        series_description: "Multi-frame".into(),
        ..Default::default()
    };
    let frames_dir = tmp.path().join("frames");
    write_multi_frame(&frames_dir, &frames_spec).unwrap();

    // A segmentation by highdicom (the pipeline's overlay fixtures) and the 4-slice CT it
    // segments, sent at the end too: first the SEG alone, then its CT.
    let seg = SegFixture::new(tmp.path());

    // Unknown API paths stay JSON 404s beside the UI.
    let (status, body) = server.get_status("/api/no-such-thing");
    assert_eq!(status, 404);
    assert!(body["error"].is_string(), "{body}");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .arg(browser_dir().join("e2e.mjs"))
        .arg(server.url(""))
        .arg(&shots)
        .env("RADPORT_DICOM_PORT", server.dicom_port.to_string())
        .env("RADPORT_ZIP", &zip_path)
        .env("RADPORT_CT_UID", series_uid(&ct))
        .env("RADPORT_MR_UID", series_uid(&mr))
        .env("RADPORT_ZIP_UID", series_uid(&zipped))
        .env("RADPORT_LATER_ZIP", &later_zip)
        .env("RADPORT_LATER_UID", series_uid(&later))
        .env("RADPORT_FOLDER", &folder)
        .env("RADPORT_FOLDER_UID", series_uid(&folder_spec))
        .env("RADPORT_FOLDER_COUNT", folder_spec.count.to_string())
        .env("RADPORT_XSS_NAME", XSS_NAME)
        .env("RADPORT_FRAMES_DIR", &frames_dir)
        .env("RADPORT_FRAMES_UID", series_uid(&frames_spec))
        .env("RADPORT_SEG_DIR", &seg.seg_dir)
        .env("RADPORT_SEG_UID", &seg.seg_uid)
        .env("RADPORT_SEG_CT_DIR", &seg.ct_dir)
        .env("RADPORT_SEG_CT_UID", &seg.ct_uid)
        .env("RADPORT_SEG_INSIDE", &seg.inside)
        .env("RADPORT_SEG_OUTSIDE", &seg.outside)
        .current_dir(browser_dir())
        .output()
        .expect("node runs");
    let text = output_text(&out);
    println!("{text}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{text}\nserver log:\n{}",
        server.log()
    );
}

/// Signing in with access enforced, in a real browser (`tests/browser/login.mjs`): the
/// redirect to the sign-in page and back, a wrong password, CSRF refusal, sign-out, a password
/// that must be changed at the first sign-in, and what a viewer is (not) shown.
#[test]
fn signing_in_works_in_a_real_browser() {
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/install-deps.sh"
    );
    let token = "rpt_browser-login-test-token-000000000000000000";
    let admin_password = "the admin's own password";
    let server = Server::start_with_env(
        &["--access", "enforced"],
        &[
            ("RADPORT_ADMIN_TOKEN", token),
            ("RADPORT_ADMIN_PASSWORD", admin_password),
        ],
    );
    let client = reqwest::blocking::Client::new();
    let created = client
        .post(server.url("/api/projects"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "lung"}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let vera: serde_json::Value = client
        .post(server.url("/api/users"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": "vera"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let vera_password = vera["password"]
        .as_str()
        .expect("a drawn password")
        .to_string();
    let member = client
        .put(server.url("/api/projects/lung/members/vera"))
        .bearer_auth(token)
        .json(&serde_json::json!({"role": "viewer"}))
        .send()
        .unwrap();
    assert_eq!(member.status(), 204);

    run_browser_script(
        &server,
        "login.mjs",
        "login",
        &[
            ("RADPORT_ADMIN_PASSWORD", admin_password),
            ("RADPORT_VERA_PASSWORD", &vera_password),
        ],
    );
}

/// Runs `tests/browser/<script>` against `server` with `env`, and asserts it ends with
/// "<name>: all checks passed".
fn run_browser_script(server: &Server, script: &str, name: &str, env: &[(&str, &str)]) {
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/install-deps.sh"
    );
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    let out = Command::new("node")
        .arg(browser_dir().join(script))
        .arg(server.url(""))
        .arg(&shots)
        .envs(env.iter().copied())
        .current_dir(browser_dir())
        .output()
        .expect("node runs");
    let text = output_text(&out);
    println!("{text}");
    assert!(
        out.status.success() && text.contains(&format!("{name}: all checks passed")),
        "the browser test {script} failed:\n{text}\nserver log:\n{}",
        server.log()
    );
}

/// A request with the admin token; the status and the JSON body (`null` if none).
fn as_admin(
    server: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::blocking::Client::new();
    let mut request = client.request(method, server.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// The administrator's access pages (`tests/browser/admin.mjs`): Users (an account made in
/// the page signs in with the password it shows; reset, disable, enable, administration),
/// My tokens (made, used as a Bearer token, revoked), the audit page's sign-ins, CSRF refusal,
/// and a 401 in the middle of a session (to the sign-in page and back).
#[test]
fn the_access_pages_work_for_an_administrator() {
    let token = "rpt_browser-admin-test-token-000000000000000000";
    let admin_password = "the admin's own password";
    let server = Server::start_with_env(
        &["--access", "enforced"],
        &[
            ("RADPORT_ADMIN_TOKEN", token),
            ("RADPORT_ADMIN_PASSWORD", admin_password),
        ],
    );
    for project in ["lung", "brain"] {
        let (status, body) = as_admin(
            &server,
            token,
            reqwest::Method::POST,
            "/api/projects",
            Some(serde_json::json!({ "name": project })),
        );
        assert_eq!(status, 201, "{body}");
    }
    run_browser_script(
        &server,
        "admin.mjs",
        "admin",
        &[
            ("RADPORT_ADMIN_PASSWORD", admin_password),
            ("RADPORT_ADMIN_TOKEN", token),
        ],
    );
    // What the pages did is what the API holds.
    let (_, users) = as_admin(&server, token, reqwest::Method::GET, "/api/users", None);
    let alice = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "alice")
        .expect("alice was created in the page")
        .clone();
    assert_eq!(alice["admin"], false, "{alice}");
    assert_eq!(alice["disabled"], false, "{alice}");
}

/// What each role sees, and a manager's work (`tests/browser/roles.mjs`): a viewer of a project
/// sees its series but no upload buttons, no members or DICOM rules, no Users or Audit; a
/// manager adds, changes and removes members and sets the project's DICOM rules (a bad network
/// is refused with the API's message), which the API then holds.
#[test]
fn each_role_sees_what_it_may_do_in_a_real_browser() {
    let token = "rpt_browser-roles-test-token-000000000000000000";
    let server = Server::start_with_env(
        &["--access", "enforced"],
        &[
            ("RADPORT_ADMIN_TOKEN", token),
            ("RADPORT_ADMIN_PASSWORD", "the admin's own password"),
        ],
    );
    let post = |path: &str, body: serde_json::Value| {
        let (status, answer) = as_admin(&server, token, reqwest::Method::POST, path, Some(body));
        assert_eq!(status, 201, "POST {path}: {answer}");
    };
    let put = |path: &str, body: serde_json::Value| {
        let (status, answer) = as_admin(&server, token, reqwest::Method::PUT, path, Some(body));
        assert_eq!(status, 204, "PUT {path}: {answer}");
    };
    post("/api/projects", serde_json::json!({"name": "lung"}));
    post("/api/projects", serde_json::json!({"name": "other"}));
    let (vera_password, mike_password) = ("vera's own password", "mike's own password");
    post(
        "/api/users",
        serde_json::json!({"name": "vera", "password": vera_password}),
    );
    post(
        "/api/users",
        serde_json::json!({"name": "mike", "password": mike_password}),
    );
    post("/api/users", serde_json::json!({"name": "carl"}));
    put(
        "/api/projects/lung/members/vera",
        serde_json::json!({"role": "viewer"}),
    );
    put(
        "/api/projects/lung/members/mike",
        serde_json::json!({"role": "manager"}),
    );
    put(
        "/api/projects/other/members/mike",
        serde_json::json!({"role": "viewer"}),
    );

    // A series in lung, for the viewer's gallery.
    let tmp = tempfile::tempdir().unwrap();
    let spec = SeriesSpec {
        count: 2,
        uid_seed: "721".into(),
        patient_id: "PAT-ROLES".into(),
        series_description: "Viewer's CT".into(),
        ..Default::default()
    };
    write_series(tmp.path(), &spec).unwrap();
    let out = server.dcmsend("kp-sent", "kp-lung", tmp.path());
    assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    server.wait_for(30, "the series in lung", || {
        let (_, page) = as_admin(
            &server,
            token,
            reqwest::Method::GET,
            "/api/projects/lung/series",
            None,
        );
        (page["total"] == 1).then_some(())
    });

    run_browser_script(
        &server,
        "roles.mjs",
        "roles",
        &[
            ("RADPORT_VERA_PASSWORD", vera_password),
            ("RADPORT_MIKE_PASSWORD", mike_password),
            ("RADPORT_SERIES_UID", &series_uid(&spec)),
        ],
    );

    // The manager's changes, as the API holds them.
    let (status, rules) = as_admin(
        &server,
        token,
        reqwest::Method::GET,
        "/api/projects/lung/dicom-rules",
        None,
    );
    assert_eq!(status, 200, "{rules}");
    assert_eq!(
        rules,
        serde_json::json!({
            "calling_ae_titles": ["CT-SCANNER-1", "kp-upload"],
            "networks": ["10.20.0.0/16", "192.168.1.7/32"],
        })
    );
    let (_, members) = as_admin(
        &server,
        token,
        reqwest::Method::GET,
        "/api/projects/lung/members",
        None,
    );
    let mut roles: Vec<(String, String)> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_string(),
                m["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    roles.sort();
    assert_eq!(
        roles,
        [
            ("mike".to_string(), "manager".to_string()),
            ("vera".to_string(), "contributor".to_string()),
        ]
    );
    // The DICOM rules hold: a sender outside them is refused.
    let out = server.dcmsend("kp-sent", "kp-lung", tmp.path());
    assert!(
        !out.status.success() || output_text(&out).contains("Rejected"),
        "a sender outside the rules is refused: {}",
        output_text(&out)
    );
}

/// Erasing and moving series in the web UI (`tests/browser/erasure.mjs`), access enforced: a
/// manager of lung (contributor of spare) copies a series into spare, moves another, takes the
/// first out of lung, counts a patient's series, deletes a series and a patient (a Patient ID
/// with a slash), but not a patient with a series in spare; a viewer of lung is offered none of
/// it; the administrator deletes project old with its unshared series. The API then holds what
/// the pages did.
#[test]
fn series_are_erased_and_moved_in_a_real_browser() {
    let token = "rpt_browser-erase-test-token-000000000000000000";
    let admin_password = "the admin's own password";
    let server = Server::start_with_env(
        &["--access", "enforced", "--stable-after", "1"],
        &[
            ("RADPORT_ADMIN_TOKEN", token),
            ("RADPORT_ADMIN_PASSWORD", admin_password),
        ],
    );
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        as_admin(&server, token, method, path, body)
    };
    let post = |path: &str, body: serde_json::Value| {
        let (status, answer) = call(reqwest::Method::POST, path, Some(body));
        assert!(
            status == 201 || status == 204,
            "POST {path}: {status} {answer}"
        );
    };
    let put = |path: &str, body: serde_json::Value| {
        let (status, answer) = call(reqwest::Method::PUT, path, Some(body));
        assert_eq!(status, 204, "PUT {path}: {answer}");
    };
    for project in ["lung", "spare", "old"] {
        post("/api/projects", serde_json::json!({ "name": project }));
    }
    let (vera_password, mike_password) = ("vera's own password", "mike's own password");
    post(
        "/api/users",
        serde_json::json!({"name": "vera", "password": vera_password}),
    );
    post(
        "/api/users",
        serde_json::json!({"name": "mike", "password": mike_password}),
    );
    put(
        "/api/projects/lung/members/vera",
        serde_json::json!({"role": "viewer"}),
    );
    put(
        "/api/projects/lung/members/mike",
        serde_json::json!({"role": "manager"}),
    );
    put(
        "/api/projects/spare/members/mike",
        serde_json::json!({"role": "contributor"}),
    );

    // Four series into lung (one per patient; the last patient's ID has a slash), two into old.
    let tmp = tempfile::tempdir().unwrap();
    let spec = |seed: &str, patient: &str, description: &str, count: usize| SeriesSpec {
        count,
        uid_seed: seed.into(),
        patient_id: patient.into(),
        series_description: description.into(),
        ..Default::default()
    };
    let copied = spec("731", "PAT-COPY", "Copied CT", 3);
    let moved = spec("732", "PAT-MOVE", "Moved CT", 2);
    let erased = spec("733", "PAT-ERASE", "Erased CT", 3);
    let patient = spec("734", "PAT/ERASE 2", "Patient's CT", 2);
    let unshared = spec("735", "PAT-OLD", "Old unshared CT", 2);
    let shared = spec("736", "PAT-OLD-2", "Old shared CT", 2);
    // A patient with a series in lung and one in spare (which mike does not manage).
    let split_lung = spec("737", "PAT-SPLIT", "Split patient's CT", 2);
    let split_spare = spec("738", "PAT-SPLIT", "Split patient's other CT", 2);
    for (s, project) in [
        (&copied, "kp-lung"),
        (&moved, "kp-lung"),
        (&erased, "kp-lung"),
        (&patient, "kp-lung"),
        (&unshared, "kp-old"),
        (&shared, "kp-old"),
        (&split_lung, "kp-lung"),
        (&split_spare, "kp-spare"),
    ] {
        let dir = tmp.path().join(&s.uid_seed);
        write_series(&dir, s).unwrap();
        let out = server.dcmsend("kp-sent", project, &dir);
        assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    }
    for (project, total) in [("lung", 5), ("old", 2), ("spare", 1)] {
        server.wait_for(30, "the series in their projects", || {
            let (_, page) = call(
                reqwest::Method::GET,
                &format!("/api/projects/{project}/series"),
                None,
            );
            (page["total"] == total).then_some(())
        });
    }
    // One of old's series is in spare too: deleting old does not erase it.
    post(
        &format!("/api/series/{}/copy", series_uid(&shared)),
        serde_json::json!({"from": "old", "to": "spare"}),
    );
    // The copied series' thumbnail, for the screenshot.
    let copied_uid = series_uid(&copied);
    server.wait_for(60, "the thumbnail", || {
        let path = format!("/api/series/{copied_uid}/thumbnail");
        (call(reqwest::Method::GET, &path, None).0 == 200).then_some(())
    });

    run_browser_script(
        &server,
        "erasure.mjs",
        "erasure",
        &[
            ("RADPORT_ADMIN_PASSWORD", admin_password),
            ("RADPORT_VERA_PASSWORD", vera_password),
            ("RADPORT_MIKE_PASSWORD", mike_password),
            ("RADPORT_COPIED_UID", &copied_uid),
            ("RADPORT_MOVED_UID", &series_uid(&moved)),
            ("RADPORT_ERASED_UID", &series_uid(&erased)),
            ("RADPORT_PATIENT_UID", &series_uid(&patient)),
            ("RADPORT_SPLIT_UID", &series_uid(&split_lung)),
        ],
    );

    // What the pages did, as the API holds it.
    let projects_of = |uid: &str| {
        let (status, detail) = call(reqwest::Method::GET, &format!("/api/series/{uid}"), None);
        assert_eq!(status, 200, "{uid}: {detail}");
        detail["projects"].clone()
    };
    assert_eq!(
        projects_of(&copied_uid),
        serde_json::json!(["admin", "spare"])
    );
    let (_, detail) = call(
        reqwest::Method::GET,
        &format!("/api/series/{copied_uid}"),
        None,
    );
    assert!(
        detail["dataset_memberships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["project"] == "spare" && m["dataset"] == "picked"),
        "{detail}"
    );
    assert_eq!(
        projects_of(&series_uid(&moved)),
        serde_json::json!(["admin", "spare"])
    );
    assert_eq!(
        projects_of(&series_uid(&shared)),
        serde_json::json!(["admin", "spare"])
    );
    for gone in [&erased, &patient, &unshared] {
        let uid = series_uid(gone);
        let (status, body) = call(reqwest::Method::GET, &format!("/api/series/{uid}"), None);
        assert_eq!(status, 404, "{} is erased: {body}", gone.series_description);
    }
    let (_, projects) = call(reqwest::Method::GET, "/api/projects", None);
    assert!(
        projects["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["name"] != "old"),
        "{projects}"
    );
    // The split patient was not erased (its dialog could not be confirmed).
    assert_eq!(
        projects_of(&series_uid(&split_lung)),
        serde_json::json!(["admin", "lung"])
    );
    assert_eq!(
        projects_of(&series_uid(&split_spare)),
        serde_json::json!(["admin", "spare"])
    );
    let (_, lung) = call(reqwest::Method::GET, "/api/projects/lung/series", None);
    assert_eq!(lung["total"], 1, "{lung}");
}

/// The OHIF viewer's directory for the tests: `viewer/` at the repository's root (where
/// `scripts/install-viewer.sh` puts it), or `$RADPORT_VIEWER_DIR`.
fn installed_viewer() -> PathBuf {
    let dir = std::env::var_os("RADPORT_VIEWER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../viewer"));
    assert!(
        dir.join(".radport-viewer").exists(),
        "the OHIF viewer is not installed in {}: run bash scripts/install-viewer.sh",
        dir.display()
    );
    dir
}

/// A Part-10 file's value of `tag`, trimmed.
fn attribute(path: &Path, tag: dicom_core::Tag) -> String {
    dicom_object::open_file(path)
        .unwrap()
        .element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

/// The OHIF viewer through radport (`tests/browser/ohif.mjs`), access enforced: a CT and the
/// SEG that segments it (highdicom's, as in the web UI's test) sent over DIMSE; signed in, the
/// gallery and the series page link the study to the viewer; OHIF, served at /viewer/ and
/// configured for radport's DICOMweb (which it reads with the session's cookie), draws the CT
/// and, once the SEG is opened, its overlay, then its segments in their colours; nothing is
/// loaded from another origin and the viewer's CSP refuses nothing.
#[test]
fn ohif_shows_a_ct_and_its_segmentation() {
    let viewer = installed_viewer();
    let token = "rpt_browser-ohif-test-token-0000000000000000000";
    let admin_password = "the admin's own password";
    let server = Server::start_with_env(
        &[
            "--access",
            "enforced",
            "--stable-after",
            "1",
            "--viewer-dir",
            viewer.to_str().unwrap(),
        ],
        &[
            ("RADPORT_ADMIN_TOKEN", token),
            ("RADPORT_ADMIN_PASSWORD", admin_password),
        ],
    );
    let tmp = tempfile::tempdir().unwrap();
    let seg = SegFixture::new(tmp.path());
    let study_uid = attribute(
        &seg.ct_dir.join("ct-0.dcm"),
        dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
    );
    assert_eq!(
        attribute(
            &seg.seg_dir.join("seg.dcm"),
            dicom_dictionary_std::tags::STUDY_INSTANCE_UID
        ),
        study_uid,
        "the SEG is in the CT's study"
    );
    for dir in [&seg.ct_dir, &seg.seg_dir] {
        let out = server.dcmsend("kp-sent", "kp-admin", dir);
        assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    }
    for uid in [&seg.ct_uid, &seg.seg_uid] {
        server.wait_for(60, "the series in the catalog", || {
            let path = format!("/api/series/{uid}");
            (as_admin(&server, token, reqwest::Method::GET, &path, None).0 == 200).then_some(())
        });
    }
    let (_, health) = as_admin(&server, token, reqwest::Method::GET, "/api/health", None);
    assert_eq!(health["deployment"]["viewer"], true, "{health}");

    run_browser_script(
        &server,
        "ohif.mjs",
        "ohif",
        &[
            ("RADPORT_ADMIN_PASSWORD", admin_password),
            ("RADPORT_STUDY_UID", &study_uid),
            ("RADPORT_CT_UID", &seg.ct_uid),
            ("RADPORT_SEG_UID", &seg.seg_uid),
        ],
    );
}

/// Without the viewer, `/viewer/` says how to install it and the UI is told there is none;
/// once the directory holds an installed viewer, radport serves it (no restart), with its own
/// `app-config.js` and OHIF's client routes answered by the index page.
#[test]
fn the_viewer_is_served_once_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("viewer");
    let server = Server::start(&["--viewer-dir", dir.to_str().unwrap()]);
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| {
        let r = client.get(server.url(path)).send().unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().unwrap())
    };
    let (_, health) = server.get_status("/api/health");
    assert_eq!(health["deployment"]["viewer"], false, "{health}");
    for path in ["/viewer/", "/viewer/viewer?StudyInstanceUIDs=1.2.3"] {
        let (status, headers, body) = get(path);
        assert_eq!(status, 404, "{path}");
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(body.contains("bash scripts/install-viewer.sh"), "{body}");
    }
    assert_eq!(get("/viewer/app-config.js").0, 404);
    // Unknown API paths keep their JSON 404 beside the viewer.
    let (status, body) = server.get_status("/api/no-such-thing");
    assert_eq!(status, 404);
    assert!(body["error"].is_string(), "{body}");

    // Installed (the files as scripts/install-viewer.sh leaves them, in small).
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let index = r#"<!doctype html><script src="/viewer/radport-boot.js"></script><script src="/viewer/app-config.js"></script><div id="root"></div>"#;
    std::fs::write(dir.join("index.html"), index).unwrap();
    std::fs::write(dir.join("app.bundle.1.js"), "/* OHIF */").unwrap();
    std::fs::write(dir.join("assets/logo.svg"), "<svg/>").unwrap();
    let (_, health) = server.get_status("/api/health");
    assert_eq!(health["deployment"]["viewer"], true, "{health}");
    for path in ["/viewer/", "/viewer/viewer?StudyInstanceUIDs=1.2.3"] {
        let (status, headers, body) = get(path);
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, index);
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert_eq!(headers["cross-origin-opener-policy"], "same-origin");
    }
    let (status, headers, body) = get("/viewer/app-config.js");
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(
        body.contains("qidoRoot: window.location.origin + '/dicomweb'"),
        "{body}"
    );
    assert!(body.contains("qidoSupportsIncludeField: true"), "{body}");
    assert_eq!(get("/viewer/app.bundle.1.js").2, "/* OHIF */");
    let (status, headers, _) = get("/viewer/assets/logo.svg");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert_eq!(get("/viewer/missing.js").0, 404);
    // The UI itself keeps its own policy.
    let (status, headers, _) = get("/");
    assert_eq!(status, 200);
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
}
