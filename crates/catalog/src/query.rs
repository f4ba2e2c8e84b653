//! Read queries: series listing with filters, series detail, single instance.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use crate::counts::{CountedGroup, Months};
use crate::dataset_keys;
use crate::page_cursor::{PageCursor, SeriesOrder};
use crate::{
    name_key, Catalog, CatalogError, DatasetRef, InstanceRow, SeriesDetail, SeriesFilter,
    SeriesPage, SeriesSummary, ADMIN_PROJECT,
};

/// Default page size of [`Catalog::list_series`].
pub const DEFAULT_SERIES_LIMIT: i64 = 50;
/// Largest page size of [`Catalog::list_series`].
pub const MAX_SERIES_LIMIT: i64 = 1000;

const SERIES_COLUMNS: &str = "s.series_uid, s.study_uid, st.patient_id, st.patient_name, \
     s.modality, st.study_date, st.study_description, s.series_description, \
     s.body_part_examined, st.accession_number, s.series_number, s.instance_count, \
     s.total_size, s.first_arrival, s.last_arrival, s.validation_errors, \
     s.validation_warnings";

const INSTANCE_COLUMNS: &str = "sop_instance_uid, series_uid, instance_number, sop_class_uid, \
     transfer_syntax_uid, size, checksum, n_rows, n_columns, number_of_frames, received_at, \
     object_key";

#[derive(Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

fn bind_args<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    args: &[Arg],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::Text(s) => query.bind(s.clone()),
            Arg::Int(i) => query.bind(*i),
        };
    }
    query
}

fn summary_from_row(row: &AnyRow) -> Result<SeriesSummary, sqlx::Error> {
    Ok(SeriesSummary {
        series_instance_uid: row.try_get("series_uid")?,
        study_instance_uid: row.try_get("study_uid")?,
        patient_id: row.try_get("patient_id")?,
        patient_name: row.try_get("patient_name")?,
        modality: row.try_get("modality")?,
        study_date: row.try_get("study_date")?,
        study_description: row.try_get("study_description")?,
        series_description: row.try_get("series_description")?,
        body_part_examined: row.try_get("body_part_examined")?,
        accession_number: row.try_get("accession_number")?,
        series_number: row.try_get("series_number")?,
        datasets: Vec::new(),
        instance_count: row.try_get("instance_count")?,
        total_size: row.try_get("total_size")?,
        first_arrival: row.try_get("first_arrival")?,
        last_arrival: row.try_get("last_arrival")?,
        validation_errors: row.try_get("validation_errors")?,
        validation_warnings: row.try_get("validation_warnings")?,
    })
}

fn instance_from_row(row: &AnyRow) -> Result<InstanceRow, sqlx::Error> {
    Ok(InstanceRow {
        sop_instance_uid: row.try_get("sop_instance_uid")?,
        series_instance_uid: row.try_get("series_uid")?,
        instance_number: row.try_get("instance_number")?,
        sop_class_uid: row.try_get("sop_class_uid")?,
        transfer_syntax_uid: row.try_get("transfer_syntax_uid")?,
        size: row.try_get("size")?,
        checksum: row.try_get("checksum")?,
        rows: row.try_get("n_rows")?,
        columns: row.try_get("n_columns")?,
        number_of_frames: row.try_get("number_of_frames")?,
        received_at: row.try_get("received_at")?,
        object_key: row.try_get("object_key")?,
    })
}

/// `first AND rest[0] AND …`.
fn and_all(first: &str, rest: &[String]) -> String {
    std::iter::once(first)
        .chain(rest.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// A filter value that is present and not blank.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// `YYYYMMDD` or `YYYY-MM-DD` → `YYYYMMDD`.
fn normalize_date(field: &str, value: &str) -> Result<String, CatalogError> {
    let digits: String = value.chars().filter(|c| *c != '-').collect();
    let dashes = value.len() - digits.len();
    if digits.len() == 8
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (dashes == 0 || dashes == 2)
    {
        Ok(digits)
    } else {
        Err(CatalogError::Invalid(format!(
            "{field} must be YYYYMMDD or YYYY-MM-DD, got {value:?}"
        )))
    }
}

/// `%text%` for `LIKE … ESCAPE '\'`, with the wildcards in `text` escaped.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Instances by instance number (absent last), then SOP Instance UID (bytewise, the same on
/// every database whatever its collation).
fn sort_instances(instances: &mut [InstanceRow]) {
    instances.sort_by(|a, b| {
        (
            a.instance_number.is_none(),
            a.instance_number,
            &a.sop_instance_uid,
        )
            .cmp(&(
                b.instance_number.is_none(),
                b.instance_number,
                &b.sop_instance_uid,
            ))
    });
}

/// How the series a filter selects are counted.
enum Counting {
    /// From the counts the writes keep (`counts.rs`), over these study months, plus a scan of
    /// the series dated in the edge months of a date range (`edges`, when there is one).
    Kept {
        months: Months,
        edges: Option<EdgeDates>,
    },
    /// By scanning the series that pass the filter (patient and text filters, a date range
    /// within one month).
    Scanned,
}

/// The two edge months of a date range, which the kept counts (by study month) cannot split:
/// `from` up to the end of its month, and the start of `to`'s month up to `to`.
#[derive(Clone, Debug)]
struct EdgeDates {
    /// `(from, the first month after from's)`.
    from: Option<(String, String)>,
    /// `(to's month, to)`.
    to: Option<(String, String)>,
}

/// The month after a `YYYYMM` month, as a prefix that sorts after every date in it (`202109`
/// → `20210:`; the month need not exist, the order is what counts).
fn next_month_prefix(month: &str) -> String {
    let mut bytes = month.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

impl Counting {
    /// The plan for a filter. With `whole_months`, an edge month that the range covers from
    /// its first day (`from` on the 1st) or to its last (`to` on the 31st) is read from the
    /// counts too, which is right unless that month has malformed dates (the caller checks:
    /// [`Catalog::counting`]).
    fn of(filter: &SeriesFilter, whole_months: bool) -> Result<Counting, CatalogError> {
        if given(&filter.patient_id).is_some() || given(&filter.q).is_some() {
            return Ok(Counting::Scanned);
        }
        let from = given(&filter.study_date_from)
            .map(|d| normalize_date("study_date_from", d))
            .transpose()?;
        let to = given(&filter.study_date_to)
            .map(|d| normalize_date("study_date_to", d))
            .transpose()?;
        if from.is_none() && to.is_none() {
            return Ok(Counting::Kept {
                months: Months::All,
                edges: None,
            });
        }
        let from_month = from.as_ref().map(|d| d[..6].to_string());
        let to_month = to.as_ref().map(|d| d[..6].to_string());
        let from_whole = whole_months && from.as_deref().is_some_and(|d| d.ends_with("01"));
        let to_whole = whole_months && to.as_deref().is_some_and(|d| d.ends_with("31"));
        if let (Some(a), Some(b)) = (&from_month, &to_month) {
            // A range within one month is scanned, unless it is the whole month; an empty
            // range is scanned (nothing to read).
            if a > b || (a == b && !(from_whole && to_whole)) {
                return Ok(Counting::Scanned);
            }
        }
        let mut whole = Vec::new();
        if from_whole {
            whole.extend(from_month.clone());
        }
        if to_whole && to_month != from_month.clone().filter(|_| from_whole) {
            whole.extend(to_month.clone());
        }
        let edges = EdgeDates {
            from: from
                .zip(from_month.as_ref())
                .filter(|_| !from_whole)
                .map(|(d, m)| (d, next_month_prefix(m))),
            to: to_month.clone().zip(to).filter(|_| !to_whole),
        };
        let edges = (edges.from.is_some() || edges.to.is_some()).then_some(edges);
        Ok(Counting::Kept {
            months: Months::Between {
                after: from_month,
                before: to_month,
                whole,
            },
            edges,
        })
    }
}

impl Catalog {
    /// How a project's series under a filter are counted (see [`Counting::of`]).
    async fn counting(
        &self,
        project_key: &str,
        filter: &SeriesFilter,
    ) -> Result<Counting, CatalogError> {
        let plan = Counting::of(filter, true)?;
        if let Counting::Kept {
            months: Months::Between { whole, .. },
            ..
        } = &plan
        {
            if !whole.is_empty() && self.malformed_dates_in(project_key, whole).await? {
                return Counting::of(filter, false);
            }
        }
        Ok(plan)
    }
}

/// Which date conditions a series query applies: the filter's, or only the edge months of its
/// range (see [`EdgeDates`]).
#[derive(Clone, Copy)]
enum Dates<'a> {
    AsFiltered,
    Edges(&'a EdgeDates),
}

/// The modality and body part a filter wants, as `series_conditions` compares them.
struct Selection {
    modality: Option<String>,
    body_part: Option<String>,
}

impl Selection {
    fn of(filter: &SeriesFilter) -> Selection {
        Selection {
            modality: given(&filter.modality).map(str::to_ascii_uppercase),
            body_part: given(&filter.body_part).map(str::to_ascii_uppercase),
        }
    }

    fn modality_ok(&self, g: &FacetGroup) -> bool {
        self.modality.as_ref().is_none_or(|m| &g.modality == m)
    }

    fn body_part_ok(&self, g: &FacetGroup) -> bool {
        self.body_part.as_ref().is_none_or(|b| &g.body_part == b)
    }

    /// Whether a group passes the modality, body part and validation filters (all but the
    /// dataset's).
    fn passes(&self, g: &FacetGroup, filter: &SeriesFilter) -> bool {
        self.modality_ok(g) && self.body_part_ok(g) && g.passes_validation(filter)
    }
}

impl Catalog {
    /// `NotFound` unless the project exists.
    async fn require_project(&self, project_key: &str, project: &str) -> Result<(), CatalogError> {
        let exists: Option<String> =
            sqlx::query_scalar("SELECT name FROM projects WHERE name_key = $1")
                .bind(project_key)
                .fetch_optional(&self.pool)
                .await?;
        match exists {
            Some(_) => Ok(()),
            None => Err(CatalogError::NotFound(format!("project {project:?}"))),
        }
    }

    /// The dataset key of a filter, `""` for none.
    fn dataset_key(filter: &SeriesFilter) -> Result<String, CatalogError> {
        match given(&filter.dataset) {
            Some(dataset) => name_key("dataset", dataset),
            None => Ok(String::new()),
        }
    }

    /// The FROM/WHERE of a series query for a project and a filter, and its arguments
    /// (`$1` is the project key). `skip` leaves facets' own filters out, so that their counts
    /// show the other values too.
    fn series_from_where(
        project_key: &str,
        filter: &SeriesFilter,
        skip: &[Facet],
        dates: Dates<'_>,
    ) -> Result<(String, Vec<Arg>), CatalogError> {
        let (conditions, args) = Self::series_conditions(project_key, filter, skip, dates)?;
        // `admin` sees every series: no membership join. `$1 = $1` keeps `$1` in the
        // statement (PostgreSQL wants every bound parameter used).
        let from_where = if project_key == ADMIN_PROJECT {
            format!("FROM series s WHERE {}", and_all("$1 = $1", &conditions))
        } else {
            format!(
                "FROM series_projects sp JOIN series s ON s.series_uid = sp.series_uid WHERE {}",
                and_all("sp.project_key = $1", &conditions)
            )
        };
        Ok((from_where, args))
    }

    /// The filter's conditions on `series s` (without the project's), and the arguments
    /// (`$1` is the project key).
    fn series_conditions(
        project_key: &str,
        filter: &SeriesFilter,
        skip: &[Facet],
        dates: Dates<'_>,
    ) -> Result<(Vec<String>, Vec<Arg>), CatalogError> {
        let project_key = project_key.to_string();
        let admin = project_key == ADMIN_PROJECT;
        let mut conditions = Vec::new();
        let mut args = vec![Arg::Text(project_key.clone())];
        let mut push = |condition: &dyn Fn(usize) -> String, arg: Arg| {
            args.push(arg);
            conditions.push(condition(args.len()));
        };
        if let Some(dataset) = given(&filter.dataset).filter(|_| !skip.contains(&Facet::Dataset)) {
            let key = name_key("dataset", dataset)?;
            push(
                &|n| {
                    // `admin` sees a dataset name of every project (merged by name).
                    let project = if admin {
                        ""
                    } else {
                        "sd.project_key = $1 AND "
                    };
                    format!(
                        "s.series_uid IN (SELECT sd.series_uid FROM series_datasets sd \
                         WHERE {project}sd.dataset_key = ${n})"
                    )
                },
                Arg::Text(key),
            );
        }
        if let Some(modality) = given(&filter.modality).filter(|_| !skip.contains(&Facet::Modality))
        {
            push(
                &|n| format!("s.modality = ${n}"),
                Arg::Text(modality.to_ascii_uppercase()),
            );
        }
        if let Some(patient_id) = given(&filter.patient_id) {
            push(
                &|n| format!("s.patient_id = ${n}"),
                Arg::Text(patient_id.to_string()),
            );
        }
        if let Some(q) = given(&filter.q) {
            // `search_text` is lowercased by the database's lower() when written; the pattern
            // goes through the same function.
            push(
                &|n| format!("s.search_text LIKE lower(${n}) ESCAPE '\\'"),
                Arg::Text(like_pattern(q)),
            );
        }
        match dates {
            Dates::AsFiltered => {
                if let Some(from) = given(&filter.study_date_from) {
                    let from = normalize_date("study_date_from", from)?;
                    push(&|n| format!("s.study_date >= ${n}"), Arg::Text(from));
                }
                if let Some(to) = given(&filter.study_date_to) {
                    let to = normalize_date("study_date_to", to)?;
                    push(&|n| format!("s.study_date <= ${n}"), Arg::Text(to));
                }
            }
            Dates::Edges(edges) => {
                // Two index ranges: [from, from's month end) and [to's month, to].
                let mut ranges = Vec::new();
                for (low, high, high_op) in [
                    edges.from.as_ref().map(|(d, next)| (d, next, "<")),
                    edges.to.as_ref().map(|(month, d)| (month, d, "<=")),
                ]
                .into_iter()
                .flatten()
                {
                    args.push(Arg::Text(low.clone()));
                    args.push(Arg::Text(high.clone()));
                    ranges.push(format!(
                        "(s.study_date >= ${} AND s.study_date {high_op} ${})",
                        args.len() - 1,
                        args.len()
                    ));
                }
                if !ranges.is_empty() {
                    conditions.push(format!("({})", ranges.join(" OR ")));
                }
            }
        }

        if let Some(body_part) =
            given(&filter.body_part).filter(|_| !skip.contains(&Facet::BodyPart))
        {
            args.push(Arg::Text(body_part.to_ascii_uppercase()));
            conditions.push(format!("s.body_part_examined = ${}", args.len()));
        }
        let validation_filters = if skip.contains(&Facet::Validation) {
            [
                (None, "s.validation_errors"),
                (None, "s.validation_warnings"),
            ]
        } else {
            [
                (filter.has_errors, "s.validation_errors"),
                (filter.has_warnings, "s.validation_warnings"),
            ]
        };
        if !skip.contains(&Facet::Validation) {
            match filter.validated {
                Some(true) => conditions.push("s.validation_errors IS NOT NULL".to_string()),
                Some(false) => conditions.push("s.validation_errors IS NULL".to_string()),
                None => {}
            }
        }
        for (wanted, column) in validation_filters {
            match wanted {
                Some(true) => conditions.push(format!("{column} > 0")),
                Some(false) => conditions.push(format!("{column} = 0")),
                None => {}
            }
        }

        Ok((conditions, args))
    }

    /// How many series of a project pass a filter: from the kept counts (and a count of the
    /// edge months of a date range) when the filter allows, else by counting `from_where`.
    async fn series_total(
        &self,
        project_key: &str,
        filter: &SeriesFilter,
        from_where: &str,
        args: &[Arg],
    ) -> Result<i64, CatalogError> {
        let count = |from_where: String, args: Vec<Arg>| async move {
            let count_sql = format!("SELECT COUNT(*) AS total {from_where}");
            let total: i64 = bind_args(sqlx::query(AssertSqlSafe(count_sql)), &args)
                .fetch_one(&self.pool)
                .await?
                .try_get("total")?;
            Ok::<i64, CatalogError>(total)
        };
        match self.counting(project_key, filter).await? {
            Counting::Kept { months, edges } => {
                let dataset_key = Self::dataset_key(filter)?;
                let selection = Selection::of(filter);
                let kept: i64 = self
                    .counted_groups(project_key, Some(&dataset_key), &months)
                    .await?
                    .iter()
                    .map(FacetGroup::from)
                    .filter(|g| selection.passes(g, filter))
                    .map(|g| g.count)
                    .sum();
                let in_edge_months = match &edges {
                    None => 0,
                    Some(edges) => {
                        let (from_where, args) =
                            Self::series_from_where(project_key, filter, &[], Dates::Edges(edges))?;
                        count(from_where, args).await?
                    }
                };
                Ok(kept + in_edge_months)
            }
            Counting::Scanned => count(from_where.to_string(), args.to_vec()).await,
        }
    }

    /// Series mapped to `project` (every series for `admin`), filtered and paged, newest first
    /// (by first arrival) unless sorted by study date. `datasets` of each item are its dataset names within this project.
    /// Errors: `NotFound` if the project does not exist, `Invalid` for a malformed filter.
    pub async fn list_series(
        &self,
        project: &str,
        filter: &SeriesFilter,
    ) -> Result<SeriesPage, CatalogError> {
        let project_key = name_key("project", project)?;
        self.require_project(&project_key, project).await?;

        let limit = match filter.limit {
            None => DEFAULT_SERIES_LIMIT,
            Some(n) if n < 0 => {
                return Err(CatalogError::Invalid(
                    "limit must not be negative".to_string(),
                ))
            }
            Some(n) => n.min(MAX_SERIES_LIMIT),
        };
        let offset = match filter.offset {
            None => 0,
            Some(n) if n < 0 => {
                return Err(CatalogError::Invalid(
                    "offset must not be negative".to_string(),
                ))
            }
            Some(n) => n,
        };

        let order = SeriesOrder::parse(given(&filter.sort))?;
        let cursor = given(&filter.after)
            .map(|c| PageCursor::decode(c, order))
            .transpose()?;
        let (from_where, args) =
            Self::series_from_where(&project_key, filter, &[], Dates::AsFiltered)?;
        let total = self.series_total(&project_key, filter, &from_where, &args);
        // The page is chosen on `series` alone; only its rows are joined with their study.
        // It is read while the total is counted (an independent read).
        let page = async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut args = args.clone();
            let mut page_from_where = from_where.clone();
            if let Some(cursor) = &cursor {
                let (condition, values) = cursor.condition(self.dialect, args.len() + 1);
                page_from_where = format!("{page_from_where} AND {condition}");
                args.extend(values.into_iter().map(Arg::Text));
            }
            // One more than the page: whether there is a page after it.
            let order_by = order.order_by();
            let page_sql = format!(
                "SELECT {SERIES_COLUMNS}, s.study_date AS sort_study_date FROM series s \
                 JOIN studies st ON st.study_uid = s.study_uid \
                 WHERE s.series_uid IN (SELECT s.series_uid {page_from_where} \
                   ORDER BY {order_by} LIMIT ${} OFFSET ${}) \
                 ORDER BY {order_by}",
                args.len() + 1,
                args.len() + 2
            );
            args.push(Arg::Int(limit + 1));
            args.push(Arg::Int(offset));
            bind_args(sqlx::query(AssertSqlSafe(page_sql)), &args)
                .fetch_all(&self.pool)
                .await
                .map_err(CatalogError::from)
        };
        let (total, mut rows) = futures::try_join!(total, page)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            match rows.last() {
                Some(last) => Some(
                    PageCursor {
                        order,
                        first_arrival: last.try_get("first_arrival")?,
                        study_date: last.try_get("sort_study_date")?,
                        series_uid: last.try_get("series_uid")?,
                    }
                    .encode(),
                ),
                None => None,
            }
        } else {
            None
        };
        let mut items = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>, _>>()?;

        if !items.is_empty() {
            let placeholders = (0..items.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT sd.series_uid, d.name FROM series_datasets sd \
                 JOIN datasets d ON d.project_key = sd.project_key AND d.name_key = sd.dataset_key \
                 WHERE (sd.project_key = $1 OR $1 = '{ADMIN_PROJECT}') \
                 AND sd.series_uid IN ({placeholders})"
            );
            // One statement text per page size: not worth a slot in the statement cache.
            let mut query = sqlx::query(AssertSqlSafe(sql))
                .persistent(false)
                .bind(&project_key);
            for item in &items {
                query = query.bind(item.series_instance_uid.clone());
            }
            let mut by_series: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for row in query.fetch_all(&self.pool).await? {
                by_series
                    .entry(row.try_get("series_uid")?)
                    .or_default()
                    .push(row.try_get("name")?);
            }
            for item in &mut items {
                if let Some(mut names) = by_series.remove(&item.series_instance_uid) {
                    names.sort();
                    names.dedup();
                    item.datasets = names;
                }
            }
        }
        Ok(SeriesPage { total, items, next })
    }

    /// A series with all its projects, dataset memberships, instances and the DICOM JSON
    /// of its representative (middle) instance. `series.datasets` holds all distinct dataset
    /// names across projects; `dataset_memberships` qualifies them by project.
    pub async fn get_series(&self, series_uid: &str) -> Result<Option<SeriesDetail>, CatalogError> {
        let mut conn = self.pool.acquire().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SERIES_COLUMNS} FROM series s \
             JOIN studies st ON st.study_uid = s.study_uid \
             WHERE s.series_uid = $1"
        )))
        .bind(series_uid)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut series = summary_from_row(&row)?;

        let mut projects = Vec::new();
        for row in sqlx::query(
            "SELECT p.name_key, p.name FROM series_projects sp \
             JOIN projects p ON p.name_key = sp.project_key WHERE sp.series_uid = $1",
        )
        .bind(series_uid)
        .fetch_all(&mut *conn)
        .await?
        {
            projects.push((row.try_get::<String, _>("name_key")?, row.try_get("name")?));
        }
        projects.sort();
        let projects: Vec<String> = projects.into_iter().map(|(_, name)| name).collect();

        let mut dataset_memberships = Vec::new();
        for row in sqlx::query(
            "SELECT p.name AS project, d.name AS dataset FROM series_datasets sd \
             JOIN datasets d ON d.project_key = sd.project_key AND d.name_key = sd.dataset_key \
             JOIN projects p ON p.name_key = sd.project_key WHERE sd.series_uid = $1",
        )
        .bind(series_uid)
        .fetch_all(&mut *conn)
        .await?
        {
            dataset_memberships.push(DatasetRef {
                project: row.try_get("project")?,
                dataset: row.try_get("dataset")?,
            });
        }
        dataset_memberships.sort();
        let mut names: Vec<String> = dataset_memberships
            .iter()
            .map(|m| m.dataset.clone())
            .collect();
        names.sort();
        names.dedup();
        series.datasets = names;

        let mut instances = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE series_uid = $1"
        )))
        .bind(series_uid)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(instance_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        sort_instances(&mut instances);

        let metadata = match instances.get(instances.len() / 2) {
            None => serde_json::Value::Null,
            Some(representative) => {
                let json: Option<String> = sqlx::query_scalar(
                    "SELECT metadata_json FROM instances WHERE sop_instance_uid = $1",
                )
                .bind(&representative.sop_instance_uid)
                .fetch_optional(&mut *conn)
                .await?;
                match json.as_deref().map(serde_json::from_str) {
                    Some(Ok(value)) => value,
                    Some(Err(e)) => {
                        tracing::warn!(
                            sop_instance_uid = %representative.sop_instance_uid,
                            error = %e,
                            "stored metadata is not valid JSON"
                        );
                        serde_json::Value::Null
                    }
                    None => serde_json::Value::Null,
                }
            }
        };

        let numbers: Vec<Option<i64>> = instances.iter().map(|i| i.instance_number).collect();
        Ok(Some(SeriesDetail {
            series,
            projects,
            dataset_memberships,
            instances,
            metadata,
            completeness: crate::Completeness::from_numbers(&numbers),
        }))
    }

    /// One instance of a series (`None` if absent or in another series).
    pub async fn get_instance(
        &self,
        series_uid: &str,
        sop_instance_uid: &str,
    ) -> Result<Option<InstanceRow>, CatalogError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances \
             WHERE sop_instance_uid = $1 AND series_uid = $2"
        )))
        .bind(sop_instance_uid)
        .bind(series_uid)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(instance_from_row).transpose()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            normalize_date("d", "20240131").ok().as_deref(),
            Some("20240131")
        );
        assert_eq!(
            normalize_date("d", "2024-01-31").ok().as_deref(),
            Some("20240131")
        );
        assert!(normalize_date("d", "2024-0131").is_err());
        assert!(normalize_date("d", "2024013").is_err());
        assert!(normalize_date("d", "2024013x").is_err());
    }

    #[test]
    fn like_escapes() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}

/// A dimension of the series list with counts per value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Facet {
    Modality,
    Dataset,
    BodyPart,
    Validation,
}

/// One value of a facet and how many series have it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FacetValue {
    /// The value (`""` when the attribute is absent).
    pub value: String,
    /// Series with it, under the other filters.
    pub count: i64,
}

/// Series with one combination of modality, body part and validation state.
struct FacetGroup {
    modality: String,
    body_part: String,
    validated: bool,
    errors: bool,
    warnings: bool,
    count: i64,
}

impl From<&CountedGroup> for FacetGroup {
    fn from(g: &CountedGroup) -> FacetGroup {
        FacetGroup {
            modality: g.modality.clone(),
            body_part: g.body_part.clone(),
            validated: g.validation.validated(),
            errors: g.validation.errors(),
            warnings: g.validation.warnings(),
            count: g.count,
        }
    }
}

impl FacetGroup {
    /// The validation filters of `filter`, as `series_conditions` applies them in SQL.
    fn passes_validation(&self, filter: &SeriesFilter) -> bool {
        let flag = |wanted: Option<bool>, has: bool| match wanted {
            None => true,
            // `validation_errors > 0` / `= 0`: false for a series not validated yet.
            Some(true) => has,
            Some(false) => self.validated && !has,
        };
        filter.validated.is_none_or(|v| v == self.validated)
            && flag(filter.has_errors, self.errors)
            && flag(filter.has_warnings, self.warnings)
    }

    fn validation_state(&self) -> &'static str {
        if !self.validated {
            "unvalidated"
        } else if self.errors {
            "errors"
        } else if self.warnings {
            "warnings"
        } else {
            "valid"
        }
    }
}

/// Counts per value of the filterable dimensions of a project's series. Each facet counts under
/// every filter except its own, so that the other values stay visible as alternatives.
#[derive(Clone, Debug, Default)]
pub struct Facets {
    /// By Modality.
    pub modality: Vec<FacetValue>,
    /// By dataset name.
    pub dataset: Vec<FacetValue>,
    /// By Body Part Examined.
    pub body_part: Vec<FacetValue>,
    /// By validation status: `errors`, `warnings`, `valid`, `unvalidated`.
    pub validation: Vec<FacetValue>,
}

impl Catalog {
    /// Facet counts of a project's series under a filter (see [`Facets`]): from the counts
    /// the writes keep when the filter allows (dataset, modality, body part, validation),
    /// else by scanning the series that pass the filter.
    pub async fn series_facets(
        &self,
        project: &str,
        filter: &SeriesFilter,
    ) -> Result<Facets, CatalogError> {
        let project_key = name_key("project", project)?;
        self.require_project(&project_key, project).await?;
        let (groups, dataset) = match self.counting(&project_key, filter).await? {
            Counting::Kept { months, edges } => {
                let (mut groups, dataset) =
                    self.facets_counted(&project_key, filter, &months).await?;
                match &edges {
                    None => (groups, dataset),
                    Some(edges) => {
                        let (edge_groups, edge_dataset) = self
                            .facets_scanned(&project_key, filter, Dates::Edges(edges))
                            .await?;
                        groups.extend(edge_groups);
                        (groups, merge_dataset_facets(dataset, edge_dataset))
                    }
                }
            }
            Counting::Scanned => {
                self.facets_scanned(&project_key, filter, Dates::AsFiltered)
                    .await?
            }
        };
        Ok(tally_facets(filter, &groups, dataset))
    }

    /// [`Catalog::series_facets`] always by scanning the series (what the kept counts must
    /// agree with; for tests and benchmarks).
    #[doc(hidden)]
    pub async fn series_facets_by_scan(
        &self,
        project: &str,
        filter: &SeriesFilter,
    ) -> Result<Facets, CatalogError> {
        let project_key = name_key("project", project)?;
        let (groups, dataset) = self
            .facets_scanned(&project_key, filter, Dates::AsFiltered)
            .await?;
        Ok(tally_facets(filter, &groups, dataset))
    }

    /// The dataset names of a project by key (for `admin`, of every project, merged by key).
    async fn dataset_names(
        &self,
        project_key: &str,
    ) -> Result<BTreeMap<String, String>, CatalogError> {
        let sql = if project_key == ADMIN_PROJECT {
            "SELECT name_key, MIN(name) AS name FROM datasets WHERE $1 = $1 GROUP BY name_key"
        } else {
            "SELECT name_key, name FROM datasets WHERE project_key = $1"
        };
        let rows = sqlx::query(sql)
            .bind(project_key)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("name_key")?, row.try_get("name")?)))
            .collect::<Result<BTreeMap<String, String>, sqlx::Error>>()
            .map_err(CatalogError::from)
    }

    /// The facet groups of the filter's (project, dataset) and the dataset facet, from the
    /// kept counts.
    async fn facets_counted(
        &self,
        project_key: &str,
        filter: &SeriesFilter,
        months: &Months,
    ) -> Result<(Vec<FacetGroup>, Vec<FacetValue>), CatalogError> {
        let dataset_key = Self::dataset_key(filter)?;
        let (groups, per_dataset, names) = futures::try_join!(
            self.counted_groups(project_key, Some(&dataset_key), months),
            self.counted_groups(project_key, None, months),
            self.dataset_names(project_key)
        )?;
        let selection = Selection::of(filter);
        // By name (a key without a dataset row is a membership of a deleted dataset).
        let mut by_dataset: BTreeMap<String, i64> = BTreeMap::new();
        for g in &per_dataset {
            if selection.passes(&FacetGroup::from(g), filter) {
                if let Some(name) = names.get(&g.dataset_key) {
                    *by_dataset.entry(name.clone()).or_default() += g.count;
                }
            }
        }
        Ok((
            groups.iter().map(FacetGroup::from).collect(),
            facet_values(by_dataset),
        ))
    }

    /// The facet groups and the dataset facet, counted over the series that pass the filter.
    ///
    /// One scan: the series under every filter but the four facets' own, grouped by modality,
    /// body part, validation counts and memberships (`dataset_keys`, see `dataset_keys.rs`);
    /// the facets then sum the groups that pass the other facets' filters, the dataset
    /// filter included (a group's memberships say whether it is in the dataset).
    async fn facets_scanned(
        &self,
        project_key: &str,
        filter: &SeriesFilter,
        dates: Dates<'_>,
    ) -> Result<(Vec<FacetGroup>, Vec<FacetValue>), CatalogError> {
        let skip = [
            Facet::Modality,
            Facet::BodyPart,
            Facet::Validation,
            Facet::Dataset,
        ];
        let (from_where, args) = Self::series_from_where(project_key, filter, &skip, dates)?;
        // Grouped by the expressions, not the raw columns, so that SQLite scans the table
        // once for the conditions instead of walking an index on them and looking every row
        // up. The selected columns are the grouped expressions (PostgreSQL allows no other).
        let sql = format!(
            "SELECT COALESCE(s.modality, '') AS modality, \
               COALESCE(s.body_part_examined, '') AS body_part, \
               s.validation_errors AS errors, s.validation_warnings AS warnings, \
               s.dataset_keys AS dataset_keys, COUNT(*) AS count {from_where} \
             GROUP BY COALESCE(s.modality, ''), COALESCE(s.body_part_examined, ''), \
               s.validation_errors, s.validation_warnings, s.dataset_keys"
        );
        let (rows, names) = futures::try_join!(
            async {
                bind_args(sqlx::query(AssertSqlSafe(sql)), &args)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(CatalogError::from)
            },
            self.dataset_names(project_key)
        )?;
        let admin = project_key == ADMIN_PROJECT;
        let wanted_dataset = given(&filter.dataset)
            .map(|d| name_key("dataset", d))
            .transpose()?;
        let selection = Selection::of(filter);
        let mut groups = Vec::new();
        let mut by_name: BTreeMap<String, i64> = BTreeMap::new();
        for row in &rows {
            let errors: Option<i64> = row.try_get("errors")?;
            let warnings: Option<i64> = row.try_get("warnings")?;
            let group = FacetGroup {
                modality: row.try_get("modality")?,
                body_part: row.try_get("body_part")?,
                validated: errors.is_some(),
                errors: errors.unwrap_or(0) > 0,
                warnings: warnings.unwrap_or(0) > 0,
                count: row.try_get("count")?,
            };
            let memberships: String = row.try_get("dataset_keys")?;
            // The group's dataset keys in this project (any project's for `admin`, where a
            // dataset name counts a series once).
            let keys: BTreeSet<&str> = dataset_keys::entries(&memberships)
                .filter(|(project, _)| admin || *project == project_key)
                .map(|(_, dataset)| dataset)
                .collect();
            if selection.passes(&group, filter) {
                for key in &keys {
                    if let Some(name) = names.get(*key) {
                        *by_name.entry(name.clone()).or_default() += group.count;
                    }
                }
            }
            if wanted_dataset
                .as_deref()
                .is_none_or(|wanted| keys.contains(wanted))
            {
                groups.push(group);
            }
        }
        Ok((groups, facet_values(by_name)))
    }
}

/// A facet's values from counts per value: those not zero, most series first, then by value.
fn facet_values(counts: BTreeMap<String, i64>) -> Vec<FacetValue> {
    let mut values: Vec<FacetValue> = counts
        .into_iter()
        .filter(|(_, count)| *count != 0)
        .map(|(value, count)| FacetValue { value, count })
        .collect();
    values.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    values
}

/// Two dataset facets of disjoint sets of series, summed by dataset name.
fn merge_dataset_facets(a: Vec<FacetValue>, b: Vec<FacetValue>) -> Vec<FacetValue> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for v in a.into_iter().chain(b) {
        *counts.entry(v.value).or_default() += v.count;
    }
    facet_values(counts)
}

/// Each facet from the groups that pass the other facets' filters.
fn tally_facets(filter: &SeriesFilter, groups: &[FacetGroup], dataset: Vec<FacetValue>) -> Facets {
    let selection = Selection::of(filter);
    let validation_ok = |g: &FacetGroup| g.passes_validation(filter);
    let tally = |value: &dyn Fn(&FacetGroup) -> String, keep: &dyn Fn(&FacetGroup) -> bool| {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for g in groups.iter().filter(|g| keep(g)) {
            *counts.entry(value(g)).or_default() += g.count;
        }
        facet_values(counts)
    };
    Facets {
        modality: tally(&|g| g.modality.clone(), &|g| {
            selection.body_part_ok(g) && validation_ok(g)
        }),
        dataset,
        body_part: tally(&|g| g.body_part.clone(), &|g| {
            selection.modality_ok(g) && validation_ok(g)
        }),
        validation: tally(&|g| g.validation_state().to_string(), &|g| {
            selection.modality_ok(g) && selection.body_part_ok(g)
        }),
    }
}
