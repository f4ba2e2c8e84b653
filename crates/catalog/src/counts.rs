//! Series counts kept by the writes: how many series each project (and each dataset of it) has
//! per modality, body part and validation state, so that the gallery's totals and facets under
//! those filters read a few hundred rows instead of counting up to every series.
//!
//! Two tables, kept by database triggers so that every path that changes a series or a
//! membership (recording, validation, placement, erasure, project deletion, cascades) keeps
//! them without knowing of them:
//!
//! - `series_counted`: what each series is counted as — one row per *count key* of the series
//!   (`admin` with dataset `''` for every series; each other project it is in, with `''`; each
//!   (project, dataset) membership outside `admin`; `admin` with each dataset name it has in any
//!   project, once) with the modality, body part and validation state it was counted with.
//! - `series_counts`: signed deltas per (project, dataset, modality, body part, validation);
//!   a count is the sum of its rows. Writers only append (no row every writer updates, so
//!   concurrent PostgreSQL transactions never wait on each other here); [`Catalog::fold_series_counts`]
//!   replaces the rows of each key by their sum now and then.
//!
//! A trigger does not apply the change it sees; it *recounts* the series: it compares what the
//! series should be counted as now (its memberships and columns) with `series_counted`, appends
//! the difference to `series_counts` and updates `series_counted`. Recounting is idempotent and
//! does not depend on the order of events, which matters on PostgreSQL: its triggers run at the
//! end of a statement (statement-level, over the transition tables), after the group commit's
//! one statement has inserted a series, its memberships and updated other series at once. Each
//! recount first locks the series' rows (`FOR NO KEY UPDATE`), so recounts of one series in
//! concurrent transactions run one after the other and each sees the other's committed result.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{Catalog, CatalogError, Dialect, ADMIN_PROJECT};

/// The validation state of series `s` as a small integer: bit 0 validated, bit 1 has errors,
/// bit 2 has warnings (see [`ValidationBits`]).
macro_rules! validation_code {
    ($s:literal) => {
        concat!(
            "(CASE WHEN ",
            $s,
            ".validation_errors IS NULL THEN 0 ELSE 1 END \
              + CASE WHEN COALESCE(",
            $s,
            ".validation_errors, 0) > 0 THEN 2 ELSE 0 END \
              + CASE WHEN COALESCE(",
            $s,
            ".validation_warnings, 0) > 0 THEN 4 ELSE 0 END)"
        )
    };
}

/// The validation state as stored in the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ValidationBits(pub(crate) i64);

impl ValidationBits {
    pub(crate) fn validated(self) -> bool {
        self.0 & 1 != 0
    }
    pub(crate) fn errors(self) -> bool {
        self.0 & 2 != 0
    }
    pub(crate) fn warnings(self) -> bool {
        self.0 & 4 != 0
    }
}

/// The rows `series_counted` should hold for the series whose `series_uid` satisfies
/// `uid_condition` (e.g. `= NEW.series_uid`): its count keys with its current columns.
fn desired_rows(uid_condition: &str) -> String {
    let admin = ADMIN_PROJECT;
    let code = validation_code!("s");
    format!(
        "SELECT k.series_uid AS series_uid, k.project_key AS project_key, \
           k.dataset_key AS dataset_key, COALESCE(s.modality, '') AS modality, \
           COALESCE(s.body_part_examined, '') AS body_part, {code} AS validation \
         FROM (SELECT series_uid, '{admin}' AS project_key, '' AS dataset_key FROM series \
                 WHERE series_uid {uid_condition} \
               UNION SELECT series_uid, project_key, '' FROM series_projects \
                 WHERE series_uid {uid_condition} AND project_key <> '{admin}' \
               UNION SELECT series_uid, project_key, dataset_key FROM series_datasets \
                 WHERE series_uid {uid_condition} AND project_key <> '{admin}' \
               UNION SELECT series_uid, '{admin}', dataset_key FROM series_datasets \
                 WHERE series_uid {uid_condition}) k \
         JOIN series s ON s.series_uid = k.series_uid"
    )
}

const COUNTED_COLUMNS: &str =
    "series_uid, project_key, dataset_key, modality, body_part, validation";
const KEY_COLUMNS: &str = "project_key, dataset_key, modality, body_part, validation";

/// The recount of the series satisfying `uid_condition`, as statements run in order: the
/// difference between what they are counted as and what they should be appended to the
/// counts, then `series_counted` brought in line.
fn recount_statements(uid_condition: &str) -> [String; 3] {
    let desired = desired_rows(uid_condition);
    [
        format!(
            "INSERT INTO series_counts ({KEY_COLUMNS}, n, folded) \
             SELECT {KEY_COLUMNS}, SUM(n), 0 FROM ( \
               SELECT {KEY_COLUMNS}, -1 AS n FROM ( \
                 SELECT {COUNTED_COLUMNS} FROM series_counted WHERE series_uid {uid_condition} \
                 EXCEPT {desired}) gone \
               UNION ALL \
               SELECT {KEY_COLUMNS}, 1 AS n FROM ( \
                 {desired} EXCEPT \
                 SELECT {COUNTED_COLUMNS} FROM series_counted WHERE series_uid {uid_condition}) came \
             ) d GROUP BY {KEY_COLUMNS} HAVING SUM(n) <> 0"
        ),
        format!(
            "DELETE FROM series_counted WHERE series_uid {uid_condition} \
             AND ({COUNTED_COLUMNS}) NOT IN (SELECT {COUNTED_COLUMNS} FROM ({desired}) d)"
        ),
        format!(
            "INSERT INTO series_counted ({COUNTED_COLUMNS}) \
             SELECT {COUNTED_COLUMNS} FROM ({desired}) d WHERE true \
             ON CONFLICT (series_uid, project_key, dataset_key) DO NOTHING"
        ),
    ]
}

/// Triggers that keep the counts, per dialect: what to drop, then what to create.
pub(crate) fn trigger_statements(dialect: Dialect) -> Vec<String> {
    match dialect {
        Dialect::Sqlite => sqlite_triggers(),
        Dialect::Postgres => postgres_triggers(),
    }
}

/// `(trigger name, table, event and condition)` of SQLite's row triggers; each recounts
/// `NEW`'s or `OLD`'s series.
const SQLITE_TRIGGERS: &[(&str, &str, &str, &str)] = &[
    (
        "radport_counts_series_insert",
        "series",
        "AFTER INSERT",
        "NEW",
    ),
    (
        "radport_counts_series_update",
        "series",
        "AFTER UPDATE OF modality, body_part_examined, validation_errors, validation_warnings",
        "NEW",
    ),
    (
        "radport_counts_series_delete",
        "series",
        "AFTER DELETE",
        "OLD",
    ),
    (
        "radport_counts_projects_insert",
        "series_projects",
        "AFTER INSERT",
        "NEW",
    ),
    (
        "radport_counts_projects_delete",
        "series_projects",
        "AFTER DELETE",
        "OLD",
    ),
    (
        "radport_counts_datasets_insert",
        "series_datasets",
        "AFTER INSERT",
        "NEW",
    ),
    (
        "radport_counts_datasets_delete",
        "series_datasets",
        "AFTER DELETE",
        "OLD",
    ),
];

fn sqlite_triggers() -> Vec<String> {
    let mut out = Vec::new();
    for (name, table, event, row) in SQLITE_TRIGGERS {
        out.push(format!("DROP TRIGGER IF EXISTS {name}"));
        let condition = match *table {
            "series" if event.starts_with("AFTER UPDATE") => format!(
                " WHEN COALESCE(OLD.modality, '') <> COALESCE(NEW.modality, '') \
                   OR COALESCE(OLD.body_part_examined, '') <> COALESCE(NEW.body_part_examined, '') \
                   OR {} <> {}",
                validation_code!("OLD"),
                validation_code!("NEW")
            ),
            "series_projects" => format!(" WHEN {row}.project_key <> '{ADMIN_PROJECT}'"),
            _ => String::new(),
        };
        let body = recount_statements(&format!("= {row}.series_uid")).join("; ");
        out.push(format!(
            "CREATE TRIGGER {name} {event} ON {table} FOR EACH ROW{condition} BEGIN {body}; END"
        ));
    }
    out
}

fn postgres_triggers() -> Vec<String> {
    let [difference, forget, remember] = recount_statements("= ANY(uids)");
    let changed_series = format!(
        "SELECT a.series_uid FROM after_rows a JOIN before_rows b ON b.series_uid = a.series_uid \
         WHERE COALESCE(a.modality, '') <> COALESCE(b.modality, '') \
            OR COALESCE(a.body_part_examined, '') <> COALESCE(b.body_part_examined, '') \
            OR {} <> {}",
        validation_code!("a"),
        validation_code!("b")
    );
    let mut out = vec![
        format!(
            "CREATE OR REPLACE FUNCTION radport_recount_series(uids text[]) RETURNS void \
             LANGUAGE plpgsql VOLATILE AS $body$ \
             BEGIN \
               IF cardinality(uids) = 0 THEN RETURN; END IF; \
               PERFORM 1 FROM series WHERE series_uid = ANY(uids) ORDER BY series_uid \
                 FOR NO KEY UPDATE; \
               {difference}; {forget}; {remember}; \
             END $body$"
        ),
        // Rows inserted or deleted (transition table `changed_rows`).
        "CREATE OR REPLACE FUNCTION radport_counts_changed() RETURNS trigger \
         LANGUAGE plpgsql VOLATILE AS $body$ \
         BEGIN \
           PERFORM radport_recount_series(ARRAY(SELECT DISTINCT series_uid FROM changed_rows \
             ORDER BY series_uid)); \
           RETURN NULL; \
         END $body$"
            .to_string(),
        // Memberships in `admin` are not counted (every series is, by the series' own row).
        format!(
            "CREATE OR REPLACE FUNCTION radport_counts_memberships_changed() RETURNS trigger \
             LANGUAGE plpgsql VOLATILE AS $body$ \
             BEGIN \
               PERFORM radport_recount_series(ARRAY(SELECT DISTINCT series_uid FROM changed_rows \
                 WHERE project_key <> '{ADMIN_PROJECT}' ORDER BY series_uid)); \
               RETURN NULL; \
             END $body$"
        ),
        format!(
            "CREATE OR REPLACE FUNCTION radport_counts_series_updated() RETURNS trigger \
             LANGUAGE plpgsql VOLATILE AS $body$ \
             BEGIN \
               PERFORM radport_recount_series(ARRAY({changed_series} ORDER BY a.series_uid)); \
               RETURN NULL; \
             END $body$"
        ),
    ];
    let triggers: &[(&str, &str, &str, &str, &str)] = &[
        (
            "radport_counts_series_insert",
            "series",
            "INSERT",
            "NEW TABLE AS changed_rows",
            "radport_counts_changed",
        ),
        (
            "radport_counts_series_update",
            "series",
            "UPDATE",
            "OLD TABLE AS before_rows NEW TABLE AS after_rows",
            "radport_counts_series_updated",
        ),
        (
            "radport_counts_series_delete",
            "series",
            "DELETE",
            "OLD TABLE AS changed_rows",
            "radport_counts_changed",
        ),
        (
            "radport_counts_projects_insert",
            "series_projects",
            "INSERT",
            "NEW TABLE AS changed_rows",
            "radport_counts_memberships_changed",
        ),
        (
            "radport_counts_projects_delete",
            "series_projects",
            "DELETE",
            "OLD TABLE AS changed_rows",
            "radport_counts_memberships_changed",
        ),
        (
            "radport_counts_datasets_insert",
            "series_datasets",
            "INSERT",
            "NEW TABLE AS changed_rows",
            "radport_counts_changed",
        ),
        (
            "radport_counts_datasets_delete",
            "series_datasets",
            "DELETE",
            "OLD TABLE AS changed_rows",
            "radport_counts_changed",
        ),
    ];
    for (name, table, event, transition, function) in triggers {
        out.push(format!("DROP TRIGGER IF EXISTS {name} ON {table}"));
        out.push(format!(
            "CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING {transition} \
             FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        ));
    }
    out
}

/// Rebuilds both tables from the series and memberships (at installation: schema 10, or a
/// new catalog). PostgreSQL: run after locking out writers (see `lock_for_rebuild`).
pub(crate) fn rebuild_statements() -> Vec<String> {
    vec![
        "DELETE FROM series_counts".to_string(),
        "DELETE FROM series_counted".to_string(),
        format!(
            "INSERT INTO series_counted ({COUNTED_COLUMNS}) SELECT {COUNTED_COLUMNS} FROM ({}) d",
            desired_rows("IS NOT NULL")
        ),
        format!(
            "INSERT INTO series_counts ({KEY_COLUMNS}, n, folded) \
             SELECT {KEY_COLUMNS}, COUNT(*), 1 FROM series_counted GROUP BY {KEY_COLUMNS}"
        ),
    ]
}

/// PostgreSQL: keeps writers of series and memberships out while the counts are rebuilt and
/// the triggers replaced (plain reads go on).
pub(crate) const POSTGRES_LOCK_FOR_REBUILD: &str =
    "LOCK TABLE series, series_projects, series_datasets IN EXCLUSIVE MODE";

/// Series of one (project, dataset) key with one modality, body part and validation state.
#[derive(Clone, Debug)]
pub(crate) struct CountedGroup {
    pub(crate) dataset_key: String,
    pub(crate) modality: String,
    pub(crate) body_part: String,
    pub(crate) validation: ValidationBits,
    pub(crate) count: i64,
}

fn group_from_row(row: &AnyRow) -> Result<CountedGroup, sqlx::Error> {
    Ok(CountedGroup {
        dataset_key: row.try_get("dataset_key")?,
        modality: row.try_get("modality")?,
        body_part: row.try_get("body_part")?,
        validation: ValidationBits(row.try_get("validation")?),
        count: row.try_get("count")?,
    })
}

impl Catalog {
    /// The counted groups of a project: those of its series as a whole (`dataset` `""`), or
    /// of one dataset of it, or (`None`) of each of its datasets.
    pub(crate) async fn counted_groups(
        &self,
        project_key: &str,
        dataset_key: Option<&str>,
    ) -> Result<Vec<CountedGroup>, CatalogError> {
        let dataset_condition = match dataset_key {
            Some(_) => "dataset_key = $2",
            None => "dataset_key <> $2",
        };
        let sql = format!(
            "SELECT dataset_key, modality, body_part, validation, \
               CAST(SUM(n) AS BIGINT) AS count FROM series_counts \
             WHERE project_key = $1 AND {dataset_condition} \
             GROUP BY dataset_key, modality, body_part, validation HAVING SUM(n) <> 0"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(project_key)
            .bind(dataset_key.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(group_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Replaces the delta rows of every count key that has new ones by their sum (dropping
    /// zeros). Run now and then by each node's scheduler; safe to run concurrently (on
    /// PostgreSQL a delta appended meanwhile is not in the statement's snapshot and stays).
    /// Returns how many count keys were folded.
    pub async fn fold_series_counts(&self) -> Result<u64, CatalogError> {
        let mut writer = self.writer().await;
        match self.dialect {
            Dialect::Postgres => {
                let mut tx = writer.begin().await?;
                let folded = sqlx::query(
                    "WITH keys AS (SELECT DISTINCT project_key, dataset_key FROM series_counts \
                       WHERE folded = 0), \
                     gone AS (DELETE FROM series_counts c USING keys k \
                       WHERE c.project_key = k.project_key AND c.dataset_key = k.dataset_key \
                       RETURNING c.project_key, c.dataset_key, c.modality, c.body_part, \
                         c.validation, c.n) \
                     INSERT INTO series_counts \
                       (project_key, dataset_key, modality, body_part, validation, n, folded) \
                     SELECT project_key, dataset_key, modality, body_part, validation, SUM(n), 1 \
                     FROM gone GROUP BY project_key, dataset_key, modality, body_part, validation \
                     HAVING SUM(n) <> 0",
                )
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(folded.rows_affected())
            }
            Dialect::Sqlite => {
                let mut tx = writer.begin().await?;
                let last: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(rowid) FROM series_counts WHERE folded = 0")
                        .fetch_one(&mut *tx)
                        .await?;
                let Some(last) = last else {
                    return Ok(0);
                };
                let keys = "(project_key, dataset_key) IN (SELECT project_key, dataset_key \
                     FROM series_counts WHERE folded = 0 AND rowid <= $1)";
                let folded = sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO series_counts ({KEY_COLUMNS}, n, folded) \
                     SELECT {KEY_COLUMNS}, SUM(n), 1 FROM series_counts \
                     WHERE rowid <= $1 AND {keys} \
                     GROUP BY {KEY_COLUMNS} HAVING SUM(n) <> 0"
                )))
                .bind(last)
                .execute(&mut *tx)
                .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM series_counts WHERE rowid <= $1 AND {keys}"
                )))
                .bind(last)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(folded.rows_affected())
            }
        }
    }
}
