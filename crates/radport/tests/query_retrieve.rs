//! DIMSE query/retrieve against the users' own clients: DCMTK's findscu, getscu and movescu
//! (to a DCMTK storescp), and pynetdicom's SCUs (C-FIND, C-GET with role selection, C-MOVE
//! cancelled with C-CANCEL). Every request goes through a called AE title `kp-PROJECT` and
//! sees exactly that project's series.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::common::*;
use dicom_dictionary_std::tags;
use radport_testkit::{series_uid, sop_uid, study_uid, write_series, SeriesSpec};

/// Series A (lung): PAT-A Doe^John, CT, 2024-01-10, 6 instances. Series B (heart): PAT-B
/// Roe^Jane, MR, 2023-05-01, 3 instances.
struct Fixture {
    server: Server,
    a: SeriesSpec,
    b: SeriesSpec,
    a_dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let server = Server::start(&[]);
    server.create_project("lung");
    server.create_project("heart");
    let a = SeriesSpec {
        count: 6,
        uid_seed: "qr-a".into(),
        patient_id: "PAT-A".into(),
        patient_name: "Doe^John".into(),
        study_date: "20240110".into(),
        ..Default::default()
    };
    let b = SeriesSpec {
        count: 3,
        uid_seed: "qr-b".into(),
        patient_id: "PAT-B".into(),
        patient_name: "Roe^Jane".into(),
        study_date: "20230501".into(),
        modality: "MR".into(),
        ..Default::default()
    };
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    write_series(a_dir.path(), &a).unwrap();
    write_series(b_dir.path(), &b).unwrap();
    let out = server.dcmsend("kp-qr", "kp-lung", a_dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let out = server.dcmsend("kp-qr", "kp-heart", b_dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    Fixture {
        server,
        a,
        b,
        a_dir,
    }
}

fn dcmtk_run(tool: &str, server: &Server, called: &str, args: &[&str]) -> Output {
    Command::new(dcmtk(tool))
        .arg("-v")
        .args(["-aec", called])
        .args(args)
        .arg("127.0.0.1")
        .arg(server.dicom_port.to_string())
        .output()
        .unwrap_or_else(|e| panic!("{tool} runs: {e}"))
}

/// findscu's answers: the text of each pending response's identifier.
fn findscu(server: &Server, called: &str, model: &str, keys: &[&str]) -> Vec<String> {
    let mut args = vec![model];
    for k in keys {
        args.push("-k");
        args.push(k);
    }
    let out = dcmtk_run("findscu", server, called, &args);
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        !text.contains("Find Response") || text.contains("(Success)"),
        "the final response is not Success:\n{text}"
    );
    text.split("Find Response:")
        .skip(1)
        .filter(|part| part.contains("(Pending)"))
        .map(str::to_string)
        .collect()
}

#[test]
fn findscu_at_every_level_of_both_models_sees_only_the_project() {
    let f = fixture();
    let s = &f.server;
    let (a_study, b_study) = (study_uid(&f.a), study_uid(&f.b));

    // Study Root, study level: the project's study only; admin sees both.
    let keys = [
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "PatientName",
        "StudyDate",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    ];
    let lung = findscu(s, "kp-lung", "-S", &keys);
    assert_eq!(lung.len(), 1, "{lung:?}");
    assert!(lung[0].contains(&a_study) && lung[0].contains("Doe^John"));
    assert!(
        lung[0].contains("IS [6 ]"),
        "NumberOfStudyRelatedInstances: {}",
        lung[0]
    );
    assert!(lung[0].contains("[CT]"), "ModalitiesInStudy: {}", lung[0]);
    assert_eq!(findscu(s, "kp-admin", "-S", &keys).len(), 2);
    let heart = findscu(s, "kp-heart", "-S", &keys);
    assert_eq!(heart.len(), 1);
    assert!(heart[0].contains(&b_study) && !heart[0].contains(&a_study));

    // Wildcards (caseless for names) and date ranges.
    let by_name = |called: &str, name: &str| {
        findscu(
            s,
            called,
            "-S",
            &[
                "QueryRetrieveLevel=STUDY",
                "StudyInstanceUID",
                &format!("PatientName={name}"),
            ],
        )
    };
    assert_eq!(by_name("kp-lung", "doe*").len(), 1);
    assert_eq!(by_name("kp-lung", "D?e^J*").len(), 1);
    assert_eq!(
        by_name("kp-lung", "Roe*").len(),
        0,
        "heart's patient from lung"
    );
    assert_eq!(by_name("kp-admin", "Roe*").len(), 1);
    let by_date = |range: &str| {
        findscu(
            s,
            "kp-admin",
            "-S",
            &[
                "QueryRetrieveLevel=STUDY",
                "StudyInstanceUID",
                &format!("StudyDate={range}"),
            ],
        )
    };
    let recent = by_date("20240101-20241231");
    assert_eq!(recent.len(), 1);
    assert!(recent[0].contains(&a_study));
    let old = by_date("-20231231");
    assert_eq!(old.len(), 1);
    assert!(old[0].contains(&b_study));

    // Series and image levels.
    let series = findscu(
        s,
        "kp-lung",
        "-S",
        &[
            "QueryRetrieveLevel=SERIES",
            &format!("StudyInstanceUID={a_study}"),
            "SeriesInstanceUID",
            "Modality",
            "NumberOfSeriesRelatedInstances",
        ],
    );
    assert_eq!(series.len(), 1);
    assert!(series[0].contains(&series_uid(&f.a)) && series[0].contains("IS [6 ]"));
    let images = findscu(
        s,
        "kp-lung",
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("StudyInstanceUID={a_study}"),
            &format!("SeriesInstanceUID={}", series_uid(&f.a)),
            "SOPInstanceUID",
            "InstanceNumber",
        ],
    );
    assert_eq!(images.len(), 6);
    assert!(
        images[0].contains(&sop_uid(&f.a, 0)),
        "ordered by number: {}",
        images[0]
    );
    // The other project's series is not found at image level either.
    let images = findscu(
        s,
        "kp-heart",
        "-S",
        &[
            "QueryRetrieveLevel=IMAGE",
            &format!("SeriesInstanceUID={}", series_uid(&f.a)),
            "SOPInstanceUID",
        ],
    );
    assert_eq!(images.len(), 0);

    // Patient Root: patient level with counts, then a study level below a Patient ID.
    let patients = findscu(
        s,
        "kp-admin",
        "-P",
        &[
            "QueryRetrieveLevel=PATIENT",
            "PatientID",
            "PatientName",
            "NumberOfPatientRelatedInstances",
        ],
    );
    assert_eq!(patients.len(), 2, "{patients:?}");
    let lung_patients = findscu(
        s,
        "kp-lung",
        "-P",
        &[
            "QueryRetrieveLevel=PATIENT",
            "PatientID",
            "NumberOfPatientRelatedStudies",
        ],
    );
    assert_eq!(lung_patients.len(), 1);
    assert!(lung_patients[0].contains("PAT-A"));
    let studies = findscu(
        s,
        "kp-admin",
        "-P",
        &[
            "QueryRetrieveLevel=STUDY",
            "PatientID=PAT-B",
            "StudyInstanceUID",
        ],
    );
    assert_eq!(studies.len(), 1);
    assert!(studies[0].contains(&b_study));

    // Audited.
    audited(s, "C-FIND", 1);

    // The project's DICOM rules apply to queries as to stores: another calling AE title is
    // refused at association time (reason 3), the allowed one is answered.
    let response = reqwest::blocking::Client::new()
        .put(s.url("/api/projects/lung/dicom-rules"))
        .json(&serde_json::json!({"calling_ae_titles": ["ALLOWED"]}))
        .send()
        .expect("PUT dicom-rules");
    assert!(response.status().is_success(), "{:?}", response.text());
    let keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID"];
    let out = dcmtk_run(
        "findscu",
        s,
        "kp-lung",
        &["-S", "-aet", "OTHER", "-k", keys[0], "-k", keys[1]],
    );
    let text = output_text(&out);
    assert!(text.contains("Association Rejected"), "{text}");
    let out = dcmtk_run(
        "findscu",
        s,
        "kp-lung",
        &["-S", "-aet", "ALLOWED", "-k", keys[0], "-k", keys[1]],
    );
    let text = output_text(&out);
    assert!(out.status.success() && text.contains("(Pending)"), "{text}");
}

/// Waits until the audit trail has at least `count` events of `action` (recorded in the
/// background, after the answer).
fn audited(server: &Server, action: &str, count: i64) {
    server.wait_for(10, &format!("{count} {action} audit events"), || {
        let audit = server.get_json(&format!("/api/audit?action={action}&limit=1"));
        (audit["total"].as_i64().unwrap_or(0) >= count).then_some(())
    });
}

/// The files of a directory, sorted.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The transfer syntax in a Part-10 file's meta group.
fn transfer_syntax(file: &Path) -> String {
    dicom_object::open_file(file)
        .expect("a Part-10 file")
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string()
}

/// Asserts every file of `dir` is one of the series' instances with the sent data set bytes.
fn assert_same_data_sets(dir: &Path, spec: &SeriesSpec, sent: &Path) {
    let files = files_in(dir);
    assert_eq!(files.len(), spec.count, "{files:?}");
    for file in files {
        let received = read_file(&file);
        let obj = dicom_object::open_file(&file).expect("received file parses");
        let sop = obj
            .element(tags::SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string();
        let index = (0..spec.count)
            .find(|i| sop_uid(spec, *i) == sop)
            .expect("an instance of the series");
        let original = read_file(&sent.join(format!("slice_{:04}.dcm", index + 1)));
        assert_eq!(
            dataset_bytes(&received),
            dataset_bytes(&original),
            "{sop}: the data set is the sender's"
        );
    }
}

#[test]
fn getscu_receives_the_stored_bytes_converts_when_it_must_and_is_scoped() {
    let f = fixture();
    let s = &f.server;
    let keys = [
        "-S",
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        &format!("StudyInstanceUID={}", study_uid(&f.a)),
        "-k",
        &format!("SeriesInstanceUID={}", series_uid(&f.a)),
    ]
    .map(String::from);
    let get = |called: &str, extra: &[&str], dir: &Path| {
        let mut args: Vec<&str> = keys.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-od", dir.to_str().unwrap()]);
        dcmtk_run("getscu", s, called, &args)
    };

    // In the stored transfer syntax: byte for byte.
    let out_dir = tempfile::tempdir().unwrap();
    let out = get("kp-lung", &[], out_dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_data_sets(out_dir.path(), &f.a, f.a_dir.path());
    assert_eq!(
        transfer_syntax(&files_in(out_dir.path())[0]),
        EXPLICIT_VR_LE
    );

    // A receiver that proposes Explicit VR Big Endian first (dicom-ul accepts the first
    // proposed syntax it knows): converted. (getscu's `+xi` still proposes Explicit VR Little
    // Endian only, in DCMTK 3.6.7.)
    let converted_dir = tempfile::tempdir().unwrap();
    let out = get("kp-lung", &["+xb"], converted_dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let files = files_in(converted_dir.path());
    assert_eq!(files.len(), 6, "{}", output_text(&out));
    for file in &files {
        assert_eq!(transfer_syntax(file), "1.2.840.10008.1.2.2");
        let obj = dicom_object::open_file(file).expect("converted file parses");
        assert_eq!(
            obj.element(tags::PATIENT_ID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "PAT-A"
        );
    }

    // A compressed instance (RLE, made by DCMTK's dcmcrle) to a receiver proposing only
    // uncompressed syntaxes: decoded by the fallback.
    let rle = SeriesSpec {
        count: 1,
        uid_seed: "qr-rle".into(),
        ..Default::default()
    };
    let plain_dir = tempfile::tempdir().unwrap();
    let rle_dir = tempfile::tempdir().unwrap();
    write_series(plain_dir.path(), &rle).unwrap();
    run_ok(
        Command::new(dcmtk("dcmcrle"))
            .arg(plain_dir.path().join("slice_0001.dcm"))
            .arg(rle_dir.path().join("slice_0001.dcm")),
    );
    let out = s.dcmsend("kp-qr", "kp-lung", rle_dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let stored = s.get_json(&format!("/api/series/{}", series_uid(&rle)));
    assert_eq!(
        stored["instances"][0]["transfer_syntax_uid"], "1.2.840.10008.1.2.5",
        "stored as RLE"
    );
    let decoded_dir = tempfile::tempdir().unwrap();
    let out = dcmtk_run(
        "getscu",
        s,
        "kp-lung",
        &[
            "-S",
            "-k",
            "QueryRetrieveLevel=SERIES",
            "-k",
            &format!("StudyInstanceUID={}", study_uid(&rle)),
            "-k",
            &format!("SeriesInstanceUID={}", series_uid(&rle)),
            "-od",
            decoded_dir.path().to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let files = files_in(decoded_dir.path());
    assert_eq!(files.len(), 1, "{}", output_text(&out));
    assert_eq!(transfer_syntax(&files[0]), EXPLICIT_VR_LE);
    let original = dicom_object::open_file(plain_dir.path().join("slice_0001.dcm")).unwrap();
    let decoded = dicom_object::open_file(&files[0]).unwrap();
    assert_eq!(
        decoded
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap(),
        original
            .element(tags::PIXEL_DATA)
            .unwrap()
            .to_bytes()
            .unwrap(),
        "the decoded pixels are the original's"
    );

    // Through another project's AE title: nothing.
    let other_dir = tempfile::tempdir().unwrap();
    let out = get("kp-heart", &[], other_dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(files_in(other_dir.path()).is_empty());

    // A retrieve without the level's unique key is refused, not "everything".
    let refused_dir = tempfile::tempdir().unwrap();
    let out = dcmtk_run(
        "getscu",
        s,
        "kp-lung",
        &[
            "-S",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-od",
            refused_dir.path().to_str().unwrap(),
        ],
    );
    assert!(
        files_in(refused_dir.path()).is_empty(),
        "{}",
        output_text(&out)
    );

    audited(s, "C-GET", 3);
}

/// A DCMTK storescp on a free port, writing into `dir`.
struct StoreScp {
    child: Child,
    port: u16,
}

impl StoreScp {
    fn start(dir: &Path) -> StoreScp {
        let port = free_port();
        let child = Command::new(dcmtk("storescp"))
            .args(["-od", dir.to_str().unwrap(), "-aet", "STORE"])
            .arg(port.to_string())
            .env("TCP_NODELAY", "1")
            .spawn()
            .expect("storescp starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "storescp does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        StoreScp { child, port }
    }
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn movescu_to_a_configured_storescp_and_to_unknown_destinations() {
    let f = fixture();
    let s = &f.server;
    let received = tempfile::tempdir().unwrap();
    let scp = StoreScp::start(received.path());

    // Destinations through the CLI.
    let port = scp.port.to_string();
    let out = s.cli(&[
        "destination",
        "add",
        "--project",
        "lung",
        "STORE",
        "127.0.0.1",
        &port,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = s.cli(&[
        "destination",
        "add",
        "--project",
        "lung",
        "BAD",
        "127.0.0.1",
        "0",
    ]);
    assert!(!out.status.success(), "port 0 is refused");
    let out = s.cli(&[
        "destination",
        "add",
        "--project",
        "lung",
        "GONE",
        "x",
        "104",
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = s.cli(&["destination", "remove", "--project", "lung", "GONE"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = s.cli(&["destination", "list", "--project", "lung"]);
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains("STORE") && listed.contains(&port),
        "{listed}"
    );
    assert!(!listed.contains("GONE"), "{listed}");

    let move_to = |called: &str, destination: &str| {
        dcmtk_run(
            "movescu",
            s,
            called,
            &[
                "-S",
                "-aem",
                destination,
                "-k",
                "QueryRetrieveLevel=SERIES",
                "-k",
                &format!("StudyInstanceUID={}", study_uid(&f.a)),
                "-k",
                &format!("SeriesInstanceUID={}", series_uid(&f.a)),
            ],
        )
    };
    let out = move_to("kp-lung", "STORE");
    assert!(out.status.success(), "{}", output_text(&out));
    assert_same_data_sets(received.path(), &f.a, f.a_dir.path());

    // An AE title the project does not have, and lung's destination through heart.
    for (called, destination) in [("kp-lung", "NOWHERE"), ("kp-heart", "STORE")] {
        let out = move_to(called, destination);
        let text = output_text(&out).to_lowercase();
        assert!(
            text.contains("a801") || text.contains("movedestinationunknown"),
            "{called} → {destination}: {text}"
        );
    }
    assert_eq!(files_in(received.path()).len(), 6, "nothing more arrived");

    audited(s, "C-MOVE", 3);
}

const PYNETDICOM_SCRIPT: &str = r#"
import sys
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind as FIND,
    StudyRootQueryRetrieveInformationModelGet as GET,
    StudyRootQueryRetrieveInformationModelMove as MOVE,
)

port, study, series = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ds = Dataset()
ds.QueryRetrieveLevel = "SERIES"
ds.StudyInstanceUID = study
ds.SeriesInstanceUID = series

# C-FIND
ae = AE(ae_title="PYSCU")
ae.add_requested_context(FIND)
assoc = ae.associate("127.0.0.1", port, ae_title="kp-lung")
assert assoc.is_established, "find association"
matches = [i for s, i in assoc.send_c_find(ds, FIND) if s and s.Status == 0xFF00]
assoc.release()
print("find", len(matches))

# C-GET with SCP role selection, default transfer syntaxes (Implicit VR LE first).
received = []
def on_store(event):
    received.append(event.request.AffectedSOPInstanceUID)
    return 0x0000
ae = AE(ae_title="PYSCU")
ae.add_requested_context(GET)
ae.add_requested_context(CTImageStorage)
assoc = ae.associate("127.0.0.1", port, ae_title="kp-lung",
                     ext_neg=[build_role(CTImageStorage, scp_role=True)],
                     evt_handlers=[(evt.EVT_C_STORE, on_store)])
assert assoc.is_established, "get association"
final = None
for s, i in assoc.send_c_get(ds, GET):
    if s:
        final = s.Status
assoc.release()
print("get", len(received), hex(final))

# C-GET again, cancelled after the first pending response.
received.clear()
assoc = ae.associate("127.0.0.1", port, ae_title="kp-lung",
                     ext_neg=[build_role(CTImageStorage, scp_role=True)],
                     evt_handlers=[(evt.EVT_C_STORE, on_store)])
assert assoc.is_established, "second get association"
final = None
pending = 0
for s, i in assoc.send_c_get(ds, GET, msg_id=9):
    if not s:
        continue
    if s.Status == 0xFF00:
        pending += 1
        if pending == 1:
            assoc.send_c_cancel(9, query_model=GET)
    else:
        final = s
assoc.release()
print("getcancel", hex(final.Status), final.get("NumberOfCompletedSuboperations", -1),
      len(received))

# C-MOVE, cancelled after the first pending response.
ae = AE(ae_title="PYSCU")
ae.add_requested_context(MOVE)
assoc = ae.associate("127.0.0.1", port, ae_title="kp-lung")
assert assoc.is_established, "move association"
final = None
pending = 0
for s, i in assoc.send_c_move(ds, "STORE", MOVE, msg_id=7):
    if not s:
        continue
    if s.Status == 0xFF00:
        pending += 1
        if pending == 1:
            assoc.send_c_cancel(7, query_model=MOVE)
    else:
        final = s
assoc.release()
print("move", hex(final.Status), final.get("NumberOfCompletedSuboperations", -1),
      final.get("NumberOfRemainingSuboperations", -1))
"#;

#[test]
fn pynetdicom_finds_gets_and_cancels_a_get_and_a_move() {
    let server = Server::start(&[]);
    server.create_project("lung");
    let spec = SeriesSpec {
        count: 400,
        rows: 32,
        columns: 32,
        uid_seed: "qr-many".into(),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    write_series(dir.path(), &spec).unwrap();
    let out = server.dcmsend("kp-qr", "kp-lung", dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let received = tempfile::tempdir().unwrap();
    let scp = StoreScp::start(received.path());
    let out = server.cli(&[
        "destination",
        "add",
        "--project",
        "lung",
        "STORE",
        "127.0.0.1",
        &scp.port.to_string(),
    ]);
    assert!(out.status.success(), "{}", output_text(&out));

    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), PYNETDICOM_SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(script.path())
        .arg(server.dicom_port.to_string())
        .arg(study_uid(&spec))
        .arg(series_uid(&spec))
        .output()
        .expect("python3 runs");
    let text = output_text(&out);
    assert!(
        out.status.success(),
        "pynetdicom's SCUs failed (pip install pynetdicom):\n{text}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("find 1\n"), "{text}");
    assert!(stdout.contains("get 400 0x0\n"), "{text}");
    let cancelled_get = stdout
        .lines()
        .find(|l| l.starts_with("getcancel "))
        .unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<&str> = cancelled_get.split_whitespace().collect();
    assert_eq!(parts[1], "0xfe00", "C-GET cancelled: {text}");
    let completed: i64 = parts[2].parse().unwrap();
    assert!(completed < 400, "{text}");
    assert_eq!(parts[3], parts[2], "as many received as completed: {text}");
    let moved = stdout
        .lines()
        .find(|l| l.starts_with("move "))
        .unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<&str> = moved.split_whitespace().collect();
    assert_eq!(parts[1], "0xfe00", "cancelled: {text}");
    let completed: i64 = parts[2].parse().unwrap();
    let remaining: i64 = parts[3].parse().unwrap();
    assert!(completed < 400 && remaining > 0, "{text}");
    // What was completed arrived (storescp may still be writing the last one), and no more.
    server.wait_for(10, "the moved files", || {
        (files_in(received.path()).len() as i64 == completed).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(files_in(received.path()).len() as i64, completed, "{text}");
}

const BUSY_SCRIPT: &str = r#"
import sys, threading, time
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet as GET

port, study, series = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ds = Dataset()
ds.QueryRetrieveLevel = "SERIES"
ds.StudyInstanceUID = study
ds.SeriesInstanceUID = series

def get(slow):
    def on_store(event):
        if slow:
            time.sleep(3)
        return 0x0000
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(GET)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="kp-lung",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    final = None
    for s, i in assoc.send_c_get(ds, GET):
        if s and s.Status != 0xFF00:
            final = s.Status
    assoc.release()
    return final

results = {}
slow = threading.Thread(target=lambda: results.update(slow=get(True)))
slow.start()
time.sleep(1)
results["busy"] = get(False)
slow.join()
print("slow", hex(results["slow"]), "busy", hex(results["busy"]))
"#;

#[test]
fn retrieves_beyond_the_limit_are_refused_with_a702() {
    let server = Server::start(&["--max-retrieves", "1"]);
    server.create_project("lung");
    let spec = SeriesSpec {
        count: 1,
        uid_seed: "qr-busy".into(),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    write_series(dir.path(), &spec).unwrap();
    let out = server.dcmsend("kp-qr", "kp-lung", dir.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), BUSY_SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(script.path())
        .arg(server.dicom_port.to_string())
        .arg(study_uid(&spec))
        .arg(series_uid(&spec))
        .output()
        .expect("python3 runs");
    let text = output_text(&out);
    assert!(out.status.success(), "(pip install pynetdicom)\n{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("slow 0x0 busy 0xa702"),
        "{text}"
    );
}
