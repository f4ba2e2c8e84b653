//! Nothing acknowledged is lost, nothing unreferenced is kept: `radport serve` is killed with
//! SIGKILL at random moments while four associations store instances; after each restart on
//! the same data directory every instance whose C-STORE-RSP said success is served byte for
//! byte, and after a collection (`radport collect`, grace 0) the archive holds exactly what the
//! catalog references, with no staging file left.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;
use radport_testkit::{series_uid, sop_uid, write_series, SeriesSpec};

const ROUNDS: usize = 20;
const SENDERS: usize = 4;

/// An acknowledged instance: its series and the data-set bytes sent.
struct Acked {
    series: String,
    dataset: Vec<u8>,
}

/// xorshift64*: enough randomness for kill times, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

fn dataset_of(spec: &SeriesSpec, index: usize) -> Vec<u8> {
    let obj = radport_testkit::ct_slice(spec, index);
    let mut out = Vec::new();
    obj.write_dataset_with_ts(
        &mut out,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .expect("encode data set");
    out
}

/// One sender: stores instances until the server goes away; returns the acknowledged ones.
fn send_until_killed(port: u16, round: usize, sender: usize) -> Vec<(String, Acked)> {
    // Sizes from one PDU to beyond the archive's 1 MiB local write buffer (written in parts,
    // through a staging file a kill leaves behind).
    let side = [64u16, 128, 256, 768][sender];
    let spec = SeriesSpec {
        count: 10_000,
        rows: side,
        columns: side,
        uid_seed: format!("8{round:02}{sender}"),
        ..Default::default()
    };
    let series = series_uid(&spec);
    let mut acked = Vec::new();
    let Ok(mut client) = RawClient::connect(port, &format!("kp-crash{sender}"), "kp-admin") else {
        return acked;
    };
    for index in 0.. {
        let sop = sop_uid(&spec, index);
        let dataset = dataset_of(&spec, index);
        match client.try_store(&sop, &dataset) {
            Ok(0x0000) => acked.push((
                sop,
                Acked {
                    series: series.clone(),
                    dataset,
                },
            )),
            Ok(status) => panic!("C-STORE of {sop} answered {status:#06x}"),
            Err(_) => break,
        }
    }
    acked
}

/// Every acknowledged instance is served, and its data set is the one sent.
fn check_all_served(server: &Server, acked: &HashMap<String, Acked>) {
    for (sop, instance) in acked {
        let (status, _) = server.get_status(&format!("/api/series/{}", instance.series));
        assert_eq!(status, 200, "series of acknowledged {sop} is catalogued");
        let stored = server.get_bytes(&format!("/api/series/{}/instances/{sop}", instance.series));
        assert!(
            dataset_bytes(&stored) == instance.dataset.as_slice(),
            "acknowledged {sop}: stored bytes differ from those sent"
        );
    }
}

/// Files under `dir`, as `/`-separated paths relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                out.insert(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out
}

fn is_staging_file(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// (object keys, SOP Instance UIDs) the catalog holds: the one at `catalog_url`, else the
/// data directory's SQLite file.
fn catalogued(data_dir: &Path, catalog_url: Option<&str>) -> (BTreeSet<String>, BTreeSet<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let url = match catalog_url {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}?mode=ro", data_dir.join("catalog.db").display()),
        };
        let pool = sqlx::AnyPool::connect(&url).await.expect("catalog");
        let rows = sqlx::query("SELECT object_key, sop_instance_uid FROM instances")
            .fetch_all(&pool)
            .await
            .expect("instances");
        pool.close().await;
        rows.iter()
            .map(|r| {
                (
                    r.try_get::<String, _>(0).expect("key"),
                    r.try_get::<String, _>(1).expect("uid"),
                )
            })
            .unzip()
    })
}

#[test]
fn sigkill_loses_nothing_acknowledged_and_collection_keeps_nothing_unreferenced() {
    sigkill_rounds(&["--ingest-durability", "direct"]);
}

/// The same behind the ingest journal: what a kill cut off is redone from it at the restart.
#[test]
fn sigkill_behind_the_journal_loses_nothing_and_leaves_nothing_unreferenced() {
    sigkill_rounds(&["--ingest-durability", "journal"]);
}

/// The same into packs: what a kill cut off of the catalog is recorded again from the packs;
/// every record in them is referenced once the collector has punched the others.
#[test]
fn sigkill_into_packs_loses_nothing_and_leaves_nothing_unreferenced() {
    sigkill_rounds(&["--ingest-durability", "packs"]);
}

/// The same into packs on a PostgreSQL catalog, whose rows are recorded behind the answer
/// too (through its group commit rather than SQLite's group recorder).
#[test]
fn sigkill_into_packs_on_postgres_loses_nothing_and_leaves_nothing_unreferenced() {
    let database = crate::distributed::PgDb::new("sigkill_into_packs");
    sigkill_rounds(&[
        "--ingest-durability",
        "packs",
        "--catalog-url",
        database.url(),
    ]);
}

/// The keys of the records in the packs of `archive` (behind their checkpoint).
fn packed_records(archive: &Path) -> BTreeSet<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use futures::TryStreamExt;
        let archive = radport_archive::Archive::local(archive).expect("archive");
        let listed: Vec<radport_archive::ListedObject> =
            archive.list_packed().try_collect().await.expect("packs");
        listed.into_iter().map(|o| o.key).collect()
    })
}

fn sigkill_rounds(extra_args: &[&str]) {
    let started = Instant::now();
    let catalog_url = extra_args
        .iter()
        .position(|a| *a == "--catalog-url")
        .and_then(|i| extra_args.get(i + 1))
        .copied();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("kill-time seed {seed}");
    let mut rng = Rng(seed);
    let mut server = Server::start(extra_args);
    let acked: Mutex<HashMap<String, Acked>> = Mutex::new(HashMap::new());
    for round in 0..ROUNDS {
        let port = server.dicom_port;
        let kill_after = Duration::from_millis(rng.between(50, 800));
        let child = server.child.take().expect("server running");
        let acked_now: Vec<(String, Acked)> = std::thread::scope(|scope| {
            let senders: Vec<_> = (0..SENDERS)
                .map(|sender| scope.spawn(move || send_until_killed(port, round, sender)))
                .collect();
            std::thread::sleep(kill_after);
            let mut child = child;
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
            senders
                .into_iter()
                .flat_map(|s| s.join().expect("sender"))
                .collect()
        });
        let count = acked_now.len();
        let this_round: HashMap<String, Acked> = acked_now.into_iter().collect();
        server.restart();
        check_all_served(&server, &this_round);
        eprintln!(
            "round {round}: killed after {} ms, {count} acknowledged",
            kill_after.as_millis()
        );
        acked.lock().expect("acked").extend(this_round);
    }
    let acked = acked.into_inner().expect("acked");
    assert!(
        acked.len() >= ROUNDS,
        "too few instances were acknowledged to test anything: {}",
        acked.len()
    );

    // Collect with no grace while nothing is received: the server is stopped.
    server.stop();
    let archive = server.data_dir.join("archive");
    let before = files_under(&archive);
    let staged_before = before.iter().filter(|k| is_staging_file(k)).count();
    let mut collect = std::process::Command::new(env!("CARGO_BIN_EXE_radport"));
    collect
        .args(["collect", "--orphan-grace", "0s", "--data-dir"])
        .arg(&server.data_dir);
    if let Some(url) = catalog_url {
        collect.args(["--catalog-url", url]);
    }
    let output = collect.output().expect("radport collect runs");
    assert!(output.status.success(), "{}", output_text(&output));
    eprintln!(
        "{} files before the collection, {staged_before} of them staging files; {}",
        before.len(),
        String::from_utf8_lossy(&output.stdout).trim()
    );

    let (keys, sops) = catalogued(&server.data_dir, catalog_url);
    let (packed, keys): (BTreeSet<String>, BTreeSet<String>) = keys
        .into_iter()
        .partition(|k| radport_archive::keys::parse_packed(k).is_some());
    let into_packs = extra_args.contains(&"packs");
    assert_eq!(
        !packed.is_empty(),
        into_packs,
        "instances are in packs only with packs"
    );
    let records = packed_records(&archive);
    let unreferenced: Vec<&String> = records.difference(&packed).collect();
    assert!(
        unreferenced.is_empty(),
        "records in packs no catalog row references: {unreferenced:?}"
    );
    let missing: Vec<&String> = packed.difference(&records).collect();
    assert!(
        missing.is_empty(),
        "catalogued records missing: {missing:?}"
    );
    let instances: BTreeSet<String> = files_under(&archive.join("instances"))
        .into_iter()
        .map(|k| format!("instances/{k}"))
        .collect();
    let unreferenced: Vec<&String> = instances.difference(&keys).collect();
    assert!(
        unreferenced.is_empty(),
        "objects no catalog row references: {unreferenced:?}"
    );
    let missing: Vec<&String> = keys.difference(&instances).collect();
    assert!(
        missing.is_empty(),
        "catalogued objects missing: {missing:?}"
    );
    let staged: Vec<String> = files_under(&archive)
        .into_iter()
        .filter(|k| is_staging_file(k))
        .collect();
    assert!(staged.is_empty(), "staging files left: {staged:?}");
    let scratch = files_under(&server.data_dir.join("scratch"));
    assert!(scratch.is_empty(), "scratch files left: {scratch:?}");
    let lost: Vec<&String> = acked.keys().filter(|sop| !sops.contains(*sop)).collect();
    assert!(lost.is_empty(), "acknowledged but not catalogued: {lost:?}");

    server.restart();
    check_all_served(&server, &acked);
    eprintln!(
        "{} acknowledged instances over {ROUNDS} kills, all intact, in {:.1} s",
        acked.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A server killed behind its journal and started again without it: what the journal held
/// is redone all the same, then the journal is removed; nothing acknowledged is lost.
#[test]
fn a_journal_left_behind_is_redone_when_the_journal_is_switched_off() {
    let mut server = Server::start(&["--ingest-durability", "journal"]);
    let tmp = tempfile::tempdir().unwrap();
    let spec = SeriesSpec {
        count: 6,
        uid_seed: "991".into(),
        ..SeriesSpec::default()
    };
    write_series(tmp.path(), &spec).unwrap();
    let out = server.dcmsend("kp-left", "kp-admin", tmp.path());
    assert!(out.status.success(), "{}", output_text(&out));
    server.kill();
    let journal = server.data_dir.join("journal");
    assert!(journal.is_dir());
    server.restart_with(&["--ingest-durability", "direct"]);
    assert!(!journal.exists(), "the journal is removed");
    assert_eq!(server.instance_total("admin"), 6);
    assert!(
        server.log().contains("emptied and removed"),
        "{}",
        server.log()
    );
}

/// `radport serve` collects on its own every --collect-interval: an orphan instance file, a
/// staging file and a dead process's scratch copy go; the stored instance stays.
/// (`--collect-interval 0` runs none.)
#[test]
fn serve_collects_every_interval() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let day = data.join("archive/instances/2020/01/01");
    std::fs::create_dir_all(&day).expect("archive dir");
    std::fs::write(day.join("orphan.dcm"), b"left by a kill").expect("orphan");
    std::fs::write(day.join("partial.dcm#1"), b"half").expect("staging file");
    std::fs::create_dir_all(data.join("scratch")).expect("scratch dir");
    std::fs::write(data.join("scratch/.tmpDEAD"), b"zip").expect("scratch file");
    let data_arg = data.to_string_lossy().into_owned();
    // Stored before collections run: with no grace, a collection that lists an instance
    // between its write and its commit would take it for an orphan.
    let mut server = Server::start(&["--data-dir", &data_arg, "--collect-interval", "0"]);
    let spec = SeriesSpec {
        count: 1,
        uid_seed: "8991".into(),
        ..Default::default()
    };
    let dataset = dataset_of(&spec, 0);
    let mut client =
        RawClient::connect(server.dicom_port, "kp-collect", "kp-admin").expect("connect");
    assert_eq!(client.try_store(&sop_uid(&spec, 0), &dataset), Ok(0));
    client.release();
    server.restart_with(&["--collect-interval", "1s", "--orphan-grace", "0s"]);
    server.wait_for(30, "the collection", || {
        let left = day.join("orphan.dcm").exists()
            || day.join("partial.dcm#1").exists()
            || data.join("scratch/.tmpDEAD").exists();
        (!left).then_some(())
    });
    let stored = server.get_bytes(&format!(
        "/api/series/{}/instances/{}",
        series_uid(&spec),
        sop_uid(&spec, 0)
    ));
    assert!(dataset_bytes(&stored) == dataset.as_slice());
    assert!(server.log().contains("collected unreferenced objects"));
}
