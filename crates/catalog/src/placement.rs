//! Which projects hold a series: copying a series into another project, moving it, and
//! taking it out of one. The series' instances stay where they are; only the mappings
//! (`series_projects`, `series_datasets`) change, so every read path sees the change at once.

use sqlx::Row;

use crate::{name_key, now, Catalog, CatalogError, ADMIN_PROJECT};

/// Dataset a series gets in its new project when it had none to carry over and none is named.
pub const DEFAULT_PLACED_DATASET: &str = "placed";

/// Where a series goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The series.
    pub series_uid: &'a str,
    /// The project it is in now.
    pub from: &'a str,
    /// The project it goes to (not `admin`, which holds every series already).
    pub to: &'a str,
    /// The dataset it goes to in `to` (created if missing); `None`: the datasets it has in
    /// `from`, or [`DEFAULT_PLACED_DATASET`] if it has none there.
    pub dataset: Option<&'a str>,
    /// Take it out of `from` (a move) or not (a copy).
    pub remove_from_source: bool,
}

impl Catalog {
    /// Copies or moves a series between projects in one transaction. Errors: `NotFound` when
    /// a project is missing or the series is not in `from`; `Invalid` for `to` = `admin` or
    /// `from` = `to`, or a move out of `admin`.
    pub async fn place_series(&self, placement: &Placement<'_>) -> Result<(), CatalogError> {
        let from = name_key("project", placement.from)?;
        let to = name_key("project", placement.to)?;
        if to == ADMIN_PROJECT {
            return Err(CatalogError::Invalid(
                "project admin holds every series already".into(),
            ));
        }
        if from == to {
            return Err(CatalogError::Invalid(
                "the series is in that project already".into(),
            ));
        }
        if placement.remove_from_source && from == ADMIN_PROJECT {
            return Err(CatalogError::Invalid(
                "a series cannot leave project admin (erase it instead)".into(),
            ));
        }
        let dataset_given = match placement.dataset {
            Some(d) => Some((name_key("dataset", d)?, d.to_string())),
            None => None,
        };
        let at = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        for key in [&from, &to] {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT name FROM projects WHERE name_key = $1")
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(CatalogError::NotFound(format!("project {key:?}")));
            }
        }
        let held: Option<String> = sqlx::query_scalar(
            "SELECT series_uid FROM series_projects WHERE series_uid = $1 AND project_key = $2",
        )
        .bind(placement.series_uid)
        .bind(&from)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Err(CatalogError::NotFound(format!(
                "series {} in project {:?}",
                placement.series_uid, placement.from
            )));
        }
        let datasets: Vec<(String, String)> = match dataset_given {
            Some(d) => vec![d],
            None => {
                let rows = sqlx::query(
                    "SELECT d.name_key, d.name FROM series_datasets sd \
                     JOIN datasets d ON d.project_key = sd.project_key \
                       AND d.name_key = sd.dataset_key \
                     WHERE sd.series_uid = $1 AND sd.project_key = $2 ORDER BY d.name_key",
                )
                .bind(placement.series_uid)
                .bind(&from)
                .fetch_all(&mut *tx)
                .await?;
                let found = rows
                    .iter()
                    .map(|r| Ok((r.try_get("name_key")?, r.try_get("name")?)))
                    .collect::<Result<Vec<(String, String)>, sqlx::Error>>()?;
                if found.is_empty() {
                    vec![(
                        DEFAULT_PLACED_DATASET.to_string(),
                        DEFAULT_PLACED_DATASET.to_string(),
                    )]
                } else {
                    found
                }
            }
        };
        sqlx::query(
            "INSERT INTO series_projects (series_uid, project_key, added_at) VALUES ($1, $2, $3) \
             ON CONFLICT (series_uid, project_key) DO NOTHING",
        )
        .bind(placement.series_uid)
        .bind(&to)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        for (key, name) in &datasets {
            sqlx::query(
                "INSERT INTO datasets (project_key, name_key, name, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (project_key, name_key) DO NOTHING",
            )
            .bind(&to)
            .bind(key)
            .bind(name)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO series_datasets \
                 (series_uid, project_key, dataset_key, added_at, last_arrival) \
                 SELECT $1, $2, $3, $4, last_arrival FROM series WHERE series_uid = $1 \
                 ON CONFLICT (series_uid, project_key, dataset_key) DO NOTHING",
            )
            .bind(placement.series_uid)
            .bind(&to)
            .bind(key)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        }
        if placement.remove_from_source {
            remove_mapping(&mut tx, placement.series_uid, &from).await?;
        }
        tx.commit().await?;
        tracing::info!(
            series = placement.series_uid,
            from = placement.from,
            to = placement.to,
            moved = placement.remove_from_source,
            "series placed"
        );
        Ok(())
    }

    /// Takes a series out of a project (not `admin`; the series stays in the archive and in
    /// its other projects). `false`: it was not in that project.
    pub async fn remove_series_from_project(
        &self,
        series_uid: &str,
        project: &str,
    ) -> Result<bool, CatalogError> {
        let key = name_key("project", project)?;
        if key == ADMIN_PROJECT {
            return Err(CatalogError::Invalid(
                "a series cannot leave project admin (erase it instead)".into(),
            ));
        }
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let removed = remove_mapping(&mut tx, series_uid, &key).await?;
        tx.commit().await?;
        Ok(removed)
    }
}

async fn remove_mapping(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    series_uid: &str,
    project_key: &str,
) -> Result<bool, CatalogError> {
    sqlx::query("DELETE FROM series_datasets WHERE series_uid = $1 AND project_key = $2")
        .bind(series_uid)
        .bind(project_key)
        .execute(&mut **tx)
        .await?;
    let done =
        sqlx::query("DELETE FROM series_projects WHERE series_uid = $1 AND project_key = $2")
            .bind(series_uid)
            .bind(project_key)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() > 0)
}
