//! The dataset memberships of each series, copied onto its row (`series.dataset_keys`) by
//! database triggers, so that the gallery's dataset facet under a filter the kept counts do not
//! cover (text search, patient) reads only the series that match — grouped by this column —
//! instead of joining them with every membership of the catalog (a hash join over 10⁶
//! memberships: 170 ms of a 250 ms text search at 10⁶ series).
//!
//! The value lists `project_key/dataset_key` entries, each followed by a space, after a leading
//! space: `" p/d p/e q/d "`, `" "` for none. Keys are `[a-z0-9._-]` (see `name_key`), so
//! neither separator can occur in one, and an entry is removed by replacing `" p/d "` with
//! `" "`. Row triggers on `series_datasets` append on insert and remove on delete, whatever code
//! path (recording, placement, erasure, dataset or project deletion, cascades) makes the change.
//!
//! Concurrency (PostgreSQL): the triggers update the series row with an expression of the row
//! itself; under READ COMMITTED an update that waited for a concurrent one re-evaluates that
//! expression on the committed row, so two memberships added at once both end up listed. The
//! entries are not ordered; readers treat the value as a set.

use crate::Dialect;

/// `(column, definition)` of the column, added by schema version 11.
pub(crate) const COLUMN: (&str, &str) = ("dataset_keys", "TEXT NOT NULL DEFAULT ' '");

/// The entry of a membership row (`NEW` or `OLD`) as SQL text.
fn entry(row: &str) -> String {
    format!("{row}.project_key || '/' || {row}.dataset_key")
}

/// The triggers (dropped first, then created) and, on PostgreSQL, their function.
pub(crate) fn trigger_statements(dialect: Dialect) -> Vec<String> {
    let add = format!(
        "UPDATE series SET dataset_keys = dataset_keys || {} || ' ' \
         WHERE series_uid = NEW.series_uid",
        entry("NEW")
    );
    let remove = format!(
        "UPDATE series SET dataset_keys = replace(dataset_keys, ' ' || {} || ' ', ' ') \
         WHERE series_uid = OLD.series_uid",
        entry("OLD")
    );
    match dialect {
        Dialect::Sqlite => vec![
            "DROP TRIGGER IF EXISTS radport_dataset_keys_insert".to_string(),
            format!(
                "CREATE TRIGGER radport_dataset_keys_insert AFTER INSERT ON series_datasets \
                 FOR EACH ROW BEGIN {add}; END"
            ),
            "DROP TRIGGER IF EXISTS radport_dataset_keys_delete".to_string(),
            format!(
                "CREATE TRIGGER radport_dataset_keys_delete AFTER DELETE ON series_datasets \
                 FOR EACH ROW BEGIN {remove}; END"
            ),
        ],
        Dialect::Postgres => vec![
            format!(
                "CREATE OR REPLACE FUNCTION radport_dataset_keys() RETURNS trigger \
                 LANGUAGE plpgsql VOLATILE AS $body$ \
                 BEGIN \
                   IF TG_OP = 'DELETE' THEN {remove}; ELSE {add}; END IF; \
                   RETURN NULL; \
                 END $body$"
            ),
            "DROP TRIGGER IF EXISTS radport_dataset_keys_insert ON series_datasets".to_string(),
            "CREATE TRIGGER radport_dataset_keys_insert AFTER INSERT ON series_datasets \
             FOR EACH ROW EXECUTE FUNCTION radport_dataset_keys()"
                .to_string(),
            "DROP TRIGGER IF EXISTS radport_dataset_keys_delete ON series_datasets".to_string(),
            "CREATE TRIGGER radport_dataset_keys_delete AFTER DELETE ON series_datasets \
             FOR EACH ROW EXECUTE FUNCTION radport_dataset_keys()"
                .to_string(),
        ],
    }
}

/// Fills the column of every series from its memberships (at installation).
pub(crate) fn fill_statement(dialect: Dialect) -> String {
    let list = match dialect {
        Dialect::Sqlite => "group_concat(project_key || '/' || dataset_key, ' ')",
        Dialect::Postgres => "string_agg(project_key || '/' || dataset_key, ' ')",
    };
    format!(
        "UPDATE series SET dataset_keys = m.keys FROM \
         (SELECT series_uid, ' ' || {list} || ' ' AS keys FROM series_datasets \
          GROUP BY series_uid) m \
         WHERE series.series_uid = m.series_uid"
    )
}

/// The `(project_key, dataset_key)` entries of a column value.
pub(crate) fn entries(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(' ').filter_map(|entry| entry.split_once('/'))
}

#[cfg(test)]
mod tests {
    use super::entries;

    #[test]
    fn entries_of_a_value() {
        let parsed: Vec<_> = entries(" p/d admin/x.y p/e-1 ").collect();
        assert_eq!(parsed, [("p", "d"), ("admin", "x.y"), ("p", "e-1")]);
        assert_eq!(entries(" ").count(), 0);
        assert_eq!(entries("").count(), 0);
    }
}
