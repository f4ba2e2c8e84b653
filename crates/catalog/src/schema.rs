//! Portable schema, created idempotently at connect.
//!
//! Only types every `Any` backend carries are used: `TEXT` (timestamps are RFC 3339 UTC with a
//! fixed width so they sort as text) and `BIGINT`. Keys are natural text keys; project and
//! dataset keys are the ASCII-lowercased names (names are ASCII by construction), so
//! case-insensitive uniqueness needs no expression index.

/// Version written to `schema_version` by this code.
pub const SCHEMA_VERSION: i64 = 11;

pub(crate) const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_version (
        version BIGINT NOT NULL PRIMARY KEY,
        applied_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS projects (
        name_key TEXT NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS datasets (
        project_key TEXT NOT NULL REFERENCES projects (name_key) ON DELETE CASCADE,
        name_key TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project_key, name_key)
    )",
    "CREATE TABLE IF NOT EXISTS patients (
        patient_id TEXT NOT NULL PRIMARY KEY,
        patient_name TEXT,
        birth_date TEXT,
        sex TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS studies (
        study_uid TEXT NOT NULL PRIMARY KEY,
        patient_id TEXT,
        patient_name TEXT,
        patient_birth_date TEXT,
        patient_sex TEXT,
        study_date TEXT,
        study_time TEXT,
        study_description TEXT,
        accession_number TEXT,
        study_id TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        referring_physician_name TEXT
    )",
    "CREATE TABLE IF NOT EXISTS series (
        series_uid TEXT NOT NULL PRIMARY KEY,
        study_uid TEXT NOT NULL REFERENCES studies (study_uid),
        modality TEXT,
        body_part_examined TEXT,
        series_description TEXT,
        series_number BIGINT,
        series_date TEXT,
        instance_count BIGINT NOT NULL DEFAULT 0,
        total_size BIGINT NOT NULL DEFAULT 0,
        first_arrival TEXT NOT NULL,
        last_arrival TEXT NOT NULL,
        patient_id TEXT,
        patient_name TEXT,
        study_date TEXT,
        study_description TEXT,
        accession_number TEXT,
        search_text TEXT NOT NULL DEFAULT '',
        validation_errors BIGINT,
        validation_warnings BIGINT,
        pipeline_pending BIGINT NOT NULL DEFAULT 1,
        dataset_keys TEXT NOT NULL DEFAULT ' '
    )",
    "CREATE TABLE IF NOT EXISTS instances (
        sop_instance_uid TEXT NOT NULL PRIMARY KEY,
        series_uid TEXT NOT NULL REFERENCES series (series_uid),
        sop_class_uid TEXT NOT NULL,
        transfer_syntax_uid TEXT NOT NULL,
        instance_number BIGINT,
        n_rows BIGINT,
        n_columns BIGINT,
        number_of_frames BIGINT,
        size BIGINT NOT NULL,
        checksum TEXT NOT NULL,
        object_key TEXT NOT NULL,
        metadata_json TEXT NOT NULL,
        source TEXT NOT NULL,
        received_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS series_projects (
        series_uid TEXT NOT NULL REFERENCES series (series_uid) ON DELETE CASCADE,
        project_key TEXT NOT NULL REFERENCES projects (name_key) ON DELETE CASCADE,
        added_at TEXT NOT NULL,
        PRIMARY KEY (series_uid, project_key)
    )",
    "CREATE TABLE IF NOT EXISTS series_datasets (
        series_uid TEXT NOT NULL REFERENCES series (series_uid) ON DELETE CASCADE,
        project_key TEXT NOT NULL,
        dataset_key TEXT NOT NULL,
        added_at TEXT NOT NULL,
        last_arrival TEXT NOT NULL,
        PRIMARY KEY (series_uid, project_key, dataset_key),
        FOREIGN KEY (project_key, dataset_key)
            REFERENCES datasets (project_key, name_key) ON DELETE CASCADE
    )",
    "CREATE TABLE IF NOT EXISTS jobs (
        id TEXT NOT NULL PRIMARY KEY,
        kind TEXT NOT NULL,
        series_uid TEXT,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        max_attempts BIGINT NOT NULL,
        run_after TEXT NOT NULL,
        locked_until TEXT,
        worker TEXT,
        last_error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT
    )",
    "CREATE INDEX IF NOT EXISTS idx_jobs_due ON jobs (state, run_after)",
    "CREATE INDEX IF NOT EXISTS idx_jobs_series ON jobs (series_uid)",
    "CREATE INDEX IF NOT EXISTS idx_jobs_created ON jobs (created_at)",
    // At most one fresh (never started) queued job of a kind per series: a newer arrival
    // finds it still waiting. Retries of started jobs are outside it, so they never collide.
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_jobs_one_fresh
        ON jobs (kind, series_uid) WHERE state = 'queued' AND attempts = 0",
    "CREATE TABLE IF NOT EXISTS series_pipeline (
        series_uid TEXT NOT NULL PRIMARY KEY,
        scheduled_for TEXT NOT NULL,
        scheduled_at TEXT NOT NULL
    )",
    // Which series a derived series (SEG, RTSTRUCT …) draws on: its thumbnail is redone when
    // the referenced series arrives or changes.
    "CREATE TABLE IF NOT EXISTS series_references (
        series_uid TEXT NOT NULL,
        referenced_series_uid TEXT NOT NULL,
        PRIMARY KEY (series_uid, referenced_series_uid)
    )",
    "CREATE INDEX IF NOT EXISTS idx_series_references_referenced
        ON series_references (referenced_series_uid)",
    "CREATE TABLE IF NOT EXISTS uploads (
        id TEXT NOT NULL PRIMARY KEY,
        path TEXT NOT NULL,
        length BIGINT NOT NULL,
        upload_offset BIGINT NOT NULL,
        chunks BIGINT NOT NULL,
        metadata TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        completed BIGINT NOT NULL,
        part_keys TEXT NOT NULL DEFAULT '',
        assembly_lease TEXT,
        owner TEXT
    )",
    "CREATE TABLE IF NOT EXISTS workflow_runs (
        id TEXT NOT NULL PRIMARY KEY,
        workflow TEXT NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        progress_done BIGINT NOT NULL,
        progress_total BIGINT NOT NULL,
        errors TEXT NOT NULL,
        log TEXT NOT NULL,
        series TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT
    )",
    "CREATE INDEX IF NOT EXISTS idx_workflow_runs_created ON workflow_runs (created_at)",
    "CREATE TABLE IF NOT EXISTS series_validation (
        series_uid TEXT NOT NULL PRIMARY KEY,
        instances_checked BIGINT NOT NULL,
        errors BIGINT NOT NULL,
        warnings BIGINT NOT NULL,
        iods TEXT NOT NULL,
        report_key TEXT NOT NULL,
        validated_at TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS idx_series_validation_errors ON series_validation (errors)",
    "CREATE INDEX IF NOT EXISTS idx_series_validation_warnings ON series_validation (warnings)",
    "CREATE TABLE IF NOT EXISTS validation_findings (
        series_uid TEXT NOT NULL,
        seq BIGINT NOT NULL,
        sop_instance_uid TEXT,
        severity TEXT NOT NULL,
        tag_path TEXT NOT NULL,
        keyword TEXT NOT NULL,
        module TEXT,
        message TEXT NOT NULL,
        PRIMARY KEY (series_uid, seq)
    )",
    "CREATE INDEX IF NOT EXISTS idx_validation_findings_keyword
        ON validation_findings (keyword, severity)",
    "CREATE INDEX IF NOT EXISTS idx_series_study ON series (study_uid)",
    // The collector's question "which of these archive keys does an instance name?"
    // (references.rs). Created at every start if missing, so catalogs made before it get it
    // then, before anything listens (on PostgreSQL, building it over a large table holds
    // writers back for that long, once).
    "CREATE INDEX IF NOT EXISTS idx_instances_object_key ON instances (object_key)",
    "CREATE INDEX IF NOT EXISTS idx_studies_patient ON studies (patient_id)",
    "CREATE INDEX IF NOT EXISTS idx_studies_date ON studies (study_date)",
    "CREATE INDEX IF NOT EXISTS idx_series_projects_project
        ON series_projects (project_key, series_uid)",
    // Version 5: accounts, project roles and API tokens (users.rs). An older program refuses a
    // version-5 catalog rather than serve it without its access rules.
    "CREATE TABLE IF NOT EXISTS users (
        user_key TEXT NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        password_hash TEXT,
        is_admin BIGINT NOT NULL,
        disabled BIGINT NOT NULL,
        must_change_password BIGINT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        oidc_issuer TEXT,
        oidc_subject TEXT
    )",
    "CREATE TABLE IF NOT EXISTS project_members (
        project_key TEXT NOT NULL,
        user_key TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (project_key, user_key)
    )",
    "CREATE INDEX IF NOT EXISTS idx_project_members_user ON project_members (user_key)",
    "CREATE TABLE IF NOT EXISTS api_tokens (
        id TEXT NOT NULL PRIMARY KEY,
        user_key TEXT NOT NULL,
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT,
        projects TEXT,
        expires_at TEXT,
        created_at TEXT NOT NULL,
        revoked_at TEXT,
        last_used_at TEXT
    )",
    "CREATE INDEX IF NOT EXISTS idx_api_tokens_user ON api_tokens (user_key)",
    // Which DICOM peers may store into a project (users.rs): calling AE titles and networks.
    "CREATE TABLE IF NOT EXISTS dicom_rules (
        project_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (project_key, kind, value)
    )",
    // Where C-MOVE may send a project's instances (destinations.rs): AE title → host, port.
    "CREATE TABLE IF NOT EXISTS move_destinations (
        project_key TEXT NOT NULL,
        ae_title TEXT NOT NULL,
        host TEXT NOT NULL,
        port BIGINT NOT NULL,
        description TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project_key, ae_title)
    )",
    // The audit trail (audit.rs): appended to, never changed through the API.
    "CREATE TABLE IF NOT EXISTS audit_events (
        id TEXT NOT NULL PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        address TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS idx_audit_events_at ON audit_events (at, id)",
    "CREATE INDEX IF NOT EXISTS idx_audit_events_actor ON audit_events (actor, at)",
    "CREATE INDEX IF NOT EXISTS idx_series_datasets_dataset
        ON series_datasets (project_key, dataset_key, series_uid)",
];

/// Columns added to `series` by version 2: what the gallery filters on, copied from the study
/// (and the validation counts) so that a series list reads one table. Added to a version-1
/// database by [`MIGRATE_TO_2`]; created with the table otherwise.
pub(crate) const SERIES_COLUMNS_V2: &[(&str, &str)] = &[
    ("patient_id", "TEXT"),
    ("patient_name", "TEXT"),
    ("study_date", "TEXT"),
    ("study_description", "TEXT"),
    ("accession_number", "TEXT"),
    ("search_text", "TEXT NOT NULL DEFAULT ''"),
    ("validation_errors", "BIGINT"),
    ("validation_warnings", "BIGINT"),
];

/// The lowercased text `q=` searches — patient ID and name, study and series descriptions,
/// accession number — as an SQL expression over the five given SQL expressions. One
/// definition for every writer: the series upsert (`record.rs`) and the migration.
macro_rules! search_text {
    ($pid:expr, $pname:expr, $study_desc:expr, $series_desc:expr, $acc:expr) => {
        concat!(
            "lower(COALESCE(",
            $pid,
            ", '') || ' | ' || COALESCE(",
            $pname,
            ", '') || ' | ' || COALESCE(",
            $study_desc,
            ", '') || ' | ' || COALESCE(",
            $series_desc,
            ", '') || ' | ' || COALESCE(",
            $acc,
            ", ''))"
        )
    };
}
pub(crate) use search_text;

/// Version 2: every series' `search_text` from its copied columns.
pub(crate) const FILL_SEARCH_TEXT: &str = concat!(
    "UPDATE series SET search_text = ",
    search_text!(
        "patient_id",
        "patient_name",
        "study_description",
        "series_description",
        "accession_number"
    )
);

/// Fills the version-2 columns of existing series from their study and validation.
pub(crate) const MIGRATE_TO_2: &[&str] = &[
    "UPDATE series SET \
       patient_id = (SELECT st.patient_id FROM studies st WHERE st.study_uid = series.study_uid), \
       patient_name = (SELECT st.patient_name FROM studies st WHERE st.study_uid = series.study_uid), \
       study_date = (SELECT st.study_date FROM studies st WHERE st.study_uid = series.study_uid), \
       study_description = (SELECT st.study_description FROM studies st \
                            WHERE st.study_uid = series.study_uid), \
       accession_number = (SELECT st.accession_number FROM studies st \
                           WHERE st.study_uid = series.study_uid), \
       validation_errors = (SELECT v.errors FROM series_validation v \
                            WHERE v.series_uid = series.series_uid), \
       validation_warnings = (SELECT v.warnings FROM series_validation v \
                              WHERE v.series_uid = series.series_uid)",
];

/// Indexes on version-2 columns (after the migration, which adds the columns).
pub(crate) const INDEXES_V2: &[&str] = &[
    "DROP INDEX IF EXISTS idx_series_modality",
    "CREATE INDEX IF NOT EXISTS idx_series_body_part ON series (body_part_examined)",
    "CREATE INDEX IF NOT EXISTS idx_series_patient ON series (patient_id)",
    "CREATE INDEX IF NOT EXISTS idx_series_datasets_key ON series_datasets (dataset_key, series_uid)",
    "CREATE INDEX IF NOT EXISTS idx_series_validation_state \
        ON series (validation_errors, validation_warnings)",
    // Covers the grouped facet scan (modality, body part, validation) of the gallery.
    "CREATE INDEX IF NOT EXISTS idx_series_facets \
        ON series (modality, body_part_examined, validation_errors, validation_warnings)",
];

/// Columns added to `users` by version 6: the OpenID provider (issuer) and subject of an
/// account made by single sign-on (`NULL`: a local account).
pub(crate) const USER_COLUMNS_V6: &[(&str, &str)] =
    &[("oidc_issuer", "TEXT"), ("oidc_subject", "TEXT")];

/// Indexes on version-6 columns (after the migration, which adds the columns): one account per
/// provider and subject.
pub(crate) const INDEXES_V6: &[&str] =
    &["CREATE UNIQUE INDEX IF NOT EXISTS idx_users_oidc ON users (oidc_issuer, oidc_subject)"];

/// Column added to `studies` by version 7: Referring Physician's Name, a standard matching key
/// of DICOMweb and C-FIND at the study level.
pub(crate) const STUDY_COLUMNS_V7: &[(&str, &str)] = &[("referring_physician_name", "TEXT")];

/// Version 7: Referring Physician's Name of the studies recorded before, from the stored DICOM
/// JSON of one of their instances (its first component group, `Alphabetic`).
pub(crate) const MIGRATE_TO_7_SQLITE: &str = "UPDATE studies SET referring_physician_name = \
     (SELECT json_extract(i.metadata_json, '$.\"00080090\".Value[0].Alphabetic') \
      FROM series s JOIN instances i ON i.series_uid = s.series_uid \
      WHERE s.study_uid = studies.study_uid AND json_valid(i.metadata_json) \
      AND json_extract(i.metadata_json, '$.\"00080090\".Value[0].Alphabetic') IS NOT NULL \
      LIMIT 1) WHERE referring_physician_name IS NULL";

/// [`MIGRATE_TO_7_SQLITE`] for PostgreSQL.
pub(crate) const MIGRATE_TO_7_POSTGRES: &str = "UPDATE studies SET referring_physician_name = \
     (SELECT i.metadata_json::jsonb -> '00080090' -> 'Value' -> 0 ->> 'Alphabetic' \
      FROM series s JOIN instances i ON i.series_uid = s.series_uid \
      WHERE s.study_uid = studies.study_uid \
      AND i.metadata_json::jsonb -> '00080090' -> 'Value' -> 0 ->> 'Alphabetic' IS NOT NULL \
      LIMIT 1) WHERE referring_physician_name IS NULL";

/// Indexes of version 7: the study-level matching keys of DICOMweb and C-FIND.
pub(crate) const INDEXES_V7: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS idx_studies_accession ON studies (accession_number)",
    "CREATE INDEX IF NOT EXISTS idx_instances_series_number \
        ON instances (series_uid, instance_number)",
];

/// Column added to `series` by version 8: 1 from an arrival until the scheduler has scheduled
/// the pipeline for that arrival (set by the ingest hot path, which updates the row anyway), so
/// that a scheduler tick reads the few pending series through a partial index instead of
/// scanning every series.
pub(crate) const SERIES_COLUMNS_V8: &[(&str, &str)] =
    &[("pipeline_pending", "BIGINT NOT NULL DEFAULT 1")];

/// Version 8: series already scheduled for their last arrival are not pending.
pub(crate) const MIGRATE_TO_8: &str = "UPDATE series SET pipeline_pending = 0 WHERE EXISTS \
     (SELECT 1 FROM series_pipeline p WHERE p.series_uid = series.series_uid \
      AND p.scheduled_for >= series.last_arrival)";

/// Version 9: no index on a column the hot path changes with every instance (`last_arrival`,
/// `instance_count`, `total_size`), so that the update of a series is a heap-only (HOT)
/// update on PostgreSQL and touches no index on SQLite. The gallery's arrival order is the
/// series' first arrival; the scheduler finds pending series by the partial index's
/// predicate alone. `idx_instances_series` was a prefix of `idx_instances_series_number`.
pub(crate) const DROPPED_BY_9: &[&str] = &[
    "DROP INDEX IF EXISTS idx_series_last_arrival",
    "DROP INDEX IF EXISTS idx_series_modality_arrival",
    "DROP INDEX IF EXISTS idx_series_study_date",
    "DROP INDEX IF EXISTS idx_series_pipeline_pending",
    "DROP INDEX IF EXISTS idx_instances_series",
];

/// Version 10: series counts kept by the writes (see `counts.rs`): what each series is
/// counted as, the signed deltas per (project, dataset, modality, body part, validation
/// state) that sum to the gallery's totals and facets, and the series queued for recounting.
/// Their triggers are installed, and the tables filled, by `Catalog::install_kept_by_writes`.
pub(crate) const TABLES_V10: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS series_counted (
        series_uid TEXT NOT NULL,
        project_key TEXT NOT NULL,
        dataset_key TEXT NOT NULL,
        modality TEXT NOT NULL,
        body_part TEXT NOT NULL,
        validation BIGINT NOT NULL,
        study_month TEXT NOT NULL,
        PRIMARY KEY (series_uid, project_key, dataset_key, study_month)
    )",
    "CREATE TABLE IF NOT EXISTS series_counts (
        project_key TEXT NOT NULL,
        dataset_key TEXT NOT NULL,
        modality TEXT NOT NULL,
        body_part TEXT NOT NULL,
        validation BIGINT NOT NULL,
        study_month TEXT NOT NULL,
        n BIGINT NOT NULL,
        folded BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS series_recount (
        series_uid TEXT NOT NULL PRIMARY KEY
    )",
    "CREATE INDEX IF NOT EXISTS idx_series_counts_key ON series_counts (project_key, dataset_key)",
    // A modality filter's first page in study date order (with `idx_series_modality_first_arrival`
    // for arrival order).
    "CREATE INDEX IF NOT EXISTS idx_series_modality_study_date \
        ON series (modality, study_date, first_arrival)",
    "CREATE INDEX IF NOT EXISTS idx_series_counts_unfolded \
        ON series_counts (project_key, dataset_key) WHERE folded = 0",
];

/// Indexes of version 11: the gallery's modality + body part filter, in either order, walks
/// only the series with both (with the modality alone, a newest body part that is rare or
/// old made the walk read every series of the modality since).
pub(crate) const INDEXES_V11: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS idx_series_modality_body_study_date \
        ON series (modality, body_part_examined, study_date, first_arrival)",
    "CREATE INDEX IF NOT EXISTS idx_series_modality_body_first_arrival \
        ON series (modality, body_part_examined, first_arrival)",
];

pub(crate) const INDEXES_V9: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS idx_series_first_arrival ON series (first_arrival)",
    // A modality filter's first page in arrival order, and its count.
    "CREATE INDEX IF NOT EXISTS idx_series_modality_first_arrival \
        ON series (modality, first_arrival)",
    "CREATE INDEX IF NOT EXISTS idx_series_study_date_first_arrival \
        ON series (study_date, first_arrival)",
    "CREATE INDEX IF NOT EXISTS idx_series_pending ON series (series_uid) \
        WHERE pipeline_pending = 1",
];

/// Columns added to `uploads` by version 4: the keys of the counted chunks (each PATCH writes
/// a chunk of its own; the compare-and-set that counts it records which) and the assembler's
/// lease (an upload being assembled is not swept).
/// Column added to `uploads` by version 5: the account that uploaded the file (`NULL`: before
/// access control, or without it; only administrators see such files when it is enforced).
pub(crate) const UPLOAD_COLUMNS_V5: &[(&str, &str)] = &[("owner", "TEXT")];

pub(crate) const UPLOAD_COLUMNS_V4: &[(&str, &str)] = &[
    ("part_keys", "TEXT NOT NULL DEFAULT ''"),
    ("assembly_lease", "TEXT"),
];

/// Version 4: one upload per path (older catalogs may hold several rows for a path, of which
/// the newest completed one is the stored file: the others are dropped, incomplete ones move
/// to a path of their own), and completed uploads, which now expire after their retention,
/// are kept forever if they were completed before.
pub(crate) const MIGRATE_TO_4: &[&str] = &[
    "DELETE FROM uploads WHERE completed = 1 AND EXISTS (SELECT 1 FROM uploads newer \
       WHERE newer.path = uploads.path AND newer.completed = 1 \
         AND (newer.created_at > uploads.created_at \
              OR (newer.created_at = uploads.created_at AND newer.id > uploads.id)))",
    "UPDATE uploads SET path = path || '-' || id WHERE completed = 0 AND EXISTS \
       (SELECT 1 FROM uploads other WHERE other.path = uploads.path AND other.id <> uploads.id)",
    "UPDATE uploads SET expires_at = '9999-12-31T23:59:59.999999Z' WHERE completed = 1",
];

/// Indexes on `uploads` (after the version-4 migration, which makes paths unique).
pub(crate) const INDEXES_V4: &[&str] = &[
    "CREATE UNIQUE INDEX IF NOT EXISTS idx_uploads_path ON uploads (path)",
    "CREATE INDEX IF NOT EXISTS idx_uploads_expiry ON uploads (completed, expires_at)",
];
