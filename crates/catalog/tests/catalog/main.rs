//! The catalog's integration tests, one binary with a module per area, against a real SQLite
//! file in a temporary directory and against a fresh database on the PostgreSQL server of
//! `RADPORT_TEST_POSTGRES_URL` (required: without it the PostgreSQL variants fail;
//! scripts/test.sh starts a server). Every test body is a function taking a URL; `both!`
//! generates one test per backend.

use std::collections::BTreeSet;
use std::time::Duration;

use radport_catalog::{
    Catalog, CatalogError, CatalogOptions, Dialect, DuplicatePolicy, InstanceRecord, RecordOutcome,
    Route, SeriesFilter, StoredFinding, SCHEMA_VERSION,
};

// ----- harness -----------------------------------------------------------------------------

struct SqliteDb {
    _dir: tempfile::TempDir,
    url: String,
}

impl SqliteDb {
    fn new() -> SqliteDb {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("catalog.db").display());
        SqliteDb { _dir: dir, url }
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = crate::SqliteDb::new();
                super::$name(&db.url).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = radport_testkit::postgres::TestDatabase::create(stringify!($name)).await;
                super::$name(&db.url).await;
                db.drop_database().await;
            }
        }
    };
}

// ----- helpers -----------------------------------------------------------------------------

fn rec(study: &str, series: &str, sop: &str) -> InstanceRecord {
    InstanceRecord {
        sop_instance_uid: sop.to_string(),
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".to_string(),
        series_instance_uid: series.to_string(),
        study_instance_uid: study.to_string(),
        transfer_syntax_uid: "1.2.840.10008.1.2.1".to_string(),
        patient_id: Some("PID-1".to_string()),
        patient_name: Some("Doe^John".to_string()),
        modality: Some("CT".to_string()),
        study_date: Some("20240110".to_string()),
        size: 1000,
        checksum: format!("blake3:{sop}"),
        object_key: format!("objects/{sop}"),
        metadata_json: format!(r#"{{"00080018":{{"vr":"UI","Value":["{sop}"]}}}}"#),
        source: "test".to_string(),
        ..Default::default()
    }
}

fn route(project: &str, dataset: &str) -> Route {
    Route {
        project: project.to_string(),
        dataset: dataset.to_string(),
    }
}

fn all() -> SeriesFilter {
    SeriesFilter::default()
}

async fn uids(c: &Catalog, project: &str, filter: SeriesFilter) -> Vec<String> {
    c.list_series(project, &filter)
        .await
        .expect("list_series")
        .items
        .into_iter()
        .map(|s| s.series_instance_uid)
        .collect()
}

async fn record(c: &Catalog, r: &InstanceRecord, to: &Route, p: DuplicatePolicy) -> RecordOutcome {
    c.record_instance(r, to, p).await.expect("record_instance")
}

// ----- areas ---------------------------------------------------------------------------------

mod counts;
mod destinations;
mod erasure;
mod jobs;
mod projects;
mod recording;
mod schema;
mod search;
mod series;
mod uploads;
mod users;
