//! Several radport nodes behind a load balancer, as README's "Running several nodes" sets them
//! up: three `radport serve` nodes on one PostgreSQL catalog and one Garage bucket (three
//! Garage nodes, replication factor 3), HAProxy in front for HTTP and for DIMSE with the
//! configuration of `deploy/haproxy.cfg` (only its ports replaced). Senders and clients talk
//! to the balancer only; what landed is checked in the catalog (through the balancer) and in
//! the bucket (through the S3 API, by boto3).
//!
//! Needs HAProxy, Garage, boto3 and PostgreSQL (scripts/install-deps.sh, scripts/test.sh);
//! without them the tests fail and say what is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::garage::{self, Garage};
use crate::common::*;
use crate::distributed::{assert_ran_once, spec, wait_for_jobs, PgDb};
use radport_testkit::{series_uid, write_series, SeriesSpec};

/// The bucket `scripts/garage.sh start` creates.
const BUCKET: &str = "radport";

fn requirements(test: &str) {
    let mut missing = Vec::new();
    if !Path::new("/usr/sbin/haproxy").exists() {
        missing.push("HAProxy (apt-get install haproxy)");
    }
    if !garage::garage_installed() {
        missing.push("Garage (scripts/garage.sh install)");
    }
    if !garage::boto3_installed() {
        missing.push("boto3 (pip package boto3)");
    }
    if std::env::var(radport_testkit::postgres::POSTGRES_URL_ENV).map_or(true, |v| v.is_empty()) {
        missing.push("PostgreSQL (RADPORT_TEST_POSTGRES_URL is not set)");
    }
    assert!(
        missing.is_empty(),
        "{test} needs {}: run scripts/install-deps.sh, then scripts/test.sh",
        missing.join(" and ")
    );
}

/// Three nodes, their catalog and bucket, and HAProxy in front; all stopped on drop.
struct Cluster {
    nodes: Vec<Server>,
    front: Server,
    haproxy: Child,
    haproxy_log: PathBuf,
    garage: Garage,
    _db: PgDb,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(test: &str, extra: &[&str]) -> Cluster {
        requirements(test);
        let garage = Garage::start();
        let db = PgDb::new(test);
        let archive_url = garage.archive_url(BUCKET, "");
        let mut args = vec![
            "--stable-after",
            "1",
            "--catalog-url",
            db.url(),
            "--archive-url",
            archive_url.as_str(),
        ];
        args.extend_from_slice(extra);
        let nodes: Vec<Server> = (0..3).map(|_| Server::start(&args)).collect();

        // deploy/haproxy.cfg with this test's ports.
        let dir = tempfile::tempdir().unwrap();
        let (front_http, front_dicom) = (free_port(), free_port());
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy.cfg"),
        )
        .unwrap();
        let mut config = template
            .replace("127.0.0.1:11112", &format!("127.0.0.1:{front_dicom}"))
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{front_http}"));
        for (n, node) in nodes.iter().enumerate() {
            config = config
                .replace(
                    &format!("127.0.0.1:{}", 11113 + n),
                    &format!("127.0.0.1:{}", node.dicom_port),
                )
                .replace(
                    &format!("127.0.0.1:{}", 8081 + n),
                    &format!("127.0.0.1:{}", node.http_port),
                );
        }
        let config_path = dir.path().join("haproxy.cfg");
        std::fs::write(&config_path, config).unwrap();
        let haproxy_log = dir.path().join("haproxy.log");
        let log = std::fs::File::create(&haproxy_log).unwrap();
        let haproxy = Command::new("/usr/sbin/haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("haproxy starts");
        let front = Server::front(front_http, front_dicom);
        let cluster = Cluster {
            nodes,
            front,
            haproxy,
            haproxy_log,
            garage,
            _db: db,
            _dir: dir,
        };
        // Ready once the balancer has seen every node ready.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if cluster.ready_nodes() == 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy did not see three ready nodes:\n{}",
                std::fs::read_to_string(&cluster.haproxy_log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cluster
    }

    /// How many nodes answer `/api/health/ready` through the balancer in a row of requests
    /// (round robin: each request goes to the next node).
    fn ready_nodes(&self) -> usize {
        let client = reqwest::blocking::Client::new();
        (0..3)
            .filter(|_| {
                client
                    .get(self.front.url("/api/health/ready"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
            })
            .count()
    }

    /// `dcmsend` through the balancer, started (not waited for).
    fn dcmsend(&self, dataset: &str, project: &str, dir: &Path) -> Child {
        Command::new(dcmtk("dcmsend"))
            .arg("127.0.0.1")
            .arg(self.front.dicom_port.to_string())
            .args(["--aetitle", &format!("kp-{dataset}")])
            .args(["--call", &format!("kp-{project}")])
            .args(["--scan-directories", "--scan-pattern", "*.dcm", "--recurse"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dcmsend")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- HAProxy:\n{}",
                std::fs::read_to_string(&self.haproxy_log).unwrap_or_default()
            );
            for (n, node) in self.nodes.iter().enumerate() {
                let log = node.log();
                let notable: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                eprintln!("--- node {n}, warnings and errors:\n{}", notable.join("\n"));
            }
        }
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        for node in &mut self.nodes {
            node.stop();
        }
    }
}

/// Writes each series under `tmp` and starts one `dcmsend` per series through the balancer
/// into `project`, dataset `ds<i>`; returns the files written and the senders.
fn send_through_balancer(
    cluster: &Cluster,
    specs: &[SeriesSpec],
    project: &str,
    tmp: &Path,
) -> (Vec<Vec<PathBuf>>, Vec<Child>) {
    let mut files = Vec::new();
    let mut senders = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let dir = tmp.join(format!("s{i}"));
        files.push(write_series(&dir, s).unwrap());
        senders.push(cluster.dcmsend(&format!("ds{i}"), project, &dir));
    }
    (files, senders)
}

/// Instance `i` of series `s` as a node serves it, asserted to carry `file`'s data set.
fn served_as_sent(front: &Server, s: &SeriesSpec, i: usize, file: &Path) -> Vec<u8> {
    let got = front.get_bytes(&format!(
        "/api/series/{}/instances/{}",
        series_uid(s),
        radport_testkit::sop_uid(s, i)
    ));
    assert_eq!(
        dataset_bytes(&got),
        dataset_bytes(&read_file(file)),
        "instance {i} of {}",
        series_uid(s)
    );
    got
}

/// Four `dcmsend` at once through the balancer: every instance lands once, in the right project
/// and dataset; associations went to more than one node; each series' pipeline jobs ran once in
/// the cluster, and its thumbnail and report are in the bucket.
#[test]
fn four_senders_through_the_balancer_land_once() {
    let cluster = Cluster::start("four_senders_through_the_balancer_land_once", &[]);
    let front = &cluster.front;
    front.create_project("ward");
    let tmp = tempfile::tempdir().unwrap();
    let specs: Vec<_> = (0..4)
        .map(|i| spec(&format!("9{i}1"), 30, 128, 128))
        .collect();
    let (files, senders) = send_through_balancer(&cluster, &specs, "ward", tmp.path());
    for sender in senders {
        let out = sender.wait_with_output().unwrap();
        assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    }

    // In the catalog, through the balancer: four series of 30, each in its dataset.
    let list = front.series("ward", "");
    assert_eq!(list["total"], 4, "{list}");
    for (i, s) in specs.iter().enumerate() {
        let uid = series_uid(s);
        let item = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|item| item["series_instance_uid"] == uid.as_str())
            .unwrap_or_else(|| panic!("{uid} in {list}"));
        assert_eq!(item["instance_count"], 30, "{item}");
        assert_eq!(
            item["datasets"],
            serde_json::json!([format!("ds{i}")]),
            "{item}"
        );
    }
    assert_eq!(front.instance_total("admin"), 120);

    // In the bucket: 120 instance objects, one per instance, each the bytes a node serves.
    let objects = cluster.garage.sha256s(BUCKET, "instances/");
    assert_eq!(objects.len(), 120, "one object per instance");
    let stored: std::collections::BTreeSet<&String> = objects.values().collect();
    for (s, sent) in specs.iter().zip(&files) {
        for (i, file) in sent.iter().enumerate() {
            let got = served_as_sent(front, s, i, file);
            assert!(
                stored.contains(&garage::sha256_hex(&got)),
                "{} #{i}",
                series_uid(s)
            );
        }
    }

    // The balancer spread the associations: more than one node received instances.
    let receiving = cluster
        .nodes
        .iter()
        .filter(|n| n.log_count("association accepted") > 0)
        .count();
    assert!(receiving >= 2, "associations went to {receiving} node(s)");

    // Pipeline: once per series in the cluster; products in the bucket.
    for s in &specs {
        let uid = series_uid(s);
        let jobs = wait_for_jobs(front, &uid);
        assert_ran_once(&jobs, &uid);
        for key in [
            format!("thumbnails/{uid}.png"),
            format!("reports/{uid}.html"),
        ] {
            assert!(
                cluster.garage.objects(BUCKET, &key).contains_key(&key),
                "{key}"
            );
        }
    }
    // The schedulers of all three nodes have looked again: nothing was scheduled twice.
    for node in &cluster.nodes {
        node.wait_for_scheduler_passes(2);
    }
    for s in &specs {
        let uid = series_uid(s);
        assert_ran_once(&front.jobs_of(&uid), &uid);
    }
}

/// `acked_sender.py` through the balancer, started: it writes what was acknowledged to `out`.
fn acked_sender(cluster: &Cluster, dataset: &str, project: &str, dir: &Path, out: &Path) -> Child {
    Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/acked_sender.py"))
        .args(["127.0.0.1", &cluster.front.dicom_port.to_string()])
        .args([&format!("kp-{dataset}"), &format!("kp-{project}")])
        .arg(dir)
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 acked_sender.py")
}

/// "SOP Instance UID → file" of what a sender saw acknowledged.
fn acknowledged(out: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(uid, path)| (uid.to_string(), PathBuf::from(path)))
        .collect()
}

/// A node killed with SIGKILL while four senders store through the balancer: every instance
/// acknowledged before the kill (by any node) is there, byte for byte; the senders that were
/// on the dead node fail, and succeed when they send again (the balancer has taken the node
/// out); every instance is then there once, and the pipeline finishes every series on the
/// nodes left (jobs the dead node held are taken over when their lease runs out).
#[test]
fn a_node_killed_during_ingest_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start(
        "a_node_killed_during_ingest_loses_nothing_acknowledged",
        &["--job-lease", "3"],
    );
    cluster.front.create_project("ward");
    let tmp = tempfile::tempdir().unwrap();
    let count = 150;
    let specs: Vec<_> = (0..4)
        .map(|i| spec(&format!("97{i}"), count, 256, 256))
        .collect();
    let dirs: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("s{i}"))).collect();
    for (s, dir) in specs.iter().zip(&dirs) {
        write_series(dir, s).unwrap();
    }
    let outs: Vec<PathBuf> = (0..4)
        .map(|i| tmp.path().join(format!("acked{i}")))
        .collect();
    let senders: Vec<Child> = (0..4)
        .map(|i| acked_sender(&cluster, &format!("ds{i}"), "ward", &dirs[i], &outs[i]))
        .collect();

    // Once a good part has arrived, the node with the most associations dies.
    let front = &cluster.front;
    front.wait_for(120, "100 instances stored", || {
        (outs.iter().map(|o| acknowledged(o).len()).sum::<usize>() >= 100).then_some(())
    });
    let victim = (0..3)
        .max_by_key(|&n| cluster.nodes[n].log_count("association accepted"))
        .unwrap();
    assert!(cluster.nodes[victim].log_count("association accepted") > 0);
    cluster.nodes[victim].kill();

    let mut failed = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let out = sender.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => {}
            Some(1) => failed.push(i),
            other => panic!("sender {i} exited with {other:?}: {}", output_text(&out)),
        }
    }
    assert!(!failed.is_empty(), "a sender was on the killed node");

    // Everything acknowledged is there, byte for byte (asked through the balancer, which
    // now sends requests to the two nodes left only).
    let front = &cluster.front;
    let sent: std::collections::HashMap<String, (&SeriesSpec, usize)> = specs
        .iter()
        .flat_map(|s| (0..count).map(move |i| (radport_testkit::sop_uid(s, i), (s, i))))
        .collect();
    let mut acked = 0;
    for out in &outs {
        for (uid, path) in acknowledged(out) {
            let (s, i) = sent
                .get(&uid)
                .unwrap_or_else(|| panic!("{uid} is not one of the sent instances"));
            served_as_sent(front, s, *i, &path);
            acked += 1;
        }
    }
    assert!(acked >= 100, "{acked}");

    // The failed senders send again, and everything is there once.
    for &i in &failed {
        let again = tmp.path().join(format!("again{i}"));
        let out = acked_sender(&cluster, &format!("ds{i}"), "ward", &dirs[i], &again)
            .wait_with_output()
            .unwrap();
        assert!(out.status.success(), "re-send {i}: {}", output_text(&out));
        assert_eq!(acknowledged(&again).len(), count);
    }
    assert_eq!(front.instance_total("ward"), (4 * count) as i64);
    let list = front.series("ward", "");
    assert_eq!(list["total"], 4, "{list}");

    // The pipeline finishes every series on the nodes left.
    for s in &specs {
        let uid = series_uid(s);
        let jobs = wait_for_jobs(front, &uid);
        for kind in ["thumbnail", "validate"] {
            assert!(
                jobs.iter()
                    .any(|j| j["kind"] == kind && j["state"] == "succeeded"),
                "{kind} of {uid}: {jobs:#?}"
            );
        }
        let key = format!("thumbnails/{uid}.png");
        assert!(cluster.garage.objects(BUCKET, &key).contains_key(&key));
    }
}

/// One of the three Garage nodes stopped while two senders store: with replication factor 3
/// a write needs two, so ingest and reads go on; started again, it rejoins.
#[test]
fn a_garage_node_stopped_during_ingest_stops_nothing() {
    let cluster = Cluster::start("a_garage_node_stopped_during_ingest_stops_nothing", &[]);
    let front = &cluster.front;
    front.create_project("ward");
    let tmp = tempfile::tempdir().unwrap();
    let count = 150;
    let specs: Vec<_> = (0..2)
        .map(|i| spec(&format!("96{i}"), count, 256, 256))
        .collect();
    let (files, senders) = send_through_balancer(&cluster, &specs, "ward", tmp.path());
    front.wait_for(120, "50 instances stored", || {
        (front.instance_total("ward") >= 50).then_some(())
    });
    cluster.garage.stop_node(2);
    for sender in senders {
        let out = sender.wait_with_output().unwrap();
        assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    }
    assert_eq!(front.instance_total("ward"), (2 * count) as i64);
    // Reads while the node is down: the last instance of each series, byte for byte.
    for (s, sent) in specs.iter().zip(&files) {
        served_as_sent(front, s, count - 1, &sent[count - 1]);
    }
    // Started again, the node rejoins, and the cluster stores with all three.
    // (Whether it then holds every block written while it was down is not checked yet: the
    // blocks' resync after `garage repair` did not complete within minutes here; see the
    // closing note of issue #14.)
    cluster.garage.start_node(2);
    let more = spec("962", 10, 128, 128);
    let dir = tmp.path().join("more");
    write_series(&dir, &more).unwrap();
    let out = cluster
        .dcmsend("ds2", "ward", &dir)
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "dcmsend: {}", output_text(&out));
    assert_eq!(front.instance_total("ward"), (2 * count + 10) as i64);
}
