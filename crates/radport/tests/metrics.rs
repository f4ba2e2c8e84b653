//! `GET /metrics` against what happened: instances sent with `dcmsend` and a raw association,
//! an import run (whose instances are counted in a child process), a tus upload, pipeline
//! jobs. The text is read by the Prometheus project's own OpenMetrics parser (Python
//! `prometheus_client`), not by hand.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;
use radport_testkit::{sop_uid, write_series, SeriesSpec};

/// One sample: metric name and its labels (sorted), and the value.
type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

/// `/metrics` as the Prometheus parser reads it (fails if it is not valid OpenMetrics).
fn scrape(server: &Server, token: Option<&str>) -> Samples {
    let mut request = reqwest::blocking::Client::new().get(server.url("/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = response.text().unwrap();
    let mut parser = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/common/openmetrics_oracle.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = parser.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid OpenMetrics ({}):\n{text}\n(pip install prometheus-client if it is missing)",
        output_text(&out)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut labels: Vec<(String, String)> = v["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            labels.sort();
            (
                (v["name"].as_str().unwrap().to_string(), labels),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// The value of `name` with exactly `labels` (0 when the series is absent: a counter that
/// never moved is not shown).
fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    samples
        .get(&(name.to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

fn spec(seed: &str, count: usize) -> SeriesSpec {
    SeriesSpec {
        count,
        uid_seed: seed.into(),
        ..Default::default()
    }
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

/// The bytes of the `count` instances the archive holds, once it holds no more (a copy kept
/// out leaves a pack at its next checkpoint).
fn archived_bytes(server: &Server, count: usize) -> u64 {
    server.archived_instances_settled(count);
    server
        .archived_instance_bodies()
        .iter()
        .map(|(_, body)| body.len() as u64)
        .sum()
}

#[test]
fn the_figures_count_what_happened() {
    const TOKEN: &str = "rpt_metricsTestAdminToken0123456789abcdefghijkl";
    let server = Server::start_with_env(
        &["--stable-after", "1", "--access", "enforced"],
        &[("RADPORT_ADMIN_TOKEN", TOKEN)],
    );
    let anonymous = reqwest::blocking::get(server.url("/metrics")).unwrap();
    assert_eq!(
        anonymous.status(),
        401,
        "figures only for a signed-in caller"
    );
    let token = Some(TOKEN);
    let before = scrape(&server, token);
    assert_eq!(value(&before, "radport_associations_open", &[]), 0.0);
    for kind in ["thumbnail", "validate", "verify", "workflow"] {
        let key = (
            "radport_job_queue_depth".to_string(),
            vec![
                ("kind".to_string(), kind.to_string()),
                ("state".to_string(), "queued".to_string()),
            ],
        );
        assert!(
            before.contains_key(&key),
            "queue of {kind} shown: {before:?}"
        );
    }

    // Five instances with dcmsend; the same five again (kept once, the policy's default).
    let tmp = tempfile::tempdir().unwrap();
    let sent = spec("931", 5);
    write_series(&tmp.path().join("a"), &sent).unwrap();
    for _ in 0..2 {
        let out = server.dcmsend("kp-figures", "kp-admin", tmp.path());
        assert!(out.status.success(), "{}", output_text(&out));
    }
    // A raw association: a malformed data set, then a good instance.
    let mut client = RawClient::connect(server.dicom_port, "kp-raw", "kp-admin").unwrap();
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let status = client.store("1.2.3.4.5.6.7.8.9", &garbage);
    assert_eq!(status & 0xF000, 0xC000, "0x{status:04X}");
    let good = spec("932", 1);
    assert_eq!(client.store(&sop_uid(&good, 0), &dataset_of(&good, 0)), 0);
    client.release();
    let stored_bytes = archived_bytes(&server, 6);

    let after_dimse = server.wait_for(10, "the associations to close", || {
        let s = scrape(&server, token);
        (value(&s, "radport_associations_open", &[]) == 0.0).then_some(s)
    });
    let dimse_stored = [("channel", "dimse"), ("disposition", "stored")];
    let dimse_kept = [("channel", "dimse"), ("disposition", "duplicate_kept")];
    let s = &after_dimse;
    assert_eq!(
        value(s, "radport_instances_received_total", &dimse_stored),
        6.0
    );
    assert_eq!(
        value(s, "radport_instances_received_total", &dimse_kept),
        5.0
    );
    assert_eq!(
        value(
            s,
            "radport_instances_refused_total",
            &[("channel", "dimse"), ("reason", "malformed")]
        ),
        1.0
    );
    // The bytes of every instance received, the copies kept once included: the six stored
    // files and the five dcmsend ones once more (the same framing: the same size).
    let raw_uid = sop_uid(&good, 0);
    let raw_file: u64 = server
        .archived_instance_bodies()
        .into_iter()
        .map(|(_, bytes)| bytes)
        .filter(|bytes| {
            bytes
                .windows(raw_uid.len())
                .any(|w| w == raw_uid.as_bytes())
        })
        .map(|bytes| bytes.len() as u64)
        .sum();
    assert!(raw_file > 0);
    assert_eq!(
        value(s, "radport_received_bytes_total", &[("channel", "dimse")]),
        (2 * stored_bytes - raw_file) as f64
    );
    assert_eq!(
        value(
            s,
            "radport_c_store_duration_seconds_count",
            &[("outcome", "success")]
        ),
        11.0
    );
    assert_eq!(
        value(
            s,
            "radport_c_store_duration_seconds_count",
            &[("outcome", "failure")]
        ),
        1.0
    );
    // Every success took less than the largest finite bucket and more than nothing.
    assert_eq!(
        value(
            s,
            "radport_c_store_duration_seconds_bucket",
            &[("outcome", "success"), ("le", "+Inf")]
        ),
        11.0
    );
    assert!(
        value(
            s,
            "radport_c_store_duration_seconds_sum",
            &[("outcome", "success")]
        ) > 0.0
    );
    assert_eq!(value(s, "radport_associations_total", &[]), 3.0);
    // Into packs (the default for a local archive): every instance answered with success was
    // appended, the copies kept once too (punched later), in groups each written and synced.
    let records = value(s, "radport_pack_records_total", &[]);
    assert_eq!(records, 11.0);
    for figure in ["radport_pack_syncs_total", "radport_pack_groups_total"] {
        let n = value(s, figure, &[]);
        assert!((1.0..=records).contains(&n), "{figure} {n}");
    }
    for figure in [
        "radport_pack_write_seconds_total",
        "radport_pack_sync_seconds_total",
    ] {
        assert!(value(s, figure, &[]) > 0.0, "{figure}");
    }
    assert!(
        s.contains_key(&("radport_pack_queue_seconds_total".to_string(), Vec::new())),
        "the time records waited for a writer is shown"
    );

    // An upload, imported by a workflow run in a child process.
    let zip_spec = spec("933", 3);
    let files: Vec<(String, Vec<u8>)> = write_series(&tmp.path().join("zip"), &zip_spec)
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                format!("scan/{}", p.file_name().unwrap().to_str().unwrap()),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    let zip = tmp.path().join("figures.zip");
    zip_of(&zip, &files);
    let zip_len = std::fs::metadata(&zip).unwrap().len() as f64;
    let client = reqwest::blocking::Client::new();
    let cli = Command::new(env!("CARGO_BIN_EXE_radport"))
        .args(["upload", zip.to_str().unwrap(), "--as", "figures.zip"])
        .args(["--url", &server.url("")])
        .env("RADPORT_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", output_text(&cli));
    let run: serde_json::Value = client
        .post(server.url("/api/workflows/import-dicoms-from-data-upload/runs"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"file": "figures.zip"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = run["id"].as_str().unwrap_or_else(|| panic!("{run}"));
    server.wait_for(60, "the run to succeed", || {
        let r: serde_json::Value = client
            .get(server.url(&format!("/api/workflow-runs/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_ne!(r["state"], "failed", "{r}");
        (r["state"] == "succeeded").then_some(())
    });
    // Thumbnails and validations of the three series, each run once by this node.
    let s = server.wait_for(60, "the pipeline's jobs", || {
        let s = scrape(&server, token);
        let done = |kind| {
            value(
                &s,
                "radport_job_duration_seconds_count",
                &[("kind", kind), ("outcome", "succeeded")],
            )
        };
        (done("thumbnail") >= 3.0 && done("validate") >= 3.0).then_some(s)
    });
    assert_eq!(
        value(
            &s,
            "radport_instances_received_total",
            &[("channel", "import"), ("disposition", "stored")]
        ),
        3.0,
        "the child process's instances reach the server's figures"
    );
    let imported: f64 = files.iter().map(|(_, b)| b.len() as f64).sum();
    assert!(
        value(&s, "radport_received_bytes_total", &[("channel", "import")]) >= imported,
        "{s:?}"
    );
    assert_eq!(value(&s, "radport_upload_bytes_total", &[]), zip_len);
    assert_eq!(
        value(
            &s,
            "radport_job_duration_seconds_count",
            &[("kind", "workflow"), ("outcome", "succeeded")]
        ),
        1.0
    );
    // Nothing left waiting: the queue is empty and its oldest age 0.
    let s = server.wait_for(30, "an empty queue", || {
        let s = scrape(&server, token);
        let waiting: f64 = ["thumbnail", "validate", "workflow"]
            .iter()
            .map(|kind| {
                value(
                    &s,
                    "radport_job_queue_depth",
                    &[("kind", kind), ("state", "queued")],
                ) + value(
                    &s,
                    "radport_job_queue_depth",
                    &[("kind", kind), ("state", "running")],
                )
            })
            .sum();
        (waiting == 0.0).then_some(s)
    });
    assert_eq!(
        value(
            &s,
            "radport_job_queue_oldest_age_seconds",
            &[("kind", "thumbnail")]
        ),
        0.0
    );
    assert_eq!(
        value(&s, "radport_archive_errors_total", &[("kind", "storage")]),
        0.0
    );
}
