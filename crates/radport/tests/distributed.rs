//! End to end, distributed: `radport serve` on PostgreSQL (`--catalog-url`) and an
//! S3-compatible object store (`--archive-url s3://…`), as one node and as two nodes sharing
//! both. The object store is Garage, three nodes with replication factor 3 on loopback
//! (`scripts/garage.sh`, started by each test in a directory and on ports of its own, a fresh
//! bucket per test); the catalog is a fresh database on the PostgreSQL server of
//! `RADPORT_TEST_POSTGRES_URL` (scripts/test.sh starts a throw-away one). What radport stored is
//! checked through the S3 API itself (ListObjectsV2, GetObject, ListMultipartUploads, by boto3),
//! not only through radport.
//!
//! Needs Garage and boto3 (scripts/install-deps.sh) and, for the node tests, PostgreSQL:
//! without them the tests fail, saying what is missing and how to get it (scripts/test.sh
//! provides all three). A test that cannot run is a failure, never a pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::garage::{self, Garage};
use crate::common::*;
use radport_testkit::postgres::TestDatabase;
use radport_testkit::{series_uid, sop_uid, write_series, SeriesSpec};
use serde_json::Value;

// ----- what the tests need ------------------------------------------------------------------

/// Fails the test, saying what is missing and how to get it, unless Garage and boto3 (and,
/// when `postgres`, a PostgreSQL test server) are there.
fn requirements(test: &str, postgres: bool) {
    let pg = std::env::var(radport_testkit::postgres::POSTGRES_URL_ENV)
        .is_ok_and(|v| !v.trim().is_empty());
    let mut missing = Vec::new();
    if postgres && !pg {
        missing.push("PostgreSQL (RADPORT_TEST_POSTGRES_URL is not set)");
    }
    if !garage::garage_installed() {
        missing.push("Garage (scripts/garage.sh install)");
    }
    if !garage::boto3_installed() {
        missing.push("boto3 (pip package boto3)");
    }
    assert!(
        missing.is_empty(),
        "{test} needs {}: run scripts/install-deps.sh, then scripts/test.sh (which starts a \
         throw-away PostgreSQL and sets RADPORT_TEST_POSTGRES_URL)",
        missing.join(" and ")
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A database of its own on the test server (`radport_testkit::postgres`), dropped (forcibly)
/// at the end, also when the test fails.
pub(crate) struct PgDb(Option<TestDatabase>);

impl PgDb {
    pub(crate) fn new(test: &str) -> PgDb {
        PgDb(Some(block_on(TestDatabase::create(test))))
    }

    pub(crate) fn url(&self) -> &str {
        self.0.as_ref().map_or("", |db| db.url.as_str())
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Some(db) = self.0.take() {
            // On a thread of its own: a runtime cannot start inside another (a panicking test).
            let _ = std::thread::spawn(move || block_on(db.drop_database())).join();
        }
    }
}

// ----- helpers ------------------------------------------------------------------------------

pub(crate) fn spec(seed: &str, count: usize, rows: u16, columns: u16) -> SeriesSpec {
    SeriesSpec {
        count,
        rows,
        columns,
        uid_seed: seed.into(),
        series_description: format!("Series {seed}"),
        ..Default::default()
    }
}

/// Sends a series with the documented `dcmsend` command; returns the files sent.
fn send_series(server: &Server, dir: &Path, s: &SeriesSpec, dataset: &str) -> Vec<PathBuf> {
    let files = write_series(dir, s).unwrap();
    let out = server.dcmsend(&format!("kp-{dataset}"), "kp-admin", dir);
    assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    files
}

/// Waits until the thumbnail and validate jobs of a series have succeeded.
pub(crate) fn wait_for_jobs(server: &Server, uid: &str) -> Vec<Value> {
    server.wait_for(
        90,
        &format!("the thumbnail and validate jobs of {uid}"),
        || {
            let jobs = server.jobs_of(uid);
            let done = |kind: &str| {
                jobs.iter()
                    .any(|j| j["kind"] == kind && j["state"] == "succeeded")
            };
            (done("thumbnail") && done("validate")).then_some(jobs)
        },
    )
}

/// Waits until every job of a series has ended, at least one of each kind having succeeded.
/// A series written slowly (a workflow storing 8 MiB instances into S3, each taking longer than
/// `--stable-after`) is stable between its instances and is scheduled once per opening; this
/// waits for all of them.
pub(crate) fn wait_for_settled_jobs(server: &Server, uid: &str) -> Vec<Value> {
    server.wait_for(90, &format!("every job of {uid} to end"), || {
        let jobs = server.jobs_of(uid);
        let ended = jobs
            .iter()
            .all(|j| j["state"] == "succeeded" || j["state"] == "failed");
        let done = |kind: &str| {
            jobs.iter()
                .any(|j| j["kind"] == kind && j["state"] == "succeeded")
        };
        (ended && done("thumbnail") && done("validate")).then_some(jobs)
    })
}

/// One job per kind for every time the series was scheduled (as often for one kind as for
/// the other), each succeeded at its first attempt.
pub(crate) fn assert_each_ran_once(jobs: &[Value], uid: &str) {
    let count = |kind: &str| jobs.iter().filter(|j| j["kind"] == kind).count();
    assert!(
        count("thumbnail") >= 1,
        "a thumbnail job for {uid}: {jobs:#?}"
    );
    assert_eq!(
        count("thumbnail"),
        count("validate"),
        "one job per kind and opening of {uid}: {jobs:#?}"
    );
    for job in jobs {
        assert_eq!(job["state"], "succeeded", "{jobs:#?}");
        assert_eq!(job["attempts"], 1, "ran once: {jobs:#?}");
    }
}

/// Exactly one job per kind for the series, succeeded at its first attempt.
pub(crate) fn assert_ran_once(jobs: &[Value], uid: &str) {
    for kind in ["thumbnail", "validate"] {
        let of_kind: Vec<&Value> = jobs.iter().filter(|j| j["kind"] == kind).collect();
        assert_eq!(of_kind.len(), 1, "one {kind} job for {uid}: {jobs:#?}");
        assert_eq!(of_kind[0]["state"], "succeeded", "{jobs:#?}");
        assert_eq!(of_kind[0]["attempts"], 1, "ran once: {jobs:#?}");
    }
}

/// Checks that every instance of a series downloads with the sender's data-set bytes, and is
/// byte for byte an object of the bucket under `prefix`.
pub(crate) fn assert_instances_downloadable(
    server: &Server,
    s: &SeriesSpec,
    files: &[PathBuf],
    s3: &Garage,
    bucket: &str,
    prefix: &str,
) {
    let in_bucket: std::collections::BTreeSet<String> =
        s3.sha256s(bucket, prefix).into_values().collect();
    let uid = series_uid(s);
    for (i, file) in files.iter().enumerate() {
        let sent = std::fs::read(file).unwrap();
        let got = server.get_bytes(&format!("/api/series/{uid}/instances/{}", sop_uid(s, i)));
        assert_eq!(
            dataset_bytes(&got),
            dataset_bytes(&sent),
            "instance {i} of {uid}: the sender's bytes"
        );
        assert!(
            in_bucket.contains(&garage::sha256_hex(&got)),
            "instance {i} of {uid} is an object of the bucket"
        );
    }
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A zip (stored, not deflated: the size is the point) of a series' files.
fn stored_zip(path: &Path, files: &[PathBuf], folder: &str) {
    let entries: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let name = format!("{folder}/{}", f.file_name().unwrap().to_str().unwrap());
            (name, std::fs::read(f).unwrap())
        })
        .collect();
    radport_testkit::zip::stored_zip(path, &entries);
}

fn run_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", output_text(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

// ----- the tests ----------------------------------------------------------------------------

/// One node on PostgreSQL + S3: DIMSE in, API out, jobs' products in the bucket, a multi-MB
/// tus upload imported by a workflow, and all of it still there after a restart.
#[test]
fn one_node_on_postgres_and_s3() {
    requirements("one_node_on_postgres_and_s3", true);
    let s3 = Garage::start();
    let bucket = "radport-one";
    s3.create_bucket(bucket);
    let db = PgDb::new("one_node");
    let secret = s3.secret.clone();
    let archive_url = s3.archive_url(bucket, "site-a");
    let mut server = Server::start(&[
        "--stable-after",
        "1",
        "--catalog-url",
        db.url(),
        "--archive-url",
        &archive_url,
    ]);
    let health = server.get_json("/api/health");
    assert_eq!(health["catalog"], "postgres", "{health}");
    assert_eq!(
        health["archive"],
        format!("s3://{bucket}/site-a at {}", s3.endpoint()),
        "{health}"
    );

    // The documented dcmsend command, into the node.
    let tmp = tempfile::tempdir().unwrap();
    let sent = spec("811", 5, 128, 128);
    let uid = series_uid(&sent);
    let files = send_series(&server, &tmp.path().join("sent"), &sent, "s3sent");
    let list = server.series("admin", "");
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["series_instance_uid"], uid.as_str());
    assert_eq!(list["items"][0]["instance_count"], 5);

    // Stored in the bucket, under the prefix, byte for byte what the API serves.
    let instances = s3.objects(bucket, "site-a/instances/");
    assert_eq!(instances.len(), 5, "{instances:?}");
    assert!(
        s3.objects(bucket, "instances/").is_empty(),
        "nothing outside the prefix"
    );
    assert_instances_downloadable(&server, &sent, &files, &s3, bucket, "site-a/instances/");

    // The pipeline's products, in the bucket.
    let jobs = wait_for_jobs(&server, &uid);
    assert_ran_once(&jobs, &uid);
    let thumbnail = server.get_bytes(&format!("/api/series/{uid}/thumbnail"));
    assert_eq!(
        s3.get(bucket, &format!("site-a/thumbnails/{uid}.png")),
        thumbnail
    );
    image::load_from_memory(&thumbnail).expect("a PNG");
    let report = server.get_bytes(&format!("/api/series/{uid}/validation/report"));
    assert_eq!(
        s3.get(bucket, &format!("site-a/reports/{uid}.html")),
        report
    );

    // A tus upload of a few MB (three 8 MiB PATCHes of the CLI, assembled in the bucket with a
    // multipart upload), then a workflow that imports it: two instances over 8 MiB each, so
    // ingest writes them with multipart uploads too.
    let big = spec("812", 2, 2048, 2100);
    let big_uid = series_uid(&big);
    let big_files = write_series(&tmp.path().join("big"), &big).unwrap();
    let zip = tmp.path().join("big.zip");
    stored_zip(&zip, &big_files, "big");
    let zip_bytes = std::fs::read(&zip).unwrap();
    assert!(zip_bytes.len() > 16 * 1024 * 1024, "{}", zip_bytes.len());
    server.upload(&zip, "imports/big.zip");
    let uploaded = s3.objects(bucket, "site-a/uploads/");
    assert_eq!(
        uploaded.get("site-a/uploads/imports/big.zip"),
        Some(&(zip_bytes.len() as u64)),
        "{uploaded:?}"
    );
    assert!(
        s3.objects(bucket, "site-a/upload-parts/").is_empty(),
        "chunks are deleted once assembled"
    );
    assert_eq!(
        server.get_bytes("/api/files/imports/big.zip"),
        zip_bytes,
        "the uploaded file downloads whole"
    );
    let run = run_json(&server.cli(&[
        "workflow",
        "run",
        "import-dicoms-from-data-upload",
        "-p",
        "file=imports/big.zip",
        "-p",
        "project=admin",
        "-p",
        "dataset=imported",
        "--json",
    ]));
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(run["series"], serde_json::json!([big_uid]), "{run}");
    assert!(
        s3.objects(bucket, "site-a/uploads/").is_empty(),
        "the imported upload is deleted from the bucket (delete_original_file)"
    );
    let instances = s3.objects(bucket, "site-a/instances/");
    assert_eq!(instances.len(), 7, "{instances:?}");
    assert_instances_downloadable(&server, &big, &big_files, &s3, bucket, "site-a/instances/");
    let big_jobs = wait_for_settled_jobs(&server, &big_uid);
    assert_each_ran_once(&big_jobs, &big_uid);
    for key in [
        format!("site-a/thumbnails/{big_uid}.png"),
        format!("site-a/reports/{big_uid}.html"),
    ] {
        assert!(s3.objects(bucket, &key).contains_key(&key), "{key}");
    }
    assert_eq!(
        s3.pending_multipart_uploads(bucket),
        Vec::<String>::new(),
        "every multipart upload completed or aborted"
    );

    // A restart keeps everything: catalog rows in PostgreSQL, objects in the bucket; nothing is
    // scheduled again.
    server.restart();
    let list = server.series("admin", "");
    assert_eq!(list["total"], 2, "{list}");
    assert_instances_downloadable(&server, &sent, &files, &s3, bucket, "site-a/instances/");
    assert_eq!(
        server.get_bytes(&format!("/api/series/{uid}/thumbnail")),
        thumbnail
    );
    assert_eq!(
        server.get_bytes(&format!("/api/series/{uid}/validation/report")),
        report
    );
    // The scheduler has looked again twice: nothing was scheduled a second time.
    server.wait_for_scheduler_passes(2);
    assert_ran_once(&server.jobs_of(&uid), &uid);
    let ids = |jobs: &[Value]| {
        let mut ids: Vec<String> = jobs.iter().map(|j| j["id"].to_string()).collect();
        ids.sort();
        ids
    };
    let big_jobs_now = server.jobs_of(&big_uid);
    assert_each_ran_once(&big_jobs_now, &big_uid);
    assert_eq!(
        ids(&big_jobs_now),
        ids(&big_jobs),
        "no job of {big_uid} is new"
    );

    // Credentials given in the URL never reach the log.
    let log = server.log();
    assert!(!log.contains(&secret), "the secret key is logged:\n{log}");
    assert!(log.contains("S3 archive checked"), "{log}");
}

/// Two nodes on the same PostgreSQL database and the same bucket: each receives a series;
/// both see both; each series' jobs run once in the cluster; objects stored by one node are
/// served by the other; a tus upload begun on one node is finished on the other.
#[test]
fn two_nodes_share_postgres_and_s3() {
    requirements("two_nodes_share_postgres_and_s3", true);
    let s3 = Garage::start();
    let bucket = "radport-shared";
    s3.create_bucket(bucket);
    let db = PgDb::new("two_nodes");
    // Node A takes everything from the URL, node B from the standard AWS variables (and
    // talks to another Garage node: every node serves every bucket).
    let url_a = s3.archive_url(bucket, "cluster");
    let url_b = format!("s3://{bucket}/cluster");
    let endpoint = s3.endpoint();
    let env_b = s3.env_of(1);
    let node_a = Server::start(&[
        "--stable-after",
        "1",
        "--catalog-url",
        db.url(),
        "--archive-url",
        &url_a,
    ]);
    let node_b = Server::start_with_env(
        &["--stable-after", "1", "--catalog-url", db.url()],
        &std::iter::once(("RADPORT_ARCHIVE_URL", url_b.as_str()))
            .chain(env_b.iter().map(|(k, v)| (*k, v.as_str())))
            .collect::<Vec<_>>(),
    );
    assert_ne!(node_a.http_port, node_b.http_port);
    for (node, endpoint) in [(&node_a, endpoint.clone()), (&node_b, s3.endpoint_of(1))] {
        let health = node.get_json("/api/health");
        assert_eq!(health["catalog"], "postgres");
        assert_eq!(
            health["archive"],
            format!("s3://{bucket}/cluster at {endpoint}")
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let sa = spec("821", 4, 128, 128);
    let sb = spec("822", 3, 128, 128);
    let files_a = send_series(&node_a, &tmp.path().join("a"), &sa, "node-a");
    let files_b = send_series(&node_b, &tmp.path().join("b"), &sb, "node-b");
    let (uid_a, uid_b) = (series_uid(&sa), series_uid(&sb));

    let mut expected = vec![uid_a.clone(), uid_b.clone()];
    expected.sort();
    for node in [&node_a, &node_b] {
        let list = node.series("admin", "");
        let mut uids: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["series_instance_uid"].as_str().unwrap().to_string())
            .collect();
        uids.sort();
        assert_eq!(uids, expected, "both nodes list both series");
    }
    let instances = s3.objects(bucket, "cluster/instances/");
    assert_eq!(instances.len(), 7, "{instances:?}");

    // Each series' jobs ran once in the cluster, whichever node's worker claimed them.
    for uid in [&uid_a, &uid_b] {
        wait_for_jobs(&node_a, uid);
    }
    // Both schedulers have looked again twice: what they would (wrongly) schedule again is in
    // the queue by now.
    node_a.wait_for_scheduler_passes(2);
    node_b.wait_for_scheduler_passes(2);
    for node in [&node_a, &node_b] {
        for uid in [&uid_a, &uid_b] {
            assert_ran_once(&node.jobs_of(uid), uid);
        }
    }
    let workers: Vec<String> = [&uid_a, &uid_b]
        .iter()
        .flat_map(|uid| node_a.jobs_of(uid))
        .map(|j| format!("{} {}", j["kind"], j["worker"]))
        .collect();
    eprintln!("jobs ran on: {workers:?}");

    // Stored by A, served by B, and the other way round; products of either node's workers are
    // served by both.
    assert_instances_downloadable(&node_b, &sa, &files_a, &s3, bucket, "cluster/instances/");
    assert_instances_downloadable(&node_a, &sb, &files_b, &s3, bucket, "cluster/instances/");
    for uid in [&uid_a, &uid_b] {
        let key = format!("cluster/thumbnails/{uid}.png");
        let png = s3.get(bucket, &key);
        for node in [&node_a, &node_b] {
            assert_eq!(node.get_bytes(&format!("/api/series/{uid}/thumbnail")), png);
        }
        let key = format!("cluster/reports/{uid}.html");
        assert!(s3.objects(bucket, &key).contains_key(&key), "{key}");
    }

    // A tus upload created and begun on A, finished on B (as behind a load balancer).
    let data = random_bytes(6 * 1024 * 1024 + 321, 42);
    let client = reqwest::blocking::Client::new();
    let created = client
        .post(node_a.url("/api/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", data.len().to_string())
        .header("Upload-Metadata", "filename c2hhcmVkLmJpbg==") // shared.bin
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let half = 5 * 1024 * 1024;
    let patch = |node: &Server, at: usize, body: &[u8]| {
        let r = client
            .patch(node.url(&location))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", at.to_string())
            .header("Content-Type", "application/offset+octet-stream")
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 204, "PATCH at {at}");
    };
    patch(&node_a, 0, &data[..half]);
    let head = client
        .head(node_b.url(&location))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .unwrap();
    assert_eq!(head.headers()["upload-offset"], half.to_string().as_str());
    patch(&node_b, half, &data[half..]);
    assert_eq!(node_a.get_bytes("/api/files/shared.bin"), data);
    assert_eq!(s3.get(bucket, "cluster/uploads/shared.bin"), data);
    assert!(s3.objects(bucket, "cluster/upload-parts/").is_empty());
    assert_eq!(
        s3.pending_multipart_uploads(bucket),
        Vec::<String>::new(),
        "every multipart upload completed or aborted"
    );
}

/// The archive itself on S3: objects appear only when complete, large ones go through a
/// multipart upload, and an aborted or dropped writer leaves no pending multipart upload.
#[test]
fn s3_archive_writes_are_atomic_and_abort_cleanly() {
    requirements("s3_archive_writes_are_atomic_and_abort_cleanly", false);
    let s3 = Garage::start();
    let bucket = "radport-archive";
    s3.create_bucket(bucket);
    let url = s3.archive_url(bucket, "p");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let archive = runtime
        .block_on(radport_archive::Archive::from_url(&url))
        .expect("the bucket opens");
    let chunk = random_bytes(1024 * 1024, 7);

    // 20 MiB in 1 MiB writes: invisible until finished, then whole.
    let mut writer = archive.writer("instances/big.dcm").unwrap();
    runtime.block_on(async {
        for _ in 0..20 {
            writer.write(&chunk).await.unwrap();
        }
    });
    assert!(
        s3.objects(bucket, "p/instances/").is_empty(),
        "not yet visible"
    );
    assert_eq!(
        s3.pending_multipart_uploads(bucket),
        vec!["p/instances/big.dcm".to_string()],
        "a multipart upload is under way"
    );
    let stored = runtime.block_on(writer.finish()).unwrap();
    assert_eq!(stored.size, 20 * 1024 * 1024);
    let got = s3.get(bucket, "p/instances/big.dcm");
    assert_eq!(got.len(), 20 * 1024 * 1024);
    assert!(got.chunks(chunk.len()).all(|c| c == chunk.as_slice()));
    assert!(s3.pending_multipart_uploads(bucket).is_empty());

    // Aborted after a part went out: nothing visible, nothing pending.
    let mut writer = archive.writer("instances/aborted.dcm").unwrap();
    runtime.block_on(async {
        for _ in 0..12 {
            writer.write(&chunk).await.unwrap();
        }
    });
    assert_eq!(s3.pending_multipart_uploads(bucket).len(), 1);
    runtime.block_on(writer.abort());
    assert!(s3.pending_multipart_uploads(bucket).is_empty());

    // Dropped unfinished (a cancelled task): aborted in the background.
    let mut writer = archive.writer("instances/dropped.dcm").unwrap();
    runtime.block_on(async {
        for _ in 0..12 {
            writer.write(&chunk).await.unwrap();
        }
    });
    assert_eq!(s3.pending_multipart_uploads(bucket).len(), 1);
    runtime.block_on(async move { drop(writer) });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s3.pending_multipart_uploads(bucket).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the dropped upload was not aborted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys: Vec<String> = s3.objects(bucket, "p/").into_keys().collect();
    assert_eq!(keys, vec!["p/instances/big.dcm".to_string()]);
    drop(runtime);
}

/// `radport serve` with an archive URL it cannot use stops at once and says why, without
/// showing the secret key.
#[test]
fn a_bad_archive_url_stops_serve_with_the_reason() {
    let secret = "do-not-show-this";
    let nobody = free_port();
    // Three cases need no S3 server; the last one needs Garage.
    let mut cases = vec![
        (
            format!(
                "s3://bucket?endpoint=http://127.0.0.1:{nobody}&allow_http=true\
                 &access_key_id=a&secret_access_key={secret}"
            ),
            "cannot reach s3://bucket at http://127.0.0.1:",
        ),
        (
            format!("s3://bucket?endpont=http://x&secret_access_key={secret}"),
            "unknown parameter \"endpont\"",
        ),
        ("ftp://bucket/x".to_string(), "unsupported scheme \"ftp\""),
    ];
    let mut s3 = None;
    for case in 0..=cases.len() {
        if case == cases.len() {
            requirements("a_bad_archive_url_stops_serve_with_the_reason", false);
            let server = s3.insert(Garage::start());
            cases.push((
                format!(
                    "s3://no-such-bucket?endpoint={}&region={}&allow_http=true\
                     &access_key_id={}&secret_access_key={}",
                    server.endpoint(),
                    server.region(),
                    server.key_id,
                    server.secret
                ),
                "the S3 bucket \"no-such-bucket\" does not exist",
            ));
        }
        let (url, expected) = &cases[case];
        let (url, expected) = (url.as_str(), *expected);
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_radport"))
            .args(["serve", "--bind", "127.0.0.1", "--data-dir"])
            .arg(data.path())
            .args(["--dicom-port", &free_port().to_string()])
            .args(["--http-port", &free_port().to_string()])
            .env("RADPORT_ARCHIVE_URL", url)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("radport serve kept running with {url}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let text = output_text(&out);
        assert!(!out.status.success(), "{text}");
        assert!(text.contains("cannot open the archive"), "{text}");
        assert!(text.contains(expected), "{expected:?} in {text}");
        assert!(!text.contains(secret), "the secret is shown: {text}");
        if let Some(garage) = &s3 {
            assert!(
                !text.contains(&garage.secret),
                "the secret is shown: {text}"
            );
        }
    }
}
