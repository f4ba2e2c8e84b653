//! The catalog: projects, datasets, patients/studies/series/instances and their memberships,
//! in SQLite (embedded) or PostgreSQL, through one set of portable SQL.
//!
//! All access goes through sqlx's `Any` driver, so only booleans, integers, floats, text and
//! bytes cross the boundary: timestamps are RFC 3339 UTC text, counters are `BIGINT`.
//! The few dialect differences (SQLite `BEGIN IMMEDIATE` and pragmas, PostgreSQL
//! `SELECT … FOR UPDATE`) branch on [`Dialect`].
//!
//! Visibility model: a series is visible in a project when a `series_projects` row maps it
//! there. Every recorded series is also mapped to the built-in project `admin`, so one query
//! serves both. Datasets group series inside one project (`series_datasets`).

#![warn(missing_docs)]

mod audit;
mod counts;
mod dataset_keys;
mod destinations;
mod durability;
mod erase;
mod error;
pub mod jobs;
mod model;
mod page_cursor;
mod placement;
mod query;
mod record;
mod references;
mod schema;
pub mod search;
mod uploads;
mod users;
mod validation;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection as _, Row};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use audit::{AuditEvent, AuditFilter, AuditPage, AuditSink, NewAuditEvent, Outcome};
pub use destinations::{MoveDestination, MAX_AE_TITLE_LENGTH};
pub use durability::Durability;
pub use erase::{Erased, Subject};
pub use error::CatalogError;
pub use jobs::{
    InstanceForPipeline, Job, JobFilter, JobKind, JobPage, JobState, NewJob, QueueFigures, Reaped,
};
pub use model::{
    Completeness, Dataset, DatasetRef, Dialect, DuplicatePolicy, InstanceRecord, InstanceRow,
    ParseDuplicatePolicyError, Project, RecordOutcome, Route, SeriesDetail, SeriesFilter,
    SeriesPage, SeriesSummary,
};
pub use page_cursor::MAX_CURSOR_BYTES;
pub use placement::{Placement, DEFAULT_PLACED_DATASET};
pub use query::{FacetValue, Facets, DEFAULT_SERIES_LIMIT, MAX_SERIES_LIMIT};
pub use record::recorder::{BehindRecording, GroupRecorder, NewInstance};
pub use references::{Reference, REFERENCE_BATCH};
pub use schema::SCHEMA_VERSION;
pub use uploads::{
    ItemError, NewUpload, Progress, RunState, Upload, UploadRefused, WorkflowRun, KEEP_FOREVER,
    MIN_UPLOAD_CHARGE,
};
pub use users::{DicomRules, Membership, NewToken, OidcAccount, Role, Token, User};
pub use validation::{SeriesValidation, StoredFinding};

/// Name of the built-in project that sees every series; it cannot be deleted.
pub const ADMIN_PROJECT: &str = "admin";

/// Default pool size for SQLite.
pub const DEFAULT_SQLITE_POOL_SIZE: u32 = 8;
/// Default pool size for PostgreSQL.
pub const DEFAULT_POSTGRES_POOL_SIZE: u32 = 10;
/// How long a query waits for a connection of the pool before it fails. While PostgreSQL is
/// down (a restart, a fail-over) new connections are tried all along: an instance arriving
/// meanwhile is recorded once the database is back within this time, and gets a failure status
/// otherwise.
pub const POOL_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Attempts of a PostgreSQL write transaction on a transient error (deadlock, insert race).
const MAX_WRITE_ATTEMPTS: u32 = 8;

/// Pragmas applied to every SQLite connection. `synchronous=FULL` makes each commit durable
/// (the server acknowledges a C-STORE only after the commit).
const SQLITE_CONNECTION_PRAGMAS: &[&str] = &[
    "PRAGMA busy_timeout = 30000",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
];

/// Connection settings beyond the URL.
#[derive(Clone, Debug, Default)]
pub struct CatalogOptions {
    /// Maximum pool size; default [`DEFAULT_SQLITE_POOL_SIZE`] or [`DEFAULT_POSTGRES_POOL_SIZE`].
    /// In-memory SQLite always uses a single connection.
    pub max_connections: Option<u32>,
    /// Only check that the schema is at this program's version instead of creating or
    /// upgrading it (a read, not a write transaction): for processes started by a server that
    /// already set it up, such as the `run-job` child of each isolated job.
    pub schema_already_set_up: bool,
}

/// Handle to the catalog database. Cheap to clone (shares the pool).
#[derive(Clone, Debug)]
pub struct Catalog {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    /// Serializes writers within this process on SQLite (a single-writer database): waiting on
    /// a fair async mutex is cheaper than SQLite's sleeping busy handler. It guards the one
    /// connection they all write on (see [`Writer`]). PostgreSQL writers run concurrently.
    pub(crate) write_lock: Arc<Mutex<Option<AnyConnection>>>,
    /// SQLite on a file: writers keep one connection of their own behind the write lock. Not
    /// for an in-memory database, whose only connection is the database.
    pub(crate) own_writer_connection: bool,
    /// Instances waiting to be recorded; whoever may commit next (SQLite: holds the write
    /// lock; PostgreSQL: has a place among the groups in flight) commits all of them together
    /// (group commit, see `record.rs`).
    pub(crate) pending_records: Arc<std::sync::Mutex<Vec<record::PendingRecord>>>,
    /// PostgreSQL: places for groups of pending records committing at once.
    pub(crate) group_commit_places: Arc<tokio::sync::Semaphore>,
    /// PostgreSQL: the group committers' own connections, while idle.
    pub(crate) group_connections: Arc<std::sync::Mutex<Vec<AnyConnection>>>,
    /// Told of every audit event recorded (see [`Catalog::set_audit_sink`]).
    pub(crate) audit_sink: audit::SinkSlot,
    /// SQLite on a file: what a group recorder opens (`record/recorder.rs`).
    pub(crate) recorder_source: Option<record::recorder::RecorderSource>,
    /// SQLite on a file: the thread that records new instances (`record/committer.rs`).
    pub(crate) committer: Option<Arc<record::committer::Committer>>,
}

impl Dialect {
    /// Dialect of a connection URL (`sqlite:`, `postgres:` or `postgresql:`).
    pub fn from_url(url: &str) -> Result<Dialect, CatalogError> {
        let lower = url.trim_start().to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if lower.starts_with("postgres:") || lower.starts_with("postgresql:") {
            Ok(Dialect::Postgres)
        } else {
            Err(CatalogError::Invalid(
                "catalog URL must start with sqlite: or postgres:".to_string(),
            ))
        }
    }
}

/// Current time as fixed-width RFC 3339 UTC (microseconds), sortable as text.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Longest project or dataset name a DICOM sender can give: an AE title holds 16 characters
/// (PS3.5 6.2, VR AE) and `kp-` takes three. Longer names are valid, but only the web upload
/// reaches them; senders' tools cut the AE title to 16 characters without a word.
pub const MAX_AE_TITLE_NAME: usize = 13;

/// Whether a DICOM sender can name `name` in an AE title (see [`MAX_AE_TITLE_NAME`]).
pub fn reachable_by_ae_title(name: &str) -> bool {
    name.len() <= MAX_AE_TITLE_NAME
}

/// True for a valid project or dataset name: 1..=64 of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != ".."
}

/// Lookup key of a valid name (names are ASCII, so ASCII lowercasing is exact).
pub(crate) fn name_key(kind: &str, name: &str) -> Result<String, CatalogError> {
    if is_valid_name(name) {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(CatalogError::Invalid(format!(
            "{kind} name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

struct SqliteTarget {
    url: String,
    memory: bool,
    path: Option<std::path::PathBuf>,
}

/// Adds `mode=rwc` (create if missing) unless a mode is given; finds the file path.
fn sqlite_target(url: &str) -> SqliteTarget {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (db, params) = match rest.split_once('?') {
        Some((db, params)) => (db, Some(params)),
        None => (rest, None),
    };
    let memory = db.is_empty()
        || db == ":memory:"
        || params.is_some_and(|p| p.split('&').any(|kv| kv == "mode=memory"));
    let has_mode = params.is_some_and(|p| p.split('&').any(|kv| kv.starts_with("mode=")));
    let url = if memory || has_mode {
        url.to_string()
    } else if params.is_some() {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let path = (!memory).then(|| std::path::PathBuf::from(db));
    SqliteTarget { url, memory, path }
}

impl Catalog {
    /// Connects to `sqlite:///abs/path/catalog.db`, `sqlite://relative.db` or `postgres://…`,
    /// creates the schema if needed and ensures the project `admin` exists.
    /// SQLite files (and their parent directory) are created if missing.
    pub async fn connect(url: &str) -> Result<Catalog, CatalogError> {
        Self::connect_with(url, &CatalogOptions::default()).await
    }

    /// Like [`Catalog::connect`], with explicit options.
    pub async fn connect_with(
        url: &str,
        options: &CatalogOptions,
    ) -> Result<Catalog, CatalogError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::from_url(url)?;
        let mut own_writer_connection = false;
        let mut committer_path = None;
        let pool = match dialect {
            Dialect::Sqlite => {
                let target = sqlite_target(url.trim());
                own_writer_connection = !target.memory;
                committer_path = target.path.clone();
                if let Some(parent) = target.path.as_deref().and_then(|p| p.parent()) {
                    if !parent.as_os_str().is_empty() {
                        tokio::fs::create_dir_all(parent).await.map_err(|e| {
                            CatalogError::Invalid(format!(
                                "cannot create catalog directory {}: {e}",
                                parent.display()
                            ))
                        })?;
                    }
                }
                let mut pool_options = AnyPoolOptions::new()
                    .max_connections(
                        options
                            .max_connections
                            .unwrap_or(DEFAULT_SQLITE_POOL_SIZE)
                            .max(1),
                    )
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            for pragma in SQLITE_CONNECTION_PRAGMAS {
                                sqlx::query(*pragma).execute(&mut *conn).await?;
                            }
                            Ok(())
                        })
                    });
                if target.memory {
                    // Every in-memory connection is its own database: keep exactly one alive.
                    pool_options = pool_options
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None);
                }
                let pool = pool_options.connect(&target.url).await?;
                // Persistent in the file; set once before the pool is shared.
                let mode: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
                    .fetch_one(&pool)
                    .await?;
                if !target.memory && !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(journal_mode = %mode, "SQLite refused WAL mode");
                }
                pool
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(
                        options
                            .max_connections
                            .unwrap_or(DEFAULT_POSTGRES_POOL_SIZE)
                            .max(1),
                    )
                    .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // The catalog's statements are short; a plan that the estimates
                            // make look expensive (the counts' view over an unanalysed queue)
                            // got ~85 ms of JIT compilation for a 1 ms query.
                            sqlx::query("SET jit = off").execute(&mut *conn).await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
        };
        let mut catalog = Catalog {
            pool,
            dialect,
            write_lock: Arc::new(Mutex::new(None)),
            own_writer_connection,
            pending_records: Arc::default(),
            group_commit_places: Arc::new(tokio::sync::Semaphore::new(
                record::POSTGRES_GROUPS_IN_FLIGHT,
            )),
            group_connections: Arc::default(),
            audit_sink: audit::SinkSlot::default(),
            recorder_source: None,
            committer: None,
        };
        if options.schema_already_set_up {
            catalog.check_schema_version().await?;
        } else {
            catalog.init_schema().await?;
            if catalog.dialect == Dialect::Postgres {
                catalog.install_trigram_index().await;
            }
        }
        if let Some(path) = committer_path {
            let source = record::recorder::RecorderSource::new(path, catalog.write_lock.clone());
            catalog.recorder_source = Some(source.clone());
            match record::committer::Committer::start(source) {
                Ok(committer) => catalog.committer = Some(Arc::new(committer)),
                // Every record then goes through sqlx, as before.
                Err(e) => tracing::warn!(error = %e,
                    "the catalog's committer could not start; instances are recorded through the pool"),
            }
        }
        Ok(catalog)
    }

    /// The SQL dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The underlying pool, for tables owned by other components (e.g. a job queue).
    /// On SQLite, start write transactions there with `BEGIN IMMEDIATE`
    /// (`pool.begin_with("BEGIN IMMEDIATE")`) so they wait for the lock instead of failing.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        if let Some(committer) = &self.committer {
            committer.stop().await;
        }
        if let Some(connection) = self.write_lock.lock().await.take() {
            if let Err(e) = connection.close().await {
                tracing::warn!(error = %e, "closing the catalog's writer connection failed");
            }
        }
        let idle = std::mem::take(
            &mut *self
                .group_connections
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for connection in idle {
            if let Err(e) = connection.close().await {
                tracing::warn!(error = %e, "closing a catalog group connection failed");
            }
        }
        self.pool.close().await;
    }

    /// The right to write: on SQLite, the write lock and its connection (see [`Writer`]);
    /// on PostgreSQL, the pool.
    pub(crate) async fn writer(&self) -> Writer {
        let connection = match self.dialect {
            Dialect::Sqlite => Some(self.write_lock.clone().lock_owned().await),
            Dialect::Postgres => None,
        };
        Writer {
            connection,
            own_connection: self.own_writer_connection,
            pool: self.pool.clone(),
        }
    }

    /// Fails unless the catalog's schema is exactly this program's version.
    async fn check_schema_version(&self) -> Result<(), CatalogError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&self.pool)
            .await?;
        match version {
            Some(SCHEMA_VERSION) => Ok(()),
            other => Err(CatalogError::Invalid(format!(
                "catalog schema version {other:?} is not this program's ({SCHEMA_VERSION})"
            ))),
        }
    }

    async fn init_schema(&self) -> Result<(), CatalogError> {
        let mut writer = self.writer().await;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match self.init_schema_once(&mut writer).await {
                Ok(()) => return Ok(()),
                // Concurrent `CREATE TABLE IF NOT EXISTS` on PostgreSQL can race on the
                // catalog's unique indexes; the second attempt sees the tables.
                Err(CatalogError::Database(e))
                    if attempt < 3
                        && (error::is_transient_db(&e) || error::is_unique_violation(&e)) =>
                {
                    tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn init_schema_once(&self, writer: &mut Writer) -> Result<(), CatalogError> {
        let mut tx = writer.begin().await?;
        for statement in schema::STATEMENTS {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?;
        match version {
            Some(v) if v > SCHEMA_VERSION => {
                return Err(CatalogError::Invalid(format!(
                    "catalog schema version {v} is newer than this program supports ({SCHEMA_VERSION})"
                )));
            }
            Some(SCHEMA_VERSION) => {}
            Some(older) => {
                if older < 2 {
                    self.migrate_to_2(&mut tx).await?;
                }
                if older < 3 {
                    self.migrate_to_3(&mut tx).await?;
                }
                if older < 4 {
                    self.migrate_to_4(&mut tx).await?;
                }
                if older < 5 {
                    self.add_columns(&mut tx, "uploads", schema::UPLOAD_COLUMNS_V5)
                        .await?;
                }
                if older < 6 {
                    self.add_columns(&mut tx, "users", schema::USER_COLUMNS_V6)
                        .await?;
                }
                if older < 7 {
                    self.add_columns(&mut tx, "studies", schema::STUDY_COLUMNS_V7)
                        .await?;
                    let fill = match self.dialect {
                        Dialect::Sqlite => schema::MIGRATE_TO_7_SQLITE,
                        Dialect::Postgres => schema::MIGRATE_TO_7_POSTGRES,
                    };
                    sqlx::query(fill).execute(&mut *tx).await?;
                }
                if older < 8 {
                    self.add_columns(&mut tx, "series", schema::SERIES_COLUMNS_V8)
                        .await?;
                    sqlx::query(schema::MIGRATE_TO_8).execute(&mut *tx).await?;
                }
                if older < 9 {
                    for statement in schema::DROPPED_BY_9 {
                        sqlx::query(*statement).execute(&mut *tx).await?;
                    }
                }
                if older < 11 {
                    self.add_columns(&mut tx, "series", &[dataset_keys::COLUMN])
                        .await?;
                }
                tracing::info!(from = older, to = SCHEMA_VERSION, "catalog schema upgraded");
            }
            None => {}
        }
        for statement in schema::TABLES_V10 {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        if version != Some(SCHEMA_VERSION) {
            let counts_kept = version.is_some_and(|v| v >= 10);
            self.install_kept_by_writes(&mut tx, counts_kept).await?;
            sqlx::query(
                "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2) \
                 ON CONFLICT (version) DO NOTHING",
            )
            .bind(SCHEMA_VERSION)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        }
        for statement in schema::INDEXES_V2
            .iter()
            .chain(schema::INDEXES_V4)
            .chain(schema::INDEXES_V6)
            .chain(schema::INDEXES_V7)
            .chain(schema::INDEXES_V9)
            .chain(schema::INDEXES_V11)
        {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO projects (name_key, name, created_at) VALUES ($1, $1, $2) \
             ON CONFLICT (name_key) DO NOTHING",
        )
        .bind(ADMIN_PROJECT)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// PostgreSQL: a trigram index on the series' search text (extension `pg_trgm`, part of
    /// PostgreSQL's contrib and trusted: a database owner may create it), so that the gallery's
    /// text search (`LIKE '%…%'`) reads the matching series instead of every one. Without the
    /// extension text search still works, by scanning; a warning says so.
    async fn install_trigram_index(&self) {
        for statement in [
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            "CREATE INDEX IF NOT EXISTS idx_series_search_trigram \
             ON series USING gin (search_text gin_trgm_ops)",
        ] {
            if let Err(e) = sqlx::query(statement).execute(&self.pool).await {
                tracing::warn!(
                    error = %e,
                    "no trigram index for text search: the gallery's text search scans every \
                     series (create the extension pg_trgm in the catalog's database to fix)"
                );
                return;
            }
        }
    }

    /// The triggers that keep what the writes maintain — the series counts (see `counts.rs`)
    /// and the dataset keys on the series rows (see `dataset_keys.rs`) — and their contents
    /// built from the series (a new catalog, or one older than this version; the counts only
    /// when `counts_kept` is false, i.e. before version 10). On PostgreSQL, writers of series
    /// and memberships wait meanwhile, so that no change slips between a fill and the
    /// triggers.
    async fn install_kept_by_writes(
        &self,
        tx: &mut sqlx::AnyConnection,
        counts_kept: bool,
    ) -> Result<(), CatalogError> {
        if self.dialect == Dialect::Postgres {
            sqlx::query(counts::POSTGRES_LOCK_FOR_REBUILD)
                .execute(&mut *tx)
                .await?;
        }
        let counts_rebuild = if counts_kept {
            Vec::new()
        } else {
            counts::rebuild_statements(self.dialect)
        };
        for statement in counts::trigger_statements(self.dialect)
            .into_iter()
            .chain(counts::view_statements(self.dialect))
            .chain(counts_rebuild)
            .chain(dataset_keys::trigger_statements(self.dialect))
            .chain([dataset_keys::fill_statement(self.dialect)])
        {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Version 1 → 2: the gallery's filter columns on `series`, filled from studies and
    /// validation results.
    async fn migrate_to_2(&self, tx: &mut sqlx::AnyConnection) -> Result<(), CatalogError> {
        for (column, definition) in schema::SERIES_COLUMNS_V2 {
            if !self.column_exists(tx, "series", column).await? {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE series ADD COLUMN {column} {definition}"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        for statement in schema::MIGRATE_TO_2 {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        sqlx::query(schema::FILL_SEARCH_TEXT)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Version 3: `instances.sha256` becomes `instances.checksum`, whose values name their
    /// algorithm (`sha256:…` for those recorded so far, `blake3:…` from now on).
    async fn migrate_to_3(&self, tx: &mut sqlx::AnyConnection) -> Result<(), CatalogError> {
        if self.column_exists(tx, "instances", "sha256").await? {
            sqlx::query("ALTER TABLE instances RENAME COLUMN sha256 TO checksum")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE instances SET checksum = 'sha256:' || checksum WHERE checksum NOT LIKE '%:%'",
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Version 4: uploads record their chunks' keys and an assembly lease; one upload per
    /// path (see [`schema::MIGRATE_TO_4`]).
    async fn migrate_to_4(&self, tx: &mut sqlx::AnyConnection) -> Result<(), CatalogError> {
        for (column, definition) in schema::UPLOAD_COLUMNS_V4 {
            if !self.column_exists(tx, "uploads", column).await? {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE uploads ADD COLUMN {column} {definition}"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        for statement in schema::MIGRATE_TO_4 {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Adds the columns a table lacks (its other version-5 tables come from `STATEMENTS`).
    async fn add_columns(
        &self,
        tx: &mut sqlx::AnyConnection,
        table: &str,
        columns: &[(&str, &str)],
    ) -> Result<(), CatalogError> {
        for (column, definition) in columns {
            if !self.column_exists(tx, table, column).await? {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(())
    }

    async fn column_exists(
        &self,
        tx: &mut sqlx::AnyConnection,
        table: &str,
        column: &str,
    ) -> Result<bool, CatalogError> {
        let sql = match self.dialect {
            Dialect::Sqlite => "SELECT COUNT(*) FROM pragma_table_info($1) WHERE name = $2",
            Dialect::Postgres => {
                "SELECT COUNT(*) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 AND column_name = $2"
            }
        };
        let count: i64 = sqlx::query_scalar(sql)
            .bind(table)
            .bind(column)
            .fetch_one(&mut *tx)
            .await?;
        Ok(count > 0)
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64, CatalogError> {
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&self.pool)
            .await?;
        version.ok_or_else(|| CatalogError::NotFound("schema version".to_string()))
    }

    // ----- projects -------------------------------------------------------------------------

    /// Creates a project. Names are 1..=64 of `[A-Za-z0-9._-]` and unique case-insensitively;
    /// the spelling given here is kept as the canonical name.
    pub async fn create_project(&self, name: &str) -> Result<Project, CatalogError> {
        let key = name_key("project", name)?;
        let created_at = now();
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let result = sqlx::query(
            "INSERT INTO projects (name_key, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name_key) DO NOTHING",
        )
        .bind(&key)
        .bind(name)
        .bind(&created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if result.rows_affected() == 0 {
            return Err(CatalogError::Conflict(format!(
                "project {name:?} already exists"
            )));
        }
        tracing::info!(project = name, "project created");
        Ok(Project {
            name: name.to_string(),
            created_at,
            series_count: 0,
            dataset_count: 0,
        })
    }

    /// All projects with their series and dataset counts, sorted by name. `admin`'s datasets
    /// are those [`Catalog::list_datasets`] shows it: every project's, merged by name.
    pub async fn list_projects(&self) -> Result<Vec<Project>, CatalogError> {
        let rows = sqlx::query(
            "SELECT p.name_key, p.name, p.created_at, \
               (SELECT CAST(COALESCE(SUM(c.n), 0) AS BIGINT) FROM series_counts_now c \
                  WHERE c.project_key = p.name_key AND c.dataset_key = '' \
                    AND c.study_month = '*') AS series_count, \
               CASE WHEN p.name_key = 'admin' \
                 THEN (SELECT COUNT(DISTINCT d.name_key) FROM datasets d) \
                 ELSE (SELECT COUNT(*) FROM datasets d WHERE d.project_key = p.name_key) \
               END AS dataset_count \
             FROM projects p",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut projects = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("name_key")?,
                    Project {
                        name: row.try_get("name")?,
                        created_at: row.try_get("created_at")?,
                        series_count: row.try_get("series_count")?,
                        dataset_count: row.try_get("dataset_count")?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        projects.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(projects.into_iter().map(|(_, p)| p).collect())
    }

    /// Finds a project case-insensitively; the result carries the canonical name.
    pub async fn find_project(&self, name: &str) -> Result<Option<Project>, CatalogError> {
        if !is_valid_name(name) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT p.name, p.created_at, \
               (SELECT CAST(COALESCE(SUM(c.n), 0) AS BIGINT) FROM series_counts_now c \
                  WHERE c.project_key = p.name_key AND c.dataset_key = '' \
                    AND c.study_month = '*') AS series_count, \
               CASE WHEN p.name_key = 'admin' \
                 THEN (SELECT COUNT(DISTINCT d.name_key) FROM datasets d) \
                 ELSE (SELECT COUNT(*) FROM datasets d WHERE d.project_key = p.name_key) \
               END AS dataset_count \
             FROM projects p WHERE p.name_key = $1",
        )
        .bind(name.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Project {
                name: row.try_get("name")?,
                created_at: row.try_get("created_at")?,
                series_count: row.try_get("series_count")?,
                dataset_count: row.try_get("dataset_count")?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Deletes a project with its datasets, series mappings, members and DICOM rules (series
    /// and instances stay, still visible in `admin` and other projects). `admin` cannot be
    /// deleted.
    pub async fn delete_project(&self, name: &str) -> Result<(), CatalogError> {
        let key = name_key("project", name)?;
        if key == ADMIN_PROJECT {
            return Err(CatalogError::Invalid(
                "the admin project cannot be deleted".to_string(),
            ));
        }
        let mut writer = self.writer().await;
        let mut tx = writer.begin().await?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT name FROM projects WHERE name_key = $1")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(canonical) = found else {
            return Err(CatalogError::NotFound(format!("project {name:?}")));
        };
        for statement in [
            "DELETE FROM series_datasets WHERE project_key = $1",
            "DELETE FROM datasets WHERE project_key = $1",
            "DELETE FROM series_projects WHERE project_key = $1",
            // A new project of the same name starts without the old one's people and rules.
            "DELETE FROM project_members WHERE project_key = $1",
            "DELETE FROM dicom_rules WHERE project_key = $1",
            "DELETE FROM move_destinations WHERE project_key = $1",
            "DELETE FROM projects WHERE name_key = $1",
        ] {
            sqlx::query(statement).bind(&key).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        tracing::info!(project = %canonical, "project deleted");
        Ok(())
    }

    /// Datasets of a project with series counts and last arrival, sorted by name.
    pub async fn list_datasets(&self, project: &str) -> Result<Vec<Dataset>, CatalogError> {
        let Some(p) = self.find_project(project).await? else {
            return Err(CatalogError::NotFound(format!("project {project:?}")));
        };
        // admin sees every dataset of every project, merged by name.
        let sql = if p.name.eq_ignore_ascii_case(ADMIN_PROJECT) {
            "SELECT d.name_key, MIN(d.name) AS name, MIN(d.created_at) AS created_at, \
               (SELECT CAST(COALESCE(SUM(c.n), 0) AS BIGINT) FROM series_counts_now c \
                  WHERE c.project_key = 'admin' AND c.dataset_key = d.name_key \
                    AND c.study_month = '*') \
                 AS series_count, \
               (SELECT MAX(sd.last_arrival) FROM series_datasets sd \
                  WHERE sd.dataset_key = d.name_key) AS last_arrival \
             FROM datasets d WHERE $1 = $1 GROUP BY d.name_key"
        } else {
            "SELECT d.name_key, d.name, d.created_at, \
               (SELECT CAST(COALESCE(SUM(c.n), 0) AS BIGINT) FROM series_counts_now c \
                  WHERE c.project_key = d.project_key AND c.dataset_key = d.name_key \
                    AND c.study_month = '*') \
                 AS series_count, \
               (SELECT MAX(sd.last_arrival) FROM series_datasets sd \
                  WHERE sd.project_key = d.project_key AND sd.dataset_key = d.name_key) \
                 AS last_arrival \
             FROM datasets d WHERE d.project_key = $1"
        };
        let rows = sqlx::query(sql)
            .bind(p.name.to_ascii_lowercase())
            .fetch_all(&self.pool)
            .await?;
        let mut datasets = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("name_key")?,
                    Dataset {
                        name: row.try_get("name")?,
                        project: p.name.clone(),
                        created_at: row.try_get("created_at")?,
                        series_count: row.try_get("series_count")?,
                        last_arrival: row.try_get("last_arrival")?,
                    },
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        datasets.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(datasets.into_iter().map(|(_, d)| d).collect())
    }
}

/// The right to write to the catalog, held for one write transaction (or a batch of them).
///
/// On SQLite it holds the process-wide write lock and, behind it, the connection every writer
/// uses: taken out of the pool on first use and kept. Writing on it skips the pool's liveness
/// checks, which cost two hand-offs to SQLite's worker thread per transaction (a ping when a
/// connection is acquired, another when it is returned) — measurable on the ingest hot path.
/// On PostgreSQL writers run concurrently, each on a pooled connection.
pub(crate) struct Writer {
    /// SQLite only: the write lock and its connection (`None` until first used).
    connection: Option<OwnedMutexGuard<Option<AnyConnection>>>,
    /// Whether SQLite writes go through the connection behind the lock (else the pool's).
    own_connection: bool,
    pool: AnyPool,
}

impl Writer {
    /// Begins a write transaction. On SQLite, `BEGIN IMMEDIATE` takes the database's write
    /// lock up front so a transaction never has to upgrade a read lock (which fails with
    /// SQLITE_BUSY regardless of the busy timeout).
    pub(crate) async fn begin(&mut self) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
        let Some(slot) = self.connection.as_mut() else {
            return self.pool.begin().await;
        };
        if !self.own_connection {
            return self.pool.begin_with("BEGIN IMMEDIATE").await;
        }
        if slot.is_none() {
            // Detached: it no longer counts against the pool's size, and it is never pinged.
            **slot = Some(self.pool.acquire().await?.detach());
        }
        match slot.as_mut() {
            Some(connection) => connection.begin_with("BEGIN IMMEDIATE").await,
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// SQLite with a connection of the writer's own: that connection (made on first use);
    /// `None` where writes go through the pool (in-memory SQLite, PostgreSQL).
    pub(crate) async fn own_connection_mut(
        &mut self,
    ) -> Result<Option<&mut AnyConnection>, sqlx::Error> {
        if !self.own_connection {
            return Ok(None);
        }
        let Some(slot) = self.connection.as_mut() else {
            return Ok(None);
        };
        if slot.is_none() {
            **slot = Some(self.pool.acquire().await?.detach());
        }
        Ok(slot.as_mut())
    }

    /// Lets the writer's own connection go; the next writer makes a new one.
    pub(crate) fn discard_connection(&mut self) {
        if let Some(slot) = self.connection.as_mut() {
            **slot = None;
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("a"));
        assert!(is_valid_name("Lung-CT_2024.v1"));
        assert!(is_valid_name(&"x".repeat(64)));
        assert!(!is_valid_name(&"x".repeat(65)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("é"));
        assert!(!is_valid_name(".."));
    }

    #[test]
    fn sqlite_urls() {
        let t = sqlite_target("sqlite:///tmp/x/c.db");
        assert_eq!(t.url, "sqlite:///tmp/x/c.db?mode=rwc");
        assert_eq!(t.path.as_deref(), Some(std::path::Path::new("/tmp/x/c.db")));
        let t = sqlite_target("sqlite://rel.db?cache=private");
        assert_eq!(t.url, "sqlite://rel.db?cache=private&mode=rwc");
        let t = sqlite_target("sqlite://rel.db?mode=ro");
        assert_eq!(t.url, "sqlite://rel.db?mode=ro");
        assert!(sqlite_target("sqlite::memory:").memory);
        assert_eq!(
            Dialect::from_url("postgres://u@h/db").ok(),
            Some(Dialect::Postgres)
        );
        assert_eq!(
            Dialect::from_url("sqlite://a.db").ok(),
            Some(Dialect::Sqlite)
        );
        assert!(Dialect::from_url("mysql://h/db").is_err());
    }

    #[test]
    fn policy_names() {
        for p in [
            DuplicatePolicy::KeepFirst,
            DuplicatePolicy::Overwrite,
            DuplicatePolicy::OverwriteIfDifferent,
        ] {
            assert_eq!(p.as_str().parse::<DuplicatePolicy>(), Ok(p));
            assert_eq!(
                serde_json::to_string(&p).ok(),
                Some(format!("\"{}\"", p.as_str()))
            );
        }
        assert!("keep_first".parse::<DuplicatePolicy>().is_err());
        assert_eq!(DuplicatePolicy::default(), DuplicatePolicy::KeepFirst);
    }
}
