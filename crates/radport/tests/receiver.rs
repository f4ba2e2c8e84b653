//! End to end: the DICOM receiver against DCMTK's own senders, the catalog through the HTTP API.

use std::process::Command;

use crate::common::*;
use radport_testkit::{series_uid, sop_uid, write_series, SeriesSpec};

fn spec(seed: &str, count: usize) -> SeriesSpec {
    SeriesSpec {
        count,
        uid_seed: seed.into(),
        ..Default::default()
    }
}

#[test]
fn dcmsend_verbatim_routes_to_dataset_and_project_and_admin() {
    let server = Server::start(&[]);
    server.create_project("brain");
    let tmp = tempfile::tempdir().unwrap();
    let first = spec("11", 12);
    write_series(&tmp.path().join("a/nested"), &first).unwrap();

    let out = server.dcmsend("kp-study1", "kp-Brain", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));

    for project in ["brain", "admin"] {
        let list = server.series(project, "");
        assert_eq!(list["total"], 1, "{project}: {list}");
        let item = &list["items"][0];
        assert_eq!(item["series_instance_uid"], series_uid(&first));
        assert_eq!(item["instance_count"], 12);
        assert_eq!(item["modality"], "CT");
        assert_eq!(item["patient_id"], "PAT-0001");
        assert_eq!(item["datasets"], serde_json::json!(["study1"]));
    }
    let datasets = server.get_json("/api/projects/brain/datasets");
    assert_eq!(datasets["items"][0]["name"], "study1");
    assert_eq!(datasets["items"][0]["series_count"], 1);

    // The same dataset again: appended, not replaced.
    let tmp2 = tempfile::tempdir().unwrap();
    let second = spec("12", 5);
    write_series(tmp2.path(), &second).unwrap();
    let out = server.dcmsend("kp-study1", "kp-brain", tmp2.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let datasets = server.get_json("/api/projects/brain/datasets");
    assert_eq!(datasets["items"].as_array().unwrap().len(), 1);
    assert_eq!(datasets["items"][0]["series_count"], 2);
    assert_eq!(server.instance_total("brain"), 17);
    let filtered = server.series("brain", "dataset=study1");
    assert_eq!(filtered["total"], 2);

    // Another project does not see it.
    server.create_project("other");
    assert_eq!(server.series("other", "")["total"], 0);

    // Series detail and the stored file, byte for byte after the file meta group.
    let detail = server.get_json(&format!("/api/series/{}", series_uid(&first)));
    let instances = detail["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 12);
    assert_eq!(instances[0]["instance_number"], 1);
    assert_eq!(instances[0]["transfer_syntax_uid"], EXPLICIT_VR_LE);
    assert_eq!(detail["metadata"]["00100020"]["Value"][0], "PAT-0001");
    let sop = sop_uid(&first, 0);
    let stored = server.get_bytes(&format!(
        "/api/series/{}/instances/{sop}",
        series_uid(&first)
    ));
    let original = read_file(&tmp.path().join("a/nested/slice_0001.dcm"));
    assert_eq!(dataset_bytes(&stored), dataset_bytes(&original));
    // Its size and checksum, as listed, are those of the served bytes.
    let listed = instances
        .iter()
        .find(|i| i["sop_instance_uid"] == sop.as_str())
        .expect("the instance is listed");
    assert_eq!(listed["size"], stored.len() as u64);
    assert_eq!(
        listed["checksum"],
        format!("xxh128:{:032x}", xxhash_rust::xxh3::xxh3_128(&stored))
    );
    // DCMTK accepts what we stored as a valid file.
    let stored_path = tmp.path().join("stored.dcm");
    std::fs::write(&stored_path, &stored).unwrap();
    run_ok(Command::new(dcmtk("dcmftest")).arg(&stored_path));
    // No PHI in the info-level log.
    let log = server.log();
    assert!(log.contains("association accepted"), "{log}");
    assert!(
        !log.contains("Test^Patient") && !log.contains("PAT-0001"),
        "{log}"
    );
}

#[test]
fn names_beyond_an_ae_title_are_flagged_where_they_are_chosen() {
    let server = Server::start(&[]);
    // The CLI creates the project and says that DICOM senders cannot reach it.
    let out = server.cli(&["project", "create", "a-very-long-project-name"]);
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("DICOM senders cannot reach project a-very-long-project-name")
            && text.contains("would arrive as kp-a-very-long-p"),
        "{text}"
    );
    let out = server.cli(&["project", "create", "short-name-13"]);
    assert!(
        !output_text(&out).contains("cannot reach"),
        "{}",
        output_text(&out)
    );
    let projects = server.get_json("/api/projects");
    let flag = |name: &str| {
        projects["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["dicom_addressable"].clone())
    };
    assert_eq!(
        flag("a-very-long-project-name"),
        Some(serde_json::json!(false))
    );
    assert_eq!(flag("short-name-13"), Some(serde_json::json!(true)));
    assert_eq!(flag("admin"), Some(serde_json::json!(true)));
    assert_eq!(
        server.get_json("/api/health")["deployment"]["ae_title_name_limit"],
        13
    );
    // What the note is about, with the real dcmsend: the called AE title arrives cut to 16
    // characters and names no project.
    let tmp = tempfile::tempdir().unwrap();
    write_series(tmp.path(), &spec("23", 1)).unwrap();
    let out = server.dcmsend("kp-x", "kp-a-very-long-project-name", tmp.path());
    assert!(!out.status.success(), "{}", output_text(&out));
    let refused = server
        .log()
        .lines()
        .find(|l| l.contains("called AE title names no project"))
        .map(String::from)
        .unwrap_or_default();
    assert!(refused.contains("a-very-long-p"), "{refused}");
    assert!(!refused.contains("a-very-long-pr"), "{refused}");
    // Thirteen characters get through.
    let out = server.dcmsend("kp-x", "kp-short-name-13", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(server.instance_total("short-name-13"), 1);
}

#[test]
fn unknown_project_is_refused_with_reason_7() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    write_series(tmp.path(), &spec("21", 2)).unwrap();
    // The exact command fails; its debug output names the reason.
    let out = server.dcmsend("kp-x", "kp-nosuchproject", tmp.path());
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("Association Rejected"));
    let out = Command::new(dcmtk("echoscu"))
        .args([
            "-v",
            "-aet",
            "kp-x",
            "-aec",
            "kp-nosuchproject",
            "127.0.0.1",
        ])
        .arg(server.dicom_port.to_string())
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("Rejected Permanent, Source: Service User")
            && text.contains("Called AE Title Not Recognized"),
        "reason 7, permanent, service user: {text}"
    );
    let log = server.log();
    assert!(
        log.contains("nosuchproject") && log.contains("reason 7"),
        "the log names the refused project: {log}"
    );
    assert_eq!(server.instance_total("admin"), 0);
    // The server goes on serving.
    let out = server.dcmsend("kp-x", "kp-admin", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(server.instance_total("admin"), 2);
}

#[test]
fn echoscu_is_answered() {
    let server = Server::start(&[]);
    let out = Command::new(dcmtk("echoscu"))
        .args(["-v", "-aet", "kp-echo", "-aec", "kp-admin", "127.0.0.1"])
        .arg(server.dicom_port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(output_text(&out).contains("Received Echo Response (Success)"));
}

#[test]
fn compressed_transfer_syntaxes_are_stored_as_sent() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    write_series(&source, &spec("31", 1)).unwrap();
    let original = source.join("slice_0001.dcm");
    // (tool, args, expected transfer syntax, storescu proposal flag or dcmsend)
    let variants: &[(&str, &[&str], &str, Option<&str>)] = &[
        ("dcmcjpeg", &["+e1"], "1.2.840.10008.1.2.4.70", None),
        ("dcmcjpeg", &["+ee"], "1.2.840.10008.1.2.4.51", None),
        ("dcmcrle", &[], "1.2.840.10008.1.2.5", None),
        ("dcmcjpls", &[], "1.2.840.10008.1.2.4.80", None),
        ("dcmcjpls", &["+en"], "1.2.840.10008.1.2.4.81", None),
        ("dcmconv", &["+td"], "1.2.840.10008.1.2.1.99", None),
        ("dcmconv", &["+ti"], "1.2.840.10008.1.2", Some("-xi")),
        ("dcmconv", &["+tb"], "1.2.840.10008.1.2.2", Some("-xb")),
    ];
    for (i, (tool, args, ts, storescu)) in variants.iter().enumerate() {
        // Each variant is its own instance: new SOP Instance UID via dcmodify.
        let dir = tmp.path().join(format!("v{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("image.dcm");
        run_ok(
            Command::new(dcmtk(tool))
                .args(*args)
                .arg(&original)
                .arg(&file),
        );
        let new_sop = format!("{}.{}", sop_uid(&spec("31", 1), 0), 100 + i);
        run_ok(
            Command::new(dcmtk("dcmodify"))
                .arg("-nb")
                .arg("-m")
                .arg(format!("(0008,0018)={new_sop}"))
                .arg(&file),
        );
        let out = match storescu {
            None => server.dcmsend("kp-compressed", "kp-admin", &dir),
            // dcmsend proposes Explicit VR LE first for uncompressed files and converts on the
            // fly; storescu can be told to propose only the file's own syntax.
            Some(flag) => Command::new(dcmtk("storescu"))
                .args([
                    *flag,
                    "-aet",
                    "kp-compressed",
                    "-aec",
                    "kp-admin",
                    "127.0.0.1",
                ])
                .arg(server.dicom_port.to_string())
                .arg(&file)
                .output()
                .unwrap(),
        };
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}",
            output_text(&out)
        );
        let series = series_uid(&spec("31", 1));
        let detail = server.get_json(&format!("/api/series/{series}"));
        let instance = detail["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["sop_instance_uid"] == new_sop.as_str())
            .unwrap_or_else(|| panic!("{tool} {args:?}: instance missing in {detail}"))
            .clone();
        assert_eq!(instance["transfer_syntax_uid"], *ts, "{tool} {args:?}");
        let stored = server.get_bytes(&format!("/api/series/{series}/instances/{new_sop}"));
        let sent = read_file(&file);
        assert_eq!(
            dataset_bytes(&stored),
            dataset_bytes(&sent),
            "{tool} {args:?}: the sender's bytes are stored as they came"
        );
    }
}

#[test]
fn four_concurrent_senders() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..4 {
        write_series(
            &tmp.path().join(format!("s{i}")),
            &spec(&format!("4{i}"), 25),
        )
        .unwrap();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let dir = tmp.path().join(format!("s{i}"));
                let server = &server;
                scope.spawn(move || server.dcmsend(&format!("kp-par{i}"), "kp-admin", &dir))
            })
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            assert!(out.status.success(), "{}", output_text(&out));
        }
    });
    let list = server.series("admin", "");
    assert_eq!(list["total"], 4);
    assert_eq!(server.instance_total("admin"), 100);
    assert_eq!(server.archived_instances().len(), 100);
    let datasets = server.get_json("/api/projects/admin/datasets");
    assert_eq!(datasets["items"].as_array().unwrap().len(), 4);
}

/// On a runtime with one worker (tokio's default on a one-processor machine) the receiver goes
/// on storing past its checkpoints, whose catalog sync holds the write lock that a group's
/// rows wait for while the group's leader runs on that worker. It stopped for good at the
/// first checkpoint, a second in, until the leader waited for the rows through
/// `block_in_place`.
#[test]
fn one_runtime_worker_stores_on_past_checkpoints() {
    let server = Server::start_with_env(&[], &[("TOKIO_WORKER_THREADS", "1")]);
    let tmp = tempfile::tempdir().unwrap();
    // 300 × 256 KiB: past the 64 MiB after which a checkpoint is taken, whatever the time.
    let series = SeriesSpec {
        rows: 512,
        columns: 256,
        ..spec("1w", 300)
    };
    write_series(tmp.path(), &series).unwrap();
    // A receiver that stopped answers nothing: dcmsend gives up rather than the test hanging.
    let out = server.dcmsend_with(
        "kp-oneworker",
        "kp-admin",
        tmp.path(),
        &["--dimse-timeout", "30"],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(server.instance_total("admin"), 300);
}

fn dataset_of(spec: &SeriesSpec, index: usize) -> Vec<u8> {
    let obj = radport_testkit::ct_slice(spec, index);
    let mut out = Vec::new();
    obj.write_dataset_with_ts(
        &mut out,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .unwrap();
    out
}

#[test]
fn sender_vanishing_mid_instance_leaves_nothing_partial() {
    let server = Server::start(&[]);
    let big = SeriesSpec {
        count: 2,
        rows: 2048,
        columns: 2048,
        uid_seed: "51".into(),
        ..Default::default()
    };
    let first = dataset_of(&big, 0);
    let second = dataset_of(&big, 1);
    assert!(second.len() > 8_000_000);

    let mut client = RawClient::connect(server.dicom_port, "kp-killed", "kp-admin").unwrap();
    assert_eq!(client.store(&sop_uid(&big, 0), &first), 0x0000);
    client.store_partial(&sop_uid(&big, 1), &second, second.len() / 2);
    client.vanish();

    // The acknowledged instance stays; the half one is nowhere, once the receiver has seen the
    // connection go (it logs the association's end after discarding what was incomplete).
    server.wait_for_log(30, "association ended", 1);
    let detail = server.get_json(&format!("/api/series/{}", series_uid(&big)));
    let instances = detail["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{detail}");
    assert_eq!(instances[0]["sop_instance_uid"], sop_uid(&big, 0).as_str());
    let files = server.archived_files();
    assert_eq!(files.len(), 1, "only the acknowledged file: {files:?}");

    // Same with an explicit A-ABORT.
    let mut client = RawClient::connect(server.dicom_port, "kp-killed", "kp-admin").unwrap();
    client.store_partial(&sop_uid(&big, 1), &second, second.len() / 3);
    client.abort();
    server.wait_for_log(30, "association ended", 2);
    assert_eq!(server.archived_files().len(), 1);

    // And the server still serves.
    let mut client = RawClient::connect(server.dicom_port, "kp-killed", "kp-admin").unwrap();
    assert_eq!(client.store(&sop_uid(&big, 1), &second), 0x0000);
    client.release();
    assert_eq!(server.instance_total("admin"), 2);
}

#[test]
fn dcmsend_killed_mid_transfer_leaves_only_complete_instances() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    // 24 instances of 8 MB: long enough a transfer to be killed in its middle.
    let big = SeriesSpec {
        count: 24,
        rows: 2048,
        columns: 2048,
        uid_seed: "52".into(),
        ..Default::default()
    };
    write_series(tmp.path(), &big).unwrap();
    let mut child = Command::new(dcmtk("dcmsend"))
        .args(["127.0.0.1", &server.dicom_port.to_string()])
        .args(["--aetitle", "kp-killed", "--call", "kp-admin"])
        .args(["--scan-directories", "--scan-pattern", "*.dcm", "--recurse"])
        .arg(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the first instance is stored: the transfer has begun and is not over.
    server.wait_for(60, "the first instance of the killed sender", || {
        (server.instance_total("admin") >= 1).then_some(())
    });
    let _ = child.kill();
    let _ = child.wait();
    // The receiver sees the connection break (not a release), and that was mid-transfer.
    let outcome = server.wait_for(10, "the end of the killed association", || {
        server
            .log()
            .lines()
            .find(|l| l.contains("association ended"))
            .map(String::from)
    });
    assert!(!outcome.contains("released"), "{outcome}");
    // Whatever arrived is complete: every catalogued instance has its whole file.
    let stored = server.instance_total("admin");
    assert!(
        (1..24).contains(&stored),
        "the kill did not land mid-transfer: {stored} of 24 stored"
    );
    assert_eq!(server.archived_files().len() as i64, stored);
    if stored > 0 {
        let detail = server.get_json(&format!("/api/series/{}", series_uid(&big)));
        for instance in detail["instances"].as_array().unwrap() {
            let sop = instance["sop_instance_uid"].as_str().unwrap();
            let bytes =
                server.get_bytes(&format!("/api/series/{}/instances/{sop}", series_uid(&big)));
            assert_eq!(bytes.len() as i64, instance["size"].as_i64().unwrap());
        }
    }
    // The rest can be sent afterwards.
    let out = server.dcmsend("kp-killed", "kp-admin", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(server.instance_total("admin"), 24);
}

#[test]
fn malformed_data_set_fails_but_the_association_goes_on() {
    let server = Server::start(&[]);
    let good = spec("61", 1);
    let mut client = RawClient::connect(server.dicom_port, "kp-bad", "kp-admin").unwrap();
    // Garbage bytes where a data set should be.
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let status = client.store("1.2.3.4.5.6.7.8.9", &garbage);
    assert_eq!(status & 0xF000, 0xC000, "cannot understand: 0x{status:04X}");
    // A data set without a Series Instance UID.
    let mut obj = radport_testkit::ct_slice(&spec("62", 1), 0);
    obj.remove_element(dicom_dictionary_std::tags::SERIES_INSTANCE_UID);
    let mut no_series = Vec::new();
    obj.write_dataset_with_ts(
        &mut no_series,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .unwrap();
    let status = client.store(&sop_uid(&spec("62", 1), 0), &no_series);
    assert_eq!(status, 0xC000);
    // Same association, a good instance.
    assert_eq!(
        client.store(&sop_uid(&good, 0), &dataset_of(&good, 0)),
        0x0000
    );
    client.release();
    assert_eq!(server.instance_total("admin"), 1);
    assert_eq!(
        server.archived_instances().len(),
        1,
        "failed instances leave no file"
    );
}

fn modified_copy(dir: &std::path::Path, from: &std::path::Path, description: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join("slice_0001.dcm");
    std::fs::copy(from, &to).unwrap();
    run_ok(
        Command::new(dcmtk("dcmodify"))
            .arg("-nb")
            .arg("-m")
            .arg(format!("(0008,103e)={description}"))
            .arg(&to),
    );
}

fn series_description_of(server: &Server, series: &str) -> String {
    server.get_json(&format!("/api/series/{series}"))["series"]["series_description"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn duplicate_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("71", 1);
    let original_dir = tmp.path().join("orig");
    write_series(&original_dir, &s).unwrap();
    let changed_dir = tmp.path().join("changed");
    modified_copy(
        &changed_dir,
        &original_dir.join("slice_0001.dcm"),
        "Changed",
    );
    let series = series_uid(&s);

    // keep-first (default): the second copy is not stored.
    let server = Server::start(&[]);
    assert!(server
        .dcmsend("kp-d", "kp-admin", &original_dir)
        .status
        .success());
    assert!(server
        .dcmsend("kp-d", "kp-admin", &changed_dir)
        .status
        .success());
    assert_eq!(series_description_of(&server, &series), "Synthetic CT");
    server.archived_instances_settled(1);
    // The same instance into another dataset and project: membership, not a copy.
    server.create_project("p2");
    assert!(server
        .dcmsend("kp-other", "kp-p2", &original_dir)
        .status
        .success());
    server.archived_instances_settled(1);
    assert_eq!(server.series("p2", "")["total"], 1);
    let admin = server.series("admin", "");
    // Datasets belong to projects; admin sees them all.
    assert_eq!(
        admin["items"][0]["datasets"],
        serde_json::json!(["d", "other"])
    );
    assert_eq!(
        server.series("p2", "")["items"][0]["datasets"],
        serde_json::json!(["other"])
    );
    assert_eq!(admin["items"][0]["instance_count"], 1);
    drop(server);

    // overwrite: the last copy wins, the old file is gone.
    let server = Server::start(&["--duplicate-policy", "overwrite"]);
    assert!(server
        .dcmsend("kp-d", "kp-admin", &original_dir)
        .status
        .success());
    let first_files = server.archived_instances_settled(1);
    assert!(server
        .dcmsend("kp-d", "kp-admin", &changed_dir)
        .status
        .success());
    assert_eq!(series_description_of(&server, &series), "Changed");
    let files = server.archived_instances_settled(1);
    assert_ne!(files, first_files);
    // Same bytes again under overwrite: still one file.
    assert!(server
        .dcmsend("kp-d", "kp-admin", &changed_dir)
        .status
        .success());
    server.archived_instances_settled(1);
    drop(server);

    // overwrite-if-different: identical bytes keep the first file, different bytes replace it.
    let server = Server::start(&["--duplicate-policy", "overwrite-if-different"]);
    assert!(server
        .dcmsend("kp-d", "kp-admin", &original_dir)
        .status
        .success());
    let first_files = server.archived_instances_settled(1);
    assert!(server
        .dcmsend("kp-d", "kp-admin", &original_dir)
        .status
        .success());
    assert_eq!(
        server.archived_instances_settled(1),
        first_files,
        "identical: kept"
    );
    assert!(server
        .dcmsend("kp-d", "kp-admin", &changed_dir)
        .status
        .success());
    assert_eq!(series_description_of(&server, &series), "Changed");
    let files = server.archived_instances_settled(1);
    assert_ne!(files, first_files, "different: replaced");
}

#[test]
fn restart_keeps_everything() {
    let mut server = Server::start(&[]);
    server.create_project("keep");
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("81", 7);
    write_series(tmp.path(), &s).unwrap();
    assert!(server
        .dcmsend("kp-ds", "kp-keep", tmp.path())
        .status
        .success());
    let before = server.series("keep", "");
    server.restart();
    let after = server.series("keep", "");
    assert_eq!(before, after);
    assert_eq!(server.instance_total("admin"), 7);
    let sop = sop_uid(&s, 3);
    let bytes = server.get_bytes(&format!("/api/series/{}/instances/{sop}", series_uid(&s)));
    assert_eq!(
        dataset_bytes(&bytes),
        dataset_bytes(&read_file(&tmp.path().join("slice_0004.dcm")))
    );
}

#[test]
fn character_sets_are_decoded_to_utf8() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let latin1 = SeriesSpec {
        count: 1,
        uid_seed: "91".into(),
        charset: Some("ISO_IR 100".into()),
        patient_name: "Müller^Jürgen".into(),
        patient_id: "LATIN1".into(),
        ..Default::default()
    };
    write_series(&tmp.path().join("latin1"), &latin1).unwrap();
    let utf8 = SeriesSpec {
        count: 1,
        uid_seed: "92".into(),
        charset: Some("ISO_IR 192".into()),
        patient_name: "Wang^XiaoDong=王^小東".into(),
        patient_id: "UTF8".into(),
        ..Default::default()
    };
    write_series(&tmp.path().join("utf8"), &utf8).unwrap();
    // ISO 2022 with code extensions, the example of PS3.5 H.3.1 (JIS X 0208 behind escapes).
    let japanese = SeriesSpec {
        count: 1,
        uid_seed: "93".into(),
        charset: Some("\\ISO 2022 IR 87".into()),
        patient_name:
            "Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B"
                .into(),
        patient_id: "JIS".into(),
        ..Default::default()
    };
    write_series(&tmp.path().join("jis"), &japanese).unwrap();
    assert!(server
        .dcmsend("kp-cs", "kp-admin", tmp.path())
        .status
        .success());
    let by_patient =
        |id: &str| server.series("admin", &format!("patient_id={id}"))["items"][0].clone();
    assert_eq!(by_patient("LATIN1")["patient_name"], "Müller^Jürgen");
    assert_eq!(by_patient("UTF8")["patient_name"], "Wang^XiaoDong=王^小東");
    assert_eq!(
        by_patient("JIS")["patient_name"],
        "Yamada^Tarou=山田^太郎=やまだ^たろう"
    );
    // The stored Latin-1 file still holds Latin-1 bytes (never rewritten).
    let stored = server.get_bytes(&format!(
        "/api/series/{}/instances/{}",
        series_uid(&latin1),
        sop_uid(&latin1, 0)
    ));
    assert!(
        stored.windows(3).any(|w| w == b"M\xfcl"),
        "ü is one Latin-1 byte"
    );
}

/// A small tmpfs mounted for one test, unmounted on drop. Needs root (CI runs as root).
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it and needs root: {}",
            output_text(&out)
        );
        SmallDisk { path, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn full_disk_answers_a700_and_keeps_what_was_stored() {
    // 16 MiB of it is the ingest journal (made at the start): about 11 MiB is left.
    full_disk_answers_a700(28, "journal");
}

#[test]
fn full_disk_answers_a700_and_keeps_what_was_stored_into_packs() {
    full_disk_answers_a700(12, "packs");
}

/// Fills a disk of `mib` MiB with `--ingest-durability DURABILITY`: the instances that no
/// longer fit are answered 0xA700, those acknowledged before are all there, whole.
fn full_disk_answers_a700(mib: u32, durability: &str) {
    let disk = SmallDisk::mount(mib);
    let tmp = tempfile::tempdir().unwrap();
    let catalog = format!("sqlite://{}", tmp.path().join("catalog.db").display());
    let data_dir = disk.path.join("data");
    let server = Server::start(&[
        "--catalog-url",
        &catalog,
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--ingest-durability",
        durability,
    ]);
    let big = SeriesSpec {
        count: 8,
        rows: 1024,
        columns: 1024,
        uid_seed: "101".into(),
        ..Default::default()
    };
    // Slices of 2 MiB (stored straight), then of 128 KiB (through the journal).
    let small = SeriesSpec {
        count: 40,
        rows: 256,
        columns: 256,
        uid_seed: "102".into(),
        ..Default::default()
    };
    let mut client = RawClient::connect(server.dicom_port, "kp-full", "kp-admin").unwrap();
    let mut statuses = Vec::new();
    for i in 0..big.count {
        statuses.push(client.store(&sop_uid(&big, i), &dataset_of(&big, i)));
    }
    let mut small_statuses = Vec::new();
    for i in 0..small.count {
        small_statuses.push(client.store(&sop_uid(&small, i), &dataset_of(&small, i)));
    }
    client.release();
    // What the large ones left is filled, then refused the same way.
    assert!(
        small_statuses.contains(&0xA700) && small_statuses.iter().all(|s| *s == 0 || *s == 0xA700),
        "the {durability} path answers a full disk with 0xA700 too: {small_statuses:x?}"
    );
    let small_stored = small_statuses.iter().filter(|s| **s == 0).count();
    let stored = statuses.iter().filter(|s| **s == 0).count();
    assert!(stored >= 3, "some fit: {statuses:x?}");
    assert!(
        statuses.contains(&0xA700),
        "out of space is 0xA700: {statuses:x?}\n{}",
        server.log()
    );
    assert!(
        statuses.iter().all(|s| *s == 0 || *s == 0xA700),
        "{statuses:x?}"
    );
    // Everything acknowledged is there, whole.
    assert_eq!(
        server.instance_total("admin"),
        (stored + small_stored) as i64
    );
    for spec in [&big, &small] {
        let detail = server.get_json(&format!("/api/series/{}", series_uid(spec)));
        for instance in detail["instances"].as_array().unwrap() {
            let sop = instance["sop_instance_uid"].as_str().unwrap();
            let bytes =
                server.get_bytes(&format!("/api/series/{}/instances/{sop}", series_uid(spec)));
            assert_eq!(bytes.len() as i64, instance["size"].as_i64().unwrap());
        }
    }
}

#[test]
fn associations_over_the_limit_are_refused_transiently() {
    let server = Server::start(&["--max-associations", "1"]);
    let holder = RawClient::connect(server.dicom_port, "kp-hold", "kp-admin").unwrap();
    let out = Command::new(dcmtk("echoscu"))
        .args(["-v", "-aet", "kp-second", "-aec", "kp-admin", "127.0.0.1"])
        .arg(server.dicom_port.to_string())
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("Rejected Transient"), "{text}");
    assert!(text.contains("Local Limit Exceeded"), "{text}");
    // The slot is free once the association's end is logged (the slot goes first).
    let ended = server.log_count("association ended");
    holder.release();
    server.wait_for_log(30, "association ended", ended + 1);
    let out = Command::new(dcmtk("echoscu"))
        .args(["-aet", "kp-second", "-aec", "kp-admin", "127.0.0.1"])
        .arg(server.dicom_port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn every_known_transfer_syntax_and_private_sop_classes_are_accepted() {
    let server = Server::start(&[]);
    let s = spec("111", 1);
    // Encapsulated syntaxes encode the data set itself as Explicit VR Little Endian; the
    // receiver stores the bytes and reads the attributes before Pixel Data, so any payload
    // behind them will do for this test.
    let cases: &[(&str, &str)] = &[
        (CT_IMAGE_STORAGE, "1.2.840.10008.1.2.4.90"), // JPEG 2000 lossless
        (CT_IMAGE_STORAGE, "1.2.840.10008.1.2.4.91"), // JPEG 2000
        (CT_IMAGE_STORAGE, "1.2.840.10008.1.2.4.201"), // HTJ2K lossless
        (CT_IMAGE_STORAGE, "1.2.840.10008.1.2.4.203"), // HTJ2K
        (
            "1.2.840.10008.5.1.4.1.1.77.1.4.1",
            "1.2.840.10008.1.2.4.100",
        ), // MPEG-2
        (
            "1.2.840.10008.5.1.4.1.1.77.1.4.1",
            "1.2.840.10008.1.2.4.102",
        ), // MPEG-4 AVC
        (
            "1.2.840.10008.5.1.4.1.1.77.1.4.1",
            "1.2.840.10008.1.2.4.107",
        ), // HEVC
        (CT_IMAGE_STORAGE, "1.2.840.10008.1.2.4.110"), // JPEG XL lossless
        ("1.3.6.1.4.1.99999.1.1", EXPLICIT_VR_LE),    // a private SOP class
    ];
    for (i, (sop_class, ts)) in cases.iter().enumerate() {
        let mut client =
            RawClient::connect_with(server.dicom_port, "kp-ts", "kp-admin", sop_class, ts)
                .unwrap_or_else(|e| panic!("{sop_class} / {ts}: {e}"));
        let sop = format!("{}.{}", sop_uid(&s, 0), 200 + i);
        let mut obj = radport_testkit::ct_slice(&s, 0);
        obj.put(dicom_core::DataElement::new(
            dicom_dictionary_std::tags::SOP_INSTANCE_UID,
            dicom_core::VR::UI,
            dicom_core::PrimitiveValue::from(sop.as_str()),
        ));
        let mut dataset = Vec::new();
        obj.write_dataset_with_ts(
            &mut dataset,
            &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
        )
        .unwrap();
        assert_eq!(client.store(&sop, &dataset), 0x0000, "{sop_class} / {ts}");
        client.release();
        let detail = server.get_json(&format!("/api/series/{}", series_uid(&s)));
        let instance = detail["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["sop_instance_uid"] == sop.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{ts}: missing"));
        assert_eq!(instance["transfer_syntax_uid"], *ts);
        let stored = server.get_bytes(&format!("/api/series/{}/instances/{sop}", series_uid(&s)));
        assert_eq!(
            dataset_bytes(&stored),
            dataset.as_slice(),
            "{ts}: bytes as sent"
        );
    }
}

#[test]
fn pipelined_operations_are_answered_in_order() {
    // A sender that does not wait for each response (asynchronous operations window): every
    // request is answered, in order, with its own message ID.
    let server = Server::start(&[]);
    let s = spec("121", 6);
    let instances: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (sop_uid(&s, i), dataset_of(&s, i)))
        .collect();
    let mut client = RawClient::connect(server.dicom_port, "kp-async", "kp-admin").unwrap();
    let responses = client.store_pipelined(&instances);
    client.release();
    let ids: Vec<u16> = responses.iter().map(|r| r.0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    assert!(responses.iter().all(|r| r.1 == 0x0000), "{responses:x?}");
    assert_eq!(server.instance_total("admin"), 6);
}

#[test]
fn a_series_downloads_as_a_zip_of_its_stored_files() {
    let server = Server::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("131", 5);
    write_series(tmp.path(), &s).unwrap();
    assert!(server
        .dcmsend("kp-zip", "kp-admin", tmp.path())
        .status
        .success());
    let bytes = server.get_bytes(&format!("/api/series/{}/download", series_uid(&s)));
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    assert_eq!(zip.len(), 5);
    for i in 0..5 {
        let mut entry = zip.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        assert!(
            name.starts_with(&format!("{}/0000{}_", series_uid(&s), i + 1)),
            "{name}"
        );
        let mut stored = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut stored).unwrap();
        let original = read_file(&tmp.path().join(format!("slice_{:04}.dcm", i + 1)));
        assert_eq!(dataset_bytes(&stored), dataset_bytes(&original), "{name}");
    }
    let (status, _) = server.get_status("/api/series/1.2.3.999/download");
    assert_eq!(status, 404);
}

/// Received instances are written once and read seldom: once durable, their pages are dropped
/// from the page cache (`fincore`, from util-linux, counts a file's resident pages).
#[test]
fn stored_instances_leave_the_page_cache() {
    pages_leave_the_cache(&["--ingest-durability", "direct"]);
}

/// Behind the journal the files are dropped after the checkpoint that synced them.
#[test]
fn stored_instances_leave_the_page_cache_behind_the_journal() {
    pages_leave_the_cache(&["--ingest-durability", "journal"]);
}

/// Into packs (the default) instances are written with direct I/O: their pages never enter
/// the page cache at all.
#[test]
fn packed_instances_never_enter_the_page_cache() {
    let server = Server::start(&["--stable-after", "600"]);
    let tmp = tempfile::tempdir().unwrap();
    // 0.5 MB instances, as a CT's.
    let series = SeriesSpec {
        rows: 512,
        columns: 512,
        ..spec("32", 4)
    };
    let sent_files = write_series(tmp.path(), &series).unwrap();
    let out = server.dcmsend("kp-cache", "kp-admin", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let sent: u64 = sent_files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let mut packs = Vec::new();
    for entry in std::fs::read_dir(server.data_dir.join("archive/packs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pack") {
            packs.push(path);
        }
    }
    assert!(!packs.is_empty());
    let cached: u64 = packs.iter().map(|p| resident_bytes(p)).sum();
    // At most a few pages (the packs' headers), not the instances' 2 MB.
    assert!(cached <= 64 * 1024, "{cached} cached bytes of {sent} sent");
    assert!(sent > 2_000_000);
    // They are there, in the packs, and no file of their own.
    let held = server.archived_instances();
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.iter().all(|k| k.starts_with("packs/")), "{held:?}");
    assert!(server.archived_files().is_empty());
    // Read through the page cache (as above), they are cached: fincore counts them.
    let cached: u64 = packs.iter().map(|p| resident_bytes(p)).sum();
    assert!(cached >= sent, "fincore counts cached pages: {cached}");
}

/// A file's bytes in the page cache (`fincore`, from util-linux).
fn resident_bytes(file: &std::path::Path) -> u64 {
    let out = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(file)
        .output()
        .expect("fincore (util-linux) runs");
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a byte count")
}

fn pages_leave_the_cache(extra_args: &[&str]) {
    // The pipeline would read the files back (and cache them again) once the series is stable.
    let mut args = vec!["--stable-after", "600"];
    args.extend_from_slice(extra_args);
    let server = Server::start(&args);
    let tmp = tempfile::tempdir().unwrap();
    write_series(tmp.path(), &spec("31", 4)).unwrap();
    let out = server.dcmsend("kp-cache", "kp-admin", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    let files = server.archived_files();
    assert_eq!(files.len(), 4, "{files:?}");
    let resident = |file: &std::path::Path| resident_bytes(file);
    // Dropped in the background just after each instance was catalogued.
    for _ in 0..100 {
        if files.iter().all(|f| resident(f) == 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for f in &files {
        assert_eq!(resident(f), 0, "{} is still cached", f.display());
    }
    // A file read afterwards is cached again: fincore sees the pages it counts.
    std::fs::read(&files[0]).unwrap();
    assert!(resident(&files[0]) > 0, "fincore counts cached pages");
}

/// The probes of load balancers: live while the process answers; ready only while the
/// catalog and the archive answer (here the archive's directory goes away and comes back).
#[test]
fn health_probes_say_live_and_ready() {
    let server = Server::start(&[]);
    let (status, live) = server.get_status("/api/health/live");
    assert_eq!(
        (status, live["status"].as_str()),
        (200, Some("ok")),
        "{live}"
    );
    let (status, ready) = server.get_status("/api/health/ready");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["checks"]["catalog"], "ok", "{ready}");
    assert_eq!(ready["checks"]["archive"], "ok", "{ready}");

    let archive = server.data_dir.join("archive");
    let moved = server.data_dir.join("archive.moved");
    std::fs::rename(&archive, &moved).unwrap();
    let (status, ready) = server.get_status("/api/health/ready");
    std::fs::rename(&moved, &archive).unwrap();
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["status"], "unavailable", "{ready}");
    assert_eq!(ready["checks"]["catalog"], "ok", "{ready}");
    assert_ne!(ready["checks"]["archive"], "ok", "{ready}");
    assert_eq!(server.get_status("/api/health/live").0, 200);
    assert_eq!(server.get_status("/api/health/ready").0, 200);
}
