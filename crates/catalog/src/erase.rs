//! Erasure: a series, a study or a patient leaves the catalog with everything recorded about
//! it. The archive objects its rows named are returned, for the caller to delete; whatever
//! is not deleted then is an orphan the collector removes later.

use std::collections::BTreeSet;

use sqlx::Row;

use crate::{name_key, Catalog, CatalogError, ADMIN_PROJECT};

/// What an erasure names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject<'a> {
    /// One series, by its Series Instance UID.
    Series(&'a str),
    /// Every series of a study, by its Study Instance UID.
    Study(&'a str),
    /// Every series of a patient, by Patient ID.
    Patient(&'a str),
}

/// What an erasure removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    /// Series removed.
    pub series: Vec<String>,
    /// Instances removed.
    pub instances: u64,
    /// Studies removed (they had no other series left).
    pub studies: u64,
    /// Patients removed (they had no other study left).
    pub patients: u64,
    /// The archive objects the removed instance rows named (a series' thumbnail and report
    /// are named by its UID, which the archive knows how to turn into keys).
    pub object_keys: Vec<String>,
}

/// Statements that remove a series' rows other than its instances and itself, each bound to
/// the series UID. Jobs that are running are left to finish (and fail: their series is gone);
/// what they write then is an orphan for the collector.
const SERIES_DEPENDENTS: &[&str] = &[
    "DELETE FROM series_datasets WHERE series_uid = $1",
    "DELETE FROM series_projects WHERE series_uid = $1",
    "DELETE FROM series_pipeline WHERE series_uid = $1",
    "DELETE FROM series_validation WHERE series_uid = $1",
    "DELETE FROM validation_findings WHERE series_uid = $1",
    "DELETE FROM series_references WHERE series_uid = $1 OR referenced_series_uid = $1",
    "DELETE FROM jobs WHERE series_uid = $1 AND state <> 'running'",
];

impl Catalog {
    /// The series a subject covers, sorted (empty: nothing of it is catalogued).
    pub async fn series_of(&self, subject: Subject<'_>) -> Result<Vec<String>, CatalogError> {
        let (sql, value) = match subject {
            Subject::Series(uid) => ("SELECT series_uid FROM series WHERE series_uid = $1", uid),
            Subject::Study(uid) => ("SELECT series_uid FROM series WHERE study_uid = $1", uid),
            Subject::Patient(id) => (
                "SELECT series_uid FROM series WHERE patient_id = $1 \
                 UNION SELECT s.series_uid FROM series s \
                   JOIN studies st ON st.study_uid = s.study_uid WHERE st.patient_id = $1",
                id,
            ),
        };
        let rows = sqlx::query(sql).bind(value).fetch_all(&self.pool).await?;
        let mut uids = rows
            .iter()
            .map(|r| r.try_get::<String, _>("series_uid"))
            .collect::<Result<Vec<_>, _>>()?;
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    /// The canonical names of the projects any of `series` is mapped to, sorted.
    pub async fn projects_of_series_set(
        &self,
        series: &[String],
    ) -> Result<Vec<String>, CatalogError> {
        let mut projects = BTreeSet::new();
        for uid in series {
            projects.extend(self.projects_of_series(uid).await?);
        }
        Ok(projects.into_iter().collect())
    }

    /// Erases `series` in one transaction: their instances, project and dataset mappings,
    /// validation results, references, pending jobs and the series rows; then the studies
    /// and patients left without series. Returns what went, with the archive keys to delete.
    pub async fn erase_series(&self, series: &[String]) -> Result<Erased, CatalogError> {
        let mut erased = Erased::default();
        let mut studies = BTreeSet::new();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        for uid in series {
            let Some(study) = sqlx::query_scalar::<_, String>(
                "SELECT study_uid FROM series WHERE series_uid = $1",
            )
            .bind(uid)
            .fetch_optional(&mut *tx)
            .await?
            else {
                continue; // erased by someone else meanwhile
            };
            let keys: Vec<String> =
                sqlx::query_scalar("SELECT object_key FROM instances WHERE series_uid = $1")
                    .bind(uid)
                    .fetch_all(&mut *tx)
                    .await?;
            erased.instances += keys.len() as u64;
            erased.object_keys.extend(keys);
            sqlx::query("DELETE FROM instances WHERE series_uid = $1")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            for statement in SERIES_DEPENDENTS {
                sqlx::query(*statement).bind(uid).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM series WHERE series_uid = $1")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            erased.series.push(uid.clone());
            studies.insert(study);
        }
        let mut patients = BTreeSet::new();
        for study in &studies {
            let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM series WHERE study_uid = $1")
                .bind(study)
                .fetch_one(&mut *tx)
                .await?;
            if left > 0 {
                continue;
            }
            let patient: Option<Option<String>> =
                sqlx::query_scalar("SELECT patient_id FROM studies WHERE study_uid = $1")
                    .bind(study)
                    .fetch_optional(&mut *tx)
                    .await?;
            sqlx::query("DELETE FROM studies WHERE study_uid = $1")
                .bind(study)
                .execute(&mut *tx)
                .await?;
            erased.studies += 1;
            if let Some(Some(patient)) = patient {
                patients.insert(patient);
            }
        }
        for patient in &patients {
            let left: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM studies WHERE patient_id = $1) \
                      + (SELECT COUNT(*) FROM series WHERE patient_id = $1)",
            )
            .bind(patient)
            .fetch_one(&mut *tx)
            .await?;
            if left == 0 {
                let done = sqlx::query("DELETE FROM patients WHERE patient_id = $1")
                    .bind(patient)
                    .execute(&mut *tx)
                    .await?;
                erased.patients += done.rows_affected();
            }
        }
        tx.commit().await?;
        if !erased.series.is_empty() {
            tracing::info!(
                series = erased.series.len(),
                instances = erased.instances,
                "series erased from the catalog"
            );
        }
        Ok(erased)
    }

    /// The series of `project` that no other project holds (`admin` holds every series and
    /// does not count), sorted.
    pub async fn unshared_series(&self, project: &str) -> Result<Vec<String>, CatalogError> {
        let key = name_key("project", project)?;
        let rows = sqlx::query(
            "SELECT sp.series_uid FROM series_projects sp WHERE sp.project_key = $1 \
             AND NOT EXISTS (SELECT 1 FROM series_projects o WHERE o.series_uid = sp.series_uid \
               AND o.project_key <> $1 AND o.project_key <> $2) \
             ORDER BY sp.series_uid",
        )
        .bind(&key)
        .bind(ADMIN_PROJECT)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get("series_uid"))
            .collect::<Result<_, _>>()?)
    }
}
