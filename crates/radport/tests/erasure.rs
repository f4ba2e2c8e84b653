//! Erasing series, studies and patients, deleting a project with its unshared series, and
//! copying and moving series between projects — on a real server fed by `dcmsend`, checked
//! in the API, in the archive directory and in the audit trail. (Who may do it is
//! `access.rs`'s matrix.)

use std::path::Path;

use crate::common::*;
use radport_testkit::{series_uid, study_uid, write_series, SeriesSpec};
use reqwest::blocking::Client;
use serde_json::{json, Value};

fn spec(seed: &str, patient: &str, count: usize) -> SeriesSpec {
    SeriesSpec {
        count,
        rows: 16,
        columns: 16,
        patient_id: patient.into(),
        uid_seed: seed.into(),
        ..Default::default()
    }
}

fn send(server: &Server, tmp: &Path, project: &str, spec: &SeriesSpec) -> String {
    let dir = tmp.join(&spec.uid_seed);
    write_series(&dir, spec).unwrap();
    let sent = server.dcmsend("kp-ds", &format!("kp-{project}"), &dir);
    assert!(sent.status.success(), "{}", output_text(&sent));
    series_uid(spec)
}

fn delete(server: &Server, path: &str) -> (u16, Value) {
    let r = Client::new().delete(server.url(path)).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn series_in(server: &Server, project: &str, query: &str) -> Vec<String> {
    server.series(project, query)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["series_instance_uid"].as_str().unwrap().to_string())
        .collect()
}

/// Files of the archive directory whose path names `needle`.
fn archive_files_naming(server: &Server, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![server.data_dir.join("archive")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(needle) {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

fn wait_for_pipeline(server: &Server, uids: &[&str]) {
    server.wait_for(60, "thumbnails and validation reports", || {
        uids.iter()
            .all(|uid| {
                server.get_status(&format!("/api/series/{uid}/thumbnail")).0 == 200
                    && server
                        .get_status(&format!("/api/series/{uid}/validation"))
                        .0
                        == 200
            })
            .then_some(())
    });
}

#[test]
fn erasure_removes_everything_and_placement_moves_series() {
    let server = Server::start(&["--stable-after", "1"]);
    server.create_project("lung");
    server.create_project("brain");
    let tmp = tempfile::tempdir().unwrap();
    let a = spec("971", "PAT/ONE", 3);
    let b = spec("972", "PAT/ONE", 2);
    let c = spec("973", "PAT-TWO", 2);
    let d = spec("974", "PAT-THREE", 1);
    let a_uid = send(&server, tmp.path(), "lung", &a);
    let b_uid = send(&server, tmp.path(), "lung", &b);
    let c_uid = send(&server, tmp.path(), "brain", &c);
    let d_uid = send(&server, tmp.path(), "lung", &d);
    wait_for_pipeline(&server, &[&a_uid, &b_uid, &c_uid, &d_uid]);
    assert_eq!(server.archived_instances().len(), 8);
    let thumbnail = format!("thumbnails/{a_uid}.png");
    let report = format!("reports/{a_uid}.html");
    assert_eq!(archive_files_naming(&server, &thumbnail).len(), 1);
    assert_eq!(archive_files_naming(&server, &report).len(), 1);

    // A series: rows, files, thumbnail and report go; its patient stays (B is left).
    let (status, erased) = delete(&server, &format!("/api/series/{a_uid}"));
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["series"], json!([a_uid]));
    assert_eq!(erased["instances"], 3);
    assert_eq!(
        (erased["studies"].as_u64(), erased["patients"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        erased["objects_deleted"], 5,
        "3 files, a thumbnail, a report"
    );
    assert_eq!(erased["objects_failed"], 0);
    assert_eq!(server.get_status(&format!("/api/series/{a_uid}")).0, 404);
    assert_eq!(
        server
            .get_status(&format!("/api/series/{a_uid}/thumbnail"))
            .0,
        404
    );
    assert!(archive_files_naming(&server, &a_uid).is_empty());
    assert!(archive_files_naming(&server, &thumbnail).is_empty());
    assert!(archive_files_naming(&server, &report).is_empty());
    assert_eq!(server.archived_instances().len(), 5);
    assert!(!series_in(&server, "lung", "").contains(&a_uid));
    assert!(!series_in(&server, "admin", "").contains(&a_uid));
    assert_eq!(delete(&server, &format!("/api/series/{a_uid}")).0, 404);

    // A study.
    let (status, erased) = delete(&server, &format!("/api/studies/{}", study_uid(&d)));
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["series"], json!([d_uid]));
    assert_eq!(erased["patients"], 1, "PAT-THREE had only this study");
    assert_eq!(server.get_status(&format!("/api/series/{d_uid}")).0, 404);

    // Copy C into lung (a dataset of its own there), move B into brain.
    let client = Client::new();
    let place = |what: &str, uid: &str, body: Value| {
        client
            .post(server.url(&format!("/api/series/{uid}/{what}")))
            .json(&body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(
        place(
            "copy",
            &c_uid,
            json!({"from": "brain", "to": "lung", "dataset": "shared"})
        ),
        204
    );
    assert_eq!(
        series_in(&server, "lung", "dataset=shared"),
        [c_uid.as_str()]
    );
    assert_eq!(series_in(&server, "brain", ""), [c_uid.as_str()]);
    assert_eq!(
        place("move", &b_uid, json!({"from": "lung", "to": "brain"})),
        204
    );
    assert_eq!(series_in(&server, "lung", ""), [c_uid.as_str()]);
    let mut in_brain = series_in(&server, "brain", "");
    in_brain.sort();
    let mut expected = vec![b_uid.clone(), c_uid.clone()];
    expected.sort();
    assert_eq!(in_brain, expected);
    // B kept its dataset (ds) in its new project.
    assert_eq!(series_in(&server, "brain", "dataset=ds").len(), 2);
    let detail = server.get_json(&format!("/api/series/{b_uid}"));
    assert_eq!(detail["projects"], json!(["admin", "brain"]));
    assert_eq!(
        place("move", &b_uid, json!({"from": "lung", "to": "brain"})),
        404,
        "not in lung any more"
    );
    assert_eq!(
        place("copy", &b_uid, json!({"from": "brain", "to": "admin"})),
        400
    );
    assert_eq!(place("copy", &b_uid, json!({"from": "brain"})), 400);

    // A patient (the ID has a slash: percent-encoded in the path). The audit trail keeps a
    // digest of it, not the ID.
    let (status, erased) = delete(&server, "/api/patients/PAT%2FONE");
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["series"], json!([b_uid]));
    assert_eq!(erased["patients"], 1);
    assert_eq!(delete(&server, "/api/patients/PAT%2FONE").0, 404);
    let audit = server.get_json("/api/audit?limit=500");
    let text = audit.to_string();
    assert!(
        !text.contains("PAT/ONE") && !text.contains("PAT%2FONE"),
        "{text}"
    );
    let erasures: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"]
                .as_str()
                .unwrap_or("")
                .starts_with("DELETE /api/")
        })
        .collect();
    let targets: Vec<&str> = erasures
        .iter()
        .filter(|e| e["outcome"] == "success")
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert!(targets.contains(&a_uid.as_str()), "{targets:?}");
    assert!(
        targets.iter().any(|t| t.starts_with("patient#")),
        "{targets:?}"
    );

    // Deleting a project offers its unshared series: C is in brain and lung, so brain has
    // none until C leaves lung.
    let unshared =
        |p: &str| server.get_json(&format!("/api/projects/{p}/unshared-series"))["count"].clone();
    assert_eq!(unshared("brain"), 0);
    assert_eq!(
        delete(&server, &format!("/api/projects/lung/series/{c_uid}")).0,
        204
    );
    assert_eq!(
        delete(&server, &format!("/api/projects/lung/series/{c_uid}")).0,
        404
    );
    assert!(series_in(&server, "lung", "").is_empty());
    assert_eq!(unshared("brain"), 1);
    let (status, erased) = delete(&server, "/api/projects/brain?erase_unshared_series=true");
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["series"], json!([c_uid]));
    assert_eq!(server.get_status(&format!("/api/series/{c_uid}")).0, 404);
    assert!(server.archived_instances().is_empty());
    assert!(archive_files_naming(&server, "thumbnails/").is_empty());
    assert!(archive_files_naming(&server, "reports/").is_empty());
    // Without the flag a project's series stay (in admin).
    let (status, erased) = delete(&server, "/api/projects/lung");
    assert_eq!(status, 200);
    assert_eq!(erased["series"], json!([]));

    // What was erased can arrive again, as new.
    server.create_project("lung");
    send(&server, tmp.path(), "lung", &a);
    assert_eq!(server.instance_total("lung"), 3);
}

/// Whether any file of the ingest journal holds `needle`.
fn journal_holds(server: &Server, needle: &[u8]) -> bool {
    dir_holds(&server.data_dir.join("journal"), needle)
}

/// Whether any file directly in `dir` holds `needle`.
fn dir_holds(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|entry| {
        let bytes = std::fs::read(entry.path()).unwrap();
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

/// Behind the ingest journal an instance's bytes are also in the journal's files, where a
/// checkpoint only zeroes a segment's header: erasing scrubs them, and what was erased is not
/// redone after a restart.
#[test]
fn erasure_behind_the_journal_leaves_nothing_in_its_files() {
    let mut server = Server::start(&["--ingest-durability", "journal"]);
    let tmp = tempfile::tempdir().unwrap();
    let erased = spec("981", "PAT-JOURNALED-ERASED", 3);
    let kept = spec("982", "PAT-JOURNALED-KEPT", 2);
    let erased_uid = send(&server, tmp.path(), "admin", &erased);
    let kept_uid = send(&server, tmp.path(), "admin", &kept);
    assert!(journal_holds(&server, b"PAT-JOURNALED-ERASED"));

    let (status, body) = delete(&server, "/api/patients/PAT-JOURNALED-ERASED");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["series"], json!([erased_uid]));
    assert!(
        !journal_holds(&server, b"PAT-JOURNALED-ERASED"),
        "the erased patient's instances are still in the journal's files"
    );

    // The journal goes on, and a restart redoes nothing erased and loses nothing kept.
    let later = spec("983", "PAT-JOURNALED-LATER", 1);
    let later_uid = send(&server, tmp.path(), "admin", &later);
    server.restart();
    assert_eq!(
        server.get_status(&format!("/api/series/{erased_uid}")).0,
        404
    );
    for uid in [&kept_uid, &later_uid] {
        assert_eq!(server.get_status(&format!("/api/series/{uid}")).0, 200);
    }
}

/// Into packs an instance's only copy is its record in a pack: erasing punches it out, so
/// nothing of it is left in the packs' files, and a restart records nothing erased again.
#[test]
fn erasure_of_packed_instances_leaves_nothing_in_the_packs() {
    let mut server = Server::start(&["--ingest-durability", "packs"]);
    let tmp = tempfile::tempdir().unwrap();
    let packs = server.data_dir.join("archive/packs");
    let erased = spec("984", "PAT-PACKED-ERASED", 3);
    let kept = spec("985", "PAT-PACKED-KEPT", 2);
    let erased_uid = send(&server, tmp.path(), "admin", &erased);
    let kept_uid = send(&server, tmp.path(), "admin", &kept);
    assert!(dir_holds(&packs, b"PAT-PACKED-ERASED"));
    assert!(server.archived_files().is_empty(), "no file per instance");

    let (status, body) = delete(&server, "/api/patients/PAT-PACKED-ERASED");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["series"], json!([erased_uid]));
    assert_eq!(body["objects_failed"], json!(0), "{body}");
    assert!(
        !dir_holds(&packs, b"PAT-PACKED-ERASED"),
        "the erased patient's instances are still in the packs"
    );
    assert!(dir_holds(&packs, b"PAT-PACKED-KEPT"));

    let later = spec("986", "PAT-PACKED-LATER", 1);
    let later_uid = send(&server, tmp.path(), "admin", &later);
    server.restart();
    assert_eq!(
        server.get_status(&format!("/api/series/{erased_uid}")).0,
        404
    );
    for uid in [&kept_uid, &later_uid] {
        assert_eq!(server.get_status(&format!("/api/series/{uid}")).0, 200);
    }
}
