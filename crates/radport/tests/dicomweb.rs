//! DICOMweb end to end: QIDO-RS, WADO-RS and STOW-RS of `radport serve`, with the users' own
//! client (the `dicomweb-client` Python package and its command line) and plain HTTP where the
//! exact bytes matter.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use radport_testkit::{
    multi_frame_sop_uid, series_uid, sop_uid, study_uid, write_multi_frame, write_series,
    SeriesSpec,
};
use serde_json::Value;

/// Two studies: Doe^John's CT (5 slices, project lung, study date 2024-01-10) and
/// Roe^Jane's MR (3 slices, admin only, 2023-05-01).
fn two_studies(server: &Server, dir: &Path) -> (SeriesSpec, SeriesSpec) {
    server.create_project("lung");
    let ct = SeriesSpec {
        count: 5,
        rows: 32,
        columns: 32,
        patient_id: "PID-DW-1".into(),
        patient_name: "Doe^John".into(),
        modality: "CT".into(),
        study_date: "20240110".into(),
        uid_seed: "9301".into(),
        ..Default::default()
    };
    let mr = SeriesSpec {
        count: 3,
        rows: 16,
        columns: 16,
        patient_id: "PID-DW-2".into(),
        patient_name: "Roe^Jane".into(),
        modality: "MR".into(),
        study_date: "20230501".into(),
        uid_seed: "9302".into(),
        ..Default::default()
    };
    for (spec, project) in [(&ct, "kp-lung"), (&mr, "kp-admin")] {
        let sub = dir.join(&spec.uid_seed);
        std::fs::create_dir_all(&sub).unwrap();
        write_series(&sub, spec).unwrap();
        let out = server.dcmsend("kp-dw", project, &sub);
        assert!(out.status.success(), "{}", output_text(&out));
    }
    (ct, mr)
}

fn get(server: &Server, path: &str, accept: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .get(server.url(path))
        .header("accept", accept)
        .send()
        .expect("GET")
}

fn json_of(r: reqwest::blocking::Response) -> Value {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/dicom+json");
    r.json().expect("DICOM JSON")
}

fn values(answer: &Value, tag: &str) -> Vec<String> {
    answer
        .as_array()
        .expect("an array")
        .iter()
        .map(|o| {
            let v = &o[tag]["Value"][0];
            v.as_str()
                .map(str::to_string)
                .or_else(|| v["Alphabetic"].as_str().map(str::to_string))
                .unwrap_or_else(|| v.to_string())
        })
        .collect()
}

#[test]
fn qido_rs_searches() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (ct, mr) = two_studies(&server, tmp.path());
    let dw = |path: &str| {
        json_of(get(
            &server,
            &format!("/dicomweb{path}"),
            "application/dicom+json",
        ))
    };

    // Studies newest first, with the computed attributes.
    let studies = dw("/studies");
    assert_eq!(
        values(&studies, "0020000D"),
        [study_uid(&ct), study_uid(&mr)]
    );
    assert_eq!(values(&studies, "00201208"), ["5", "3"]);
    assert_eq!(values(&studies, "00201206"), ["1", "1"]);
    assert_eq!(values(&studies, "00080061"), ["CT", "MR"]);
    assert_eq!(
        values(&studies, "00081190")[0],
        server.url(&format!("/dicomweb/studies/{}", study_uid(&ct)))
    );
    // Matching: names ignoring case with wildcards, dates and ranges, modalities, UIDs.
    assert_eq!(
        values(&dw("/studies?PatientName=doe*"), "00100020"),
        ["PID-DW-1"]
    );
    assert_eq!(
        values(&dw("/studies?00100010=*jane"), "00100020"),
        ["PID-DW-2"]
    );
    assert_eq!(
        values(&dw("/studies?StudyDate=20240101-"), "00100020"),
        ["PID-DW-1"]
    );
    assert_eq!(
        values(&dw("/studies?StudyDate=20230501"), "00100020"),
        ["PID-DW-2"]
    );
    assert_eq!(
        values(&dw("/studies?ModalitiesInStudy=MR"), "00100020"),
        ["PID-DW-2"]
    );
    assert_eq!(
        values(
            &dw("/studies?PatientID=PID-DW-1&fuzzymatching=false"),
            "00100010"
        ),
        ["Doe^John"]
    );
    assert_eq!(
        values(
            &dw(&format!("/studies?StudyInstanceUID={}", study_uid(&mr))),
            "00100020"
        ),
        ["PID-DW-2"]
    );
    assert!(dw("/studies?PatientName=nobody")
        .as_array()
        .unwrap()
        .is_empty());
    // Series in a study and across studies; instances by number.
    let series = dw(&format!("/studies/{}/series", study_uid(&ct)));
    assert_eq!(values(&series, "0020000E"), [series_uid(&ct)]);
    assert_eq!(values(&series, "00201209"), ["5"]);
    assert_eq!(
        values(&dw("/series?Modality=MR"), "0020000E"),
        [series_uid(&mr)]
    );
    assert_eq!(
        values(&dw("/series?PatientID=PID-DW-1"), "00080060"),
        ["CT"]
    );
    let instances = dw(&format!(
        "/studies/{}/series/{}/instances",
        study_uid(&ct),
        series_uid(&ct)
    ));
    assert_eq!(
        values(&instances, "00080018"),
        (0..5).map(|i| sop_uid(&ct, i)).collect::<Vec<_>>()
    );
    assert_eq!(
        values(&dw("/instances?InstanceNumber=2&Modality=CT"), "00080018"),
        [sop_uid(&ct, 1)]
    );
    // limit/offset, with the warning that more can be had.
    let r = get(
        &server,
        "/dicomweb/studies?limit=1",
        "application/dicom+json",
    );
    assert!(r.headers()["warning"]
        .to_str()
        .unwrap()
        .contains("additional results"));
    assert_eq!(values(&json_of(r), "00100020"), ["PID-DW-1"]);
    assert_eq!(
        values(&dw("/studies?limit=1&offset=1"), "00100020"),
        ["PID-DW-2"]
    );
    // includefield: a stored attribute beyond the catalog's; all.
    let with = dw("/studies?PatientID=PID-DW-1&includefield=00080070,SeriesDescription");
    let _ = &with; // Manufacturer and Series Description are asked for; present if stored.
    let all = dw(&format!(
        "/studies/{}/series/{}/instances?includefield=all",
        study_uid(&ct),
        series_uid(&ct)
    ));
    assert!(all[0]["00280010"]["Value"][0].as_i64() == Some(32), "{all}");
    assert!(
        all[0].get("00200032").is_some(),
        "all of the stored attributes: {all}"
    );
    // Bad queries are 400 with a reason.
    for bad in [
        "/studies?NoSuchKey=1",
        "/studies?limit=x",
        "/studies?StudyDate=2024-01-10",
        "/studies?Modality=CT",
    ] {
        let r = get(
            &server,
            &format!("/dicomweb{bad}"),
            "application/dicom+json",
        );
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(get(&server, "/dicomweb/studies", "text/html").status(), 406);

    // A project sees its own.
    let lung = json_of(get(
        &server,
        "/projects/lung/dicomweb/studies",
        "application/json",
    ));
    assert_eq!(values(&lung, "0020000D"), [study_uid(&ct)]);
    assert!(json_of(get(
        &server,
        "/projects/lung/dicomweb/series?Modality=MR",
        "*/*"
    ))
    .as_array()
    .unwrap()
    .is_empty());
    assert_eq!(
        get(&server, "/projects/nope/dicomweb/studies", "*/*").status(),
        404
    );
}

/// The dicomweb-client package (API and CLI) against radport: retrieve, metadata, frames,
/// store, and search, checked against the files sent with pydicom.
#[test]
fn the_dicomweb_client_retrieves_and_stores() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (ct, mr) = two_studies(&server, tmp.path());
    // A multi-frame instance of the CT's patient, for frames.
    let mf = SeriesSpec {
        count: 4,
        rows: 8,
        columns: 8,
        patient_id: "PID-DW-MF".into(),
        uid_seed: "9303".into(),
        ..Default::default()
    };
    let mf_dir = tmp.path().join("mf");
    std::fs::create_dir_all(&mf_dir).unwrap();
    write_multi_frame(&mf_dir, &mf).unwrap();
    assert!(server.dcmsend("kp-dw", "kp-lung", &mf_dir).status.success());
    // Files to store with STOW-RS: a new series.
    let stow = SeriesSpec {
        count: 2,
        rows: 8,
        columns: 8,
        patient_id: "PID-DW-3".into(),
        uid_seed: "9304".into(),
        ..Default::default()
    };
    let stow_dir = tmp.path().join("stow");
    std::fs::create_dir_all(&stow_dir).unwrap();
    write_series(&stow_dir, &stow).unwrap();

    let script = tmp.path().join("client.py");
    std::fs::write(&script, CLIENT_SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(server.url("/dicomweb"))
        .arg(server.url("/projects/lung/dicomweb"))
        .arg(tmp.path().join(&ct.uid_seed))
        .arg(&stow_dir)
        .env("CT_STUDY", study_uid(&ct))
        .env("CT_SERIES", series_uid(&ct))
        .env("MR_STUDY", study_uid(&mr))
        .env("MF_DIR", &mf_dir)
        .env("STOW_STUDY", study_uid(&stow))
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs dicomweb-client)");
    let text = output_text(&out);
    assert!(
        out.status.success() && text.contains("dicomweb-client: all checks passed"),
        "{text}\nserver log:\n{}",
        server.log()
    );
    // Stored by STOW-RS into lung, dataset dicomweb: the catalog has it, the pipeline runs.
    let stored = server.series("lung", "");
    let uids: Vec<&str> = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["series_instance_uid"].as_str().unwrap())
        .collect();
    assert!(uids.contains(&series_uid(&stow).as_str()), "{stored}");

    // The command line: search and retrieve.
    let cli = Command::new("dicomweb_client")
        .args([
            "--url",
            &server.url("/dicomweb"),
            "search",
            "studies",
            "--filter",
            "PatientID=PID-DW-2",
        ])
        .output()
        .expect("the dicomweb_client command");
    let text = output_text(&cli);
    assert!(cli.status.success(), "{text}");
    assert!(text.contains(&study_uid(&mr)), "{text}");
}

#[test]
fn wado_rs_sends_the_stored_bytes_and_stow_rs_answers_per_instance() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let (ct, mr) = two_studies(&server, tmp.path());
    // The stored file of an instance is its bytes as sent (file meta group aside).
    let r = get(
        &server,
        &format!(
            "/dicomweb/studies/{}/series/{}/instances/{}",
            study_uid(&ct),
            series_uid(&ct),
            sop_uid(&ct, 2)
        ),
        "multipart/related; type=\"application/dicom\"",
    );
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("multipart/related; type=\"application/dicom\"; boundary="));
    let boundary = content_type.split("boundary=").nth(1).unwrap().to_string();
    let body = r.bytes().unwrap();
    let parts = split_multipart(&body, &boundary);
    assert_eq!(parts.len(), 1);
    let sent = std::fs::read_dir(tmp.path().join(&ct.uid_seed))
        .unwrap()
        .map(|e| read_file(&e.unwrap().path()))
        .find(|f| {
            dataset_bytes(f)
                .windows(sop_uid(&ct, 2).len())
                .any(|w| w == sop_uid(&ct, 2).as_bytes())
        })
        .expect("the file sent");
    assert_eq!(dataset_bytes(&parts[0].1), dataset_bytes(&sent));
    assert!(parts[0]
        .0
        .contains("application/dicom; transfer-syntax=1.2.840.10008.1.2.1"));

    // Another transfer syntax than the stored one: 406; through another project: 404.
    let study = format!("/dicomweb/studies/{}", study_uid(&ct));
    assert_eq!(
        get(
            &server,
            &study,
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50"
        )
        .status(),
        406
    );
    assert_eq!(
        get(
            &server,
            &format!("/projects/lung/dicomweb/studies/{}", study_uid(&mr)),
            "*/*"
        )
        .status(),
        404
    );

    // STOW-RS: one good instance, one that is not DICOM, one of another study than the URL's.
    let boundary = "stow-test-boundary";
    let good = read_file(
        &std::fs::read_dir(tmp.path().join(&mr.uid_seed))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    );
    let ct_file = read_file(
        &std::fs::read_dir(tmp.path().join(&ct.uid_seed))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    );
    let mut body = Vec::new();
    for part in [&good[..], b"not dicom at all", &ct_file[..]] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(part);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let r = reqwest::blocking::Client::new()
        .post(server.url(&format!(
            "/dicomweb/studies/{}?dataset=again",
            study_uid(&mr)
        )))
        .header(
            "content-type",
            format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        )
        .header("accept", "application/dicom+json")
        .body(body)
        .send()
        .unwrap();
    let status = r.status();
    let answer: Value = r.json().unwrap();
    assert_eq!(status, 202, "{answer}");
    let referenced = answer["00081199"]["Value"].as_array().expect("referenced");
    assert_eq!(referenced.len(), 1);
    assert!(referenced[0]["00081190"]["Value"][0]
        .as_str()
        .unwrap()
        .contains(&series_uid(&mr)));
    let failed = answer["00081198"]["Value"].as_array().expect("failed");
    let reasons: Vec<i64> = failed
        .iter()
        .map(|f| f["00081197"]["Value"][0].as_i64().unwrap())
        .collect();
    assert_eq!(reasons, [0xC000, 0xA900]);
    let refused = failed[1]["00081155"]["Value"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!((0..5).any(|i| sop_uid(&ct, i) == refused), "{refused}");
    // Nothing was added for the refused ones; the good one kept its first copy.
    assert_eq!(server.instance_total("admin"), 8);
    // Not multipart: 415.
    let r = reqwest::blocking::Client::new()
        .post(server.url("/dicomweb/studies"))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
}

/// `(headers, content)` of each part of a multipart body.
fn split_multipart(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if &body[i..i + d.len()] == d {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for pair in starts.windows(2) {
        let part = &body[pair[0] + d.len() + 2..pair[1] - 2];
        let split = part
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("headers end");
        parts.push((
            String::from_utf8_lossy(&part[..split]).to_string(),
            part[split + 4..].to_vec(),
        ));
    }
    parts
}

const CLIENT_SCRIPT: &str = r#"
import os, sys, glob
import pydicom
from dicomweb_client.api import DICOMwebClient

root, lung_root, ct_dir, stow_dir = sys.argv[1:5]
client = DICOMwebClient(url=root)
lung = DICOMwebClient(url=lung_root)
ct_study, ct_series = os.environ["CT_STUDY"], os.environ["CT_SERIES"]

def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)

sent = {}
for path in glob.glob(os.path.join(ct_dir, "*")):
    ds = pydicom.dcmread(path)
    sent[ds.SOPInstanceUID] = ds

# Search.
studies = client.search_for_studies(search_filters={"PatientID": "PID-DW-1"})
check(len(studies) == 1, f"one study of PID-DW-1: {studies}")
series = client.search_for_series(study_instance_uid=ct_study)
check([s["0020000E"]["Value"][0] for s in series] == [ct_series], f"series: {series}")
check(len(client.search_for_instances(study_instance_uid=ct_study, series_instance_uid=ct_series)) == 5, "5 instances")
lung_studies = [s["0020000D"]["Value"][0] for s in lung.search_for_studies()]
check(ct_study in lung_studies and os.environ["MR_STUDY"] not in lung_studies, f"lung's studies: {lung_studies}")

# Retrieve: every instance as sent.
got = client.retrieve_series(ct_study, ct_series)
check(len(got) == 5, f"5 instances retrieved, got {len(got)}")
for ds in got:
    orig = sent[ds.SOPInstanceUID]
    check(ds.PixelData == orig.PixelData, "pixel data as sent")
    check(ds.PatientName == orig.PatientName, "patient name as sent")
check(len(client.retrieve_study(ct_study)) >= 5, "the study")
one = client.retrieve_instance(ct_study, ct_series, got[0].SOPInstanceUID)
check(one.SOPInstanceUID == got[0].SOPInstanceUID, "one instance")

# Metadata: attributes and a BulkDataURI for Pixel Data.
meta = client.retrieve_series_metadata(ct_study, ct_series)
check(len(meta) == 5, "metadata of 5 instances")
check("BulkDataURI" in meta[0]["7FE00010"], f"pixel data bulk data URI: {meta[0].get('7FE00010')}")
check(meta[0]["00100010"]["Value"][0]["Alphabetic"] == "Doe^John", "patient name in metadata")
uid = meta[0]["00080018"]["Value"][0]
bulk = client.retrieve_bulkdata(meta[0]["7FE00010"]["BulkDataURI"])
check(bulk[0] == sent[uid].PixelData, "bulk data = pixel data")

# Frames: of a single-frame instance, and frames 2 and 4 of a multi-frame one.
frames = client.retrieve_instance_frames(ct_study, ct_series, uid, frame_numbers=[1])
check(frames[0] == sent[uid].PixelData, "frame 1 = pixel data")
mf = pydicom.dcmread(glob.glob(os.path.join(os.environ["MF_DIR"], "*"))[0])
frame_bytes = mf.Rows * mf.Columns * mf.SamplesPerPixel * mf.BitsAllocated // 8
frames = client.retrieve_instance_frames(mf.StudyInstanceUID, mf.SeriesInstanceUID, mf.SOPInstanceUID, frame_numbers=[2, 4])
check(frames == [mf.PixelData[frame_bytes:2 * frame_bytes], mf.PixelData[3 * frame_bytes:4 * frame_bytes]], "frames 2 and 4")

# Store into lung, then find it there.
datasets = [pydicom.dcmread(p) for p in sorted(glob.glob(os.path.join(stow_dir, "*")))]
answer = lung.store_instances(datasets)
check(len(answer.ReferencedSOPSequence) == len(datasets), f"all stored: {answer}")
check("FailedSOPSequence" not in answer, f"none failed: {answer}")
found = lung.search_for_studies(search_filters={"StudyInstanceUID": os.environ["STOW_STUDY"]})
check(len(found) == 1, "the stored study is found in lung")
back = lung.retrieve_study(os.environ["STOW_STUDY"])
check(sorted(d.SOPInstanceUID for d in back) == sorted(d.SOPInstanceUID for d in datasets), "and retrieved")
# Through lung, admin's MR study is not there.
try:
    lung.retrieve_study(os.environ["MR_STUDY"])
    check(False, "MR study through lung")
except Exception as e:
    check("404" in str(e), f"404 for another project's study: {e}")
print("dicomweb-client: all checks passed")
"#;

/// The value of the last Pixel Data element (Explicit VR Little Endian, OW/OB) of a file.
fn native_pixel_data(file: &[u8]) -> Vec<u8> {
    let at = file
        .windows(6)
        .rposition(|w| w[..4] == [0xE0, 0x7F, 0x10, 0x00] && (&w[4..] == b"OW" || &w[4..] == b"OB"))
        .expect("Pixel Data");
    let len = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
    file[at + 12..at + 12 + len].to_vec()
}

fn picture(r: reqwest::blocking::Response, media_type: &str) -> image::DynamicImage {
    let status = r.status();
    let content_type = r.headers().get("content-type").cloned();
    let bytes = r.bytes().unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(content_type.unwrap(), media_type);
    let format = match media_type {
        "image/jpeg" => image::ImageFormat::Jpeg,
        _ => image::ImageFormat::Png,
    };
    image::load_from_memory_with_format(&bytes, format).expect("a picture")
}

/// Rendered pictures (JPEG and PNG, window and viewport), thumbnails of study, series and
/// instance, and frames of a JPEG-LS instance decoded to Explicit VR Little Endian on request,
/// with plain HTTP and with the dicomweb-client package.
#[test]
fn rendered_thumbnails_and_decoded_frames() {
    let server = Server::start(&["--stable-after", "1"]);
    server.create_project("lung");
    let tmp = tempfile::tempdir().unwrap();
    // 5 slices of 48 columns × 32 rows (square pixels).
    let ct = SeriesSpec {
        count: 5,
        rows: 32,
        columns: 48,
        patient_id: "PID-DW-R".into(),
        uid_seed: "9311".into(),
        ..Default::default()
    };
    let ct_dir = tmp.path().join("ct");
    write_series(&ct_dir, &ct).unwrap();
    assert!(server.dcmsend("kp-dw", "kp-lung", &ct_dir).status.success());
    // A multi-frame instance (4 frames of 16 × 16), compressed with JPEG-LS (lossless).
    let mf = SeriesSpec {
        count: 4,
        rows: 16,
        columns: 16,
        patient_id: "PID-DW-R".into(),
        uid_seed: "9312".into(),
        ..Default::default()
    };
    let mf_dir = tmp.path().join("mf");
    let native = write_multi_frame(&mf_dir, &mf).unwrap();
    let jls_dir = tmp.path().join("jls");
    std::fs::create_dir_all(&jls_dir).unwrap();
    let jls = jls_dir.join("frames.dcm");
    run_ok(Command::new(dcmtk("dcmcjpls")).arg(&native).arg(&jls));
    assert!(server
        .dcmsend("kp-dw", "kp-lung", &jls_dir)
        .status
        .success());

    let study = format!("/dicomweb/studies/{}", study_uid(&ct));
    let series = format!("{study}/series/{}", series_uid(&ct));
    let instance = format!("{series}/instances/{}", sop_uid(&ct, 2));
    let mf_instance = format!(
        "/dicomweb/studies/{}/series/{}/instances/{}",
        study_uid(&mf),
        series_uid(&mf),
        multi_frame_sop_uid(&mf)
    );

    // JPEG by default, at the frame's size without a viewport; fitted into a viewport.
    let img = picture(
        get(&server, &format!("{instance}/rendered"), "*/*"),
        "image/jpeg",
    );
    assert_eq!((img.width(), img.height()), (48, 32));
    let img = picture(
        get(
            &server,
            &format!("{instance}/rendered?viewport=64,64"),
            "image/jpeg",
        ),
        "image/jpeg",
    );
    assert_eq!((img.width(), img.height()), (64, 43));
    let img = picture(
        get(
            &server,
            &format!("{instance}/rendered?viewport=96,96&quality=50"),
            "image/png",
        ),
        "image/png",
    );
    assert_eq!((img.width(), img.height()), (96, 64));
    // A source rectangle: 16 × 16 pixels from (8, 8), flipped, into 32 × 32.
    let img = picture(
        get(
            &server,
            &format!("{instance}/rendered?viewport=32,32,24,8,-16,16"),
            "image/png",
        ),
        "image/png",
    );
    assert_eq!((img.width(), img.height()), (32, 32));
    // A window below every value: all white; above every value: all black.
    let white = picture(
        get(
            &server,
            &format!("{instance}/rendered?window=-100000,1,linear"),
            "image/png",
        ),
        "image/png",
    )
    .to_luma8();
    assert!(white.pixels().all(|p| p.0[0] == 255));
    let black = picture(
        get(
            &server,
            &format!("{instance}/rendered?window=100000,10,sigmoid"),
            "image/png",
        ),
        "image/png",
    )
    .to_luma8();
    assert!(black.pixels().all(|p| p.0[0] == 0));
    let white_jpeg = picture(
        get(
            &server,
            &format!("{instance}/rendered?window=-100000,1"),
            "image/jpeg",
        ),
        "image/jpeg",
    )
    .to_luma8();
    assert!(white_jpeg.pixels().all(|p| p.0[0] >= 250));
    // The series and the study: their middle slice; a frame of the compressed instance.
    for path in [
        format!("{series}/rendered"),
        format!("{study}/rendered"),
        format!("{mf_instance}/frames/3/rendered"),
        format!("{mf_instance}/rendered"),
        format!("/projects/lung{instance}/rendered?viewport=16,16"),
    ] {
        let img = picture(get(&server, &path, "image/jpeg"), "image/jpeg");
        assert!(img.width() > 0, "{path}");
    }
    let img = picture(
        get(
            &server,
            &format!("{mf_instance}/frames/2/rendered"),
            "image/png",
        ),
        "image/png",
    );
    assert_eq!((img.width(), img.height()), (16, 16));
    // Not a picture type: 406; bad or unsupported parameters: 400.
    assert_eq!(
        get(&server, &format!("{instance}/rendered"), "text/html").status(),
        406
    );
    for query in [
        "window=abc",
        "window=40,0",
        "window=40,400,cubic",
        "viewport=0,0",
        "viewport=64",
        "viewport=64,64,100,100,8,8",
        "quality=101",
        "annotation=patient",
        "frobnicate=1",
    ] {
        let r = get(
            &server,
            &format!("{instance}/rendered?{query}"),
            "image/jpeg",
        );
        assert_eq!(r.status(), 400, "{query}");
        let reason: Value = r.json().unwrap();
        assert!(reason.to_string().len() > 20, "{query}: {reason}");
    }
    assert_eq!(
        get(&server, &format!("{instance}/frames/2/rendered"), "*/*").status(),
        400
    );
    assert_eq!(
        get(&server, &format!("{instance}/thumbnail?window=1,2"), "*/*").status(),
        400
    );

    // Thumbnails: the stored series thumbnail once the pipeline has made it.
    let stored = server.wait_for(30, "the series thumbnail", || {
        let r = reqwest::blocking::get(
            server.url(&format!("/api/series/{}/thumbnail", series_uid(&ct))),
        )
        .ok()?;
        (r.status() == 200).then(|| r.bytes().unwrap().to_vec())
    });
    for path in [format!("{series}/thumbnail"), format!("{study}/thumbnail")] {
        let r = get(&server, &path, "image/png");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], "image/png");
        assert_eq!(r.bytes().unwrap().to_vec(), stored, "{path}");
    }
    let img = picture(
        get(&server, &format!("{instance}/thumbnail"), "*/*"),
        "image/png",
    );
    assert_eq!((img.width(), img.height()), (256, 171));
    let img = picture(
        get(
            &server,
            &format!("{series}/thumbnail?viewport=32,32"),
            "image/jpeg",
        ),
        "image/jpeg",
    );
    assert_eq!((img.width(), img.height()), (32, 21));
    let img = picture(
        get(
            &server,
            &format!("{mf_instance}/frames/4/thumbnail"),
            "image/png",
        ),
        "image/png",
    );
    assert_eq!((img.width(), img.height()), (256, 256));
    assert_eq!(
        get(&server, &format!("{study}/thumbnail"), "text/html").status(),
        406
    );

    // Frames of the JPEG-LS instance: as stored by default; decoded when only native ones are
    // accepted, equal to the original's and to what dcmdjpls decodes.
    let frames_of = |accept: &str| {
        let r = get(&server, &format!("{mf_instance}/frames/1,3"), accept);
        let status = r.status();
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = r.bytes().unwrap();
        (status, content_type, body)
    };
    let (status, content_type, _) =
        frames_of("multipart/related; type=\"application/octet-stream\"; transfer-syntax=*");
    assert_eq!(status, 200);
    assert!(content_type.contains("image/jls"), "{content_type}");
    let decoded_file = tmp.path().join("decoded.dcm");
    run_ok(Command::new(dcmtk("dcmdjpls")).arg(&jls).arg(&decoded_file));
    let dcmtk_pixels = native_pixel_data(&read_file(&decoded_file));
    let original = native_pixel_data(&read_file(&native));
    assert_eq!(dcmtk_pixels, original, "JPEG-LS is lossless");
    let frame_bytes = 16 * 16 * 2;
    for accept in [
        "multipart/related; type=\"application/octet-stream\"",
        "multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1",
    ] {
        let (status, content_type, body) = frames_of(accept);
        assert_eq!(status, 200, "{accept}: {}", String::from_utf8_lossy(&body));
        assert!(
            content_type.starts_with("multipart/related; type=\"application/octet-stream\""),
            "{content_type}"
        );
        let boundary = content_type.split("boundary=").nth(1).unwrap().to_string();
        let parts = split_multipart(&body, &boundary);
        assert_eq!(parts.len(), 2);
        for (part, frame) in parts.iter().zip([0usize, 2]) {
            assert!(
                part.0
                    .contains("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"),
                "{}",
                part.0
            );
            assert_eq!(
                part.1,
                dcmtk_pixels[frame * frame_bytes..(frame + 1) * frame_bytes],
                "frame {}",
                frame + 1
            );
        }
    }
    // Another compressed transfer syntax than the stored one is still refused.
    let (status, _, _) =
        frames_of("multipart/related; type=\"image/jpeg\"; transfer-syntax=1.2.840.10008.1.2.4.50");
    assert_eq!(status, 406);

    // The dicomweb-client package.
    let script = tmp.path().join("rendered.py");
    std::fs::write(&script, RENDERED_SCRIPT).unwrap();
    let out = Command::new("python3")
        .arg(&script)
        .arg(server.url("/dicomweb"))
        .arg(&native)
        .env("CT_STUDY", study_uid(&ct))
        .env("CT_SERIES", series_uid(&ct))
        .env("CT_INSTANCE", sop_uid(&ct, 2))
        .env("MF_STUDY", study_uid(&mf))
        .env("MF_SERIES", series_uid(&mf))
        .env("MF_INSTANCE", multi_frame_sop_uid(&mf))
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs dicomweb-client)");
    let text = output_text(&out);
    assert!(
        out.status.success() && text.contains("rendered: all checks passed"),
        "{text}\nserver log:\n{}",
        server.log()
    );
}

const RENDERED_SCRIPT: &str = r#"
import os, struct, sys
import pydicom
from dicomweb_client.api import DICOMwebClient

root, native_path = sys.argv[1:3]
client = DICOMwebClient(url=root)
e = os.environ

def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)

def png_size(data):
    check(data[:8] == b"\x89PNG\r\n\x1a\n", "a PNG")
    return struct.unpack(">II", data[16:24])

png = client.retrieve_instance_rendered(
    e["CT_STUDY"], e["CT_SERIES"], e["CT_INSTANCE"],
    media_types=("image/png",), params={"viewport": "96,96"})
check(png_size(png) == (96, 64), "instance rendered as PNG in the viewport: %r" % (png_size(png),))
jpeg = client.retrieve_instance_rendered(e["CT_STUDY"], e["CT_SERIES"], e["CT_INSTANCE"])
check(jpeg[:2] == b"\xff\xd8", "instance rendered as JPEG by default")
jpeg = client.retrieve_series_rendered(
    e["CT_STUDY"], e["CT_SERIES"], params={"window": "40,400,linear", "quality": "80"})
check(jpeg[:2] == b"\xff\xd8", "series rendered")
png = client.retrieve_instance_frames_rendered(
    e["MF_STUDY"], e["MF_SERIES"], e["MF_INSTANCE"], frame_numbers=[2],
    media_types=("image/png",))
check(png_size(png) == (16, 16), "frame rendered")

# Frames of the JPEG-LS instance, asked for uncompressed.
frames = client.retrieve_instance_frames(
    e["MF_STUDY"], e["MF_SERIES"], e["MF_INSTANCE"], frame_numbers=[2, 4],
    media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),))
original = pydicom.dcmread(native_path).PixelData
size = 16 * 16 * 2
check(len(frames) == 2, "two frames")
check(frames[0] == original[size:2 * size], "frame 2 decoded")
check(frames[1] == original[3 * size:4 * size], "frame 4 decoded")
print("rendered: all checks passed")
"#;

/// A 40 × 24 BMP: red left half, blue right half.
fn red_blue_bmp() -> Vec<u8> {
    let (w, h) = (40u32, 24u32);
    let mut rows = Vec::new();
    for _ in 0..h {
        let mut row = Vec::new();
        for x in 0..w {
            // BGR
            row.extend_from_slice(if x < 20 { &[0, 0, 255] } else { &[255, 0, 0] });
        }
        while row.len() % 4 != 0 {
            row.push(0);
        }
        rows.push(row);
    }
    let data: Vec<u8> = rows.into_iter().rev().flatten().collect();
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&(54 + data.len() as u32).to_le_bytes());
    bmp.extend_from_slice(&[0; 4]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&(w as i32).to_le_bytes());
    bmp.extend_from_slice(&(h as i32).to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&0u32.to_le_bytes());
    bmp.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bmp.extend_from_slice(&2835i32.to_le_bytes());
    bmp.extend_from_slice(&2835i32.to_le_bytes());
    bmp.extend_from_slice(&[0; 8]);
    bmp.extend_from_slice(&data);
    bmp
}

/// Colour: JPEG 2000 (lossless) and JPEG baseline (YBR_FULL_422) secondary captures drawn in
/// their colours and decoded to RGB on request; an instance without pixel data is not drawn,
/// and a series' picture is of one of its images.
#[test]
fn colour_pictures_and_objects_without_pixels() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let root = "1.2.826.0.1.3680043.2.1143.9321";
    let (study, series) = (format!("{root}.1"), format!("{root}.2"));
    let bmp = tmp.path().join("colour.bmp");
    std::fs::write(&bmp, red_blue_bmp()).unwrap();
    let dir = tmp.path().join("send");
    std::fs::create_dir_all(&dir).unwrap();
    let capture = |sop: &str, name: &str| {
        let path = tmp.path().join(name);
        run_ok(
            Command::new(dcmtk("img2dcm"))
                .args(["-i", "BMP"])
                .arg(&bmp)
                .arg(&path)
                .args(["-k", "PatientID=PID-DW-C", "-k"])
                .arg(format!("StudyInstanceUID={study}"))
                .arg("-k")
                .arg(format!("SeriesInstanceUID={series}"))
                .arg("-k")
                .arg(format!("SOPInstanceUID={root}.{sop}")),
        );
        path
    };
    let native = capture("3", "native.dcm");
    run_ok(
        Command::new("gdcmconv")
            .arg("--j2k")
            .arg(&native)
            .arg(dir.join("j2k.dcm")),
    );
    let baseline = capture("5", "baseline.dcm");
    run_ok(
        // +un: keep the SOP Instance UID (lossy compression would make a new one).
        Command::new(dcmtk("dcmcjpeg"))
            .args(["+eb", "+un"])
            .arg(&baseline)
            .arg(dir.join("baseline.dcm")),
    );
    let no_pixels = dir.join("nopixels.dcm");
    std::fs::copy(&native, &no_pixels).unwrap();
    run_ok(
        Command::new(dcmtk("dcmodify"))
            .args([
                "-nb",
                "-ea",
                "(7fe0,0010)",
                "-ea",
                "(0028,0010)",
                "-ea",
                "(0028,0011)",
            ])
            .arg("-m")
            .arg(format!("(0008,0018)={root}.4"))
            .arg(&no_pixels),
    );
    assert!(server.dcmsend("kp-dw", "kp-admin", &dir).status.success());
    let instance =
        |sop: &str| format!("/dicomweb/studies/{study}/series/{series}/instances/{root}.{sop}");

    // JPEG 2000: exactly red and blue; decoded to the original RGB samples.
    let img = picture(
        get(&server, &format!("{}/rendered", instance("3")), "image/png"),
        "image/png",
    )
    .to_rgb8();
    assert_eq!(img.dimensions(), (40, 24));
    assert_eq!(img.get_pixel(5, 5).0, [255, 0, 0]);
    assert_eq!(img.get_pixel(35, 20).0, [0, 0, 255]);
    let frames_of = |sop: &str| {
        let r = get(
            &server,
            &format!("{}/frames/1", instance(sop)),
            "multipart/related; type=\"application/octet-stream\"",
        );
        assert_eq!(r.status(), 200, "{sop}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
        let boundary = content_type.split("boundary=").nth(1).unwrap().to_string();
        let parts = split_multipart(&r.bytes().unwrap(), &boundary);
        assert_eq!(parts.len(), 1);
        assert!(parts[0].0.contains("transfer-syntax=1.2.840.10008.1.2.1"));
        parts.into_iter().next().unwrap().1
    };
    assert_eq!(frames_of("3"), native_pixel_data(&read_file(&native)));
    // JPEG baseline: about red and blue away from the edge between them, as RGB.
    let img = picture(
        get(
            &server,
            &format!("{}/rendered", instance("5")),
            "image/jpeg",
        ),
        "image/jpeg",
    )
    .to_rgb8();
    let [r, g, b] = img.get_pixel(5, 5).0;
    assert!(r > 200 && g < 60 && b < 60, "{r} {g} {b}");
    let decoded = frames_of("5");
    assert_eq!(decoded.len(), 40 * 24 * 3);
    let at = |x: usize, y: usize| &decoded[(y * 40 + x) * 3..(y * 40 + x) * 3 + 3];
    assert!(at(5, 5)[0] > 200 && at(5, 5)[2] < 60, "{:?}", at(5, 5));
    assert!(at(35, 5)[2] > 200 && at(35, 5)[0] < 60, "{:?}", at(35, 5));

    // No pixel data: nothing to draw (406); the series is drawn from one of its images.
    let r = get(
        &server,
        &format!("{}/rendered", instance("4")),
        "image/jpeg",
    );
    assert_eq!(r.status(), 406);
    assert_eq!(
        get(&server, &format!("{}/thumbnail", instance("4")), "*/*").status(),
        406
    );
    let series_path = format!("/dicomweb/studies/{study}/series/{series}");
    picture(
        get(&server, &format!("{series_path}/rendered"), "*/*"),
        "image/jpeg",
    );
    picture(
        get(
            &server,
            &format!("/dicomweb/studies/{study}/thumbnail?viewport=20,20"),
            "*/*",
        ),
        "image/png",
    );
}
