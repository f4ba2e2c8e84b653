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
    _db: Option<PgDb>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes on a database of their own on the shared test server.
    fn start(test: &str, extra: &[&str]) -> Cluster {
        requirements(test);
        let db = PgDb::new(test);
        let url = db.url().to_string();
        Self::start_on(test, extra, &url, Some(db))
    }

    /// Three nodes on the catalog at `catalog_url`.
    fn start_on(test: &str, extra: &[&str], catalog_url: &str, db: Option<PgDb>) -> Cluster {
        requirements(test);
        let garage = Garage::start();
        let archive_url = garage.archive_url(BUCKET, "");
        // deploy/haproxy.cfg sends a PROXY protocol header on DICOM connections.
        let mut args = vec![
            "--proxy-protocol-from",
            "127.0.0.1",
            "--stable-after",
            "1",
            "--catalog-url",
            catalog_url,
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

/// `n` series of `count` instances (seeds `<seed>0`, `<seed>1`, …) written under `tmp/s<i>`
/// and sent at once through the balancer by `acked_sender.py`, dataset `ds<i>` of `ward`;
/// returns the series, the files where each sender writes what was acknowledged, the senders.
fn start_acked_senders(
    cluster: &Cluster,
    tmp: &Path,
    seed: &str,
    n: usize,
    count: usize,
) -> (Vec<SeriesSpec>, Vec<PathBuf>, Vec<Child>) {
    let specs: Vec<SeriesSpec> = (0..n)
        .map(|i| spec(&format!("{seed}{i}"), count, 256, 256))
        .collect();
    // Every series written before the first sender starts: the senders then start together.
    for (i, s) in specs.iter().enumerate() {
        write_series(&tmp.join(format!("s{i}")), s).unwrap();
    }
    let outs: Vec<PathBuf> = (0..n).map(|i| tmp.join(format!("acked{i}"))).collect();
    let senders = (0..n)
        .map(|i| {
            let dir = tmp.join(format!("s{i}"));
            acked_sender(cluster, &format!("ds{i}"), "ward", &dir, &outs[i])
        })
        .collect();
    (specs, outs, senders)
}

/// Every instance the senders saw acknowledged is served byte for byte; returns how many.
fn assert_acknowledged_served(front: &Server, specs: &[SeriesSpec], outs: &[PathBuf]) -> usize {
    let sent: std::collections::HashMap<String, (&SeriesSpec, usize)> = specs
        .iter()
        .flat_map(|s| (0..s.count).map(move |i| (radport_testkit::sop_uid(s, i), (s, i))))
        .collect();
    let mut acked = 0;
    for out in outs {
        for (uid, path) in acknowledged(out) {
            let (s, i) = sent
                .get(&uid)
                .unwrap_or_else(|| panic!("{uid} is not one of the sent instances"));
            served_as_sent(front, s, *i, &path);
            acked += 1;
        }
    }
    acked
}

/// Series `i` of [`start_acked_senders`] sent again: every one of its `count` instances is
/// acknowledged.
fn send_again(cluster: &Cluster, tmp: &Path, i: usize, count: usize) {
    let again = tmp.join(format!("again{i}"));
    let dir = tmp.join(format!("s{i}"));
    let out = acked_sender(cluster, &format!("ds{i}"), "ward", &dir, &again)
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "re-send {i}: {}", output_text(&out));
    assert_eq!(acknowledged(&again).len(), count);
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
    let (specs, outs, senders) = start_acked_senders(&cluster, tmp.path(), "97", 4, count);

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

    // A sender on the dead node fails: its association broken (1), or, if it was only
    // connecting, not accepted (2: the balancer had not yet seen the node die).
    let mut failed = Vec::new();
    for (i, sender) in senders.into_iter().enumerate() {
        let out = sender.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => {}
            Some(1) | Some(2) => failed.push(i),
            other => panic!("sender {i} exited with {other:?}: {}", output_text(&out)),
        }
    }
    assert!(!failed.is_empty(), "a sender was on the killed node");

    // Everything acknowledged is there, byte for byte (asked through the balancer, which
    // now sends requests to the two nodes left only).
    let front = &cluster.front;
    let acked = assert_acknowledged_served(front, &specs, &outs);
    assert!(acked >= 100, "{acked}");

    // The failed senders send again, and everything is there once.
    for &i in &failed {
        send_again(&cluster, tmp.path(), i, count);
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
    // What node 2 missed: the blocks the two others hold and it does not.
    let missed: usize = cluster
        .garage
        .block_hashes(0)
        .difference(&cluster.garage.block_hashes(2))
        .count();
    assert!(missed > 0, "node 2 was down while instances were stored");
    // Started again, the node rejoins, and the cluster stores with all three.
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
    // It catches up: after `scripts/garage.sh repair` (what README tells an operator to run
    // after an outage) it holds every block the others hold.
    let garage = &cluster.garage;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        garage.repair();
        let held = garage.block_hashes(2);
        let behind = garage
            .block_hashes(0)
            .union(&garage.block_hashes(1))
            .filter(|h| !held.contains(*h))
            .count();
        if behind == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node 2 still misses {behind} blocks (of {missed} missed)"
        );
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The catalog's PostgreSQL stopped the way a crash stops it (`-m immediate`) and started again
/// while two senders store through the balancer: no instance is acknowledged without being
/// recorded (every success is there, byte for byte, after the restart); the nodes are not
/// ready while it is down; instances then either wait for it or get a failure status; every
/// node reconnects by itself (ready again, and stores and answers), nothing is left in the
/// bucket that the catalog does not name, and the pipeline finishes every series.
#[test]
fn postgres_restarted_during_ingest_loses_nothing_acknowledged() {
    let test = "postgres_restarted_during_ingest_loses_nothing_acknowledged";
    let postgres = postgres_server::PostgresServer::start();
    let cluster = Cluster::start_on(test, &["--job-lease", "5"], &postgres.url(), None);
    let front = &cluster.front;
    front.create_project("ward");
    let tmp = tempfile::tempdir().unwrap();
    let count = 200;
    let (specs, outs, senders) = start_acked_senders(&cluster, tmp.path(), "95", 2, count);
    front.wait_for(120, "40 instances stored", || {
        (outs.iter().map(|o| acknowledged(o).len()).sum::<usize>() >= 40).then_some(())
    });
    let mut senders = senders;
    postgres.crash();
    let acked_at_crash: usize = outs.iter().map(|o| acknowledged(o).len()).sum();
    assert!(
        acked_at_crash < 2 * count && senders.iter_mut().all(|s| s.try_wait().unwrap().is_none()),
        "the senders had finished before the outage"
    );
    // While the database is down, a node is not ready (its check gives up after 3 s).
    let probe = reqwest::blocking::Client::new()
        .get(cluster.nodes[0].url("/api/health/ready"))
        .timeout(Duration::from_secs(10))
        .send()
        .unwrap();
    assert_eq!(probe.status(), 503, "ready while the catalog is down");
    postgres.start_again();
    postgres.wait_ready();

    // Each sender ends: every file acknowledged (0: the instances of the outage waited for the
    // database, catalog::POOL_ACQUIRE_TIMEOUT), or some refused with a failure status (3) or
    // its association cut (1) — the transactions in flight when the database went down.
    for (i, sender) in senders.into_iter().enumerate() {
        let out = sender.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) | Some(1) | Some(3) => {}
            other => panic!("sender {i} exited with {other:?}: {}", output_text(&out)),
        }
    }

    // Every node is back by itself: ready, and answering through its own port.
    for (n, node) in cluster.nodes.iter().enumerate() {
        node.wait_for(60, "the node to be ready again", || {
            reqwest::blocking::get(node.url("/api/health/ready"))
                .ok()
                .filter(|r| r.status() == 200)
                .map(|_| ())
        });
        assert!(
            node.instance_total("ward") > 0,
            "node {n} reads the catalog"
        );
    }
    // Everything acknowledged is there, byte for byte.
    assert_acknowledged_served(front, &specs, &outs);
    // Sent again, everything is acknowledged and there once.
    for i in 0..specs.len() {
        send_again(&cluster, tmp.path(), i, count);
    }
    assert_eq!(front.instance_total("ward"), (2 * count) as i64);
    // The refused instances left nothing behind in the bucket.
    let stored = cluster.garage.objects(BUCKET, "instances/");
    assert_eq!(stored.len(), 2 * count, "objects the catalog does not name");
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
    }
}

/// Processes `radport run-job` whose parent is `pid` (the job children of one node).
fn job_children(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid …: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            ppid == Some(pid) && cmdline.windows(7).any(|w| w == b"run-job")
        })
        .count()
}

/// A node killed while a tus upload goes through it, and another killed while it runs the
/// import of that upload: the upload resumes through another node from the last chunk the
/// dead one completed (the chunk cut off in the middle is not counted), and the file is
/// assembled byte for byte; the import run's job is taken over once its lease runs out and
/// the run succeeds on the node left, with every instance imported once.
#[test]
fn uploads_and_import_runs_survive_the_nodes_they_were_on() {
    use crate::uploads::{create, offset, patch};
    use std::io::Write;

    let mut cluster = Cluster::start(
        "uploads_and_import_runs_survive_the_nodes_they_were_on",
        &["--job-lease", "3"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let specs: Vec<SeriesSpec> = (0..3)
        .map(|i| spec(&format!("98{i}"), 120, 256, 256))
        .collect();
    let mut entries = Vec::new();
    let mut files = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let folder = format!("series{i}");
        let written = write_series(&tmp.path().join(&folder), s).unwrap();
        for path in &written {
            let name = format!("{folder}/{}", path.file_name().unwrap().to_string_lossy());
            entries.push((name, read_file(path)));
        }
        files.push(written);
    }
    let zip = tmp.path().join("ward.zip");
    zip_of(&zip, &entries);
    let data = read_file(&zip);
    let half = data.len() / 2;

    // The upload starts on node 0: creation and a first chunk.
    let (status, location) = create(&cluster.nodes[0], data.len(), "ward.zip");
    assert_eq!(status, 201, "creation");
    assert_eq!(patch(&cluster.nodes[0], &location, 0, &data[..half]), 204);
    // The second chunk is cut off by the node's death, part-way through.
    let mut cut = std::net::TcpStream::connect(("127.0.0.1", cluster.nodes[0].http_port)).unwrap();
    write!(
        cut,
        "PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: {half}\r\nContent-Type: application/offset+octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        data.len() - half
    )
    .unwrap();
    cut.write_all(&data[half..half + (data.len() - half) / 2])
        .unwrap();
    cut.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    cluster.nodes[0].kill();
    drop(cut);

    // Through another node: the offset is where the last complete chunk ended.
    let (status, at) = offset(&cluster.nodes[1], &location);
    assert_eq!(
        (status, at),
        (200, Some(half as u64)),
        "offset after the kill"
    );
    assert_eq!(
        patch(&cluster.nodes[1], &location, half as u64, &data[half..]),
        204
    );
    let stored = cluster.front.get_bytes("/api/files/ward.zip");
    assert!(stored == data, "the assembled file differs from the upload");

    // The import run: whichever node starts its job is killed while the job runs.
    let front = &cluster.front;
    front.create_project("ward");
    let (status, run) = front.post_json(
        "/api/workflows/import-dicoms-from-data-upload/runs",
        serde_json::json!({"file": "ward.zip", "project": "ward", "dataset": "imported"}),
    );
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let victim = front.wait_for(60, "a node to run the import", || {
        (1..3).find(|&n| {
            let pid = cluster.nodes[n].child.as_ref().map_or(0, |c| c.id());
            job_children(pid) > 0
                && front.get_json(&format!("/api/workflow-runs/{id}"))["state"] == "running"
        })
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = front.get_json(&format!("/api/workflow-runs/{id}"));
    assert_eq!(
        before["state"], "running",
        "the run ended before the kill: {before}"
    );
    cluster.nodes[victim].kill();

    let done = front.wait_for(120, "the run to end on the node left", || {
        let r = front.get_json(&format!("/api/workflow-runs/{id}"));
        matches!(r["state"].as_str(), Some("succeeded") | Some("failed")).then_some(r)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(front.instance_total("ward"), (3 * 120) as i64);
    let list = front.series("ward", "");
    assert_eq!(list["total"], 3, "{list}");
    for (s, sent) in specs.iter().zip(&files) {
        for i in [0, 60, 119] {
            served_as_sent(front, s, i, &sent[i]);
        }
    }
}

/// The `count=` of every "expired incomplete uploads deleted" line of a node's log.
fn uploads_swept(node: &Server) -> usize {
    node.log()
        .lines()
        .filter(|l| l.contains("expired incomplete uploads deleted"))
        .filter_map(|l| {
            l.split("count=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// The upload sweepers of three nodes at once: every abandoned upload is deleted by exactly one
/// of them (chunks and all), and an upload that goes on receiving chunks through one node after
/// another, for longer than the expiry in all, is never swept and completes.
#[test]
fn three_sweepers_delete_each_expired_upload_once_and_no_live_one() {
    use crate::uploads::{create, offset, patch};

    // 0.001 h = 3.6 s without a new chunk; each node sweeps every 0.9 s.
    let cluster = Cluster::start(
        "three_sweepers_delete_each_expired_upload_once_and_no_live_one",
        &["--upload-expiry-hours", "0.001"],
    );
    let front = &cluster.front;
    let abandoned: Vec<String> = (0..6)
        .map(|i| {
            let node = &cluster.nodes[i % 3];
            let (status, location) = create(node, 1000, &format!("abandoned{i}.bin"));
            assert_eq!(status, 201);
            assert_eq!(patch(node, &location, 0, &[i as u8; 100]), 204);
            location
        })
        .collect();
    assert!(!cluster.garage.objects(BUCKET, "upload-parts/").is_empty());

    // Alive: ten chunks 0.9 s apart (9 s in all, 2.5 expiries), each through the next node.
    let data: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    let (status, live) = create(&cluster.nodes[0], data.len(), "live.bin");
    assert_eq!(status, 201);
    for k in 0..10 {
        let node = &cluster.nodes[k % 3];
        let chunk = &data[k * 100..(k + 1) * 100];
        assert_eq!(
            patch(node, &live, (k * 100) as u64, chunk),
            204,
            "chunk {k} through node {}",
            k % 3
        );
        std::thread::sleep(Duration::from_millis(900));
    }
    assert!(front.get_bytes("/api/files/live.bin") == data, "live.bin");

    // The abandoned ones are gone, each deleted once in the cluster.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<(u16, Option<u64>)> = abandoned.iter().map(|l| offset(front, l)).collect();
        let swept: Vec<usize> = cluster.nodes.iter().map(uploads_swept).collect();
        if left.iter().all(|(status, _)| *status == 404)
            && swept.iter().sum::<usize>() >= abandoned.len()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every abandoned upload was swept: HEAD {left:?}, swept per node {swept:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let per_node: Vec<usize> = cluster.nodes.iter().map(uploads_swept).collect();
    assert_eq!(
        per_node.iter().sum::<usize>(),
        abandoned.len(),
        "uploads deleted per node: {per_node:?}"
    );
    assert_eq!(
        cluster.garage.objects(BUCKET, "upload-parts/"),
        Default::default(),
        "chunks left behind"
    );
    assert!(cluster
        .garage
        .objects(BUCKET, "uploads/live.bin")
        .contains_key("uploads/live.bin"));
}

/// A C-STORE of `file` into project `ward` through the balancer, by pynetdicom from the local
/// address `source` (127.0.0.0/8 is all loopback): 0 stored, 2 association refused.
fn store_from(cluster: &Cluster, source: &str, file: &Path) -> std::process::Output {
    let script = r#"
import sys
from pydicom import dcmread
from pynetdicom import AE
port, source, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ds = dcmread(path)
ae = AE(ae_title="kp-near")
ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
assoc = ae.associate("127.0.0.1", port, ae_title="kp-ward", bind_address=(source, 0))
if not assoc.is_established:
    print("association refused")
    sys.exit(2)
status = assoc.send_c_store(ds)
assoc.release()
print("status", hex(status.Status))
sys.exit(0 if status.Status == 0 else 3)
"#;
    Command::new("python3")
        .args(["-c", script])
        .arg(cluster.front.dicom_port.to_string())
        .arg(source)
        .arg(file)
        .output()
        .expect("python3 with pynetdicom")
}

/// Behind the balancer the nodes see each client's own address (HAProxy's PROXY protocol
/// header, `send-proxy-v2` in deploy/haproxy.cfg): a project's network rule lets one client
/// in and keeps another out though both come through the same balancer, and the log and the
/// audit trail name the client, not the balancer.
#[test]
fn the_balancer_passes_on_each_client_address() {
    let cluster = Cluster::start("the_balancer_passes_on_each_client_address", &[]);
    let front = &cluster.front;
    front.create_project("ward");
    let response = reqwest::blocking::Client::new()
        .put(front.url("/api/projects/ward/dicom-rules"))
        .json(&serde_json::json!({"networks": ["127.0.0.2/32"]}))
        .send()
        .unwrap();
    assert!(response.status().is_success(), "{:?}", response.text());
    let tmp = tempfile::tempdir().unwrap();
    let s = spec("990", 2, 64, 64);
    let files = write_series(tmp.path(), &s).unwrap();

    let near = store_from(&cluster, "127.0.0.2", &files[0]);
    assert_eq!(near.status.code(), Some(0), "{}", output_text(&near));
    let far = store_from(&cluster, "127.0.0.3", &files[1]);
    assert_eq!(far.status.code(), Some(2), "{}", output_text(&far));
    assert_eq!(front.instance_total("ward"), 1);

    let logs: String = cluster.nodes.iter().map(|n| n.log()).collect();
    assert!(
        logs.lines()
            .any(|l| l.contains("association accepted") && l.contains("peer=127.0.0.2:")),
        "the accepted association names its client"
    );
    assert!(
        logs.lines().any(|l| l.contains("association refused")
            && l.contains("address 127.0.0.3 may not store into this project")),
        "the refusal names the client"
    );
    // The audit trail records the client's address.
    let audit = front.get_json("/api/audit?limit=100");
    let text = audit.to_string();
    assert!(text.contains("127.0.0.2"), "{audit:#}");
    assert!(text.contains("127.0.0.3"), "{audit:#}");
}
