//! Series counts kept by the writes: how many series each project (and each dataset of it) has
//! per modality, body part and validation state, so that the gallery's totals and facets under
//! those filters read a few hundred rows instead of counting up to every series.
//!
//! Three tables:
//!
//! - `series_counted`: what each series is counted as — one row per *count key* of the series
//!   (`admin` with dataset `''` for every series; each other project it is in, with `''`; each
//!   (project, dataset) membership outside `admin`; `admin` with each dataset name it has in any
//!   project, once) with the modality, body part and validation state it was counted with.
//! - `series_counts`: signed deltas per (project, dataset, modality, body part, validation); a
//!   count is the sum of its rows. Only appended to, then folded (each key's rows replaced by
//!   their sum).
//! - `series_recount`: the series changed since they were last counted. Database triggers put a
//!   series there on every change of its counted columns or of its memberships, whichever code
//!   path makes it (recording, validation, placement, erasure, project deletion, cascades), in
//!   the changing transaction. That is all a writer pays: a queue row, no counting.
//!
//! [`Catalog::fold_series_counts`] (each node's scheduler pass) *recounts* the queued series —
//! what each should be counted as now (its memberships and columns) against `series_counted`;
//! the difference is appended to `series_counts` and `series_counted` brought in line, in one
//! transaction that also takes them off the queue — and folds the deltas. Recounting does not
//! depend on the order or number of the events that queued a series. Reads add the difference
//! of the series still queued to the counts, in the same statement: exact at every moment, not
//! only after a pass.
//!
//! PostgreSQL, concurrently: every change of what a series is counted as holds the series' row
//! lock until it commits (its own update, or the membership triggers take it), and the recount
//! only takes series it can lock at once (`SKIP LOCKED`), leaving the others queued for the
//! next pass. So a recount never misses a change that queued its series (the change would hold
//! the lock), and never waits on a writer (no deadlock with one).

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::{Catalog, CatalogError, Dialect, ADMIN_PROJECT};

/// The validation state of the series row `row` as a small integer: bit 0 validated, bit 1 has errors,
/// bit 2 has warnings (see [`ValidationBits`]).
fn validation_code(row: &str) -> String {
    format!(
        "(CASE WHEN {row}.validation_errors IS NULL THEN 0 ELSE 1 END \
          + CASE WHEN COALESCE({row}.validation_errors, 0) > 0 THEN 2 ELSE 0 END \
          + CASE WHEN COALESCE({row}.validation_warnings, 0) > 0 THEN 4 ELSE 0 END)"
    )
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

/// `study_month` of the counts' rows over every month (what the unfiltered counts read).
pub(crate) const ALL_MONTHS: &str = "*";
/// `study_month` of the series without a study date.
pub(crate) const NO_STUDY_DATE: &str = "-";

/// Marks the study month of a series whose study date is not a well-formed `YYYYMMDD`,
/// appended to its first six characters (or fewer, for a shorter value). Sorting below every
/// digit, it keeps the order of the dates: `202401!` sorts right after `202401` and before
/// `202402`, and `2024!` (the date `2024`) before `202401`, as `2024` sorts before `20240101`.
pub(crate) const MALFORMED: &str = "!";

/// The rows `series_counted` should hold for the series whose `series_uid` satisfies
/// `uid_condition` (e.g. `= NEW.series_uid`): its count keys with its current columns, each
/// twice — over all months (`*`) and in its study month, which date range filters sum: the
/// first six characters of its study date, followed by `!` when the date is not eight digits
/// with a day 01–31, `-` without a study date.
fn desired_rows(dialect: Dialect, uid_condition: &str) -> String {
    let admin = ADMIN_PROJECT;
    let code = validation_code("s");
    let eight_digits = match dialect {
        Dialect::Sqlite => "s.study_date GLOB '[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'",
        Dialect::Postgres => "s.study_date ~ '^[0-9]{8}$'",
    };
    format!(
        "SELECT k.series_uid AS series_uid, k.project_key AS project_key, \
           k.dataset_key AS dataset_key, COALESCE(s.modality, '') AS modality, \
           COALESCE(s.body_part_examined, '') AS body_part, {code} AS validation, \
           CASE WHEN m.every = 1 THEN '{ALL_MONTHS}' \
             WHEN s.study_date IS NULL THEN '{NO_STUDY_DATE}' \
             WHEN {eight_digits} AND SUBSTR(s.study_date, 7, 2) BETWEEN '01' AND '31' \
               THEN SUBSTR(s.study_date, 1, 6) \
             ELSE SUBSTR(s.study_date, 1, 6) || '{MALFORMED}' END AS study_month \
         FROM (SELECT series_uid, '{admin}' AS project_key, '' AS dataset_key FROM series \
                 WHERE series_uid {uid_condition} \
               UNION SELECT series_uid, project_key, '' FROM series_projects \
                 WHERE series_uid {uid_condition} AND project_key <> '{admin}' \
               UNION SELECT series_uid, project_key, dataset_key FROM series_datasets \
                 WHERE series_uid {uid_condition} AND project_key <> '{admin}' \
               UNION SELECT series_uid, '{admin}', dataset_key FROM series_datasets \
                 WHERE series_uid {uid_condition}) k \
         JOIN series s ON s.series_uid = k.series_uid \
         CROSS JOIN (SELECT 1 AS every UNION ALL SELECT 0) m"
    )
}

const COUNTED_COLUMNS: &str =
    "series_uid, project_key, dataset_key, modality, body_part, validation, study_month";
const KEY_COLUMNS: &str = "project_key, dataset_key, modality, body_part, validation, study_month";

/// What the series satisfying `uid_condition` add to the counts to be counted as they are now:
/// `-1` for each row they are counted as and should not be, `+1` for each they should be and
/// are not (key columns and `n`).
fn difference_rows(dialect: Dialect, uid_condition: &str) -> String {
    let desired = desired_rows(dialect, uid_condition);
    let counted =
        format!("SELECT {COUNTED_COLUMNS} FROM series_counted WHERE series_uid {uid_condition}");
    format!(
        "SELECT {KEY_COLUMNS}, -1 AS n FROM ({counted} EXCEPT {desired}) gone \
         UNION ALL \
         SELECT {KEY_COLUMNS}, 1 AS n FROM ({desired} EXCEPT {counted}) came"
    )
}

/// The recount of the series satisfying `uid_condition`, as statements run in order: the
/// difference between what they are counted as and what they should be appended to the
/// counts, then `series_counted` brought in line.
fn recount_statements(dialect: Dialect, uid_condition: &str) -> [String; 3] {
    let desired = desired_rows(dialect, uid_condition);
    let difference = difference_rows(dialect, uid_condition);
    [
        format!(
            "INSERT INTO series_counts ({KEY_COLUMNS}, n, folded) \
             SELECT {KEY_COLUMNS}, SUM(n), 0 FROM ({difference}) d \
             GROUP BY {KEY_COLUMNS} HAVING SUM(n) <> 0"
        ),
        format!(
            "DELETE FROM series_counted WHERE series_uid {uid_condition} \
             AND ({COUNTED_COLUMNS}) NOT IN (SELECT {COUNTED_COLUMNS} FROM ({desired}) d)"
        ),
        format!(
            "INSERT INTO series_counted ({COUNTED_COLUMNS}) \
             SELECT {COUNTED_COLUMNS} FROM ({desired}) d WHERE true \
             ON CONFLICT (series_uid, project_key, dataset_key, study_month) DO NOTHING"
        ),
    ]
}

/// The condition on a series update under which what it is counted as may change.
fn counted_columns_changed(old: &str, new: &str) -> String {
    format!(
        "COALESCE({old}.modality, '') <> COALESCE({new}.modality, '') \
         OR COALESCE({old}.body_part_examined, '') <> COALESCE({new}.body_part_examined, '') \
         OR COALESCE({old}.study_date, '-') <> COALESCE({new}.study_date, '-') \
         OR {} <> {}",
        validation_code(old),
        validation_code(new)
    )
}

/// `(trigger, table, event, row, condition)` of the row triggers that queue a series for
/// recounting (the same on both dialects).
fn queue_triggers() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    String,
)> {
    let not_admin = |row: &str| format!("{row}.project_key <> '{ADMIN_PROJECT}'");
    vec![
        (
            "radport_counts_series_insert",
            "series",
            "INSERT",
            "NEW",
            String::new(),
        ),
        (
            "radport_counts_series_update",
            "series",
            "UPDATE",
            "NEW",
            counted_columns_changed("OLD", "NEW"),
        ),
        (
            "radport_counts_series_delete",
            "series",
            "DELETE",
            "OLD",
            String::new(),
        ),
        // Memberships in `admin` are not counted (every series is, by its own row).
        (
            "radport_counts_projects_insert",
            "series_projects",
            "INSERT",
            "NEW",
            not_admin("NEW"),
        ),
        (
            "radport_counts_projects_delete",
            "series_projects",
            "DELETE",
            "OLD",
            not_admin("OLD"),
        ),
        (
            "radport_counts_datasets_insert",
            "series_datasets",
            "INSERT",
            "NEW",
            String::new(),
        ),
        (
            "radport_counts_datasets_delete",
            "series_datasets",
            "DELETE",
            "OLD",
            String::new(),
        ),
    ]
}

/// Triggers that queue changed series, per dialect (each dropped first, then created), and on
/// PostgreSQL the functions they and the recount run.
pub(crate) fn trigger_statements(dialect: Dialect) -> Vec<String> {
    let mut out = Vec::new();
    if dialect == Dialect::Postgres {
        out.extend(postgres_functions());
    }
    for (name, table, event, row, condition) in queue_triggers() {
        let when = if condition.is_empty() {
            String::new()
        } else {
            format!(" WHEN ({condition})")
        };
        match dialect {
            Dialect::Sqlite => {
                out.push(format!("DROP TRIGGER IF EXISTS {name}"));
                out.push(format!(
                    // Not `INSERT OR IGNORE`: the conflict policy of the statement that fired
                    // the trigger would override it.
                    "CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} BEGIN \
                     INSERT INTO series_recount (series_uid) SELECT {row}.series_uid \
                     WHERE NOT EXISTS (SELECT 1 FROM series_recount \
                       WHERE series_uid = {row}.series_uid); \
                     END"
                ));
            }
            Dialect::Postgres => {
                // Memberships do not lock their series by themselves: take its lock, so that
                // the recount passes it by until this transaction ends (see the module doc).
                let function = if table == "series" {
                    "radport_counts_queue_series"
                } else {
                    "radport_counts_queue_member"
                };
                out.push(format!("DROP TRIGGER IF EXISTS {name} ON {table}"));
                out.push(format!(
                    "CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} \
                     EXECUTE FUNCTION {function}()"
                ));
            }
        }
    }
    out
}

fn postgres_functions() -> Vec<String> {
    let queued = "= ANY(uids)";
    let [difference, forget, remember] = recount_statements(Dialect::Postgres, queued);
    vec![
        "CREATE OR REPLACE FUNCTION radport_counts_queue_series() RETURNS trigger \
         LANGUAGE plpgsql VOLATILE AS $body$ \
         BEGIN \
           IF TG_OP = 'DELETE' THEN \
             INSERT INTO series_recount (series_uid) VALUES (OLD.series_uid) \
               ON CONFLICT DO NOTHING; \
           ELSE \
             INSERT INTO series_recount (series_uid) VALUES (NEW.series_uid) \
               ON CONFLICT DO NOTHING; \
           END IF; \
           RETURN NULL; \
         END $body$"
            .to_string(),
        "CREATE OR REPLACE FUNCTION radport_counts_queue_member() RETURNS trigger \
         LANGUAGE plpgsql VOLATILE AS $body$ \
         DECLARE uid text; \
         BEGIN \
           IF TG_OP = 'DELETE' THEN uid := OLD.series_uid; ELSE uid := NEW.series_uid; END IF; \
           PERFORM 1 FROM series WHERE series_uid = uid FOR NO KEY UPDATE; \
           INSERT INTO series_recount (series_uid) VALUES (uid) ON CONFLICT DO NOTHING; \
           RETURN NULL; \
         END $body$"
            .to_string(),
        // Recounts up to `batch` queued series: those it can lock now, and those erased.
        format!(
            "CREATE OR REPLACE FUNCTION radport_recount_queued(batch bigint) RETURNS bigint \
             LANGUAGE plpgsql VOLATILE AS $body$ \
             DECLARE queued text[]; uids text[]; \
             BEGIN \
               queued := ARRAY(SELECT series_uid FROM series_recount ORDER BY series_uid \
                 LIMIT batch); \
               IF cardinality(queued) = 0 THEN RETURN 0; END IF; \
               uids := ARRAY(SELECT series_uid FROM series WHERE series_uid = ANY(queued) \
                   ORDER BY series_uid FOR NO KEY UPDATE SKIP LOCKED) \
                 || ARRAY(SELECT q FROM unnest(queued) q \
                   WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.series_uid = q)); \
               IF cardinality(uids) = 0 THEN RETURN 0; END IF; \
               DELETE FROM series_recount WHERE series_uid = ANY(uids); \
               {difference}; {forget}; {remember}; \
               RETURN cardinality(uids); \
             END $body$"
        ),
    ]
}

/// The view every read of the counts goes through: the kept deltas plus what the series still
/// queued for recounting change (the recount's difference, computed on the fly), so that a
/// read is exact without waiting for a pass.
pub(crate) fn view_statements(dialect: Dialect) -> [String; 2] {
    let difference = difference_rows(dialect, QUEUED);
    [
        "DROP VIEW IF EXISTS series_counts_now".to_string(),
        format!(
            "CREATE VIEW series_counts_now AS \
             SELECT {KEY_COLUMNS}, n FROM series_counts UNION ALL {difference}"
        ),
    ]
}

/// Rebuilds both tables from the series and memberships (at installation: schema 10, or a
/// new catalog). PostgreSQL: run after locking out writers (see `lock_for_rebuild`).
pub(crate) fn rebuild_statements(dialect: Dialect) -> Vec<String> {
    vec![
        "DELETE FROM series_counts".to_string(),
        "DELETE FROM series_counted".to_string(),
        "DELETE FROM series_recount".to_string(),
        format!(
            "INSERT INTO series_counted ({COUNTED_COLUMNS}) SELECT {COUNTED_COLUMNS} FROM ({}) d",
            desired_rows(dialect, "IS NOT NULL")
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
    "LOCK TABLE series, series_projects, series_datasets, series_recount IN EXCLUSIVE MODE";

/// Series the PostgreSQL recount takes per call (the scheduler's pass calls it until the
/// queue is done).
const POSTGRES_RECOUNT_BATCH: i64 = 2000;

/// The PostgreSQL advisory lock (transaction-scoped) a fold of the kept counts holds: one fold
/// at a time. Any key radport uses nowhere else ("rpcounts" in ASCII).
const POSTGRES_FOLD_LOCK: i64 = 0x7270_636f_756e_7473;

/// Series recounted in one pass after which the queue is analysed at once (PostgreSQL).
const POSTGRES_REANALYZE_AFTER: u64 = 1000;

/// The queued series, for the recount and for reads.
const QUEUED: &str = "IN (SELECT series_uid FROM series_recount)";

/// Which study months a read of the counts sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Months {
    /// Every series, whatever its study date (the rows over all months).
    All,
    /// The series dated in the months strictly between `after` and `before` (those given;
    /// malformed dates included, by the order of their keys), plus the well-formed dates of
    /// the `whole` months; series without a study date are not among them.
    Between {
        after: Option<String>,
        before: Option<String>,
        whole: Vec<String>,
    },
}

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
        months: &Months,
    ) -> Result<Vec<CountedGroup>, CatalogError> {
        let mut conditions = vec![
            "project_key = $1".to_string(),
            match dataset_key {
                Some(_) => "dataset_key = $2",
                None => "dataset_key <> $2",
            }
            .to_string(),
        ];
        let mut bounds = Vec::new();
        match months {
            Months::All => conditions.push(format!("study_month = '{ALL_MONTHS}'")),
            Months::Between {
                after,
                before,
                whole,
            } => {
                conditions.push(format!(
                    "study_month NOT IN ('{ALL_MONTHS}', '{NO_STUDY_DATE}')"
                ));
                let mut between = Vec::new();
                if let Some(month) = after {
                    bounds.push(format!("{month}{MALFORMED}"));
                    between.push(format!("study_month > ${}", bounds.len() + 2));
                }
                if let Some(month) = before {
                    bounds.push(month.clone());
                    between.push(format!("study_month < ${}", bounds.len() + 2));
                }
                let mut either = vec![if between.is_empty() {
                    "true".to_string()
                } else {
                    format!("({})", between.join(" AND "))
                }];
                for month in whole {
                    bounds.push(month.clone());
                    either.push(format!("study_month = ${}", bounds.len() + 2));
                }
                conditions.push(format!("({})", either.join(" OR ")));
            }
        }
        let sql = format!(
            "SELECT dataset_key, modality, body_part, validation, \
               CAST(SUM(n) AS BIGINT) AS count FROM series_counts_now WHERE {} \
             GROUP BY dataset_key, modality, body_part, validation HAVING SUM(n) <> 0",
            conditions.join(" AND ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(project_key)
            .bind(dataset_key.unwrap_or(""));
        for month in bounds {
            query = query.bind(month);
        }
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows
            .iter()
            .map(group_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    /// Whether a query (a constant statement) returns a row, read from the pool.
    async fn any_row(&self, sql: &'static str) -> Result<bool, CatalogError> {
        Ok(sqlx::query(sql).fetch_optional(&self.pool).await?.is_some())
    }

    /// Whether a project has series with a malformed study date in any of these months.
    pub(crate) async fn malformed_dates_in(
        &self,
        project_key: &str,
        months: &[String],
    ) -> Result<bool, CatalogError> {
        let mut malformed = 0i64;
        for month in months {
            let n: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM series_counts_now \
                 WHERE project_key = $1 AND dataset_key = '' AND study_month = $2",
            )
            .bind(project_key)
            .bind(format!("{month}{MALFORMED}"))
            .fetch_one(&self.pool)
            .await?;
            malformed += n;
        }
        Ok(malformed != 0)
    }

    /// Recounts the series queued since the last pass (see the module doc), then replaces
    /// the delta rows of every count key that has new ones by their sum (dropping zeros). Run
    /// by each node's scheduler every pass; safe to run concurrently (PostgreSQL: a series
    /// another pass or a writer holds stays queued; a delta appended meanwhile is not in the
    /// fold's snapshot and stays). Returns how many series were recounted.
    pub async fn fold_series_counts(&self) -> Result<u64, CatalogError> {
        let recounted = self.recount_queued_series().await?;
        self.fold_count_deltas().await?;
        Ok(recounted)
    }

    async fn recount_queued_series(&self) -> Result<u64, CatalogError> {
        // Most passes find nothing: look without the write lock (SQLite's is the receiver's).
        if !self.any_row("SELECT 1 FROM series_recount LIMIT 1").await? {
            return Ok(0);
        }
        let mut writer = self.writer().await;
        match self.dialect {
            Dialect::Postgres => {
                let mut total = 0u64;
                loop {
                    let mut tx = writer.begin().await?;
                    let done: i64 = sqlx::query_scalar("SELECT radport_recount_queued($1)")
                        .bind(POSTGRES_RECOUNT_BATCH)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    total += u64::try_from(done).unwrap_or(0);
                    if done < POSTGRES_RECOUNT_BATCH {
                        if total >= POSTGRES_REANALYZE_AFTER {
                            // The planner's row estimate of the queue is from the last
                            // analysis, often taken mid-burst: with 10⁴ queued series in
                            // it, reads of `series_counts_now` planned hash joins over every
                            // counted series (0.6–0.8 s a gallery page) until autovacuum
                            // analysed the emptied queue, a minute later.
                            let mut tx = writer.begin().await?;
                            sqlx::query("ANALYZE series_recount")
                                .execute(&mut *tx)
                                .await?;
                            tx.commit().await?;
                        }
                        return Ok(total);
                    }
                }
            }
            Dialect::Sqlite => {
                let mut tx = writer.begin().await?;
                let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM series_recount")
                    .fetch_one(&mut *tx)
                    .await?;
                if queued == 0 {
                    return Ok(0);
                }
                for statement in recount_statements(Dialect::Sqlite, QUEUED) {
                    sqlx::query(AssertSqlSafe(statement))
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM series_recount")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(u64::try_from(queued).unwrap_or(0))
            }
        }
    }

    /// Each count key with new deltas: its rows replaced by their sum.
    async fn fold_count_deltas(&self) -> Result<(), CatalogError> {
        if !self
            .any_row("SELECT 1 FROM series_counts WHERE folded = 0 LIMIT 1")
            .await?
        {
            return Ok(());
        }
        let mut writer = self.writer().await;
        match self.dialect {
            Dialect::Postgres => {
                let mut tx = writer.begin().await?;
                // One fold at a time, across every node: two folds deleting the rows of the same
                // keys, each in its own order, deadlocked (40P01) in
                // `kept_counts_under_concurrent_writers`.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(POSTGRES_FOLD_LOCK)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "WITH keys AS (SELECT DISTINCT project_key, dataset_key FROM series_counts \
                       WHERE folded = 0), \
                     gone AS (DELETE FROM series_counts c USING keys k \
                       WHERE c.project_key = k.project_key AND c.dataset_key = k.dataset_key \
                       RETURNING c.*) \
                     INSERT INTO series_counts ({KEY_COLUMNS}, n, folded) \
                     SELECT {KEY_COLUMNS}, SUM(n), 1 FROM gone GROUP BY {KEY_COLUMNS} \
                     HAVING SUM(n) <> 0"
                )))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
            Dialect::Sqlite => {
                let mut tx = writer.begin().await?;
                let last: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(rowid) FROM series_counts WHERE folded = 0")
                        .fetch_one(&mut *tx)
                        .await?;
                let Some(last) = last else {
                    return Ok(());
                };
                let keys = "(project_key, dataset_key) IN (SELECT project_key, dataset_key \
                     FROM series_counts WHERE folded = 0 AND rowid <= $1)";
                sqlx::query(AssertSqlSafe(format!(
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
                Ok(())
            }
        }
    }
}
