//! "C-STORE success ⇒ durable", proven from the receiver's system calls: `radport serve` runs
//! under strace while four `dcmsend` associations store instances; for every success response
//! the instance's data set and its catalog record had reached files whose content, and whose
//! names up to the data directory, a completed `fsync`/`fdatasync` covered before the
//! response's first byte was written (see `radport_testkit::strace` for the model).
//!
//! The three ways an instance becomes durable are held to it: through the ingest journal
//! (`--ingest-durability journal`: the record, from which the catalog row is redone after a
//! crash, is what must be synced — the journal counts as catalog content), into packs
//! (`packs`: the record is the archive's copy and the catalog row is redone from it — the
//! packs count as catalog content too), and straight into the archive and a synced catalog
//! commit (`direct`). Into packs on a PostgreSQL catalog too, where the rows are committed
//! behind the answer by another process: the pack record is what must be synced there.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use radport_testkit::{sop_uid, strace, SeriesSpec};

const SENDERS: usize = 4;
const PER_SENDER: usize = 6;

#[test]
fn every_success_response_follows_the_syncs_that_make_its_instance_durable() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is needed (apt-get install strace)"
    );
    let (journaled, _) = prove(&["--ingest-durability", "journal"]);
    let (packed, written_while_arriving) = prove(&["--ingest-durability", "packs"]);
    let (direct, _) = prove(&["--ingest-durability", "direct"]);
    // The large slices, sent alone, were written into packs while they arrived (native AIO):
    // the proof covered those writes.
    assert!(
        written_while_arriving,
        "no record was written while it arrived"
    );
    // A journal sync per group of instances arriving together instead of three syncs each
    // (the journal's run also makes its segments and checkpoints every second).
    assert!(
        journaled < direct && packed < direct,
        "{journaled} syncs through the journal, {packed} into packs, {direct} without"
    );
}

/// The same into packs on a PostgreSQL catalog, whose rows are committed behind the answer
/// (in the database's process, not traced): the pack record, synced before the answer, is
/// what they are recorded from after a crash, as on SQLite.
#[test]
fn on_postgres_every_success_response_follows_the_syncs_of_its_pack_record() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is needed (apt-get install strace)"
    );
    let database = crate::distributed::PgDb::new("durability_packs");
    let (syncs, written_while_arriving) = prove(&[
        "--ingest-durability",
        "packs",
        "--catalog-url",
        database.url(),
    ]);
    assert!(syncs > 0 && written_while_arriving);
}

/// Stores through a traced server started with `extra_args`, checks every acknowledgement
/// against the model, and returns how many syncs the server made and whether it wrote
/// through native AIO (`io_submit`).
fn prove(extra_args: &[&str]) -> (usize, bool) {
    let work = tempfile::tempdir().expect("tempdir");
    let trace = work.path().join("trace.log");
    // The pipeline waits: the trace covers ingest.
    let mut args = vec!["--stable-after", "3600"];
    args.extend_from_slice(extra_args);
    let mut server = Server::start_traced(&args, &trace);

    let mut datasets: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut dirs = Vec::new();
    for sender in 0..SENDERS {
        // The first sender's slices are 512 × 512 (0.5 MB, a CT slice: large enough for
        // what a pack record does with a whole instance), the others' small. It sends
        // alone, after the others: a record made alone is written while it arrives.
        let side = if sender == 0 {
            512
        } else {
            32 + 16 * sender as u16
        };
        let spec = SeriesSpec {
            count: PER_SENDER,
            rows: side,
            columns: side,
            uid_seed: format!("77{sender}"),
            ..SeriesSpec::default()
        };
        let dir = work.path().join(format!("series{sender}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let files = radport_testkit::write_series(&dir, &spec).expect("series");
        for (index, file) in files.iter().enumerate() {
            let bytes = read_file(file);
            datasets.insert(sop_uid(&spec, index), dataset_bytes(&bytes).to_vec());
        }
        dirs.push(dir);
    }
    std::thread::scope(|scope| {
        for (sender, dir) in dirs.iter().enumerate().skip(1) {
            let server = &server;
            scope.spawn(move || {
                let out = server.dcmsend(&format!("kp-durable{sender}"), "kp-admin", dir);
                assert!(out.status.success(), "{}", output_text(&out));
            });
        }
    });
    let out = server.dcmsend("kp-durable0", "kp-admin", &dirs[0]);
    assert!(out.status.success(), "{}", output_text(&out));
    let expected = (SENDERS * PER_SENDER) as i64;
    server.wait_for(60, "every instance in the catalog", || {
        (server.instance_total("admin") == expected).then_some(())
    });
    server.stop();

    let log = std::fs::read_to_string(&trace).expect("trace");
    let catalog_file = server.data_dir.join("catalog.db");
    let catalog_prefix = catalog_file.to_string_lossy().into_owned();
    let journal_prefix = format!("{}/", server.data_dir.join("journal").display());
    let packs_prefix = format!("{}/", server.data_dir.join("archive/packs").display());
    let is_catalog = |path: &str| {
        path.starts_with(&catalog_prefix)
            || path.starts_with(&journal_prefix)
            || path.starts_with(&packs_prefix)
    };
    let report = strace::check(&log, &datasets, &is_catalog);
    assert!(
        report.unmodelled.is_empty(),
        "calls the model does not cover: {:?}",
        report.unmodelled
    );
    let acknowledged: std::collections::BTreeSet<&str> = report
        .acknowledged
        .iter()
        .map(|a| a.sop_instance_uid.as_str())
        .collect();
    assert_eq!(
        acknowledged.len(),
        datasets.len(),
        "a success response for every instance sent"
    );
    let violations: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert!(
        violations.is_empty(),
        "{} of {} acknowledged too early:\n{}\n(trace: {})",
        violations.len(),
        report.acknowledged.len(),
        violations.join("\n"),
        keep(&trace)
    );
    assert!(report.syncs > 0);
    (report.syncs, log.contains("io_submit("))
}

/// Keeps a failing run's trace for inspection; returns where.
fn keep(trace: &Path) -> String {
    let kept = std::env::temp_dir().join("radport-durability-trace.log");
    match std::fs::copy(trace, &kept) {
        Ok(_) => kept.display().to_string(),
        Err(e) => format!("not kept: {e}"),
    }
}
